"""Check my work (docs/API.md, "Checks"; issue 24, item 4) in headless
Chromium against a real ua with assignments that have a check
(clients/python/tests/check_assignment.py): in the element (the button, the
feedback and tests, errors in words, the sealed result carried by a
submission to parse() and uassign.grade_check), and on ua's own pages
(/instance/{id}, /start#<spec>, served from scripts/build-web's target/web).

Skipped when Chromium is missing, unless UA_REQUIRE_BROWSER=1 (then it fails).
Fails when Docker is missing.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.parse
import uuid

import pytest

import check_assignment
import uassign_terminal as element
from test_browser import ROOT, SCREEN, allowed, browser, pages, type_line, wait_open, wait_screen  # noqa: F401
from test_browser_pl import render, write_page
from ua_server import REPO, UaServer
from uassign import create_spec, grade_check, open_instance

WEB = REPO / "target" / "web"
BUTTON = "document.querySelector('.uassign-terminal-check-button')"
REGION = "document.querySelector('.ua-check')"


@pytest.fixture(scope="module")
def ua(pages, tmp_path_factory):  # noqa: F811
    if not (WEB / "ua-check.js").is_file():
        pytest.fail("no browser terminal in target/web: run scripts/build-web", pytrace=False)
    root = check_assignment.write(tmp_path_factory.mktemp("assignments"))
    server = UaServer([*allowed(pages), "--web-dir", str(WEB)], assignments=root)
    yield server
    server.stop()


def spec(server, assignment=check_assignment.NAME, secret=None):
    data = {"answer": secret or "answer-" + uuid.uuid4().hex[:8]}
    return create_spec(assignment, data, f"uassign-browser-check/{uuid.uuid4().hex[:12]}", key=server.key_line)


def region(b) -> dict:
    return b.evaluate(
        "(() => { const r = " + REGION + "; return { state: r.getAttribute('data-state'), hidden: r.hidden,"
        " status: r.querySelector('.ua-check-status').textContent,"
        " tests: [...r.querySelectorAll('.ua-check-tests li')].map(li => [li.className, li.textContent]),"
        " output: (r.querySelector('.ua-check-output pre') || {}).textContent || null,"
        " error: (r.querySelector('.ua-check-error') || {}).textContent || null,"
        " elements: r.querySelectorAll('b, script, img').length }; })()"
    )


def check_and_wait(b, button=BUTTON) -> dict:
    b.evaluate(button + ".click()")
    b.wait_for(REGION + ".getAttribute('aria-busy') === 'false'", 60, "the check's answer")
    return region(b)


def test_check_my_work_in_the_element_shows_the_tests_then_a_submission_grades(browser, pages, ua):
    capture = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    threading.Thread(target=capture.serve_forever, daemon=True).start()
    try:
        secret = "answer-" + uuid.uuid4().hex[:8]
        sealed = spec(ua, secret=secret)
        question = render(f"127.0.0.1:{ua.port}", sealed, 'check="true"')
        form = (
            f'<form method="POST" action="http://127.0.0.1:{capture.server_address[1]}/submit">{question}'
            '<button type="submit" name="__action" value="grade" id="grade">Save &amp; Grade</button></form>'
        )
        browser.navigate(write_page(pages, form, mathjax=False))
        wait_open(browser)
        browser.wait_for("!" + BUTTON + ".hidden", 20, "the Check my work button")
        assert browser.evaluate(REGION + ".hidden")
        browser.evaluate(BUTTON + ".focus()")
        shown = check_and_wait(browser)
        assert browser.evaluate("document.activeElement === " + BUTTON)  # the keyboard focus stays
        assert shown["state"] == "done" and shown["status"] == "Score: 0% — 1 of 2 tests passed."
        assert shown["tests"] == [["ua-check-fail", "✗Failed: done file: no file done yet"], ["ua-check-pass", "✓Passed: always"]]
        assert "checked for [redacted]" in shown["output"] and "<b>not bold</b>" in shown["output"]
        assert shown["elements"] == 0 and secret not in browser.evaluate("document.documentElement.outerHTML")

        type_line(browser, "touch done; echo made-$((3*3))")
        wait_screen(browser, "made-9")
        time.sleep(1.2)  # the assignment's checkInterval
        _Capture.posts.clear()
        browser.evaluate("document.getElementById('grade').click()")
        deadline = time.monotonic() + 60
        while not _Capture.posts:
            assert time.monotonic() < deadline, "the form was not submitted"
            time.sleep(0.1)
        (posted,) = _Capture.posts
        raw = {k: v[0] for k, v in posted.items()}
        assert raw["__action"] == "grade" and secret not in json.dumps(raw)
        html = f'<uassign_terminal host="127.0.0.1:{ua.port}" insecure="true" check="true"></uassign_terminal>'
        data = {"params": {"spec": sealed, "spec_created": int(time.time()) - 60}, "raw_submitted_answers": raw,
                "submitted_answers": dict(raw), "format_errors": {}, "partial_scores": {}, "feedback": {}}
        element.parse(html, data)
        assert data["format_errors"] == {}
        assert grade_check(data, ua.key_line)["score"] == 1
        assert data["score"] == 1 and data["feedback"]["spec_check"]["tests"][0] == {"name": "done file", "passed": True, "message": "found done"}
    finally:
        browser.navigate("about:blank")
        capture.shutdown()
        capture.server_close()


class _Capture(http.server.BaseHTTPRequestHandler):
    """Plays PrairieLearn's submission endpoint: records the form."""

    posts: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        _Capture.posts.append(urllib.parse.parse_qs(body))
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<p>submitted</p>")

    def log_message(self, *args):
        pass


def test_the_element_says_429_and_422_in_words_and_hides_the_button_without_a_check(browser, pages, ua):
    try:
        browser.navigate(write_page(pages, render(f"127.0.0.1:{ua.port}", spec(ua, "lab.checked_slow")), mathjax=False))
        wait_open(browser)
        browser.wait_for("!" + BUTTON + ".hidden", 20, "the Check my work button")
        assert check_and_wait(browser)["state"] == "done"
        again = check_and_wait(browser)
        assert again["state"] == "error" and again["status"] == "You checked a moment ago." and again["error"]
        label = browser.evaluate(BUTTON + ".textContent")
        assert label.startswith("Check again in ") and browser.evaluate(BUTTON + ".getAttribute('aria-disabled') === 'true'"), label

        secret = "answer-" + uuid.uuid4().hex[:8]
        browser.navigate(write_page(pages, render(f"127.0.0.1:{ua.port}", spec(ua, "lab.broken_check", secret)), mathjax=False))
        wait_open(browser)
        browser.wait_for("!" + BUTTON + ".hidden", 20, "the Check my work button")
        browser.evaluate(
            "window.__answers = []; const f = window.fetch; window.fetch = (...a) => f(...a).then(r => {"
            " r.clone().text().then(t => window.__answers.push(t)); return r; })"
        )
        broken = check_and_wait(browser)
        assert broken["state"] == "error" and broken["status"].startswith("The check could not run")
        (answer,) = [json.loads(t) for t in browser.evaluate("window.__answers") if "sealedOutput" in t]
        assert broken["error"] == answer["error"] and len(answer["sealedOutput"]) > 40
        page = browser.evaluate("document.documentElement.outerHTML")
        assert "broken for" not in page and secret not in page and answer["sealedOutput"] not in page
        assert browser.evaluate(BUTTON + ".getAttribute('aria-disabled')") == "false"

        browser.navigate(write_page(pages, render(f"127.0.0.1:{ua.port}", spec(ua, "lab.plain")), mathjax=False))
        wait_open(browser)
        time.sleep(0.5)
        assert browser.evaluate(BUTTON + ".hidden")
    finally:
        browser.navigate("about:blank")


PAGE_SCREEN = (
    "(() => { const b = window.uaSession.term.buffer.active; const out = [];"
    " for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true)); return out.join('\\n'); })()"
)
PAGE_BUTTON = "document.querySelector('.ua-toolbar .ua-check-button')"


def wait_page_open(b) -> None:
    b.wait_for("window.uaSession && window.uaSession.state === 'open'", 60, "the page's terminal to open")
    b.wait_for(PAGE_SCREEN + ".includes('$ ')", 30, "the shell prompt")


def test_the_servers_own_pages_have_the_button_when_the_assignment_has_a_check(browser, ua):
    try:
        instance = open_instance(spec(ua), ua.url)
        browser.navigate(f"{ua.url}/instance/{instance}")
        wait_page_open(browser)
        assert browser.evaluate("document.querySelector('meta[name=\"ua-check\"]').content") == "true"
        assert browser.evaluate("!" + PAGE_BUTTON + ".hidden")
        shown = check_and_wait(browser, PAGE_BUTTON)
        assert shown["status"].startswith("Score: 0%") and shown["tests"][0][0] == "ua-check-fail"

        plain = open_instance(spec(ua, "lab.plain"), ua.url)
        browser.navigate(f"{ua.url}/instance/{plain}")
        wait_page_open(browser)
        assert browser.evaluate(PAGE_BUTTON + ".hidden") and browser.evaluate(REGION + ".hidden")

        browser.navigate(f"{ua.url}/start#{spec(ua)}")
        wait_page_open(browser)
        browser.wait_for("!" + PAGE_BUTTON + ".hidden", 20, "the button on the start page")
        assert check_and_wait(browser, PAGE_BUTTON)["tests"][1] == ["ua-check-pass", "✓Passed: always"]
        browser.navigate(f"{ua.url}/instance/{instance}?mode=observe")
        browser.wait_for("window.uaSession && window.uaSession.state === 'open'", 60, "the read-only view")
        assert browser.evaluate(PAGE_BUTTON + " === null")
    finally:
        browser.navigate("about:blank")

"""The element in a real browser (headless Chromium) against a real ua server.

Each test renders the element with uassign_terminal.py (PrairieLearn's helpers
stood in by fake_pl/), puts it in a page that loads the element's
dependencies the way info.json lists them (plus a RequireJS-like global
`define`, as PrairieLearn pages may have), and drives the page over the
DevTools protocol: real keyboard input into xterm.js, real websockets.

What this does not cover: PrairieLearn itself (its dependency loading, its
page layout); these pages only imitate it.

Skipped when Chromium is missing, unless UA_REQUIRE_BROWSER=1 (then it fails).
Fails when Docker is missing.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
from pathlib import Path
import shutil
import signal
import threading
import time
import uuid

import pytest

import uassign_terminal as element
from browser import Browser, CuttableProxy, StaticServer, require_chromium
from conftest import ELEMENT_DIR
from ua_server import UaServer, new_key_file
from uassign import UaError, clean_spec, create_spec, open_instance

GREETING = "browser test ✓"
ROOT = "document.querySelector('.uassign-terminal')"
SCREEN = (
    "(() => { const t = " + ROOT + ".uassignTerminal.term; const b = t.buffer.active; const out = [];"
    " for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));"
    " return out.join('\\n'); })()"
)


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    b = Browser()
    yield b
    b.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pages")
    shutil.copytree(ELEMENT_DIR, directory / "element")
    server = StaticServer(directory)
    server.dir = directory
    yield server
    server.close()


def allowed(pages) -> list[str]:
    """ua's flag letting the test pages' origin (PrairieLearn's, in a course) in."""
    return ["--allowed-origins", pages.url]


@pytest.fixture(scope="module")
def ua(pages):
    server = UaServer(allowed(pages))
    yield server
    server.stop()


def make_page(pages, host: str, spec: str, insecure: bool = True, route: str | None = None) -> str:
    """Writes a page like PrairieLearn would serve for a question with the element."""
    info = json.loads((ELEMENT_DIR / "info.json").read_text())["dependencies"]
    params = {"spec": spec} if route is None else {"spec": spec, "spec_route": route}
    html = element.render(
        f'<uassign_terminal host="{host}" insecure="{"true" if insecure else "false"}" height="24em"></uassign_terminal>',
        {"params": params, "panel": "question", "editable": True},
    )
    head = [
        '<meta charset="utf-8">',
        # PrairieLearn pages may carry RequireJS: an AMD define must not swallow xterm.js.
        "<script>window.define = function () { window.amdCaptured = true; }; window.define.amd = {};</script>",
    ]
    head += [f'<link rel="stylesheet" href="element/{css}">' for css in info["elementStyles"]]
    head += [f'<script src="element/{js}"></script>' for js in info["elementScripts"]]
    name = f"q-{uuid.uuid4().hex[:8]}.html"
    (pages.dir / name).write_text(
        "<!doctype html><html><head>" + "\n".join(head) + "</head><body><h1>Question</h1>\n" + html + "\n</body></html>"
    )
    return f"{pages.url}/{name}"


def new_spec(server: UaServer, **kw) -> str:
    return create_spec("demo.busybox", {"greeting": GREETING}, f"uassign-browser/{uuid.uuid4().hex[:12]}",
                       key=server.key_line, **kw)


def state(b: Browser) -> dict:
    return b.evaluate(
        "(() => { const r = " + ROOT + "; return { state: r.getAttribute('data-state'),"
        " reason: r.getAttribute('data-close-reason'),"
        " overlay: !r.querySelector('.uassign-terminal-overlay').hidden,"
        " message: r.querySelector('.uassign-terminal-message').textContent,"
        " detail: r.querySelector('.uassign-terminal-detail').textContent,"
        " button: r.querySelector('.uassign-terminal-action').hidden ? null"
        " : r.querySelector('.uassign-terminal-action').textContent }; })()"
    )


def wait_open(b: Browser, timeout: float = 60) -> None:
    b.wait_for(ROOT + ".getAttribute('data-state') === 'open'", timeout, "the terminal to open")
    b.wait_for(SCREEN + ".includes('~ $ ')", 30, "the shell prompt")


def wait_stopped(b: Browser, reason: str, timeout: float = 30) -> dict:
    b.wait_for(
        ROOT + ".getAttribute('data-state') === 'stopped' && " + ROOT + f".getAttribute('data-close-reason') === '{reason}'",
        timeout,
        f"the overlay for {reason} (now {state(b)})",
    )
    return state(b)


def type_line(b: Browser, text: str) -> None:
    b.evaluate(ROOT + ".uassignTerminal.term.focus()")
    b.insert_text(text)
    b.press_enter()


def wait_screen(b: Browser, text: str, timeout: float = 20) -> None:
    b.wait_for(SCREEN + ".includes(" + json.dumps(text) + ")", timeout, f"{text!r} on the screen")


def click(b: Browser) -> None:
    b.evaluate(ROOT + ".querySelector('.uassign-terminal-action').click()")


def test_types_into_a_real_shell_and_resizes(browser, pages, ua):
    browser.navigate(make_page(pages, f"127.0.0.1:{ua.port}", new_spec(ua)))
    wait_open(browser)
    assert browser.evaluate("window.amdCaptured === undefined")
    assert not state(browser)["overlay"]
    wait_screen(browser, GREETING)
    type_line(browser, "echo hi-$((1+1))")
    wait_screen(browser, "hi-2")
    # The terminal's size follows the element's: set_size after fit.
    before = browser.evaluate(ROOT + ".uassignTerminal.term.cols")
    browser.call("Emulation.setDeviceMetricsOverride", width=620, height=700, deviceScaleFactor=1, mobile=False)
    try:
        browser.wait_for(ROOT + f".uassignTerminal.term.cols < {before}", 10, "the terminal to get narrower")
        time.sleep(0.3)
        rows, cols = browser.evaluate("[" + ROOT + ".uassignTerminal.term.rows, " + ROOT + ".uassignTerminal.term.cols]")
        type_line(browser, "stty size")
        wait_screen(browser, f"{rows} {cols}")
    finally:
        browser.call("Emulation.clearDeviceMetricsOverride")


def test_reload_lands_back_in_the_same_shell(browser, pages, ua):
    url = make_page(pages, f"127.0.0.1:{ua.port}", new_spec(ua))
    browser.navigate(url)
    wait_open(browser)
    type_line(browser, "MARK=ab$((3*4))")
    time.sleep(0.5)
    browser.navigate(url + "?reload")
    wait_open(browser)
    type_line(browser, "echo mark=$MARK")
    wait_screen(browser, "mark=ab12")


def test_taken_over_elsewhere_then_use_here(browser, pages, ua):
    spec = new_spec(ua)
    browser.navigate(make_page(pages, f"127.0.0.1:{ua.port}", spec))
    wait_open(browser)
    type_line(browser, "MARK=taken$((40+2))")
    time.sleep(0.5)
    open_instance(spec, ua.url)  # another client takes over
    shown = wait_stopped(browser, "taken-over")
    assert "another tab or window" in shown["message"] and shown["button"] == "Use it here"
    click(browser)
    wait_open(browser)
    type_line(browser, "echo mark=$MARK")
    wait_screen(browser, "mark=taken42")


def test_shell_exit_offers_restart(browser, pages, ua):
    browser.navigate(make_page(pages, f"127.0.0.1:{ua.port}", new_spec(ua)))
    wait_open(browser)
    type_line(browser, "exit")
    shown = wait_stopped(browser, "exited")
    assert "ended" in shown["message"] and shown["button"] == "Restart"
    click(browser)
    wait_open(browser)
    type_line(browser, "echo back-$((5+5))")
    wait_screen(browser, "back-10")


def test_cleaned_instance_offers_a_fresh_start(browser, pages, ua):
    spec = new_spec(ua)
    browser.navigate(make_page(pages, f"127.0.0.1:{ua.port}", spec))
    wait_open(browser)
    first = browser.evaluate(ROOT + ".uassignTerminal.instanceID")
    assert clean_spec(spec, ua.url) == 1
    shown = wait_stopped(browser, "gone")
    assert "reset or has expired" in shown["message"] and shown["button"] == "Start again"
    click(browser)
    wait_open(browser)
    assert browser.evaluate(ROOT + ".uassignTerminal.instanceID") != first


def test_http_errors_show_the_servers_message(browser, pages, ua, tmp_path):
    _, other_key = new_key_file(tmp_path, "other")
    wrong = create_spec("demo.busybox", {"greeting": "x"}, "uassign-browser/wrong", key=other_key)
    with pytest.raises(UaError) as e400:
        open_instance(wrong, ua.url)
    browser.navigate(make_page(pages, f"127.0.0.1:{ua.port}", wrong))
    shown = wait_stopped(browser, "http-400")
    assert e400.value.message in shown["detail"] and shown["button"] == "Try again"

    missing = create_spec("no.such_assignment", {}, "uassign-browser/404", key=ua.key_line)
    with pytest.raises(UaError) as e404:
        open_instance(missing, ua.url)
    browser.navigate(make_page(pages, f"127.0.0.1:{ua.port}", missing))
    shown = wait_stopped(browser, "http-404")
    assert e404.value.message in shown["detail"]


class _Busy(http.server.BaseHTTPRequestHandler):
    """A ua stand-in at capacity: 503 with Retry-After (exposed to CORS on /exposed)."""

    hits: list = []

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Busy.hits.append((self.path, time.monotonic()))
        body = json.dumps({"error": "ua is at capacity (test); try again shortly"}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "3")
        self.send_header("Access-Control-Allow-Origin", "*")
        if self.path.startswith("/exposed/"):
            self.send_header("Access-Control-Expose-Headers", "Retry-After")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_503_shows_the_message_and_retries(browser, pages):
    busy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    threading.Thread(target=busy.serve_forever, daemon=True).start()
    try:
        for prefix in ("exposed", "hidden"):
            _Busy.hits.clear()
            browser.navigate(make_page(pages, f"127.0.0.1:{busy.server_address[1]}/{prefix}", "c3BlYw=="))
            browser.wait_for(ROOT + ".getAttribute('data-state') === 'waiting'", 10, "the 503 retry overlay")
            shown = state(browser)
            assert shown["message"] == "ua is at capacity (test); try again shortly"
            assert "Reconnecting in" in shown["detail"] and shown["button"] == "Reconnect now"
            deadline = time.monotonic() + 15
            while len(_Busy.hits) < 2:
                assert time.monotonic() < deadline, "no retry after a 503"
                time.sleep(0.1)
            gap = _Busy.hits[1][1] - _Busy.hits[0][1]
            if prefix == "exposed":
                assert gap >= 2.5, f"Retry-After: 3 not honoured (retried after {gap:.1f} s)"
    finally:
        browser.navigate("about:blank")
        busy.shutdown()
        busy.server_close()


class _Unavailable(http.server.BaseHTTPRequestHandler):
    """HAProxy in front of ua nodes when none can take the spec: its JSON 503
    (packaging/examples/haproxy-cfg) on /json, a bare 503 page on /bare."""

    hits: list = []

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Unavailable.hits.append(self.path)
        if self.path.startswith("/json/"):
            body = json.dumps({"error": "The server is unavailable, retrying shortly", "retryAfter": 5}).encode()
            kind = "application/json"
        else:
            body, kind = b"<html><body><h1>503 Service Unavailable</h1></body></html>", "text/html"
        self.send_response(503)
        self.send_header("Content-Type", kind)
        self.send_header("Retry-After", "5")
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_route_token_is_sent_and_no_node_says_unavailable_retrying(browser, pages):
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        for prefix in ("json", "bare"):
            _Unavailable.hits.clear()
            host = f"127.0.0.1:{proxy.server_address[1]}/{prefix}"
            browser.navigate(make_page(pages, host, "c3BlYw==", route="0123456789abcdef"))
            browser.wait_for(ROOT + ".getAttribute('data-state') === 'waiting'", 10, "the retry overlay")
            shown = state(browser)
            assert shown["message"].startswith("The server is unavailable, retrying"), shown
            assert "Reconnecting in" in shown["detail"]
            assert _Unavailable.hits[0] == f"/{prefix}/spec?progress&route=0123456789abcdef"
            # Reset (clean) carries the token too.
            browser.evaluate(ROOT + ".uassignTerminal.reset()")
            browser.wait_for(ROOT + ".getAttribute('data-close-reason') === 'reset-failed'", 10, "the reset to fail")
            assert f"/{prefix}/spec/clean?async=false&route=0123456789abcdef" in _Unavailable.hits
    finally:
        browser.navigate("about:blank")
        proxy.shutdown()
        proxy.server_close()


def test_network_drop_reconnects_to_the_same_shell(browser, pages, ua):
    proxy = CuttableProxy(ua.port)
    try:
        browser.navigate(make_page(pages, f"127.0.0.1:{proxy.port}", new_spec(ua)))
        wait_open(browser)
        type_line(browser, "MARK=drop$((6*7))")
        time.sleep(0.5)
        proxy.cut(5)  # every connection dropped, new ones refused for 5 s
        browser.wait_for(ROOT + ".getAttribute('data-state') !== 'open'", 10, "the page to notice the drop")
        assert state(browser)["overlay"]
        started = time.monotonic()
        wait_open(browser, timeout=60)
        assert time.monotonic() - started < 40
        type_line(browser, "echo mark=$MARK")
        wait_screen(browser, "mark=drop42")  # reattached within the grace period
    finally:
        proxy.close()


def test_server_restart_reconnects_by_itself(browser, pages):
    server = UaServer(allowed(pages))
    try:
        browser.navigate(make_page(pages, f"127.0.0.1:{server.port}", new_spec(server)))
        wait_open(browser)
        server.stop_process(signal.SIGTERM)  # sessions closed with 1001
        browser.wait_for(ROOT + ".getAttribute('data-state') === 'waiting'", 20, "the restarting overlay")
        assert "restarting" in state(browser)["message"]
        time.sleep(2)
        server.start(port=server.port)
        wait_open(browser, timeout=60)
        type_line(browser, "echo again-$((2+3))")
        wait_screen(browser, "again-5")
    finally:
        browser.navigate("about:blank")
        server.stop()


def test_idle_timeout_offers_reconnect(browser, pages):
    server = UaServer(["--idle-timeout", "3s", *allowed(pages)])
    try:
        browser.navigate(make_page(pages, f"127.0.0.1:{server.port}", new_spec(server)))
        wait_open(browser)
        shown = wait_stopped(browser, "idle", timeout=30)
        assert "nothing happened" in shown["message"] and shown["button"] == "Reconnect"
        click(browser)
        wait_open(browser)
    finally:
        browser.navigate("about:blank")
        server.stop()


# The behaviours of the shared terminal (web/src/ua-terminal.js), checked by
# the same script as ua's own page (tests/browser.rs) runs.
FEATURES = Path(__file__).resolve().parents[3] / "tests" / "browser" / "features.mjs"


def run_features(url: str, checks: list[str]) -> str:
    node = shutil.which("node")
    if node is None or not (FEATURES.parent / "node_modules" / "playwright-core").is_dir():
        message = "node and tests/browser/node_modules (npm ci) are needed"
        if os.environ.get("UA_REQUIRE_BROWSER"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    env = dict(os.environ, CHROMIUM=require_chromium())
    result = subprocess.run([node, str(FEATURES), url, *checks], capture_output=True, text=True, timeout=600, env=env)
    report = result.stdout + result.stderr
    assert result.returncode == 0 and "PASS" in result.stdout, report
    return report


def test_the_shared_terminal_in_the_element(pages, ua):
    url = make_page(pages, f"127.0.0.1:{ua.port}", new_spec(ua))
    report = run_features(url, ["progress", "expiry", "desktop", "phone", "keyboard", "reader", "clipboard", "paste"])
    assert "paste 2097" in report


def test_the_element_says_out_of_memory_with_the_limit(pages, tmp_path):
    small = tmp_path / "assignments" / "small"
    small.mkdir(parents=True)
    (small / "Dockerfile.tmpl").write_text('FROM ua-busybox:latest\nUSER student\nWORKDIR /home/student\nCMD ["/bin/sh"]\n')
    (small / "assignment.json").write_text('{"memoryMB": 48}')
    server = UaServer(allowed(pages), assignments=tmp_path / "assignments")
    try:
        spec = create_spec("small", {}, f"uassign-oom/{uuid.uuid4().hex[:12]}", key=server.key_line)
        os.environ["OOM_MIB"] = "48"
        run_features(make_page(pages, f"127.0.0.1:{server.port}", spec), ["oom"])
    finally:
        os.environ.pop("OOM_MIB", None)
        server.stop()


def test_the_element_warns_before_the_idle_close(pages):
    server = UaServer(["--idle-timeout", "8s", *allowed(pages)])
    try:
        run_features(make_page(pages, f"127.0.0.1:{server.port}", new_spec(server)), ["idle"])
    finally:
        server.stop()

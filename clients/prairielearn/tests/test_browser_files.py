"""Upload and download (web/src/ua-files.js; docs/API.md, "Files in" and
"Graded files") in headless Chromium against a real ua: files picked in the
file input (set over the DevTools protocol) and files dropped on the terminal
land in the WORKDIR as the student; the server's refusals (403, 413) are said
in its words; a download saves the file's bytes; observe mode has no
controls; a reset clears the messages and the check's feedback. In the
element and on ua's own pages (served from scripts/build-web's target/web).

Skipped when Chromium is missing, unless UA_REQUIRE_BROWSER=1 (then it fails).
Fails when Docker is missing.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

import check_assignment
from test_browser import ROOT, allowed, browser, pages, type_line, wait_open, wait_screen  # noqa: F401
from test_browser_pl import render, write_page
from ua_server import REPO, UaServer
from uassign import create_spec, open_instance

WEB = REPO / "target" / "web"
MESSAGES = "[...document.querySelectorAll('.ua-files-message')].map(m => [m.getAttribute('data-kind'), m.textContent])"
# Every test's content: all 256 byte values, so nothing is lost to text decoding.
PAYLOAD = bytes(range(256)) * 40


@pytest.fixture(scope="module")
def ua(pages, tmp_path_factory):  # noqa: F811
    if not (WEB / "ua-files.js").is_file():
        pytest.fail("no browser terminal in target/web: run scripts/build-web", pytrace=False)
    root = check_assignment.write(tmp_path_factory.mktemp("assignments"))
    # A 1 MiB server limit: the server's 413 is reached without big files.
    server = UaServer([*allowed(pages), "--web-dir", str(WEB), "--max-upload-mb", "1"], assignments=root)
    yield server
    server.stop()


def spec(server, assignment="lab.plain"):
    return create_spec(assignment, {"answer": "a-" + uuid.uuid4().hex[:8]},
                       f"uassign-browser-files/{uuid.uuid4().hex[:12]}", key=server.key_line)


def in_container(instance: str, script: str, user: str = "student") -> str:
    done = subprocess.run(["docker", "exec", "-u", user, f"ua-{instance}", "sh", "-c", script],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode(errors="replace")


def wait_messages(b, count: int, timeout: float = 60) -> list:
    """The messages once `count` of them are no longer busy."""
    b.wait_for(f"(() => {{ const m = {MESSAGES}; return m.length >= {count} && m.every(x => x[0] !== 'busy'); }})()",
               timeout, f"{count} upload or download message(s)")
    return b.evaluate(MESSAGES)


def pick_files(b, paths: list[Path]) -> None:
    """Sets the file input's files as a person picking them would."""
    found = b.call("Runtime.evaluate", expression="document.querySelector('.ua-files-input')")
    b.call("DOM.setFileInputFiles", files=[str(p) for p in paths], objectId=found["result"]["objectId"])


def drop(b, target: str, name: str, size_js: str) -> None:
    """A synthetic drop of one file, built in the page, onto `target`."""
    b.evaluate(
        "(() => { const dt = new DataTransfer(); const n = " + size_js + ";"
        " const bytes = new Uint8Array(n); for (let i = 0; i < Math.min(n, 10240); i++) bytes[i] = i % 256;"
        " dt.items.add(new File([bytes], " + json.dumps(name) + "));"
        " const t = " + target + ";"
        " t.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));"
        " t.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true })); })()"
    )


def put_error(server, instance: str, name: str, body: bytes) -> tuple:
    """The server's own answer to the PUT the page makes, for comparison."""
    request = urllib.request.Request(f"{server.url}/instance/{instance}/files?path={name}", data=body, method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def element_page(b, pages, server, sealed: str, **data) -> str:  # noqa: F811
    b.navigate(write_page(pages, render(f"127.0.0.1:{server.port}", sealed, **data), mathjax=False))
    return ROOT


def test_the_element_uploads_picked_and_dropped_files_as_the_student(browser, pages, ua, tmp_path):  # noqa: F811
    element_page(browser, pages, ua, spec(ua))
    wait_open(browser)
    assert browser.evaluate("document.querySelector('.uassign-terminal-toolbar .ua-files-upload').textContent") == "Upload"
    instance = browser.evaluate(ROOT + ".uassignTerminal.instanceID")
    (tmp_path / "notes.txt").write_bytes(PAYLOAD)
    (tmp_path / "a b+c.txt").write_bytes(b"spaces and plus\n")
    pick_files(browser, [tmp_path / "notes.txt", tmp_path / "a b+c.txt"])
    assert wait_messages(browser, 2) == [["done", "Uploaded notes.txt (10.2 kB)."], ["done", "Uploaded a b+c.txt (16 bytes)."]]
    owners = in_container(instance, "stat -c '%U %a %s %n' 'notes.txt' 'a b+c.txt'; od -An -tx1 notes.txt | md5sum")
    assert "student 644 10240 notes.txt" in owners and "student 644 16 a b+c.txt" in owners, owners
    expected = subprocess.run(["od", "-An", "-tx1"], input=PAYLOAD, capture_output=True).stdout
    assert subprocess.run(["md5sum"], input=expected, capture_output=True).stdout.split()[0].decode() in owners

    drop(browser, ROOT + ".querySelector('.ua-screen')", "dropped.bin", "3000")
    assert wait_messages(browser, 3)[2] == ["done", "Uploaded dropped.bin (3.0 kB)."]
    assert in_container(instance, "stat -c '%U %s' dropped.bin").split() == ["student", "3000"]
    type_line(browser, "ls; echo listed-$((2*3))")
    wait_screen(browser, "listed-6")
    # Server text reaches the page as text only.
    assert browser.evaluate("document.querySelectorAll('.ua-files b, .ua-files script, .ua-files img').length") == 0


def test_the_element_says_the_servers_403_and_413_and_refuses_big_files_itself(browser, pages, ua):  # noqa: F811
    element_page(browser, pages, ua, spec(ua))
    wait_open(browser)
    instance = browser.evaluate(ROOT + ".uassignTerminal.instanceID")
    in_container(instance, "chmod 555 /home/student", user="root")
    try:
        status, body = put_error(ua, instance, "locked.txt", b"x")
        assert status == 403 and body["error"], body
        drop(browser, ROOT, "locked.txt", "10")
        assert wait_messages(browser, 1)[0] == ["error", "locked.txt was not uploaded: " + body["error"]]
    finally:
        in_container(instance, "chmod 755 /home/student", user="root")

    status, body = put_error(ua, instance, "big.bin", b"x" * (2 << 20))
    assert status == 413 and body["error"], body
    drop(browser, ROOT, "big.bin", str(2 << 20))
    assert wait_messages(browser, 2)[1] == ["error", "big.bin was not uploaded: " + body["error"]]

    browser.evaluate("window.__puts = 0; const o = XMLHttpRequest.prototype.open;"
                     " XMLHttpRequest.prototype.open = function (...a) { window.__puts++; return o.apply(this, a); }")
    drop(browser, ROOT, "huge.bin", str(17 << 20))
    said = wait_messages(browser, 3)[2]
    assert said == ["error", "huge.bin was not uploaded: it is 17.8 MB, over the limit of 16 MiB per file."], said
    assert browser.evaluate("window.__puts") == 0
    assert in_container(instance, "ls").split() == []


def test_the_element_downloads_a_file_and_says_when_it_cannot(browser, pages, ua, tmp_path):  # noqa: F811
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.call("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
    element_page(browser, pages, ua, spec(ua))
    wait_open(browser)
    instance = browser.evaluate(ROOT + ".uassignTerminal.instanceID")
    pick = tmp_path / "data.bin"
    pick.write_bytes(PAYLOAD)
    pick_files(browser, [pick])
    wait_messages(browser, 1)
    in_container(instance, "mkdir -p sub && cp data.bin sub/copy.bin && echo secret > locked && chmod 000 locked"
                 " && dd if=/dev/zero of=big bs=1024 count=1100 2>/dev/null")

    def download(path: str, count: int) -> list:
        browser.evaluate("(() => { const p = document.querySelector('.ua-files-path'); p.value = " + json.dumps(path) + ";"
                         " document.querySelector('.ua-files-download').click(); })()")
        return wait_messages(browser, count)[count - 1]

    assert download("sub/copy.bin", 2) == ["done", "Downloaded sub/copy.bin (10.2 kB)."]
    saved = downloads / "copy.bin"
    deadline = time.monotonic() + 30
    while not (saved.is_file() and saved.stat().st_size == len(PAYLOAD)):
        assert time.monotonic() < deadline, f"no download in {list(downloads.iterdir())}"
        time.sleep(0.1)
    assert saved.read_bytes() == PAYLOAD
    no_file = "that you can read: it does not exist, is a folder, or you may not read it."
    assert download("nope.txt", 3) == ["error", "There is no file nope.txt " + no_file]
    assert download("locked", 4) == ["error", "There is no file locked " + no_file]
    big = download("big", 5)
    assert big[0] == "error" and big[1].startswith("big was not downloaded: The file big is over the 1 MiB limit"), big
    assert download("  ", 6)[0] == "error"


def test_observe_mode_has_no_upload_or_download(browser, pages, ua):  # noqa: F811
    sealed = spec(ua)
    instance = open_instance(sealed, ua.url)
    try:
        # No one is attached: the views find the instance, then say it is not running.
        element_page(browser, pages, ua, sealed, editable=False)
        browser.wait_for(ROOT + ".uassignTerminal && ['open', 'stopped'].includes(" + ROOT + ".uassignTerminal.state)",
                         60, "the read-only view")
        assert browser.evaluate(ROOT + ".getAttribute('data-mode')") == "observe"
        assert browser.evaluate("document.querySelectorAll('.ua-files-controls, .ua-files').length") == 0
        browser.navigate(f"{ua.url}/instance/{instance}?mode=observe")
        browser.wait_for("window.uaSession && ['open', 'stopped'].includes(window.uaSession.state)", 60,
                         "the page's read-only view")
        assert browser.evaluate("window.uaFiles === null && document.querySelectorAll('.ua-files-controls').length === 0")
    finally:
        browser.navigate("about:blank")


PAGE_OPEN = "window.uaSession && window.uaSession.state === 'open'"


def test_the_servers_page_uploads_then_a_reset_clears_the_messages_and_the_check(browser, ua, tmp_path):  # noqa: F811
    instance = open_instance(spec(ua), ua.url)
    browser.navigate(f"{ua.url}/instance/{instance}")
    browser.wait_for(PAGE_OPEN, 60, "the page's terminal")
    assert browser.evaluate("!!document.querySelector('.ua-toolbar .ua-files-upload')")
    (tmp_path / "page.txt").write_bytes(b"from the page\n")
    pick_files(browser, [tmp_path / "page.txt"])
    assert wait_messages(browser, 1) == [["done", "Uploaded page.txt (14 bytes)."]]
    assert in_container(instance, "stat -c '%U %s' page.txt").split() == ["student", "14"]
    drop(browser, "document.getElementById('terminal')", "dropped.txt", "5")
    assert wait_messages(browser, 2)[1] == ["done", "Uploaded dropped.txt (5 bytes)."]

    # The start page: a check's feedback and the messages go with a reset.
    browser.navigate(f"{ua.url}/start#{spec(ua, check_assignment.NAME)}")
    browser.wait_for(PAGE_OPEN, 60, "the start page's terminal")
    browser.wait_for("!document.querySelector('.ua-check-button').hidden", 20, "the Check my work button")
    browser.evaluate("document.querySelector('.ua-check-button').click()")
    browser.wait_for("document.querySelector('.ua-check').getAttribute('aria-busy') === 'false'", 60, "the check")
    assert not browser.evaluate("document.querySelector('.ua-check').hidden")
    drop(browser, "document.getElementById('terminal')", "before-reset.txt", "5")
    wait_messages(browser, 1)
    first = browser.evaluate("window.uaSession.instanceID")
    browser.evaluate("document.querySelector('[data-tool=reset]').click()")
    browser.evaluate("document.querySelector('.ua-action').click()")
    browser.wait_for(f"window.uaSession.instanceID && window.uaSession.instanceID !== {json.dumps(first)}", 60, "a fresh copy")
    browser.wait_for(PAGE_OPEN, 60, "the fresh terminal")
    assert browser.evaluate("document.querySelector('.ua-check').hidden")
    assert browser.evaluate("document.querySelector('.ua-files').hidden && " + MESSAGES + ".length === 0")
    browser.navigate("about:blank")


def test_the_elements_reset_clears_the_check_and_the_messages(browser, pages, ua):  # noqa: F811
    element_page(browser, pages, ua, spec(ua, check_assignment.NAME), attrs='check="true"')
    wait_open(browser)
    button = "document.querySelector('.uassign-terminal-check-button')"
    browser.wait_for("!" + button + ".hidden", 20, "the Check my work button")
    browser.evaluate(button + ".click()")
    browser.wait_for("document.querySelector('.ua-check').getAttribute('aria-busy') === 'false'", 60, "the check")
    assert not browser.evaluate("document.querySelector('.ua-check').hidden")
    drop(browser, ROOT, "before-reset.txt", "5")
    wait_messages(browser, 1)
    first = browser.evaluate(ROOT + ".uassignTerminal.instanceID")
    browser.evaluate("document.querySelector('.uassign-terminal-reset').click()")
    browser.evaluate(ROOT + ".querySelector('.uassign-terminal-action').click()")
    browser.wait_for(ROOT + f".uassignTerminal.instanceID !== {json.dumps(first)}", 60, "a new instance")
    wait_open(browser)
    assert browser.evaluate("document.querySelector('.ua-check').hidden")
    assert browser.evaluate("document.querySelector('.ua-files').hidden && " + MESSAGES + ".length === 0")
    instance = browser.evaluate(ROOT + ".uassignTerminal.instanceID")
    assert in_container(instance, "ls").split() == []

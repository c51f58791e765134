"""The element's terminals as tabs (web/src/ua-tabs.js; docs/API.md,
"Terminals") in headless Chromium against a real ua: "+" opens terminal "2",
which types into its own shell while "main" keeps its own; the arrow keys
move between the tabs; a reload finds both again; × hangs "2" up (the server
no longer lists it); after a restart of ua both tabs are back in the same
shells; Reset (asked from tab 2) shows its question in main and leaves
only main; a read-only view shows the running terminals' tabs without + or ×;
and tests/browser/features.mjs's "tabs" check (a fifo between two tabs, the
refusal of a fifth terminal in words) on the element.

Skipped when Chromium is missing, unless UA_REQUIRE_BROWSER=1 (then it fails).
Fails when Docker is missing.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
import uuid

import pytest

import uassign_terminal as element
from conftest import ELEMENT_DIR
from test_browser import (  # noqa: F401
    ROOT, allowed, browser, make_page, new_spec, pages, run_features, type_line, wait_open, wait_screen,
)
from ua_server import UaServer

SESSION = ROOT + ".uassignTerminal"
ARROWS = {"ArrowRight": 39, "ArrowLeft": 37}


@pytest.fixture(scope="module")
def ua(pages):  # noqa: F811
    server = UaServer(allowed(pages))
    yield server
    server.stop()


def page(pages, host: str, spec: str, editable: bool = True) -> str:  # noqa: F811
    """A question's page with the element (editable=False: the read-only view)."""
    info = json.loads((ELEMENT_DIR / "info.json").read_text())["dependencies"]
    html = element.render(
        f'<uassign_terminal host="{host}" insecure="true" height="24em"></uassign_terminal>',
        {"params": {"spec": spec}, "panel": "question", "editable": editable},
    )
    head = ['<meta charset="utf-8">']
    head += [f'<link rel="stylesheet" href="element/{css}">' for css in info["elementStyles"]]
    head += [f'<script src="element/{js}"></script>' for js in info["elementScripts"]]
    name = f"tabs-{uuid.uuid4().hex[:8]}.html"
    (pages.dir / name).write_text(
        "<!doctype html><html><head>" + "\n".join(head) + "</head><body>\n" + html + "\n</body></html>"
    )
    return f"{pages.url}/{name}"


def tab(name: str) -> str:
    return f"document.querySelector('.ua-tab[data-terminal=\"{name}\"]')"


def tab_session(name: str) -> str:
    return f"{SESSION}.tabs.find({json.dumps(name)}).session"


def tab_screen(name: str) -> str:
    return (
        "(() => { const e = " + SESSION + ".tabs.find(" + json.dumps(name) + "); if (!e) return '';"
        " const b = e.session.term.buffer.active; const out = [];"
        " for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));"
        " return out.join('\\n'); })()"
    )


def wait_tab_open(b, name: str, timeout: float = 60) -> None:
    tabs = f"{SESSION}.tabs.entries.map(e => [e.name, e.session.state, e.session.root.getAttribute('data-close-reason')])"
    try:
        b.wait_for(f"!!{SESSION}.tabs.find({json.dumps(name)}) && {tab_session(name)}.state === 'open'",
                   timeout, f"terminal {name} to open")
    except AssertionError as e:
        raise AssertionError(f"{e}\ntabs: {b.evaluate('JSON.stringify(' + tabs + ')')}") from None


def type_in(b, name: str, text: str) -> None:
    b.evaluate(f"{tab_session(name)}.term.focus()")
    b.insert_text(text)
    b.press_enter()


def press(b, key: str) -> None:
    codes = {"key": key, "code": key, "windowsVirtualKeyCode": ARROWS[key], "nativeVirtualKeyCode": ARROWS[key]}
    b.call("Input.dispatchKeyEvent", type="keyDown", **codes)
    b.call("Input.dispatchKeyEvent", type="keyUp", **codes)


def running(server: UaServer, instance: str) -> list[str]:
    with urllib.request.urlopen(f"{server.url}/instance/{instance}/terminals", timeout=10) as r:
        return [t["name"] for t in json.load(r)["terminals"] if t["running"]]


def wait_running(server: UaServer, instance: str, names: list[str], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while running(server, instance) != names:
        assert time.monotonic() < deadline, f"running {running(server, instance)}, not {names}"
        time.sleep(0.2)


def test_a_second_tab_types_in_its_own_shell_and_comes_back_after_a_reload(browser, pages, ua):  # noqa: F811
    url = page(pages, f"127.0.0.1:{ua.port}", new_spec(ua))
    browser.navigate(url)
    wait_open(browser)
    assert browser.evaluate(f"{tab('main')}.getAttribute('aria-selected')") == "true"
    browser.evaluate("document.querySelector('.ua-tab-new').click()")
    wait_tab_open(browser, "2")
    assert browser.evaluate(f"{tab('2')}.getAttribute('aria-selected')") == "true"
    type_in(browser, "2", "echo second-$((20+2)); TAB=two")
    browser.wait_for(tab_screen("2") + ".includes('second-22')", 20, "the output in tab 2")
    assert "second-22" not in browser.evaluate(tab_screen("main"))
    instance = browser.evaluate(f"{SESSION}.instanceID")
    wait_running(ua, instance, ["2", "main"])
    # The keyboard: Left shows main, Right tab 2 again; the tab keeps the focus.
    browser.evaluate(f"{tab('2')}.focus()")
    press(browser, "ArrowLeft")
    browser.wait_for(f"{tab('main')}.getAttribute('aria-selected') === 'true' && document.activeElement === {tab('main')}",
                     5, "ArrowLeft to show main")
    type_line(browser, "echo first-$((1+1))")
    wait_screen(browser, "first-2")
    browser.evaluate(f"{tab('main')}.focus()")
    press(browser, "ArrowRight")
    browser.wait_for(f"{tab('2')}.getAttribute('aria-selected') === 'true'", 5, "ArrowRight to show tab 2")
    # A reload finds both, terminal 2 being the same shell.
    browser.navigate(url + "?reload")
    wait_open(browser)
    wait_tab_open(browser, "2")
    browser.evaluate(f"{tab('2')}.click()")
    type_in(browser, "2", "echo tab=$TAB")
    browser.wait_for(tab_screen("2") + ".includes('tab=two')", 20, "the same shell in tab 2 after the reload")
    # × hangs terminal 2 up.
    browser.evaluate(f"{tab('2')}.parentNode.querySelector('.ua-tab-close').click()")
    browser.wait_for(f"!{tab('2')} && {tab('main')}.getAttribute('aria-selected') === 'true'", 10, "tab 2 to close")
    wait_running(ua, instance, ["main"])


def test_the_read_only_view_has_the_tabs_without_new_or_close(browser, pages, ua):  # noqa: F811
    spec = new_spec(ua)
    browser.navigate(page(pages, f"127.0.0.1:{ua.port}", spec))
    wait_open(browser)
    browser.evaluate("document.querySelector('.ua-tab-new').click()")
    wait_tab_open(browser, "2")
    type_in(browser, "2", "echo watched-$((3*3))")
    browser.wait_for(tab_screen("2") + ".includes('watched-9')", 20, "the student's output in tab 2")
    browser.navigate(page(pages, f"127.0.0.1:{ua.port}", spec, editable=False))
    browser.wait_for(ROOT + ".getAttribute('data-mode') === 'observe'", 10, "the read-only view")
    wait_tab_open(browser, "2")
    browser.wait_for(tab_screen("2") + ".includes('watched-9')", 20, "the observer sees tab 2's output")
    assert browser.evaluate("document.querySelectorAll('.ua-tab-new, .ua-tab-close').length") == 0
    assert browser.evaluate(f"{tab_session('2')}.term.options.disableStdin") is True


def test_after_a_restart_of_ua_both_tabs_are_back_in_their_shells(browser, pages):  # noqa: F811
    server = UaServer(allowed(pages))
    try:
        browser.navigate(page(pages, f"127.0.0.1:{server.port}", new_spec(server)))
        wait_open(browser)
        browser.evaluate("document.querySelector('.ua-tab-new').click()")
        wait_tab_open(browser, "2")
        type_in(browser, "2", "KEPT=tab$((2*2))")
        time.sleep(0.5)
        server.stop_process(signal.SIGTERM)  # every session closed with 1001
        browser.wait_for(f"{tab_session('2')}.state === 'waiting'", 20, "tab 2 waiting for the server")
        time.sleep(2)
        server.start(port=server.port)
        wait_open(browser, timeout=60)
        wait_tab_open(browser, "2")
        browser.evaluate(f"{tab('2')}.click()")
        type_in(browser, "2", "echo kept=$KEPT")
        browser.wait_for(tab_screen("2") + ".includes('kept=tab4')", 30, "the same shell in tab 2 after the restart")
        browser.evaluate(f"{tab('main')}.click()")
        type_line(browser, "echo main-$((5+5))")
        wait_screen(browser, "main-10")
    finally:
        browser.navigate("about:blank")
        server.stop()


def test_the_features_tabs_check_in_the_element(pages, ua):  # noqa: F811
    report = run_features(make_page(pages, f"127.0.0.1:{ua.port}", new_spec(ua)), ["tabs"])
    assert "Close one first" in report


def test_reset_from_a_second_tab_asks_in_main_and_leaves_only_main(browser, pages, ua):  # noqa: F811
    browser.navigate(page(pages, f"127.0.0.1:{ua.port}", new_spec(ua)))
    wait_open(browser)
    old = browser.evaluate(f"{SESSION}.instanceID")
    browser.evaluate("document.querySelector('.ua-tab-new').click()")
    wait_tab_open(browser, "2")
    browser.evaluate("document.querySelector('.uassign-terminal-reset').click()")
    browser.wait_for(f"{ROOT}.getAttribute('data-confirm') === 'reset' && {tab('main')}.getAttribute('aria-selected') === 'true'"
                     " && !document.querySelector('[data-terminal=\"main\"][role=tabpanel]').hidden", 10,
                     "the question in main's tab")
    browser.evaluate(f"{ROOT}.querySelector('.uassign-terminal-action').click()")
    wait_open(browser)
    assert browser.evaluate(f"{SESSION}.instanceID") != old
    assert browser.evaluate(f"{SESSION}.tabs.entries.map(e => e.name).join()") == "main"
    assert browser.evaluate("document.querySelectorAll('.ua-tab').length") == 1
    type_line(browser, "echo fresh-$((4+4))")
    wait_screen(browser, "fresh-8")

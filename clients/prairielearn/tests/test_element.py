"""The element's files and its Python controller (no browser: see test_browser.py)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import lxml.html
import pytest

import uassign_terminal as element
from conftest import ELEMENT_DIR

SPEC = "c2VhbGVkK3NwZWMvd2l0aD1wYWRkaW5n" + "A" * 40 + "=="


def question_data(**params):
    return {"params": {"spec": SPEC, **params}, "panel": "question", "editable": True}


def rendered(html: str, data=None):
    out = element.render(html, data or question_data())
    root = lxml.html.fragment_fromstring(out, create_parent="div")
    return out, root


def terminal_div(root):
    (div,) = root.xpath(".//div[contains(concat(' ', normalize-space(@class), ' '), ' uassign-terminal ')]")
    return div


def test_info_json_dependencies_exist_in_order():
    info = json.loads((ELEMENT_DIR / "info.json").read_text())
    assert (ELEMENT_DIR / info["controller"]).is_file()
    deps = info["dependencies"]
    for kind in ("elementScripts", "elementStyles"):
        for name in deps[kind]:
            assert (ELEMENT_DIR / name).is_file(), name
    assert deps["elementScripts"] == ["vendor/xterm-bundle.js", "vendor/ua-terminal.js", "vendor/ua-tabs.js", "vendor/ua-check.js", "vendor/ua-files.js", "uassign_terminal.js"]
    assert (ELEMENT_DIR / "vendor" / "LICENSE-xterm").is_file()


def test_javascript_syntax():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the browser test loads the script for real)")
    for name in ("uassign_terminal.js", "vendor/ua-terminal.js", "vendor/ua-tabs.js", "vendor/ua-check.js", "vendor/ua-files.js", "vendor/xterm-bundle.js"):
        result = subprocess.run([node, "--check", str(ELEMENT_DIR / name)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_vendor_bundle_ignores_amd_and_commonjs():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = """
const vm = require("vm"), fs = require("fs");
const ctx = { navigator: { userAgent: "test", platform: "Linux" }, exports: {}, module: { exports: {} } };
ctx.globalThis = ctx; ctx.self = ctx; ctx.window = ctx;
ctx.define = function () { throw new Error("captured by AMD"); }; ctx.define.amd = {};
vm.createContext(ctx);
vm.runInContext(fs.readFileSync(process.argv[1], "utf8"), ctx);
console.log(JSON.stringify([typeof ctx.Terminal, typeof ctx.FitAddon.FitAddon, Object.keys(ctx.module.exports).length]));
"""
    result = subprocess.run(
        [node, "-e", script, str(ELEMENT_DIR / "vendor" / "xterm-bundle.js")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == ["function", "function", 0]


def test_renders_the_attributes():
    html, root = rendered('<uassign_terminal host="ua.example.edu"></uassign_terminal>')
    div = terminal_div(root)
    assert div.get("data-spec") == SPEC
    assert div.get("data-http-base") == "https://ua.example.edu"
    assert div.get("data-ws-base") == "wss://ua.example.edu"
    assert div.get("style") == "height: 28em;"
    assert div.get("id").startswith("uassign-terminal-")
    assert "Starting your terminal" in html


def test_insecure_and_host_forms():
    def bases(attrs):
        div = terminal_div(rendered(f"<uassign_terminal {attrs}></uassign_terminal>")[1])
        return div.get("data-http-base"), div.get("data-ws-base")

    assert bases('host="127.0.0.1:8000" insecure="true"') == ("http://127.0.0.1:8000", "ws://127.0.0.1:8000")
    assert bases('host="example.edu/ua/" insecure="false"') == ("https://example.edu/ua", "wss://example.edu/ua")
    assert bases('host="https://ua.example.edu:8443/x"') == ("https://ua.example.edu:8443/x", "wss://ua.example.edu:8443/x")
    assert bases('host="http://localhost:8000" insecure="true"') == ("http://localhost:8000", "ws://localhost:8000")


def test_spec_name_and_height():
    data = question_data(other="T3RoZXI=")
    div = terminal_div(rendered('<uassign_terminal host="h" spec_name="other" height="480px"></uassign_terminal>', data)[1])
    assert div.get("data-spec") == "T3RoZXI="
    assert div.get("style") == "height: 480px;"
    div = terminal_div(rendered('<uassign_terminal host="h" spec-name="other"></uassign_terminal>', data)[1])
    assert div.get("data-spec") == "T3RoZXI="


def test_the_route_token_from_server_py_reaches_the_page():
    div = terminal_div(rendered('<uassign_terminal host="h"></uassign_terminal>')[1])
    assert div.get("data-route") == ""
    data = question_data(spec_route="fff92af7fd67f703", other="T3RoZXI=", other_route="0123456789abcdef")
    div = terminal_div(rendered('<uassign_terminal host="h"></uassign_terminal>', data)[1])
    assert div.get("data-route") == "fff92af7fd67f703"
    div = terminal_div(rendered('<uassign_terminal host="h" spec_name="other"></uassign_terminal>', data)[1])
    assert div.get("data-route") == "0123456789abcdef"


@pytest.mark.parametrize("route", ["", "76B129F1EFBAD080", "76b129f1", 42, '"><script>alert(1)</script>'])
def test_a_bad_route_token_fails_in_prepare_and_never_reaches_the_page(route):
    data = question_data(spec_route=route)
    with pytest.raises(ValueError, match="route token"):
        element.prepare('<uassign_terminal host="h"></uassign_terminal>', data)
    html, _ = rendered('<uassign_terminal host="h"></uassign_terminal>', data)
    assert "not a route token" in html and "data-route" not in html


@pytest.mark.parametrize("params", [{}, {"spec": ""}, {"spec": 42}, {"spec": '"><script>alert(1)</script>'}])
def test_missing_or_bad_spec_fails_in_prepare(params):
    data = {**question_data(), "params": params}
    with pytest.raises(ValueError, match="uassign_terminal"):
        element.prepare('<uassign_terminal host="h"></uassign_terminal>', data)


def test_a_bad_spec_never_reaches_the_page():
    html, _ = rendered('<uassign_terminal host="h"></uassign_terminal>', question_data(spec='"><script>alert(1)</script>'))
    assert "not a sealed spec" in html and "<script>alert" not in html and "data-spec" not in html


def test_mathjax_ignores_the_terminal_and_each_element_mounts_itself():
    html, root = rendered('<uassign_terminal host="h"></uassign_terminal>')
    div = terminal_div(root)
    assert "mathjax_ignore" in div.get("class").split()
    (wrapper,) = root.xpath(".//div[contains(@class, 'uassign-terminal-element')]")
    assert "mathjax_ignore" in wrapper.get("class").split()
    (script,) = wrapper.xpath(".//script")
    assert f'document.getElementById("{div.get("id")}")' in script.text


@pytest.mark.parametrize("flags", [{"editable": False}, {"editable": True, "manual_grading": True}])
def test_staff_views_are_read_only(flags):
    html, root = rendered(
        '<uassign_terminal host="h" graded-files="hello.c"></uassign_terminal>', {**question_data(), **flags}
    )
    div = terminal_div(root)
    assert div.get("data-mode") == "observe"
    assert not root.xpath(".//button[contains(@class, 'uassign-terminal-reset')]")
    assert not root.xpath(".//input[@type='hidden']")


def test_students_get_reset_and_the_files_field():
    html, root = rendered('<uassign_terminal host="h" graded-files="hello.c, sub/notes.txt"></uassign_terminal>')
    div = terminal_div(root)
    assert div.get("data-mode") == "terminal"
    assert json.loads(div.get("data-graded-files")) == ["hello.c", "sub/notes.txt"]
    (field,) = root.xpath(".//input[@type='hidden']")
    assert field.get("name") == div.get("data-files-field") == "_uassign_files_spec"
    assert root.xpath(".//button[contains(@class, 'uassign-terminal-reset')]")
    _, root = rendered('<uassign_terminal host="h" reset="false"></uassign_terminal>')
    assert not root.xpath(".//button[contains(@class, 'uassign-terminal-reset')]")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def parsed(raw, names="hello.c, notes.txt"):
    data = {**question_data(), "raw_submitted_answers": {"_uassign_files_spec": raw}, "submitted_answers": {}, "format_errors": {}}
    if raw is None:
        data["raw_submitted_answers"] = {}
    element.parse(f'<uassign_terminal host="h" graded-files="{names}"></uassign_terminal>', data)
    return data


def test_parse_puts_graded_files_in_submitted_answers():
    raw = json.dumps({"files": [{"name": "hello.c", "contents": b64("int main;")}, {"name": "notes.txt", "contents": b64("n")},
                                {"name": "/etc/passwd", "contents": b64("root")}], "missing": []})
    data = parsed(raw)
    assert data["submitted_answers"]["_files"] == [{"name": "hello.c", "contents": b64("int main;")}, {"name": "notes.txt", "contents": b64("n")}]
    assert data["format_errors"] == {}
    assert "_uassign_files_spec" not in data["submitted_answers"]


def test_parse_reports_missing_files_and_failures_as_format_errors():
    data = parsed(json.dumps({"files": [{"name": "hello.c", "contents": b64("x")}], "missing": ["notes.txt"]}))
    assert [f["name"] for f in data["submitted_answers"]["_files"]] == ["hello.c"]
    assert "notes.txt was not found" in data["format_errors"]["_files"][0]
    for raw in (None, "", "not json", "[]", json.dumps({"files": [{"name": "hello.c", "contents": "!!"}]})):
        assert data_errors(raw), raw
    data = parsed(json.dumps({"error": "Docker is unreachable; try again shortly"}))
    assert "Docker is unreachable" in data["format_errors"]["_files"][0]


def data_errors(raw):
    return parsed(raw, "hello.c")["format_errors"].get("_files")


def test_the_submission_panel_lists_the_submitted_files():
    data = {**question_data(), "panel": "submission", "submitted_answers": {"_files": [{"name": "hello.c", "contents": b64("abc")}]}}
    html = element.render('<uassign_terminal host="h" graded-files="hello.c"></uassign_terminal>', data)
    assert "hello.c" in html and "3 bytes" in html
    data["panel"] = "question"
    data["editable"] = False
    html = element.render('<uassign_terminal host="h" graded-files="hello.c"></uassign_terminal>', data)
    assert "uassign-terminal-file-contents" in html and "abc" in html


@pytest.mark.parametrize(
    "html",
    [
        "<uassign_terminal></uassign_terminal>",
        '<uassign_terminal host=""></uassign_terminal>',
        '<uassign_terminal host="http://ua.example.edu"></uassign_terminal>',
        '<uassign_terminal host="ftp://ua.example.edu"></uassign_terminal>',
        '<uassign_terminal host="h" insecure="maybe"></uassign_terminal>',
        '<uassign_terminal host="h" colour="red"></uassign_terminal>',
        '<uassign_terminal host="h" height="1em; background: red"></uassign_terminal>',
        '<uassign_terminal host="h" graded-files="a.c, a.c"></uassign_terminal>',
        '<uassign_terminal host="h" reset="sometimes"></uassign_terminal>',
    ],
)
def test_author_mistakes_fail_in_prepare(html):
    with pytest.raises(ValueError):
        element.prepare(html, question_data())


def test_only_the_question_panel_has_a_terminal():
    html = '<uassign_terminal host="h"></uassign_terminal>'
    element.prepare(html, question_data())
    for panel in ("submission", "answer"):
        assert element.render(html, {**question_data(), "panel": panel}) == ""
    html = '<uassign_terminal host="h" graded-files="a.c"></uassign_terminal>'
    assert element.render(html, {**question_data(), "panel": "answer"}) == ""

"""The element's files and its Python controller (no browser: see test_browser.py)."""

from __future__ import annotations

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
    assert deps["elementScripts"] == ["vendor/xterm-bundle.js", "uassign_terminal.js"]
    assert (ELEMENT_DIR / "vendor" / "LICENSE-xterm").is_file()


def test_javascript_syntax():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the browser test loads the script for real)")
    for name in ("uassign_terminal.js", "vendor/xterm-bundle.js"):
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


def test_missing_or_bad_spec_shows_an_error():
    html, _ = rendered('<uassign_terminal host="h"></uassign_terminal>', {"params": {}, "panel": "question"})
    assert "alert" in html and 'data[&quot;params&quot;][&quot;spec&quot;]' in html and "data-spec" not in html
    html, _ = rendered('<uassign_terminal host="h"></uassign_terminal>', question_data(spec='"><script>alert(1)</script>'))
    assert "not a sealed spec" in html and "<script>" not in html and "data-spec" not in html


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

"""The element and docs/PRAIRIELEARN.md's question run by PrairieLearn's own Python side
(its question-phase runner and `prairielearn` helpers, from the test peer),
without PyNaCl as in PrairieLearn, against a real ua on Docker:
generate (server.py) -> prepare -> render (every panel, editable or not) ->
parse (graded files read from the container).

Needs PrairieLearn's Python: UA_PL_PYTHON (a Python 3.13 with the peer's
pyproject dependencies and chevron, without PyNaCl; scripts/test makes it)
and the peer (UA_PL_PEER, default /work/shared/peers/prairielearn). Fails,
never skips, when they are missing.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from conftest import ELEMENT_DIR
from ua_server import UaServer

HERE = Path(__file__).resolve().parent
UASSIGN_SRC = HERE.parents[1] / "python" / "src" / "uassign"
PEER = Path(os.environ.get("UA_PL_PEER", HERE.parents[3] / "shared" / "peers" / "prairielearn"))


def pl_python() -> str:
    python = os.environ.get("UA_PL_PYTHON")
    if not python or not Path(python).exists():
        pytest.fail("set UA_PL_PYTHON to PrairieLearn's Python (scripts/test makes target/pl-venv)", pytrace=False)
    if not (PEER / "apps" / "prairielearn" / "python" / "prairielearn").is_dir():
        pytest.fail(f"no PrairieLearn peer at {PEER} (set UA_PL_PEER)", pytrace=False)
    return python


@pytest.fixture(scope="module")
def ua():
    server = UaServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def course(tmp_path_factory, ua):
    """A course as an author sets it up from docs/PRAIRIELEARN.md."""
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(ELEMENT_DIR, root / "elements" / "uassign_terminal")
    shutil.copytree(UASSIGN_SRC, root / "serverFilesCourse" / "uassign", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "serverFilesCourse" / "ua").mkdir()
    (root / "serverFilesCourse" / "ua" / "key").write_text(ua.key_line + "\n")
    question = root / "questions" / "hello-c"
    question.mkdir(parents=True)
    shutil.copy(HERE / "pl_course" / "server.py", question / "server.py")
    html = (HERE / "pl_course" / "question.html").read_text().replace("UA_HOST", f"127.0.0.1:{ua.port}")
    (question / "question.html").write_text(html)
    return root


def run_phase(course: Path, phase: str, data: dict, question: str = "hello-c") -> dict:
    request = {"phase": phase, "data": data, "course": str(course), "question": question}
    result = subprocess.run(
        [pl_python(), str(HERE / "pl_runner.py")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "UA_PL_PEER": str(PEER)},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def base_data(course: Path) -> dict:
    return {
        "params": {},
        "correct_answers": {},
        "variant_seed": 1234,
        "options": {"server_files_course_path": str(course / "serverFilesCourse")},
        "preferences": {},
    }


def render_data(data: dict, panel: str, editable: bool = True, manual_grading: bool = False, **extra) -> dict:
    out = {
        **data,
        "submitted_answers": {},
        "format_errors": {},
        "raw_submitted_answers": {},
        "partial_scores": {},
        "score": 0,
        "feedback": {},
        "editable": editable,
        "manual_grading": manual_grading,
        "ai_grading": False,
        "panel": panel,
        "num_valid_submissions": 0,
        **extra,
    }
    out["options"] = {**data["options"], "course_element_files_url": "/elements", "course_element_extension_files_url": "/ext"}
    return out


def test_a_question_through_prairielearns_phases(course, ua):
    generated = run_phase(course, "generate", base_data(course))
    assert "error" not in generated, generated.get("error")
    data = generated["data"]
    sealed = data["params"]["spec"]
    prepared = run_phase(course, "prepare", data)
    assert "error" not in prepared, prepared.get("error")
    data = prepared["data"]

    page = run_phase(course, "render", render_data(data, "question"))["result"]
    assert f'data-spec="{sealed}"' in page and 'data-mode="terminal"' in page
    assert "mathjax_ignore" in page and "uassign-terminal-reset" in page
    staff = run_phase(course, "render", render_data(data, "question", editable=False))["result"]
    assert 'data-mode="observe"' in staff and "uassign-terminal-reset" not in staff
    grading = run_phase(course, "render", render_data(data, "question", manual_grading=True))["result"]
    assert 'data-mode="observe"' in grading
    answer = run_phase(course, "render", render_data(data, "answer"))["result"]
    assert "uassign" not in answer and "In the terminal" in answer  # the rest of the page stays

    # The student writes hello.c in the real container; the browser would
    # fetch it at submission exactly like this.
    instance = json.loads(urllib.request.urlopen(urllib.request.Request(f"{ua.url}/spec", data=sealed.encode())).read())["instanceID"]
    with connect(f"ws://127.0.0.1:{ua.port}/instance/{instance}/ws") as ws:
        assert json.loads(ws.recv(timeout=30)) == ["setup", {}]
        ws.send(json.dumps(["stdin", "printf 'int main(void){return 0;}\\n' > hello.c; echo w$((1+1))rote\r"]))
        seen, deadline = "", time.monotonic() + 20
        while "w2rote" not in seen:
            message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            seen += message[1] if message[0] == "stdout" else ""
    files = urllib.request.urlopen(f"{ua.url}/instance/{instance}/files?path=hello.c").read().decode()
    raw = {"_uassign_files_spec": files}
    parse_data = {**data, "submitted_answers": dict(raw), "raw_submitted_answers": raw, "format_errors": {}, "feedback": {}, "gradable": True}
    parsed = run_phase(course, "parse", parse_data)
    assert "error" not in parsed, parsed.get("error")
    submitted = parsed["data"]["submitted_answers"]
    assert [f["name"] for f in submitted["_files"]] == ["hello.c"]
    assert base64.b64decode(submitted["_files"][0]["contents"]) == b"int main(void){return 0;}\n"
    assert parsed["data"]["format_errors"] == {}

    shown = run_phase(course, "render", render_data(data, "submission", submitted_answers=submitted))["result"]
    assert "hello.c" in shown and "26 bytes" in shown
    closed = run_phase(course, "render", render_data(data, "question", editable=False, submitted_answers=submitted))["result"]
    assert "int main(void){return 0;}" in closed


def test_author_mistakes_fail_in_prepare_for_the_staff(course):
    data = base_data(course)  # generate never ran: no spec
    out = run_phase(course, "prepare", data)
    assert "No sealed spec" in out["error"] and "Error occurred while processing element" in out["error"]

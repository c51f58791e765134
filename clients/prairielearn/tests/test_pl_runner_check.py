"""A question graded by its assignment's check (issue 24, item 4), run by
PrairieLearn's own Python side (its question-phase runner, without PyNaCl)
against a real ua on Docker: generate (server.py) -> prepare -> render ->
the student's work and the check as the browser runs them -> parse ->
grade (server.py's grade() calling uassign.grade_check) -> the submission
panel; and the refusals: another variant's result, one older than the variant.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request

import pytest
from websockets.sync.client import connect

import check_assignment
from conftest import ELEMENT_DIR
from test_pl_runner import HERE, UASSIGN_SRC, base_data, render_data, run_phase
from ua_server import UaServer


@pytest.fixture(scope="module")
def ua(tmp_path_factory):
    server = UaServer(assignments=check_assignment.write(tmp_path_factory.mktemp("assignments")))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def course(tmp_path_factory, ua):
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(ELEMENT_DIR, root / "elements" / "uassign_terminal")
    shutil.copytree(UASSIGN_SRC, root / "serverFilesCourse" / "uassign", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "serverFilesCourse" / "ua").mkdir()
    (root / "serverFilesCourse" / "ua" / "key").write_text(f"# course key\n{ua.key_line}\n")
    question = root / "questions" / "checked"
    question.mkdir(parents=True)
    shutil.copy(HERE / "pl_course" / "checked_server.py", question / "server.py")
    html = (HERE / "pl_course" / "checked_question.html").read_text().replace("UA_HOST", f"127.0.0.1:{ua.port}")
    (question / "question.html").write_text(html)
    return root


def phase(course, name: str, data: dict) -> dict:
    out = run_phase(course, name, data, question="checked")
    assert "error" not in out, out.get("error")
    return out


def variant(course, seed: int) -> dict:
    data = base_data(course)
    data["variant_seed"] = seed
    return phase(course, "prepare", phase(course, "generate", data)["data"])["data"]


def post(url: str) -> dict:
    return json.loads(urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=120).read())


def the_students_check(ua, sealed: str) -> str:
    """What the browser puts into _uassign_check_spec: the student makes
    `done`, then the check runs in their container."""
    instance = post_spec(ua, sealed)
    with connect(f"ws://127.0.0.1:{ua.port}/instance/{instance}/ws") as ws:
        assert json.loads(ws.recv(timeout=30)) == ["setup", {}]
        ws.send(json.dumps(["stdin", "touch done; echo m$((6*7))ade\r"]))
        seen, deadline = "", time.monotonic() + 20
        while "m42ade" not in seen:
            message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            seen += message[1] if message[0] == "stdout" else ""
    answer = post(f"{ua.url}/instance/{instance}/check")
    assert answer["score"] == 1, answer
    return json.dumps({"result": answer["result"], "output": answer["output"]})


def post_spec(ua, sealed: str) -> str:
    request = urllib.request.Request(f"{ua.url}/spec", data=sealed.encode())
    return json.loads(urllib.request.urlopen(request, timeout=300).read())["instanceID"]


def submitted(data: dict, field: str) -> dict:
    raw = {"_uassign_check_spec": field}
    return {**render_data(data, "question"), "raw_submitted_answers": raw, "submitted_answers": dict(raw), "gradable": True}


def test_a_question_graded_by_its_check_through_prairielearns_phases(course, ua):
    data = variant(course, 77)
    page = phase(course, "render", render_data(data, "question"))["result"]
    assert 'data-check-field="_uassign_check_spec"' in page and 'name="_uassign_check_spec"' in page
    assert "uassign-terminal-check-button" in page and "the-answer-42" not in page

    field = the_students_check(ua, data["params"]["spec"])
    parsed = phase(course, "parse", submitted(data, field))["data"]
    assert parsed["format_errors"] == {}
    assert set(parsed["submitted_answers"]["_uassign_check_spec"]) == {"result", "output"}
    graded = phase(course, "grade", parsed)["data"]
    assert graded["score"] == 1
    feedback = graded["partial_scores"]["_uassign_check_spec"]["feedback"]
    assert feedback["tests"][0] == {"name": "done file", "passed": True, "message": "found done"}
    assert "checked for [redacted]" in feedback["output"] and "the-answer-42" not in json.dumps(graded["feedback"])

    shown = phase(course, "render", {**render_data(graded, "submission"), "partial_scores": graded["partial_scores"],
                                     "submitted_answers": graded["submitted_answers"]})["result"]
    assert "100%" in shown and "uassign-terminal-check-pass" in shown and "done file" in shown

    # The same result, submitted to another variant (another spec), or to
    # this variant regenerated after the check ran: refused, score 0.
    other = variant(course, 78)
    refused = phase(course, "grade", phase(course, "parse", submitted(other, field))["data"])["data"]
    assert refused["score"] == 0 and "another spec" in refused["partial_scores"]["_uassign_check_spec"]["feedback"]["error"]
    newer = {**parsed, "params": {**parsed["params"], "spec_created": int(time.time()) + 60}}
    stale = phase(course, "grade", newer)["data"]
    assert stale["score"] == 0 and "older than this variant" in stale["feedback"]["spec_check"]["error"]


def test_a_check_that_did_not_run_is_a_format_error_in_parse(course):
    data = variant(course, 79)
    parsed = phase(course, "parse", submitted(data, json.dumps({"error": "This assignment has no check"})))["data"]
    assert "could not be checked: This assignment has no check" in parsed["format_errors"]["_uassign_check_spec"]

"""uassign's checks (docs/API.md, "Checks"): open_result, run_check and
grade_check, first with results sealed here in the API's format, then
against a real `ua serve` on Docker with an assignment that has a check."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
import uuid

import pytest

import check_assignment
import uassign
from uassign import CheckResultError, UaError, create_spec, grade_check, open_instance, open_result, run_check
from ua_server import Terminal, UaServer


@pytest.fixture(autouse=True)
def no_key_env(monkeypatch):
    monkeypatch.delenv("UA_KEY", raising=False)
    monkeypatch.delenv("UA_KEY_FILE", raising=False)
    monkeypatch.delenv("UA_SERVER", raising=False)


def new_key() -> str:
    return base64.b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).decode()


def seal(key: str, value, purpose="result") -> str:
    """Sealed as the server seals a result: padded JSON, the result subkey."""
    raw = (value if isinstance(value, str) else json.dumps(value)).encode()
    raw += b" " * (-len(raw) % 256)
    box_key = uassign.subkey(key, purpose) if purpose else uassign.parse_key_line(key)
    return base64.b64encode(uassign.seal_bytes(box_key, raw)).decode()


def result(spec_id="course/q/1", **extra) -> dict:
    value = {
        "specID": spec_id,
        "assignmentName": "lab.checked",
        "score": 0.5,
        "tests": [{"name": "prints 42", "passed": False, "message": "it printed 41"}, {"name": "ok", "passed": True}],
        "checkedAt": int(time.time()),
        "instance": "h-1",
    }
    value.update(extra)
    return value


# ------------------------------------------------------------ open_result, sealed here


def test_a_good_result_opens_with_its_extra_fields():
    key = new_key()
    opened = open_result(key, seal(key, result(extra_field=[1, 2])), "course/q/1")
    assert opened["score"] == 0.5 and opened["tests"][0]["message"] == "it printed 41"
    assert opened["extra_field"] == [1, 2] and opened["instance"] == "h-1"
    assert open_result(uassign.parse_key_line(key), seal(key, result()))["specID"] == "course/q/1"


def test_forged_altered_or_garbage_results_are_refused():
    key = new_key()
    raw = bytearray(base64.b64decode(seal(key, result())))
    raw[40] ^= 1
    for bad in (base64.b64encode(bytes(raw)).decode(), "not base64!", "", "AAAA"):
        with pytest.raises(CheckResultError, match="forged"):
            open_result(key, bad)
    with pytest.raises(CheckResultError):
        open_result(key, None)  # type: ignore[arg-type]


def test_a_wrong_key_refuses_and_the_error_is_a_ua_error():
    with pytest.raises(CheckResultError) as e:
        open_result(new_key(), seal(new_key(), result()))
    assert isinstance(e.value, UaError) and e.value.status is None


def test_a_spec_or_a_sealed_output_never_opens_as_a_result():
    key = new_key()
    spec = create_spec("lab.checked", spec_id="course/q/1", key=key)
    for sealed in (spec, seal(key, result(), purpose=None), seal(key, result(), purpose="output")):
        with pytest.raises(CheckResultError, match="forged"):
            open_result(key, sealed)


def test_not_a_result_is_refused():
    key = new_key()
    for value in ("not json", "[1]", {"specID": "x"}, result(score=1.5), result(score=True), result(tests=[{"name": 1}])):
        with pytest.raises(CheckResultError, match="not a check result"):
            open_result(key, seal(key, value))


def test_another_spec_or_assignment_is_refused():
    key = new_key()
    sealed = seal(key, result("course/q/other"))
    with pytest.raises(CheckResultError, match="another spec"):
        open_result(key, sealed, "course/q/1")
    with pytest.raises(CheckResultError, match="another assignment"):
        open_result(key, sealed, assignment_name="lab.other")
    assert open_result(key, sealed, "course/q/other", "lab/checked")["score"] == 0.5


def test_every_key_of_a_file_is_tried(tmp_path, monkeypatch):
    new, old = new_key(), new_key()
    sealed = seal(old, result())
    assert open_result([new, old], sealed)["score"] == 0.5
    with pytest.raises(CheckResultError):
        open_result([new], sealed)
    path = tmp_path / "key"
    path.write_text(f"# keys\n{new}\n\n{old}\n")
    assert uassign.read_keys(path) == [uassign.parse_key_line(new), uassign.parse_key_line(old)]
    monkeypatch.setenv("UA_KEY_FILE", str(path))
    assert open_result(None, sealed)["score"] == 0.5
    path.write_text(f"{new}\nnot a key\n")
    with pytest.raises(UaError, match="line 2"):
        uassign.read_keys(path)


# ------------------------------------------------------------ grade_check, sealed here


def pl_data(key: str, submitted, created=None, spec_id="course/q/1") -> dict:
    created = int(time.time()) - 60 if created is None else created
    return {
        "params": {"spec": create_spec("lab.checked", spec_id=spec_id, key=key), "spec_created": created},
        "submitted_answers": {} if submitted is None else {"_uassign_check_spec": submitted},
        "partial_scores": {},
        "feedback": {},
        "score": 0,
    }


def test_grade_check_sets_the_score_and_the_tests():
    key = new_key()
    data = pl_data(key, {"result": seal(key, result()), "output": "3 files\n"})
    assert grade_check(data, key)["score"] == 0.5
    assert data["score"] == 0.5
    feedback = data["feedback"]["spec_check"]
    assert feedback["tests"] == [
        {"name": "prints 42", "passed": False, "message": "it printed 41"},
        {"name": "ok", "passed": True, "message": ""},
    ]
    assert feedback["output"] == "3 files\n" and feedback["score"] == 0.5
    assert data["partial_scores"]["_uassign_check_spec"] == {"score": 0.5, "weight": 1, "feedback": feedback}


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda key: None, "No check result"),
        (lambda key: {"result": seal(new_key(), result())}, "refused: the check result is forged"),
        (lambda key: {"result": seal(key, result("course/q/2"))}, "another spec"),
        (lambda key: {"result": seal(key, result(assignmentName="lab.x"))}, "another assignment"),
        (lambda key: {"result": seal(key, result(checkedAt=int(time.time()) - 3600))}, "older than this variant"),
        (lambda key: "not json", "No check result"),
    ],
)
def test_grade_check_refuses_scores_zero_and_says_why(make, words):
    key = new_key()
    data = pl_data(key, make(key))
    data["score"] = 1
    assert grade_check(data, key) is None
    assert data["score"] == 0
    assert words in data["feedback"]["spec_check"]["error"]
    assert data["partial_scores"]["_uassign_check_spec"]["score"] == 0


def test_grade_check_author_mistakes_raise():
    key = new_key()
    data = pl_data(key, {"result": seal(key, result())})
    with pytest.raises(UaError, match="not a spec sealed with the key"):
        grade_check(data, new_key())
    del data["params"]["spec_created"]
    with pytest.raises(UaError, match="spec_created"):
        grade_check(data, key)
    assert grade_check(data, key, not_before=0)["score"] == 0.5
    data["params"]["other"], data["params"]["other_created"] = data["params"].pop("spec"), 0
    data["submitted_answers"]["_uassign_check_other"] = data["submitted_answers"].pop("_uassign_check_spec")
    assert grade_check(data, key, spec_name="other")["score"] == 0.5 and data["feedback"]["other_check"]["score"] == 0.5


# ------------------------------------------------------------ run_check's errors, from a stub


class _Stub(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, body = 429, {"error": "The last check of this instance ended under 10 s ago; try again in 7 s", "retryAfter": 7}
        if "/nocheck/" in self.path:
            status, body = 404, {"error": "This assignment has no check"}
        elif "/bare/" in self.path:
            status, body = 200, {"output": ""}
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


def test_run_check_errors_carry_the_servers_sentence():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(UaError) as e:
            run_check(base, "abc")
        assert e.value.status == 429 and e.value.retry_after == 7 and "try again in 7 s" in str(e.value)
        with pytest.raises(UaError, match="has no check") as e:
            run_check(base + "/nocheck", "x")
        with pytest.raises(UaError, match="without a check result"):
            run_check(base + "/bare", "x")
        with pytest.raises(ValueError):
            run_check(base, "")
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------ against a real server


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    server = UaServer(assignments=check_assignment.write(tmp_path_factory.mktemp("assignments")))
    yield server
    server.stop()


def test_a_real_check_result_opens_and_follows_the_students_work(checked):
    spec_id = f"uassign-test/check/{uuid.uuid4().hex[:12]}"
    secret = "answer-" + uuid.uuid4().hex[:8]
    sealed = create_spec(check_assignment.NAME, {"answer": secret}, spec_id, key=checked.key_line)
    instance = open_instance(sealed, checked.url)
    first = run_check(checked.url, instance)
    assert first["score"] == 0 and first["tests"][0] == {"name": "done file", "passed": False, "message": "no file done yet"}
    assert "checked for [redacted]" in first["output"] and secret not in json.dumps(first)
    opened = open_result(checked.key_line, first["result"], spec_id, check_assignment.NAME)
    assert opened["score"] == 0 and opened["tests"] == first["tests"] and abs(opened["checkedAt"] - time.time()) < 60
    with pytest.raises(CheckResultError):
        open_result(new_key(), first["result"])
    with pytest.raises(CheckResultError, match="another spec"):
        open_result(checked.key_line, first["result"], spec_id + "x")

    with pytest.raises(UaError) as soon:
        run_check(checked.url, instance)
    assert soon.value.status == 429 and soon.value.retry_after is not None

    term = Terminal(uassign.instance_ws_url(checked.url, instance))
    try:
        term.stdin("touch done && echo m$((6*7))ade\r")
        term.read_until("m42ade")
    finally:
        term.close()
    time.sleep(1.5)
    second = run_check(checked.url, instance)
    assert second["score"] == 1 and second["tests"][0]["passed"] is True
    assert open_result(checked.key_line, second["result"], spec_id)["score"] == 1


def test_a_check_that_writes_no_verdict_is_422_with_the_output_for_the_key_holder(checked):
    secret = "answer-" + uuid.uuid4().hex[:8]
    sealed = create_spec("lab.broken_check", {"answer": secret}, f"uassign-test/broken/{uuid.uuid4().hex}", key=checked.key_line)
    instance = open_instance(sealed, checked.url)
    with pytest.raises(UaError) as student:
        run_check(checked.url, instance)
    assert student.value.status == 422 and student.value.output is None
    assert secret not in str(student.value) and isinstance(student.value.body.get("sealedOutput"), str)
    time.sleep(1.5)
    with pytest.raises(UaError) as author:
        run_check(checked.url, instance, key=checked.key_line)
    assert author.value.status == 422 and f"broken for {secret}" in author.value.output


def test_no_check_and_no_instance_are_404(checked):
    plain = open_instance(create_spec("lab.plain", spec_id=f"uassign-test/plain/{uuid.uuid4().hex}", key=checked.key_line), checked.url)
    for instance in (plain, "0" * 32):
        with pytest.raises(UaError) as e:
            run_check(checked.url, instance)
        assert e.value.status == 404 and e.value.message

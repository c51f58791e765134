"""uassign against a real `ua` binary and a real `ua serve` on Docker.

Tests that talk to a server use the session fixture `ua` (tests/conftest.py),
which FAILS when Docker or the base image is missing.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import re
import socket
import threading
import time
import uuid

import nacl.exceptions
import nacl.secret
import nacl.utils
import pytest
from websockets.exceptions import InvalidStatus

import uassign
from uassign import UaError, clean_spec, create_spec, instance_ws_url, open_instance
from ua_server import Terminal, UaServer, http_get, new_key_file, run_ua

GREETING = "hello from the uassign tests ✓"


def unique(prefix: str = "t") -> str:
    return f"uassign-test/{prefix}/{uuid.uuid4().hex[:12]}"


def ua_open(sealed: str, key_file) -> dict:
    result = run_ua("open", "--key-file", str(key_file), input=sealed + "\n")
    assert result.returncode == 0, f"ua open refused the spec: {result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture(autouse=True)
def no_key_env(monkeypatch):
    """Tests choose their key explicitly; the caller's environment must not leak in."""
    monkeypatch.delenv("UA_KEY", raising=False)
    monkeypatch.delenv("UA_KEY_FILE", raising=False)
    monkeypatch.delenv("UA_SERVER", raising=False)


@pytest.fixture
def key(tmp_path):
    return new_key_file(tmp_path)  # (path, line)


# ------------------------------------------------------------ sealing (ua binary, no server)


def test_create_spec_opens_with_ua_open(key):
    path, line = key
    data = {"greeting": GREETING, "secret": "hunter2", "n": [1, 2, {"x": None}]}
    sealed = create_spec("demo.busybox", data, spec_id="course1/q42/v7", not_after=1893456000, key=line)
    assert isinstance(sealed, str) and "\n" not in sealed
    raw = base64.b64decode(sealed, validate=True)
    assert len(raw) > nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES
    assert ua_open(sealed, path) == {
        "specID": "course1/q42/v7",
        "assignmentName": "demo.busybox",
        "data": data,
        "notAfter": 1893456000,
    }


def test_each_seal_has_a_fresh_nonce_and_defaults(key):
    path, line = key
    a = create_spec("demo.busybox", key=line)
    b = create_spec("demo.busybox", key=line)
    assert a[:32] != b[:32]
    opened_a, opened_b = ua_open(a, path), ua_open(b, path)
    assert opened_a["data"] == {} and "notAfter" not in opened_a
    assert re.fullmatch(r"[0-9a-f]{32}", opened_a["specID"])
    assert opened_a["specID"] != opened_b["specID"]


def test_the_sealed_length_does_not_tell_the_answers_length(key):
    path, line = key
    lengths = {len(create_spec("demo.busybox", {"answer": a}, spec_id="s", key=line)) for a in ["7", "1337", "31415926"]}
    assert len(lengths) == 1, lengths
    assert ua_open(create_spec("demo.busybox", {"answer": "7"}, spec_id="s", key=line), path)["data"] == {"answer": "7"}


def test_not_after_accepts_datetimes_and_timedeltas(key):
    path, line = key
    aware = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert ua_open(create_spec("a.b", not_after=aware, key=line), path)["notAfter"] == int(aware.timestamp())
    naive = dt.datetime(2030, 1, 2, 3, 4, 5)  # local time, as datetime.timestamp() reads it
    assert ua_open(create_spec("a.b", not_after=naive, key=line), path)["notAfter"] == int(naive.timestamp())
    soon = ua_open(create_spec("a.b", not_after=dt.timedelta(hours=1), key=line), path)["notAfter"]
    assert abs(soon - (time.time() + 3600)) < 5
    assert ua_open(create_spec("a.b", not_after=1893456000.9, key=line), path)["notAfter"] == 1893456000


def test_raw_key_bytes(key):
    path, line = key
    sealed = create_spec("demo/busybox", {"k": 1}, spec_id="raw", key=base64.b64decode(line))
    assert ua_open(sealed, path)["assignmentName"] == "demo/busybox"
    sealed = create_spec("demo/busybox", spec_id="raw", key=line.encode())  # key line as bytes
    assert ua_open(sealed, path)["specID"] == "raw"


def test_key_from_UA_KEY(key, monkeypatch):
    path, line = key
    monkeypatch.setenv("UA_KEY", f"  {line}\n")
    assert ua_open(create_spec("demo.busybox", {"from": "env"}, spec_id="env"), path)["data"] == {"from": "env"}


def test_key_from_UA_KEY_FILE_uses_the_first_key(tmp_path, monkeypatch):
    first_path, first = new_key_file(tmp_path, "first")
    _, second = new_key_file(tmp_path, "second")
    rotated = tmp_path / "rotated"
    rotated.write_text(f"# ua keys: the first seals\n\n   \n{first}\n# the previous key\n{second}\n")
    rotated.chmod(0o600)
    monkeypatch.setenv("UA_KEY_FILE", str(rotated))
    sealed = create_spec("demo.busybox", spec_id="file")
    assert ua_open(sealed, rotated)["specID"] == "file"
    assert ua_open(sealed, first_path)["specID"] == "file"  # sealed with the first key, not the second
    with pytest.raises(nacl.exceptions.CryptoError):
        nacl.secret.SecretBox(base64.b64decode(second)).decrypt(base64.b64decode(sealed))


def test_read_key_file(tmp_path):
    path, line = new_key_file(tmp_path)
    assert uassign.read_key_file(path) == base64.b64decode(line)
    assert uassign.read_key_file(str(path)) == base64.b64decode(line)
    sealed = create_spec("a.b", spec_id="rk", key=uassign.read_key_file(path))
    assert ua_open(sealed, path)["specID"] == "rk"
    bad = tmp_path / "bad"
    bad.write_text("# comment\nnot-base64!\n")
    with pytest.raises(UaError, match="bad: the ua key is not standard base64"):
        uassign.read_key_file(bad)


def test_UA_KEY_wins_over_UA_KEY_FILE(tmp_path, monkeypatch):
    env_path, env_line = new_key_file(tmp_path, "env")
    file_path, _ = new_key_file(tmp_path, "file")
    monkeypatch.setenv("UA_KEY", env_line)
    monkeypatch.setenv("UA_KEY_FILE", str(file_path))
    assert ua_open(create_spec("a.b", spec_id="both"), env_path)["specID"] == "both"


def test_missing_or_malformed_keys_raise_ua_error(tmp_path, monkeypatch):
    with pytest.raises(UaError, match="no ua key") as e:
        create_spec("a.b")
    assert e.value.status is None
    with pytest.raises(UaError, match="44-character"):
        create_spec("a.b", key="not a key")
    with pytest.raises(UaError, match="32"):
        create_spec("a.b", key=b"short")
    monkeypatch.setenv("UA_KEY_FILE", str(tmp_path / "nope"))
    with pytest.raises(UaError, match="cannot read the ua key file"):
        create_spec("a.b")
    empty = tmp_path / "empty"
    empty.write_text("# nothing here\n\n")
    monkeypatch.setenv("UA_KEY_FILE", str(empty))
    with pytest.raises(UaError, match="holds no key"):
        create_spec("a.b")


def test_bad_arguments(key):
    _, line = key
    with pytest.raises(ValueError):
        create_spec("../etc", key=line)
    with pytest.raises(ValueError):
        create_spec("a..b", key=line)
    with pytest.raises(ValueError):
        create_spec("a.b", spec_id="", key=line)
    with pytest.raises(ValueError):
        create_spec("a.b", spec_id="x" * 201, key=line)
    create_spec("a.b", spec_id="é" * 200, key=line)  # 200 characters is fine
    with pytest.raises(TypeError):
        create_spec("a.b", {"x": object()}, key=line)


def test_instance_ws_url():
    assert instance_ws_url("https://ua.example.edu/", "ab") == "wss://ua.example.edu/instance/ab/ws"
    assert instance_ws_url("http://127.0.0.1:8000", "ab") == "ws://127.0.0.1:8000/instance/ab/ws"
    assert instance_ws_url("https://x.edu/ua/", "ab") == "wss://x.edu/ua/instance/ab/ws"
    with pytest.raises(UaError):
        instance_ws_url("ua.example.edu", "ab")


# ------------------------------------------------------------ against a real server


def test_open_instance_is_idempotent_per_spec_id(ua):
    spec_id = unique("idem")
    first = open_instance(create_spec("demo.busybox", {"greeting": GREETING}, spec_id, key=ua.key_line), ua.url)
    assert re.fullmatch(r"[0-9a-f]{32}", first), first
    # A new seal (new nonce) of the same spec ID, even with other data, is the same spec.
    again = open_instance(create_spec("demo.busybox", {"greeting": "other"}, spec_id, key=ua.key_line), ua.url + "/")
    assert again == first
    other = open_instance(create_spec("demo.busybox", {"greeting": GREETING}, unique("idem2"), key=ua.key_line), ua.url)
    assert other != first and re.fullmatch(r"[0-9a-f]{32}", other)


def test_websocket_terminal_works(ua):
    sealed = create_spec("demo.busybox", {"greeting": GREETING}, unique("ws"), key=ua.key_line)
    instance_id = open_instance(sealed, ua.url)
    term = Terminal(instance_ws_url(ua.url, instance_id))
    try:
        term.ws.send(json.dumps(["set_size", 30, 100]))
        term.read_until("~ $ ")
        assert GREETING in term.output  # the motd rendered from the spec's data
        term.stdin("echo hi-$((1+1))\r")
        term.read_until("hi-2")
        term.stdin("stty size\r")
        term.read_until("30 100")
    finally:
        term.close()


def test_wrong_key_is_400_with_a_message(ua, tmp_path):
    _, other_line = new_key_file(tmp_path, "other")
    sealed = create_spec("demo.busybox", {"greeting": "s3cret-answer"}, unique("wrongkey"), key=other_line)
    with pytest.raises(UaError) as e:
        open_instance(sealed, ua.url)
    assert e.value.status == 400
    assert e.value.message and "s3cret-answer" not in e.value.message
    assert e.value.retry_after is None
    assert "400" in str(e.value)
    with pytest.raises(UaError) as e:
        clean_spec(sealed, ua.url)
    assert e.value.status == 400


def test_garbage_is_400(ua):
    with pytest.raises(UaError) as e:
        open_instance("this is not a sealed spec", ua.url)
    assert e.value.status == 400 and e.value.message


def test_unknown_assignment_is_404(ua):
    with pytest.raises(UaError) as e:
        open_instance(create_spec("no.such_assignment", spec_id=unique("404"), key=ua.key_line), ua.url)
    assert e.value.status == 404
    assert e.value.message


def test_expired_spec_is_410(ua):
    sealed = create_spec("demo.busybox", {"greeting": "x"}, unique("410"), not_after=int(time.time()) - 10, key=ua.key_line)
    with pytest.raises(UaError) as e:
        open_instance(sealed, ua.url)
    assert e.value.status == 410 and e.value.message


def test_undefined_template_variable_is_422(ua):
    sealed = create_spec("demo.busybox", {"not_greeting": "x"}, unique("422"), key=ua.key_line)
    with pytest.raises(UaError) as e:
        open_instance(sealed, ua.url)
    assert e.value.status == 422 and e.value.message


def test_clean_spec_removes_the_instance(ua):
    spec_id = unique("clean")
    sealed = create_spec("demo.busybox", {"greeting": GREETING}, spec_id, key=ua.key_line)
    instance_id = open_instance(sealed, ua.url)
    url = instance_ws_url(ua.url, instance_id)
    term = Terminal(url)
    term.read_until("~ $ ")
    # Any seal of the same spec ID cleans it.
    assert clean_spec(create_spec("demo.busybox", {"greeting": "x"}, spec_id, key=ua.key_line), ua.url, wait=True) == 1
    assert term.wait_closed() == 4003
    status, body = http_get(f"{ua.url}/instance/{instance_id}/ws")
    assert status == 404 and body["error"]
    with pytest.raises(InvalidStatus) as e:
        Terminal(url)
    assert e.value.response.status_code == 404
    assert clean_spec(sealed, ua.url) == 0
    # Sending the spec again makes a new instance.
    fresh = open_instance(sealed, ua.url)
    assert fresh != instance_id
    assert clean_spec(sealed, ua.url, wait=False) is None
    deadline = time.monotonic() + 30
    while http_get(f"{ua.url}/instance/{fresh}/ws")[0] != 404:
        assert time.monotonic() < deadline, "async clean did not remove the instance"
        time.sleep(0.2)


def test_server_url_forms(ua):
    sealed = create_spec("demo.busybox", {"greeting": "x"}, unique("url"), key=ua.key_line)
    assert open_instance(sealed, ua.url + "/") == open_instance(sealed, f"http://localhost:{ua.port}")


def test_server_from_UA_SERVER(ua, monkeypatch):
    monkeypatch.setenv("UA_SERVER", ua.url)
    with pytest.raises(UaError) as e:
        open_instance(create_spec("no.such", spec_id=unique("env"), key=ua.key_line))
    assert e.value.status == 404


def test_at_capacity_is_503_with_retry_after():
    server = UaServer(["--max-instances", "1"])
    try:
        open_instance(create_spec("demo.busybox", {"greeting": "one"}, unique("cap1"), key=server.key_line), server.url)
        with pytest.raises(UaError) as e:
            open_instance(create_spec("demo.busybox", {"greeting": "two"}, unique("cap2"), key=server.key_line), server.url)
        assert e.value.status == 503
        assert e.value.message
        assert e.value.retry_after is not None and e.value.retry_after > 0
    finally:
        server.stop()


# ------------------------------------------------------------ network failures (loopback only)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_ua_error():
    port = _closed_port()
    with pytest.raises(UaError) as e:
        open_instance("x", f"http://127.0.0.1:{port}")
    assert e.value.status is None
    assert "cannot reach the ua server" in e.value.message and str(port) in e.value.message


def test_bad_server_url_is_ua_error():
    with pytest.raises(UaError, match="http:// or https://"):
        open_instance("x", "ua.example.edu")
    with pytest.raises(UaError, match="no ua server"):
        open_instance("x")


class _Stub(http.server.BaseHTTPRequestHandler):
    """Answers like a reverse proxy or an overloaded server would."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.startswith("/proxy/spec"):
            body, status, headers = b"<html>502 Bad Gateway</html>", 502, {"Content-Type": "text/html"}
        elif self.path.startswith("/busy/spec"):
            body, status = json.dumps({"error": "the server is at capacity; try again shortly"}).encode(), 503
            headers = {"Content-Type": "application/json", "Retry-After": "7"}
        elif self.path.startswith("/slow/spec"):
            time.sleep(2)
            body, status, headers = b"{}", 200, {}
        else:
            body, status, headers = b'{"nothing": 1}', 200, {"Content-Type": "application/json"}
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_non_json_error_answers(stub):
    with pytest.raises(UaError) as e:
        open_instance("x", stub + "/proxy")
    assert e.value.status == 502 and "502" in e.value.message


def test_retry_after_is_parsed_and_path_prefix_kept(stub):
    with pytest.raises(UaError) as e:
        open_instance("x", stub + "/busy/")
    assert e.value.status == 503 and e.value.retry_after == 7
    assert e.value.message == "the server is at capacity; try again shortly"


def test_answer_without_instance_id(stub):
    with pytest.raises(UaError, match="without an instanceID"):
        open_instance("x", stub)
    with pytest.raises(UaError, match="count of cleaned"):
        clean_spec("x", stub)


def test_timeout_is_ua_error(stub):
    with pytest.raises(UaError, match="did not answer within"):
        open_instance("x", stub + "/slow", timeout=0.5)


def test_version():
    assert uassign.__version__


def test_keep_until_is_sealed_as_keepUntil(key):
    path, line = key
    sealed = create_spec("demo.busybox", spec_id=unique("keep"), key=line, keep_until=dt.timedelta(days=14))
    opened = ua_open(sealed, path)
    assert abs(opened["keepUntil"] - (time.time() + 14 * 86400)) < 60
    assert "keepUntil" not in ua_open(create_spec("demo.busybox", spec_id=unique("nokeep"), key=line), path)


def test_a_failed_build_shows_its_output_to_the_key_holder_only(key, tmp_path):
    broken = tmp_path / "assignments" / "lab" / "broken"
    broken.mkdir(parents=True)
    (broken / "Dockerfile.tmpl").write_text(
        "FROM ua-busybox:latest\nRUN echo {{ data.secret | shell }} && exit 3\n"
    )
    server = UaServer(assignments=tmp_path / "assignments")
    try:
        secret = "the-answer-" + uuid.uuid4().hex[:8]
        sealed = create_spec("lab.broken", {"secret": secret}, unique("broken"), key=server.key_line)
        with pytest.raises(UaError) as student:
            open_instance(sealed, server.url)
        assert student.value.status == 422
        assert student.value.output is None
        assert secret not in str(student.value) and secret not in json.dumps(student.value.body)
        assert isinstance(student.value.body["sealedOutput"], str)
        with pytest.raises(UaError) as author:
            open_instance(sealed, server.url, key=server.key_line)
        assert secret in author.value.output
        assert secret in str(author.value)
    finally:
        server.stop()


def test_a_sealed_output_echoing_a_spec_does_not_open_as_one(key, tmp_path):
    """Issue 20, item 5: a setup echoes the student's submission, a forged
    spec of another student; its sealedOutput posted to /spec is refused
    (it once returned the victim's instance), and still opens as output."""
    echo = tmp_path / "assignments" / "lab" / "echo"
    echo.mkdir(parents=True)
    (echo / "Dockerfile").write_text("FROM ua-busybox:latest\n")
    (echo / "setup.sh.tmpl").write_text("printf '%s\\n' {{ data.submission | shell }}\nexit 1\n")
    ok = tmp_path / "assignments" / "lab" / "ok"
    ok.mkdir(parents=True)
    (ok / "Dockerfile").write_text("FROM ua-busybox:latest\n")
    server = UaServer(assignments=tmp_path / "assignments")
    try:
        victim_spec = create_spec("lab.ok", spec_id="victim", key=server.key_line)
        victim = open_instance(victim_spec, server.url)
        forged = json.dumps({"specID": "victim", "assignmentName": "lab.ok"})
        attack = create_spec("lab.echo", {"submission": forged}, unique("attacker"), key=server.key_line)
        with pytest.raises(UaError) as failed:
            open_instance(attack, server.url, key=server.key_line)
        assert failed.value.status == 422
        assert failed.value.output == forged
        with pytest.raises(UaError) as replayed:
            open_instance(failed.value.body["sealedOutput"], server.url)
        assert replayed.value.status == 400
        assert victim not in json.dumps(replayed.value.body)
        assert open_instance(victim_spec, server.url) == victim
    finally:
        server.stop()

"""The route token (docs/API.md, "Nodes and routing"): uassign computes it
as the contract and `ua seal --route` do, and sends it as `?route=`."""

from __future__ import annotations

import base64
import http.server
import json
import threading

import pytest

import uassign
from uassign import clean_spec, create_spec, open_instance, route_token
from ua_server import new_key_file, run_ua

CONTRACT_KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture(autouse=True)
def no_key_env(monkeypatch):
    monkeypatch.delenv("UA_KEY", raising=False)
    monkeypatch.delenv("UA_KEY_FILE", raising=False)


def test_the_contract_test_vector():
    assert route_token("course1/q42/variant-7f3a", key=CONTRACT_KEY) == "fff92af7fd67f703"
    assert route_token("é", key=CONTRACT_KEY) == "d8902e8e65a94982"
    assert route_token("é", key=bytes(range(32))) == "d8902e8e65a94982"
    with pytest.raises(ValueError):
        route_token("", key=CONTRACT_KEY)
    with pytest.raises(uassign.UaError, match="no ua key"):
        route_token("x")


def test_the_subkey_test_vectors():
    """docs/API.md, "Subkeys"."""
    vectors = {
        "output": "22e033cde54f6a3d7f89176c5bcbda9480064cd2e04b335a5c22eebe9ef5ed89",
        "result": "8c016dbc71ffe818f82e5460fc7a6f67f93b4b8c3e2d98a59d76530388f67461",
        "route": "8a3a8b8ecef22a9053d350bdbeeacaa50453950ff8406f17e20cd089908b1e7f",
    }
    for purpose, want in vectors.items():
        assert uassign.subkey(CONTRACT_KEY, purpose).hex() == want
        assert uassign.subkey(bytes(range(32)), purpose).hex() == want
    with pytest.raises(ValueError):
        uassign.subkey(CONTRACT_KEY, "spec")


def test_the_same_token_as_ua_seal_route(tmp_path):
    path, line = new_key_file(tmp_path)
    spec = {"specID": "course1/q1/ünïcode", "assignmentName": "demo.busybox"}
    result = run_ua("seal", "--route", "--key-file", str(path), input=json.dumps(spec))
    assert result.returncode == 0, result.stderr
    sealed, route_line = result.stdout.splitlines()
    assert route_line == "route=" + route_token(spec["specID"], key=line)
    # And the key file's first key is the one that counts.
    assert uassign._route_of(sealed, line) == route_token(spec["specID"], key=line)


class _Recorder(http.server.BaseHTTPRequestHandler):
    paths: list = []

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Recorder.paths.append(self.path)
        answer = {"instanceID": "a-" + "0" * 32, "cleaned": 1}
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    _Recorder.paths = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ua", _Recorder.paths
    server.shutdown()
    server.server_close()


def test_open_and_clean_send_the_route_when_they_hold_the_key(recorder, monkeypatch):
    url, paths = recorder
    sealed = create_spec("demo.busybox", spec_id="course1/q42/variant-7f3a", key=CONTRACT_KEY)
    assert open_instance(sealed, url, key=CONTRACT_KEY) == "a-" + "0" * 32
    assert clean_spec(sealed, url, key=CONTRACT_KEY) == 1
    assert clean_spec(sealed, url, wait=False, key=CONTRACT_KEY) is None
    monkeypatch.setenv("UA_KEY", CONTRACT_KEY)  # the key from the environment works too
    open_instance(sealed, url)
    assert paths == [
        "/ua/spec?route=fff92af7fd67f703",
        "/ua/spec/clean?async=false&route=fff92af7fd67f703",
        "/ua/spec/clean?route=fff92af7fd67f703",
        "/ua/spec?route=fff92af7fd67f703",
    ]


def test_without_a_key_no_route_and_an_explicit_route_wins(recorder, tmp_path):
    url, paths = recorder
    sealed = create_spec("demo.busybox", spec_id="s", key=CONTRACT_KEY)
    open_instance(sealed, url)
    _, other_key = new_key_file(tmp_path)
    open_instance(sealed, url, key=other_key)  # a key that does not open it
    open_instance(sealed, url, route="0123456789abcdef", key=CONTRACT_KEY)
    clean_spec(sealed, url, route="fedcba9876543210")
    assert paths == [
        "/ua/spec",
        "/ua/spec",
        "/ua/spec?route=0123456789abcdef",
        "/ua/spec/clean?async=false&route=fedcba9876543210",
    ]

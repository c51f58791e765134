"""The pure-Python secretbox (used when PyNaCl is absent) against libsodium
(through PyNaCl, installed for the tests) both ways, and against a real ua."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import nacl.exceptions
import nacl.secret
import pytest

import uassign
from uassign import _secretbox
from ua_server import new_key_file, run_ua

SRC = Path(__file__).resolve().parents[1] / "src"
LENGTHS = [0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 200, 1000, 4099]


@pytest.mark.parametrize("length", LENGTHS)
def test_pure_boxes_are_byte_for_byte_libsodiums(length):
    key, nonce, message = os.urandom(32), os.urandom(24), os.urandom(length)
    pure = _secretbox.encrypt(key, message, nonce)
    sodium = bytes(nacl.secret.SecretBox(key).encrypt(message, nonce))
    assert pure == sodium
    assert bytes(nacl.secret.SecretBox(key).decrypt(pure)) == message
    assert _secretbox.decrypt(key, sodium) == message


def test_nacl_secretbox_test_vector():
    """NaCl's own tests/secretbox.c vector (also in libsodium's test suite)."""
    key = bytes.fromhex("1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389")
    nonce = bytes.fromhex("69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37")
    message = bytes.fromhex(
        "be075fc53c81f2d5cf141316ebeb0c7b5228c52a4c62cbd44b66849b64244ffce5ecbaaf33bd751a1ac728d45e6c6129"
        "6cdc3c01233561f41db66cce314adb310e3be8250c46f06dceea3a7fa1348057e2f6556ad6b1318a024a838f21af1fde"
        "048977eb48f59ffd4924ca1c60902e52f0a089bc76897040e082f937763848645e0705"
    )
    box = _secretbox.encrypt(key, message, nonce)
    assert box[24:40].hex() == "f3ffc7703f9400e52a7dfb4b3d3305d9"
    assert box == bytes(nacl.secret.SecretBox(key).encrypt(message, nonce))


def test_forged_or_wrongly_keyed_boxes_do_not_open():
    key = os.urandom(32)
    box = bytearray(_secretbox.encrypt(key, b"secret answer"))
    for i in (0, 23, 24, 39, 40, len(box) - 1):
        forged = bytearray(box)
        forged[i] ^= 1
        with pytest.raises(_secretbox.CryptoError):
            _secretbox.decrypt(key, bytes(forged))
    with pytest.raises(_secretbox.CryptoError):
        _secretbox.decrypt(os.urandom(32), bytes(box))
    with pytest.raises(_secretbox.CryptoError):
        _secretbox.decrypt(key, bytes(box[:39]))
    with pytest.raises(nacl.exceptions.CryptoError):
        nacl.secret.SecretBox(os.urandom(32)).decrypt(bytes(box))


@pytest.fixture
def pure(monkeypatch):
    """uassign as it runs without PyNaCl."""
    monkeypatch.setattr(uassign, "_nacl_secret", None)


AS_OUTPUT = "AgICAgICAgICAgICAgICAgICAgICAgICwP/7IJQl3as4oxtvbypDdr9YP4pW"
AS_SPEC = "AgICAgICAgICAgICAgICAgICAgICAgICoCF7hBYRST4HBmhnJKErCf9icEw8"


@pytest.mark.parametrize("pure_path", [False, True])
def test_the_sealed_output_test_vector(pure_path, monkeypatch):
    """docs/API.md, "Subkeys": hello sealed as output and as a spec, with
    the nonce 0x02 * 24; UaError.output opens only the output one (or one an
    older server sealed with the key itself)."""
    if pure_path:
        monkeypatch.setattr(uassign, "_nacl_secret", None)
    key = bytes(range(32))
    nonce = bytes([2] * 24)
    output_key = uassign.subkey(key, "output")
    assert base64.b64encode(_secretbox.encrypt(output_key, b"hello", nonce)).decode() == AS_OUTPUT
    assert base64.b64encode(_secretbox.encrypt(key, b"hello", nonce)).decode() == AS_SPEC
    assert uassign.open_bytes(output_key, base64.b64decode(AS_OUTPUT)) == b"hello"
    with pytest.raises(Exception):
        uassign.open_bytes(key, base64.b64decode(AS_OUTPUT))  # an output is no spec
    assert uassign._open_output({"sealedOutput": AS_OUTPUT}, key) == "hello"
    assert uassign._open_output({"sealedOutput": AS_SPEC}, key) == "hello"
    assert uassign._open_output({"sealedOutput": AS_OUTPUT}, os.urandom(32)) is None


def test_pure_specs_open_with_ua_and_ua_specs_open_pure(pure, tmp_path):
    path, line = new_key_file(tmp_path)
    sealed = uassign.create_spec("demo.busybox", {"secret": "s3cr3t ✓"}, spec_id="pure/1", key=line)
    result = run_ua("open", "--key-file", str(path), input=sealed + "\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"] == {"secret": "s3cr3t ✓"}
    plaintext = '{"specID":"pure/2","assignmentName":"demo.busybox","data":{"a":"ü"}}'
    result = run_ua("seal", "--key-file", str(path), input=plaintext)
    assert result.returncode == 0, result.stderr
    opened = uassign.open_bytes(base64.b64decode(line), base64.b64decode(result.stdout.strip()))
    assert json.loads(opened) == json.loads(plaintext)


def test_a_pure_spec_gets_an_instance_from_a_real_server(pure, ua):
    sealed = uassign.create_spec("demo.busybox", {"greeting": "pure"}, spec_id="pure/server", key=ua.key_line)
    instance = uassign.open_instance(sealed, ua.url)
    assert len(instance) == 32
    assert uassign.clean_spec(sealed, ua.url, wait=True) == 1


def test_uassign_imports_and_seals_where_pynacl_is_absent(tmp_path):
    """As in PrairieLearn's Python: importing nacl fails."""
    path, line = new_key_file(tmp_path)
    script = (
        "import sys; sys.modules['nacl'] = None\n"
        "import uassign\n"
        "assert uassign._nacl_secret is None\n"
        f"print(uassign.create_spec('demo.busybox', {{'x': 1}}, spec_id='no-nacl', key={line!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    opened = run_ua("open", "--key-file", str(path), input=result.stdout)
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout)["specID"] == "no-nacl"

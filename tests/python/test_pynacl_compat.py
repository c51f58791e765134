"""ua's sealed specs are PyNaCl SecretBox boxes, both ways (API section 1)."""

import base64
import json
import os
import subprocess

import nacl.exceptions
import nacl.secret
import nacl.utils
import pytest

UA = os.environ.get("UA_BIN", os.path.join(os.path.dirname(__file__), "../../target/debug/ua"))

SPEC = {
    "specID": "course1/q42/variant-7f3a",
    "assignmentName": "archive.tar_extract",
    "data": {"filename": "notes.txt", "secret": "hunter2 – ünïcode ✓"},
    "notAfter": 1893456000,
}


@pytest.fixture
def key_file(tmp_path):
    line = subprocess.run([UA, "keygen"], check=True, capture_output=True, text=True).stdout.strip()
    assert len(line) == 44
    path = tmp_path / "key"
    path.write_text(f"# test key\n{line}\n")
    path.chmod(0o600)
    return path, base64.b64decode(line)


def test_pynacl_sealed_opens_in_ua(key_file):
    path, key = key_file
    plaintext = json.dumps(SPEC).encode()
    sealed = base64.b64encode(bytes(nacl.secret.SecretBox(key).encrypt(plaintext))).decode()
    opened = subprocess.run(
        [UA, "open", "--key-file", str(path)], input=f"  {sealed}\n", check=True, capture_output=True, text=True
    ).stdout
    assert json.loads(opened) == SPEC


def test_ua_sealed_opens_in_pynacl(key_file):
    path, key = key_file
    plaintext = json.dumps(SPEC)
    sealed = subprocess.run(
        [UA, "seal", "--key-file", str(path)], input=plaintext, check=True, capture_output=True, text=True
    ).stdout
    assert sealed.endswith("\n") and "\n" not in sealed.strip()
    raw = base64.b64decode(sealed.strip(), validate=True)
    # The plaintext is padded with JSON whitespace to a multiple of 256 bytes.
    padded = -(-len(plaintext.encode()) // 256) * 256
    assert len(raw) == nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES + padded
    opened = nacl.secret.SecretBox(key).decrypt(raw)
    assert opened.rstrip(b" ") == plaintext.encode() and json.loads(opened) == SPEC


def test_wrong_key_is_refused_without_echoing(key_file):
    path, _ = key_file
    other = nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE)
    sealed = base64.b64encode(bytes(nacl.secret.SecretBox(other).encrypt(json.dumps(SPEC).encode()))).decode()
    result = subprocess.run([UA, "open", "--key-file", str(path)], input=sealed, capture_output=True, text=True)
    assert result.returncode != 0
    assert "hunter2" not in result.stderr + result.stdout
    assert "key" in result.stderr


def test_rotated_keys_all_open(key_file, tmp_path):
    path, old = key_file
    new_line = subprocess.run([UA, "keygen"], check=True, capture_output=True, text=True).stdout.strip()
    rotated = tmp_path / "rotated"
    rotated.write_text(f"{new_line}\n# previous key\n{base64.b64encode(old).decode()}\n")
    rotated.chmod(0o600)
    sealed_old = base64.b64encode(bytes(nacl.secret.SecretBox(old).encrypt(b'{"specID":"s","assignmentName":"a"}')))
    opened = subprocess.run(
        [UA, "open", "--key-file", str(rotated)], input=sealed_old.decode(), check=True, capture_output=True, text=True
    ).stdout
    assert json.loads(opened)["specID"] == "s"
    # The first key seals.
    sealed_new = subprocess.run(
        [UA, "seal", "--key-file", str(rotated)], input='{"specID":"s","assignmentName":"a"}',
        check=True, capture_output=True, text=True,
    ).stdout
    nacl.secret.SecretBox(base64.b64decode(new_line)).decrypt(base64.b64decode(sealed_new))


def test_output_sealed_by_pynacl_with_the_output_subkey_opens_in_ua_open(key_file):
    """docs/API.md, "Subkeys": sealedOutput uses HMAC-SHA256(key, "ua-subkey\\0output")."""
    import hashlib
    import hmac

    path, key = key_file
    output_key = hmac.new(key, b"ua-subkey\0output", hashlib.sha256).digest()
    sealed = base64.b64encode(bytes(nacl.secret.SecretBox(output_key).encrypt(b"build failed: x"))).decode()
    opened = subprocess.run(
        [UA, "open", "--key-file", str(path)], input=sealed, check=True, capture_output=True, text=True
    ).stdout
    assert opened == "build failed: x\n"
    # A spec sealed with that subkey is no spec: `ua seal` output opens with the key itself only.
    spec = subprocess.run(
        [UA, "seal", "--key-file", str(path)], input=json.dumps(SPEC), check=True, capture_output=True, text=True
    ).stdout
    with pytest.raises(nacl.exceptions.CryptoError):
        nacl.secret.SecretBox(output_key).decrypt(base64.b64decode(spec))

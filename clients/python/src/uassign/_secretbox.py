"""NaCl ``crypto_secretbox`` (XSalsa20-Poly1305) in pure Python.

Used by :mod:`uassign` when PyNaCl is not importable (PrairieLearn's Python
has no PyNaCl, and compiled ``.so`` files do not travel between machines).
Specs are small, so speed does not matter; PyNaCl stays the fast path.

The layout is libsodium's combined mode, as PyNaCl's ``SecretBox.encrypt``
returns it: ``nonce (24) || tag (16) || ciphertext``.

Written from the specifications: Salsa20 and HSalsa20 (D. J. Bernstein,
"Extending the Salsa20 nonce"), Poly1305 (RFC 8439 section 2.5), and
``crypto_secretbox_xsalsa20poly1305`` (NaCl): the first 32 bytes of the
XSalsa20 keystream are the Poly1305 key, the message is encrypted with the
keystream from byte 32 on, and the tag covers the ciphertext.
"""

from __future__ import annotations

import hmac
import os
import struct

KEY_SIZE = 32
NONCE_SIZE = 24
MAC_SIZE = 16

_MASK = 0xFFFFFFFF
_SIGMA = struct.unpack("<4I", b"expand 32-byte k")


class CryptoError(Exception):
    """The box did not open: wrong key, or forged or damaged."""


def _rotl(v: int, c: int) -> int:
    return ((v << c) & _MASK) | (v >> (32 - c))


def _rounds(x: list) -> list:
    """Salsa20's 20 rounds (10 double rounds) on 16 words, in place."""

    def quarter(a: int, b: int, c: int, d: int) -> None:
        x[b] ^= _rotl((x[a] + x[d]) & _MASK, 7)
        x[c] ^= _rotl((x[b] + x[a]) & _MASK, 9)
        x[d] ^= _rotl((x[c] + x[b]) & _MASK, 13)
        x[a] ^= _rotl((x[d] + x[c]) & _MASK, 18)

    for _ in range(10):
        quarter(0, 4, 8, 12)
        quarter(5, 9, 13, 1)
        quarter(10, 14, 2, 6)
        quarter(15, 3, 7, 11)
        quarter(0, 1, 2, 3)
        quarter(5, 6, 7, 4)
        quarter(10, 11, 8, 9)
        quarter(15, 12, 13, 14)
    return x


def _state(key: bytes, sixteen: bytes) -> list:
    k = struct.unpack("<8I", key)
    n = struct.unpack("<4I", sixteen)
    return [
        _SIGMA[0], k[0], k[1], k[2],
        k[3], _SIGMA[1], n[0], n[1],
        n[2], n[3], _SIGMA[2], k[4],
        k[5], k[6], k[7], _SIGMA[3],
    ]  # fmt: skip


def _hsalsa20(key: bytes, nonce16: bytes) -> bytes:
    x = _rounds(_state(key, nonce16))
    return struct.pack("<8I", *(x[i] for i in (0, 5, 10, 15, 6, 7, 8, 9)))


def _salsa20_stream(key: bytes, nonce8: bytes, length: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        start = _state(key, nonce8 + struct.pack("<Q", counter))
        x = _rounds(list(start))
        out += struct.pack("<16I", *((a + b) & _MASK for a, b in zip(x, start)))
        counter += 1
    return bytes(out[:length])


def _poly1305(key: bytes, message: bytes) -> bytes:
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:], "little")
    p = (1 << 130) - 5
    acc = 0
    for i in range(0, len(message), 16):
        block = message[i : i + 16] + b"\x01"
        acc = (acc + int.from_bytes(block, "little")) * r % p
    return ((acc + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def _check(key: bytes, nonce: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"the key must be {KEY_SIZE} bytes")
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"the nonce must be {NONCE_SIZE} bytes")


def encrypt(key: bytes, plaintext: bytes, nonce: bytes | None = None) -> bytes:
    """``nonce || tag || ciphertext``, like PyNaCl's ``SecretBox(key).encrypt``."""
    nonce = os.urandom(NONCE_SIZE) if nonce is None else bytes(nonce)
    key = bytes(key)
    _check(key, nonce)
    subkey = _hsalsa20(key, nonce[:16])
    stream = _salsa20_stream(subkey, nonce[16:], 32 + len(plaintext))
    ciphertext = _xor(plaintext, stream[32:])
    return nonce + _poly1305(stream[:32], ciphertext) + ciphertext


def decrypt(key: bytes, box: bytes) -> bytes:
    """Opens ``nonce || tag || ciphertext``; raises :class:`CryptoError` if forged."""
    key, box = bytes(key), bytes(box)
    if len(box) < NONCE_SIZE + MAC_SIZE:
        raise CryptoError("the box is too short")
    nonce, tag, ciphertext = box[:NONCE_SIZE], box[NONCE_SIZE : NONCE_SIZE + MAC_SIZE], box[NONCE_SIZE + MAC_SIZE :]
    _check(key, nonce)
    subkey = _hsalsa20(key, nonce[:16])
    stream = _salsa20_stream(subkey, nonce[16:], 32 + len(ciphertext))
    if not hmac.compare_digest(_poly1305(stream[:32], ciphertext), tag):
        raise CryptoError("the box did not open (wrong key, or forged)")
    return _xor(ciphertext, stream[32:])

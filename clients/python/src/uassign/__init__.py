"""Python client for ua (uAssign): seal specs and ask a ua server for terminals.

Written for PrairieLearn's ``server.py`` but usable from any Python program::

    from uassign import create_spec, open_instance, clean_spec, UaError

    sealed = create_spec("demo.busybox", {"greeting": "hi"}, spec_id="course1/q1/v7")
    instance_id = open_instance(sealed, "https://ua.example.edu")
    clean_spec(sealed, "https://ua.example.edu")          # reset: returns 1

A *sealed spec* is the base64 text of PyNaCl's ``SecretBox(key).encrypt(json)``
(XSalsa20-Poly1305 with a fresh random nonce), exactly what ``ua seal`` prints.
PyNaCl is used when installed; without it a pure-Python secretbox gives the
same result (no compiled files: it runs in PrairieLearn's Python as is).
Only the holder of the shared key can make or read one; the student who carries
it in a web page cannot read or change it.

The HTTP calls use only the standard library (``urllib``). Every failure the
server reports, and every network failure, raises :class:`UaError`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import email.utils
import hashlib
import hmac
import json
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Optional, Union

try:  # the fast path; without PyNaCl (PrairieLearn's Python) the pure-Python box
    import nacl.secret as _nacl_secret
except ImportError:  # pragma: no cover - exercised by forcing the pure path in tests
    _nacl_secret = None

from . import _secretbox

__all__ = [
    "UaError",
    "create_spec",
    "open_instance",
    "clean_spec",
    "instance_ws_url",
    "route_token",
    "subkey",
    "load_key",
    "read_key_file",
    "parse_key_line",
    "read_keys",
    "open_result",
    "run_check",
    "grade_check",
    "CheckResultError",
]

__version__ = "0.1.0"

KEY_SIZE = _secretbox.KEY_SIZE  # 32 bytes
DEFAULT_TIMEOUT = 300.0  # seconds; a first POST /spec builds an image
_ASSIGNMENT_RE = re.compile(r"^[A-Za-z0-9_-]+(?:[./][A-Za-z0-9_-]+)*$")

KeyLike = Union[str, bytes, bytearray]
NotAfter = Union[int, float, _dt.datetime, _dt.timedelta, None]


class UaError(Exception):
    """A ua server refused a request, could not be reached, or a key is unusable.

    Attributes:
        status: the HTTP status code (``400``, ``404``, ``410``, ``413``,
            ``422``, ``503``, ...), or ``None`` when no HTTP answer was had
            (network failure, timeout, missing or malformed key).
        message: one sentence saying what went wrong: the server's JSON
            ``error`` text when it sent one, else a description of the failure.
        retry_after: for a ``503`` (server at capacity, Docker unreachable)
            or a ``429`` (a check too soon after the last one), the seconds to
            wait before trying again, from ``Retry-After`` (or ``retryAfter``);
            ``None`` otherwise.
        body: the decoded JSON body of the error answer when there was one
            (e.g. ``sealedOutput`` for a ``422``), else ``None``.
        output: for a failed build or setup (``422``), its last output lines,
            opened from the answer's ``sealedOutput`` with the key (the
            assignment's author holds it); ``None`` without a key.
    """

    def __init__(
        self,
        message: str,
        status: Optional[int] = None,
        retry_after: Optional[float] = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.body = body
        self.output: Optional[str] = None

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        text = f"ua server answered {self.status}: {self.message}"
        if self.retry_after is not None:
            text += f" (retry after {self.retry_after:g} s)"
        return text

    def __repr__(self) -> str:
        return f"UaError(status={self.status!r}, message={self.message!r}, retry_after={self.retry_after!r})"


# ---------------------------------------------------------------- keys


def parse_key_line(line: str) -> bytes:
    """Decode one key line (standard base64 of 32 bytes, 44 characters).

    Raises:
        UaError: the line is not base64 of exactly 32 bytes.
    """
    text = line.strip()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UaError("the ua key is not standard base64 (expected a 44-character line from `ua keygen`)") from None
    if len(raw) != KEY_SIZE:
        raise UaError(
            f"the ua key decodes to {len(raw)} bytes, not {KEY_SIZE} (expected a 44-character line from `ua keygen`)"
        )
    return raw


def _coerce_key(key: KeyLike) -> bytes:
    if isinstance(key, (bytes, bytearray)):
        if len(key) == KEY_SIZE:
            return bytes(key)
        if len(key.strip()) == 44:
            return parse_key_line(bytes(key).decode("ascii", "replace"))
        raise UaError(f"a ua key must be a 44-character key line or {KEY_SIZE} raw bytes, not {len(key)} bytes")
    if isinstance(key, str):
        return parse_key_line(key)
    raise TypeError(f"key must be a key line (str) or {KEY_SIZE} raw bytes, not {type(key).__name__}")


def read_key_file(path: Union[str, "os.PathLike[str]"]) -> bytes:
    """Return the first key of a ua key file (the key ua seals with).

    The file holds one key line per line; ``#`` comments and blank lines are
    skipped. In PrairieLearn, keep it in ``serverFilesCourse/`` (never sent
    to students) and read it with
    ``read_key_file(os.path.join(data["options"]["server_files_course_path"], "ua", "key"))``.

    Raises:
        UaError: the file cannot be read, holds no key, or its first key is malformed.
    """
    for _, line in _key_lines(path):
        try:
            return parse_key_line(line)
        except UaError as e:
            raise UaError(f"{os.fspath(path)}: {e.message}") from None
    raise UaError(f"the ua key file {os.fspath(path)} holds no key line; add one made by `ua keygen`")


def _key_lines(path: Union[str, "os.PathLike[str]"]) -> list:
    """The key lines of a key file, stripped, with their line numbers;
    ``#`` comments and blank lines skipped."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise UaError(f"cannot read the ua key file {path}: {e.strerror or e}") from None
    stripped = ((number, line.strip()) for number, line in enumerate(lines, 1))
    return [(number, line) for number, line in stripped if line and not line.startswith("#")]


def load_key(key: Optional[KeyLike] = None) -> bytes:
    """Return the 32-byte sealing key.

    ``key`` may be a key line (``str``, 44 base64 characters), the key line as
    ``bytes``, or the raw 32 bytes. Without it, the key comes from the
    environment: ``UA_KEY`` (a key line) if set, else the first key line of
    the file named by ``UA_KEY_FILE`` (``#`` comments and blank lines are
    skipped; that is the key ua itself seals with).

    Raises:
        UaError: no key was given or found, or it is malformed (``status`` is None).
    """
    if key is not None:
        return _coerce_key(key)
    env_key = os.environ.get("UA_KEY", "").strip()
    if env_key:
        try:
            return parse_key_line(env_key)
        except UaError as e:
            raise UaError(f"UA_KEY: {e.message}") from None
    key_file = os.environ.get("UA_KEY_FILE", "").strip()
    if key_file:
        return read_key_file(key_file)
    raise UaError(
        "no ua key: pass key=..., or set UA_KEY to a key line, or UA_KEY_FILE to the server's key file"
    )


# ---------------------------------------------------------------- specs


def _unix_seconds(not_after: NotAfter) -> Optional[int]:
    if not_after is None:
        return None
    if isinstance(not_after, bool):
        raise TypeError("not_after must be unix seconds, a datetime or a timedelta, not a bool")
    if isinstance(not_after, _dt.timedelta):
        return int(_dt.datetime.now(_dt.timezone.utc).timestamp() + not_after.total_seconds())
    if isinstance(not_after, _dt.datetime):
        # A naive datetime is taken as local time (datetime.timestamp's rule).
        return int(not_after.timestamp())
    if isinstance(not_after, (int, float)):
        return int(not_after)
    raise TypeError(f"not_after must be unix seconds, a datetime or a timedelta, not {type(not_after).__name__}")


# Sealed specs are padded to a multiple of this many bytes (as `ua seal` does).
SPEC_PADDING = 256


def create_spec(
    assignment_name: str,
    data: Any = None,
    spec_id: Optional[str] = None,
    not_after: NotAfter = None,
    key: Optional[KeyLike] = None,
    keep_until: NotAfter = None,
) -> str:
    """Seal a spec and return it as one line of base64 text.

    Args:
        assignment_name: the assignment's template directory on the server,
            segments joined by ``.`` or ``/`` (``"archive.tar_extract"``).
        data: any JSON-serialisable value, the template's ``data`` (default ``{}``).
            It may hold secrets and answers: only the server can read it.
        spec_id: the spec's identity, 1-200 characters. The same ``spec_id``
            always means the same instance on the server (the one first
            created), so derive it from what should share a terminal, e.g.
            ``f"{course}/{question}/{variant_seed}"``. Default: a random one
            (``uuid4().hex``), i.e. a fresh instance for every call.
        not_after: the server refuses the spec (410) after this moment: unix
            seconds (``int``), a ``datetime`` (naive means local time) or a
            ``timedelta`` from now. Default: no limit.
        keep_until: keep the instance (the student's files) at least until
            this moment, even unused: same forms as ``not_after``. The server
            caps it (``--max-keep``, 30 days by default) and expires the
            instance as usual afterwards. Default: ``--instance-expiry``
            (4 h) after the last session.
        key: a key line (44-character base64 ``str``) or the raw 32 bytes.
            Default: ``UA_KEY``, else the first key of the file ``UA_KEY_FILE``.

    Returns:
        The sealed spec, ``base64(nonce || tag || ciphertext)``, ASCII, no newline.

    Raises:
        ValueError: ``spec_id`` or ``assignment_name`` is malformed.
        TypeError: ``data`` is not JSON-serialisable, or an argument has the wrong type.
        UaError: no usable key.
    """
    if not isinstance(assignment_name, str) or not _ASSIGNMENT_RE.match(assignment_name):
        raise ValueError(
            f"assignment_name {assignment_name!r} is not segments of [A-Za-z0-9_-] joined by '.' or '/'"
        )
    if spec_id is None:
        spec_id = uuid.uuid4().hex
    if not isinstance(spec_id, str) or not 1 <= len(spec_id) <= 200:
        raise ValueError("spec_id must be a string of 1 to 200 characters")
    secret_key = load_key(key)
    plaintext: dict[str, Any] = {
        "specID": spec_id,
        "assignmentName": assignment_name,
        "data": {} if data is None else data,
    }
    seconds = _unix_seconds(not_after)
    if seconds is not None:
        plaintext["notAfter"] = seconds
    keep = _unix_seconds(keep_until)
    if keep is not None:
        plaintext["keepUntil"] = keep
    payload = json.dumps(plaintext, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    # Padded with JSON whitespace, so the sealed length tells little of the answers' lengths.
    payload += b" " * (-len(payload) % SPEC_PADDING)
    return base64.b64encode(seal_bytes(secret_key, payload)).decode("ascii")


def seal_bytes(key: bytes, plaintext: bytes) -> bytes:
    """``nonce || tag || ciphertext`` (NaCl secretbox): PyNaCl when it is
    installed, else the pure-Python implementation (same bytes for the same nonce)."""
    nonce = os.urandom(_secretbox.NONCE_SIZE)
    if _nacl_secret is not None:
        return bytes(_nacl_secret.SecretBox(key).encrypt(plaintext, nonce))
    return _secretbox.encrypt(key, plaintext, nonce)


def open_bytes(key: bytes, sealed: bytes) -> bytes:
    """Opens a sealed spec's bytes (for tests and debugging); raises
    ``uassign._secretbox.CryptoError`` (or PyNaCl's ``CryptoError``) if forged."""
    if _nacl_secret is not None:
        return bytes(_nacl_secret.SecretBox(key).decrypt(sealed))
    return _secretbox.decrypt(key, sealed)


SUBKEY_PURPOSES = ("output", "result", "route")


def subkey(key: KeyLike, purpose: str) -> bytes:
    """The key's subkey for ``purpose`` (docs/API.md, "Subkeys"):
    ``HMAC-SHA256(key, b"ua-subkey\\0" + purpose)``. Specs are sealed with the
    key itself; a failed build's or setup's ``sealedOutput`` with the
    ``"output"`` subkey, so that it never opens as a spec; the route token
    is keyed with the ``"route"`` subkey; a check's sealed ``result`` is sealed
    with the ``"result"`` subkey (:func:`open_result`).

    Raises:
        ValueError: ``purpose`` is none of ``SUBKEY_PURPOSES``.
        UaError: the key is malformed.
    """
    if purpose not in SUBKEY_PURPOSES:
        raise ValueError(f"purpose must be one of {SUBKEY_PURPOSES}, not {purpose!r}")
    return hmac.new(_coerce_key(key), b"ua-subkey\0" + purpose.encode("ascii"), hashlib.sha256).digest()


def route_token(spec_id: str, key: Optional[KeyLike] = None) -> str:
    """The spec's route token: what a load balancer in front of several ua
    nodes hashes so that one spec always reaches one node (docs/API.md,
    "Nodes and routing"): the first 16 hex digits of
    ``HMAC-SHA256(subkey(key, "route"), spec_id in UTF-8)``, keyed with the
    sealing key's route subkey. :func:`open_instance` and :func:`clean_spec` send it as
    ``?route=`` by themselves when they hold the key.

    Raises:
        ValueError: ``spec_id`` is not a string of 1 to 200 characters.
        UaError: no usable key.
    """
    if not isinstance(spec_id, str) or not 1 <= len(spec_id) <= 200:
        raise ValueError("spec_id must be a string of 1 to 200 characters")
    mac = hmac.new(subkey(load_key(key), "route"), spec_id.encode("utf-8"), hashlib.sha256)
    return mac.hexdigest()[:16]


def _route_of(sealed: str, key: Optional[KeyLike]) -> Optional[str]:
    """The route token of a sealed spec, when a key at hand opens it; else
    None (the spec then goes to whichever node the balancer picks)."""
    try:
        secret_key = load_key(key)
        plaintext = open_bytes(secret_key, base64.b64decode(sealed.strip(), validate=True))
        return route_token(json.loads(plaintext.decode("utf-8"))["specID"], secret_key)
    except Exception:  # no key, not ours, not a spec: the server will say so
        return None


def _with_route(url: str, route: Optional[str]) -> str:
    if not route:
        return url
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}route={urllib.parse.quote(route, safe='')}"


# ---------------------------------------------------------------- HTTP


def _base_url(server: Optional[str]) -> str:
    if server is None:
        server = os.environ.get("UA_SERVER", "").strip() or None
    if not server:
        raise UaError("no ua server: pass server='https://ua.example.edu' (or set UA_SERVER)")
    parts = urllib.parse.urlsplit(server.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UaError(f"the ua server must be an http:// or https:// URL, not {server!r}")
    path = parts.path.rstrip("/")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def instance_ws_url(server: Optional[str], instance_id: str) -> str:
    """The websocket URL of an instance's terminal: ``ws(s)://.../instance/{id}/ws``."""
    base = _base_url(server)
    scheme, rest = base.split("://", 1)
    ws_scheme = "wss" if scheme == "https" else "ws"
    return f"{ws_scheme}://{rest}/instance/{urllib.parse.quote(instance_id, safe='')}/ws"


def _parse_retry_after(value: Optional[str]) -> Optional[float]:
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(int(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return max(0.0, (when - _dt.datetime.now(_dt.timezone.utc)).total_seconds())


def _post(url: str, sealed: str, timeout: float) -> tuple[int, Any]:
    if not isinstance(sealed, str):
        raise TypeError("sealed must be the sealed spec text returned by create_spec()")
    request = urllib.request.Request(
        url,
        data=sealed.strip().encode("ascii", "replace"),
        method="POST",
        headers={
            "Content-Type": "text/plain; charset=utf-8",
            "Accept": "application/json",
            "User-Agent": f"uassign-python/{__version__}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
            raw = response.read()
    except urllib.error.HTTPError as e:
        raw = b""
        try:
            raw = e.read()
        except Exception:  # a broken body still leaves the status
            pass
        body: Any = None
        message = ""
        try:
            body = json.loads(raw.decode("utf-8"))
            if isinstance(body, dict) and isinstance(body.get("error"), str):
                message = body["error"]
        except (UnicodeDecodeError, ValueError):
            pass
        if not message:
            message = f"HTTP {e.code} {e.reason or ''}".strip() + f" from {url} (not a ua error answer)"
        retry_after = _parse_retry_after(e.headers.get("Retry-After")) if e.code in (429, 503) else None
        if retry_after is None and e.code in (429, 503) and isinstance(body, dict):
            seconds = body.get("retryAfter")
            if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
                retry_after = max(0.0, float(seconds))
        raise UaError(message, status=e.code, retry_after=retry_after, body=body) from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, socket.timeout) or isinstance(reason, TimeoutError):
            raise UaError(f"the ua server at {url} did not answer within {timeout:g} s") from None
        raise UaError(f"cannot reach the ua server at {url}: {reason}") from None
    except (socket.timeout, TimeoutError):
        raise UaError(f"the ua server at {url} did not answer within {timeout:g} s") from None
    except OSError as e:  # connection reset mid-answer and the like
        raise UaError(f"lost the connection to the ua server at {url}: {e}") from None
    try:
        return status, json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise UaError(f"the ua server at {url} answered {status} with a body that is not JSON", status=status) from None


def _open_output(body: Any, key: Optional[KeyLike]) -> Optional[str]:
    """The plaintext of a 422's ``sealedOutput``, when a key opens it: with
    its ``"output"`` subkey, or (servers before the subkeys) the key itself."""
    sealed = body.get("sealedOutput") if isinstance(body, dict) else None
    if not isinstance(sealed, str):
        return None
    try:
        secret_key = load_key(key)
        raw = base64.b64decode(sealed, validate=True)
    except Exception:  # no key here, or not base64: the words alone stand
        return None
    for box_key in (subkey(secret_key, "output"), secret_key):
        try:
            return open_bytes(box_key, raw).decode("utf-8", "replace")
        except Exception:  # not this key: try the next
            continue
    return None


def open_instance(
    sealed: str,
    server: Optional[str] = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    key: Optional[KeyLike] = None,
    route: Optional[str] = None,
) -> str:
    """Send a sealed spec to ``POST {server}/spec`` and return the instance ID.

    The first call for a ``spec_id`` renders and builds the assignment (this
    can take a while); later calls return the same instance at once (and end
    any terminal attached to it: the newest client takes over).

    Args:
        sealed: what :func:`create_spec` returned.
        server: the ua base URL, e.g. ``"https://ua.example.edu"`` or
            ``"http://127.0.0.1:8000"``; a path prefix is kept, a trailing
            slash is fine. Default: ``UA_SERVER``.
        timeout: seconds to wait for the answer.
        key: the key that opens a failed build's or setup's ``sealedOutput``
            (a key line, its bytes or the raw 32 bytes); default: as
            :func:`load_key` finds it, else the output stays sealed. It also
            computes the spec's :func:`route_token`.
        route: the spec's route token, sent as ``?route=`` for a load
            balancer in front of several nodes. Default: computed from the
            sealed spec with the key, when there is one; else none.

    Returns:
        The instance ID (the only credential for its terminal: keep it private
        to the student it belongs to). Its terminal is at
        :func:`instance_ws_url`.

    Raises:
        UaError: ``status`` 400 (forged, wrongly keyed or malformed spec),
            404 (no such assignment), 410 (past ``not_after``), 413, 422 (the
            template did not render, the image did not build or the setup
            failed; with a key, ``output`` has the last output lines opened
            from ``sealedOutput`` and the message ends with them), 503 (at
            capacity or Docker away; see ``retry_after``), or ``None`` for
            network failures.
    """
    url = _with_route(_base_url(server) + "/spec", route or _route_of(sealed, key))
    try:
        status, body = _post(url, sealed, timeout)
    except UaError as e:
        e.output = _open_output(e.body, key)
        if e.output is not None:
            e.message = f"{e.message}\n{e.output}"
        raise
    instance_id = body.get("instanceID") if isinstance(body, dict) else None
    if not isinstance(instance_id, str) or not instance_id:
        raise UaError(f"the ua server at {url} answered {status} without an instanceID", status=status, body=body)
    return instance_id


def clean_spec(
    sealed: str,
    server: Optional[str] = None,
    wait: bool = True,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    key: Optional[KeyLike] = None,
    route: Optional[str] = None,
) -> Optional[int]:
    """Remove every instance of a spec (``POST {server}/spec/clean``).

    Its terminal is closed (code 4003), its container and image removed; the
    next :func:`open_instance` of the spec builds a fresh instance. Use it to
    give a student a clean start.

    Args:
        sealed: the sealed spec (any seal of the same ``spec_id`` works).
        server: the ua base URL (see :func:`open_instance`).
        wait: wait until the removal is done (``?async=false``) and return
            the number of instances removed (0 or 1); when False, the server
            answers at once and this returns ``None``.
        timeout: seconds to wait for the answer.
        key, route: the spec's route token, as for :func:`open_instance`.

    Raises:
        UaError: as for :func:`open_instance`.
    """
    url = _base_url(server) + ("/spec/clean?async=false" if wait else "/spec/clean")
    url = _with_route(url, route or _route_of(sealed, key))
    status, body = _post(url, sealed, timeout)
    if not wait:
        return None
    cleaned = body.get("cleaned") if isinstance(body, dict) else None
    if not isinstance(cleaned, int) or isinstance(cleaned, bool):
        raise UaError(f"the ua server at {url} answered {status} without a count of cleaned instances", status=status)
    return cleaned


# Checks (docs/API.md, "Checks"): imported last, as they use the above.
from ._check import CheckResultError, grade_check, open_result, read_keys, run_check  # noqa: E402

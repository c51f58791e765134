"""Checks (docs/API.md, "Checks"): run an assignment's hidden check, open the
sealed result it answers with, and grade a PrairieLearn submission from it.

The server seals a check's ``result`` with the ``"result"`` subkey of its
first key, so a result never opens as a spec (nor a spec as a result); the
student carries it to the platform without being able to read or change it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import urllib.parse
from typing import Any, Iterable, Optional, Union

from . import (
    KeyLike,
    UaError,
    _base_url,
    _coerce_key,
    _key_lines,
    _open_output,
    _post,
    load_key,
    open_bytes,
    parse_key_line,
    subkey,
)

# A check runs for up to its checkTimeout (30 s by default, capped at the
# server's build timeout); the answer follows.
CHECK_TIMEOUT = 120.0
# The submission field the element fills: "_uassign_check_" + spec name.
CHECK_FIELD_PREFIX = "_uassign_check_"
# What grade_check keeps of the output the browser submitted (ua sends at most 64 KiB).
MAX_OUTPUT_CHARS = 70000

Keys = Union[KeyLike, Iterable[KeyLike], None]


class CheckResultError(UaError):
    """A sealed check result that must not be believed: not base64, forged
    or altered, sealed with none of the keys given, not a check result, or
    the result of another spec or assignment. ``status`` is None."""


def read_keys(path: Union[str, "os.PathLike[str]"]) -> list:
    """Every key of a ua key file, first (the sealing key) first: opening
    tries them all (docs/API.md, "Keys"), so results sealed before a key
    rotation still open.

    Raises:
        UaError: the file cannot be read, holds no key, or a line is not a key.
    """
    keys = []
    for number, line in _key_lines(path):
        try:
            keys.append(parse_key_line(line))
        except UaError as e:
            raise UaError(f"{os.fspath(path)}, line {number}: {e.message}") from None
    if not keys:
        raise UaError(f"the ua key file {os.fspath(path)} holds no key line; add one made by `ua keygen`")
    return keys


def _key_list(key: Keys) -> list:
    """The keys to try: one key, a list of keys, or (None) UA_KEY, else
    every key of UA_KEY_FILE."""
    if key is None:
        if os.environ.get("UA_KEY", "").strip():
            return [load_key()]
        key_file = os.environ.get("UA_KEY_FILE", "").strip()
        if key_file:
            return read_keys(key_file)
        return [load_key()]  # raises, saying how to give a key
    if isinstance(key, (str, bytes, bytearray)):
        return [_coerce_key(key)]
    keys = [_coerce_key(k) for k in key]
    if not keys:
        raise UaError("no ua key: the list of keys is empty")
    return keys


def _open_with(keys: list, sealed: Any, purpose: Optional[str]) -> Optional[bytes]:
    """The plaintext of a sealed line under the first key (or its subkey
    for ``purpose``) that opens it, else None."""
    if not isinstance(sealed, str):
        return None
    try:
        raw = base64.b64decode(sealed.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    for key in keys:
        try:
            return open_bytes(subkey(key, purpose) if purpose else key, raw)
        except Exception:  # not this key: try the next
            continue
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _valid_result(result: Any) -> bool:
    if not isinstance(result, dict):
        return False
    if not isinstance(result.get("specID"), str) or not isinstance(result.get("assignmentName"), str):
        return False
    if not _is_number(result.get("score")) or not 0 <= result["score"] <= 1:
        return False
    if not _is_number(result.get("checkedAt")) or not isinstance(result.get("tests"), list):
        return False
    return all(
        isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("passed"), bool)
        for t in result["tests"]
    )


def open_result(
    key: Keys,
    sealed: str,
    spec_id: Optional[str] = None,
    assignment_name: Optional[str] = None,
) -> dict:
    """Open and verify a check's sealed ``result`` (docs/API.md, "Checks").

    Args:
        key: a key (line or raw 32 bytes), a list of keys (each is tried, as
            after a key rotation), or None for ``UA_KEY`` / every key of
            ``UA_KEY_FILE``.
        sealed: the ``result`` of a ``POST /instance/{id}/check`` answer.
        spec_id, assignment_name: when given, the result must be for this
            spec and assignment.

    Returns:
        The result: ``{"specID", "assignmentName", "score", "tests",
        "checkedAt", "instance", ...}`` (the verdict's extra fields too).

    Raises:
        CheckResultError: not base64, forged, altered, sealed with none of
            the keys (or as something else: a spec, a sealedOutput), not a
            check result, or for another spec or assignment.
        UaError: no usable key.
    """
    plaintext = _open_with(_key_list(key), sealed, "result")
    if plaintext is None:
        raise CheckResultError("the check result is forged, altered, or sealed with a key not given here")
    try:
        result = json.loads(plaintext.decode("utf-8"))  # the padding spaces are JSON white space
    except (UnicodeDecodeError, ValueError):
        result = None
    if not _valid_result(result):
        raise CheckResultError("the sealed text is not a check result")
    if spec_id is not None and result["specID"] != spec_id:
        raise CheckResultError("the check result is for another spec")
    if assignment_name is not None and result["assignmentName"].replace("/", ".") != assignment_name.replace("/", "."):
        raise CheckResultError("the check result is for another assignment")
    return result


def run_check(
    server: Optional[str],
    instance_id: str,
    *,
    timeout: float = CHECK_TIMEOUT,
    key: Optional[KeyLike] = None,
) -> dict:
    """Run the assignment's check in an instance (``POST
    {server}/instance/{id}/check``) and return the answer:
    ``{"output", "score", "tests", "result"}`` (``result`` sealed, for
    :func:`open_result`). ``key`` opens a failed check's ``sealedOutput``
    for the assignment's author (default: as :func:`load_key` finds it).

    Raises:
        UaError: ``status`` 404 (no such instance, or the assignment has no
            check), 409 (a check of the instance is running), 422 (the check
            failed to run; with a key, ``output`` has the last output lines
            and what was wrong with the verdict, opened from
            ``sealedOutput``, and the message ends with them), 429 (too
            soon after the last check; see ``retry_after``), 503, or None
            for network failures. The message is the server's sentence.
    """
    if not isinstance(instance_id, str) or not instance_id:
        raise ValueError("instance_id must be the instance ID open_instance returned")
    url = f"{_base_url(server)}/instance/{urllib.parse.quote(instance_id, safe='')}/check"
    try:
        status, body = _post(url, "", timeout)
    except UaError as e:
        e.output = _open_output(e.body, key)
        if e.output is not None:
            e.message = f"{e.message}\n{e.output}"
        raise
    if not (isinstance(body, dict) and isinstance(body.get("result"), str) and _is_number(body.get("score"))):
        raise UaError(f"the ua server at {url} answered {status} without a check result", status=status, body=body)
    return body


# ---------------------------------------------------------------- PrairieLearn


def _variant_spec(data: dict, keys: list, spec_name: str) -> dict:
    """The plaintext of the variant's own sealed spec (data["params"]), so
    that a result is matched against what this variant was made from."""
    plaintext = _open_with(keys, data.get("params", {}).get(spec_name), None)
    try:
        spec = json.loads(plaintext.decode("utf-8")) if plaintext is not None else None
    except (UnicodeDecodeError, ValueError):
        spec = None
    if not isinstance(spec, dict) or not isinstance(spec.get("specID"), str):
        raise UaError(
            f'grade_check: data["params"]["{spec_name}"] is not a spec sealed with the key given '
            "(make it in generate() with uassign.create_spec and the same key)"
        )
    return spec


def _variant_created(data: dict, spec_name: str, not_before: Optional[float]) -> float:
    if not_before is not None:
        return float(not_before)
    created = data.get("params", {}).get(spec_name + "_created")
    if not _is_number(created):
        raise UaError(
            f'grade_check: data["params"]["{spec_name}_created"] is not set; in generate(), set it to '
            "int(time.time()) beside the spec (or pass not_before=...)"
        )
    return float(created)


def _submitted_result(data: dict, spec_name: str) -> tuple:
    """(sealed result, output) the element put into the submission, or (None, "")."""
    answer = data.get("submitted_answers", {}).get(CHECK_FIELD_PREFIX + spec_name)
    if isinstance(answer, str):
        try:
            answer = json.loads(answer)
        except ValueError:
            answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("result"), str):
        return None, ""
    output = answer.get("output")
    return answer["result"], output[:MAX_OUTPUT_CHARS] if isinstance(output, str) else ""


def _set_grade(data: dict, spec_name: str, score: float, feedback: dict) -> None:
    field = CHECK_FIELD_PREFIX + spec_name
    data["score"] = score
    data.setdefault("partial_scores", {})[field] = {"score": score, "weight": 1, "feedback": feedback}
    data.setdefault("feedback", {})[spec_name + "_check"] = feedback


def grade_check(
    data: dict,
    key: Keys = None,
    *,
    spec_name: str = "spec",
    not_before: Optional[float] = None,
) -> Optional[dict]:
    """Grade a PrairieLearn submission by the check result that
    ``<uassign_terminal check="true">`` put into it: call it from the
    question's ``grade(data)``.

    Opens ``data["submitted_answers"]["_uassign_check_" + spec_name]`` with
    the key, and believes it only if it is for the variant's own spec (its
    ``specID`` and assignment, read from ``data["params"][spec_name]``) and
    no older than the variant (``data["params"][spec_name + "_created"]``,
    unix seconds set in ``generate()``, or ``not_before``). Then sets
    ``data["score"]`` to the result's score, and
    ``data["partial_scores"]["_uassign_check_" + spec_name]`` and
    ``data["feedback"][spec_name + "_check"]`` to the feedback
    ``{"score", "tests": [{"name", "passed", "message"}], "output", "checkedAt"}``
    (the element shows it in the submission panel). The score and the
    tests come from the sealed result; ``output`` is the check's output as
    the browser submitted it, for the student to read, not sealed. A
    missing, forged, foreign or stale result scores 0, with
    ``{"error": "..."}`` as the feedback.

    Args:
        key: the course's key(s), as for :func:`open_result`; pass every
            key of the file (:func:`read_keys`) to accept results sealed
            before a rotation.

    Returns:
        The opened result, or None when it was refused.

    Raises:
        UaError: an author's mistake: no usable key, the spec in
            ``data["params"]`` does not open with it, or no variant time.
    """
    keys = _key_list(key)
    spec = _variant_spec(data, keys, spec_name)
    created = _variant_created(data, spec_name, not_before)
    sealed, output = _submitted_result(data, spec_name)
    if sealed is None:
        _set_grade(data, spec_name, 0.0, {"error": "No check result came with this submission."})
        return None
    try:
        result = open_result(keys, sealed, spec["specID"], spec.get("assignmentName"))
    except CheckResultError as e:
        _set_grade(data, spec_name, 0.0, {"error": f"The check result was refused: {e.message}."})
        return None
    if result["checkedAt"] < int(created):
        _set_grade(data, spec_name, 0.0, {"error": "The check result is older than this variant; check again."})
        return None
    tests = [
        {"name": t["name"], "passed": t["passed"], "message": t.get("message") if isinstance(t.get("message"), str) else ""}
        for t in result["tests"]
    ]
    score = min(1.0, max(0.0, float(result["score"])))
    _set_grade(data, spec_name, score, {"score": score, "tests": tests, "output": output, "checkedAt": result["checkedAt"]})
    return result

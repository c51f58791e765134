"""A stand-in for the few helpers of PrairieLearn's `prairielearn` module that
uassign_terminal.py uses, written to behave like PrairieLearn's own
(apps/prairielearn/python/prairielearn: check_attribs, get_string_attrib,
get_boolean_attrib, get_uuid), so the element's controller runs in tests
without a PrairieLearn checkout. lxml and chevron are the real packages."""

from __future__ import annotations

import uuid
from typing import Any


def _compat(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        out.extend((name, name.replace("-", "_")))
    return out


def has_attrib(element, name: str) -> bool:
    return name in element.attrib or name.replace("-", "_") in element.attrib


def check_attribs(element, required_attribs: list[str], optional_attribs: list[str]) -> None:
    for name in required_attribs:
        if not has_attrib(element, name):
            raise ValueError(f'Required attribute "{name}" missing')
    extra = set(element.attrib) - set(_compat(required_attribs)) - set(_compat(optional_attribs))
    for name in extra:
        raise ValueError(f'Unknown attribute "{name}"')


def _get_attrib(element, name: str, *args: Any) -> tuple[Any, bool]:
    if len(args) > 1:
        raise ValueError("Only one additional argument is allowed")
    if name in element.attrib:
        return element.attrib[name], False
    old_name = name.replace("-", "_")
    if old_name in element.attrib:
        return element.attrib[old_name], False
    if len(args) == 1:
        return args[0], True
    raise ValueError(f'Attribute "{name}" missing and no default is available')


def get_string_attrib(element, name: str, *args: Any):
    return _get_attrib(element, name, *args)[0]


def get_boolean_attrib(element, name: str, *args: Any):
    val, is_default = _get_attrib(element, name, *args)
    if is_default:
        return val
    if val in ["true", "t", "1", "True", "T", "TRUE", "yes", "y", "Yes", "Y", "YES"]:
        return True
    if val in ["false", "f", "0", "False", "F", "FALSE", "no", "n", "No", "N", "NO"]:
        return False
    raise ValueError(f'Attribute "{name}" must be a boolean value: {val}')


def get_uuid() -> str:
    return str(uuid.uuid4())


def add_files_format_error(data, error: str) -> None:
    if data["format_errors"].get("_files") is None:
        data["format_errors"]["_files"] = []
    data["format_errors"]["_files"].append(error)


def add_submitted_file(data, file_name: str, base64_contents: str) -> None:
    if data["submitted_answers"].get("_files") is None:
        data["submitted_answers"]["_files"] = []
    data["submitted_answers"]["_files"].append({"name": file_name, "contents": base64_contents})

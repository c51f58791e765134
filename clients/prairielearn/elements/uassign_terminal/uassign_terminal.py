"""PrairieLearn element <uassign_terminal>: a terminal from a ua server.

    <uassign_terminal host="ua.example.edu"></uassign_terminal>

Attributes:
    spec_name  key of data["params"] holding the sealed spec (default "spec");
               `spec-name` is accepted too.
    host       the ua server: "ua.example.edu", "ua.example.edu:8443" or with a
               path prefix "example.edu/ua"; an explicit "https://..." or
               "http://..." URL is used as given.
    insecure   "false" (default): https:// and wss://. "true": http:// and
               ws:// (local testing only; the terminal and the spec travel
               unencrypted).
    height     the terminal's height, a CSS length (default "28em").
    graded-files  comma-separated paths in the container (relative to the
               image's WORKDIR) copied out at each submission into
               data["submitted_answers"]["_files"], as PrairieLearn's file
               elements do (for pl-external-grader, pl-file-preview, manual
               grading). A missing file is a format error.
    reset      "true" (default): a "Reset to a fresh copy" button.
    screen-reader  "true": xterm.js's screen-reader mode on from the start
               (default "false": the student switches it in the terminal's
               toolbar, and the choice is kept by the browser).
    check      "true": each save or submission first runs the assignment's
               check (docs/API.md, "Checks") and carries its sealed result in
               data["submitted_answers"]["_uassign_check_" + spec_name], for
               uassign.grade_check(data, key) in the question's grade(); a
               check that could not run is a format error. Default "false".
               Either way the student has a "Check my work" button when the
               assignment has a check.

The sealed spec is made in the question's server.py (uassign.create_spec). It is
safe in the page: only the ua server can open it. With several ua nodes behind
HAProxy, server.py also puts the spec's route token (uassign.route_token) in
data["params"][spec_name + "_route"]; the browser sends it as ?route=. The browser posts it to
{host}/spec and attaches to the instance's websocket (uassign_terminal.js).

When the question is not editable (a staff member viewing a student's
variant, manual grading, a closed assessment) the element never posts the spec
for a terminal: it shows a read-only view of the student's terminal when it
runs (ua's observe mode) and the graded files of the last submission.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import os
import re
import urllib.parse

import chevron
import lxml.html
import prairielearn as pl

SPEC_NAME_DEFAULT = "spec"
INSECURE_DEFAULT = False
HEIGHT_DEFAULT = "28em"
MUSTACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "uassign_terminal.mustache")
_CSS_LENGTH = re.compile(r"^\d+(\.\d+)?(px|em|rem|vh|%)$")
_SEALED = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_ROUTE = re.compile(r"^[0-9a-f]{16}$")
RESET_DEFAULT = True
# The graded files travel through the page: bound what parse() accepts
# (ua itself answers at most 5 MiB).
MAX_FILES_FIELD = 8 << 20
# A check's answer: its output is at most 64 KiB (as UTF-8, JSON-escaped in
# the field), its sealed result a verdict of at most 64 KiB, padded.
MAX_CHECK_FIELD = 1 << 20
CHECK_DEFAULT = False


def _spec_name(element) -> str:
    for name in ("spec_name", "spec-name"):
        if name in element.attrib:
            return element.attrib[name]
    return SPEC_NAME_DEFAULT


def server_urls(host: str, insecure: bool) -> tuple[str, str]:
    """(HTTP base URL, websocket base URL) for the host attribute, without a trailing slash."""
    host = host.strip()
    if not host:
        raise ValueError('<uassign_terminal>: the "host" attribute is empty; set it to the ua server, e.g. host="ua.example.edu"')
    if "://" in host:
        parts = urllib.parse.urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f'<uassign_terminal>: host="{host}" must be a host name or an http(s):// URL')
        if parts.scheme == "http" and not insecure:
            raise ValueError(
                f'<uassign_terminal>: host="{host}" is plain http; use https, or set insecure="true" (testing only)'
            )
        scheme, netloc, path = parts.scheme, parts.netloc, parts.path
    else:
        netloc, _, path = host.partition("/")
        path = "/" + path if path else ""
        scheme = "http" if insecure else "https"
        if not netloc or any(c in netloc for c in " ?#@\\"):
            raise ValueError(f'<uassign_terminal>: host="{host}" is not a host name')
    path = path.rstrip("/")
    ws_scheme = "ws" if scheme == "http" else "wss"
    return f"{scheme}://{netloc}{path}", f"{ws_scheme}://{netloc}{path}"


def graded_file_names(text: str) -> list[str]:
    """The graded-files attribute as a list of paths."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if "\0" in name or len(name) > 4096:
            raise ValueError(f'<uassign_terminal>: graded-files has an invalid path "{name[:80]}"')
    if len(set(names)) != len(names):
        raise ValueError("<uassign_terminal>: graded-files names a file twice")
    if len(names) > 64:
        raise ValueError("<uassign_terminal>: graded-files names more than 64 files")
    return names


def _settings(element_html: str) -> dict:
    element = lxml.html.fragment_fromstring(element_html)
    pl.check_attribs(
        element,
        required_attribs=["host"],
        optional_attribs=["spec_name", "spec-name", "insecure", "height", "graded-files", "reset", "screen-reader", "check"],
    )
    insecure = pl.get_boolean_attrib(element, "insecure", INSECURE_DEFAULT)
    http_base, ws_base = server_urls(pl.get_string_attrib(element, "host"), insecure)
    height = pl.get_string_attrib(element, "height", HEIGHT_DEFAULT).strip()
    if not _CSS_LENGTH.match(height):
        raise ValueError(f'<uassign_terminal>: height="{height}" must be a CSS length such as 28em or 480px')
    return {
        "spec_name": _spec_name(element),
        "http_base": http_base,
        "ws_base": ws_base,
        "height": height,
        "graded_files": graded_file_names(pl.get_string_attrib(element, "graded-files", "")),
        "reset": pl.get_boolean_attrib(element, "reset", RESET_DEFAULT),
        "screen_reader": pl.get_boolean_attrib(element, "screen-reader", False),
        "check": pl.get_boolean_attrib(element, "check", CHECK_DEFAULT),
    }


def _spec_problem(data: dict, spec_name: str) -> str | None:
    spec = data.get("params", {}).get(spec_name)
    if not isinstance(spec, str) or not spec.strip():
        return (
            f'No sealed spec in data["params"]["{spec_name}"]: set it in server.py generate() '
            f"with uassign.create_spec(...)."
        )
    if not _SEALED.match(spec.strip()):
        return f'data["params"]["{spec_name}"] is not a sealed spec (one line of base64 from uassign.create_spec).'
    route = data["params"].get(_route_name(spec_name))
    if route is not None and not (isinstance(route, str) and _ROUTE.match(route)):
        return (
            f'data["params"]["{_route_name(spec_name)}"] is not a route token '
            f"(16 hex digits from uassign.route_token(spec_id, key))."
        )
    return None


def _route_name(spec_name: str) -> str:
    """The key of data["params"] that holds the spec's route token (optional)."""
    return spec_name + "_route"


def _files_field(settings: dict) -> str:
    """The form field the browser fills with the graded files at submission."""
    return "_uassign_files_" + settings["spec_name"]


def _check_field(settings: dict) -> str:
    """The form field the browser fills with the check's answer at submission
    (and the key of submitted_answers, partial_scores that grade_check uses)."""
    return "_uassign_check_" + settings["spec_name"]


def prepare(element_html: str, data: dict) -> None:
    """Checks the attributes and the sealed spec: an author's mistake raises
    here, so PrairieLearn reports it to the course staff, not to students."""
    settings = _settings(element_html)
    problem = _spec_problem(data, settings["spec_name"])
    if problem is not None:
        raise ValueError("<uassign_terminal>: " + problem)


def _is_read_only(data: dict) -> bool:
    return not data.get("editable", False) or bool(data.get("manual_grading", False))


def _submitted_files(data: dict, names: list[str]) -> list[dict]:
    """The graded files of the submission, for display, in attribute order."""
    by_name = {}
    for f in data.get("submitted_answers", {}).get("_files", None) or []:
        if isinstance(f, dict) and f.get("name") in names:
            try:
                raw = base64.b64decode(f.get("contents", ""), validate=True)
            except (binascii.Error, ValueError):
                continue
            by_name[f["name"]] = raw
    out = []
    for name in names:
        if name in by_name:
            raw = by_name[name]
            out.append({"name": name, "size": len(raw), "text": raw.decode("utf-8", errors="replace")})
    return out


def render(element_html: str, data: dict) -> str:
    """The question panel: the terminal (editable) or a read-only view of it
    (staff views, closed assessments). The submission panel lists the graded
    files submitted; the answer panel is empty."""
    settings = _settings(element_html)
    panel = data.get("panel")
    if panel == "answer":
        return ""
    files = _submitted_files(data, settings["graded_files"])
    if panel == "submission":
        check = _check_feedback(data, settings)
        if not settings["graded_files"] and check is None:
            return ""
        return _render(
            settings,
            {
                "submission": True,
                "files": files,
                "has_files": bool(files),
                "list_files": bool(settings["graded_files"]),
                "check": check,
            },
        )
    if panel != "question":
        return ""
    error = _spec_problem(data, settings["spec_name"])
    read_only = _is_read_only(data)
    spec = "" if error else data["params"][settings["spec_name"]].strip()
    route = "" if error else data["params"].get(_route_name(settings["spec_name"])) or ""
    return _render(
        settings,
        {
            "question": True,
            "uuid": pl.get_uuid(),
            "spec": spec,
            "route": route,
            "error": error,
            "mode": "observe" if read_only else "terminal",
            "read_only": read_only,
            "graded_files": json.dumps(settings["graded_files"]),
            "has_graded_files": bool(settings["graded_files"]),
            "files_field": _files_field(settings),
            "reset": settings["reset"] and not read_only,
            "toolbar": not read_only,
            "check_field": _check_field(settings) if settings["check"] and not read_only else "",
            "files": files if read_only else [],
            "has_files": read_only and bool(files),
        },
    )


def _render(settings: dict, values: dict) -> str:
    with open(MUSTACHE, encoding="utf-8") as f:
        return chevron.render(
            f,
            {
                "http_base": settings["http_base"],
                "ws_base": settings["ws_base"],
                "height": settings["height"],
                "screen_reader": "true" if settings["screen_reader"] else "false",
                **values,
            },
        ).strip()


def _check_feedback(data: dict, settings: dict) -> dict | None:
    """What grade_check put into partial_scores, for the submission panel."""
    entry = data.get("partial_scores", {}).get(_check_field(settings))
    feedback = entry.get("feedback") if isinstance(entry, dict) else None
    if not isinstance(feedback, dict):
        return None
    if isinstance(feedback.get("error"), str):
        return {"error": feedback["error"]}
    tests = [
        {"name": str(t.get("name", "")), "passed": t.get("passed") is True, "message": str(t.get("message") or "")}
        for t in feedback.get("tests") or []
        if isinstance(t, dict)
    ]
    score = feedback.get("score") if isinstance(feedback.get("score"), (int, float)) else 0
    output = feedback.get("output") if isinstance(feedback.get("output"), str) else ""
    return {"percent": round(100 * max(0.0, min(1.0, float(score)))), "tests": tests, "has_tests": bool(tests), "output": output}


def parse(element_html: str, data: dict) -> None:
    """Puts the graded files the browser fetched from ua at submission into
    data["submitted_answers"]["_files"] (as PrairieLearn's file elements do),
    and with check="true" the check's answer into
    data["submitted_answers"]["_uassign_check_" + spec_name]. A file that is
    missing or could not be read, or a check that did not run, is a format
    error."""
    settings = _settings(element_html)
    if settings["check"]:
        _parse_check(data, settings)
    _parse_files(data, settings)


def _parse_check(data: dict, settings: dict) -> None:
    field = _check_field(settings)
    raw = data.get("raw_submitted_answers", {}).get(field)
    data.get("submitted_answers", {}).pop(field, None)
    answer = None
    if isinstance(raw, str) and len(raw) <= MAX_CHECK_FIELD:
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        data["format_errors"][field] = "Your work could not be checked: " + answer["error"][:500]
        return
    result = answer.get("result") if isinstance(answer, dict) else None
    output = answer.get("output") if isinstance(answer, dict) else None
    if not isinstance(result, str) or not _SEALED.match(result) or not isinstance(output, str):
        data["format_errors"][field] = "The check of your work was not submitted; reload the page and submit again."
        return
    data["submitted_answers"][field] = {"result": result, "output": output}


def _parse_files(data: dict, settings: dict) -> None:
    names = settings["graded_files"]
    if not names:
        return
    field = _files_field(settings)
    raw = data.get("raw_submitted_answers", {}).get(field)
    data.get("submitted_answers", {}).pop(field, None)
    if not isinstance(raw, str) or not raw or len(raw) > MAX_FILES_FIELD:
        _files_error(data, "The files of your terminal were not submitted; reload the page and submit again.")
        return
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        _files_error(data, "The files of your terminal were not submitted; reload the page and submit again.")
        return
    if isinstance(answer.get("error"), str):
        _files_error(data, "Your files could not be read from the terminal: " + answer["error"][:500])
        return
    got = {}
    for f in answer.get("files") or []:
        if isinstance(f, dict) and f.get("name") in names and isinstance(f.get("contents"), str):
            try:
                base64.b64decode(f["contents"], validate=True)
            except (binascii.Error, ValueError):
                continue
            got[f["name"]] = f["contents"]
    existing = data["submitted_answers"].get("_files")
    if isinstance(existing, list):
        data["submitted_answers"]["_files"] = [f for f in existing if not (isinstance(f, dict) and f.get("name") in got)]
    for name in names:
        if name in got:
            pl.add_submitted_file(data, name, got[name])
        else:
            _files_error(data, f"{name} was not found in your terminal (it must be a regular file, at most 1 MiB).")


def _files_error(data: dict, message: str) -> None:
    if hasattr(pl, "add_files_format_error"):
        pl.add_files_format_error(data, message)
    else:
        data["format_errors"].setdefault("_files", []).append(message)

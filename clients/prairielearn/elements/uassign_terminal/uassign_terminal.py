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

The sealed spec is made in the question's server.py (uassign.create_spec). It is
safe in the page: only the ua server can open it. The browser posts it to
{host}/spec and attaches to the instance's websocket (uassign_terminal.js).
"""

from __future__ import annotations

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


def _settings(element_html: str) -> dict:
    element = lxml.html.fragment_fromstring(element_html)
    pl.check_attribs(element, required_attribs=["host"], optional_attribs=["spec_name", "spec-name", "insecure", "height"])
    insecure = pl.get_boolean_attrib(element, "insecure", INSECURE_DEFAULT)
    http_base, ws_base = server_urls(pl.get_string_attrib(element, "host"), insecure)
    height = pl.get_string_attrib(element, "height", HEIGHT_DEFAULT).strip()
    if not _CSS_LENGTH.match(height):
        raise ValueError(f'<uassign_terminal>: height="{height}" must be a CSS length such as 28em or 480px')
    return {"spec_name": _spec_name(element), "http_base": http_base, "ws_base": ws_base, "height": height}


def prepare(element_html: str, data: dict) -> None:
    """Checks the attributes (an author's mistake shows when the question is loaded)."""
    _settings(element_html)


def render(element_html: str, data: dict) -> str:
    """The terminal in the question panel; nothing in the submission and answer panels."""
    if data.get("panel") != "question":
        return ""
    settings = _settings(element_html)
    spec = data.get("params", {}).get(settings["spec_name"])
    error = None
    if not isinstance(spec, str) or not spec.strip():
        error = (
            f'No sealed spec in data["params"]["{settings["spec_name"]}"]: set it in server.py generate() '
            f"with uassign.create_spec(...)."
        )
        spec = ""
    elif not _SEALED.match(spec.strip()):
        error = f'data["params"]["{settings["spec_name"]}"] is not a sealed spec (one line of base64 from uassign.create_spec).'
        spec = ""
    with open(MUSTACHE, encoding="utf-8") as f:
        return chevron.render(
            f,
            {
                "uuid": pl.get_uuid(),
                "spec": spec.strip(),
                "http_base": settings["http_base"],
                "ws_base": settings["ws_base"],
                "height": settings["height"],
                "error": error,
            },
        ).strip()

"""A tiny assignment with a hidden check (docs/API.md, "Checks"), for the
Python client's and the PrairieLearn element's tests: it passes once the
student has made the file `done` in their home directory."""

from __future__ import annotations

from pathlib import Path

NAME = "lab.checked"

CHECK = """\
if [ -f /home/student/done ]; then s=1; p=true; m="found done"; else s=0; p=false; m="no file done yet"; fi
echo "checked for {{ data.answer }}"
echo "<b>not bold</b>"
printf '{"score": %s, "tests": [{"name": "done file", "passed": %s, "message": "%s"}, {"name": "always", "passed": true}]}' "$s" "$p" "$m" > "$UA_RESULT"
"""


# Prints the spec's data but writes no verdict: a 422 with sealedOutput.
BROKEN = """\
echo "broken for {{ data.answer }}"
"""

DOCKERFILE = "FROM ua-busybox:latest\nUSER student\nWORKDIR /home/student\nCMD [\"/bin/sh\"]\n"


def write(root: Path) -> Path:
    """Writes under `root`: lab/checked (checkInterval 1s), lab/checked_slow
    (the same check, checkInterval 60s), lab/broken_check (no verdict) and
    lab/plain (no check); returns root."""
    for name, check, interval in (("checked", CHECK, "1s"), ("checked_slow", CHECK, "60s"), ("broken_check", BROKEN, "1s")):
        directory = root / "lab" / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "Dockerfile").write_text(DOCKERFILE)
        (directory / "check.sh.tmpl").write_text(check)
        (directory / "assignment.json").write_text('{"checkInterval": "%s"}\n' % interval)
    plain = root / "lab" / "plain"
    plain.mkdir(parents=True, exist_ok=True)
    (plain / "Dockerfile").write_text("FROM ua-busybox:latest\nUSER student\nWORKDIR /home/student\n")
    return root

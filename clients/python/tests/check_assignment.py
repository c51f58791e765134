"""A tiny assignment with a hidden check (docs/API.md, "Checks"), for the
Python client's and the PrairieLearn element's tests: it passes once the
student has made the file `done` in their home directory."""

from __future__ import annotations

from pathlib import Path

NAME = "lab.checked"

CHECK = """\
if [ -f /home/student/done ]; then s=1; p=true; m="found done"; else s=0; p=false; m="no file done yet"; fi
echo "checked for {{ data.answer }}"
printf '{"score": %s, "tests": [{"name": "done file", "passed": %s, "message": "%s"}, {"name": "always", "passed": true}]}' "$s" "$p" "$m" > "$UA_RESULT"
"""


def write(root: Path, check_interval: str = "1s") -> Path:
    """Writes lab/checked (and lab/plain, without a check) under `root`; returns root."""
    checked = root / "lab" / "checked"
    checked.mkdir(parents=True, exist_ok=True)
    (checked / "Dockerfile").write_text(
        "FROM ua-busybox:latest\nUSER student\nWORKDIR /home/student\nCMD [\"/bin/sh\"]\n"
    )
    (checked / "check.sh.tmpl").write_text(CHECK)
    (checked / "assignment.json").write_text('{"checkInterval": "%s"}\n' % check_interval)
    plain = root / "lab" / "plain"
    plain.mkdir(parents=True, exist_ok=True)
    (plain / "Dockerfile").write_text("FROM ua-busybox:latest\nUSER student\nWORKDIR /home/student\n")
    return root

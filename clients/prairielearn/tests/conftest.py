"""Puts the element's controller, the PrairieLearn stand-in and the Python
client's test helpers (a real ua server) on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ELEMENT_DIR = HERE.parent / "elements" / "uassign_terminal"
for path in (HERE / "fake_pl", ELEMENT_DIR, HERE.parents[1] / "python" / "tests", HERE.parents[1] / "python" / "src"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

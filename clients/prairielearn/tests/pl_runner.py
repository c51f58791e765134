"""Runs one question phase the way PrairieLearn does, with PrairieLearn's own
Python (../../../../shared/peers/prairielearn or UA_PL_PEER): `generate` through
the question's server.py (with serverFilesCourse on sys.path, as zygote.py
does), the element phases through prairielearn.internal.question_phases, and
`grade` through both: the elements' grade, then server.py's grade().

Reads {"phase", "data", "course", "question"} as JSON on stdin, writes
{"result", "data"} or {"error"} as JSON on stdout. Run with PrairieLearn's
Python 3.13 and its dependencies (PyPI), without PyNaCl, as in PrairieLearn.
"""

import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path

request = json.load(sys.stdin)
peer = Path(os.environ["UA_PL_PEER"]) / "apps" / "prairielearn" / "python"
sys.path.insert(0, str(peer))
course = Path(request["course"])
question = course / "questions" / request["question"]
data = request["data"]

try:
    import nacl  # noqa: F401

    print(json.dumps({"error": "PyNaCl is importable; PrairieLearn's Python has none"}))
    sys.exit(0)
except ImportError:
    pass

from prairielearn.internal import question_phases  # noqa: E402



def server_py():
    sys.path.insert(0, str(course / "serverFilesCourse"))
    spec = importlib.util.spec_from_file_location("server", question / "server.py")
    server = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(server)
    os.chdir(question)
    return server


try:
    if request["phase"] == "generate":
        server_py().generate(data)
        result = None
    else:
        context = {
            "html": (question / "question.html").read_text(),
            "elements": {"uassign_terminal": {"name": "uassign_terminal", "controller": "uassign_terminal.py", "type": "course"}},
            "element_extensions": {},
            "course_path": str(course),
        }
        result, _ = question_phases.process(request["phase"], data, context)
        if request["phase"] == "grade":
            server_py().grade(data)
    print(json.dumps({"result": result, "data": data}))
except Exception as exc:  # noqa: BLE001
    print(json.dumps({"error": "".join(traceback.format_exception(exc))}))

# questions/checked/server.py: a question graded by its assignment's check
# (docs/PRAIRIELEARN.md, "Graded by a check"), as a course has it.
import datetime
import os
import time

import uassign


def keys(data):
    # Every key of the file: results sealed before a key rotation still open.
    return uassign.read_keys(os.path.join(data["options"]["server_files_course_path"], "ua", "key"))


def generate(data):
    data["params"]["spec"] = uassign.create_spec(
        "lab.checked",
        {"answer": "the-answer-42"},
        spec_id=f"cs101/checked/{data['variant_seed']}",
        not_after=datetime.timedelta(days=120),
        key=keys(data)[0],
    )
    data["params"]["spec_created"] = int(time.time())


def grade(data):
    uassign.grade_check(data, keys(data))

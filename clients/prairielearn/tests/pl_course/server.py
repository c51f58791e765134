# questions/hello-c/server.py: docs/PRAIRIELEARN.md's example question, as a course has it.
import datetime
import os

import uassign


def generate(data):
    key = uassign.read_key_file(os.path.join(data["options"]["server_files_course_path"], "ua", "key"))
    data["params"]["spec"] = uassign.create_spec(
        "demo.busybox",
        {"greeting": "Write hello.c, then Save & Grade."},
        spec_id=f"cs101/hello-c/{data['variant_seed']}",
        not_after=datetime.timedelta(days=120),
        keep_until=datetime.timedelta(days=14),
        key=key,
    )

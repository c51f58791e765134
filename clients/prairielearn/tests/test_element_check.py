"""The element's check (docs/API.md, "Checks"; issue 24): the button and its
region, the check attribute's hidden field, parse() keeping the check's
answer, and the submission panel showing what uassign.grade_check set."""

from __future__ import annotations

import json

import lxml.html
import pytest

import uassign_terminal as element
from test_element import SPEC, question_data, rendered, terminal_div

RESULT = "c2VhbGVkK3Jlc3VsdA" + "B" * 60 + "=="


def test_students_get_the_check_button_and_region_staff_do_not():
    _, root = rendered('<uassign_terminal host="h"></uassign_terminal>')
    (button,) = root.xpath(".//button[contains(@class, 'uassign-terminal-check-button')]")
    assert button.text == "Check my work" and button.get("hidden") is not None  # shown when POST /spec says "check": true
    assert root.xpath(".//section[contains(@class, 'uassign-terminal-check')]")
    assert terminal_div(root).get("data-check-field") == ""
    assert not root.xpath(".//input[@type='hidden']")
    _, root = rendered('<uassign_terminal host="h" check="true"></uassign_terminal>', {**question_data(), "editable": False})
    assert not root.xpath(".//button[contains(@class, 'uassign-terminal-check-button')]")
    assert not root.xpath(".//section[contains(@class, 'uassign-terminal-check')]")
    assert not root.xpath(".//input[@type='hidden']")


def test_check_true_adds_the_hidden_field_named_after_the_spec():
    _, root = rendered('<uassign_terminal host="h" check="true" spec-name="lab"></uassign_terminal>', question_data(lab=SPEC))
    (field,) = root.xpath(".//input[@type='hidden']")
    assert field.get("name") == terminal_div(root).get("data-check-field") == "_uassign_check_lab"
    with pytest.raises(ValueError):
        element.prepare('<uassign_terminal host="h" check="maybe"></uassign_terminal>', question_data())


def parsed(raw, html='<uassign_terminal host="h" check="true"></uassign_terminal>'):
    raws = {} if raw is None else {"_uassign_check_spec": raw}
    data = {**question_data(), "raw_submitted_answers": raws, "submitted_answers": dict(raws), "format_errors": {}}
    element.parse(html, data)
    return data


def test_parse_keeps_the_checks_answer():
    data = parsed(json.dumps({"result": RESULT, "output": "checked\n", "extra": 1}))
    assert data["submitted_answers"]["_uassign_check_spec"] == {"result": RESULT, "output": "checked\n"}
    assert data["format_errors"] == {}


@pytest.mark.parametrize(
    "raw, words",
    [
        (json.dumps({"error": "A check of this instance is running; wait for its answer"}), "could not be checked: A check"),
        (None, "was not submitted"),
        ("", "was not submitted"),
        ("not json", "was not submitted"),
        (json.dumps({"result": "not base64!", "output": ""}), "was not submitted"),
        (json.dumps({"result": RESULT}), "was not submitted"),
        (json.dumps({"result": RESULT, "output": "x" * (element.MAX_CHECK_FIELD + 1)}), "was not submitted"),
    ],
)
def test_a_check_that_did_not_come_is_a_format_error(raw, words):
    data = parsed(raw)
    assert words in data["format_errors"]["_uassign_check_spec"]
    assert "_uassign_check_spec" not in data["submitted_answers"]


def test_without_check_true_parse_leaves_the_field_alone():
    data = parsed("anything", '<uassign_terminal host="h"></uassign_terminal>')
    assert data["format_errors"] == {} and data["submitted_answers"] == {"_uassign_check_spec": "anything"}


def submission(feedback, html='<uassign_terminal host="h" check="true"></uassign_terminal>'):
    data = {**question_data(), "panel": "submission", "submitted_answers": {}}
    if feedback is not None:
        data["partial_scores"] = {"_uassign_check_spec": {"score": 0, "weight": 1, "feedback": feedback}}
    out = element.render(html, data)
    return out, lxml.html.fragment_fromstring(out, create_parent="div") if out else None


def test_the_submission_panel_shows_the_graded_check():
    feedback = {
        "score": 0.5,
        "tests": [{"name": "done file", "passed": False, "message": "no <b>done</b> yet"}, {"name": "always", "passed": True, "message": ""}],
        "output": "checked <script>alert(1)</script>\n",
        "checkedAt": 1,
    }
    out, root = submission(feedback)
    assert "50%" in root.text_content()
    fail, ok = root.xpath(".//ul[contains(@class, 'uassign-terminal-check-tests')]/li")
    assert fail.get("class") == "uassign-terminal-check-fail" and "✗" in fail.text_content()
    assert "done file: no <b>done</b> yet" in " ".join(fail.text_content().split())
    assert ok.get("class") == "uassign-terminal-check-pass" and "✓" in ok.text_content()
    assert "<script>" not in out and "&lt;script&gt;" in out and "<b>" not in out
    (pre,) = root.xpath(".//details[contains(@class, 'uassign-terminal-check-output')]/pre")
    assert pre.text == feedback["output"]
    assert "No files were submitted" not in out  # no graded files here


def test_the_submission_panel_says_why_a_result_was_refused_and_is_empty_without_one():
    _, root = submission({"error": "The check result was refused: the check result is for another spec."})
    (alert,) = root.xpath(".//div[contains(@class, 'uassign-terminal-check-error')]")
    assert "another spec" in alert.text
    assert submission(None)[0] == ""
    out, _ = submission(None, '<uassign_terminal host="h" graded-files="a.c"></uassign_terminal>')
    assert "No files were submitted" in out and "Check of your work" not in out

"""The results model (coursekit.pipeline.results): what a worker hands the merge, what the gradebook
holds of a student, a run's record as it is on disk, and the changes between two runs."""
import datetime
import json
import pickle

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from coursekit.pipeline import regrade, report
from coursekit.pipeline.results import (NOT_GRADED, CellComment, CellGrade, Change, HandGrade, KeptByHand, Outcome, RecordedCell,
                                        Run, StudentResult, failure_messages, part_of)


def _test_cell(grade_id, *errors):
    return new_code_cell("judge()", metadata={"nbgrader": {"grade": True, "grade_id": grade_id, "points": 1}},
                         outputs=[new_output("error", ename=name, evalue=message, traceback=[]) for name, message in errors])


def _result(tmp_path):
    """ada lost a point in tanh_hidden, which failed twice; linear_visible passed."""
    notebook = tmp_path / "ps1.ipynb"
    nbformat.write(new_notebook(cells=[_test_cell("linear_visible"),
                                       _test_cell("tanh_hidden", ("AssertionError", "wrong sign?"), ("ValueError", "later")),
                                       new_code_cell("1 / 0", outputs=[new_output("error", ename="ZeroDivisionError",
                                                                                  evalue="division by zero", traceback=[])])]),
                   notebook)
    return StudentResult("ada", {"linear_visible": 2, "linear_hidden": 4, "tanh_hidden": 1},
                         {"linear_visible": 2, "linear_hidden": 4, "tanh_hidden": 3}, notebook)


def test_a_students_scores_sum_by_part_and_say_what_was_lost(tmp_path):
    result = _result(tmp_path)
    assert part_of("linear_visible") == "linear"
    assert (result.total, result.max_total) == (7, 9)
    assert result.parts() == {"linear": 6, "tanh": 1} and result.max_parts() == {"linear": 6, "tanh": 3}
    assert result.lost() == {"tanh"} and result.failed() == {"tanh_hidden"}


def test_failure_messages_are_the_test_cells_errors_only(tmp_path):
    result = _result(tmp_path)
    assert failure_messages(result.autograded) == {"tanh_hidden": [("AssertionError", "wrong sign?"), ("ValueError", "later")]}
    assert result.messages == failure_messages(result.autograded)
    assert StudentResult("bo", {}, {}).messages == {}, "no autograded notebook: no messages"


def test_a_record_keeps_each_cells_score_and_first_message(tmp_path):
    assert _result(tmp_path).recorded() == {"linear_visible": RecordedCell(2, ""), "linear_hidden": RecordedCell(4, ""),
                                            "tanh_hidden": RecordedCell(1, "wrong sign?")}


def test_an_outcome_crosses_to_a_worker_and_back_as_it_was():
    outcome = Outcome("ada", ok=True, timestamp=datetime.datetime(2027, 1, 15, 23, 59), late_penalty={"ps1": None},
                      grades=[CellGrade("ps1", "linear_visible", 2.0, False), CellGrade("ps1", "why", None, True)],
                      comments=[CellComment("ps1", "linear", None)], autograded={"ps1.ipynb": b"{}"})
    assert pickle.loads(pickle.dumps(outcome)) == outcome
    kept = KeptByHand(3600.0, [HandGrade("ps1", "why", 2.0, None)], [CellComment("ps1", "why", "good")])
    assert pickle.loads(pickle.dumps(kept)) == kept


def test_manual_grading_is_needed_when_a_cell_waits_for_a_ta():
    graded = [CellGrade("ps1", "linear_visible", 2.0, False)]
    assert not Outcome("ada", grades=graded).needs_manual_grading()
    assert Outcome("ada", grades=graded + [CellGrade("ps1", "why", None, True)]).needs_manual_grading()


def test_nothing_kept_by_hand_is_false():
    assert not KeptByHand()
    assert KeptByHand(extension_seconds=60.0) and KeptByHand(grades=[HandGrade("ps1", "why", 0.0, None)])
    assert KeptByHand(comments=[CellComment("ps1", "why", "see me")])


# A run's record exactly as `make grade` has written them since runs were first recorded.
OLD_RECORD = """{
 "students": {
  "ada": {
   "linear_visible": [
    2.0,
    ""
   ],
   "tanh_hidden": [
    0.0,
    "Tanh.backward is wrong (the sign?)"
   ]
  }
 },
 "tests": "0123456789ab",
 "when": "2026-12-01T10-00-00.000000Z"
}"""


def test_a_record_on_disk_is_read_and_written_in_the_same_shape(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(OLD_RECORD)
    run = regrade.read_run(path)
    assert run == Run("2026-12-01T10-00-00.000000Z", "0123456789ab",
                      {"ada": {"linear_visible": RecordedCell(2.0, ""),
                               "tanh_hidden": RecordedCell(0.0, "Tanh.backward is wrong (the sign?)")}})
    assert json.dumps(run.to_json(), indent=1, sort_keys=True) == OLD_RECORD


def test_record_writes_a_run_and_returns_the_one_before(tmp_path):
    first = {"ada": {"tanh_hidden": RecordedCell(0, "the sign?")}}
    assert regrade.record(tmp_path, "ps1", first) is None
    (written,) = regrade.runs_folder(tmp_path, "ps1").glob("*.json")
    assert json.loads(written.read_text())["students"] == {"ada": {"tanh_hidden": [0, "the sign?"]}}
    previous = regrade.record(tmp_path, "ps1", {"ada": {"tanh_hidden": RecordedCell(3, "")}})
    assert previous.students == first and previous.when == written.stem


def test_changes_are_the_cells_whose_score_or_message_differ():
    before = {"ada": {"linear": RecordedCell(2, ""), "tanh": RecordedCell(0, "the sign?")},
              "bo": {"linear": RecordedCell(1, "transposed?")}}
    after = {"ada": {"linear": RecordedCell(2.0, ""), "tanh": RecordedCell(0, "raised ValueError")},
             "cy": {"linear": RecordedCell(2, "")}}
    assert regrade.changes(before, after) == [
        Change("ada", "tanh", RecordedCell(0, "the sign?"), RecordedCell(0, "raised ValueError")),
        Change("bo", "linear", RecordedCell(1, "transposed?"), NOT_GRADED),
        Change("cy", "linear", NOT_GRADED, RecordedCell(2, ""))]
    assert regrade.changes(before, before) == []


def test_changes_read_as_text_and_in_the_report():
    found = [Change("bo", "linear", RecordedCell(1, "transposed?"), NOT_GRADED),
             Change("cy", "tanh", RecordedCell(0.5, "the sign?"), RecordedCell(3, ""))]
    previous = Run("2026-12-01T10-00-00.000000Z", "0123456789ab", {})
    text = regrade.as_text(found, previous, "ba9876543210")
    assert text.splitlines() == ["Changes since the last grading (2026-12-01T10-00-00.000000Z, tests 0123456789ab -> ba9876543210)"
                                 ": 2 test cells of 2 students", "  bo linear: 1 -> -", "  cy tanh: 0.5 -> 3"]
    assert regrade.as_text([], previous).endswith(": none.")
    page = report._changes(found, previous)
    assert "<td>cy</td><td>tanh</td><td>0.5</td><td>3</td><td>the sign?</td><td>passes</td>" in page
    assert "<td>bo</td><td>linear</td><td>1</td><td>-</td><td>transposed?</td><td>not graded</td>" in page
    long = ("Linear.grad_biases is wrong: largest error 0.5 at index (0,) (yours 0.5, expected 1); it equals the expected "
            "value divided by N")
    assert regrade.as_text([Change("cy", "linear", RecordedCell(3, ""), RecordedCell(0, long))]).endswith(f"({long})")
    assert "tests 0123456789ab" in page and "first grading" in report._changes(None, None)

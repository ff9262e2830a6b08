"""``nbgrader export``'s plugin (``ExportApp.plugin_class``): grades.csv with a status column."""
import csv

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import CsvExportPlugin


class CourseExport(CsvExportPlugin):
    """nbgrader's CSV export (``nbgrader export``), with a last column, ``status``: "graded",
    "not submitted", or "not graded: <reason>" for a submission that the last `make grade` could
    not grade (its scores are left empty, not 0 as if it were blank)."""

    COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
               "raw_score", "late_submission_penalty", "score", "max_score", "status"]

    def export(self, gradebook: Gradebook) -> None:
        from coursekit.pipeline.gradebook import not_graded

        students, assignments = {str(s) for s in self.student}, {str(a) for a in self.assignment}
        with open(self.to or "grades.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, self.COLUMNS, lineterminator="\n")
            writer.writeheader()
            for assignment in gradebook.assignments:
                if assignments and assignment.name not in assignments:
                    continue
                failed = not_graded(self.parent.coursedir.root, assignment.name)
                for student in gradebook.students:
                    if not students or student.id in students:
                        writer.writerow(self._row(gradebook, assignment, student, failed.get(student.id)))

    @staticmethod
    def _row(gradebook, assignment, student, failure):
        row = {"assignment": assignment.name, "duedate": assignment.duedate, "student_id": student.id,
               "last_name": student.last_name, "first_name": student.first_name, "email": student.email,
               "max_score": assignment.max_score, "timestamp": "", "status": "not submitted"}
        try:
            submission = gradebook.find_submission(assignment.name, student.id)
        except MissingEntry:
            submission = None
        if failure is not None and (submission is None or all(grade.auto_score is None for notebook in submission.notebooks
                                                              for grade in notebook.grades)):
            row["status"] = f"not graded: {failure}"  # (what a TA graded by hand stays in the gradebook)
        elif submission is not None:
            penalty = submission.late_submission_penalty or 0.0
            row.update(timestamp=submission.timestamp, raw_score=submission.score, late_submission_penalty=penalty,
                       score=max(0.0, submission.score - penalty), status="graded")
        else:
            row.update(raw_score=0.0, late_submission_penalty=0.0, score=0.0)
        return {key: "" if value is None else value for key, value in row.items()}

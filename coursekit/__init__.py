"""Tooling for the autograded deep-learning course.

In the notebooks' tests:
- gradcheck: finite differences and one-line failure messages (ships to students).
- torch_reference: PyTorch float64 reference values for the hidden tests (recorded cache).
- solutions: the model solutions, read from the source notebooks.
- guard: loaded by every grading kernel; keeps answer cells from changing verdicts.

Around nbgrader:
- nbgrader_plugins: preprocessors for time limits, hidden-safe feedback, duplicated cells.
- grading: runs nbgrader on a course directory and reads the gradebook.
- grade: `make grade`, parallel grading merged into the gradebook.
- tamper, report: the tamper report and the instructor report.
- submissions: builds submissions (solutions, bugs, variants, broken files) from notebooks.
- demo: grades the shipped demo class and prints its score table.
"""
from pathlib import Path

COURSE_ROOT = Path(__file__).resolve().parent.parent

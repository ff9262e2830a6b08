"""Tooling for the autograded deep-learning course.

In the notebooks' tests:
- gradcheck: finite differences and one-line failure messages (ships to students).
- judge: the hidden tests, one check per test cell, run in the grader's process; agent: its
  side in the grading kernel (the only course code there besides gradcheck).
- torch_reference: PyTorch float64 reference values for the judge (recorded cache).
- solutions: the model solutions, read from the source notebooks.
- sandbox, confine, warm_kernels: every grading kernel's sandbox, and the warm zygote it forks from.

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

"""Tooling for the autograded deep-learning course.

In the notebooks' tests:
- gradcheck: finite differences and one-line failure messages (ships to students).
- judge: the hidden tests, one check per test cell, run in the grader's process; agent: its
  side in the grading kernel (the only course code there besides gradcheck).
- torch_reference: PyTorch float64 reference values for the judge (recorded cache).
- solutions: the model solutions, read from the source notebooks.
- sandbox, confine, warm_kernels: every grading kernel's sandbox, and the warm zygote it forks from.

Around nbgrader:
- nbgrader_plugins: time limits and the judge's verdicts, deleted test cells put back, duplicated
  cells; the feedback page (templates/course_feedback) and the export's status column.
- grading: runs nbgrader on a course directory and reads the gradebook.
- grade: `make grade`, parallel grading merged into the gradebook.
- tamper, report: the tamper report, the instructor report and the TAs' grading sheet.
- submissions: builds submissions (solutions, bugs, variants, broken files) from notebooks.
- demo: grades the shipped demo class and prints its score table.
"""
from pathlib import Path

COURSE_ROOT = Path(__file__).resolve().parent.parent

# The course's modules that a grading kernel imports: the visible tests' helpers, shipped with
# every assignment, and the judge's agent. The sandbox shows them (and no other course code) to
# kernels, the warm zygote imports them once for all its kernels, and the tamper report flags an
# answer cell that imports them.
IN_THE_KERNEL = ("gradcheck", "agent")
# What sets up a kernel's sandbox from inside it (the zygote runs under bubblewrap).
SANDBOX_SETUP = ("confine", "sandbox", "warm_kernels")

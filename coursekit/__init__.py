"""Tooling for the autograded deep-learning course, laid out by where its code runs:

- shipped/: what students get next to each notebook (gradcheck, datasets); NumPy only.
- kernel/: the grading kernel and its sandbox: the judge's agent, bubblewrap's arguments and the
  kernel manager (sandbox), the sandbox from inside (confine), the warm zygote (warm_kernels).
- judge/: the hidden tests, one check per test cell (judge/<ps>.py), run in the grader's process,
  with PyTorch's reference values (torch_reference) and the model solutions (solutions).
- pipeline/: grading a class around nbgrader: its plugins (plugins/, a module per stage), `make grade`
  (grade_class), the course's folders and nbgrader commands (course), the results' types (results)
  and what the gradebook holds of them (gradebook), the report, regrade record, similar answers and
  tamper report.
- tools/: the demo class (demo), a new assignment (scaffold), fictional submissions (submissions).
"""
from pathlib import Path

COURSE_ROOT = Path(__file__).resolve().parent.parent

# The course's modules that a grading kernel imports: the visible tests' helpers, shipped with
# every assignment, and the judge's agent. The sandbox shows them (and no other course code) to
# kernels, the warm zygote imports them once for all its kernels, and the tamper report flags an
# answer cell that imports them.
IN_THE_KERNEL = ("shipped.gradcheck", "kernel.agent")
# What sets up a kernel's sandbox from inside it (the zygote runs under bubblewrap).
SANDBOX_SETUP = ("kernel.confine", "kernel.sandbox", "kernel.warm_kernels")

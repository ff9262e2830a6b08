"""Scratch courses for the tests, the demo's checks and the benchmarks: a copy of one assignment
of this course, fictional submissions handed in, graded by `make grade`'s code or by stock
nbgrader, and their results."""
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from coursekit import COURSE_ROOT
from coursekit.pipeline.course import PathLike, nbgrader
from coursekit.pipeline.grade_class import grade_class
from coursekit.pipeline.gradebook import results
from coursekit.pipeline.results import StudentResult
from coursekit.judge.solutions import release_notebook
from coursekit.tools.submissions import submit


def copy_course(assignment: str, dest: PathLike, course_root: PathLike | None = None, config: str = "") -> Path:
    """Copy what grading ``assignment`` needs (config and source; symlinks resolved) to ``dest``;
    ``config``: lines added to its nbgrader_config.py."""
    course_root = Path(course_root or COURSE_ROOT)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(course_root / "nbgrader_config.py", dest)
    if config:
        with open(dest / "nbgrader_config.py", "a") as f:
            f.write("\n" + config)
    shutil.copytree(course_root / "source" / assignment, dest / "source" / assignment,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return dest


def _submit_all(assignment, submissions, workdir, config=""):
    course = copy_course(assignment, workdir, config=config)
    release = release_notebook(assignment, COURSE_ROOT)
    for student, submission in submissions.items():
        submit(course, student, assignment, submission, release)
    return course


def grade_submissions(assignment: str, submissions: dict, workdir: PathLike, jobs: int | None = None, feedback: bool = True,
                      config: str = "") -> dict[str, StudentResult]:
    """Grade many submissions in a scratch course the way `make grade` does.

    Args:
    - submissions (dict): {student: submission} (see coursekit.tools.submissions).
    - workdir (Path): an empty directory to work in.
    - jobs (int): worker processes (default: as `make grade`).
    - feedback (bool): also make feedback (the mutation tests skip it: it does not change scores).
    - config (str): lines added to the scratch course's nbgrader_config.py (e.g. shorter time limits).
    Returns:
    - dict: {student: StudentResult}; a student whose submission could not be graded has no cells and
      an ``error``.
    """
    course = _submit_all(assignment, submissions, workdir, config)
    outcomes = grade_class(assignment, course, jobs=jobs, progress=False, feedback=feedback)
    found = results(course, assignment)
    for student, outcome in outcomes.items():
        if not outcome.ok:
            found[student] = StudentResult(student, {}, {}, error=outcome.error)
        else:
            found[student].note = outcome.note
    return found


def grade_submissions_stock(assignment: str, submissions: dict, workdir: PathLike, config: str = "") -> dict[str, StudentResult]:
    """Grade submissions with one plain `nbgrader autograde` run; returns {student: StudentResult}."""
    course = _submit_all(assignment, submissions, workdir, config)
    nbgrader(course, "generate_assignment", assignment, "--force")
    nbgrader(course, "autograde", assignment, "--force", check=False)
    return results(course, assignment)


def regrade_copy(graded: dict[str, StudentResult], students: Iterable[str], workdir: PathLike) -> dict[str, StudentResult]:
    """Grade again, the way `make grade` does, some students of a scratch course already graded:
    in a copy of that course (its config, gradebook and secret, so the same hidden inputs) that
    holds their submissions alone. ``graded``: {student: StudentResult} of that course (from
    grade_submissions). Returns {student: StudentResult} of the copy."""
    notebook = next(result.autograded for result in graded.values() if result.autograded)
    course, assignment = notebook.parents[3], notebook.parent.name  # <course>/autograded/<student>/<assignment>/
    workdir = Path(workdir)
    shutil.copytree(course, workdir, ignore=lambda folder, names: [
        name for name in names if Path(folder).name in ("submitted", "autograded", "feedback") and name not in students])
    grade_class(assignment, workdir, jobs=2, progress=False, feedback=False)
    return {student: result for student, result in results(workdir, assignment).items() if student in students}


@contextlib.contextmanager
def cpu_hogs(count: int | None = None) -> Iterator[list[subprocess.Popen]]:
    """A busy machine: ``count`` processes (three per core by default) that compute until the block ends."""
    # (each in a session of its own: the scheduler shares a CPU between sessions first)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
            for _ in range(count or 3 * os.cpu_count())]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()

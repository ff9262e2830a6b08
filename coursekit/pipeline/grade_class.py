"""Grade a whole class in parallel: `make grade A=ps1 [JOBS=N] [DASK=tcp://host:8786]`.

Every submission under ``submitted/*/<assignment>/`` is autograded by nbgrader itself, each in a
private scratch course with its own gradebook (SQLite takes one writer at a time), on a local
process pool or on a Dask cluster. The main process alone writes ``gradebook.db``, merging each
result through nbgrader's Gradebook API, and copies ``autograded/`` and ``feedback/`` back, so
the course ends exactly as after ``nbgrader autograde`` and ``nbgrader generate_feedback``. Then
``nbgrader export`` writes ``grades.csv``, and ``reports/<assignment>/`` gets the instructor
report (report.html), the tamper report and the list of errors.

A submission that cannot be graded never stops the batch: its student is listed with the
reason, and any previous grade of theirs is removed rather than left standing as if current.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib
import multiprocessing
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat
from tqdm import tqdm

from coursekit import COURSE_ROOT, judge
from coursekit.kernel import sandbox, warm_kernels
from coursekit.judge import torch_reference
from coursekit.pipeline.course import PathLike, course_folder, gradebook_file, nbgrader, problem_with, this_environment_first
from coursekit.pipeline.gradebook import results
from coursekit.pipeline.results import CellComment, CellGrade, HandGrade, KeptByHand, Outcome
from coursekit.kernel.warm_kernels import ForkedKernelManager, heavy_imports

if TYPE_CHECKING:
    from nbgrader.api import Gradebook

# Grading kernels use one BLAS thread: results do not depend on the machine's load, and
# parallel workers do not oversubscribe the cores.
SINGLE_THREADED = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
# Two local workers per core: each spends part of its time waiting on its kernel (measured on
# 2 cores: 4 workers kept the cores 90% busy, 3 workers 80%).
DEFAULT_JOBS = 2 * (os.cpu_count() or 1)
# What `nbgrader submit` puts in a submission besides its files: the time of submission (late
# penalties are computed from it) and the secret that names its feedback in the exchange
# (`nbgrader release_feedback` reads both from the feedback folder).
NBGRADER_FILES = ("timestamp.txt", "submission_secret.txt")


def _read_tree(folder):
    """{relative path: bytes} for every file under ``folder``."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write_tree(folder, files):
    for relative, data in files.items():
        path = Path(folder) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def grading_kit(course: PathLike, assignment: str) -> dict:
    """What a worker needs to grade any submission of ``assignment``, as plain data.

    Returns:
    - dict: {"config": bytes, "source": {path: bytes}, "gradebook": bytes, "preload": [module], "secret": hex}
      where the gradebook holds the assignment (with the course's due date) and no student, "preload" lists the heavy
      modules that the kernels' zygote imports (see coursekit.kernel.warm_kernels), "secret" the course's secret for
      the hidden inputs (made in the course folder on the first grading: judge.course_secret).
    """
    source = _read_tree(course_folder(course, "source", assignment=assignment))
    notebook = nbformat.reads(source[f"{assignment}.ipynb"].decode("utf-8"), as_version=4)
    config = (Path(course) / "nbgrader_config.py").read_bytes()
    with tempfile.TemporaryDirectory() as scratch:
        _generate_assignment(_scratch_course(scratch, config, source, assignment), assignment)
        due = _due_date(course, assignment)
        if due is not None:  # set with `nbgrader db assignment add` or formgrader: late penalties need it
            from nbgrader.api import Gradebook

            with Gradebook(f"sqlite:///{gradebook_file(scratch)}") as gradebook:
                gradebook.update_or_create_assignment(assignment, duedate=due)
        return {"config": config, "source": source, "gradebook": gradebook_file(scratch).read_bytes(),
                "preload": heavy_imports(notebook), "secret": judge.course_secret(Path(course) / judge.SECRET_FILE).hex()}


def _due_date(course, assignment):
    """The assignment's due date in the course's gradebook (naive UTC, as nbgrader keeps it), or None."""
    from nbgrader.api import MissingEntry

    if not gradebook_file(course).exists():
        return None
    with _course_gradebook(course) as gradebook:
        try:
            return gradebook.find_assignment(assignment).duedate
        except MissingEntry:
            return None


def _scratch_course(folder, config, source, assignment, gradebook=None):
    """Write a course with ``config`` (bytes) and the assignment's ``source`` into ``folder``."""
    course = Path(folder)
    (course / "nbgrader_config.py").write_bytes(config)
    if gradebook is not None:
        gradebook_file(course).write_bytes(gradebook)
    _write_tree(course_folder(course, "source", assignment=assignment), source)
    return course


def _api(course, **settings):
    """nbgrader's Python API on the course in ``course``, with its nbgrader_config.py and
    ``settings`` ({"Class.trait": value}) on top."""
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    config.CourseDirectory.root = str(course)
    for name, value in settings.items():
        section, trait = name.split(".")
        config[section][trait] = value
    return NbGraderAPI(CourseDirectory(config=config), config=config)


def grade_one(kit: dict, assignment: str, student: str, submission: dict[str, bytes], feedback: bool = True,
              kept: KeptByHand | None = None) -> Outcome:
    """Autograde one submission and make its feedback, in a private scratch course.

    Runs on a worker (a local process or a Dask worker): takes and returns plain data.

    Args:
    - kit: from grading_kit().
    - submission (dict): {path: bytes}, the files of ``submitted/<student>/<assignment>/``.
    - feedback (bool): also make the feedback HTML (tests of the grading alone skip it).
    - kept (KeptByHand): what the course's gradebook holds of an earlier grading that this one keeps
      (from kept_by_hand()): the feedback and the scores are made with it, as in stock nbgrader.
    Returns:
    - Outcome.
    """
    from nbgrader.api import Gradebook

    os.environ.update(SINGLE_THREADED)
    submission = graded_files(submission)
    outcome = Outcome(student)
    with tempfile.TemporaryDirectory() as scratch:
        course = _scratch_course(scratch, kit["config"], kit["source"], assignment, kit["gradebook"])
        _write_tree(course_folder(course, "submitted", student, assignment), submission)
        api = _api(course, **{"TimeLimitedExecute.kernel_manager_class": ForkedKernelManager,
                              "ForkedKernelManager.preload": kit["preload"],
                              "TimeLimitedExecute.hidden_inputs_secret": kit["secret"]})
        problem = problem_with(course_folder(course, "submitted", student, assignment), assignment)
        if problem:
            outcome.error = problem
            return outcome
        if kept:
            _restore(course, assignment, student, kept)
        with contextlib.suppress(sandbox.SandboxUnavailable):  # (autograde fails with its one line)
            outcome.sandbox = sandbox.describe(sandbox.sandbox_mode())
        graded = api.autograde(assignment, student, force=True, create=True)
        if not graded["success"]:
            outcome.error = "autograding failed: " + _last_line(graded.get("error") or graded.get("log"))
            return outcome
        made = api.generate_feedback(assignment, student, force=True) if feedback else {"success": True}
        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
            found = gradebook.find_submission(assignment, student)
            outcome.timestamp = found.timestamp
            outcome.late_penalty = {nb.name: nb.late_submission_penalty for nb in found.notebooks}
            for notebook in found.notebooks:
                outcome.grades += [CellGrade(notebook.name, g.name, g.auto_score, g.needs_manual_grade) for g in notebook.grades]
                outcome.comments += [CellComment(notebook.name, c.name, c.auto_comment) for c in notebook.comments]
        outcome.autograded = _read_tree(course_folder(course, "autograded", student, assignment))
        outcome.feedback = _read_tree(course_folder(course, "feedback", student, assignment))
        outcome.ok = True
        notes = [f"{path}: test cells {', '.join(cells)} were missing and were put back"
                 for path, cells in _restored_tests(outcome.autograded).items()]
        if not made["success"]:
            notes.append("graded, but no feedback: " + _last_line(made.get("error") or made.get("log")))
        outcome.note = "; ".join(notes)
    return outcome


def _restored_tests(files):
    """{notebook: [grade_id]} of the test cells put back into the autograded notebooks ``files``."""
    from coursekit.pipeline.plugins.sanitize import restored_tests

    found = {path: restored_tests(nbformat.reads(data.decode("utf-8"), as_version=4))
             for path, data in files.items() if path.endswith(".ipynb")}
    return {path: cells for path, cells in found.items() if cells}


def graded_files(submission: dict[str, bytes]) -> dict[str, bytes]:
    """What is graded of a submission folder ({path: bytes}): its notebooks and nbgrader's own
    files (NBGRADER_FILES), without any other file.

    The grading kernel runs in a copy of the submission's folder, where Python would import a
    planted ``numpy.py`` or ``ipykernel_launcher.py`` ahead of the real module, before the
    kernel starts. The tamper report lists such files (coursekit.pipeline.tamper.scan_folder).
    """
    return {path: data for path, data in submission.items()
            if "/" not in path and (path.endswith(".ipynb") or path in NBGRADER_FILES)}


def kept_by_hand(gradebook: Gradebook, assignment: str, student: str) -> KeptByHand | None:
    """What grading must keep of a student's submission in ``gradebook`` (the course's): its
    extension and the TAs' hand grades, extra credit and comments; None if there is none."""
    from nbgrader.api import MissingEntry

    try:
        found = gradebook.find_submission(assignment, student)
    except MissingEntry:
        return None
    kept = KeptByHand(found.extension.total_seconds() if found.extension else None,
                      [HandGrade(n.name, g.name, g.manual_score, g.extra_credit) for n in found.notebooks for g in n.grades
                       if g.manual_score is not None or g.extra_credit],
                      [CellComment(n.name, c.name, c.manual_comment) for n in found.notebooks for c in n.comments
                       if c.manual_comment])
    return kept if kept else None


def _restore(course, assignment, student, kept):
    """Put ``kept`` (from kept_by_hand) into the scratch course's gradebook before autograding."""
    import datetime

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        gradebook.update_or_create_student(student)
        extension = datetime.timedelta(seconds=kept.extension_seconds) if kept.extension_seconds else None
        submission = gradebook.update_or_create_submission(assignment, student, extension=extension)
        grades = {(n.name, g.name): g for n in submission.notebooks for g in n.grades}
        comments = {(n.name, c.name): c for n in submission.notebooks for c in n.comments}
        for kept_grade in kept.grades:
            if (grade := grades.get((kept_grade.notebook, kept_grade.cell))) is not None:
                grade.manual_score, grade.extra_credit = kept_grade.manual_score, kept_grade.extra_credit
        for kept_comment in kept.comments:
            if (comment := comments.get((kept_comment.notebook, kept_comment.cell))) is not None:
                comment.manual_comment = kept_comment.comment
        gradebook.db.commit()


def _last_line(text):
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no details"


def merge(course: PathLike, assignment: str, outcome: Outcome, gradebook: Gradebook) -> None:
    """Write one worker's Outcome into the course, through ``gradebook`` (an open nbgrader
    Gradebook of the course's gradebook.db, whose only writer is the process that merges)."""
    from nbgrader.api import MissingEntry

    course, student = Path(course), outcome.student
    for step in ("autograded", "feedback"):
        shutil.rmtree(course_folder(course, step, student, assignment), ignore_errors=True)
    gradebook.update_or_create_student(student)
    if not outcome.ok:  # a failed regrade must not leave the old grade looking current
        if kept_by_hand(gradebook, assignment, student) is None:
            try:
                gradebook.remove_submission(assignment, student)
            except MissingEntry:
                pass
        else:  # the TAs' work stays; the old autograder scores go
            for notebook in gradebook.find_submission(assignment, student).notebooks:
                for grade in notebook.grades:
                    grade.auto_score, grade.needs_manual_grade = None, True
            gradebook.db.commit()
        return
    submission = gradebook.update_or_create_submission(assignment, student, timestamp=outcome.timestamp)
    notebooks = {notebook.name: notebook for notebook in submission.notebooks}
    for name, notebook in notebooks.items():
        notebook.late_submission_penalty = outcome.late_penalty.get(name)
    grades = {(n.name, g.name): g for n in notebooks.values() for g in n.grades}
    comments = {(n.name, c.name): c for n in notebooks.values() for c in n.comments}
    for graded in outcome.grades:
        grade = grades[graded.notebook, graded.cell]
        grade.auto_score, grade.needs_manual_grade = graded.auto_score, graded.needs_manual_grade
    for commented in outcome.comments:
        comments[commented.notebook, commented.cell].auto_comment = commented.comment
    gradebook.db.commit()
    _write_tree(course_folder(course, "autograded", student, assignment), outcome.autograded)
    _write_tree(course_folder(course, "feedback", student, assignment), outcome.feedback)


def _quiet_worker():
    # Kernels inherit the worker's stderr and warn there on every start; nbgrader's own log of
    # each submission, which the results carry, is what matters.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)


def _local_pool(jobs, assignment):
    # Workers are forked from this process once it has imported and found what grading uses:
    # each would otherwise spend two seconds of CPU on those imports, and its first submission
    # a quarter of a second more.
    for module in ("nbgrader.apps.api", "nbconvert.exporters.html", "nbconvert.filters.highlight",
                   "coursekit.pipeline.plugins.sanitize", "coursekit.pipeline.plugins.execute", "coursekit.pipeline.plugins.feedback",
                   "coursekit.pipeline.plugins.feedback_page", "IPython.core.interactiveshell", "ipykernel.kernelspec",
                   "ipython_pygments_lexers"):
        importlib.import_module(module)
    judge.checks(assignment)
    sandbox.font_list()
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork"),
                                                  initializer=_quiet_worker)
    return pool, concurrent.futures.as_completed


def _dask_pool(address):
    from distributed import Client, as_completed

    return Client(address), as_completed


def grade_class(assignment: str, course: PathLike = COURSE_ROOT, jobs: int | None = None, dask: str | None = None,
                progress: bool = True, feedback: bool = True) -> dict[str, Outcome]:
    """Grade every submission of ``assignment``; returns the workers' results by student.

    Raises coursekit.kernel.sandbox.SandboxUnavailable, before it touches the course, where this
    machine cannot sandbox the kernels (Dask workers check for themselves).
    """
    if not dask:
        sandbox.sandbox_mode()
    course = Path(course)
    students = sorted(p.parent.name for p in course_folder(course, "submitted").glob(f"*/{assignment}") if p.is_dir())
    kit = grading_kit(course, assignment)
    _ensure_assignment(course, assignment, kit)
    if dask:
        pool, as_completed = _dask_pool(dask)
    else:
        warm_kernels.zygote(kit["preload"])  # started before the workers, which share it, as they share
        torch_reference.share_server()  # the PyTorch process for per-student hidden inputs
        pool, as_completed = _local_pool(jobs or DEFAULT_JOBS, assignment)
    results = {}
    with pool, _course_gradebook(course) as gradebook:
        futures = [pool.submit(grade_one, kit, assignment, student, _read_tree(course_folder(course, "submitted", student, assignment)),
                               feedback, kept_by_hand(gradebook, assignment, student))
                   for student in students]
        for future in tqdm(as_completed(futures), total=len(futures), desc=f"grading {assignment}",
                           unit="submission", disable=not progress):
            outcome = future.result()
            merge(course, assignment, outcome, gradebook)
            results[outcome.student] = outcome
    return results


@contextlib.contextmanager
def _course_gradebook(course):
    """The course's gradebook.db, open through nbgrader's Gradebook API."""
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    with warnings.catch_warnings(), Gradebook(f"sqlite:///{gradebook_file(course)}") as gradebook:
        warnings.filterwarnings("ignore", category=SAWarning)  # nbgrader's own autoflush warnings, harmless here
        yield gradebook


def _ensure_assignment(course, assignment, kit):
    """The course gradebook knows the assignment (as after `nbgrader generate_assignment`)."""
    from nbgrader.api import MissingEntry

    path = gradebook_file(course)
    if not path.exists():
        path.write_bytes(kit["gradebook"])
        return
    with _course_gradebook(course) as gradebook:
        try:
            gradebook.find_assignment(assignment)
            return
        except MissingEntry:
            pass
    _generate_assignment(course, assignment)


def _generate_assignment(course, assignment):
    """`nbgrader generate_assignment`, in this process (nbgrader's imports take seconds)."""
    with this_environment_first():
        made = _api(course).generate_assignment(assignment, force=True)
    if not made["success"]:
        raise RuntimeError(f"nbgrader generate_assignment {assignment} failed in {course}:\n"
                           + (made.get("error") or made.get("log") or ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignment")
    parser.add_argument("--course", default=str(COURSE_ROOT))
    parser.add_argument("--jobs", type=int, default=None, help=f"local worker processes (default: {DEFAULT_JOBS}, two per core)")
    parser.add_argument("--dask", default=None, help="Dask scheduler address, e.g. tcp://host:8786")
    parser.add_argument("--dry-run", action="store_true", help="grade a copy of the course and print what would "
                        "change; the gradebook, autograded/ and feedback/ stay as they are")
    args = parser.parse_args(argv)
    from coursekit.pipeline import ownership, regrade, report

    course, assignment = Path(args.course), args.assignment
    if not args.dask:
        try:
            print(f"Grading kernels are sandboxed: {sandbox.describe(sandbox.sandbox_mode())}", file=sys.stderr)
        except sandbox.SandboxUnavailable as error:
            print(f"make grade: {error}", file=sys.stderr)
            return 2
    before = regrade.snapshot(course, assignment) if gradebook_file(course).exists() else {}
    if args.dry_run:
        with tempfile.TemporaryDirectory() as scratch:
            copy = regrade.dry_copy(course, assignment, scratch)
            grade_class(assignment, copy, args.jobs, args.dask)
            found = regrade.changes(before, regrade.snapshot(copy, assignment))
        print(regrade.as_text(found, version=regrade.tests_version(course, assignment)))
        return 0
    ownership.hand_back_at_exit(course)  # (a no-op but for root grading someone's course)
    outcomes = grade_class(assignment, course, args.jobs, args.dask)
    graded = results(course, assignment)  # the gradebook read once, each autograded notebook once
    after = regrade.snapshot(course, assignment, graded)
    previous = regrade.record(course, assignment, after)
    found = regrade.changes(before, after) if before else None  # (None: the first grading)
    summary = report.write(course, assignment, outcomes, found, previous, graded)  # (its errors.csv is part of the export)
    nbgrader(course, "export")
    print(summary)
    if found is not None:
        print(regrade.as_text(found, previous, regrade.tests_version(course, assignment)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

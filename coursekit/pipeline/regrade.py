"""What a regrade changes: every `make grade` run is recorded (per student and test cell: the
score and the message, and the version of the tests that gave them), and the report shows what
changed since the run before, so that an instructor who fixes a test mid-term sees its effect on
the class before releasing feedback. ``make grade A=<ps> DRY_RUN=1`` grades a copy of the course
and shows the changes without touching the gradebook, ``autograded/`` or ``feedback/``.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import shutil
from pathlib import Path

from coursekit import COURSE_ROOT, judge
from coursekit.pipeline.course import PathLike, course_folder, gradebook_file
from coursekit.pipeline.gradebook import results
from coursekit.pipeline.results import NOT_GRADED, Change, Run, Snapshot, StudentResult


def snapshot(course: PathLike, assignment: str, graded: dict[str, StudentResult] | None = None) -> Snapshot:
    """Each graded student's test cells of ``assignment`` in ``course``, score and first failure
    message (StudentResult.recorded); ``graded``: the gradebook's results, if already read."""
    graded = results(course, assignment) if graded is None else graded
    return {student: result.recorded() for student, result in graded.items()}


def tests_version(course: PathLike, assignment: str) -> str:
    """A hash of what decides the scores of ``assignment``: its source folder and the check code."""
    digest = hashlib.sha256()
    code = COURSE_ROOT / "coursekit"
    paths = sorted(course_folder(course, "source", assignment=assignment).rglob("*")) + [
        code / "judge" / f"{assignment}.py", code / "judge" / "__init__.py", code / "shipped" / "gradcheck.py",
        code / "kernel" / "agent.py"]
    for path in paths:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def changes(before: Snapshot, after: Snapshot) -> list[Change]:
    """Every test cell whose score or message differs between two snapshots, by student and cell (a
    student or cell graded in only one of them is NOT_GRADED in the other)."""
    found = []
    for student in sorted(set(before) | set(after)):
        old, new = before.get(student, {}), after.get(student, {})
        for cell in sorted(set(old) | set(new)):
            was, now = old.get(cell, NOT_GRADED), new.get(cell, NOT_GRADED)
            if was != now:
                found.append(Change(student, cell, was, now))
    return found


def runs_folder(course: PathLike, assignment: str) -> Path:
    """Where every run of ``assignment`` is recorded, one ``<when>.json`` each (Run)."""
    return Path(course) / "reports" / assignment / "runs"


def read_run(path: PathLike) -> Run:
    """A run's record from its file."""
    return Run.from_json(json.loads(Path(path).read_text()))


def record(course: PathLike, assignment: str, snap: Snapshot) -> Run | None:
    """Save this run's snapshot in reports/<assignment>/runs/; returns the previous run's record or None."""
    folder = runs_folder(course, assignment)
    folder.mkdir(parents=True, exist_ok=True)
    earlier = sorted(folder.glob("*.json"))
    previous = read_run(earlier[-1]) if earlier else None
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H-%M-%S.%fZ")
    run = Run(when, tests_version(course, assignment), snap)
    (folder / f"{when}.json").write_text(json.dumps(run.to_json(), indent=1, sort_keys=True))
    return previous


def dry_copy(course: PathLike, assignment: str, scratch: PathLike) -> Path:
    """A copy of what grading ``assignment`` reads of ``course`` (config, source, submissions,
    gradebook), in ``scratch``: grading it leaves ``course`` as it was."""
    course, scratch = Path(course), Path(scratch)
    shutil.copy(course / "nbgrader_config.py", scratch)
    source = course_folder(course, "source", assignment=assignment)
    submissions = sorted(course_folder(course, "submitted").glob(f"*/{assignment}"))
    for folder in ([source] if source.exists() else []) + submissions:
        shutil.copytree(folder, scratch / folder.relative_to(course.resolve()), symlinks=False)
    if gradebook_file(course).exists():
        shutil.copy(gradebook_file(course), gradebook_file(scratch))
    if (course / judge.SECRET_FILE).exists():  # the same hidden inputs, or every cell would look changed
        shutil.copy(course / judge.SECRET_FILE, scratch / judge.SECRET_FILE)
    return scratch


def as_text(found: list[Change] | None, previous: Run | None = None, version: str | None = None) -> str:
    """The changes as lines for the terminal."""
    head = "Changes since the last grading"
    if previous:
        head += f" ({previous.when}, tests {previous.tests}" + (f" -> {version})" if version else ")")
    if not found:
        return f"{head}: none."
    lines = [f"{head}: {len(found)} test cells of {len({change.student for change in found})} students"]
    for change in found:
        message = change.now.message
        lines.append(f"  {change.student} {change.cell}: {change.was.points()} -> {change.now.points()}"
                     + (f"  ({message})" if message else ""))  # (whole: a message cut mid-phrase misleads)
    return "\n".join(lines)


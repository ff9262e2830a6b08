"""A course folder: where nbgrader keeps each step's files and the gradebook, nbgrader's commands
run in it with this environment, and whether a submission in it can be graded at all."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
from nbgrader.coursedir import CourseDirectory

PathLike = str | os.PathLike  # a course folder or file, as a str or a Path

def course_folder(course: PathLike, step: str, student: str = ".", assignment: str = "") -> Path:
    """``<course>/<step>/<student>/<assignment>`` as nbgrader names it (CourseDirectory.format_path):
    ``step`` is "source", "release", "submitted", "autograded" or "feedback"; source and release
    folders have no student."""
    directory = CourseDirectory(root=str(Path(course).resolve()))
    return Path(directory.format_path(getattr(directory, f"{step}_directory"), student, assignment))


def gradebook_file(course: PathLike) -> Path:
    """The course's gradebook (CourseDirectory's db_url: ``<course>/gradebook.db``)."""
    return Path(CourseDirectory(root=str(Path(course).resolve())).db_url.removeprefix("sqlite:///"))


def nbgrader(course_root: PathLike, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run one nbgrader command in ``course_root`` with this Python's environment.

    The kernels nbgrader starts must be this environment's Python, with coursekit importable.
    """
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course_root, env=_environment(),
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed in {course_root}:\n{result.stderr[-3000:]}")
    return result


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@contextlib.contextmanager
def this_environment_first() -> Iterator[None]:
    """Within the block, commands that nbgrader runs in this process (it runs `alembic` when it
    creates a gradebook) are this environment's."""
    saved = os.environ.get("PATH")
    os.environ["PATH"] = _environment()["PATH"]
    try:
        yield
    finally:
        if saved is None:
            del os.environ["PATH"]
        else:
            os.environ["PATH"] = saved


def problem_with(folder: PathLike, assignment: str) -> str | None:
    """Why the submission in ``folder`` cannot be graded, or None if it can.

    The notebook must be ``<assignment>.ipynb``, UTF-8 JSON, and a valid notebook (nbformat
    upgrades old versions itself).
    """
    folder = Path(folder)
    path = folder / f"{assignment}.ipynb"
    if not path.exists():
        others = sorted(p.name for p in folder.glob("*.ipynb"))
        found = f" (found {', '.join(others)}: renamed?)" if others else ""
        return f"{path.name} is missing{found}"
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"{path.name} is not UTF-8 text (byte {error.start}): not a notebook file"
    try:
        notebook = nbformat.reads(text, as_version=4)
        nbformat.validate(notebook)
    except nbformat.reader.NotJSONError:
        return f"{path.name} is not a notebook (not JSON)"
    except Exception as error:  # noqa: BLE001 - nbformat raises many kinds
        return f"{path.name} is not a valid notebook ({type(error).__name__}: {str(error).splitlines()[0][:100]})"
    return None

"""The model solutions, read from the source notebooks (their one home).

Hidden tests use them as reference parts, so that grading one part never depends on the
student's other parts: the MLP is tested with reference Linear and Tanh layers.
"""
import ast
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coursekit import COURSE_ROOT

if TYPE_CHECKING:
    from nbformat import NotebookNode

SOLUTION_BEGIN = "### BEGIN SOLUTION"
SOLUTION_END = "### END SOLUTION"
HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_END = "### END HIDDEN TESTS"


def source_notebook(assignment: str) -> Path:
    """Path of ``source/<assignment>/<assignment>.ipynb``."""
    return COURSE_ROOT / "source" / assignment / f"{assignment}.ipynb"


def release_notebook(assignment: str, course_root: str | Path = COURSE_ROOT) -> "NotebookNode":
    """The student version of ``assignment`` (nbformat), from ``release/`` of ``course_root``."""
    import nbformat

    return nbformat.read(Path(course_root) / "release" / assignment / f"{assignment}.ipynb", as_version=4)


def answer_cells(notebook: Mapping[str, Any]) -> dict[str, str]:
    """The autograded answer cells of a notebook (parsed JSON or nbformat), as {grade_id: source}."""
    cells = {}
    for cell in notebook["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] == "code" and meta.get("solution") and not meta.get("grade"):
            source = cell["source"]
            cells[meta["grade_id"]] = source if isinstance(source, str) else "".join(source)
    return cells


def written_cells(notebook: Mapping[str, Any]) -> dict[str, str]:
    """The manually graded written answers of a notebook (markdown cells with points), as {grade_id: source}."""
    cells = {}
    for cell in notebook["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] == "markdown" and meta.get("solution") and meta.get("grade"):
            source = cell["source"]
            cells[meta["grade_id"]] = source if isinstance(source, str) else "".join(source)
    return cells


def marked_lines(source: str, begin: str, end: str, inside: bool = True, strip: bool = True) -> list[str]:
    """The lines of ``source`` between ``begin`` and ``end`` marker lines (or, with
    ``inside=False``, the lines outside every such region), markers left out; stripped unless
    ``strip`` is False (markdown, whose indentation nests its lists)."""
    within, lines = False, []
    for line in source.splitlines():
        if line.strip() == begin:
            within = True
        elif line.strip() == end:
            within = False
        elif within == inside:
            lines.append(line.strip() if strip else line)
    return lines


def without_markers(source: str) -> str:
    """A solution cell's code as a student would write it: the marker lines removed."""
    lines = source.splitlines()
    return "\n".join(line for line in lines if line.strip() not in (SOLUTION_BEGIN, SOLUTION_END))


def _defines_only(source):
    """Whether a cell's code only defines classes and functions (e.g. a given Identity class)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return bool(tree.body) and all(isinstance(node, (ast.ClassDef, ast.FunctionDef)) for node in tree.body)


@functools.cache
def namespace(assignment: str) -> dict[str, Any]:
    """Run the model solution's definitions and return the names they define.

    Those are the answer cells and the given cells that only define classes or functions (the
    rest, imports and training runs, is left out).

    Returns:
    - dict: e.g. {"Linear": <class>, "Tanh": <class>, ...} for ps1.
    """
    # plain json, not nbformat: importing nbformat's validator costs seconds in every grading kernel
    notebook = json.loads(source_notebook(assignment).read_text(encoding="utf-8"))
    answers = answer_cells(notebook)
    names: dict[str, Any] = {}
    exec("import numpy as np", names)  # noqa: S102 - the course's own code
    for index, cell in enumerate(notebook["cells"]):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or meta.get("grade"):
            continue
        if meta.get("grade_id") in answers:
            source = without_markers(source)
        elif not _defines_only(source):
            continue
        exec(compile(source, f"<{assignment} solution cell {meta.get('grade_id', index)}>", "exec"), names)  # noqa: S102
    return {k: v for k, v in names.items() if not k.startswith("__")}


def reference(assignment: str, name: str) -> Any:
    """One name defined by the model solution, e.g. reference("ps1", "Linear")."""
    return namespace(assignment)[name]

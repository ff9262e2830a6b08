"""`make new-assignment A=ps4`: a new assignment that the whole tool chain already accepts.

Writes, from one worked example part (a Sigmoid layer, 3 points) that shows each convention:
- ``source/<ps>/<ps>.ipynb``: the intro and setup, the part's task with its points, one answer
  cell (the solution between the markers), a visible test cell and a hidden one (``judge(...)``);
- ``source/<ps>/gradcheck.py``, a link to the shipped helpers;
- ``coursekit/judge/<ps>.py``: one check per test cell;
- ``tests/fixtures/<ps>_submissions.py``: an empty catalog marked TO_WRITE, which the suite reports
  as to write (and whose tests it skips) until it holds bugs, variants and cheats.
Then `make release` builds the student version. Replace the example with the assignment's parts,
following docs/guide.md ("Author a part").
"""
import argparse
import os
import re
import sys
from pathlib import Path

import nbformat

from coursekit import COURSE_ROOT

ANSWER = '''class Sigmoid:
    """The elementwise logistic sigmoid, 1 / (1 + exp(-x))."""

    def forward(self, x):
        """
        Args:
        - x (np.array): input, shape (N, d).
        Returns:
        - output (np.array): sigmoid(x), shape (N, d).
        """
        ### BEGIN SOLUTION
        self.output = 1 / (1 + np.exp(-x))
        return self.output
        ### END SOLUTION

    def backward(self, grad_output):
        """
        Args:
        - grad_output (np.array): dL/d(output), shape (N, d).
        Returns:
        - grad_input (np.array): dL/dx, shape (N, d).
        """
        ### BEGIN SOLUTION
        return grad_output * self.output * (1 - self.output)
        ### END SOLUTION'''

VISIBLE = '''# Visible tests for Sigmoid
from gradcheck import call, check_backward, check_close, np

x = np.array([[0.0, 2.0, -1.0]])
check_close("Sigmoid.forward(x)", call("Sigmoid.forward(x)", Sigmoid().forward, x), [[0.5, 0.88079708, 0.26894142]])

rng = np.random.default_rng(0)
check_backward("Sigmoid", Sigmoid(), rng.normal(size=(3, 4)), rng.normal(size=(3, 4)))
print("Visible tests for Sigmoid passed.")'''

HIDDEN = '''# Hidden tests: Sigmoid on new shapes, compared with PyTorch
### BEGIN HIDDEN TESTS
judge("sigmoid_hidden")  # coursekit/judge/{ps}.py: run by the grader, never in the kernel
### END HIDDEN TESTS'''

JUDGE = '''"""{ps}'s tests, judged in the grader's process (see coursekit.judge): one check per test cell.

A visible check repeats the notebook's visible test cell on the same inputs; a hidden check draws
its inputs from ``notebook.rng(<its own number>)`` (each student's own) and compares with PyTorch.
"""
from collections.abc import Callable

import numpy as np

from coursekit.judge import Notebook, Remote, call, check_backward_unseen, check_call, check_unchanged, judged
from coursekit.judge.torch_reference import vjp

CHECKS: dict[str, Callable[[Notebook], None]] = {{}}
MISSING_UPSTREAM = "it ignores grad_output: missing the upstream gradient?"


def _sigmoid(notebook: Notebook) -> Remote:
    return call("Sigmoid()", notebook.new, "Sigmoid")


# --- 1. Sigmoid --------------------------------------------------------------------------------

@judged(CHECKS)
def sigmoid_visible(notebook: Notebook) -> None:
    """The visible cell's values, and backward against finite differences."""
    x = np.array([[0.0, 2.0, -1.0]])
    check_call("Sigmoid.forward(x)", _sigmoid(notebook).forward, x, expected=[[0.5, 0.88079708, 0.26894142]])
    rng = np.random.default_rng(0)
    check_backward_unseen("Sigmoid", lambda: _sigmoid(notebook), rng.normal(size=(3, 4)), (3, 4))


@judged(CHECKS)
def sigmoid_hidden(notebook: Notebook) -> None:
    """Adds: shapes and values of the student's own, against PyTorch; inputs left unchanged."""
    rng = notebook.rng(1001)
    for shape in [(6, 4), (1, 3), (5, 1)]:
        x, G = 3 * rng.normal(size=shape), rng.normal(size=shape)
        y_ref, (dx_ref,) = vjp("sigmoid", (x,), G)
        layer, x_given = _sigmoid(notebook), notebook.array(x)
        check_call(f"Sigmoid.forward(x) for x of shape {{shape}}", layer.forward, x_given, expected=y_ref)
        check_unchanged("Sigmoid.forward", x, x_given.value())
        check_call(f"Sigmoid.backward(grad_output) for x of shape {{shape}}", layer.backward, G, expected=dx_ref,
                   hints=[(y_ref * (1 - y_ref), MISSING_UPSTREAM)])
'''

CATALOG = '''"""{ps} submissions: the bug catalog, the correct variants and the demo class (to write).

Each bug is a mistake students really make, written as an edit of the model solution in one
answer cell; ``cell`` is also the part whose tests must catch it. Each variant is a correct
answer written differently, which must keep full marks. See docs/guide.md ("Author a part").
"""
from coursekit.tools.submissions import Blank, Solution

# `make new-assignment` left this catalog empty: the suite reports it as to write and skips the
# catalog's tests. Remove TO_WRITE once it has bugs (40 or more, every answer cell), variants
# (12 or more), cheats and a demo class with a planted copy, as tests/fixtures/ps1_submissions.py.
TO_WRITE = True

BUGS = []
VARIANTS = []
CHEATS = []
CHEATED_PART, WRONG_ANSWER = None, ""

DEMO_CLASS = {{"ada": (Solution(), 3), "blake": (Blank(), 0)}}
DEMO_COPY = None
'''


# What the intro says until its author writes it (the test suite's summary lists a notebook that still does)
PLACEHOLDERS = ("(title)", "(What the students build in this problem set, in two or three sentences.)")


def _cell(kind, source, grade_id, points=None, solution=False):
    cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": points is not None, "grade_id": grade_id, "locked": not solution,
                                 "schema_version": 3, "solution": solution, "task": False}
    if points is not None:
        cell.metadata["nbgrader"]["points"] = points
    return cell


def notebook(ps):
    """The new assignment's source notebook (nbformat)."""
    number = re.sub(r"\D", "", ps) or ps
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    nb.cells = [
        _cell("markdown", f"""# Problem set {number}: {PLACEHOLDERS[0]}

{PLACEHOLDERS[1]}

**Setup.** On the course's JupyterHub everything is installed. Elsewhere you need Python 3.11
with NumPy (`pip install numpy`), and `gradcheck.py`, which came with this notebook, next to it.
With nbgrader (course `dl-from-scratch`; the course's `nbgrader_config.py` in `~/.jupyter/`
names it and its exchange): `nbgrader fetch_assignment {ps}` gets the assignment, `nbgrader
validate {ps}/{ps}.ipynb` runs its visible tests as the grader will, and `nbgrader submit {ps}`
hands it in.""", "intro"),
        _cell("code", "import numpy as np", "imports"),
        _cell("markdown", """## 1. Sigmoid (3 points)

The sigmoid activation computes $\\sigma(x) = 1 / (1 + e^{-x})$ elementwise. Implement
`forward(x)`, which returns $\\sigma(x)$, and `backward(grad_output)`, which returns
$\\partial L / \\partial x$ given $\\partial L / \\partial \\sigma(x)$: use
$\\sigma'(x) = \\sigma(x) (1 - \\sigma(x))$.""", "sigmoid_intro"),
        _cell("code", ANSWER, "sigmoid", solution=True),
        _cell("code", VISIBLE, "sigmoid_visible", points=1),
        _cell("code", HIDDEN.format(ps=ps), "sigmoid_hidden", points=2),
    ]
    return nb


def scaffold(ps, root=COURSE_ROOT):
    """Write the new assignment ``ps`` into the course at ``root``; returns the paths written."""
    root = Path(root).resolve()
    if not re.fullmatch(r"ps\d+", ps):
        raise SystemExit(f"{ps!r}: an assignment is named ps<number>, as ps1 (make new-assignment A=ps4)")
    folder = root / "source" / ps
    paths = [folder / f"{ps}.ipynb", root / "coursekit" / "judge" / f"{ps}.py", root / "tests" / "fixtures" / f"{ps}_submissions.py"]
    existing = [str(path.relative_to(root)) for path in [folder, *paths[1:]] if path.exists()]
    if existing:
        raise SystemExit(f"{ps} exists already ({', '.join(existing)}): nothing written")
    folder.mkdir(parents=True)
    nbformat.write(notebook(ps), paths[0])
    os.symlink(os.path.join("..", "..", "coursekit", "shipped", "gradcheck.py"), folder / "gradcheck.py")
    paths[1].write_text(JUDGE.format(ps=ps))
    paths[2].write_text(CATALOG.format(ps=ps))
    return [paths[0], folder / "gradcheck.py", *paths[1:]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignment")
    parser.add_argument("--course", default=COURSE_ROOT, help="course directory (default: this repository)")
    args = parser.parse_args(argv)
    for path in scaffold(args.assignment, args.course):
        print(f"wrote {Path(path).relative_to(Path(args.course).resolve())}")


if __name__ == "__main__":
    sys.exit(main())

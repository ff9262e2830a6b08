"""The tamper report: code cells that import forbidden modules or touch the test machinery,
Markdown that would run script, and submissions that ran into the grader's budgets.

Grading already keeps such code from changing verdicts (the sandbox and the judge: see
coursekit.kernel.sandbox and coursekit.judge), markup from running (coursekit.pipeline.markup) and
outputs, pages and checks from growing (coursekit.pipeline.limits); this report tells the instructor
who tried, with cell and line, so a human can look. It reads every cell a student could write:
the answer cells, the written answers and any cell the student added, and what grading cut.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import nbformat

from coursekit import IN_THE_KERNEL
from coursekit.judge.loops import ELEMENT_LOOPS
from coursekit.judge.solutions import answer_cells, written_cells
from coursekit.pipeline.course import PathLike
from coursekit.pipeline.markup import FEEDBACK_CELL_BYTES, active_markup

# The answers are pure NumPy: nothing else is needed in an answer cell.
FORBIDDEN_MODULES = {"torch", "os", "sys", "importlib", "ctypes", "subprocess", "builtins", "gc",
                     "inspect", "IPython", "ipykernel", "coursekit", *(name.split(".")[-1] for name in IN_THE_KERNEL), "shutil", "pathlib",
                     "socket", "signal", "threading", "multiprocessing", "pickle", "io", "types", "zmq", "traceback",
                     "datasets"}
# Answer cells whose task needs one of those modules, by grade_id (ps3's PyTorch part).
PERMITTED_MODULES = {"pytorch": {"torch"}}
# Names whose use in an answer reaches into the interpreter or the tests.
MACHINERY = {"get_ipython", "__builtins__", "__import__", "globals", "exec", "eval", "compile",
             "open", "vars", "__subclasses__", "__globals__", "sys", "exit", "quit", "In", "Out", "_ih", "_oh"}
# Changing an object's attribute is ordinary (an optimizer updating a layer); a module's is not.
ATTRIBUTE_SETTERS = {"setattr", "delattr"}
NUMPY_NAMES = {"np", "numpy"}
# Files Python may import or run when they sit in the grading kernel's working directory.
IMPORTABLE = {".py", ".pyc", ".pyd", ".so", ".pth"}
# Methods that let an answer's value pass comparisons it should fail.
REDEFINED = {"__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__float__",
             "__sub__", "__rsub__", "__abs__", "__array__", "__array_ufunc__", "__getattr__"}


# What the judge's stand-ins and records are made of (coursekit.kernel.agent): code that looks
# for them tries to tell the judge's objects from the notebook's.
JUDGE_CLASSES = {"StandIn", "Scaler", "Kept", "Record"}
JUDGE_NAMES = JUDGE_CLASSES | {"_records", "calls", "returns", "made", "scale", "factor", "offset", "arguments"}
# Ways to compare an input with values or shapes known in advance (a table of the tests' inputs):
# the first three (NumPy's and torch.equal) with any array, the others with literal values.
EQUALITY_TESTS = {"array_equal", "array_equiv", "equal", "allclose", "isclose"}
KEYS_OF_ARRAYS = {"tobytes", "tostring", "hash"}
RANDOM_STATE = {"get_state", "getstate", "bit_generator"}  # where a generator is: just after a test's seed?
SIZE_TESTED = 100  # a size compared with a literal this large is a test's, not the task's


@dataclass(frozen=True)
class Finding:
    cell: str
    line: int
    what: str


def _root_name(node):
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def scan_code(cell: str, code: str) -> list[Finding]:
    """Findings in one answer cell's code (a cell that does not parse is reported as such)."""
    try:
        tree = ast.parse(code)
    except SyntaxError as error:
        return [Finding(cell, error.lineno or 0, f"does not parse: {error.msg}")]
    except (ValueError, RecursionError, MemoryError):  # deeply nested code overflows the parser
        return [Finding(cell, 0, "does not parse: nested too deeply for Python's parser")]
    forbidden = FORBIDDEN_MODULES - PERMITTED_MODULES.get(cell, set())
    findings = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in forbidden:
                    findings.append(Finding(cell, node.lineno, f"imports {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in forbidden:
                findings.append(Finding(cell, node.lineno, f"imports from {node.module}"))
        elif isinstance(node, ast.Name) and node.id in MACHINERY:
            findings.append(Finding(cell, node.lineno, f"uses {node.id}"))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ATTRIBUTE_SETTERS
              and node.args and _root_name(node.args[0]) in NUMPY_NAMES | FORBIDDEN_MODULES):
            findings.append(Finding(cell, node.lineno, f"uses {node.func.id} on {ast.unparse(node.args[0])}"))
        elif isinstance(node, ast.Attribute) and node.attr.startswith("__") and node.attr not in ("__init__",):
            findings.append(Finding(cell, node.lineno, f"uses {node.attr}"))
        elif isinstance(node, ast.FunctionDef) and node.name in REDEFINED:
            findings.append(Finding(cell, node.lineno, f"defines {node.name}"))
        elif isinstance(node, ast.ClassDef) and any(_root_name(b) in NUMPY_NAMES for b in node.bases):
            findings.append(Finding(cell, node.lineno, f"subclasses {ast.unparse(node.bases[0])}"))
        elif (inspected := _inspects_the_judge(node)):
            findings.append(Finding(cell, node.lineno, inspected))
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and _root_name(target) in NUMPY_NAMES:
                    findings.append(Finding(cell, node.lineno, f"changes {ast.unparse(target)}"))
    return sorted(set(findings), key=lambda f: (f.line, f.what))


def _literal_numbers(node):
    """Whether ``node`` is a literal list or tuple of numbers (nested or not), of two or more."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    flat = list(value) if isinstance(value, (list, tuple)) else []
    while any(isinstance(v, (list, tuple)) for v in flat):
        flat = [w for v in flat for w in (v if isinstance(v, (list, tuple)) else [v])]
    return len(flat) >= 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat)


def _identity(subscripts):
    """Whether einsum ``subscripts`` leave their one operand as it is ('ij->ij', '...->...')."""
    if not isinstance(subscripts, str) or "->" not in subscripts or "," in subscripts:
        return False
    given, result = (part.strip() for part in subscripts.split("->", 1))
    return given == result


def _inspects_the_judge(node):
    """What ``node`` does to tell the judge's objects or inputs from others, or to pass a check
    without doing what it checks, or None: looks for the stand-ins' names, asks whether a name is
    a class, compares an input with known values or a test's shape, keys a table by an array's
    bytes, loops from C, or calls an einsum that changes nothing."""
    if isinstance(node, ast.Constant) and node.value in JUDGE_NAMES:
        return f"looks for {node.value!r} (a name of the judge's stand-ins)"
    if isinstance(node, ast.Attribute) and node.attr in JUDGE_CLASSES | {"_records"}:
        return f"uses .{node.attr} (a name of the judge's stand-ins)"
    if isinstance(node, ast.Attribute) and node.attr in KEYS_OF_ARRAYS:
        return f"uses .{node.attr} (a table keyed by an array's contents?)"
    if isinstance(node, ast.Attribute) and node.attr in RANDOM_STATE:
        return f"reads the random generator's state (.{node.attr}): where a test's seed left it?"
    loops = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
    if loops in ELEMENT_LOOPS:  # (applied to each element from C, out of the step count's sight)
        return f"uses {loops}, which loops over elements out of the step count's sight"
    if not isinstance(node, (ast.Call, ast.Compare)):
        return None
    if isinstance(node, ast.Call):
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name == "isinstance" and len(node.args) == 2 and isinstance(node.args[1], ast.Name) and node.args[1].id == "type":
            return f"asks whether {ast.unparse(node.args[0])} is a class (the judge's stand-ins?)"
        if name == "isinstance" and len(node.args) == 2 and isinstance(node.args[1], ast.Name) and node.args[1].id[:1].isupper():
            return f"asks whether {ast.unparse(node.args[0])} is a {node.args[1].id} (the judge's stand-ins?)"
        if name == "type" and len(node.args) == 1:
            return f"inspects type({ast.unparse(node.args[0])})"
        if name in KEYS_OF_ARRAYS:
            return f"uses {name}() (a table keyed by an array's contents?)"
        if name in EQUALITY_TESTS and (name in ("array_equal", "array_equiv", "equal") or any(_literal_numbers(a) for a in node.args)):
            return f"compares an array with known values ({name}: a table of the tests' inputs?)"
        if name == "einsum" and node.args and isinstance(node.args[0], ast.Constant) and _identity(node.args[0].value):
            return f"calls einsum({node.args[0].value!r}, ...), which changes nothing"
        if name == "einsum" and node.args and not isinstance(node.args[0], ast.Constant) and not any(
                isinstance(arg, (ast.List, ast.Tuple)) for arg in node.args[1:]):
            return "calls einsum with subscripts computed as it runs (an identity?)"
        return None
    sides = [node.left, *node.comparators]
    classes = [side.id for side in sides if isinstance(side, ast.Name) and side.id[:1].isupper()]
    if classes and any(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops):
        return f"compares {classes[0]} by identity (the judge's stand-ins?)"
    if any(_literal_numbers(side) for side in sides) and any(
            isinstance(side, ast.Attribute) and side.attr == "shape" for side in sides):
        return f"compares a shape with a literal one ({ast.unparse(node)[:60]})"
    sized = any((isinstance(side, ast.Attribute) and side.attr == "size") or
                (isinstance(side, ast.Call) and (getattr(side.func, "id", None) or getattr(side.func, "attr", "")) in ("len", "size"))
                for side in sides)
    if sized and any(isinstance(side, ast.Constant) and isinstance(side.value, int) and side.value >= SIZE_TESTED
                     for side in sides):
        return f"compares a size with a test's ({ast.unparse(node)[:60]})"
    if any(_literal_numbers(side) for side in sides) and len(sides) == 2 and any(
            isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
        return f"compares a value with literal ones ({ast.unparse(node)[:60]})"
    return None


def _added_cells(notebook):
    """{label: source} of the code cells a student added (cells nbgrader does not know)."""
    return {f"(added cell {index})": cell.source for index, cell in enumerate(notebook.cells)
            if cell.cell_type == "code" and not cell.metadata.get("nbgrader") and cell.source.strip()}


def student_cells(notebook) -> dict[str, str]:
    """{label: source} of the code a student wrote: every answer cell and every code cell they added."""
    return {**answer_cells(notebook), **_added_cells(notebook)}


def scan_notebook(path: PathLike) -> list[Finding]:
    """Findings in every answer cell and every added code cell of a submitted notebook, and in
    every Markdown cell its student could write (none if it cannot be read)."""
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - unreadable files are reported as grading errors instead
        return []
    findings = []
    for cell, code in student_cells(notebook).items():
        findings += scan_code(cell, code)
    return findings + scan_markdown(notebook)


def scan_markdown(notebook) -> list[Finding]:
    """Markdown cells a student wrote (written answers and added cells) that hold active markup,
    and cells too large for a feedback page to show whole."""
    written = {**written_cells(notebook), **{f"(added cell {index})": cell.source for index, cell in enumerate(notebook.cells)
                                             if cell.cell_type == "markdown" and not cell.metadata.get("nbgrader")}}
    findings = [Finding(cell, 0, f"Markdown with {', '.join(found)} (shown inert)")
                for cell, source in written.items() if (found := active_markup(source))]
    return findings + [Finding(cell, 0, f"a cell of {len(source) // 2 ** 10} KB (its feedback shows "
                                        f"{FEEDBACK_CELL_BYTES // 2 ** 10} KB)")
                       for cell, source in {**student_cells(notebook), **written}.items()
                       if len(source) > FEEDBACK_CELL_BYTES]


# What grading writes in a notebook when a submission runs into a budget (coursekit.pipeline.limits
# and TimeLimitedExecute), and how the report says it.
BUDGETS = {"the notebook's outputs passed": "its outputs passed the notebook's budget (cut)",
           "checking what your code returned": "a check ran out of its time or memory budget",
           "used more than its": "a cell ran out of CPU time",
           "without finishing (while it used": "a cell waited past its time limit"}


def scan_graded(path: PathLike) -> list[Finding]:
    """What grading cut or stopped in an autograded notebook (none if there is none)."""
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - none yet, or a grading error reported elsewhere
        return []
    findings = set()
    for cell in notebook.cells:
        label = cell.metadata.get("nbgrader", {}).get("grade_id", "(added cell)")
        for output in cell.get("outputs", []):
            text = output.get("text", "") if output.output_type == "stream" else output.get("evalue", "")
            findings.update(Finding(label, 0, what) for phrase, what in BUDGETS.items() if phrase in text[:300])
    return sorted(findings, key=lambda f: (f.what, f.cell))


def scan_folder(folder: PathLike, shipped: PathLike | None = None) -> list[Finding]:
    """Findings for files in a submission folder that Python could import (a planted numpy.py or
    ipykernel_launcher.py); `make grade` grades the notebooks only, so they are ignored.

    A file identical to the one of the same name in ``shipped`` (the assignment's source folder,
    whose helper files the release carries) is what `nbgrader submit` hands back: not reported.
    """
    folder = Path(folder)
    planted = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix in IMPORTABLE
               and not _shipped_unchanged(p, folder, shipped)]
    return [Finding("(folder)", 0, f"adds {p.relative_to(folder)}, which Python would import (ignored)")
            for p in planted]


def _shipped_unchanged(path, folder, shipped):
    original = Path(shipped) / path.relative_to(folder) if shipped else None
    return original is not None and original.is_file() and original.read_bytes() == path.read_bytes()

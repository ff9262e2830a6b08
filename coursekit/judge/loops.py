"""Whether an answer works on whole arrays: the kernel counts the Python steps of a call at
shapes of the student's own (``loop_shapes``, with gradcheck.check_vectorised on a method of a
``Remote``), and ``uncounted_loops`` reads the class's code for what loops out of the count's sight.
"""
import ast

import numpy as np

from coursekit.shipped.gradcheck import TestFailure
from coursekit.judge.remote import Notebook


def check_no_hidden_loops(notebook: Notebook, name: str) -> None:
    """The code of the class ``name`` uses nothing that can loop out of the step count's sight
    (see ``uncounted_loops``): checked after its calls' steps are counted.

    Example: ``check_no_hidden_loops(notebook, "ReLU")``"""
    hidden = uncounted_loops(notebook.sources, name)
    if hidden:
        raise TestFailure(f"{name} uses {hidden[0]}, which runs code the test's step count cannot see into (a loop "
                          "driven from C, another thread, tracing switched off); work on the whole array with NumPy operations")


def loop_shapes(rng: np.random.Generator) -> list[tuple[int, ...]]:
    """The shapes at which a check measures "no loops", the student's own (``rng`` is a hidden
    check's): five, of ranks 1 to 3, of 400 to 25,300 entries, one of them of 400 rows or more,
    where a loop over the elements or the rows runs hundreds of Python steps at least (the check
    compares their results too: an answer cannot loop below some size and return anything above it).

    Example: ``for shape in loop_shapes(rng): check_vectorised(what, layer.forward, rng.normal(size=shape))``"""
    return [(int(rng.integers(2_000, 8_000)),), tuple(int(n) for n in rng.integers(60, 160, size=2)),
            tuple(int(n) for n in rng.integers(12, 30, size=3)), tuple(int(n) for n in rng.integers(20, 30, size=2)),
            (int(rng.integers(400, 800)), int(rng.integers(2, 6)))]


# Names with which code can apply a function to an array's elements unseen by the kernel's step
# count (which traces Python calls in the main thread): other threads or processes, tracing
# switched off, iterators that C drives over a builtin (map, itertools, functools; a ufunc's own
# reduce is NumPy's), NumPy's element-by-element wrappers, an array's elements as Python objects,
# the course's own counter, and ways to reach any of them by a string.
ELEMENT_LOOPS = {"map", "filter", "starmap", "frompyfunc", "vectorize", "fromiter", "nditer", "ndenumerate", "tolist",
                 "itertools", "functools"}  # (names that only per-element work uses: the tamper report's too)
UNCOUNTED = ELEMENT_LOOPS | {
             "threading", "_thread", "Thread", "concurrent", "multiprocessing", "settrace", "setprofile", "gettrace",
             "coursekit", "python_steps", "zip", "operator", "flat", "__getattribute__",
             "eval", "exec", "compile", "getattr", "__import__", "importlib", "globals", "vars", "__builtins__",
             "builtins", "__dict__", "modules"}


def uncounted_loops(sources: list[str], name: str) -> list[str]:
    """Where the student's code cells ``sources`` use an UNCOUNTED name in the code of class
    ``name``: the statements that define or change it, and those that define or change what they
    use (a helper function, ``np.maximum = ...``), in turn; not the rest of their cells (a scratch
    line that reuses a variable's name, or calls map, is not the class's code).
    ["frompyfunc (line 3)", ...]."""
    statements = [statement for source in sources for statement in _statements(source)]
    names, attributes, walked, found = {name}, set[str](), set[int](), list[str]()
    while True:
        new = [i for i, statement in enumerate(statements) if i not in walked
               and _changes(statement, name, names, attributes)]
        if not new:
            return found
        for i in new:
            walked.add(i)
            free, attrs = _uses(statements[i])
            names |= free
            attributes |= attrs
            indexed = {id(node.value) for node in ast.walk(statements[i]) if isinstance(node, ast.Subscript)}
            found += [f"{used} (line {getattr(node, 'lineno', '?')})" for node in ast.walk(statements[i])
                      for used in _names(node, strings=True)
                      if used in UNCOUNTED and not (used == "flat" and id(node) in indexed)]  # (x.flat[i] = v is NumPy's)


def _statements(source):
    """The statements a cell runs at its top level, as the kernel runs them: IPython's syntax
    (magics, ``!``) made Python, the code a magic runs (``%%time``, ``%time``) read too, and the
    statements inside top-level blocks (if, for, with, try). [] if it does not parse."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError, TypeError):  # (or nested too deeply)
        return []
    statements, pending = [], list(tree.body)
    while pending:
        statement = pending.pop(0)
        if isinstance(statement, (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try)):
            pending += [part for field in ("body", "orelse", "finalbody") for part in getattr(statement, field, [])]
            pending += [part for handler in getattr(statement, "handlers", []) for part in handler.body]
            # what the block's header binds, as an assignment: ``for f in [...]``, ``with ... as f``
            bindings = ([(statement.target, statement.iter)] if isinstance(statement, (ast.For, ast.AsyncFor)) else
                        [(item.optional_vars, item.context_expr) for item in getattr(statement, "items", []) if item.optional_vars]
                        if isinstance(statement, (ast.With, ast.AsyncWith)) else [])
            statements += [ast.Assign(targets=[target], value=value, lineno=statement.lineno) for target, value in bindings]
            statements += [ast.Expr(value=statement.test, lineno=statement.lineno)] if hasattr(statement, "test") else []
            continue
        statements.append(statement)
        for call in (n for n in ast.walk(statement) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                     and n.func.attr in ("run_cell_magic", "run_line_magic")):
            code = [arg.value for arg in call.args[1:] if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
            statements += [part for text in code[-1:] for part in _statements(text)]  # (the line's, or the cell's)
    return statements


def _changes(statement, name, names, attributes):
    """Whether a top-level statement defines or changes one of ``names`` (a class, a function, a
    variable, an import, also with ``:=``) or an attribute of ``attributes`` (``np.maximum = f``
    or setattr), the class ``name`` itself (``ReLU.forward = f``), a class it uses
    (``Activation.forward = f``) or a hook of any object (``X.__init_subclass__ = f``)."""
    if isinstance(statement, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        return statement.name in names
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return any((alias.asname or alias.name.split(".")[0]) in names for alias in statement.names)
    targets = (statement.targets if isinstance(statement, ast.Assign) else
               [statement.target] if isinstance(statement, (ast.AugAssign, ast.AnnAssign)) else [])
    targets += [node.target for node in ast.walk(statement) if isinstance(node, ast.NamedExpr)]  # (f := ...)
    for target in [part for t in targets for part in (t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t])]:
        root = target
        while isinstance(root, (ast.Attribute, ast.Subscript)):
            root = root.value
        root = root.id if isinstance(root, ast.Name) else None
        if root == name or (root in names and not isinstance(target, ast.Attribute)):
            return True
        if isinstance(target, ast.Attribute) and (
                target.attr in attributes or target.attr.startswith("__")  # a hook: X.__init_subclass__ = f
                or (root in names and root[:1].isupper())):  # a class the code uses: Activation.forward = f
            return True
    for call in (n for n in ast.walk(statement) if isinstance(n, ast.Call)):
        if isinstance(call.func, ast.Name) and call.func.id == "setattr" and len(call.args) >= 2:
            obj, attr = call.args[:2]
            named = isinstance(attr, ast.Constant)
            if not named or attr.value in attributes or (isinstance(obj, ast.Name) and obj.id == name):
                return True
    return False


def _uses(statement):
    """The global names a statement's code reads (not its functions' parameters or local
    variables) and the attribute names it uses."""
    local = set()
    for node in ast.walk(statement):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            local |= {arg.arg for arg in ast.walk(node.args) if isinstance(arg, ast.arg)}
            local |= {n.id for body in ([node.body] if isinstance(node, ast.Lambda) else node.body)
                      for n in ast.walk(body) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    free = {n.id for n in ast.walk(statement) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - local
    return free, {n.attr for n in ast.walk(statement) if isinstance(n, ast.Attribute)}


def _names(node, strings=False):
    """The names a node uses: a name, an attribute, a module imported (and with ``strings``, a
    string that could name one: ``getattr(np, "frompyfunc")``)."""
    if strings and isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
        return [node.value]
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        names = [part for alias in node.names for part in alias.name.split(".")]
        return names + (node.module.split(".") if isinstance(node, ast.ImportFrom) and node.module else [])
    return []

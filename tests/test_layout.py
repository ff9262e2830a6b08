"""The package's layout is its architecture (coursekit/__init__.py): each part imports only the
parts that run where it runs, and no module imports itself back through others."""
import ast

import pytest

from coursekit import COURSE_ROOT, IN_THE_KERNEL, SANDBOX_SETUP

PACKAGE = COURSE_ROOT / "coursekit"
# what each part may import of the course's package (besides its own part)
ALLOWED = {
    "shipped": set(),  # students get these files alone
    "kernel": {"coursekit", "shipped"},  # a kernel sees no other course code
    "judge": {"coursekit", "shipped"},
    "pipeline": {"coursekit", "shipped", "kernel", "judge"},
    "tools": {"coursekit", "shipped", "kernel", "judge", "pipeline"},
}


def _name(path):
    parts = path.relative_to(COURSE_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts}


def imports(module):
    """The course modules that ``module`` imports anywhere in its code (lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                         for alias in node.names)
    return {name for name in found if name in MODULES and name != module}


def _part(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else "coursekit"


def test_every_module_is_in_a_part():
    assert {_part(module) for module in MODULES} == set(ALLOWED) | {"coursekit"}
    assert [module for module in MODULES if _part(module) == "coursekit"] == ["coursekit"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_part_imports_only_what_runs_where_it_runs(module):
    part = _part(module)
    if part == "coursekit":
        assert imports(module) == set()
        return
    wrong = {name for name in imports(module) if _part(name) not in ALLOWED[part] | {part}}
    assert not wrong, f"{module} ({part}) imports {sorted(wrong)}"


def test_no_import_cycle():
    graph = {module: imports(module) for module in MODULES}
    state = {}

    def visit(module, path):
        if state.get(module) == "open":
            raise AssertionError(" -> ".join(path[path.index(module):] + [module]))
        if state.get(module) != "done":
            state[module] = "open"
            for name in sorted(graph[module]):
                visit(name, path + [module])
            state[module] = "done"

    for module in sorted(graph):
        visit(module, [])


def test_the_kernels_view_is_the_shipped_and_kernel_parts():
    assert {_part(f"coursekit.{name}") for name in IN_THE_KERNEL + SANDBOX_SETUP} == {"shipped", "kernel"}
    for name in IN_THE_KERNEL + SANDBOX_SETUP:
        assert f"coursekit.{name}" in MODULES, name


# What a check author and a student read carries type hints (pyproject.toml's [tool.mypy] checks them): the
# judge (its checks too), the kernel's side and the shipped helpers.
TYPED_PARTS = {"judge", "kernel", "shipped"}


def unannotated(tree):
    """The public functions and the public methods of public classes in ``tree`` that lack a hint on a
    parameter (self and cls aside) or on their return: "line name (what lacks one)"."""
    found = []

    def visit(body, prefix):
        for node in body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                arguments += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
                missing = [a.arg for a in arguments if a.annotation is None and a.arg not in ("self", "cls")]
                missing += ["return"] if node.returns is None else []
                if missing:
                    found.append(f"{node.lineno} {prefix}{node.name} ({', '.join(missing)})")

    visit(tree.body, "")
    return found


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _part(m) in TYPED_PARTS))
def test_public_functions_have_type_hints(module):
    missing = unannotated(ast.parse(MODULES[module].read_text()))
    assert not missing, f"{module}: public functions without type hints: {'; '.join(missing)}"

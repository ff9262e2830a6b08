"""Runs inside every grading kernel, before the notebook: keeps student code from changing verdicts.

nbgrader starts the kernel with ``install()`` (see nbgrader_config.py); the kernel already runs in
its sandbox (coursekit.sandbox), which caps its memory and keeps it away from the course. It

- imports the test helpers before any answer cell runs, so they keep private copies of NumPy
  and of the builtins;
- records the state of everything the tests rely on (NumPy, builtins, the test helpers, which
  modules are importable, IPython's error display, sys.stdout / stderr, the hooks run around
  cells) and restores it before and after every cell. A monkeypatch made in an answer cell therefore does
  not survive into the tests that follow.

What code does while the tests call it (inside a method) is caught by the helpers' private
copies; an error hidden from IPython's display still fails its cell, because nbgrader's Execute
adds the error the kernel reported.
"""
import importlib
import sys

PROTECTED = ["builtins", "numpy", "numpy.random", "numpy.linalg", "numpy.testing", "math",
             "gradcheck", "coursekit", "coursekit.gradcheck", "coursekit.torch_reference",
             "coursekit.solutions", "coursekit.reference_checks", "coursekit.guard"]
# Modules a test imports that must not be replaced by a fake in sys.modules.
IMPORTS = PROTECTED + ["torch"]

_modules = {}
_attributes = {}
_shell_state = {}


def install():
    """Snapshot the state the tests rely on and restore it before and after every cell."""
    for name in PROTECTED:
        try:
            module = importlib.import_module(name)
        except ImportError:  # e.g. no gradcheck.py next to the notebook
            continue
        _attributes[name] = dict(vars(module))
    _modules.update({name: sys.modules.get(name) for name in IMPORTS})
    shell = _shell()
    if shell is not None:
        # before each cell for the tests; after each cell so the kernel itself keeps working
        shell.events.register("pre_run_cell", restore)
        shell.events.register("post_run_cell", restore)
        _shell_state.update(
            showtraceback=shell.showtraceback, showsyntaxerror=shell.showsyntaxerror,
            custom_exceptions=shell.custom_exceptions, CustomTB=shell.CustomTB,
            events={event: list(callbacks) for event, callbacks in shell.events.callbacks.items()},
        )
    _shell_state.update(excepthook=sys.excepthook, stdout=sys.stdout, stderr=sys.stderr,
                        displayhook=sys.displayhook)


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def restore(*_):
    """Undo changes to the protected state (called before and after every cell)."""
    for name, attributes in _attributes.items():
        module = _modules.get(name) or sys.modules.get(name)
        if module is None:
            continue
        namespace = vars(module)
        for key, value in attributes.items():
            if namespace.get(key, _MISSING) is not value:
                namespace[key] = value
    for name, module in _modules.items():
        if module is not None and sys.modules.get(name) is not module:
            sys.modules[name] = module
        elif module is None and name in sys.modules and _fake(sys.modules[name]):
            del sys.modules[name]  # a stand-in planted before the real module was ever imported
    sys.excepthook = _shell_state.get("excepthook", sys.excepthook)
    for stream in ("stdout", "stderr", "displayhook"):
        if stream in _shell_state:
            setattr(sys, stream, _shell_state[stream])
    shell = _shell()
    if shell is not None and "events" in _shell_state:
        shell.showtraceback = _shell_state["showtraceback"]
        shell.showsyntaxerror = _shell_state["showsyntaxerror"]
        shell.custom_exceptions = _shell_state["custom_exceptions"]
        shell.CustomTB = _shell_state["CustomTB"]
        for event, callbacks in _shell_state["events"].items():
            shell.events.callbacks[event][:] = callbacks


def _fake(module):
    """Something put into sys.modules by hand rather than imported from a file."""
    return getattr(module, "__file__", None) is None


_MISSING = object()

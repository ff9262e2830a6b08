"""Hidden tests judged in the grader's process, outside the reach of student code.

A judged test cell never runs in the grading kernel. The grader (TimeLimitedExecute) calls the
check registered for the cell's grade_id in ``coursekit.judge.<assignment>`` and hands it a
``Notebook``: a handle through which the check creates the student's objects in the kernel, calls
their methods on inputs it chooses and reads their results. Only plain data crosses (float64
arrays, numbers, short strings; see coursekit.kernel.agent): reference values, model solutions and
PyTorch stay here, and nothing the kernel prints, displays, raises or hides changes a verdict. A
check passes by returning and fails by raising; its one-line message is what the student sees.

A test cell hands itself to the judge with one line, ``judge("<grade_id>")`` (its hidden region),
which the grader reads and the kernel never runs. The cell's visible tests, and a visible test
cell whose grade_id has a check, run in the kernel as usual (the student sees their output),
and the check, which repeats them, decides the score.

A hidden check draws its random inputs from ``notebook.rng(stream)``: a generator seeded by the
student and the assignment as well as the check's own stream, so every student meets different
hidden inputs (a classmate's outputs or a leaked hidden test are of no use) and a regrade the
same ones. A visible check uses the notebook's own seeds instead: it repeats what the student saw.
"""
import importlib
import re
from collections.abc import Callable

from coursekit.shipped.gradcheck import (TestFailure, call, check_array, check_call, check_close, check_unchanged,
                                         check_vectorised, kind)
from coursekit.judge.gradients import (check_backward_unseen, numerical_layer_gradients, numerical_loss_gradient,
                                       numerical_parameter_gradient)
from coursekit.judge.inputs import SECRET_FILE, course_secret, extreme_scores, extreme_values, student_key, unseen
from coursekit.judge.loops import check_no_hidden_loops, loop_shapes, uncounted_loops
from coursekit.judge.remote import (Copy, Earlier, KernelSilent, Notebook, Remote, StudentError, as_object, as_path,
                                    call_each, calls_in_order, calls_of, fetch, made_with, notebook_of, path, put, quiet)
from coursekit.judge.shared import answered, check_replayed, parameter_arrays, shaped
from coursekit.judge.torch_reference import MissingValue

# A check author's vocabulary, the judge's helpers and gradcheck's, from one place (docs/reference/
# documents them in this order, each with an example; ``make docs``).
__all__ = ["judged", "Notebook", "Remote", "call", "check_call", "check_close", "check_array", "check_unchanged",
           "check_vectorised", "check_backward_unseen", "TestFailure", "StudentError", "kind",
           "extreme_values", "extreme_scores", "loop_shapes", "unseen", "check_no_hidden_loops",
           "numerical_layer_gradients", "numerical_parameter_gradient", "numerical_loss_gradient",
           "call_each", "quiet", "Earlier", "Copy", "path", "fetch", "put", "as_object", "as_path", "notebook_of",
           "calls_of", "calls_in_order", "made_with", "answered", "shaped", "parameter_arrays", "check_replayed"]
VOCABULARY = list(__all__)
# ... and what the grader uses
__all__ += ["checks", "verdict", "split_call", "CALL", "KernelSilent", "student_key", "course_secret",
            "SECRET_FILE", "uncounted_loops"]

CALL = re.compile(r"""^\s*judge\(\s*["'](?P<grade_id>[\w.-]+)["']\s*\)\s*(#.*)?$""")


def split_call(source: str) -> tuple[str, str | None]:
    """A test cell's code as (what the kernel runs, the grade_id it hands to the judge or None).

    The call is a line of its own (the cell's hidden region, in the source notebook); the kernel
    runs the rest, the cell's visible tests, or nothing ("") when the rest is only comments.
    """
    lines = source.splitlines()
    calls = [i for i, line in enumerate(lines) if CALL.match(line)]
    if len(calls) != 1:
        return source, None
    rest = lines[:calls[0]] + lines[calls[0] + 1:]
    code = any(line.strip() and not line.strip().startswith("#") for line in rest)
    return ("\n".join(rest) if code else ""), CALL.match(lines[calls[0]])["grade_id"]  # type: ignore[index]  # (it matched)


def _module(assignment):
    try:
        return importlib.import_module(f"coursekit.judge.{assignment}")
    except ModuleNotFoundError as error:
        if error.name != f"coursekit.judge.{assignment}":
            raise
        return None


def checks(assignment: str) -> dict[str, Callable[[Notebook], None]]:
    """{grade_id: check} for an assignment judged here ({} for one whose tests run in the kernel)."""
    module = _module(assignment)
    return module.CHECKS if module else {}


def judged(registry: dict) -> Callable:
    """Decorator: ``@judged(CHECKS)`` registers a check under its function's name (the cell's grade_id).

    Example: ``@judged(CHECKS)`` above ``def tanh_hidden(notebook): ...``"""
    def register(check):
        registry[check.__name__] = check
        return check
    return register


def verdict(check: Callable[[Notebook], None], notebook: Notebook) -> tuple[str, str] | None:
    """Run ``check(notebook)``: None if it passed, else (error name, one-line message)."""
    try:
        check(notebook)
    except TestFailure as failure:
        return "TestFailure", str(failure)
    except AssertionError as failure:
        return "AssertionError", str(failure)
    except KernelSilent as silent:
        return "NoReply", str(silent)
    except StudentError as error:
        return "TestFailure", f"your code raised {error.name}: {error.message}"
    except (MissingValue, MemoryError):  # the recorded PyTorch values are incomplete: the course's fault,
        raise  # not the student's; a check's memory budget is said by whoever set it (coursekit.pipeline.limits)
    except Exception as error:  # noqa: BLE001 - what the kernel sent, of the wrong kind or shape, broke the check
        return "TestFailure", f"the test could not use what your code returned ({type(error).__name__}: {error})"[:500]
    return None

"""Checks that several assignments share: a trained network's parameters and their replay, and
what a composite check needs of the student's own layers (``shaped``, ``answered``).
"""
import math

import numpy as np

from coursekit.shipped.gradcheck import TestFailure, check_close
from coursekit.judge.remote import Notebook


def parameter_arrays(what: str, names: list[str], values: list, shapes: list[tuple]) -> list[np.ndarray]:
    """``values`` (parameters fetched from the kernel, named ``names``) as float arrays; a
    TestFailure names the first that is not an array of finite numbers, or whose size is not
    that of its shape in ``shapes`` (the task's network: (n,) and (1, n) are both accepted).
    The judge computes with them only once they pass, whatever a submission sends.

    Args:
    - what: the call that made them, as messages name it.
    - names, values: the parameters' names and values.
    - shapes: the shapes the task's network has.

    Example: ``W1, b1 = parameter_arrays("make_mlp()", ["W1", "b1"], fetched, [(64, 16), (16,)])``"""
    arrays = []
    for name, value, shape in zip(names, values, shapes, strict=True):
        if value is None:
            raise TestFailure(f"{what}: {name} is None")
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise TestFailure(f"{what}: {name} is not an array of numbers") from None
        if array.size != math.prod(shape) or array.ndim > 2:
            raise TestFailure(f"{what}: {name} has shape {array.shape}, where the task's network has {shape}")
        if not np.all(np.isfinite(array)):
            raise TestFailure(f"{what}: {name} is not finite (it overflowed?)")
        arrays.append(array)
    return arrays


def check_replayed(what: str, names: list[str], values: list[np.ndarray], replayed: list[np.ndarray], rtol: float = 1e-6,
                   atol: float = 1e-9) -> None:
    """Trained parameters ``values`` against ``replayed``, those of the same gradient descent that
    the judge ran from the same start (a value of another shape but the same size, (n,) for
    (1, n), is compared as the replay's in its shape: its part's own tests say so).

    Args:
    - what: the training, as messages name it.
    - names, values: the trained parameters' names and values.
    - replayed: the replay's values, in the same order.
    - rtol, atol: the comparison's tolerances.

    Example: ``check_replayed("train(...)", ["W", "b"], [W, b], replayed)``"""
    for name, value, expected in zip(names, values, replayed, strict=True):
        expected = np.reshape(expected, np.shape(value)) if np.size(value) == np.size(expected) else expected
        check_close(f"{what}: {name} vs the same gradient descent from its first value (check the parts above)",
                    value, expected, rtol=rtol, atol=atol)


def shaped(value: object, shape: tuple) -> np.ndarray:
    """``value`` if it is an array of finite numbers of ``shape``, else ValueError: what a
    student's own layer returned, where a composite check follows it (a layer that returns
    something else is judged by its own part's checks, not here).

    Example: ``H = shaped(own.forward(X), (n, 4))``"""
    if not isinstance(value, np.ndarray) or value.shape != tuple(shape) or not np.all(np.isfinite(value)):
        raise ValueError("not an array of that shape")
    return value


def answered(notebook: Notebook, *grade_ids: str) -> bool:
    """Whether the kernel answered the checks of ``grade_ids`` earlier in this grading (those that
    did not run yet count as answered). A composite check calls the student's own layers only if
    theirs did: a layer that hangs costs its own part's points, not the composite's.

    Example: ``if answered(notebook, "relu_tests", "fullyconnected_forward"): ...``"""
    return not notebook.unanswered & set(grade_ids)

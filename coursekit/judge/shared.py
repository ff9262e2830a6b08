"""Checks that several assignments share: a trained network's parameters and their replay, and
what a composite check needs of the student's own layers (``shaped``, ``answered``).
"""
import math

import numpy as np

from coursekit.shipped.gradcheck import TestFailure, check_close


def parameter_arrays(what, names, values, shapes):
    """``values`` (parameters fetched from the notebook, named ``names``) as float arrays; a
    TestFailure names the first that is not an array of finite numbers, or whose size is not
    that of its shape in ``shapes`` (the task's network: (n,) and (1, n) are both accepted).
    The judge computes with them only once they pass, whatever a submission sends."""
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


def check_replayed(what, names, values, replayed, rtol=1e-6, atol=1e-9):
    """Trained parameters ``values`` against ``replayed``, those of the same gradient descent that
    the judge ran from the same start (a value of another shape but the same size, (n,) for
    (1, n), is compared as the replay's in its shape: its part's own tests say so)."""
    for name, value, expected in zip(names, values, replayed, strict=True):
        expected = np.reshape(expected, np.shape(value)) if np.size(value) == np.size(expected) else expected
        check_close(f"{what}: {name} vs the same gradient descent from its first value (check the parts above)",
                    value, expected, rtol=rtol, atol=atol)


def shaped(value, shape):
    """``value`` if it is an array of finite numbers of ``shape``, else ValueError: what a
    student's own layer returned, where a composite check follows it (a layer that returns
    something else is judged by its own part's checks, not here)."""
    if not isinstance(value, np.ndarray) or value.shape != tuple(shape) or not np.all(np.isfinite(value)):
        raise ValueError("not an array of that shape")
    return value


def answered(notebook, *grade_ids):
    """Whether the kernel answered the checks of ``grade_ids`` earlier in this grading (those that
    did not run yet count as answered). A composite check calls the student's own layers only if
    theirs did: a layer that hangs costs its own part's points, not the composite's."""
    return not notebook.unanswered & set(grade_ids)

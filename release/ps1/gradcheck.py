"""Checks used by the notebooks' tests: finite differences and one-line failure messages.

This file ships with every assignment (students run the visible tests with it), so it
needs NumPy only and contains no solution.

Every check raises ``TestFailure`` (an ``AssertionError``) whose message is one line:
which quantity is wrong, how (shape, largest error), and a hint when the mistake is
recognisable, without giving the answer away.
"""
import builtins
import contextlib
import sys
import textwrap
import traceback
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import SimpleNamespace as Namespace  # noqa: F401 - stand-in objects for tests (e.g. a layer for SGD)
from typing import TYPE_CHECKING, Any

import numpy

if TYPE_CHECKING:  # (only for type checkers: the module imports nothing it does not use)
    from numpy.typing import ArrayLike

# The tests must judge the same way whatever the code before them did to NumPy or to Python's
# builtins: this module works with private copies of both, taken when it is first imported
# (before any answer cell runs). Tests use its `np` too.
__builtins__ = dict(vars(builtins))  # type: ignore[assignment]  # (a module's own builtins, as Python allows)


def _snapshot(module, *submodules):
    """A read-only copy of a module's namespace (and of some of its submodules')."""
    names = dict(vars(module))
    names.update({sub: _snapshot(getattr(module, sub)) for sub in submodules})
    names = types.MappingProxyType(names)

    class ReadOnlyModule:
        __slots__ = ()

        def __getattr__(self, name):
            try:
                return names[name]
            except KeyError:
                raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}") from None

        def __setattr__(self, name, value):
            raise AttributeError(f"the tests' copy of {module.__name__} is read-only")

        __delattr__ = __setattr__

        def __dir__(self):
            return list(names)

    return ReadOnlyModule()


np = _snapshot(numpy, "random", "linalg", "testing")
_settrace, _gettrace, _setprofile = sys.settrace, sys.gettrace, sys.setprofile


class TestFailure(AssertionError):
    """A test found a wrong answer; the message says what is wrong in one line.

    In a notebook, IPython shows a TestFailure as its message alone, wrapped to 80 columns (as
    ``nbgrader validate`` shows it too, which cuts longer lines), with no traceback into this
    file; when the student's code raised, the lines of it where it did follow.
    """

    __test__ = False  # not a pytest test class
    WIDTH = 80
    student_frames: tuple[tuple[str, int, str], ...] = ()  # (function, line number, code) of the student's code that raised

    def _render_traceback_(self):
        lines = textwrap.wrap(f"{type(self).__name__}: {self}", self.WIDTH, break_long_words=False,
                              break_on_hyphens=False, subsequent_indent="    ")
        lines[0] = lines[0].replace(type(self).__name__, f"\x1b[0;31m{type(self).__name__}\x1b[0m", 1)
        if self.student_frames:
            lines.append("Your code raised it here:")
            lines += [f"    in {function}, line {number}: {code}"[:self.WIDTH] for function, number, code in self.student_frames]
        return lines


@contextlib.contextmanager
def strict_numerics() -> Iterator[None]:
    """Turn NumPy overflow / invalid-value warnings into errors.

    A warning printed to stderr makes nbgrader give 0 points without saying why; an
    error names the problem instead.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
            yield


def call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call student code ``fn``; turn any exception into a one-line TestFailure.

    Args:
    - what (str): how the call is described in the message, e.g. "Linear.forward(x)".
    - fn, args, kwargs: the call.

    Returns:
    - what ``fn`` returns.

    Example: ``out = call("ReLU.forward(H)", layer.forward, H)``
    """
    try:
        with strict_numerics():
            return fn(*args, **kwargs)
    except (TestFailure, MemoryError):  # (a memory budget is said by whoever set it)
        raise
    except Exception as error:  # noqa: BLE001 - any student error is a failed test
        if getattr(error, "graders_own", False):  # the grader's fault, not the student's (the judge's MissingValue)
            raise
        raise raised(what, error) from None


def raised(what: str, error: BaseException) -> TestFailure:
    """The TestFailure that says ``what`` raised ``error``, with the lines of the student's code
    where it did (an error that carries ``student_frames`` brings its own: one raised elsewhere)."""
    if isinstance(error, (FloatingPointError, RuntimeWarning)):
        return TestFailure(f"{what} hit a floating-point problem ({error}): does it overflow for large inputs?")
    failure = TestFailure(f"{what} raised {type(error).__name__}: {error}")
    frames = getattr(error, "student_frames", None)
    failure.student_frames = _student_frames(error.__traceback__) if frames is None else tuple(frames)
    return failure


def _student_frames(trace, most=3):
    """The innermost ``most`` frames of ``trace`` in the student's code (not in this file, nor in
    Python's or its libraries'): (function, line, code)."""
    installed = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    frames = [frame for frame in traceback.extract_tb(trace)
              if frame.filename != __file__ and not frame.filename.startswith(installed)]
    return tuple((frame.name, frame.lineno, (frame.line or "").strip()) for frame in frames[-most:])


def _describe_shape_mistake(actual_shape, expected_shape):
    if actual_shape == expected_shape[::-1] and len(expected_shape) > 1:
        return " (transposed?)"
    if tuple(d for d in actual_shape if d != 1) == tuple(d for d in expected_shape if d != 1):
        return " (an axis of size 1 added or dropped: (1, q) is not (q,))"
    if len(actual_shape) == len(expected_shape) + 1 and actual_shape[1:] == expected_shape:
        return " (one row per sample: forgot to sum over the batch axis?)"
    return ""


def check_array(name: str, actual: Any, shape: Sequence[int]) -> numpy.ndarray:
    """Check that ``actual`` is a NumPy float array of exactly ``shape``; return it.

    Args:
    - name (str): what is checked, as messages name it, e.g. "Linear.forward(x)".
    - actual: the student's value.
    - shape (tuple): the shape it must have.

    Example: ``check_array("Linear.forward(x)", out, (5, 4))``
    """
    if actual is None:
        raise TestFailure(f"{name} is None: compute it and assign / return it")
    if type(actual) is not np.ndarray:  # exactly: a subclass could redefine comparisons
        raise TestFailure(f"{name} should be a NumPy array, got {kind(actual)}")
    if actual.shape != tuple(shape):
        raise TestFailure(f"{name} has shape {actual.shape}, expected {tuple(shape)}"
                          + _describe_shape_mistake(actual.shape, tuple(shape)))
    return actual


def _close(a, b, rtol, atol):
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(b)))


def _constant_ratio(actual, expected, rtol):
    """The c with actual == c * expected, if there is one (else None)."""
    big = np.abs(expected) > 1e-8
    if not big.any():
        return None
    ratios = actual[big] / expected[big]
    c = float(np.median(ratios))
    if c != 0 and np.allclose(actual, c * expected, rtol=rtol, atol=1e-10):
        return c
    return None


def kind(value: object) -> str:
    """What ``value`` is, as messages name it: its type (an object the grader holds for the
    notebook by the notebook's own type), and a tuple's or a list's length.

    Example: ``f"got {kind(value)}"`` reads "got a tuple of 3" or "got Tensor"."""
    name = getattr(type(value), "type_of", lambda v: type(v).__name__)(value)
    return f"a {name} of {len(value)}" if isinstance(value, (tuple, list)) else name


def check_close(name: str, actual: Any, expected: "ArrayLike", *, rtol: float = 1e-6, atol: float = 1e-8,
                hints: Iterable[tuple["ArrayLike", str]] = (), factors: Mapping[str, float] | None = None) -> None:
    """Check ``actual`` against ``expected`` (float arrays or scalars); one-line message on failure.

    Args:
    - name (str): what is compared, e.g. "Linear.backward: grad_weights".
    - actual: the student's value.
    - expected: the correct value (NumPy array or float).
    - hints: pairs (wrong_value, text): if ``actual`` matches a known mistake's value,
      the message ends with its text.
    - factors (dict): named numbers, e.g. {"N": 7}, used to explain an answer that is a
      constant multiple of the expected one ("equals the expected value times N").

    Example: ``check_close("Tanh.forward(x)", out, np.tanh(x), hints=[(np.sinh(x), "sinh is not tanh")])``
    """
    correct = np.asarray(expected, dtype=np.float64)
    if correct.ndim == 0:
        if isinstance(actual, np.ndarray) and actual.size == 1 and actual.ndim > 0:
            raise TestFailure(f"{name} should be a single number, got an array of shape {actual.shape}")
        if type(actual) not in (float, int, np.float64, np.float32, np.int64):
            raise TestFailure(f"{name} should be a float, got {kind(actual)}")
        actual = float(actual)
    else:
        check_array(name, actual, correct.shape)
    actual = np.array(actual, dtype=np.float64)
    if not np.all(np.isfinite(actual)):
        raise TestFailure(f"{name} contains nan or inf where the expected values are finite: "
                          "an overflow for large inputs?")
    if _close(actual, correct, rtol, atol):
        return
    error = np.abs(actual - correct)
    where = np.unravel_index(int(np.argmax(error)), error.shape) if error.ndim else ()
    message = f"{name} is wrong: largest error {error.max():.3g}"
    if where:
        message += f" at index {tuple(int(i) for i in where)}"
    message += f" (yours {actual[where]:.6g}, expected {correct[where]:.6g})"
    for wrong_value, text in hints:
        wrong_value = np.asarray(wrong_value, dtype=np.float64)
        if _close(actual, wrong_value, rtol, atol):
            raise TestFailure(f"{message}; {text}")
    c = _constant_ratio(actual, correct, rtol)
    if c is not None:
        named = {**(factors or {}), "2": 2}
        for label, value in named.items():
            if np.isclose(c, value):
                raise TestFailure(f"{message}; it equals the expected value times {label}")
            if np.isclose(c, 1 / value):
                raise TestFailure(f"{message}; it equals the expected value divided by {label}")
        if np.isclose(c, -1):
            raise TestFailure(f"{message}; it has the wrong sign")
        raise TestFailure(f"{message}; it is {c:.4g} times the expected value")
    raise TestFailure(message)


def check_call(what: str, fn: Callable[..., Any], *args: Any, expected: "ArrayLike", **tolerances: Any) -> Any:
    """Call student code ``fn(*args)`` as ``call`` does and compare what it returns with
    ``expected`` as ``check_close`` does: the label is said once.

    Args:
    - what (str): the call as messages name it, e.g. "Linear.forward(x)".
    - fn, args: the call.
    - expected: the correct value.
    - tolerances: ``rtol``, ``atol``, ``hints`` and ``factors``, as for ``check_close``.

    Returns:
    - what ``fn`` returned.

    Example: ``check_call("Tanh.forward(x)", layer.forward, x, expected=np.tanh(x))``
    """
    actual = call(what, fn, *args)
    check_close(what, actual, expected, **tolerances)
    return actual


def check_unchanged(name: str, before: numpy.ndarray, after: numpy.ndarray) -> None:
    """Check that an input array was not modified in place.

    Args:
    - name (str): the call that was given the array, e.g. "Tanh.backward(G)".
    - before: a copy of the array taken before the call.
    - after: the array after the call (for an array kept in another process, its value now).

    Example: ``G0 = G.copy(); layer.backward(G); check_unchanged("Tanh.backward(G)", G0, G)``
    """
    if not np.array_equal(before, after):
        raise TestFailure(f"{name} changed the array it was given: don't modify inputs in place "
                          "(use out = f(x), not x += ... or out=x)")


def _single_number(value):
    """``value`` as a float, or a TestFailure if it is not one number (e.g. a loss returned as an array)."""
    if isinstance(value, np.ndarray) and value.ndim > 0:
        raise TestFailure(f"a loss returned an array of shape {value.shape} where a single number is expected")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TestFailure(f"a loss returned {kind(value)} where a single number is expected") from None


def numerical_gradient(f: Callable[[], float], x: numpy.ndarray, eps: float = 1e-6) -> numpy.ndarray:
    """Central finite differences of a scalar function.

    Args:
    - f (callable): takes no argument and returns a float; it must read ``x``.
    - x (np.array): float64 array of any shape, perturbed in place and restored.
    - eps (float): step size.

    Returns:
    - grad (np.array): same shape as x, grad[i] ~ (f(x + eps e_i) - f(x - eps e_i)) / (2 eps).
    """
    grad = np.zeros_like(x, dtype=np.float64)
    for index in np.ndindex(x.shape):
        original = x[index]
        x[index] = original + eps
        f_plus = _single_number(f())
        x[index] = original - eps
        f_minus = _single_number(f())
        x[index] = original
        grad[index] = (f_plus - f_minus) / (2 * eps)
    return grad


def numerical_input_gradient(forward: Callable[[numpy.ndarray], numpy.ndarray], x: numpy.ndarray, grad_output: numpy.ndarray,
                             eps: float = 1e-6) -> numpy.ndarray:
    """dL/dx by finite differences, for L = sum(forward(x) * grad_output).

    That L makes grad_output the upstream gradient dL/dy, so the result is what
    ``backward(grad_output)`` must return.

    Args:
    - forward (callable): maps an array shaped like x to an array shaped like grad_output.
    - x (np.array): input, shape (N, input_dim); not modified.
    - grad_output (np.array): upstream gradient, shape of forward(x).

    Returns:
    - grad (np.array): shape of x.
    """
    x = np.array(x, dtype=np.float64)
    return numerical_gradient(lambda: float(np.sum(forward(x.copy()) * grad_output)), x, eps)


@contextlib.contextmanager
def substitute(namespace: dict[str, Any], **replacements: Any) -> Iterator[None]:
    """Temporarily rebind names in a namespace (e.g. the notebook's globals()).

    Used to build an MLP from stand-in layers, so its test does not depend on your
    Linear and Tanh.
    """
    missing = object()
    saved = {name: namespace.get(name, missing) for name in replacements}
    namespace.update(replacements)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value


def check_backward(name: str, layer: Any, x: numpy.ndarray, grad_output: numpy.ndarray, params: Sequence[tuple[str, str]] = (),
                   rtol: float = 1e-5, atol: float = 1e-7) -> None:
    """Compare ``layer.backward`` with central finite differences.

    The loss is L = sum(layer.forward(x) * grad_output), so grad_output is dL/dy.

    Args:
    - name (str): the layer as named in messages, e.g. "Linear".
    - layer: has forward(x) and backward(grad_output) -> dL/dx.
    - x (np.array): input, shape (N, input_dim).
    - grad_output (np.array): upstream gradient, shape of layer.forward(x).
    - params: pairs (parameter attribute, gradient attribute), e.g. [("weights", "grad_weights")].
    """
    x = np.array(x, dtype=np.float64)
    call(f"{name}.forward(x)", layer.forward, x.copy())
    grad_input = call(f"{name}.backward(grad_output)", layer.backward, grad_output.copy())
    grads = {grad: np.copy(getattr(layer, grad, None)) for _, grad in params}

    def forward(z):
        return call(f"{name}.forward(x)", layer.forward, z)

    no_upstream = numerical_input_gradient(forward, x, np.ones_like(grad_output))
    check_close(f"{name}.backward(grad_output) vs finite differences", grad_input,
                numerical_input_gradient(forward, x, grad_output), rtol=rtol, atol=atol,
                hints=[(no_upstream, "it ignores grad_output: missing the upstream gradient?")])
    for param, grad in params:
        numeric = numerical_gradient(lambda: float(np.sum(forward(x.copy()) * grad_output)),
                                     getattr(layer, param))
        check_close(f"{name}.{grad} vs finite differences", grads[grad], numeric, rtol=rtol, atol=atol)


# The code of NumPy's einsum, taken when this module is first imported: a replacement of
# np.einsum made later is not einsum (and one made before computes what einsum_problem recomputes)
_EINSUM_CODE = getattr(getattr(numpy.einsum, "_implementation", numpy.einsum), "__code__", None)


@contextlib.contextmanager
def recording_einsum() -> Iterator[list[tuple[list[Any], numpy.ndarray]]]:
    """While the block runs, record every call of NumPy's einsum in this thread, however the code
    names it (``np.einsum``, ``numpy.einsum``, ``from numpy import einsum as e``): yields the
    list of calls, each (its arguments: the subscripts and the operands, its output), copied as
    they were (later writes do not count). (A profile function sees each call of einsum's
    implementation: the function is recognised, not a name.)"""
    calls, started = [], {}

    def watch(frame, event, arg):
        if frame.f_code is not _EINSUM_CODE:
            return
        if event == "call":
            started[id(frame)] = [a if isinstance(a, (str, list, tuple)) else numpy.array(a)
                                  for a in frame.f_locals.get("operands", ())]
        elif event == "return" and id(frame) in started:
            calls.append((started.pop(id(frame)), numpy.array(arg)))

    previous = sys.getprofile()
    _setprofile(watch)
    try:
        yield calls
    finally:
        _setprofile(previous)


def einsum_problem(inputs: Sequence[numpy.ndarray], calls: Sequence[Sequence[Any]], result: Any) -> str | None:
    """None if ``result`` is the output of one of the einsum ``calls`` (see recording_einsum)
    whose operands are the ``inputs`` themselves, each used once, in any layout (``A`` or
    ``A.T``), and which einsum, called here on the same arguments, gives too: einsum did the
    product or the sum, not code before or after it. Else what is wrong.

    Args:
    - inputs: the arrays the function was given; result: what it returned.
    - calls: [(arguments, output)] of the calls it made.
    """
    def values(a):
        return np.sort(np.asarray(a, dtype=np.float64).ravel())

    if not calls:
        return "does not call np.einsum: this exercise is about writing it with np.einsum"
    wanted = [values(a) for a in inputs]
    for arguments, output in calls:
        try:
            arguments = [a if isinstance(a, str) else list(a) if isinstance(a, (list, tuple)) else
                         np.asarray(a, dtype=np.float64) for a in arguments]
            operands = arguments[1:] if isinstance(arguments[0], str) else arguments[0::2][:len(arguments) // 2]
            again = np.einsum(*arguments)
            if (np.shape(output) == np.shape(result) == np.shape(again) and np.array_equal(np.asarray(output, dtype=np.float64), result)
                    and np.allclose(again, result, rtol=1e-9, atol=1e-12) and _same_arrays([values(a) for a in operands], wanted)):
                return None
        except (TypeError, ValueError, IndexError, KeyError):  # (arguments einsum does not take: not this call)
            continue
    return "is not what a call of np.einsum on its arguments returned: let einsum do the product or the sum"


def _same_arrays(given, wanted):
    """Whether two lists of sorted value arrays hold the same arrays, in any order."""
    left = list(wanted)
    if len(given) != len(left):
        return False
    for values in given:
        match = next((i for i, other in enumerate(left) if len(other) == len(values) and np.array_equal(other, values)), None)
        if match is None:
            return False
        left.pop(match)
    return True


class SpyLayer:
    """A stand-in activation that multiplies by ``scale`` and records every call in ``log``.

    Lets a test check how a model wires its layers without using your layers.
    """

    def __init__(self, name, scale, log):
        self.name, self.scale, self.log = name, scale, log

    def forward(self, x: numpy.ndarray) -> numpy.ndarray:
        self.log.append(("forward", self.name))
        return x * self.scale

    def backward(self, grad_output: numpy.ndarray) -> numpy.ndarray:
        self.log.append(("backward", self.name))
        self.grad_output = grad_output  # what the model passed down, for the tests to look at
        return grad_output * self.scale


class SpyLinear(SpyLayer):
    """A stand-in linear layer: like SpyLayer, with parameters and update_params."""

    def __init__(self, name, scale, log):
        super().__init__(name, scale, log)
        self.weights, self.biases = np.array([[scale]]), np.zeros(1)

    def update_params(self, learning_rate: float) -> None:
        self.log.append(("update_params", self.name))


class SpyActivation(SpyLayer):
    """A stand-in activation with the MyTorch interface: ``backward()`` takes no argument and
    returns the elementwise derivative dA/dH, here ``scale`` everywhere."""

    def forward(self, H: numpy.ndarray) -> numpy.ndarray:
        self.log.append(("forward", self.name))
        self.H = H
        return H * self.scale

    def backward(self) -> numpy.ndarray:  # type: ignore[override]  # (MyTorch's: no argument)
        self.log.append(("backward", self.name))
        return np.full(np.shape(self.H), float(self.scale))


def python_steps(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, int]:
    """``fn(*args, **kwargs)`` and the number of Python lines and calls it ran: (result, steps)."""
    steps = 0

    def count(frame, event, arg):
        nonlocal steps
        steps += 1
        return count

    previous = _gettrace()
    _settrace(count)
    try:
        return fn(*args, **kwargs), steps
    finally:
        _settrace(previous)


LOOPS = "it loops in Python (over the elements or the rows, or with np.vectorize); work on the whole array with NumPy operations"


def check_vectorised(what: str, fn: Callable[..., Any], *args: Any, max_steps: int = 300) -> Any:
    """Call ``fn(*args)`` and check that it works on whole arrays, not element by element.

    Counts the Python lines and calls run inside ``fn``: ``np.vectorize`` and loops over the
    elements run some for every element, NumPy operations on whole arrays run none. A method of
    an object in another process (the grader's handle on a notebook's object) counts its steps
    there: its type has a ``python_steps`` method.

    Args:
    - what (str): how the call is described in messages, e.g. "ReLU.forward(H)".
    - fn, args: the call; it should work on an array of many more than ``max_steps`` elements.

    Returns:
    - whatever ``fn`` returns.

    Example: ``out = check_vectorised("ReLU.forward(H)", layer.forward, np.ones((300, 300)))``
    """
    measured = getattr(type(fn), "python_steps", None)  # (the type's: nothing the object says of itself)
    result, steps = call(what, measured, fn, *args) if measured else call(what, python_steps, fn, *args)
    if steps is None or steps > max_steps:
        raise TestFailure(f"{what} ran {steps} Python steps: {LOOPS}")
    return result

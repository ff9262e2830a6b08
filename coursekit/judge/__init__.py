"""Hidden tests judged in the grader's process, outside the reach of student code.

A judged test cell never runs in the grading kernel. The grader (TimeLimitedExecute) calls the
check registered for the cell's grade_id in ``coursekit.judge.<assignment>`` and hands it a
``Kernel``: a handle through which the check creates the student's objects in the kernel, calls
their methods on inputs it chooses and reads their results. Only plain data crosses (float64
arrays, numbers, short strings; see coursekit.kernel.agent): reference values, model solutions and
PyTorch stay here, and nothing the kernel prints, displays, raises or hides changes a verdict. A
check passes by returning and fails by raising; its one-line message is what the student sees.

A test cell hands itself to the judge with one line, ``judge("<grade_id>")`` (its hidden region),
which the grader reads and the kernel never runs. The cell's visible tests, and a visible test
cell whose grade_id has a check, run in the kernel as usual (the student sees their output),
and the check, which repeats them, decides the score.

A hidden check draws its random inputs from ``kernel.rng(stream)``: a generator seeded by the
student and the assignment as well as the check's own stream, so every student meets different
hidden inputs (a classmate's outputs or a leaked hidden test are of no use) and a regrade the
same ones. A visible check uses the notebook's own seeds instead: it repeats what the student saw.
"""
import ast
import base64
import hashlib
import hmac
import importlib
import json
import math
import os
import re
import secrets
from pathlib import Path

import numpy as np

from coursekit.shipped import gradcheck
from coursekit.shipped.gradcheck import TestFailure, check_close
from coursekit.judge.torch_reference import MissingValue

MAX_PARAMETERS = 10_000  # a parameter's finite differences take one forward pass per entry
CALL = re.compile(r"""^\s*judge\(\s*["'](?P<grade_id>[\w.-]+)["']\s*\)\s*(#.*)?$""")


class StudentError(Exception):
    """The student's code raised ``name`` (a type name from the kernel) with ``message``, in
    operation ``index`` of its request."""

    def __init__(self, name, message, index=0):
        super().__init__(f"{name}: {message}")
        self.name, self.message, self.index = name, message, index


class KernelSilent(Exception):
    """The kernel sent no usable reply (it is stuck in a loop, or died)."""


def split_call(source):
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
    return ("\n".join(rest) if code else ""), CALL.match(lines[calls[0]])["grade_id"]


def _module(assignment):
    try:
        return importlib.import_module(f"coursekit.judge.{assignment}")
    except ModuleNotFoundError as error:
        if error.name != f"coursekit.judge.{assignment}":
            raise
        return None


def checks(assignment):
    """{grade_id: check} for an assignment judged here ({} for one whose tests run in the kernel)."""
    module = _module(assignment)
    return module.CHECKS if module else {}


def judged(registry):
    """Decorator: ``@judged(CHECKS)`` registers a check under its function's name (the cell's grade_id)."""
    def register(check):
        registry[check.__name__] = check
        return check
    return register


def verdict(check, kernel):
    """Run ``check(kernel)``: None if it passed, else (error name, one-line message)."""
    try:
        check(kernel)
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


def call(what, function, *args, **kwargs):
    """Call a student's method in the kernel; its exception becomes a one-line TestFailure (as
    gradcheck.call words it in the visible tests)."""
    try:
        return function(*args, **kwargs)
    except StudentError as error:
        raise _failure(what, error) from None


def call_each(kernel, *steps):
    """Run ``steps``, pairs (what, operation), in one round trip: their results. A student's error
    becomes a TestFailure as ``call`` words it, naming the step that raised."""
    try:
        return kernel.run(*[operation for _, operation in steps])
    except StudentError as error:
        raise _failure(steps[min(error.index, len(steps) - 1)][0], error) from None


def _failure(what, error):
    if error.name in ("FloatingPointError", "RuntimeWarning"):
        return TestFailure(f"{what} hit a floating-point problem ({error.message}): does it overflow for large inputs?")
    return TestFailure(f"{what} raised {error.name}: {error.message}")


# --- values as they cross: see coursekit.kernel.agent -------------------------------------------------

class Earlier:
    """The result of operation ``index`` of the same request, as the kernel has it (see Kernel.run)."""

    def __init__(self, index):
        self.index = index


class Copy(Earlier):
    """A fresh copy of the array that operation ``index`` of the same request made (an input sent once for many calls)."""


def quiet(operation):
    """``operation`` for Kernel.run, whose result stays in the kernel (an ``Earlier`` can use it)
    instead of coming back: its result reads None."""
    return ["quiet", *operation]


def _operation(operation):
    if operation[0] == "quiet":
        return ["quiet", *_operation(operation[1:])]
    return [operation[0], *(_encode(item) for item in operation[1:])]


def _encode(value):
    # the common kinds first (a request holds thousands of values)
    if isinstance(value, str):
        return {"t": str(value)}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if value is None or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    if isinstance(value, (float, np.floating)):
        return {"f": float(value)}
    if isinstance(value, dict):
        return {"d": {key: _encode(item) for key, item in value.items()}}
    if isinstance(value, Remote):
        return {"r": object.__getattribute__(value, "_ref")}
    if isinstance(value, Earlier):
        return {"c" if isinstance(value, Copy) else "p": value.index}
    if isinstance(value, np.ndarray):
        array = np.array(value, dtype=np.float64, order="C")
        return {"a": base64.b64encode(array.tobytes()).decode(), "s": list(array.shape)}
    if isinstance(value, (int, np.integer)):
        return {"i": int(value)}
    if isinstance(value, tuple):  # arrives as a tuple: code may test isinstance(pad, tuple)
        return {"u": [_encode(item) for item in value]}
    raise TypeError(f"the judge cannot send {type(value).__name__} to the kernel")


def _decode(data, kernel):
    """A value from the kernel, validated: only float64 arrays, floats, ints, strings, dicts, lists,
    tuples, booleans, None and references ever come out."""
    if data is None or isinstance(data, bool):
        return data
    if isinstance(data, list):
        return [_decode(item, kernel) for item in data]
    if isinstance(data, dict):
        if "a" in data:
            shape = tuple(int(n) for n in data["s"][:32])
            raw = base64.b64decode(data["a"], validate=True)
            if any(n < 0 for n in shape) or len(raw) != 8 * math.prod(shape):  # (a reply has at most 16 MB)
                raise KernelSilent("the kernel sent a malformed array")
            return np.frombuffer(raw, dtype=np.float64).reshape(shape).copy()
        if "r" in data:
            methods = [str(name)[:100] for name in data.get("methods", [])[:100]]
            return Remote(kernel, int(data["r"]), str(data.get("type", ""))[:100], methods)
        if "t" in data:
            return str(data["t"])[:200]
        if "f" in data:
            return float(data["f"])
        if "i" in data:
            return int(data["i"])
        if "d" in data and isinstance(data["d"], dict):
            return {str(key): _decode(item, kernel) for key, item in data["d"].items()}
        if "u" in data and isinstance(data["u"], list):
            return tuple(_decode(item, kernel) for item in data["u"])
    raise KernelSilent(f"the kernel sent a value the judge does not accept ({type(data).__name__})")


def student_key(assignment, student, code=(), secret=b""):
    """The part of the hidden inputs' seed that is the student's own: four 32-bit words of an
    HMAC, under the course's ``secret`` (course_secret), of the assignment, the student id and
    the ``code`` they wrote (their answer and added cells). A regrade of the same submission meets
    the same inputs; a changed submission (one that tables what an earlier feedback showed of its
    inputs) new ones; and nobody without the secret, which no kernel can read, can compute them.
    () without a student (the source notebook: `make release` records PyTorch's values for the
    checks' own inputs)."""
    if not student:
        return ()
    written = hashlib.sha256("\0".join(code).encode()).hexdigest()
    digest = hmac.new(secret, f"hidden inputs\0{assignment}\0{student}\0{written}".encode(), hashlib.sha256).digest()
    return tuple(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4))


SECRET_FILE = "hidden_inputs.key"  # in the course folder (nbgrader_config.py names it too)


def course_secret(path):
    """The course's secret for the hidden inputs: the file ``path`` (``hidden_inputs.key`` in the
    course folder, readable by its owner alone, outside every kernel's view), made on first use.
    Keep it for the term: a new one gives every student new hidden inputs."""
    path = Path(path)
    if not path.exists():
        try:
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                f.write(secrets.token_hex(32) + "\n")
        except FileExistsError:  # made meanwhile by another grader
            pass
    return bytes.fromhex(path.read_text().strip())


class Kernel:
    """The judge's handle on a grading kernel. ``send(operations)`` delivers a request (see
    coursekit.kernel.agent) and returns the kernel's JSON reply, or raises KernelSilent; ``sources`` are
    the code cells the student could write (answer cells and added ones), for checks that read
    the code itself; ``key`` is the student's part of the hidden inputs' seed (student_key);
    ``unanswered`` the grade_ids whose checks the kernel did not answer earlier (see ``answered``)."""

    def __init__(self, send, sources=(), key=(), unanswered=()):
        self._send, self.sources, self.key = send, list(sources), tuple(key)
        self.unanswered = frozenset(unanswered)

    def rng(self, stream):
        """The generator of a hidden check's inputs: ``stream`` is the check's own number, and the
        student's key makes them the student's (np.random.default_rng(stream) without one)."""
        return np.random.default_rng([stream, *self.key] if self.key else stream)

    def run(self, *operations):
        """Carry out operations in one round trip; their results, or StudentError for the first that raised."""
        request = [_operation(op) for op in operations]
        reply = self._send(json.dumps(request))
        try:
            values = self._read(reply, len(operations))
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, RecursionError):
            raise KernelSilent("the kernel sent a reply the judge cannot read") from None
        if len(values) != len(operations):
            raise KernelSilent("the kernel sent too few results")
        return values

    def _read(self, reply, expected):
        """The values of a reply, or StudentError; anything malformed raises an error of the
        kinds that ``run`` turns into KernelSilent."""
        results = json.loads(reply)
        if not isinstance(results, list) or not results or len(results) > expected:
            raise ValueError("not a list of results")
        values = []
        for result in results:
            if not isinstance(result, dict):
                raise ValueError("not a result")
            if "error" in result:
                name, message = (str(part) for part in result["error"][:2])
                raise StudentError(name[:100], message[:500], len(values))
            values.append(_decode(result.get("ok"), self))
        return values

    def new(self, name, *args, substitutes=None, **kwargs):
        """``name(*args, **kwargs)`` in the notebook, with ``substitutes`` ({name: value}) bound meanwhile."""
        (obj,) = self.run(["new", name, list(args), kwargs, substitutes or {}])
        return _remote(obj, f"{name}(...)")

    def function(self, name, *args, **kwargs):
        """The value of the notebook's function ``name(*args, **kwargs)``, as it crosses."""
        (value,) = self.run(["new", name, list(args), kwargs, {}])
        return value

    def array(self, values):
        """A copy of ``values`` kept in the kernel (pass it to a call, then read it back with ``.value()``)."""
        (obj,) = self.run(["array", np.asarray(values, dtype=np.float64)])
        return obj

    def standin(self, name, attributes=None, arguments=None, **returns):
        """A layer in the kernel that records its calls; its method ``m`` returns the arrays
        ``returns[m]``, one per call (the last one again once they run out), and it has the
        ``attributes`` ({name: value}). It is an instance of a class ``name``, the notebook's
        class it stands for; ``arguments`` ({method: [parameter names]}) makes its methods take
        the real ones' parameters (keywords too), and no others."""
        (obj,) = self.run(["standin", name, {method: list(values) for method, values in returns.items()},
                           attributes or {}, arguments])
        return obj

    def factory(self, made, name):
        """A class named ``name`` for the notebook (see Kernel.new's substitutes): its calls return
        the objects ``made``, in turn, now instances of it."""
        (obj,) = self.run(["factory", list(made), name])
        return obj

    def scaler(self, factor, offset=0.0, name="Layer", arguments=None):
        """A layer or activation in the kernel, Z -> factor * Z + offset, of the class ``name``,
        that records its calls (its backward multiplies the upstream gradient, its last argument,
        by ``factor``); ``arguments`` as for ``standin``."""
        (obj,) = self.run(["scaler", float(factor), float(offset), name, arguments])
        return obj

    def seed(self, seed):
        self.run(["seed", int(seed)])


def path(*steps):
    """A path for the agent's fetch, put and nudge: ``path("parameters", ["W"])`` is ``.parameters["W"]``."""
    return [["item", step[0]] if isinstance(step, list) else ["attr", step] for step in steps]


def fetch(obj, steps):
    """The value at ``obj.<steps>`` (see ``path``)."""
    return kernel_of(obj).run(["fetch", obj, steps])[0]


def put(obj, steps, value):
    """Set ``obj.<steps>`` (see ``path``) to ``value``."""
    kernel_of(obj).run(["put", obj, steps, value])


def _remote(value, what):
    if not isinstance(value, Remote):
        raise TestFailure(f"{what} did not make an object")
    return value


class Remote:
    """An object in the kernel. Reading an attribute fetches its value (a method of its class, or
    any attribute that turns out to be one, stays a method to call); setting one sends the value."""

    def __init__(self, kernel, ref, type_name, methods=()):
        object.__setattr__(self, "_kernel", kernel)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_methods", frozenset(methods))

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name in object.__getattribute__(self, "_methods"):
            return RemoteMethod(self, name)
        (value,) = object.__getattribute__(self, "_kernel").run(["get", self, name])
        if isinstance(value, Remote) and object.__getattribute__(value, "_type") in ("method", "function", "builtin_function_or_method"):
            return RemoteMethod(self, name)
        return value

    def __setattr__(self, name, value):
        object.__getattribute__(self, "_kernel").run(["set", self, name, value])

    @staticmethod
    def type_of(remote):
        """The type's name of the object in the kernel (what gradcheck.kind says of it)."""
        return object.__getattribute__(remote, "_type")

    def value(self):
        """The current contents of an array kept in the kernel."""
        (value,) = object.__getattribute__(self, "_kernel").run(["call", self, "copy", [], {}])
        return value

    def calls(self):
        """A stand-in's recorded calls: [(method, [argument arrays])]."""
        (log,) = object.__getattribute__(self, "_kernel").run(["log", self])
        return [(method, arguments) for method, arguments, _ in log]


def made_with(factory, parameters, log=None):
    """The numeric arguments of each object a stand-in class (``kernel.factory``) made, bound to
    the class's ``parameters`` by position or name: [{parameter: value or None}]. ``log`` is the
    factory's log if the judge has it already (``["log", factory]``)."""
    made = []
    for _, given, _ in log if log is not None else kernel_of(factory).run(["log", factory])[0]:
        bound = dict(zip(parameters, given["args"]))
        bound.update({key: value for key, value in given["kwargs"].items() if key in parameters})
        made.append({parameter: bound.get(parameter) for parameter in parameters})
    return made


def _logs(standins):
    """{role: [[method, arguments, n]]}: the recorded calls of stand-ins ({role: stand-in}), in one round trip."""
    roles = list(standins)
    return dict(zip(roles, kernel_of(standins[roles[0]]).run(*[["log", standins[role]] for role in roles])))


def calls_of(standins):
    """The calls each of several stand-ins ({role: stand-in}) recorded: {role: [(method, [argument
    arrays])]}, in one round trip."""
    return {role: [(method, arguments) for method, arguments, _ in log] for role, log in _logs(standins).items()}


def calls_in_order(standins):
    """The calls of several stand-ins ({role: stand-in}) in the order they happened:
    [(role, method, [argument arrays])], in one round trip."""
    merged = sorted(((n, role, method, arguments) for role, log in _logs(standins).items()
                     for method, arguments, n in log), key=lambda entry: entry[0])
    return [(role, method, arguments) for _, role, method, arguments in merged]


class RemoteMethod:
    def __init__(self, owner, name):
        self.owner, self.name = owner, name

    def __call__(self, *args, **kwargs):
        (value,) = object.__getattribute__(self.owner, "_kernel").run(["call", self.owner, self.name, list(args), kwargs])
        return value


# --- finite differences through the kernel, one round trip each -----------------------------

def numerical_input_gradients(layer, x, grad_outputs, eps=1e-6):
    """dL/dx by central differences of L = sum(layer.forward(x) * G), for each G in
    ``grad_outputs`` (the same forward calls serve them all: one round trip)."""
    operations = _input_steps(layer, x, eps)
    return _input_differences(kernel_of(layer).run(*operations), x, grad_outputs, eps)


def _input_steps(layer, x, eps):
    """The forward calls at x +- eps in each entry, for _input_differences."""
    x = np.asarray(x, dtype=np.float64)
    operations = []
    for index in np.ndindex(x.shape):
        for step in (eps, -eps):
            moved = x.copy()
            moved[index] += step
            operations.append(["call", layer, "forward", [moved], {}])
    return operations


def _input_differences(outputs, x, grad_outputs, eps):
    outputs = [np.asarray(y) for y in outputs]
    return [_differences([float(np.sum(y * G)) for y in outputs], np.shape(x), eps) for G in grad_outputs]


def numerical_parameter_gradient(layer, path, x, grad_output, shape, eps=1e-6):
    """dL/dp by central differences for the parameter ``layer.<path>`` of ``shape`` (nudged in
    place, as a layer that holds on to its arrays expects), L = sum(layer.forward(x) * grad_output).

    ``path`` is an attribute name, or a list of steps (see coursekit.kernel.agent's "nudge").
    """
    operations = [quiet(["array", x])] + _parameter_steps(layer, _steps(path), Copy(0), shape, eps)
    return _parameter_differences(kernel_of(layer).run(*operations)[1:], grad_output, shape, eps)


def _parameter_steps(layer, steps, x, shape, eps):
    """Nudges of the parameter at ``steps`` by +- eps in each entry, each followed by forward(x)
    (and one that puts it back), for _parameter_differences; ``x`` is best a Copy of an array
    sent once."""
    operations = []
    for index in np.ndindex(shape):
        operations += [["nudge", layer, steps, list(index), eps], ["call", layer, "forward", [x], {}],
                       ["nudge", layer, steps, list(index), -2 * eps], ["call", layer, "forward", [x], {}],
                       ["nudge", layer, steps, list(index), eps]]
    return operations


def _parameter_differences(results, grad_output, shape, eps):
    outputs = [y for pair in zip(results[1::5], results[3::5]) for y in pair]
    return _differences([float(np.sum(np.asarray(y) * grad_output)) for y in outputs], shape, eps)


def _differences(values, shape, eps):
    """Central differences from losses at +eps and -eps, alternating, one pair per index."""
    return (np.array(values[0::2]) - np.array(values[1::2])).reshape(shape) / (2 * eps)


def numerical_loss_gradient(kernel, loss, *args, at=0, eps=1e-6):
    """d loss().forward(*args) / d args[at] by central differences, where ``loss`` names the
    notebook's class (a new object each time), in one round trip."""
    y, operations = args[at], []
    for index in np.ndindex(y.shape):
        for step in (eps, -eps):
            moved = list(args)
            moved[at] = y.copy()
            moved[at][index] += step
            operations += [["new", loss, [], {}, {}], ["call", Earlier(len(operations)), "forward", moved, {}]]
    values = [gradcheck._single_number(v) for v in kernel.run(*operations)[1::2]]
    return _differences(values, y.shape, eps)


# --- checks that several assignments share ----------------------------------------------------

def parameter_arrays(what, names, values, shapes):
    """``values`` (parameters fetched from the kernel, named ``names``) as float arrays; a
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


def check_unchanged(name, before, kept):
    """``kept`` (an array kept in the kernel and passed to a call) still equals ``before``."""
    gradcheck.check_unchanged(name, before, kept.value())


def unseen(shape, x):
    """A gradient of ``shape`` for finite differences at ``x`` that no test sent to the kernel
    before: drawn from a generator seeded by ``x`` itself (so the same on every regrade), not the
    one a notebook's visible test uses, nor a hidden test's."""
    seed = int.from_bytes(hashlib.sha256(np.ascontiguousarray(x, dtype=np.float64).tobytes()).digest()[:8], "little")
    return np.random.default_rng([7, seed]).normal(size=shape)


def check_gradients_numerically(name, make, x, output_shape, params=(), rtol=1e-5, atol=1e-7, upstream="grad_output",
                                factors=None):
    """``layer.backward`` (and the parameter gradients in ``params``, pairs like ("W", "dLdW"))
    against central finite differences of L = sum(layer.forward(x) * grad_output), as
    gradcheck.check_backward does, where ``make()`` makes the layer in the kernel (twice: one
    for the differences, one for backward). ``upstream`` names backward's argument in messages;
    ``factors`` go to the comparison of backward's result (see gradcheck.check_close).

    ``grad_output``, of ``output_shape``, is one the kernel has never seen (see ``unseen``), and
    the differences are taken before it sees it: a forward that bent its output to the gradients
    it was given could otherwise make them agree with any backward.
    """
    grad_output, eps = unseen(output_shape, x), 1e-6
    params = [(_steps(param), _steps(grad)) for param, grad in params]
    probed = make()
    kernel = kernel_of(probed)
    shapes = [np.shape(value) for value in call_each(kernel, *[(f"{name}.{_shown(param)}", ["fetch", probed, param])
                                                              for param, _ in params])] if params else []
    for (param, _), shape in zip(params, shapes):
        if math.prod(shape) > MAX_PARAMETERS:
            raise TestFailure(f"{name}.{_shown(param)} has shape {shape}, larger than the test set it")
    operations = [quiet(["array", x])] + _input_steps(probed, x, eps)
    for (param, _), shape in zip(params, shapes):
        operations += _parameter_steps(probed, param, Copy(0), shape, eps)

    def step(operation):  # how a step that raised is named
        if operation[0] == "nudge":
            return f"{name}.{_shown(operation[2])} (the test moves one entry by a small step: is it a float array?)"
        return f"{name}.forward(x)"

    results = call_each(kernel, *[(step(operation), operation) for operation in operations])[1:]
    start = 2 * np.size(x)
    numeric, no_upstream = _input_differences(results[:start], x, [grad_output, np.ones_like(grad_output)], eps)
    expected = []
    for (_, grad), shape in zip(params, shapes):
        end = start + 5 * math.prod(shape)
        expected.append(_parameter_differences(results[start:end], grad_output, shape, eps))
        start = end

    layer = make()
    _, grad_input, *grads = call_each(
        kernel, (f"{name}.forward(x)", ["call", layer, "forward", [x], {}]),
        (f"{name}.backward({upstream})", ["call", layer, "backward", [grad_output], {}]),
        *[(f"{name}.{_shown(grad)}", ["fetch", layer, grad]) for _, grad in params])
    check_close(f"{name}.backward({upstream}) vs finite differences", grad_input, numeric, rtol=rtol, atol=atol,
                hints=[(no_upstream, f"it ignores {upstream}: missing the upstream gradient?")], factors=factors)
    for (_, grad), found, numeric_grad in zip(params, grads, expected):
        check_close(f"{name}.{_shown(grad)} vs finite differences", found, numeric_grad, rtol=rtol, atol=atol,
                    factors={"N": len(x)})


def _steps(where):
    """An attribute name or a path (see ``path``), as a path."""
    return [["attr", where]] if isinstance(where, str) else where


def _shown(steps):
    """A path as code: ``gradients['W']``."""
    return "".join(f".{name}" if how == "attr" else f"[{name!r}]" for how, name in steps).lstrip(".")


def check_vectorised(what, obj, method, *args, max_steps=300):
    """``obj.<method>(*args)`` works on whole arrays, as gradcheck.check_vectorised checks: the
    kernel counts the Python steps of the call (the one measurement only it can make). Returns
    the call's result, for the check to compare: the call measured must also be right."""
    (measured,) = call(what, kernel_of(obj).run, ["steps", obj, method, list(args), {}])
    result, steps = measured if isinstance(measured, tuple) and len(measured) == 2 else (None, None)
    if type(steps) is not int or not 0 < steps <= max_steps:
        raise TestFailure(f"{what} ran {steps} Python steps: {gradcheck.LOOPS}")
    return result


def check_no_hidden_loops(kernel, name):
    """The code of the class ``name`` uses nothing that can loop out of the step count's sight
    (see ``uncounted_loops``): checked after its calls' steps are counted."""
    hidden = uncounted_loops(kernel.sources, name)
    if hidden:
        raise TestFailure(f"{name} uses {hidden[0]}, which runs code the test's step count cannot see into (a loop "
                          "driven from C, another thread, tracing switched off); work on the whole array with NumPy operations")


def loop_shapes(rng):
    """The shapes at which a check measures "no loops", the student's own (``rng`` is a hidden
    check's): five, of ranks 1 to 3, of 400 to 25,300 entries, one of them of 400 rows or more,
    where a loop over the elements or the rows runs hundreds of Python steps at least (the check
    compares their results too: an answer cannot loop below some size and return anything above it)."""
    return [(int(rng.integers(2_000, 8_000)),), tuple(int(n) for n in rng.integers(60, 160, size=2)),
            tuple(int(n) for n in rng.integers(12, 30, size=3)), tuple(int(n) for n in rng.integers(20, 30, size=2)),
            (int(rng.integers(400, 800)), int(rng.integers(2, 6)))]


def extreme_values(rng, shape, low=710.0, high=1000.0):
    """Values of ``shape`` whose sizes lie between ``low`` and ``high`` (past 709.8, where e**x
    overflows a float64), of both signs in every row of two entries or more, drawn from ``rng``:
    inputs no table made before grading can hold."""
    values = rng.uniform(low, high, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    rows = values.reshape(-1, shape[-1]) if len(shape) > 1 else values.reshape(1, -1)
    if rows.shape[1] > 1:
        rows[:, 0], rows[:, 1] = np.abs(rows[:, 0]), -np.abs(rows[:, 1])
        for row in rows:
            rng.shuffle(row)
    return values


def extreme_scores(rng, n, k):
    """Scores past +-709.8 (where e**z overflows) of the student's own, shape (n, k), each row with
    a runner-up within 2 of its largest (so a softmax of them is not all 0s and 1s)."""
    Z = extreme_values(rng, (n, k))
    rows, top = np.arange(n), Z.argmax(axis=1)
    Z[rows, (top + 1 + rng.integers(k - 1, size=n)) % k] = Z[rows, top] - rng.uniform(0, 2, size=n)
    return Z


def shaped(value, shape):
    """``value`` if it is an array of finite numbers of ``shape``, else ValueError: what a
    student's own layer returned, where a composite check follows it (a layer that returns
    something else is judged by its own part's checks, not here)."""
    if not isinstance(value, np.ndarray) or value.shape != tuple(shape) or not np.all(np.isfinite(value)):
        raise ValueError("not an array of that shape")
    return value


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


def uncounted_loops(sources, name):
    """Where the student's code cells ``sources`` use an UNCOUNTED name in the code of class
    ``name``: the statements that define or change it, and those that define or change what they
    use (a helper function, ``np.maximum = ...``), in turn; not the rest of their cells (a scratch
    line that reuses a variable's name, or calls map, is not the class's code).
    ["frompyfunc (line 3)", ...]."""
    statements = [statement for source in sources for statement in _statements(source)]
    names, attributes, walked, found = {name}, set(), set(), []
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
            found += [f"{used} (line {node.lineno})" for node in ast.walk(statements[i]) for used in _names(node, strings=True)
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


def answered(kernel, *grade_ids):
    """Whether the kernel answered the checks of ``grade_ids`` earlier in this grading (those that
    did not run yet count as answered). A composite check calls the student's own layers only if
    theirs did: a layer that hangs costs its own part's points, not the composite's."""
    return not kernel.unanswered & set(grade_ids)


def kernel_of(obj):
    """The Kernel that holds a Remote object."""
    return object.__getattribute__(obj, "_kernel")

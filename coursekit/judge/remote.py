"""The judge's handle on a grading kernel: ``Notebook``, the student's notebook as it runs there,
the objects it holds for the judge (``Remote``), and the values that cross, one request and one
reply at a time (the other end is coursekit.kernel.agent).

Only plain data crosses: float64 arrays, numbers, short strings, lists, tuples, dicts, None and
references to objects that stay in the kernel. A reply is validated as it is read: what a
submission sends cannot be anything else, whatever its code does.
"""
import base64
import json
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from coursekit.shipped.gradcheck import TestFailure, raised

Operation = list  # [kind, *arguments], as coursekit.kernel.agent carries them out
Path = list  # [["attr", name] or ["item", key], ...]: see ``path``


class StudentError(Exception):
    """The student's code raised an error of type ``name`` with ``message``, in operation ``index``
    of a request to the kernel. ``StudentError.of`` makes it an instance of a class of that name
    (a FloatingPointError, say, also one of Python's), so that ``gradcheck.call`` words it as it
    words an error raised in the grader's own process."""

    student_frames = ()  # the student's code that raised is in the kernel, not in this process

    def __init__(self, name, message, index=0):
        super().__init__(message)
        self.name, self.message, self.index = name, message, index

    @classmethod
    def of(cls, name: str, message: str, index: int = 0) -> "StudentError":
        builtin = {"FloatingPointError": FloatingPointError, "RuntimeWarning": RuntimeWarning}.get(name)
        kind = type(name, (cls, builtin) if builtin else (cls,), {"__module__": "kernel"})
        return kind(name, message, index)


class KernelSilent(BaseException):
    """The kernel sent no usable reply (it is stuck in a loop, or died). A BaseException: no
    ``except Exception`` on its way, ``gradcheck.call``'s included, makes it a failed test; the
    verdict is NoReply, and later checks know the kernel did not answer (``answered``)."""


def call_each(notebook: "Notebook", *steps: tuple[str, Operation]) -> list:
    """Run ``steps``, pairs (what, operation), in one round trip: their results. A student's error
    becomes a TestFailure as ``gradcheck.call`` words it, naming the step that raised.

    Args:
    - notebook: the check's notebook.
    - steps: (what, operation) pairs; ``what`` names the step in a failure's message, and an
      operation is one of coursekit.kernel.agent's (``["new", name, args, kwargs, substitutes]``,
      ``["call", obj, method, args, kwargs]``, ``["get", obj, name]``, ...).

    Returns:
    - the operations' results, in order.

    Example: ``a, b = call_each(notebook, ("Linear(2, 3)", ["new", "Linear", [2, 3], {}, {}]),
    ("Tanh()", ["new", "Tanh", [], {}, {}]))``
    """
    try:
        return notebook.run(*[operation for _, operation in steps])
    except StudentError as error:
        raise raised(steps[min(error.index, len(steps) - 1)][0], error) from None


class Earlier:
    """The result of operation ``index`` of the same request, as the kernel has it (see Notebook.run)."""

    def __init__(self, index):
        self.index = index


class Copy(Earlier):
    """A fresh copy of the array that operation ``index`` of the same request made (an input sent once for many calls)."""


def quiet(operation: Operation) -> Operation:
    """``operation`` for Notebook.run, whose result stays in the kernel (an ``Earlier`` can use it)
    instead of coming back: its result reads None.

    Example: ``notebook.run(quiet(["array", x]), ["call", layer, "forward", [Copy(0)], {}])``"""
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


def _decode(data, notebook):
    """A value from the kernel, validated: only float64 arrays, floats, ints, strings, dicts, lists,
    tuples, booleans, None and references ever come out."""
    if data is None or isinstance(data, bool):
        return data
    if isinstance(data, list):
        return [_decode(item, notebook) for item in data]
    if isinstance(data, dict):
        if "a" in data:
            shape = tuple(int(n) for n in data["s"][:32])
            raw = base64.b64decode(data["a"], validate=True)
            if any(n < 0 for n in shape) or len(raw) != 8 * math.prod(shape):  # (a reply has at most 16 MB)
                raise KernelSilent("the kernel sent a malformed array")
            return np.frombuffer(raw, dtype=np.float64).reshape(shape).copy()
        if "r" in data:
            methods = [str(name)[:100] for name in data.get("methods", [])[:100]]
            return Remote(notebook, int(data["r"]), str(data.get("type", ""))[:100], methods)
        if "t" in data:
            return str(data["t"])[:200]
        if "f" in data:
            return float(data["f"])
        if "i" in data:
            return int(data["i"])
        if "d" in data and isinstance(data["d"], dict):
            return {str(key): _decode(item, notebook) for key, item in data["d"].items()}
        if "u" in data and isinstance(data["u"], list):
            return tuple(_decode(item, notebook) for item in data["u"])
    raise KernelSilent(f"the kernel sent a value the judge does not accept ({type(data).__name__})")


class Notebook:
    """The student's notebook as it runs in the grading kernel: the judge's handle on it, every
    check's first argument. ``send(operations)`` delivers a request (see
    coursekit.kernel.agent) and returns the kernel's JSON reply, or raises KernelSilent; ``sources`` are
    the code cells the student could write (answer cells and added ones), for checks that read
    the code itself; ``key`` is the student's part of the hidden inputs' seed (student_key);
    ``unanswered`` the grade_ids whose checks the kernel did not answer earlier (see ``answered``)."""

    def __init__(self, send: Callable[[str], str], sources: Iterable[str] = (), key: Iterable[int] = (),
                 unanswered: Iterable[str] = ()):
        self._send, self.sources, self.key = send, list(sources), tuple(key)
        self.unanswered = frozenset(unanswered)

    def rng(self, stream: int) -> np.random.Generator:
        """The generator of a hidden check's inputs: ``stream`` is the check's own number, and the
        student's key makes them the student's (np.random.default_rng(stream) without one).

        Example: ``rng = notebook.rng(9001); x = rng.normal(size=(3, 4))`` (9001: the check's own number)"""
        return np.random.default_rng([stream, *self.key] if self.key else stream)

    def run(self, *operations: Operation) -> list:
        """Carry out operations in one round trip; their results, or StudentError for the first that
        raised (``call_each`` words it as a failure).

        Example: ``W, b = notebook.run(["get", layer, "W"], ["get", layer, "b"])``"""
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
                raise StudentError.of(name[:100], message[:500], len(values))
            values.append(_decode(result.get("ok"), self))
        return values

    def new(self, name: str, *args: Any, substitutes: dict | None = None, **kwargs: Any) -> "Remote":
        """A new object of the notebook's class: ``name(*args, **kwargs)`` in the kernel.

        Args:
        - name: the class (or function) as the notebook names it.
        - args, kwargs: its arguments (plain data, or objects in the kernel).
        - substitutes: {name: value} bound in the notebook while it runs (a stand-in class for
          ``Linear``, say: see ``factory``).

        Returns:
        - the object, a Remote; a TestFailure if the call returned something else.

        Example: ``layer = call("Linear(2, 3)", notebook.new, "Linear", 2, 3)``"""
        (obj,) = self.run(["new", name, list(args), kwargs, substitutes or {}])
        return as_object(obj, f"{name}(...)")

    def function(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """The value of the notebook's function ``name(*args, **kwargs)``, as it crosses.

        Example: ``W = call("linear_init(3, 4)", notebook.function, "linear_init", 3, 4)``"""
        (value,) = self.run(["new", name, list(args), kwargs, {}])
        return value

    def array(self, values: Any) -> "Remote":
        """A copy of ``values`` kept in the kernel: pass it to a call, then read it back with
        ``.value()`` to see whether the call changed it in place.

        Example: ``x_given = notebook.array(x); call("Tanh.forward(x)", layer.forward, x_given);
        check_unchanged("Tanh.forward", x, x_given.value())``"""
        (obj,) = self.run(["array", np.asarray(values, dtype=np.float64)])
        return obj

    def standin(self, name: str, attributes: dict | None = None, arguments: dict | None = None,
                **returns: list) -> "Remote":
        """A stand-in layer in the kernel, which records its calls: a composite check built on
        stand-ins costs no points for a bug in the layers it stands for.

        Args:
        - name: the notebook's class it stands for; it is an instance of a class of that name.
        - attributes: {name: value} it has (parameters, say).
        - arguments: {method: [parameter names]}: its methods take the real ones' parameters
          (keywords too), and no others.
        - returns: {method: [arrays]}: what each call of the method returns, one per call (the
          last one again once they run out).

        Returns:
        - the stand-in; ``calls_of``/``calls_in_order`` read what it was called with.

        Example: ``relu = notebook.standin("ReLU", arguments={"forward": ["Z"]}, forward=[Y])``"""
        (obj,) = self.run(["standin", name, {method: list(values) for method, values in returns.items()},
                           attributes or {}, arguments])
        return obj

    def factory(self, made: list, name: str) -> "Remote":
        """A class named ``name`` for the notebook (see Notebook.new's substitutes): its calls return
        the objects ``made``, in turn, now instances of it; ``made_with`` reads its arguments.

        Example: ``net = notebook.new("MLP", substitutes={"Linear": notebook.factory([l1, l2], "Linear")})``"""
        (obj,) = self.run(["factory", list(made), name])
        return obj

    def scaler(self, factor: float, offset: float = 0.0, name: str = "Layer", arguments: dict | None = None) -> "Remote":
        """A layer or activation in the kernel, Z -> factor * Z + offset, of the class ``name``,
        that records its calls (its backward multiplies the upstream gradient, its last argument,
        by ``factor``); ``arguments`` as for ``standin``.

        Example: ``double = notebook.scaler(2.0, name="ReLU")``"""
        (obj,) = self.run(["scaler", float(factor), float(offset), name, arguments])
        return obj

    def seed(self, seed: int) -> None:
        """``np.random.seed(seed)`` in the kernel (the notebook's initialisers draw from it)."""
        self.run(["seed", int(seed)])


def path(*steps: str | list) -> Path:
    """A path to a value inside an object, for ``fetch``, ``put`` and the finite differences: an
    attribute's name, or a one-item list for a key.

    Example: ``path("parameters", ["W"])`` is ``.parameters["W"]``."""
    return [["item", step[0]] if isinstance(step, list) else ["attr", step] for step in steps]


def fetch(obj: "Remote", steps: Path) -> Any:
    """The value at ``obj.<steps>`` (see ``path``).

    Example: ``W = fetch(network, path("parameters", ["W1"]))``"""
    return notebook_of(obj).run(["fetch", obj, steps])[0]


def put(obj: "Remote", steps: Path, value: Any) -> None:
    """Set ``obj.<steps>`` (see ``path``) to ``value``.

    Args:
    - obj: an object in the kernel.
    - steps: where in it (see ``path``).
    - value: plain data, or an object in the kernel.

    Example: ``put(network, path("parameters", ["W1"]), W1)``"""
    notebook_of(obj).run(["put", obj, steps, value])


def as_object(value: Any, what: str) -> "Remote":
    """``value``, a Remote, or a TestFailure saying that ``what`` did not make an object.

    Example: ``model = as_object(call("make_mlp()", notebook.function, "make_mlp"), "make_mlp()")``"""
    if not isinstance(value, Remote):
        raise TestFailure(f"{what} did not make an object")
    return value


class Remote:
    """An object in the kernel. Reading an attribute fetches its value (a method of its class, or
    any attribute that turns out to be one, stays a method to call); setting one sends the value."""

    def __init__(self, notebook, ref, type_name, methods=()):
        object.__setattr__(self, "_notebook", notebook)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_methods", frozenset(methods))

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name in object.__getattribute__(self, "_methods"):
            return RemoteMethod(self, name)
        (value,) = object.__getattribute__(self, "_notebook").run(["get", self, name])
        if isinstance(value, Remote) and object.__getattribute__(value, "_type") in ("method", "function", "builtin_function_or_method"):
            return RemoteMethod(self, name)
        return value

    def __setattr__(self, name, value):
        object.__getattribute__(self, "_notebook").run(["set", self, name, value])

    @staticmethod
    def type_of(remote: "Remote") -> str:
        """The type's name of the object in the kernel (what gradcheck.kind says of it)."""
        return object.__getattribute__(remote, "_type")

    def value(self) -> Any:
        """The current contents of an array kept in the kernel."""
        (value,) = object.__getattribute__(self, "_notebook").run(["call", self, "copy", [], {}])
        return value

    def calls(self) -> list[tuple[str, list]]:
        """A stand-in's recorded calls: [(method, [argument arrays])]."""
        (log,) = object.__getattribute__(self, "_notebook").run(["log", self])
        return [(method, arguments) for method, arguments, _ in log]


def made_with(factory: "Remote", parameters: list[str], log: list | None = None) -> list[dict]:
    """The numeric arguments of each object a stand-in class (``Notebook.factory``) made, bound to
    the class's ``parameters`` by position or name: [{parameter: value or None}]. ``log`` is the
    factory's log if the judge has it already (``["log", factory]``).

    Args:
    - factory: a class made by ``Notebook.factory``.
    - parameters: the names of the real class's parameters, in order.
    - log: its log, if read already.

    Example: ``[{"d": 4, "h": 3}] == made_with(linear_class, ["d", "h"])``"""
    made = []
    for _, given, _ in log if log is not None else notebook_of(factory).run(["log", factory])[0]:
        bound = dict(zip(parameters, given["args"]))
        bound.update({key: value for key, value in given["kwargs"].items() if key in parameters})
        made.append({parameter: bound.get(parameter) for parameter in parameters})
    return made


def _logs(standins):
    """{role: [[method, arguments, n]]}: the recorded calls of stand-ins ({role: stand-in}), in one round trip."""
    roles = list(standins)
    return dict(zip(roles, notebook_of(standins[roles[0]]).run(*[["log", standins[role]] for role in roles])))


def calls_of(standins: dict[str, "Remote"]) -> dict[str, list[tuple[str, list]]]:
    """The calls each of several stand-ins ({role: stand-in}) recorded: {role: [(method, [argument
    arrays])]}, in one round trip.

    Example: ``calls_of({"relu": relu})["relu"] == [("forward", [Z])]``"""
    return {role: [(method, arguments) for method, arguments, _ in log] for role, log in _logs(standins).items()}


def calls_in_order(standins: dict[str, "Remote"]) -> list[tuple[str, str, list]]:
    """The calls of several stand-ins ({role: stand-in}) in the order they happened:
    [(role, method, [argument arrays])], in one round trip.

    Example: ``[role for role, method, _ in calls_in_order(layers)] == ["linear1", "relu", "linear2"]``"""
    merged = sorted(((n, role, method, arguments) for role, log in _logs(standins).items()
                     for method, arguments, n in log), key=lambda entry: entry[0])
    return [(role, method, arguments) for _, role, method, arguments in merged]


class RemoteMethod:
    """A method of an object in the kernel: calling it calls it there."""

    def __init__(self, owner, name):
        self.owner, self.name = owner, name

    def __call__(self, *args, **kwargs):
        (value,) = notebook_of(self.owner).run(["call", self.owner, self.name, list(args), kwargs])
        return value

    def python_steps(self, *args: Any, **kwargs: Any) -> tuple[Any, int | None]:
        """(the call's result, the Python steps it ran), the steps counted in the kernel, the one
        measurement only it can make: how gradcheck.check_vectorised measures a method of a Remote.
        A count that is not a positive int (a kernel that tampered with it) reads None."""
        (measured,) = notebook_of(self.owner).run(["steps", self.owner, self.name, list(args), kwargs])
        result, steps = measured if isinstance(measured, tuple) and len(measured) == 2 else (None, None)
        return result, (steps if type(steps) is int and steps > 0 else None)


def as_path(where: str | Path) -> Path:
    """An attribute name or a path (see ``path``), as a path.

    Example: ``as_path("W") == path("W")``"""
    return [["attr", where]] if isinstance(where, str) else where


def shown(steps: Path) -> str:
    """A path as code: ``gradients['W']``."""
    return "".join(f".{name}" if how == "attr" else f"[{name!r}]" for how, name in steps).lstrip(".")


def notebook_of(obj: "Remote") -> "Notebook":
    """The Notebook that holds a Remote object.

    Example: ``notebook_of(layer).run(["get", layer, "W"])``"""
    return object.__getattribute__(obj, "_notebook")

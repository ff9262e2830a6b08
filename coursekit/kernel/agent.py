"""The grading kernel's side of the judge: runs the student's code on the judge's inputs.

The judge (coursekit.judge, in the grader's process) runs ``serve()`` as a silent cell and sends
requests as JSON over a socket of its own; this module, in the kernel, carries them out on the notebook's namespace and
sends back only plain data: arrays as float64 bytes, floats, ints, booleans, None, short strings,
and references to objects that stay in the kernel. It knows no expected value and decides
nothing: student code may replace it, and then only answers for itself.

A request is a list of operations, each a list; the reply lists one result per operation and
stops at the first that raises. An argument ``{"p": k}`` is the result of the request's
operation k, as the kernel has it (so one request can feed a loss's gradient to a network), and
``{"c": k}`` a fresh copy of it (an input sent once serves many calls, each its own copy):

- ``["new", name, args, kwargs, substitutes]``: call the notebook's ``name`` (a class), with
  ``substitutes`` ({name: value}) bound in the notebook's namespace during the call;
- ``["call", ref, method, args, kwargs]``, ``["get", ref, attribute]``, ``["set", ref, attribute, value]``;
- ``["nudge", ref, path, index, step]``: ``ref.<path>[index] += step`` in place, where ``path`` is a
  list of ``["attr", name]`` and ``["item", key]`` steps (finite differences perturb parameters so);
- ``["fetch", ref, path]``: the value at ``ref.<path>``; ``["put", ref, path, value]``: set it
  (``layer.parameters["W"] = value`` is the path [["attr", "parameters"], ["item", "W"]]);
- ``["array", value]``: keep an array in the kernel (so the judge can see whether a call changed it);
  ``["take", ref, rows]``: a copy of the rows (an array of row numbers) of an array kept there;
- ``["standin", name, returns, attributes, arguments]``: a layer that records its calls, returns
  the judge's arrays and has the judge's attributes (a Linear stand-in has weights, as a Linear
  layer does); ``arguments`` (optional) is how many arguments each method takes;
- ``["factory", [standins]]``: a stand-in class whose calls return those stand-ins in turn;
- ``["scaler", factor, offset]``: a layer or activation Z -> factor * Z + offset (offset optional);
- ``["einsum", name, args]``: the notebook's function ``name(*args)``, how many times it called
  ``np.einsum`` and whether its result is the output of one of those calls (another
  measurement only the kernel can make);
- PyTorch: ``["module", ref, inputs]`` is the module's output for float32 tensors of the
  arrays ``inputs``; ``["torch_state", ref]`` its parameters, their gradients and its mode;
  ``["torch_load", ref, arrays]`` sets its parameters;
  ``["torch", kind, args]`` makes one of the objects a test hands the student's functions (see
  _torch_object); ``["torch_available"]`` whether PyTorch can be imported;
- ``["global", name]``: the value of a name in the notebook (None if it has none);
- ``["quiet", kind, ...]``: the operation ``[kind, ...]``, whose result stays in the kernel (for
  ``{"p": k}``) and is not sent back (a training loop's intermediate arrays);
- ``["log", ref]``: the calls a stand-in recorded, each [method, arguments, n], where n
  numbers the calls of all stand-ins in the order they happened; ``["seed", n]``: ``np.random.seed(n)``;
- ``["steps", ref, method, args, kwargs]``: how many Python steps the call ran (a loop over an
  array's elements runs thousands, NumPy on the whole array a few): the one measurement that
  only the kernel can make.

Values are encoded as JSON: ``{"a": base64, "s": shape}`` is a float64 array, ``{"f": x}`` a
float, ``{"i": n}`` an int, ``{"t": text}`` a string, ``{"d": {key: value}}`` a dict with string
keys, ``{"u": [values]}`` a tuple (from the judge), ``{"r": n}`` a reference; lists, booleans
and null as themselves.
"""
import base64
import itertools
import json
import sys
import warnings

import numpy as np

from coursekit.shipped.gradcheck import EinsumRecorder, python_steps, substitute

_objects, _numbers = [], {}
_order = itertools.count()  # numbers every stand-in's calls: the judge sees their order
# The grader drops a message over 16 MB (coursekit.kernel.sandbox.MAX_MESSAGE_BYTES) with its connection.
MAX_REPLY_BYTES = 8 * 2 ** 20


def _namespace():
    return sys.modules["__main__"].__dict__


class Kept:
    """A value kept in the kernel and sent as a reference, even if it is an array."""

    def __init__(self, value):
        self.value = value


def _reference(value):
    """``value`` kept here; the judge gets its number (the same number each time it meets the
    same object), its type's name and its public methods (so that calling one takes one round
    trip, not two)."""
    if id(value) not in _numbers:  # (the object stays in _objects: its id is not reused)
        _objects.append(value)
        _numbers[id(value)] = len(_objects) - 1
    if isinstance(value, StandIn):
        methods = list(value.returns)
    else:
        methods = [name for name in dir(type(value)) if not name.startswith("_")
                   and callable(getattr(type(value), name, None))][:100]
    return {"r": _numbers[id(value)], "type": type(value).__name__, "methods": methods}


def encode(value):
    """A kernel value as JSON data: NumPy arrays become float64 bytes, numbers stay numbers of
    their kind (a float is not an array); other objects stay here, sent as references."""
    if isinstance(value, Kept):
        return _reference(value.value)
    if value is None or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    if isinstance(value, (int, np.integer)):
        return {"i": int(value)}
    if isinstance(value, (float, np.floating)):
        return {"f": float(value)}
    if isinstance(value, str):
        return {"t": value[:200]}
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):  # OrderedDict too
        return {"d": {key: encode(item) for key, item in value.items()}}
    if type(value) in (list, tuple):
        return [encode(item) for item in value]
    if isinstance(value, np.ndarray):
        try:
            array = np.array(value, dtype=np.float64, order="C")  # (a 0-d array stays 0-d)
        except (TypeError, ValueError):
            pass
        else:
            return {"a": base64.b64encode(array.tobytes()).decode(), "s": list(array.shape)}
    return _reference(value)


def decode(data, earlier=()):
    """JSON data from the judge as a kernel value (arrays are fresh float64 arrays); ``{"p": k}``
    is the result of the request's operation k (``earlier``), as the kernel has it."""
    if type(data) is list:
        return [decode(v, earlier) for v in data]
    if type(data) is dict:  # (the common kinds first: a request holds thousands of values)
        if "t" in data:
            return data["t"]
        if "f" in data:
            return float(data["f"])
        if "r" in data:
            return _objects[data["r"]]
        if "d" in data:
            return {key: decode(value, earlier) for key, value in data["d"].items()}
        if "p" in data or "c" in data:
            value = earlier[data["p"] if "p" in data else data["c"]]
            value = value.value if isinstance(value, Kept) else value
            return value if "p" in data else np.array(value, dtype=np.float64)
        if "a" in data:
            return np.frombuffer(base64.b64decode(data["a"]), dtype=np.float64).reshape(data["s"]).copy()
        if "i" in data:
            return int(data["i"])
        if "u" in data:
            return tuple(decode(v, earlier) for v in data["u"])
    return data


class Factory:
    """Stands in for a class: each call returns the next of ``made`` and records its arguments."""

    def __init__(self, made):
        self.made, self.calls = list(made), []

    def __call__(self, *args, **kwargs):
        numbers = (int, float, np.integer, np.floating)
        self.calls.append(["new", {"args": [a for a in args if isinstance(a, numbers)],
                                   "kwargs": {k: a for k, a in kwargs.items() if isinstance(a, numbers)}}, next(_order)])
        if not self.made:
            raise RuntimeError("the judge expected fewer objects of this class to be made")
        return self.made.pop(0)


class StandIn:
    """A layer the judge controls: records each call's arguments and returns the judge's arrays.

    ``returns`` maps a method name to the list of values its successive calls return;
    ``attributes`` are set on it; ``arguments`` ({method: n}) says how many arguments a method
    takes, where the layer it stands for is strict (an activation's backward takes none).
    """

    def __init__(self, name, returns, attributes, arguments=None):
        self.__dict__.update(attributes)
        self.name, self.returns, self.calls = name, {key: list(values) for key, values in returns.items()}, []
        self.arguments = arguments or {}

    def __call__(self, *args, **kwargs):  # a layer or a loss may be called for its forward
        return self.__getattr__("forward")(*args, **kwargs)

    def __getattr__(self, method):
        if method.startswith("__") or method not in self.__dict__.get("returns", {}):
            raise AttributeError(method)

        def record(*args, **kwargs):
            expected = self.arguments.get(method)
            if expected is not None and len(args) + len(kwargs) != expected:
                raise TypeError(f"{method}() takes {expected} argument{'s' * (expected != 1)} "
                                f"but {len(args) + len(kwargs)} were given")
            self.calls.append([method, [np.array(a, dtype=np.float64) if _numeric(a) else None for a in args],
                               next(_order)])
            queue = self.returns[method]
            return queue.pop(0) if len(queue) > 1 else queue[0]
        return record


class Scaler:
    """A layer or activation the judge controls: forward(Z) = factor * Z + offset, and backward
    returns factor times its last argument (a layer's backward(dY), an activation's backward(Z,
    dY)); records its calls as a stand-in does. (With an offset, forward(dY) is not backward's
    result, and two such layers do not commute: the output shows their order.)"""

    def __init__(self, factor, offset=0.0):
        self.factor, self.offset, self.calls = factor, offset, []

    def forward(self, Z):
        self.calls.append(["forward", [np.array(Z, dtype=np.float64)], next(_order)])
        return self.factor * Z + self.offset

    def backward(self, *args):
        self.calls.append(["backward", [np.array(a, dtype=np.float64) for a in args], next(_order)])
        return self.factor * args[-1]

    def __call__(self, Z):
        return self.forward(Z)


def _same(a, b):
    """Whether two results hold the same numbers."""
    try:
        return bool(np.array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)))
    except (TypeError, ValueError):
        return False


def _numeric(value):
    try:
        np.asarray(value, dtype=np.float64)
        return True
    except (TypeError, ValueError):
        return False


# --- PyTorch: the judge passes arrays and gets arrays; tensors and modules stay here ----------

def _tensor(array, dtype="float32"):
    import torch
    return torch.tensor(np.asarray(array), dtype=getattr(torch, dtype))


def _module_output(module, *inputs):
    """``module(*inputs)`` on float32 tensors, without gradients, as a float64 array."""
    import torch
    with torch.no_grad():
        return module(*[_tensor(x) for x in inputs]).detach().double().numpy()


def _torch_state(module):
    """A module's parameters (in the order of ``parameters()``), their gradients and its mode."""
    parameters = list(module.parameters())
    return {"parameters": [p.detach().double().numpy() for p in parameters],
            "grads": [None if p.grad is None else p.grad.detach().double().numpy() for p in parameters],
            "training": bool(module.training)}


def _torch_object(kind, *args):
    """The PyTorch objects a test gives the student's functions (the notebook's tests make the same)."""
    import torch
    from torch import nn

    if kind == "linear":  # nn.Linear with the given weight, of shape (out, in), and zero bias
        weight, = args
        model = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            model.weight.copy_(_tensor(weight))
            model.bias.zero_()
        return model
    if kind == "dropout":  # a model followed by dropout, in training mode
        model = nn.Sequential(args[0], nn.Dropout(args[1]))
        model.train()
        return model
    if kind == "loader":  # X, y, batch size; optionally a shuffling seed and an image shape for X's rows
        X, y, batch_size, seed, image_shape = (*args, None, None)[:5]
        X = _tensor(X) if image_shape is None else _tensor(X).reshape(len(X), 1, *image_shape)
        dataset = torch.utils.data.TensorDataset(X, _tensor(y, "long"))
        if seed is None:
            return torch.utils.data.DataLoader(dataset, batch_size=batch_size)
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                           generator=torch.Generator().manual_seed(seed))
    if kind == "cross_entropy":
        return nn.CrossEntropyLoss()
    if kind == "sgd":  # model, learning rate, optionally momentum
        model, lr, momentum = (*args, 0.0)[:3]
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    if kind == "probe":
        return _probe(args[0])
    if kind == "manual_seed":
        torch.manual_seed(args[0])
        return None
    if kind == "eval":
        args[0].eval()
        return None
    raise ValueError(f"unknown PyTorch object {kind!r}")


def _torch_available():
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def _torch_load(module, arrays):
    """Copy ``arrays`` into the module's parameters, in the order of ``parameters()``."""
    import torch
    parameters = list(module.parameters())
    if len(arrays) != len(parameters):
        raise ValueError(f"the model has {len(parameters)} parameters, the test has {len(arrays)}")
    with torch.no_grad():
        for parameter, array in zip(parameters, arrays):
            parameter.copy_(_tensor(array).reshape(parameter.shape))


def _probe(module):
    """The module, wrapped: each forward call records [gradients enabled, training mode]."""
    from torch import nn

    class Probe(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.seen = inner, []

        def forward(self, *inputs):
            import torch
            self.seen.append([bool(torch.is_grad_enabled()), bool(self.training)])
            return self.inner(*inputs)

    return Probe(module)


TORCH_OPERATIONS = {"module": lambda module, inputs: _module_output(module, *inputs), "torch_state": _torch_state,
                    "torch_load": _torch_load,
                    "torch": lambda kind, args: _torch_object(kind, *args), "torch_available": _torch_available}


def _follow(target, path):
    """``target`` followed along ``path``: ["attr", name] and ["item", key] steps."""
    for how, name in path:
        target = getattr(target, name) if how == "attr" else target[name]
    return target


def _run(operation, earlier):
    kind, *rest = operation
    rest = [decode(item, earlier) for item in rest]
    if kind == "new":
        name, args, kwargs, substitutes = rest
        namespace = _namespace()
        with substitute(namespace, **substitutes):
            return namespace[name](*args, **kwargs)
    if kind == "call":
        target, method, args, kwargs = rest
        return getattr(target, method)(*args, **kwargs)
    if kind == "get":
        return getattr(rest[0], rest[1])
    if kind == "set":
        setattr(rest[0], rest[1], rest[2])
        return None
    if kind == "nudge":
        target, path, index, step = rest
        _follow(target, path)[tuple(index)] += step
        return None
    if kind == "fetch":
        return _follow(rest[0], rest[1])
    if kind == "put":
        target, path, value = rest
        (how, name), parent = path[-1], _follow(target, path[:-1])
        if how == "attr":
            setattr(parent, name, value)
        else:
            parent[name] = value
        return None
    if kind == "array":
        return Kept(np.array(rest[0], dtype=np.float64))
    if kind == "take":
        return np.array(np.asarray(rest[0])[np.asarray(rest[1]).astype(int)], dtype=np.float64)
    if kind == "standin":
        return StandIn(*rest)
    if kind == "factory":
        return Factory(rest[0])
    if kind == "scaler":
        return Scaler(*rest)
    if kind in TORCH_OPERATIONS:
        return TORCH_OPERATIONS[kind](*rest)
    if kind == "einsum":
        name, args = rest
        namespace = _namespace()
        recorder = EinsumRecorder(namespace.get("np", np))
        with substitute(namespace, np=recorder):
            result = namespace[name](*args)
        return [result, recorder.calls, any(_same(output, result) for output in recorder.outputs)]
    if kind == "log":
        return rest[0].calls
    if kind == "global":
        return _namespace().get(rest[0])
    if kind == "seed":
        np.random.seed(rest[0])
        return None
    if kind == "steps":
        target, method, args, kwargs = rest
        return python_steps(getattr(target, method), *args, **kwargs)[1]
    raise ValueError(f"unknown operation {kind!r}")


def handle(request):
    """Carry out a JSON request (a list of operations); returns the JSON reply.

    NumPy's overflow and invalid-value warnings are errors here: a warning would go unseen, an
    error is reported with the call that caused it.
    """
    results, values, size = [], [], 0
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
        warnings.simplefilter("error")
        for operation in json.loads(request):
            try:
                quiet = operation[0] == "quiet"
                values.append(_run(operation[1:] if quiet else operation, values))
                result = QUIET if quiet else json.dumps({"ok": encode(values[-1])})
                size += len(result)
                if size > MAX_REPLY_BYTES:
                    raise ValueError(f"the results add up to more than {MAX_REPLY_BYTES // 2 ** 20} MB: "
                                     "does the code return arrays of the wrong shape?")
                results.append(result)
            except BaseException as error:  # noqa: BLE001 - the student's error is the judge's to report
                results.append(json.dumps({"error": [type(error).__name__, str(error)[:500]]}))
                break
    return "[" + ", ".join(results) + "]"


QUIET = json.dumps({"ok": None})


_line = {}  # the address of the grader's socket -> this kernel's end of it


def serve(address, session):
    """Answer the judge until it sends an empty request. The judge runs this as one cell and
    talks over a ZeroMQ socket of its own in the kernel's folder (``address``): one message each
    way per request, whatever the student's code prints. Every message starts with the cell's
    ``session`` and a space; one of an earlier cell (an interrupted request's) is dropped."""
    import zmq

    if address not in _line or _line[address].closed:
        socket = zmq.Context.instance().socket(zmq.PAIR)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDTIMEO, 2000)  # a grader that went away does not hang the kernel
        socket.connect(address)
        _line[address] = socket
    socket, prefix = _line[address], session + " "
    socket.send_string(prefix + "ready")
    while True:
        message = socket.recv_string()
        if not message.startswith(prefix):
            continue
        if message == prefix:
            return
        socket.send_string(prefix + handle(message[len(prefix):]))

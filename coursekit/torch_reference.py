"""Reference values from PyTorch in float64, for the hidden tests.

Hidden tests ask for ``vjp(name, inputs, grad_output)``: the output of a named PyTorch function
and the gradients of its inputs (or for ``value(name, inputs)``: the output alone). Importing
PyTorch costs seconds in every grading kernel, and a student's code could tamper with it
there, so the values come from a cache recorded when the release is built (``make release``),
keyed by the exact inputs; a value missing from the cache is computed by PyTorch in a separate,
clean Python process. Students never need PyTorch.

Run as a module, this file is that process: it reads requests from stdin and writes the
results to stdout, as .npz bytes, until stdin closes (torch is imported once per session).
"""
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

CACHE = Path(__file__).resolve().parent / "torch_cache"
# Set by `make release`: store every computed value in the cache.
RECORD = "COURSEKIT_RECORD_TORCH"
# Set by the tests that prove the cache complete: a missing value is an error.
CACHE_ONLY = "COURSEKIT_TORCH_CACHE_ONLY"


class MissingValue(LookupError):
    """A value the cache should hold and does not (with CACHE_ONLY set)."""


def _functions(torch):
    """The reference functions, by name."""
    functional = torch.nn.functional

    def relu_mlp(x, *params):
        """x -> Linear -> ReLU -> ... -> Linear, with weights W of shape (inputs, outputs)."""
        pairs = list(zip(params[::2], params[1::2]))
        for i, (W, b) in enumerate(pairs):
            x = x @ W + b
            if i < len(pairs) - 1:
                x = torch.relu(x)
        return x

    def sgd(param, grads, lr, momentum):
        """The parameter after each of torch.optim.SGD's steps, one step per gradient in ``grads``."""
        param = torch.nn.Parameter(param.clone())
        optimizer = torch.optim.SGD([param], lr=float(lr), momentum=float(momentum))
        trajectory = []
        for grad in grads:
            optimizer.zero_grad()
            param.grad = grad.clone()
            optimizer.step()
            trajectory.append(param.detach().clone())
        return torch.stack(trajectory)

    def activate(Z, activation):
        return {"identity": Z, "relu": torch.relu(Z), "softmax": torch.softmax(Z, dim=1)}[activation]

    def dense(X, W, b, activation="identity"):
        """A fully connected layer with W of shape (inputs, outputs) and b of shape (1, outputs)."""
        return activate(X @ W + b, activation)

    def dense_network(X, *params, activations):
        """Dense layers (W, b pairs in ``params``), one activation each."""
        for W, b, activation in zip(params[::2], params[1::2], activations):
            X = dense(X, W, b, activation)
        return X

    def probability_cross_entropy(Y, Y_hat):
        """Cross-entropy of predicted probabilities Y_hat for targets Y, averaged over the rows."""
        return -(Y * torch.log(Y_hat)).sum() / Y.shape[0]

    def nhwc(function):
        """``function`` on NCHW tensors, applied to NHWC arrays (as the notebooks store images)."""
        return lambda X, *args, **options: function(X.permute(0, 3, 1, 2), *args, **options).permute(0, 2, 3, 1)

    def conv2d(X, W, b, stride, pad):
        """W of shape (kernel_rows, kernel_cols, in_channels, out_channels), b of shape (1, out_channels)."""
        return functional.conv2d(X, W.permute(3, 2, 0, 1), b.reshape(-1), stride=stride, padding=tuple(pad))

    return {
        "linear": functional.linear,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "relu": torch.relu,
        "mse_loss": functional.mse_loss,
        "cross_entropy": functional.cross_entropy,  # logits and class-probability targets
        "relu_mlp": relu_mlp,
        "sgd": sgd,
        "softmax": lambda Z: torch.softmax(Z, dim=1),
        "dense": dense,
        "dense_network": dense_network,
        "dense_network_loss": lambda X, Y, *params, activations: probability_cross_entropy(
            Y, dense_network(X, *params, activations=activations)),
        "probability_cross_entropy": probability_cross_entropy,
        "conv2d": lambda X, W, b, stride, pad: nhwc(conv2d)(X, W, b, stride=stride, pad=pad),
        "max_pool2d": lambda X, kernel, stride, pad: nhwc(functional.max_pool2d)(
            X, tuple(kernel), stride=stride, padding=tuple(pad)),
        "avg_pool2d": lambda X, kernel, stride, pad: nhwc(functional.avg_pool2d)(
            X, tuple(kernel), stride=stride, padding=tuple(pad)),
    }


def _key(name, arrays):
    """The cache key of a call. Inputs count to float32 precision: a test may compute an input with
    np.exp, whose last bits differ between CPUs, and the tests' tolerances are far above that."""
    digest = hashlib.sha256(name.encode())
    for array in arrays:
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return digest.hexdigest()[:32]


def _pack(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _unpack(data):
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _compute(name, arrays, grad_output, differentiate=True, options=None):
    """Evaluate in this process with PyTorch; returns {"output": ..., "grad0": ..., ...}."""
    import torch

    tensors = [torch.tensor(a, requires_grad=differentiate) for a in arrays]
    output = _functions(torch)[name](*tensors, **(options or {}))
    result = {"output": output.detach().numpy().copy()}
    if differentiate:
        output.backward(None if grad_output is None else torch.tensor(grad_output))
        result.update({f"grad{i}": t.grad.numpy().copy() for i, t in enumerate(tensors)})
    return result


def _lookup(name, arrays, grad_output, differentiate, options=None):
    """The cached result, or one computed in a clean subprocess (and cached when recording).

    ``options`` are a function's non-array arguments (e.g. a convolution's stride), part of the key.
    """
    options = json.dumps(options or {}, sort_keys=True)
    keyed = name if options == "{}" else f"{name}:{options}"
    if differentiate:
        key = _key(keyed, arrays + ([] if grad_output is None else [grad_output]))
    else:
        key = _key(f"{keyed}:value", arrays)
    path = CACHE / f"{name}-{key}.npz"
    if path.exists():
        return _unpack(path.read_bytes())
    if os.environ.get(CACHE_ONLY):
        raise MissingValue(f"no cached PyTorch value for {name}: run `make release` to record it")
    request = _pack(name=np.array(name), has_grad=np.array(grad_output is not None),
                    differentiate=np.array(differentiate), options=np.array(options),
                    grad_output=grad_output if grad_output is not None else np.zeros(0),
                    **{f"input{i}": a for i, a in enumerate(arrays)})
    reply = _ask_server(request)
    if os.environ.get(RECORD):
        CACHE.mkdir(exist_ok=True)
        path.write_bytes(reply)
    return _unpack(reply)


_server = None


def _ask_server(request):
    """Send a request to the PyTorch process (started on first use, so torch is imported once)."""
    global _server
    if _server is None or _server.poll() is not None:
        _server = subprocess.Popen([sys.executable, "-m", "coursekit.torch_reference"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    _server.stdin.write(len(request).to_bytes(8, "little") + request)
    _server.stdin.flush()
    header = _server.stdout.read(8)
    if len(header) < 8:
        raise RuntimeError(f"the PyTorch reference process stopped (exit code {_server.wait()})")
    return _server.stdout.read(int.from_bytes(header, "little"))


def vjp(name, inputs, grad_output=None, **options):
    """PyTorch's value of ``name(*inputs)`` and the gradients that ``grad_output`` backpropagates.

    Args:
    - name (str): a reference function (see ``_functions``), e.g. "linear"
      (torch.nn.functional.linear), "tanh", "mse_loss", "cross_entropy", "relu_mlp".
    - inputs (sequence of np.array): the arguments, as float64.
    - grad_output (np.array or None): dL/d(output), shape of the output; None when the output is a
      scalar (a loss), whose own gradient is then taken.
    - options: the function's other arguments, e.g. ``stride=2, pad=(1, 0)`` for "conv2d".
    Returns:
    - output (np.array, or float for a scalar output).
    - grads (list of np.array): dL/d(input) for every input, each of that input's shape.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in inputs]
    if grad_output is not None:
        grad_output = np.asarray(grad_output, dtype=np.float64)
    result = _lookup(name, arrays, grad_output, differentiate=True, options=options)
    return _scalar_or_array(result["output"]), [result[f"grad{i}"] for i in range(len(arrays))]


def value(name, inputs):
    """PyTorch's value of ``name(*inputs)``, without gradients (e.g. "sgd": an optimizer's steps).

    Args:
    - name (str): a reference function, e.g. "sgd" (parameter, gradients, lr, momentum).
    - inputs (sequence of np.array or float): the arguments, as float64.
    Returns:
    - output (np.array, or float for a scalar output).
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in inputs]
    return _scalar_or_array(_lookup(name, arrays, None, differentiate=False)["output"])


def _scalar_or_array(output):
    return float(output) if output.ndim == 0 else output


def _serve():
    """Answer requests until stdin closes; each message is its length (8 bytes) then .npz bytes."""
    while header := sys.stdin.buffer.read(8):
        request = _unpack(sys.stdin.buffer.read(int.from_bytes(header, "little")))
        count = sum(1 for name in request if name.startswith("input"))
        arrays = [request[f"input{i}"] for i in range(count)]
        grad_output = request["grad_output"] if request["has_grad"] else None
        reply = _pack(**_compute(str(request["name"]), arrays, grad_output, bool(request["differentiate"]),
                                 json.loads(str(request["options"]))))
        sys.stdout.buffer.write(len(reply).to_bytes(8, "little") + reply)
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a kernel interrupt is not meant for this process
    _serve()

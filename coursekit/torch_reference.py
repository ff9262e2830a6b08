"""Reference values from PyTorch in float64, for the hidden tests.

Hidden tests ask for ``vjp(name, inputs, grad_output)``: the output of a named PyTorch function
and the gradients of its inputs. Importing PyTorch costs seconds in every grading kernel, and a
student's code could tamper with it there, so the values come from a cache recorded when the
release is built (``make release``), keyed by the exact inputs; a value missing from the cache
is computed by PyTorch in a separate, clean Python process. Students never need PyTorch.

Run as a module, this file is that process: it reads the request from stdin and writes the
result to stdout, both as .npz bytes.
"""
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

CACHE = Path(__file__).resolve().parent / "torch_cache"
# Set by `make release`: store every computed value in the cache.
RECORD = "COURSEKIT_RECORD_TORCH"
# Set by the tests that prove the cache complete: a missing value is an error.
CACHE_ONLY = "COURSEKIT_TORCH_CACHE_ONLY"


def _functions(torch):
    """The reference functions, by name."""
    functional = torch.nn.functional
    return {
        "linear": functional.linear,
        "tanh": torch.tanh,
        "mse_loss": functional.mse_loss,
        "linear_tanh_linear": lambda x, W1, b1, W2, b2: functional.linear(
            torch.tanh(functional.linear(x, W1, b1)), W2, b2),
    }


def _key(name, arrays):
    digest = hashlib.sha256(name.encode())
    for array in arrays:
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:32]


def _pack(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _unpack(data):
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _compute(name, arrays, grad_output):
    """Evaluate in this process with PyTorch; returns {"output": ..., "grad0": ..., ...}."""
    import torch

    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    output = _functions(torch)[name](*tensors)
    if grad_output is None:
        output.backward()
    else:
        output.backward(torch.tensor(grad_output))
    result = {"output": output.detach().numpy().copy()}
    result.update({f"grad{i}": t.grad.numpy().copy() for i, t in enumerate(tensors)})
    return result


def vjp(name, inputs, grad_output=None):
    """PyTorch's value of ``name(*inputs)`` and the gradients that ``grad_output`` backpropagates.

    Args:
    - name (str): a reference function, e.g. "linear" (torch.nn.functional.linear), "tanh",
      "mse_loss", "linear_tanh_linear".
    - inputs (sequence of np.array): the arguments, as float64.
    - grad_output (np.array or None): dL/d(output), shape of the output; None when the output is a
      scalar (a loss), whose own gradient is then taken.
    Returns:
    - output (np.array, or float for a scalar output).
    - grads (list of np.array): dL/d(input) for every input, each of that input's shape.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in inputs]
    if grad_output is not None:
        grad_output = np.asarray(grad_output, dtype=np.float64)
    key = _key(name, arrays + ([] if grad_output is None else [grad_output]))
    path = CACHE / f"{name}-{key}.npz"
    if path.exists():
        result = _unpack(path.read_bytes())
    elif os.environ.get(CACHE_ONLY):
        raise LookupError(f"no cached PyTorch value for {name}: run `make release` to record it")
    else:
        request = _pack(name=np.array(name), has_grad=np.array(grad_output is not None),
                        grad_output=grad_output if grad_output is not None else np.zeros(0),
                        **{f"input{i}": a for i, a in enumerate(arrays)})
        reply = subprocess.run([sys.executable, "-m", "coursekit.torch_reference"], input=request,
                               capture_output=True, check=True)
        result = _unpack(reply.stdout)
        if os.environ.get(RECORD):
            CACHE.mkdir(exist_ok=True)
            path.write_bytes(reply.stdout)
    output = result["output"]
    return (float(output) if output.ndim == 0 else output), [result[f"grad{i}"] for i in range(len(arrays))]


def _serve():
    request = _unpack(sys.stdin.buffer.read())
    count = sum(1 for name in request if name.startswith("input"))
    arrays = [request[f"input{i}"] for i in range(count)]
    grad_output = request["grad_output"] if request["has_grad"] else None
    sys.stdout.buffer.write(_pack(**_compute(str(request["name"]), arrays, grad_output)))


if __name__ == "__main__":
    _serve()

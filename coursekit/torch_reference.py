"""Reference values from PyTorch in float64, for the hidden tests.

Imported only by hidden test cells: students never need PyTorch.
"""
import warnings

import numpy as np

with warnings.catch_warnings():
    # torch may warn at import time (e.g. about NumPy); any stderr output scores 0 in nbgrader
    warnings.simplefilter("ignore")
    import torch


def vjp(fn, inputs, grad_output=None):
    """Evaluate ``fn`` with PyTorch and backpropagate ``grad_output`` through it.

    Args:
    - fn (callable): a PyTorch function of the tensors in ``inputs``, e.g. torch.nn.functional.linear.
    - inputs (sequence of np.array): the arguments, converted to float64 tensors.
    - grad_output (np.array or None): dL/d(output), shape of the output; None for a scalar
      output (a loss), whose gradient is then taken directly.
    Returns:
    - output (np.array or float): fn(*inputs).
    - grads (list of np.array): dL/d(input) for every input, each of that input's shape.
    """
    tensors = [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in inputs]
    output = fn(*tensors)
    if grad_output is None:
        output.backward()
        value = float(output.detach())
    else:
        output.backward(torch.tensor(np.asarray(grad_output, dtype=np.float64)))
        value = output.detach().numpy().copy()
    return value, [t.grad.numpy().copy() for t in tensors]

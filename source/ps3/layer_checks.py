"""ps3's own visible checks, next to its notebook (the checks every problem set uses are in
gradcheck.py): layers that keep their parameters in dictionaries, functions written with
np.einsum, and the part that needs PyTorch."""
from gradcheck import (TestFailure, call, check_backward, check_close, einsum_problem, np, numerical_gradient,
                       recording_einsum)


def check_layer_backward(name, layer, x, grad_output, rtol=1e-5, atol=1e-7):
    """``check_backward`` for layers that keep their parameters and gradients in dictionaries
    (``layer.parameters["W"]`` and ``layer.gradients["W"]``, the same keys).

    Args:
    - name (str): the layer as named in messages, e.g. "Conv2D".
    - layer: has forward(x), backward(grad_output) -> dL/dx, ``parameters`` and ``gradients``
      (the layer must have been initialised, e.g. by an earlier forward call).
    - x (np.array): input; grad_output (np.array): dL/dy, shape of layer.forward(x).
    """
    check_backward(name, layer, x, grad_output, rtol=rtol, atol=atol)
    gradients = getattr(layer, "gradients", None)
    if not isinstance(gradients, dict) or set(gradients) != set(layer.parameters):
        found = sorted(gradients) if isinstance(gradients, dict) else type(gradients).__name__
        raise TestFailure(f"{name}.gradients should be a dict with the keys of {name}.parameters "
                          f"{sorted(layer.parameters)}, got {found}")
    saved = {key: gradients[key] for key in gradients}
    for key, value in layer.parameters.items():
        numeric = numerical_gradient(
            lambda: float(np.sum(call(f"{name}.forward(x)", layer.forward, np.array(x, dtype=np.float64))
                                 * grad_output)), value)
        check_close(f"{name}.gradients[{key!r}] vs finite differences", saved[key], numeric, rtol=rtol, atol=atol,
                    factors={"N": len(x)})


def check_einsum(what, fn, args, expected):
    """Check that ``fn(*args)`` equals ``expected`` and is what a call of ``np.einsum`` on
    ``args`` themselves returned (however the code names einsum).

    Args:
    - what (str): the call as named in messages, e.g. "trace(A)".
    - fn (callable): the student's function.
    - args (tuple): its arguments; expected: the NumPy equivalent's value.
    """
    args = [np.array(a, dtype=np.float64) for a in args]
    with recording_einsum() as calls:
        result = call(what, fn, *args)
    check_close(what, result, expected)
    problem = einsum_problem(args, calls, result)
    if problem:
        raise TestFailure(f"{what} gives the right value but {problem}")


def require_torch(torch):
    """Fail with a clear message when a part that needs PyTorch runs without it (``torch`` is None)."""
    if torch is None:
        raise TestFailure("this part needs PyTorch, which is not installed (pip install torch); the other parts do not")

"""Finite differences through the kernel, one round trip each, and the backward check built on
them (``check_backward_unseen``): the judge's side of gradcheck's numerical gradients, for layers
that live in the kernel.
"""
import math
from collections.abc import Callable

import numpy as np

from coursekit.shipped import gradcheck
from coursekit.shipped.gradcheck import TestFailure, check_close
from coursekit.judge.inputs import unseen
from coursekit.judge.remote import Copy, Earlier, Notebook, Path, Remote, as_path, call_each, notebook_of, quiet, shown

MAX_PARAMETERS = 10_000  # a parameter's finite differences take one forward pass per entry


def numerical_layer_gradients(layer: Remote, x: np.ndarray, grad_outputs: list[np.ndarray], eps: float = 1e-6) -> list[np.ndarray]:
    """dL/dx by central differences of L = sum(layer.forward(x) * G), for each G in
    ``grad_outputs``, for a layer in the kernel (the same forward calls serve them all: one round
    trip). gradcheck.numerical_input_gradient is the same for a function in this process.

    Args:
    - layer: a layer in the kernel (its forward is called at x +- eps in each entry).
    - x: the input; grad_outputs: upstream gradients G, each of forward(x)'s shape.
    - eps: the step.

    Returns:
    - dL/dx for each G.

    Example: ``dx, = numerical_layer_gradients(layer, x, [G])``"""
    operations = _input_steps(layer, x, eps)
    return _input_differences(notebook_of(layer).run(*operations), x, grad_outputs, eps)


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


def numerical_parameter_gradient(layer: Remote, path: str | Path, x: np.ndarray, grad_output: np.ndarray, shape: tuple,
                                 eps: float = 1e-6) -> np.ndarray:
    """dL/dp by central differences for the parameter ``layer.<path>`` of ``shape`` (nudged in
    place, as a layer that holds on to its arrays expects), L = sum(layer.forward(x) * grad_output).

    Args:
    - layer: a layer in the kernel.
    - path: the parameter, an attribute name or a path (see ``path``).
    - x, grad_output: the input, and the upstream gradient G.
    - shape: the parameter's shape; eps: the step.

    Example: ``dW = numerical_parameter_gradient(layer, "W", x, G, (4, 3))``
    """
    operations = [quiet(["array", x])] + _parameter_steps(layer, as_path(path), Copy(0), shape, eps)
    return _parameter_differences(notebook_of(layer).run(*operations)[1:], grad_output, shape, eps)


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


def numerical_loss_gradient(notebook: Notebook, loss: str, *args: np.ndarray, at: int = 0, eps: float = 1e-6) -> np.ndarray:
    """d loss().forward(*args) / d args[at] by central differences, where ``loss`` names the
    notebook's class (a new object each time), in one round trip.

    Args:
    - notebook: the check's notebook; loss: the loss class as the notebook names it.
    - args: forward's arguments; at: the one to differentiate by; eps: the step.

    Example: ``dO = numerical_loss_gradient(notebook, "MSELoss", O, Y)``"""
    y, operations = args[at], list[list]()
    for index in np.ndindex(y.shape):
        for step in (eps, -eps):
            moved = list(args)
            moved[at] = y.copy()
            moved[at][index] += step
            operations += [["new", loss, [], {}, {}], ["call", Earlier(len(operations)), "forward", moved, {}]]
    values = [gradcheck._single_number(v) for v in notebook.run(*operations)[1::2]]
    return _differences(values, y.shape, eps)


def check_backward_unseen(name: str, make: Callable[[], Remote], x: np.ndarray, output_shape: tuple,
                          params: list[tuple[str | Path, str | Path]] | tuple = (), rtol: float = 1e-5, atol: float = 1e-7,
                          upstream: str = "grad_output", factors: dict | None = None) -> None:
    """``layer.backward`` (and the parameter gradients in ``params``, pairs like ("W", "dLdW"))
    against central finite differences of L = sum(layer.forward(x) * grad_output), as
    gradcheck.check_backward does, where ``make()`` makes the layer in the kernel (twice: one
    for the differences, one for backward). ``upstream`` names backward's argument in messages;
    ``factors`` go to the comparison of backward's result (see gradcheck.check_close).

    ``grad_output``, of ``output_shape``, is one the kernel has never seen (see ``unseen``), and
    the differences are taken before it sees it: a forward that bent its output to the gradients
    it was given could otherwise make them agree with any backward.

    Args:
    - name: the layer as messages name it, e.g. "Linear".
    - make: makes a new layer in the kernel, e.g. ``lambda: notebook.new("Linear", 3, 4)``.
    - x: the input; output_shape: the shape of forward(x).
    - params: (parameter, its gradient) pairs, names or paths, e.g. [("W", "dLdW")].
    - rtol, atol: the comparison's tolerances; factors: as for ``check_close``.

    Example: ``check_backward_unseen("Tanh", lambda: notebook.new("Tanh"), x, x.shape)``
    """
    grad_output, eps = unseen(output_shape, x), 1e-6
    paths = [(as_path(param), as_path(grad)) for param, grad in params]
    probed = make()
    notebook = notebook_of(probed)
    shapes = [np.shape(value) for value in call_each(notebook, *[(f"{name}.{shown(param)}", ["fetch", probed, param])
                                                              for param, _ in paths])] if paths else []
    for (param, _), shape in zip(paths, shapes):
        if math.prod(shape) > MAX_PARAMETERS:
            raise TestFailure(f"{name}.{shown(param)} has shape {shape}, larger than the test set it")
    operations = [quiet(["array", x])] + _input_steps(probed, x, eps)
    for (param, _), shape in zip(paths, shapes):
        operations += _parameter_steps(probed, param, Copy(0), shape, eps)

    def step(operation):  # how a step that raised is named
        if operation[0] == "nudge":
            return f"{name}.{shown(operation[2])} (the test moves one entry by a small step: is it a float array?)"
        return f"{name}.forward(x)"

    results = call_each(notebook, *[(step(operation), operation) for operation in operations])[1:]
    start = 2 * np.size(x)
    numeric, no_upstream = _input_differences(results[:start], x, [grad_output, np.ones_like(grad_output)], eps)
    expected = []
    for (_, grad), shape in zip(paths, shapes):
        end = start + 5 * math.prod(shape)
        expected.append(_parameter_differences(results[start:end], grad_output, shape, eps))
        start = end

    layer = make()
    _, grad_input, *grads = call_each(
        notebook, (f"{name}.forward(x)", ["call", layer, "forward", [x], {}]),
        (f"{name}.backward({upstream})", ["call", layer, "backward", [grad_output], {}]),
        *[(f"{name}.{shown(grad)}", ["fetch", layer, grad]) for _, grad in paths])
    check_close(f"{name}.backward({upstream}) vs finite differences", grad_input, numeric, rtol=rtol, atol=atol,
                hints=[(no_upstream, f"it ignores {upstream}: missing the upstream gradient?")], factors=factors)
    for (_, grad), found, numeric_grad in zip(paths, grads, expected):
        check_close(f"{name}.{shown(grad)} vs finite differences", found, numeric_grad, rtol=rtol, atol=atol,
                    factors={"N": len(x)})

"""ps3's tests, judged in the grader's process (see coursekit.judge): one check per test cell.

Each check repeats its cell's visible tests, on the same inputs, then checks what the hidden
tests add. The fully connected layer is checked with activations that the judge controls (Z ->
a Z + c, recording their calls), so a bug in ReLU costs no points there; the
network with layers and a loss of the judge's; PyTorch models by recomputing their outputs in
NumPy, with parameters the judge loads into them.
"""
import math

from collections.abc import Callable

import numpy as np

from coursekit.shipped.datasets import Dataset, batch_rows, load
from coursekit.shipped.gradcheck import einsum_problem
from coursekit.judge import (Earlier, Notebook, Remote, StudentError, TestFailure, answered, call, call_each, calls_in_order, check_array,
                             check_backward_unseen, check_call, check_close, check_no_hidden_loops, check_replayed, check_unchanged,
                             check_vectorised, extreme_scores, extreme_values, fetch, judged, kind, loop_shapes, numerical_layer_gradients,
                             numerical_loss_gradient, parameter_arrays, path, put, quiet, shaped, unseen)
from coursekit.judge import torch_reference
from coursekit.judge.torch_reference import vjp

CHECKS: dict[str, Callable[[Notebook], None]] = {}
W_PATH, B_PATH = path("parameters", ["W"]), path("parameters", ["b"])
DW_PATH, DB_PATH = path("gradients", ["W"]), path("gradients", ["b"])


def _new(notebook, cls, *args):
    return call(f"{cls}()", notebook.new, cls, *args)


def check_activation_numerically(name: str, make: Callable[[], Remote], Z: np.ndarray, rtol: float = 1e-5,
                                 atol: float = 1e-7) -> None:
    """``backward(Z, dY)`` of an activation against central finite differences of
    sum(forward(Z) * dY), taken before the kernel sees dY (a gradient it has never seen)."""
    dY = unseen(np.shape(Z), Z)
    (numeric,) = call(f"{name}.forward(Z)", numerical_layer_gradients, make(), Z, [dY])
    check_call(f"{name}.backward(Z, dY) vs finite differences", make().backward, Z, dY, expected=numeric, rtol=rtol,
               atol=atol)


# --- 1. ReLU -----------------------------------------------------------------------------------

@judged(CHECKS)
def relu_tests(notebook: Notebook) -> None:
    """The visible cell's checks, then no loops at shapes of the student's own, PyTorch's values, inputs near +-1000.

    Adds: backward's step count too (the cell counts forward's), the class's code read for loops the count
    cannot see (check_no_hidden_loops), four shapes (1-D and 4-D too) with an entry at 0, Z and dY left
    unchanged, and backward(Z2, dY) after forward(Z1) uses Z2. Its finite differences use a dY the kernel never saw.
    """
    def relu():
        return _new(notebook, "ReLU")

    Z = np.array([[-1.0, 0.0, 2.5], [3.0, -0.5, 1.0]])
    dY = np.array([[1.0, 2.0, 3.0], [-1.0, 5.0, 0.5]])
    check_call("ReLU().forward(Z)", relu().forward, Z, expected=[[0.0, 0.0, 2.5], [3.0, 0.0, 1.0]])
    check_call("ReLU().backward(Z, dY)", relu().backward, Z, dY, expected=[[0.0, 0.0, 3.0], [-1.0, 0.0, 0.5]],
               hints=[([[0.0, 2.0, 3.0], [-1.0, 0.0, 0.5]], "at Z = 0 the derivative is 0, as in PyTorch"),
                      ([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]], "it is dY/dZ alone: multiply by the upstream gradient dY")])
    rng = np.random.default_rng(0)
    check_activation_numerically("ReLU()", relu, 2 * rng.normal(size=(3, 4)))
    check_vectorised("ReLU().forward(Z) for Z of shape (100, 100)", relu().forward,
                     np.linspace(-5.0, 5.0, 10_000).reshape(100, 100))

    rng = notebook.rng(3001)
    for shape in loop_shapes(rng):
        Z, dY = 5 * rng.normal(size=shape), rng.normal(size=shape)
        what = f"ReLU().forward(Z) for Z of shape {shape}"
        check_close(what, check_vectorised(what, relu().forward, Z), np.maximum(Z, 0.0))
        what = f"ReLU().backward(Z, dY) for Z of shape {shape}"
        check_close(what, check_vectorised(what, relu().backward, Z, dY), dY * (Z > 0))
    check_no_hidden_loops(notebook, "ReLU")
    for shape in [(6, 4), (1, 3), (5,), (2, 3, 4, 2)]:
        Z, dY = 3 * rng.normal(size=shape), rng.normal(size=shape)
        Z.flat[0] = 0.0  # the derivative at 0 is 0, as in PyTorch
        Y_ref, (dZ_ref,) = vjp("relu", (Z,), dY)
        Z_given, dY_given = notebook.array(Z), notebook.array(dY)
        check_call(f"ReLU().forward(Z) for Z of shape {shape}", relu().forward, Z_given, expected=Y_ref)
        check_call(f"ReLU().backward(Z, dY) for Z of shape {shape}", relu().backward, Z_given, dY_given,
                   expected=dZ_ref,
                   hints=[(dY * (Z >= 0), "at Z = 0 the derivative is 0, as in PyTorch"),
                           ((Z > 0).astype(float), "it is dY/dZ alone: multiply by the upstream gradient dY")])
        check_unchanged("ReLU.forward and backward (Z)", Z, Z_given.value())
        check_unchanged("ReLU.backward (dY)", dY, dY_given.value())

    Z, dY = extreme_values(rng, (2, 5)), rng.normal(size=(2, 5))
    Y_ref, (dZ_ref,) = vjp("relu", (Z,), dY)
    what = "ReLU().forward(Z) for Z with entries near +-1000"
    check_call(what, relu().forward, Z, expected=Y_ref, atol=1e-12)
    what = "ReLU().backward(Z, dY) for Z with entries near +-1000"
    check_call(what, relu().backward, Z, dY, expected=dZ_ref, atol=1e-12)

    # backward must use the Z it is given, not one kept from an earlier forward call
    act = relu()
    Z1, Z2, dY = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    call("ReLU().forward(Z1)", act.forward, Z1)
    check_call("ReLU().backward(Z2, dY) after forward(Z1)", act.backward, Z2, dY, expected=dY * (Z2 > 0),
               hints=[(dY * (Z1 > 0), "it uses Z1 from forward: use the Z that backward is given")])


# --- 2. The fully connected layer, with activations the judge controls -------------------------

# The judge's activations are Z -> factor * Z + OFFSET: with the offset, what their forward
# makes of the upstream gradient is not what their backward returns.
OFFSET = 0.25
ACTIVATION_ARGUMENTS = {"forward": ["Z"], "backward": ["Z", "dY"]}  # the parameters of the notebook's activations


def _activated(factor, Z):
    """What the judge's activation with ``factor`` (None: the layer's default, here identity) makes of Z."""
    return np.asarray(Z) if factor is None else factor * np.asarray(Z) + OFFSET


def _fc(notebook, n_out, activation=None):
    """The student's FullyConnected(n_out[, activation]): ``activation`` is a factor (an
    activation of the judge's: Z -> factor * Z + OFFSET) or None (the layer's default)."""
    args = [n_out] if activation is None else [n_out, notebook.scaler(activation, OFFSET, "ReLU", ACTIVATION_ARGUMENTS)]
    return call(f"FullyConnected({n_out})", notebook.new, "FullyConnected", *args)


def _fc_with(notebook, n_out, X, W, b, activation=None):
    """A FullyConnected initialised by forward(X), then given the parameters W and b."""
    layer = _fc(notebook, n_out, activation)
    call(f"FullyConnected({n_out}).forward(X)", layer.forward, X)
    put(layer, W_PATH, W)
    put(layer, B_PATH, b)
    return layer


def _activation_name(factor):
    return "" if factor is None else f", an activation Z -> {factor:g} Z + {OFFSET:g}"


@judged(CHECKS)
def fullyconnected_init(notebook: Notebook) -> None:
    """The visible cell's checks at sizes and a seed of the student's own; tiny layers; W new per layer, drawn once.

    In place of the cell's FullyConnected(200) on (5, 300) after np.random.seed(0): sizes 150 to 400;
    then W of shapes (1, 1), (7, 1), (3, 6), made by a first forward call; two layers get different W, and a
    second forward call keeps the first W.
    """
    rng = notebook.rng(3000)
    n_in, n_out = (int(n) for n in rng.integers(150, 400, size=2))
    notebook.seed(int(rng.integers(2 ** 31)))
    layer, shape = _fc(notebook, n_out), (int(rng.integers(1, 9)), n_in)
    call(f"FullyConnected({n_out})._init_parameters({shape})", layer._init_parameters, shape)
    if layer.n_in != n_in:
        raise TestFailure(f"after _init_parameters({shape}), n_in is {layer.n_in}, expected {n_in} (the number of features)")
    parameters = layer.parameters
    if not isinstance(parameters, dict) or sorted(parameters) != ["W", "b"]:
        raise TestFailure(f"parameters should be a dict with the keys 'W' and 'b', got {parameters!r:.80}")
    W = check_array("parameters['W']", parameters["W"], (n_in, n_out))
    check_close("parameters['b']", parameters["b"], np.zeros((1, n_out)))
    check_close(f"the standard deviation of parameters['W'] of shape {(n_in, n_out)}", float(np.std(W)),
                np.sqrt(2 / (n_in + n_out)), rtol=0.05,
                hints=[(1.0, "it looks like np.random.randn: use init_weights"),
                       (np.sqrt(1 / 12), "it looks like np.random.rand: use init_weights")])
    gradients = layer.gradients
    if not isinstance(gradients, dict) or sorted(gradients) != ["W", "b"]:
        raise TestFailure("gradients should be a dict with the keys of parameters, 'W' and 'b'")
    check_close("gradients['W'] before backward", gradients["W"], np.zeros((n_in, n_out)))
    check_close("gradients['b'] before backward", gradients["b"], np.zeros((1, n_out)))

    notebook.seed(int(rng.integers(2 ** 31)))
    for n, d, h in [(1, 1, 1), (4, 7, 1), (1, 3, 6)]:
        layer = _fc(notebook, h)
        call(f"FullyConnected({h}).forward(X)", layer.forward, np.ones((n, d)))
        check_array(f"parameters['W'] of FullyConnected({h}) after an input of shape {(n, d)}", fetch(layer, W_PATH), (d, h))
        check_array(f"parameters['b'] of FullyConnected({h})", fetch(layer, B_PATH), (1, h))
        check_array(f"gradients['b'] of FullyConnected({h})", fetch(layer, DB_PATH), (1, h))
    first, second = _fc(notebook, 3), _fc(notebook, 3)
    call("FullyConnected(3).forward(X)", first.forward, np.ones((2, 4)))
    call("FullyConnected(3).forward(X)", second.forward, np.ones((2, 4)))
    W_first, W_second = fetch(first, W_PATH), fetch(second, W_PATH)
    if np.array_equal(W_first, W_second):
        raise TestFailure("two FullyConnected(3) layers got the same W: draw it at random for every layer")
    call("FullyConnected(3).forward(X), a second time", first.forward, np.ones((5, 4)))
    check_close("parameters['W'] after a second forward call", fetch(first, W_PATH), W_first,
                hints=[(W_second, "the parameters were drawn again: initialise them only once")])


@judged(CHECKS)
def fullyconnected_forward(notebook: Notebook) -> None:
    """The visible cell's values (activations by notebook.scaler); four shapes against PyTorch; the student's ReLU.

    The judge's activations are Z -> a Z + 0.25 (the cell's Doubling is 2 Z): forward must give them Z = X W + b;
    X and the parameters left unchanged; then FullyConnected with the student's own ReLU against that ReLU called
    on the same Z (_check_fc_with_own_relu).
    """
    X = np.array([[1.0, 2.0], [0.0, -1.0]])
    W = np.array([[1.0, 0.0, 2.0], [-1.0, 3.0, 0.5]])
    b = np.array([[0.5, -1.0, 0.0]])
    for factor in (None, 2.0):
        layer = _fc_with(notebook, 3, X, W, b, factor)
        check_call(f"FullyConnected(3{_activation_name(factor)}).forward(X)", layer.forward, X,
                   expected=_activated(factor, [[-0.5, 5.0, 3.0], [1.5, -4.0, -0.5]]),
                   hints=[(_activated(factor, X @ W), "the bias is missing"), (X @ W + b, "the activation is not applied")])

    rng = notebook.rng(3003)
    for (n, d, h), factor in [((7, 3, 5), 3.0), ((1, 4, 2), None), ((6, 5, 1), 0.5), ((4, 2, 2), None)]:
        X, W, b = rng.normal(size=(n, d)), rng.normal(size=(d, h)), rng.normal(size=(1, h))
        expected, _ = vjp("dense", (X, W, b), np.zeros((n, h)), activation="identity")
        layer = _fc_with(notebook, h, X, W, b, factor)
        X_given = notebook.array(X)
        Y = call("FullyConnected.forward(X)", layer.forward, X_given)
        check_close(f"FullyConnected({h}{_activation_name(factor)}).forward(X) for X of shape {X.shape}", Y,
                    _activated(factor, expected),
                    hints=[(_activated(factor, X @ W), "the bias is missing"), (X @ W + b, "the activation is not applied")])
        if factor is not None:
            calls = layer.activation.calls()
            if not calls or calls[-1][0] != "forward":
                raise TestFailure("FullyConnected.forward did not call its activation's forward")
            check_close("the input of the activation's forward: Z = X W + b", calls[-1][1][0], expected)
        check_unchanged("FullyConnected.forward", X, X_given.value())
        check_close("parameters['W'] after forward", fetch(layer, W_PATH), W)
        check_close("parameters['b'] after forward", fetch(layer, B_PATH), b)
    _check_fc_with_own_relu(notebook, "forward", rng)


def check_backward_sets_gradients(notebook: Notebook, name: str, layer: Remote, X: np.ndarray, G: np.ndarray) -> None:
    """Two backward calls after one forward leave the gradients of one: backward sets them."""
    call(f"{name}.forward(X)", layer.forward, X)
    call(f"{name}.backward(dLdY)", layer.backward, G)
    once = fetch(layer, DW_PATH)
    call(f"{name}.backward(dLdY), a second time", layer.backward, G)
    check_close(f"{name}.gradients['W'] after backward(dLdY) twice", fetch(layer, DW_PATH), once,
                hints=[(2 * np.asarray(once), "the gradients accumulate across calls: backward must set them, not add to them")])


NO_ACTIVATION_BACKWARD = "the activation's backward is not used: dL/dZ = activation.backward(Z, dLdY)"


@judged(CHECKS)
def fullyconnected_backward(notebook: Notebook) -> None:
    """The visible cell's checks (activations by notebook.scaler); three shapes; gradients set, not added; own ReLU.

    Adds: backward and the gradients at three shapes (with Z -> a Z + 0.25 or the default), the activation's
    backward given Z = X W + b, dLdY unchanged, finite differences with an activation, two backward calls
    leaving one's gradients, the latest forward's X, then the student's own ReLU (_check_fc_with_own_relu).
    """
    X = np.array([[1.0, 2.0], [0.0, -1.0]])
    G = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])
    W, b = np.array([[1.0, 0.0, 2.0], [-1.0, 3.0, 0.5]]), np.array([[0.5, -1.0, 0.0]])
    layer = _fc_with(notebook, 3, X, W, b)
    call("FullyConnected(3).forward(X)", layer.forward, X)
    check_call("FullyConnected.backward(dLdY)", layer.backward, G, expected=[[-1.0, -1.5], [2.0, 1.0]])
    check_close("gradients['W']", fetch(layer, DW_PATH), [[1.0, 0.0, -1.0], [0.0, -1.0, -2.0]], factors={"N": 2})
    check_close("gradients['b']", fetch(layer, DB_PATH), [[3.0, 1.0, -1.0]], factors={"N": 2})
    layer = _fc_with(notebook, 3, X, W, b, 3.0)
    call("FullyConnected(3).forward(X)", layer.forward, X)
    check_call(f"FullyConnected(3{_activation_name(3.0)}).backward(dLdY)", layer.backward, G,
               expected=[[-3.0, -4.5], [6.0, 3.0]], hints=[([[-1.0, -1.5], [2.0, 1.0]], NO_ACTIVATION_BACKWARD)])

    rng = np.random.default_rng(0)
    for factor in (None, 3.0):
        X0, W, b = rng.normal(size=(5, 3)), rng.normal(size=(3, 4)), rng.normal(size=(1, 4))
        check_backward_unseen(f"FullyConnected(4{_activation_name(factor)})",
                                    lambda: _fc_with(notebook, 4, X0, W, b, factor), rng.normal(size=(5, 3)), (5, 4),
                                    params=[(W_PATH, DW_PATH), (B_PATH, DB_PATH)], upstream="dLdY")

    rng = notebook.rng(3004)
    for (n, d, h), factor in [((7, 3, 5), 3.0), ((1, 4, 2), 0.5), ((6, 5, 1), None)]:
        X, W, b, G = rng.normal(size=(n, d)), rng.normal(size=(d, h)), rng.normal(size=(1, h)), rng.normal(size=(n, h))
        scale = factor or 1.0
        layer = _fc_with(notebook, h, X, W, b, factor)
        call("FullyConnected.forward(X)", layer.forward, X)
        G_given = notebook.array(G)
        where = f" (FullyConnected({h}{_activation_name(factor)}), X of shape {X.shape})"
        dZ = scale * G
        check_call("FullyConnected.backward(dLdY): returned dL/dX" + where, layer.backward, G_given, expected=dZ @ W.T,
                   hints=[(G @ W.T, NO_ACTIVATION_BACKWARD)] if factor else [])
        check_close("gradients['W']" + where, fetch(layer, DW_PATH), X.T @ dZ, factors={"N": n},
                    hints=[(X.T @ G, NO_ACTIVATION_BACKWARD)] if factor else [])
        check_close("gradients['b']" + where, fetch(layer, DB_PATH), dZ.sum(axis=0, keepdims=True), factors={"N": n},
                    hints=[(dZ.mean(axis=0, keepdims=True),
                            "it is the mean over the batch: the loss adds up every example's contribution")])
        check_unchanged("FullyConnected.backward", G, G_given.value())
        if factor is not None:
            calls = [args for method, args in layer.activation.calls() if method == "backward"]
            if not calls:
                raise TestFailure("FullyConnected.backward did not call its activation's backward" + where)
            check_close("the Z passed to the activation's backward" + where, calls[-1][0] if calls[-1] else None, X @ W + b)

    X0, W, b = rng.normal(size=(4, 2)), rng.normal(size=(2, 3)), rng.normal(size=(1, 3))
    check_backward_unseen(f"FullyConnected(3{_activation_name(3.0)})", lambda: _fc_with(notebook, 3, X0, W, b, 3.0),
                                rng.normal(size=(4, 2)), (4, 3), params=[(W_PATH, DW_PATH), (B_PATH, DB_PATH)],
                                upstream="dLdY")

    check_backward_sets_gradients(notebook, "FullyConnected(3)", _fc_with(notebook, 3, X0, W, b), X0, rng.normal(size=(4, 3)))

    # backward must use the input of the latest forward call
    X1, X2, G = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    layer = _fc(notebook, 2)
    call("FullyConnected.forward(X1)", layer.forward, X1)
    call("FullyConnected.forward(X2)", layer.forward, X2)
    call("FullyConnected.backward(dLdY)", layer.backward, G)
    check_close("gradients['W'] after forward(X1), forward(X2), backward(dLdY)", fetch(layer, DW_PATH), X2.T @ G,
                hints=[(X1.T @ G, "it uses X1: backward must use the input of the latest forward call")])
    _check_fc_with_own_relu(notebook, "backward", rng)


def _own_relu(notebook, Z, dY):
    """What a new ReLU of the student's makes of Z (forward) and of (Z, dY) (backward), as the
    judge calls it, or None where it does not run, returns arrays of another shape or hung in
    its own checks."""
    if not answered(notebook, "relu_tests"):
        return None
    try:
        _, Y, dZ = notebook.run(["new", "ReLU", [], {}, {}], ["call", Earlier(0), "forward", [Z], {}],
                              ["call", Earlier(0), "backward", [Z, dY], {}])
    except StudentError:
        return None
    if any(not isinstance(a, np.ndarray) or a.shape != np.shape(Z) or not np.all(np.isfinite(a)) for a in (Y, dZ)):
        return None
    return Y, dZ


OWN_RELU = "with your own ReLU, vs what that ReLU makes of Z = X W + b when the test calls it"


def _check_fc_with_own_relu(notebook, part, rng):
    """FullyConnected with the student's own ReLU, whatever that computes: its forward, or its
    backward's result and gradients, against that ReLU called by the judge on the layer's Z and
    dL/dY (a layer that behaves only with the judge's activations loses here what it kept with
    them; a bug in ReLU costs nothing here, since the same ReLU makes the expected values)."""
    n, (d, h) = 5, (int(m) for m in rng.integers(2, 6, size=2))
    X, W, b, G = rng.normal(size=(n, d)), rng.normal(size=(d, h)), rng.normal(size=(1, h)), rng.normal(size=(n, h))
    Z = X @ W + b
    own = _own_relu(notebook, Z, G)
    if own is None:  # (FullyConnected is judged with the judge's activations alone)
        return
    Y, dZ = own
    relu, layer = call_each(notebook, ("ReLU()", ["new", "ReLU", [], {}, {}]),
                            (f"FullyConnected({h}, ReLU())", ["new", "FullyConnected", [h, Earlier(0)], {}, {}]))
    call(f"FullyConnected({h}, ReLU()).forward(X)", layer.forward, X)
    put(layer, W_PATH, W)
    put(layer, B_PATH, b)
    where = f" (FullyConnected({h}, ReLU()) {OWN_RELU})"
    check_call("FullyConnected.forward(X)" + where, layer.forward, X, expected=Y,
               hints=[(Z, "the activation is not applied")])
    if part == "forward":
        return
    check_call("FullyConnected.backward(dLdY): returned dL/dX" + where, layer.backward, G, expected=dZ @ W.T,
               hints=[(G @ W.T, NO_ACTIVATION_BACKWARD)])
    check_close("gradients['W']" + where, fetch(layer, DW_PATH), X.T @ dZ, factors={"N": n},
                hints=[(X.T @ G, NO_ACTIVATION_BACKWARD)])
    check_close("gradients['b']" + where, fetch(layer, DB_PATH), dZ.sum(axis=0, keepdims=True), factors={"N": n})


# --- 3. SoftMax ----------------------------------------------------------------------------------

def softmax(Z: np.ndarray) -> np.ndarray:
    """Softmax of the scores Z (N, K) row by row, computed stably: the judge's own, for hints."""
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def _whole_batch_hints(Z):
    return [(np.exp(Z) / np.exp(Z).sum(), "it normalises over the whole batch: softmax works row by row"),
            (np.exp(Z) / np.exp(Z).sum(axis=0), "it normalises each column: softmax works row by row")]


@judged(CHECKS)
def softmax_forward(notebook: Notebook) -> None:
    """The visible cell's values; four shapes against PyTorch, Z unchanged; scores near +-1000 of the student's own."""
    Z = np.array([[0.0, 0.0], [np.log(3.0), 0.0], [1.0, 1.0]])
    check_call("SoftMax().forward(Z)", _new(notebook, "SoftMax").forward, Z,
               expected=[[0.5, 0.5], [0.75, 0.25], [0.5, 0.5]], hints=_whole_batch_hints(Z))
    what = "SoftMax().forward(Z) for scores of +-1000"
    check_call(what, _new(notebook, "SoftMax").forward, np.array([[1000.0, 0.0, -1000.0]]), expected=[[1.0, 0.0, 0.0]],
               atol=1e-12)

    rng = notebook.rng(3005)
    for shape in [(6, 4), (1, 3), (5, 1), (3, 10)]:
        Z = 2 * rng.normal(size=shape)
        expected, _ = vjp("softmax", (Z,), np.zeros(shape))
        Z_given = notebook.array(Z)
        check_call(f"SoftMax().forward(Z) for Z of shape {shape}", _new(notebook, "SoftMax").forward, Z_given,
                   expected=expected, hints=_whole_batch_hints(Z))
        check_unchanged("SoftMax.forward", Z, Z_given.value())
    Z = _extreme_scores(rng, 4, 5)
    expected, _ = vjp("softmax", (Z,), np.zeros(Z.shape))
    what = "SoftMax().forward(Z) for scores near +-1000"
    check_call(what, _new(notebook, "SoftMax").forward, Z, expected=expected, atol=1e-12)


def _extreme_scores(rng, n, k):
    """extreme_scores, with a last row of equal scores."""
    Z = extreme_scores(rng, n, k)
    Z[-1] = -rng.uniform(710, 1000)
    return Z


DIAGONAL_ONLY = "it uses only the diagonal of the Jacobian: each output depends on every input of its row"


@judged(CHECKS)
def softmax_backward(notebook: Notebook) -> None:
    """The visible cell's checks; four shapes against PyTorch and finite differences; scores near +-1000; the given Z.

    Also: Z and dY left unchanged; backward(Z2, dY) after forward(Z1) uses Z2; finite differences use a dY the
    kernel never saw.
    """
    def new():
        return _new(notebook, "SoftMax")

    Z, dY, S = np.array([[np.log(3.0), 0.0]]), np.array([[1.0, 0.0]]), np.array([[0.75, 0.25]])
    check_call("SoftMax().backward(Z, dY)", new().backward, Z, dY, expected=[[0.1875, -0.1875]],
               hints=[(dY * S * (1 - S), DIAGONAL_ONLY)])
    rng = np.random.default_rng(0)
    check_activation_numerically("SoftMax()", new, rng.normal(size=(3, 4)))

    rng = notebook.rng(3006)
    for shape in [(6, 4), (1, 3), (5, 1), (2, 7)]:
        Z, dY = 2 * rng.normal(size=shape), rng.normal(size=shape)
        _, (expected,) = vjp("softmax", (Z,), dY)
        S = softmax(Z)
        Z_given, dY_given = notebook.array(Z), notebook.array(dY)
        check_call(f"SoftMax().backward(Z, dY) for Z of shape {shape}", new().backward, Z_given, dY_given,
                   expected=expected,
                   hints=[(dY * S * (1 - S), DIAGONAL_ONLY),
                           (S * (dY - np.sum(dY * S)), "the sum runs over the whole batch: each row has its own Jacobian")])
        check_unchanged("SoftMax.backward (Z)", Z, Z_given.value())
        check_unchanged("SoftMax.backward (dY)", dY, dY_given.value())
        check_activation_numerically(f"SoftMax() for Z of shape {shape}", new, Z)
    Z, dY = _extreme_scores(rng, 3, 4), rng.normal(size=(3, 4))
    _, (expected,) = vjp("softmax", (Z,), dY)
    what = "SoftMax().backward(Z, dY) for scores near +-1000"
    check_call(what, new().backward, Z, dY, expected=expected, atol=1e-12)
    # backward must use the Z it is given
    act = new()
    Z1, Z2, dY = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    call("SoftMax().forward(Z1)", act.forward, Z1)
    _, (expected,) = vjp("softmax", (Z2,), dY)
    check_call("SoftMax().backward(Z2, dY) after forward(Z1)", act.backward, Z2, dY, expected=expected,
               hints=[(vjp("softmax", (Z1,), dY)[1][0], "it uses Z1 from forward: use the Z that backward is given")])


# --- 4. Cross-entropy ----------------------------------------------------------------------------

def _probabilities(rng, n, k, scale=1.0):
    """One-hot targets and predicted probabilities, of shape (n, k)."""
    Y = np.eye(k)[rng.integers(k, size=n)]
    E = np.exp(scale * rng.normal(size=(n, k)))
    return Y, E / E.sum(axis=1, keepdims=True)


@judged(CHECKS)
def crossentropy_forward(notebook: Notebook) -> None:
    """The visible cell's value; four shapes against PyTorch, inputs unchanged; a tiny probability (1e-300 to 1e-200)."""
    Y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    Y_hat = np.array([[0.2, 0.5, 0.3], [0.25, 0.25, 0.5]])
    what = "CrossEntropy().forward(Y, Y_hat)"
    check_call(what, _new(notebook, "CrossEntropy").forward, Y, Y_hat, expected=(np.log(2.0) + np.log(4.0)) / 2,
               factors={"N": 2})

    rng = notebook.rng(3007)
    for n, k in [(6, 4), (1, 3), (5, 2), (3, 10)]:
        Y, Y_hat = _probabilities(rng, n, k, scale=2.0)
        expected, _ = vjp("probability_cross_entropy", (Y, Y_hat))
        Y_given, Y_hat_given = notebook.array(Y), notebook.array(Y_hat)
        check_call(f"{what} for Y of shape {(n, k)}", _new(notebook, "CrossEntropy").forward, Y_given, Y_hat_given,
                   expected=expected, factors={"N": n, "K": k},
                   hints=[(-np.sum((1 - Y) * np.log(1 - Y_hat)) / n - np.sum(Y * np.log(Y_hat)) / n,
                            "it adds log(1 - Y_hat) for the wrong classes: that is the binary cross-entropy")])
        check_unchanged("CrossEntropy.forward (Y)", Y, Y_given.value())
        check_unchanged("CrossEntropy.forward (Y_hat)", Y_hat, Y_hat_given.value())
    tiny = 10.0 ** -rng.uniform(200, 300)  # the student's own, so no table holds it
    Y, Y_hat = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[tiny, 1.0 - tiny], [0.5, 0.5]])
    if rng.integers(2):
        Y, Y_hat = Y[:, ::-1].copy(), Y_hat[:, ::-1].copy()
    expected, _ = vjp("probability_cross_entropy", (Y, Y_hat))
    check_call(f"{what} for a probability of {tiny:.3g}", _new(notebook, "CrossEntropy").forward, Y, Y_hat,
               expected=expected)


@judged(CHECKS)
def crossentropy_backward(notebook: Notebook) -> None:
    """The visible cell's checks, then backward at three shapes against PyTorch; Y and Y_hat left unchanged."""
    Y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    Y_hat = np.array([[0.2, 0.5, 0.3], [0.25, 0.25, 0.5]])
    what = "CrossEntropy().backward(Y, Y_hat)"
    check_call(what, _new(notebook, "CrossEntropy").backward, Y, Y_hat, expected=[[0.0, -1.0, 0.0], [-2.0, 0.0, 0.0]],
               factors={"N": 2},
               hints=[((Y_hat - Y) / 2, "(Y_hat - Y)/N is the gradient with respect to the scores before SoftMax, not Y_hat")])
    check_call(f"{what} vs finite differences", _new(notebook, "CrossEntropy").backward, Y, Y_hat,
               expected=call("CrossEntropy().forward(Y, Y_hat)", numerical_loss_gradient, notebook, "CrossEntropy", Y, Y_hat,
                              at=1, eps=1e-7),
               rtol=1e-5, atol=1e-7)

    rng = notebook.rng(3008)
    for n, k in [(6, 4), (1, 3), (5, 2)]:
        Y, Y_hat = _probabilities(rng, n, k)
        _, (_, expected) = vjp("probability_cross_entropy", (Y, Y_hat))
        Y_given, Y_hat_given = notebook.array(Y), notebook.array(Y_hat)
        check_call(f"{what} for Y of shape {(n, k)}", _new(notebook, "CrossEntropy").backward, Y_given, Y_hat_given,
                   expected=expected, factors={"N": n, "K": k},
                   hints=[((Y_hat - Y) / n, "(Y_hat - Y)/N is the gradient with respect to the scores before SoftMax, not Y_hat"),
                           (np.full((n, k), -np.sum(Y / Y_hat) / n), "it is summed: the gradient has one entry per entry of Y_hat")])
        check_unchanged("CrossEntropy.backward (Y)", Y, Y_given.value())
        check_unchanged("CrossEntropy.backward (Y_hat)", Y_hat, Y_hat_given.value())


# --- 5. NeuralNetwork, with layers and a loss the judge controls --------------------------------

def _scalers(notebook, factors, offsets=None):
    """Layers Z -> factor * Z + offset that record their calls: {"layers[i]": layer}. (With
    offsets they do not commute: the output shows the order they ran in.)"""
    offsets = offsets or [0.0] * len(factors)
    made = notebook.run(*[["scaler", float(factor), float(offset), "FullyConnected", {"forward": ["X"], "backward": ["dLdY"]}]
                        for factor, offset in zip(factors, offsets)])
    return {f"layers[{i}]": layer for i, layer in enumerate(made)}


def _through(factors, offsets, X):
    """X through the layers Z -> factor * Z + offset, in order."""
    for factor, offset in zip(factors, offsets):
        X = factor * X + offset
    return X


def _offsets(factors):
    return [0.1 * (i + 1) for i in range(len(factors))]


def _loss(notebook, L, dY):
    """A loss whose forward(Y, Y_hat) returns L and backward(Y, Y_hat) returns dY (the parameters
    of the notebook's CrossEntropy, keywords too)."""
    return notebook.standin("CrossEntropy", None, {"forward": ["Y", "Y_hat"], "backward": ["Y", "Y_hat"]},
                          forward=[float(L)], backward=[dY])


def _network(notebook, layers, loss):
    return call("NeuralNetwork(layers, loss)", notebook.new, "NeuralNetwork", list(layers.values()), loss)


def _check_loss_arguments(what, given, target, out, where):
    if len(given) != 2:
        raise TestFailure(f"{what} {len(given)} arguments, expected two: (target, out)")
    swapped = "they are swapped: the loss takes (target, out)"
    check_close(f"the target {what}{where}", given[0], target, hints=[(out, swapped)])
    check_close(f"the output {what}{where}", given[1], out, hints=[(target, swapped)])


OWN_LAYERS = " with your own layers and loss, vs the same layers and loss called by the test in order"


def _gradient_shapes(d, h, k):
    """{(operation, key): shape} of the two layers' gradients (operations 1 and 3 of the request
    that makes them), which the judge sets to zeros before each backward: a layer that adds to
    them instead of setting them (a bug of its own part) then gives the same gradients whichever
    calls it."""
    return {(1, "W"): (d, h), (1, "b"): (1, h), (3, "W"): (h, k), (3, "b"): (1, k)}


def _check_network_of_own_layers(notebook, part, rng):
    """NeuralNetwork's ``part`` with the student's own FullyConnected, ReLU, SoftMax and
    CrossEntropy (classifier()'s), whatever they compute: against the same objects called by the
    judge in the order the text gives (forward through the layers; the loss's forward and
    backward, then the layers' backward from the last). A network that behaves only when its
    layers and loss are the judge's loses here what it kept there; a bug in a layer costs nothing
    here, since the same layer makes the expected values. Skipped where the layers do not run,
    or hung in their own checks."""
    if not answered(notebook, "relu_tests", "fullyconnected_init", "fullyconnected_forward", "fullyconnected_backward",
                    "softmax_forward", "softmax_backward", "crossentropy_forward", "crossentropy_backward"):
        return
    n, (d, h, k) = 6, (int(m) for m in rng.integers(2, 7, size=3))
    X, Y = rng.normal(size=(n, d)), np.eye(k)[rng.integers(k, size=n)]
    layer_ops = [["new", "ReLU", [], {}, {}], ["new", "FullyConnected", [h, Earlier(0)], {}, {}],
                 ["new", "SoftMax", [], {}, {}], ["new", "FullyConnected", [k, Earlier(2)], {}, {}],
                 ["new", "CrossEntropy", [], {}, {}]]
    chain = [quiet(["call", Earlier(1), "forward", [X], {}]), quiet(["call", Earlier(3), "forward", [Earlier(5)], {}]),
             *[quiet(["put", Earlier(i), path("parameters", [key]), value]) for i, key, value in
               ((1, "W", rng.normal(size=(d, h)) / np.sqrt(d)), (1, "b", 0.5 * rng.normal(size=(1, h))),
                (3, "W", rng.normal(size=(h, k)) / np.sqrt(h)), (3, "b", 0.5 * rng.normal(size=(1, k))))],
             ["call", Earlier(1), "forward", [X], {}], ["call", Earlier(3), "forward", [Earlier(11)], {}],
             ["call", Earlier(4), "forward", [Y, Earlier(12)], {}], ["call", Earlier(4), "backward", [Y, Earlier(12)], {}],
             *[quiet(["put", Earlier(i), path("gradients", [key]), np.zeros(shape)])
               for (i, key), shape in _gradient_shapes(d, h, k).items()],
             quiet(["call", Earlier(3), "backward", [Earlier(14)], {}]), quiet(["call", Earlier(1), "backward", [Earlier(19)], {}]),
             *[["fetch", Earlier(i), path("gradients", [key])] for i in (1, 3) for key in ("W", "b")],
             ["new", "NeuralNetwork", [[Earlier(1), Earlier(3)], Earlier(4)], {}, {}],
             ["call", Earlier(1), "forward", [X], {}], ["call", Earlier(3), "forward", [Earlier(26)], {}]]
    try:
        results = notebook.run(*layer_ops, *chain)
    except StudentError:
        return  # (the network is judged with the judge's layers and loss alone)
    out, loss, grads, network = results[12], results[13], results[21:25], results[25]
    try:
        shaped(out, (n, k))
        grads = [shaped(grad, shape) for grad, shape in zip(grads, _gradient_shapes(d, h, k).values())]
        loss = float(shaped(np.asarray(loss, dtype=np.float64) if isinstance(loss, float) else loss, ()))
    except (ValueError, TypeError):
        return  # (layers or a loss that return something else: their own parts' checks say so)
    if not np.array_equal(out, results[27]):
        return  # (layers whose output changes from one call to the next: no order of calls can be compared)
    if part == "forward":
        check_call("NeuralNetwork.forward(X)" + OWN_LAYERS, network.forward, X, expected=out)
    elif part == "predict":
        result = call("NeuralNetwork.predict(X, Y)", network.predict, X, Y)
        if not isinstance(result, tuple) or len(result) != 2:
            raise TestFailure(f"NeuralNetwork.predict should return a pair (Y_hat, loss), got {kind(result)}")
        check_close("the Y_hat NeuralNetwork.predict(X, Y) returns" + OWN_LAYERS, result[0], out)
        check_close("the loss NeuralNetwork.predict(X, Y) returns" + OWN_LAYERS, result[1], loss)
    else:
        call("NeuralNetwork.forward(X)", network.forward, X)  # (the layers keep what this batch's backward needs)
        notebook.run(*[["put", results[i], path("gradients", [key]), np.zeros(shape)]
                     for (i, key), shape in _gradient_shapes(d, h, k).items()])
        returned, *found = call_each(notebook, ("NeuralNetwork.backward(Y, out)", ["call", network, "backward", [Y, out], {}]),
                                     *[(f"layer {i}'s gradients['{key}']", ["fetch", layer, path("gradients", [key])])
                                       for i, layer in enumerate(results[1:4:2]) for key in ("W", "b")])
        check_close("the loss NeuralNetwork.backward(Y, out) returns" + OWN_LAYERS, returned, loss)
        for (i, key), value, expected in zip([(i, key) for i in (0, 1) for key in ("W", "b")], found, grads):
            check_close(f"layer {i}'s gradients['{key}'] after NeuralNetwork.backward(Y, out)" + OWN_LAYERS, value, expected)


@judged(CHECKS)
def network_forward(notebook: Notebook) -> None:
    """The visible cell's layers and three sets of the student's own, as scaler layers with offsets; then own layers.

    The layers are Z -> a Z + c that record their calls (the kernel's "scaler"; the offsets make the order show)
    and the loss a stand-in (standin); X unchanged, each layer's forward once, in order; then classifier()'s own
    FullyConnected, ReLU, SoftMax and CrossEntropy (_check_network_of_own_layers).
    """
    rng = notebook.rng(3009)
    cases = [((2.0, 3.0, 5.0), np.array([[1.0, -2.0], [0.5, 4.0]]))]
    cases += [(tuple(rng.uniform(0.5, 2.0, size=depth)), rng.normal(size=(n, d))) for depth, n, d in [(1, 6, 3), (4, 1, 2), (2, 5, 4)]]
    for factors, X in cases:
        offsets = _offsets(factors)
        layers = _scalers(notebook, factors, offsets)
        where = (f" through {len(factors)} layers Z -> a Z + c, with a = {', '.join(f'{f:g}' for f in factors)} and "
                 f"c = {', '.join(f'{c:g}' for c in offsets)}")
        X_given = notebook.array(X)
        out = call("NeuralNetwork.forward(X)", _network(notebook, layers, _loss(notebook, 0.0, X)).forward, X_given)
        check_unchanged("NeuralNetwork.forward", X, X_given.value())
        check_close("NeuralNetwork.forward(X)" + where, out, _through(factors, offsets, X),
                    hints=[(_through(factors[-1:], offsets[-1:], X),
                            "every layer is given X: give each layer the output of the layer before"),
                           (_through(factors[:1], offsets[:1], X), "it returns the first layer's output"),
                           (_through(factors[::-1], offsets[::-1], X), "it runs the layers from the last to the first"),
                           (_through(factors[:-1], offsets[:-1], X), "the last layer is skipped")])
        log = [(method, role) for role, method, _ in calls_in_order(layers)]
        if log != [("forward", role) for role in layers]:
            raise TestFailure(f"NeuralNetwork.forward made the calls {log}, expected each layer's forward once, in order")
    _check_network_of_own_layers(notebook, "forward", rng)


@judged(CHECKS)
def network_backward(notebook: Notebook) -> None:
    """The visible cell's case and three of the student's own, on scaler layers and a loss stand-in; then own layers.

    Adds: the loss's forward and backward both given (target, out), not swapped; Y and out unchanged; the
    gradient each layer receives and the order; then the student's own layers and loss (_check_network_of_own_layers).
    """
    rng = notebook.rng(3010)
    cases = [((2.0, 3.0), np.array([[1.0, -2.0], [0.5, 4.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]))]
    cases += [(tuple(rng.uniform(0.5, 2.0, size=depth)), rng.normal(size=(n, 3)), rng.normal(size=(n, 3)))
              for depth, n in [(3, 6), (1, 1), (4, 2)]]
    for factors, out, Y in cases:
        layers = _scalers(notebook, factors)
        L, D = float(np.sum((out - Y) ** 2) / 2), out - Y
        loss = _loss(notebook, L, D)
        where = f" ({len(factors)} layers, batch of {len(out)})"
        Y_given, out_given = notebook.array(Y), notebook.array(out)
        returned = call("NeuralNetwork.backward(Y, out)", _network(notebook, layers, loss).backward, Y_given, out_given)
        check_unchanged("NeuralNetwork.backward (Y)", Y, Y_given.value())
        check_unchanged("NeuralNetwork.backward (out)", out, out_given.value())
        check_close("the loss NeuralNetwork.backward(Y, out) returns" + where, returned, L)
        log = calls_in_order(layers)
        received = {role: args[0] for role, method, args in log if method == "backward" and args}
        last = f"layers[{len(factors) - 1}]"
        if last not in received:
            raise TestFailure("NeuralNetwork.backward did not call the last layer's backward")
        if np.ndim(received[last]) == 0:
            raise TestFailure("the last layer's backward was given a single number (the loss?): give it dL/dY_hat = "
                              "loss.backward(target, out)")
        asked = {method: args for method, args in loss.calls()}
        for method in ("forward", "backward"):
            if method not in asked:
                raise TestFailure(f"NeuralNetwork.backward did not call the loss's {method}(target, out)")
            _check_loss_arguments(f"NeuralNetwork.backward gives loss.{method}", asked[method], Y, out, where)
        upstream = D
        for i in reversed(range(len(factors))):
            check_close(f"the gradient NeuralNetwork.backward gives layers[{i}]" + where, received.get(f"layers[{i}]"), upstream,
                        hints=[(D, "every layer is given the loss gradient: give each layer what the layer above it returned")])
            upstream = factors[i] * upstream
        order = [role for role, method, _ in log if method == "backward"]
        if order != list(reversed(layers)):
            raise TestFailure(f"NeuralNetwork.backward called {order}, expected {list(reversed(layers))}: the last layer first")
    _check_network_of_own_layers(notebook, "backward", rng)


@judged(CHECKS)
def network_predict(notebook: Notebook) -> None:
    """The visible cell's case and two of the student's own (scaler layers, a loss stand-in); then own layers.

    Adds: offsets in the layers, loss.forward given (target, out) if called, then the student's own layers and
    loss (_check_network_of_own_layers).
    """
    rng = notebook.rng(3011)
    cases = [((2.0, 3.0), np.array([[1.0, -2.0], [0.5, 4.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]))]
    cases += [(tuple(rng.uniform(0.5, 2.0, size=depth)), rng.normal(size=(n, 4)), rng.normal(size=(n, 4)))
              for depth, n in [(3, 5), (1, 1)]]
    for factors, X, Y in cases:
        offsets = _offsets(factors)
        layers = _scalers(notebook, factors, offsets)
        Y_hat = _through(factors, offsets, X)
        L = float(np.sum((Y_hat - Y) ** 2) / 2)
        loss = _loss(notebook, L, Y_hat - Y)
        result = call("NeuralNetwork.predict(X, Y)", _network(notebook, layers, loss).predict, X, Y)
        if not isinstance(result, tuple) or len(result) != 2:
            raise TestFailure(f"NeuralNetwork.predict should return a pair (Y_hat, loss), got {kind(result)}")
        check_close("the Y_hat NeuralNetwork.predict(X, Y) returns", result[0], Y_hat)
        check_close("the loss NeuralNetwork.predict(X, Y) returns", result[1], L)
        asked = {method: args for method, args in loss.calls()}
        if "forward" in asked:
            _check_loss_arguments("NeuralNetwork.predict gives loss.forward", asked["forward"], Y, Y_hat, "")
    _check_network_of_own_layers(notebook, "predict", rng)


# --- 6. Training, replayed here on the student's classes ----------------------------------------

# classifier()'s parameters: its two FullyConnected layers' W and b
PARAMETERS = [(layer, key) for layer in (0, 1) for key in ("W", "b")]


def _network_parameters(network):
    return [["fetch", network, path("layers", [layer], "parameters", [key])] for layer, key in PARAMETERS]


def _train(notebook, network, data, lr, epochs, batch_size=16, seed=lambda epoch: epoch):
    """The notebook's train(): minibatch gradient descent, one round trip per epoch, its batches
    drawn with ``seed(epoch)``. The training data is sent once; each minibatch is taken from it in
    the kernel. Returns the network's parameters (PARAMETERS) after its first forward call (its
    layers initialise on their first input) and after training."""
    X_train, Y_train = notebook.run(["array", data.X_train], ["array", data.Y_train])
    first = None
    for epoch in range(epochs):
        operations, fetched = [], None
        for rows in batch_rows(len(data.X_train), batch_size, seed=seed(epoch)):
            start = len(operations)
            operations += [quiet(["take", X_train, rows]), quiet(["take", Y_train, rows]),
                           quiet(["call", network, "forward", [Earlier(start)], {}])]
            if epoch == 0 and fetched is None:
                fetched = len(operations)
                operations += _network_parameters(network)
            operations += [quiet(["call", network, "backward", [Earlier(start + 1), Earlier(start + 2)], {}]),
                           quiet(["call", network, "step", [lr], {}])]
        results = call("training", notebook.run, *operations)
        if fetched is not None:
            first = results[fetched:fetched + len(PARAMETERS)]
    return first, call("training", notebook.run, *_network_parameters(network))


def _softmax(scores):
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def classify(parameters: list, X: np.ndarray) -> np.ndarray:
    """classifier()'s output for X: ReLU(X W1 + b1), then SoftMax(H W2 + b2)."""
    W1, b1, W2, b2 = (np.asarray(p, dtype=np.float64) for p in parameters)
    return _softmax(np.maximum(X @ W1 + b1, 0.0) @ W2 + b2)


def gradient_descent(parameters: list, data: Dataset, lr: float, epochs: int, batch_size: int = 16,
                     seed: Callable[[int], int] = lambda epoch: epoch) -> list[np.ndarray]:
    """classifier()'s parameters after the notebook's train() from ``parameters``, in NumPy: what
    the student's classes give when each part is right."""
    W1, b1, W2, b2 = (np.array(p, dtype=np.float64) for p in parameters)
    for epoch in range(epochs):
        for rows in batch_rows(len(data.X_train), batch_size, seed=seed(epoch)):
            X, Y = data.X_train[rows], data.Y_train[rows]
            Z1 = X @ W1 + b1
            H = np.maximum(Z1, 0.0)
            dZ2 = (_softmax(H @ W2 + b2) - Y) / len(X)  # SoftMax and cross-entropy together
            dZ1 = (dZ2 @ W2.T) * (Z1 > 0)
            W1, b1, W2, b2 = (W1 - lr * X.T @ dZ1, b1 - lr * dZ1.sum(axis=0, keepdims=True),
                              W2 - lr * H.T @ dZ2, b2 - lr * dZ2.sum(axis=0, keepdims=True))
    return [W1, b1, W2, b2]


def _check_first(what, names, first):
    """The parameters a network starts from are those of an initialisation (init_weights' spread
    for W, zeros for b): so training must move them, not a table of trained ones."""
    for name, value in zip(names, first):
        if name.endswith("['b']") and np.any(value != 0):
            raise TestFailure(f"{what}: {name} starts at values other than 0: FullyConnected initialises b with zeros")
        if name.endswith("['W']") and value.ndim == 2:
            spread = math.sqrt(2.0 / sum(value.shape))
            if not 0.5 * spread < float(np.std(value)) < 2 * spread:
                raise TestFailure(f"{what}: {name} starts with a standard deviation of {np.std(value):.3g}, not about "
                                  f"{spread:.3g}: FullyConnected initialises W with init_weights")


def _shapes(inputs, num_hidden, num_classes):
    """The shapes of classifier(num_hidden, num_classes)'s PARAMETERS, for inputs of ``inputs`` features."""
    return [(inputs, num_hidden), (1, num_hidden), (num_hidden, num_classes), (1, num_classes)]


def _trained(notebook, network, data, what, lr, epochs, num_hidden, batch_size=16, seed=lambda epoch: epoch):
    """Train, then check that the parameters are those of the same gradient descent replayed
    here from the network's first ones (an initialisation); returns them."""
    first, parameters = _train(notebook, network, data, lr, epochs, batch_size, seed)
    names = [f"layer {layer}'s parameters['{key}']" for layer, key in PARAMETERS]
    shapes = _shapes(data.X_train.shape[1], num_hidden, data.num_classes)
    first = parameter_arrays(f"{what}, before training", names, first, shapes)
    parameters = parameter_arrays(f"{what}, after training", names, parameters, shapes)
    _check_first(what, names, first)
    try:
        replayed = gradient_descent(first, data, lr, epochs, batch_size, seed)
    except ValueError:
        raise TestFailure(f"{what}: the layers' parameters have shapes {[np.shape(p) for p in first]}, "
                          "not those of classifier()") from None
    check_replayed(what, names, parameters, replayed, rtol=1e-5, atol=1e-8)
    return parameters


def _accuracy(notebook, network, parameters, X, y, which="test"):
    """The fraction of the rows of X whose largest output is the class y, from the network that
    ``parameters`` make, once network.forward is seen to be that network."""
    out = np.asarray(call(f"NeuralNetwork.forward(X_{which[:4]})", network.forward, X))
    expected = classify(parameters, X)
    if out.shape != expected.shape:
        raise TestFailure(f"after training, NeuralNetwork.forward returned shape {out.shape} for {len(X)} {which} samples")
    check_close(f"after training, NeuralNetwork.forward(X_{which[:4]}) vs the network its layers' parameters make",
                out, expected)
    return float(np.mean(expected.argmax(axis=1) == y))


@judged(CHECKS)
def training_check(notebook: Notebook) -> None:
    """The notebook's iris and digits training, run here: gradient descent replayed, 90% accuracy from the weights.

    The iris setting chosen on the validation set and the digits network must reach 90% test
    accuracy, measured by the judge from the network that the trained parameters make. Every network
    must start from an initialisation and end with the parameters of gradient descent from there
    (replayed here), and the digits network's minibatches are the student's own (drawn with their
    key), so neither a network that recognises the shipped test rows nor parameters from a table can
    pass. (The visible cell reads the notebook's own iris_accuracy and digits_accuracy.)"""
    iris = load("iris", validation_fraction=0.2)
    searched = {}  # (validation accuracy, -order) -> network: the first of equal settings wins, as max() does
    for order, (lr, num_hidden) in enumerate((lr, h) for lr in (0.01, 0.1, 0.5) for h in (4, 16)):
        notebook.seed(0)  # the same initial weights for every setting
        network = call(f"classifier({num_hidden}, {iris.num_classes})", notebook.new, "classifier", num_hidden, iris.num_classes)
        parameters = _trained(notebook, network, iris, f"iris, lr {lr}, {num_hidden} hidden", lr, 40, num_hidden)
        searched[_accuracy(notebook, network, parameters, iris.X_val, iris.y_val, "validation"), -order] = network, parameters
    accuracy = _accuracy(notebook, *searched[max(searched)], iris.X_test, iris.y_test)
    if not accuracy >= 0.9:
        raise TestFailure(f"the test accuracy of the iris setting chosen on the validation set is {accuracy:.3f}, "
                          "not above 0.9 (chance is 0.333): check the parts above")
    digits = load("digits")
    notebook.seed(0)
    network = call("classifier(64, 10)", notebook.new, "classifier", 64, digits.num_classes)
    own = (lambda epoch: [6000 + epoch, *notebook.key]) if notebook.key else (lambda epoch: epoch)
    parameters = _trained(notebook, network, digits, "digits", 0.1, 15, 64, batch_size=32, seed=own)
    accuracy = _accuracy(notebook, network, parameters, digits.X_test, digits.y_test)
    if not accuracy >= 0.9:
        raise TestFailure(f"the test accuracy on digits is {accuracy:.3f}, not above 0.9 (chance is 0.1): check the parts above")


# --- 7. einsum -----------------------------------------------------------------------------------

def check_einsum(notebook: Notebook, what: str, name: str, args: tuple[np.ndarray, ...], expected: np.ndarray | float) -> None:
    """``name(*args)`` equals ``expected`` and is what a call of NumPy's einsum on ``args``
    themselves returned (the kernel records the calls: see gradcheck.einsum_problem)."""
    arrays = [np.asarray(a, dtype=np.float64) for a in args]
    result, calls = call(what, notebook.run, ["einsum", name, arrays])[0]
    check_close(what, result, expected)
    if not isinstance(calls, list) or not all(isinstance(c, list) and len(c) == 2 and isinstance(c[0], list) and c[0]
                                              for c in calls):
        raise TestFailure(f"{what}: its np.einsum calls could not be read (was the kernel's agent changed?)")
    problem = einsum_problem(arrays, calls, np.asarray(result, dtype=np.float64))
    if problem:
        raise TestFailure(f"{what} gives the right value but {problem}")


@judged(CHECKS)
def einsum_classics(notebook: Notebook) -> None:
    """The visible cell's checks (np.einsum's result on the arguments themselves), then shapes of the student's own.

    trace, matmul and batched_matmul at new shapes, sizes of 1 included; the kernel records np.einsum's calls.
    """
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    check_einsum(notebook, "trace(A)", "trace", (A,), np.trace(A))
    check_einsum(notebook, "matmul(A, B)", "matmul", (A, B), A @ B)
    A, B = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4, 5))
    check_einsum(notebook, "batched_matmul(A, B)", "batched_matmul", (A, B), np.matmul(A, B))

    rng = notebook.rng(3012)
    for n in (1, 5):
        A = rng.normal(size=(n, n))
        check_einsum(notebook, f"trace(A) for A of shape {A.shape}", "trace", (A,), np.trace(A))
    for n, m, p in [(2, 5, 3), (1, 1, 1), (6, 2, 1)]:
        A, B = rng.normal(size=(n, m)), rng.normal(size=(m, p))
        check_einsum(notebook, f"matmul(A, B) for shapes {A.shape} and {B.shape}", "matmul", (A, B), A @ B)
    for b, n, m, p in [(4, 1, 3, 2), (1, 2, 2, 5), (3, 4, 1, 3)]:
        A, B = rng.normal(size=(b, n, m)), rng.normal(size=(b, m, p))
        check_einsum(notebook, f"batched_matmul(A, B) for shapes {A.shape} and {B.shape}", "batched_matmul", (A, B),
                     np.matmul(A, B))


@judged(CHECKS)
def einsum_more(notebook: Notebook) -> None:
    """The visible cell's checks (np.einsum's result on the arguments themselves), then shapes of the student's own.

    outer, diagonal, column_sums, bilinear and pairwise_dots at three sets of sizes, sizes of 1 included.
    """
    rng = np.random.default_rng(1)
    u, v, A, B = rng.normal(size=3), rng.normal(size=4), rng.normal(size=(3, 3)), rng.normal(size=(3, 4))
    check_einsum(notebook, "outer(u, v)", "outer", (u, v), np.outer(u, v))
    check_einsum(notebook, "diagonal(A)", "diagonal", (A,), np.diag(A))
    check_einsum(notebook, "column_sums(B)", "column_sums", (B,), B.sum(axis=0))
    check_einsum(notebook, "bilinear(u, B, v)", "bilinear", (u, B, v), float(u @ B @ v))
    X, Y = rng.normal(size=(2, 4)), rng.normal(size=(5, 4))
    check_einsum(notebook, "pairwise_dots(X, Y)", "pairwise_dots", (X, Y), X @ Y.T)

    rng_hidden = notebook.rng(3013)
    for n, m in [(1, 1), (5, 2), (2, 6)]:
        u, v = rng_hidden.normal(size=n), rng_hidden.normal(size=m)
        A, B = rng_hidden.normal(size=(n, n)), rng_hidden.normal(size=(n, m))
        check_einsum(notebook, f"outer(u, v) for shapes {u.shape} and {v.shape}", "outer", (u, v), np.outer(u, v))
        check_einsum(notebook, f"diagonal(A) for A of shape {A.shape}", "diagonal", (A,), np.diag(A))
        check_einsum(notebook, f"column_sums(B) for B of shape {B.shape}", "column_sums", (B,), B.sum(axis=0))
        check_einsum(notebook, f"bilinear(x, A, y) for A of shape {B.shape}", "bilinear", (u, B, v), float(u @ B @ v))
        X, Y = rng_hidden.normal(size=(n, 3)), rng_hidden.normal(size=(m, 3))
        check_einsum(notebook, f"pairwise_dots(X, Y) for shapes {X.shape} and {Y.shape}", "pairwise_dots", (X, Y), X @ Y.T)


# --- 8. Conv2D ------------------------------------------------------------------------------------

def _out_shape(shape, window, stride, pad, channels):
    """The output shape of a convolution or pooling of images of ``shape`` (NHWC)."""
    return (shape[0], (shape[1] + 2 * pad[0] - window[0]) // stride + 1,
            (shape[2] + 2 * pad[1] - window[1]) // stride + 1, channels)


def _options(**options):
    return ", ".join(f"{key}={value}" for key, value in options.items())


def _conv(notebook, n_out, kernel_shape, W, b, activation=None, **options):
    """The student's Conv2D with the given parameters (created by a first forward call);
    ``activation`` is a factor (an activation of the judge's: Z -> factor * Z + OFFSET), one of
    the student's (a Remote) or None."""
    if isinstance(activation, Remote):  # the student's own
        options["activation"] = activation
    elif activation is not None:
        options["activation"] = notebook.scaler(activation, OFFSET, "ReLU", ACTIVATION_ARGUMENTS)
    layer = call(f"Conv2D({n_out}, {kernel_shape})", notebook.new, "Conv2D", n_out, tuple(kernel_shape), **options)
    call(f"Conv2D({n_out}, {kernel_shape}).forward(X)", layer.forward, np.zeros((1, 6, 6, np.shape(W)[2])))
    put(layer, W_PATH, np.array(W, dtype=float))
    put(layer, B_PATH, np.array(b, dtype=float))
    return layer


CONV_CASES = [((2, 5, 6, 3), 4, (3, 2), 2, (1, 0)), ((1, 7, 4, 1), 2, (2, 2), 1, (0, 1)), ((3, 6, 6, 2), 3, (3, 3), 3, (1, 1)),
              ((2, 5, 5, 2), 1, (1, 1), 1, (0, 0)), ((1, 4, 9, 2), 2, (2, 4), 2, (2, 1))]


@judged(CHECKS)
def conv2d_forward(notebook: Notebook) -> None:
    """The visible cell's values (Tripling as notebook.scaler), then five cases against PyTorch; the student's ReLU.

    The cases vary stride, padding (uneven too), channels and kernel shapes; X left unchanged; one more with an
    activation, stride 2 and pad (0, 1); then Conv2D with the student's own ReLU (_check_conv_with_own_relu).
    """
    def forward(layer, X):
        return call("Conv2D.forward(X)", layer.forward, X)

    X = np.arange(9.0).reshape(1, 3, 3, 1)
    check_close("Conv2D(1, (2, 2)).forward(X), X a 3x3 image", forward(_conv(notebook, 1, (2, 2), np.ones((2, 2, 1, 1)), [[1.0]]), X),
                np.array([9.0, 13.0, 21.0, 25.0]).reshape(1, 2, 2, 1),
                hints=[(np.array([8.0, 12.0, 20.0, 24.0]).reshape(1, 2, 2, 1), "the bias is missing")])
    check_close("Conv2D(1, (2, 2)).forward(X) with the kernel [[1, 2], [3, 4]]",
                forward(_conv(notebook, 1, (2, 2), np.arange(1.0, 5.0).reshape(2, 2, 1, 1), [[0.0]]), X),
                np.array([27.0, 37.0, 57.0, 67.0]).reshape(1, 2, 2, 1),
                hints=[(np.array([13.0, 23.0, 43.0, 53.0]).reshape(1, 2, 2, 1),
                        "the kernel is flipped: PyTorch's conv2d, like this layer, does not flip it")])
    check_close("Conv2D(1, (2, 2), stride=2, pad=1).forward(X)",
                forward(_conv(notebook, 1, (2, 2), np.ones((2, 2, 1, 1)), [[1.0]], stride=2, pad=1), X),
                np.array([1.0, 4.0, 10.0, 25.0]).reshape(1, 2, 2, 1))
    layer = _conv(notebook, 2, (1, 1), [[[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]], [[0.0, 0.0]], activation=3.0)
    X = np.arange(12.0).reshape(1, 2, 2, 3)
    linear = np.stack([X[..., 0] + X[..., 2], X[..., 1] + X[..., 2]], axis=-1)
    check_close(f"Conv2D(2, (1, 1){_activation_name(3.0)}).forward(X), X with 3 channels", forward(layer, X),
                _activated(3.0, linear), hints=[(linear, "the activation is not applied")])

    rng = notebook.rng(3014)
    for shape, n_out, kernel_shape, stride, pad in CONV_CASES:
        X, W, b = rng.normal(size=shape), rng.normal(size=kernel_shape + (shape[3], n_out)), rng.normal(size=(1, n_out))
        expected, _ = vjp("conv2d", (X, W, b), np.zeros(_out_shape(shape, kernel_shape, stride, pad, n_out)),
                          stride=stride, pad=list(pad))
        layer, X_given = _conv(notebook, n_out, kernel_shape, W, b, stride=stride, pad=pad), notebook.array(X)
        check_close(f"Conv2D({n_out}, {kernel_shape}, stride={stride}, pad={pad}).forward(X) for X of shape {shape}",
                    forward(layer, X_given), expected)
        check_unchanged("Conv2D.forward", X, X_given.value())
    X, W, b = rng.normal(size=(2, 5, 4, 2)), rng.normal(size=(2, 3, 2, 3)), rng.normal(size=(1, 3))
    expected, _ = vjp("conv2d", (X, W, b), np.zeros((2, 2, 2, 3)), stride=2, pad=[0, 1])
    check_close(f"Conv2D(3, (2, 3){_activation_name(3.0)}, stride=2, pad=(0, 1)).forward(X)",
                forward(_conv(notebook, 3, (2, 3), W, b, activation=3.0, stride=2, pad=(0, 1)), X), _activated(3.0, expected),
                hints=[(expected, "the activation is not applied")])
    _check_conv_with_own_relu(notebook, "forward", rng)


@judged(CHECKS)
def conv2d_backward(notebook: Notebook) -> None:
    """The visible cell's checks; four cases against PyTorch; a scaler activation; gradients set, not added; own ReLU.

    The cell's check_layer_backward runs with a dLdY the kernel never saw; then dLdY unchanged, finite
    differences with an activation (stride 2, pad (1, 0)), two backward calls leaving one's gradients, the
    latest forward's X, and Conv2D with the student's own ReLU (_check_conv_with_own_relu).
    """
    X = np.arange(9.0).reshape(1, 3, 3, 1)
    layer = _conv(notebook, 1, (2, 2), np.arange(1.0, 5.0).reshape(2, 2, 1, 1), [[0.0]])
    call("Conv2D.forward(X)", layer.forward, X)
    dX = call("Conv2D.backward(dLdY)", layer.backward, np.ones((1, 2, 2, 1)))
    check_close("Conv2D(1, (2, 2)).backward(dLdY) for dLdY of ones", dX,
                np.array([[1.0, 3.0, 2.0], [4.0, 10.0, 6.0], [3.0, 7.0, 4.0]]).reshape(1, 3, 3, 1))
    check_close("Conv2D(1, (2, 2)).gradients['W'] for dLdY of ones", fetch(layer, DW_PATH),
                np.array([8.0, 12.0, 20.0, 24.0]).reshape(2, 2, 1, 1))
    check_close("Conv2D(1, (2, 2)).gradients['b'] for dLdY of ones", fetch(layer, DB_PATH), [[4.0]])
    rng = np.random.default_rng(0)
    for options in ({}, {"stride": 2, "pad": 1}):
        W, b, X = rng.normal(size=(2, 3, 3, 2)), rng.normal(size=(1, 2)), rng.normal(size=(2, 4, 5, 3))
        pad = (options.get("pad", 0),) * 2
        check_backward_unseen(f"Conv2D(2, (2, 3){', ' if options else ''}{_options(**options)})",
                                    lambda: _conv(notebook, 2, (2, 3), W, b, **options), X,
                                    _out_shape(X.shape, (2, 3), options.get("stride", 1), pad, 2),
                                    params=[(W_PATH, DW_PATH), (B_PATH, DB_PATH)], upstream="dLdY")

    rng = notebook.rng(3015)
    for shape, n_out, kernel_shape, stride, pad in CONV_CASES[:3] + CONV_CASES[4:]:
        X, W, b = rng.normal(size=shape), rng.normal(size=kernel_shape + (shape[3], n_out)), rng.normal(size=(1, n_out))
        G = rng.normal(size=_out_shape(shape, kernel_shape, stride, pad, n_out))
        _, (dX, dW, db) = vjp("conv2d", (X, W, b), G, stride=stride, pad=list(pad))
        layer = _conv(notebook, n_out, kernel_shape, W, b, stride=stride, pad=pad)
        call("Conv2D.forward(X)", layer.forward, X)
        G_given = notebook.array(G)
        where = f" (Conv2D({n_out}, {kernel_shape}, stride={stride}, pad={pad}), X of shape {shape})"
        check_call("Conv2D.backward(dLdY): returned dL/dX" + where, layer.backward, G_given, expected=dX)
        check_close("Conv2D.gradients['W']" + where, fetch(layer, DW_PATH), dW, factors={"N": shape[0]})
        check_close("Conv2D.gradients['b']" + where, fetch(layer, DB_PATH), db, factors={"N": shape[0]})
        check_unchanged("Conv2D.backward", G, G_given.value())
    W, b, X = rng.normal(size=(3, 2, 2, 2)), rng.normal(size=(1, 2)), rng.normal(size=(2, 5, 4, 2))
    check_backward_unseen(f"Conv2D(2, (3, 2){_activation_name(3.0)}, stride=2, pad=(1, 0))",
                                lambda: _conv(notebook, 2, (3, 2), W, b, activation=3.0, stride=2, pad=(1, 0)), X,
                                _out_shape(X.shape, (3, 2), 2, (1, 0), 2), params=[(W_PATH, DW_PATH), (B_PATH, DB_PATH)],
                                upstream="dLdY")
    check_backward_sets_gradients(notebook, "Conv2D(2, (3, 2))", _conv(notebook, 2, (3, 2), W, b, stride=2, pad=(1, 0)), X,
                                  rng.normal(size=_out_shape(X.shape, (3, 2), 2, (1, 0), 2)))
    # backward must use the whole input of the latest forward call
    W, b = rng.normal(size=(2, 2, 2, 3)), rng.normal(size=(1, 3))
    X1, X2, G = rng.normal(size=(2, 4, 4, 2)), rng.normal(size=(2, 4, 4, 2)), rng.normal(size=(2, 3, 3, 3))
    _, (dX, dW, _) = vjp("conv2d", (X2, W, b), G, stride=1, pad=[0, 0])
    layer = _conv(notebook, 3, (2, 2), W, b)
    call("Conv2D.forward(X1)", layer.forward, X1)
    call("Conv2D.forward(X2)", layer.forward, X2)
    check_call("Conv2D.backward(dLdY) after forward(X1), forward(X2)", layer.backward, G, expected=dX)
    check_close("Conv2D.gradients['W'] after forward(X1), forward(X2), backward(dLdY)", fetch(layer, DW_PATH), dW,
                hints=[(vjp("conv2d", (X1, W, b), G, stride=1, pad=[0, 0])[1][1],
                        "it uses X1: backward must use the input of the latest forward call")])
    _check_conv_with_own_relu(notebook, "backward", rng)


def _check_conv_with_own_relu(notebook, part, rng):
    """Conv2D with the student's own ReLU, against that ReLU called by the judge on the layer's Z
    and dL/dY (as _check_fc_with_own_relu)."""
    shape, n_out, kernel_shape, stride, pad = CONV_CASES[int(rng.integers(len(CONV_CASES)))]
    X, W, b = rng.normal(size=shape), rng.normal(size=kernel_shape + (shape[3], n_out)), rng.normal(size=(1, n_out))
    G = rng.normal(size=_out_shape(shape, kernel_shape, stride, pad, n_out))
    Z, _ = vjp("conv2d", (X, W, b), np.zeros(G.shape), stride=stride, pad=list(pad))
    own = _own_relu(notebook, Z, G)
    if own is None:
        return
    Y, dZ = own
    layer = _conv(notebook, n_out, kernel_shape, W, b, call("ReLU()", notebook.new, "ReLU"), stride=stride, pad=pad)
    where = f" (Conv2D({n_out}, {kernel_shape}, ReLU(), stride={stride}, pad={pad}) {OWN_RELU})"
    check_call("Conv2D.forward(X)" + where, layer.forward, X, expected=Y, hints=[(Z, "the activation is not applied")])
    if part == "forward":
        return
    _, (dX, dW, db) = vjp("conv2d", (X, W, b), dZ, stride=stride, pad=list(pad))
    check_call("Conv2D.backward(dLdY): returned dL/dX" + where, layer.backward, G, expected=dX,
               hints=[(vjp("conv2d", (X, W, b), G, stride=stride, pad=list(pad))[1][0], NO_ACTIVATION_BACKWARD)])
    check_close("Conv2D.gradients['W']" + where, fetch(layer, DW_PATH), dW, factors={"N": shape[0]})
    check_close("Conv2D.gradients['b']" + where, fetch(layer, DB_PATH), db, factors={"N": shape[0]})


# --- 9. Pooling -------------------------------------------------------------------------------------

def _pool(notebook, kernel_shape, mode, **options):
    return call(f"Pool2D({kernel_shape}, {mode!r})", notebook.new, "Pool2D", tuple(kernel_shape), mode, **options)


POOL_CASES = [((2, 5, 6, 3), (2, 3), 1, (1, 1)), ((1, 6, 6, 2), (3, 3), 2, (1, 1)), ((2, 4, 7, 1), (2, 2), 2, (0, 0)),
              ((1, 5, 5, 2), (3, 2), 1, (0, 1))]
TORCH_POOL = {"max": "max_pool2d", "average": "avg_pool2d"}


@judged(CHECKS)
def pool2d_forward(notebook: Notebook) -> None:
    """The visible cell's values, then max and average pooling at four cases each against PyTorch; X unchanged."""
    def forward(pool, X):
        return call("Pool2D.forward(X)", pool.forward, X)

    X = np.arange(16.0).reshape(1, 4, 4, 1)
    check_close("Pool2D((2, 2), 'max', stride=2).forward(X)", forward(_pool(notebook, (2, 2), "max", stride=2), X),
                np.array([5.0, 7.0, 13.0, 15.0]).reshape(1, 2, 2, 1))
    check_close("Pool2D((2, 2), 'average', stride=2).forward(X)", forward(_pool(notebook, (2, 2), "average", stride=2), X),
                np.array([2.5, 4.5, 10.5, 12.5]).reshape(1, 2, 2, 1))
    check_close("Pool2D((2, 2), 'max', stride=1).forward(X), overlapping windows", forward(_pool(notebook, (2, 2), "max"), X),
                np.array([5.0, 6.0, 7.0, 9.0, 10.0, 11.0, 13.0, 14.0, 15.0]).reshape(1, 3, 3, 1))
    X = -np.arange(1.0, 5.0).reshape(1, 2, 2, 1)
    check_close("Pool2D((2, 2), 'max', stride=2, pad=1).forward(X) of negative numbers",
                forward(_pool(notebook, (2, 2), "max", stride=2, pad=1), X), X,
                hints=[(np.zeros((1, 2, 2, 1)), "max pooling pads with -inf, not zeros: padding must never win")])

    rng = notebook.rng(3016)
    for mode, name in TORCH_POOL.items():
        for shape, kernel_shape, stride, pad in POOL_CASES:
            X = rng.normal(size=shape)
            expected, _ = vjp(name, (X,), np.zeros(_out_shape(shape, kernel_shape, stride, pad, shape[3])),
                              kernel=list(kernel_shape), stride=stride, pad=list(pad))
            X_given = notebook.array(X)
            check_close(f"Pool2D({kernel_shape}, {mode!r}, stride={stride}, pad={pad}).forward(X) for X of shape {shape}",
                        forward(_pool(notebook, kernel_shape, mode, stride=stride, pad=pad), X_given), expected)
            check_unchanged("Pool2D.forward", X, X_given.value())


@judged(CHECKS)
def pool2d_backward(notebook: Notebook) -> None:
    """The visible cell's checks, then five cases per mode against PyTorch (overlapping windows), the latest X.

    The cell's finite differences use a dLdY the kernel never saw; dLdY left unchanged; after forward(X1),
    forward(X2), max pooling's backward uses X2.
    """
    X = np.array([[1.0, 2.0, 3.0], [4.0, 9.0, 5.0], [6.0, 7.0, 8.0]]).reshape(1, 3, 3, 1)
    pool = _pool(notebook, (2, 2), "max")
    call("Pool2D.forward(X)", pool.forward, X)
    expected = np.zeros((1, 3, 3, 1))
    expected[0, 1, 1, 0] = 4.0
    check_call("Pool2D((2, 2), 'max').backward(dLdY) where 9 is the maximum of all four overlapping windows",
               pool.backward, np.ones((1, 2, 2, 1)), expected=expected,
               hints=[(expected / 4, "the gradients of overlapping windows must be added up (+=), not assigned")])
    rng = np.random.default_rng(0)
    for mode in ("max", "average"):
        for stride, margin in [(1, 0), (2, 1)]:
            X = rng.normal(size=(2, 5, 4, 2))
            check_backward_unseen(f"Pool2D((2, 2), {mode!r}, stride={stride}, pad={margin})",
                                        lambda: _pool(notebook, (2, 2), mode, stride=stride, pad=margin), X,
                                        _out_shape(X.shape, (2, 2), stride, (margin, margin), 2), upstream="dLdY",
                                        factors={"the window size": 4})

    rng = notebook.rng(3017)
    for mode, name in TORCH_POOL.items():
        for shape, kernel_shape, stride, pad in POOL_CASES + [((1, 4, 4, 1), (3, 3), 1, (0, 0))]:
            X = rng.normal(size=shape)
            G = rng.normal(size=_out_shape(shape, kernel_shape, stride, pad, shape[3]))
            _, (expected,) = vjp(name, (X,), G, kernel=list(kernel_shape), stride=stride, pad=list(pad))
            pool = _pool(notebook, kernel_shape, mode, stride=stride, pad=pad)
            call("Pool2D.forward(X)", pool.forward, X)
            G_given = notebook.array(G)
            check_call(f"Pool2D({kernel_shape}, {mode!r}, stride={stride}, pad={pad}).backward(dLdY) for X of shape {shape}",
                       pool.backward, G_given, expected=expected,
                       factors={"the window size": kernel_shape[0] * kernel_shape[1]})
            check_unchanged("Pool2D.backward", G, G_given.value())
    # backward must use the latest forward call
    X1, X2, G = rng.normal(size=(1, 4, 4, 2)), rng.normal(size=(1, 4, 4, 2)), rng.normal(size=(1, 3, 3, 2))
    pool = _pool(notebook, (2, 2), "max")
    call("Pool2D.forward(X1)", pool.forward, X1)
    call("Pool2D.forward(X2)", pool.forward, X2)
    _, (expected,) = vjp("max_pool2d", (X2,), G, kernel=[2, 2], stride=1, pad=[0, 0])
    check_call("Pool2D.backward(dLdY) after forward(X1), forward(X2)", pool.backward, G, expected=expected,
               hints=[(vjp("max_pool2d", (X1,), G, kernel=[2, 2], stride=1, pad=[0, 0])[1][0],
                       "it uses X1: backward must use the latest forward call")])


# --- 10. PyTorch: the models' outputs checked against their own parameters -----------------------

def _require_torch(notebook):
    if not notebook.run(["torch_available"])[0]:
        raise TestFailure("this part needs PyTorch, which is not installed (pip install torch); the other parts do not")


def _output(notebook, what, model, X):
    return np.asarray(call(what, notebook.run, ["module", model, [X]])[0])


def _parameters(notebook, what, model, shapes, rng):
    """Parameters of the judge's, loaded into the model in place of its own: weights scaled by
    their fan-in and biases of either sign (a model whose biases keep its ReLUs always on would
    look linear-free otherwise). Matched to the expected ``shapes`` in order, or by shape when the
    shapes are all different; a TestFailure names what the model has instead."""
    where = _order(what, call(what, notebook.run, ["torch_state", model])[0]["parameters"], shapes)
    values = [rng.normal(size=shape) / np.sqrt(math.prod(shape[1:])) if len(shape) > 1 else 0.5 * rng.normal(size=shape)
              for shape in shapes]
    ordered = [None] * len(shapes)
    for value, index in zip(values, where):
        ordered[index] = value
    call(what, notebook.run, ["torch_load", model, ordered])
    return values


def _order(what, found, shapes):
    """Where each of ``shapes`` is among a model's parameters ``found`` (in the order of
    parameters()): in that order, or by shape when the shapes are all different; a TestFailure
    names what the model has instead."""
    have = [tuple(np.shape(p)) for p in found] if isinstance(found, list) else []
    if have == list(shapes):
        return list(range(len(shapes)))
    if sorted(have) == sorted(shapes) and len(set(shapes)) == len(shapes):
        return [have.index(shape) for shape in shapes]
    raise TestFailure(f"{what} has parameters of shapes {have}, expected {list(shapes)}")


def _relu(x):
    return np.maximum(x, 0.0)


def _conv_nchw(X, W, b, pad=1):
    """PyTorch's conv2d (NCHW, stride 1) in NumPy."""
    X = np.pad(X, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    rows, cols = X.shape[2] - W.shape[2] + 1, X.shape[3] - W.shape[3] + 1
    out = np.zeros((len(X), len(W), rows, cols)) + b[None, :, None, None]
    for i in range(W.shape[2]):
        for j in range(W.shape[3]):
            out += np.einsum("nchw,oc->nohw", X[:, :, i:i + rows, j:j + cols], W[:, :, i, j])
    return out


def _max_pool2(X):
    n, c, rows, cols = X.shape
    return X[:, :, :rows // 2 * 2, :cols // 2 * 2].reshape(n, c, rows // 2, 2, cols // 2, 2).max(axis=(3, 5))


def _mlp_shapes(n_in, n_hidden, n_out):
    return [(n_hidden, n_in), (n_hidden,), (n_out, n_hidden), (n_out,)]


def mlp_logits(parameters: list, X: np.ndarray) -> np.ndarray:
    """make_mlp's model in NumPy: Linear, ReLU, Linear (weights of shape (out, in), as PyTorch's)."""
    W1, b1, W2, b2 = parameters
    return _relu(X @ W1.T + b1) @ W2.T + b2


def _cnn_shapes(n_classes, shape):
    return [(8, 1, 3, 3), (8,), (16, 8, 3, 3), (16,), (n_classes, 16 * (shape[0] // 4) * (shape[1] // 4)), (n_classes,)]


def cnn_logits(parameters: list, X: np.ndarray) -> np.ndarray:
    """make_cnn's model in NumPy: two 3x3 convolutions (padding 1), each with ReLU and 2x2 max
    pooling, then Linear; ``X`` of shape (N, 1, rows, cols)."""
    W1, b1, W2, b2, W3, b3 = parameters
    hidden = _max_pool2(_relu(_conv_nchw(_max_pool2(_relu(_conv_nchw(X, W1, b1))), W2, b2)))
    return hidden.reshape(len(X), -1) @ W3.T + b3


def _check_mlp(notebook, n_in, n_hidden, n_out, rng):
    what = f"make_mlp({n_in}, {n_hidden}, {n_out})"
    mlp = call(what, notebook.new, "make_mlp", n_in, n_hidden, n_out)
    W1, b1, W2, b2 = parameters = _parameters(notebook, what, mlp, _mlp_shapes(n_in, n_hidden, n_out), rng)
    for X in _inputs(rng, (6, n_in)):
        out = _output(notebook, f"{what}(X)", mlp, X)
        check_array(f"{what} applied to X of shape {X.shape}", out, (6, n_out))
        check_close(f"{what}(X) against Linear, ReLU, Linear with parameters the test loaded into it", out,
                    mlp_logits(parameters, X), rtol=1e-4, atol=1e-5,
                    hints=[((X @ W1.T + b1) @ W2.T + b2, "the model is linear: put a ReLU between the two Linear layers")])


def _inputs(rng, shape):
    """Inputs of both kinds a model meets: of either sign, and in [0, 1] as images are."""
    return [rng.normal(size=shape), rng.uniform(0.0, 1.0, size=shape)]


def _check_cnn(notebook, n_classes, shape, rng):
    what = f"make_cnn({n_classes}, {shape})"
    cnn = call(what, notebook.new, "make_cnn", n_classes, tuple(shape))
    X = rng.normal(size=(3, 1, *shape))
    check_array(f"{what} applied to images of shape {X.shape}", _output(notebook, f"{what}(X)", cnn, X), (3, n_classes))
    parameters = _parameters(notebook, what, cnn, _cnn_shapes(n_classes, shape), rng)
    for X in _inputs(rng, X.shape):
        out = _output(notebook, f"{what}(X)", cnn, X)
        check_close(f"{what}(X) against two 3x3 convolutions (padding 1), each with ReLU and 2x2 max pooling, then Linear, "
                    "with parameters the test loaded into it", out, cnn_logits(parameters, X), rtol=1e-4, atol=1e-5)


@judged(CHECKS)
def pytorch_models(notebook: Notebook) -> None:
    """make_mlp and make_cnn's outputs at new sizes, recomputed in NumPy from parameters the judge loads into them.

    In place of the cell's parameter count, f(-x) = -f(x) test and list of nn.Conv2d: three MLP sizes and
    three image shapes, parameters of the expected shapes (in order, or all different), inputs of either
    sign and in [0, 1].
    """
    _require_torch(notebook)
    rng = notebook.rng(3019)
    for sizes in [(5, 7, 3), (1, 1, 1), (64, 32, 10)]:
        _check_mlp(notebook, *sizes, rng)
    for n_classes, shape in [(10, (8, 8)), (4, (12, 8)), (3, (4, 16))]:
        _check_cnn(notebook, n_classes, shape, rng)


FIXED_WEIGHT = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
PER_BATCH = "it averages the batches' mean losses: the last batch is smaller, weigh each by its size"


def _example_losses(X, y, W=FIXED_WEIGHT):
    """Cross-entropy of the linear model W (no bias) on X, y, per example."""
    logits = X @ W.T
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(y)), y]


def _sgd_epoch(X, y, batch_size, lr, W=FIXED_WEIGHT):
    """What one epoch of SGD on cross-entropy does to the linear model W (bias 0): (W, b)."""
    W, b = W.copy(), np.zeros(len(W))
    for start in range(0, len(X), batch_size):
        Xb, yb = X[start:start + batch_size], y[start:start + batch_size]
        logits = Xb @ W.T + b
        P = np.exp(logits - logits.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
        P[np.arange(len(yb)), yb] -= 1
        W, b = W - lr * (P.T @ Xb) / len(yb), b - lr * P.sum(axis=0) / len(yb)
    return W, b


@judged(CHECKS)
def pytorch_loop(notebook: Notebook) -> None:
    """The visible cell's checks; an epoch on weights, data and lr of the student's own; evaluate without gradients.

    Adds: train_epoch's SGD steps against NumPy's and model.train() after evaluate's eval mode; evaluate on a
    model with dropout (p 0.9) that records each call: no gradients, weights unchanged, the loss without
    dropout, and the accuracy over examples (7 in batches of 4).
    """
    _require_torch(notebook)

    def make(kind, *args):
        return notebook.run(["torch", kind, list(args)])[0]

    def evaluate(model, X, y, batch_size):
        result = call("evaluate(model, loader, loss_fn)", notebook.function, "evaluate", model, make("loader", X, y, batch_size),
                      make("cross_entropy"))
        if not isinstance(result, tuple) or len(result) != 2:
            raise TestFailure(f"evaluate should return a pair (mean loss, accuracy), got {kind(result)}")
        return result

    def train_epoch(model, X, y, batch_size, lr):
        return call("train_epoch(model, loader, loss_fn, optimizer)", notebook.function, "train_epoch", model,
                    make("loader", X, y, batch_size), make("cross_entropy"), make("sgd", model, lr))

    X, y = np.array([[2.0, 1.0], [0.0, 3.0], [-1.0, -1.0], [2.0, 1.0], [0.5, 0.0]]), np.array([0, 1, 2, 1, 0])
    losses = _example_losses(X, y)
    batch_means = np.mean([losses[:2].mean(), losses[2:4].mean(), losses[4:].mean()])
    loss, accuracy = evaluate(make("linear", FIXED_WEIGHT), X, y, 2)
    check_close("the accuracy evaluate returns (4 of 5 right, batches of 2)", accuracy, 0.8,
                hints=[(4 / 3, "it divides the number of right answers by the number of batches, not of examples")])
    check_close("the mean loss evaluate returns (batches of 2, 2 and 1)", loss, float(losses.mean()), rtol=1e-5,
                hints=[(batch_means, PER_BATCH)])
    check_close("the mean loss train_epoch returns with a learning rate of 0",
                train_epoch(make("linear", FIXED_WEIGHT), X, y, 2, 0.0), float(losses.mean()), rtol=1e-5,
                hints=[(batch_means, PER_BATCH)])
    model = make("linear", FIXED_WEIGHT)
    train_epoch(model, X, y, 2, 0.5)
    after = evaluate(model, X, y, 5)[0]
    if not after < losses.mean():
        raise TestFailure(f"after train_epoch with a learning rate of 0.5 the loss is {after:.4f}, not below {losses.mean():.4f}: "
                          "does it call loss.backward() and optimizer.step()?")

    # weights, data and learning rate of the student's own: a train_epoch that steps only for
    # the notebook's model gains nothing
    rng = notebook.rng(3018)
    X, y, W0 = rng.normal(size=(7, 2)), rng.integers(3, size=7), rng.normal(size=(3, 2))
    lr = float(np.round(rng.uniform(0.1, 0.5), 2))
    expected_W, expected_b = _sgd_epoch(X, y, 3, lr, W0)
    model = make("linear", W0)
    make("eval", model)  # as evaluate leaves it: train_epoch must switch training back on
    train_epoch(model, X, y, 3, lr)
    state = notebook.run(["torch_state", model])[0]
    check_close(f"the weights after train_epoch (3 batches, SGD with a learning rate of {lr})", state["parameters"][0],
                expected_W, rtol=1e-4, atol=1e-6,
                hints=[(W0, "the weights did not change: call optimizer.step() after loss.backward()")])
    check_close(f"the biases after train_epoch (3 batches, SGD with a learning rate of {lr})", state["parameters"][1],
                expected_b, rtol=1e-4, atol=1e-6)
    if state["training"] is not True:
        raise TestFailure("train_epoch left the model in evaluation mode: call model.train() first (evaluate switches it off)")

    # evaluate must not train, must not compute gradients, and must switch dropout off; a probe
    # around the model records whether gradients were on and the mode at every forward call
    model = make("probe", make("dropout", make("linear", W0), 0.9))
    loss, accuracy = evaluate(model, X, y, 4)
    check_close("the mean loss evaluate returns for a model with dropout", loss, float(_example_losses(X, y, W0).mean()), rtol=1e-5)
    state, seen = notebook.run(["torch_state", model], ["get", model, "seen"])
    if any(grad is not None for grad in state["grads"]) or any(enabled for enabled, _ in seen):
        raise TestFailure("evaluate computed gradients: wrap it in torch.no_grad()")
    if not seen:
        raise TestFailure("evaluate never called the model")
    check_close("the weights after evaluate", state["parameters"][0], W0,
                hints=[(state["parameters"][0], "evaluate changed the model's weights: it must not train")])
    right = (X @ W0.T).argmax(axis=1) == y
    check_close("the accuracy evaluate returns for 7 examples in batches of 4", accuracy, float(np.mean(right)),
                hints=[(float(np.sum(right)) / 2, "it divides the number of right answers by the number of batches, not of examples")])


# The notebook's training run (its pytorch_given and pytorch_run cells), replayed by the judge
EPOCHS, LEARNING_RATE, MOMENTUM, BATCH_SIZE, VALIDATION_FRACTION = 8, 0.05, 0.9, 32, 0.2


@judged(CHECKS)
def pytorch_accuracy(notebook: Notebook) -> None:
    """The notebook's training run, replayed here: both models reach 90% test accuracy, judged from their weights.

    The student's make_mlp, make_cnn and train_epoch run with the judge's data, seeds and settings.
    The test images never reach the kernel: the judge computes the models' outputs from their
    trained parameters (make_mlp's and make_cnn's architectures, which pytorch_models checks),
    so a model that recognises the shipped images has none to recognise. The models must start
    from an initialisation (no better than chance), and the MLP's pixels come in an order of the
    student's own (the same for training and test images: an MLP learns them as well), so
    weights trained beforehand have nothing to classify."""
    _require_torch(notebook)
    digits, rng = load("digits"), notebook.rng(3021)
    n_train = int(round((1 - VALIDATION_FRACTION) * len(digits.X_train)))
    pixels = rng.permutation(digits.num_features)
    for name, builder, args, shape in (
            ("MLP", "make_mlp", (digits.num_features, 64, digits.num_classes), None),
            ("CNN", "make_cnn", (digits.num_classes, digits.image_shape), digits.image_shape)):
        made = f"{builder}({', '.join(map(str, args))})"
        X_train, X_test = (digits.X_train[:n_train], digits.X_test) if shape else (digits.X_train[:n_train, pixels],
                                                                                    digits.X_test[:, pixels])
        model, loader, loss_fn, optimizer = Earlier(1), Earlier(3), Earlier(4), Earlier(5)
        _, _, first, *_, last = call_each(
            notebook, ("torch.manual_seed(0)", ["torch", "manual_seed", [0]]), (made, ["new", builder, list(args), {}, {}]),
            (f"the parameters of {made}", ["torch_state", model]),
            ("the training loader", ["torch", "loader", [X_train, digits.y_train[:n_train], BATCH_SIZE, 0,
                                                         None if shape is None else tuple(shape)]]),
            ("nn.CrossEntropyLoss()", ["torch", "cross_entropy", []]),
            (f"torch.optim.SGD({builder}(...).parameters())", ["torch", "sgd", [model, LEARNING_RATE, MOMENTUM]]),
            *[(f"train_epoch (epoch {epoch + 1} of the {name})",
               quiet(["new", "train_epoch", [model, loader, loss_fn, optimizer], {}, {}])) for epoch in range(EPOCHS)],
            (f"the parameters of the trained {name}", ["torch_state", model]))
        shapes = _mlp_shapes(*args) if shape is None else _cnn_shapes(*args)
        images = X_test if shape is None else X_test.reshape(len(X_test), 1, *shape)
        logits = mlp_logits if shape is None else cnn_logits
        start, trained = (_parameters_of(f"{made}, {when}", state, shapes)
                          for when, state in (("before training", first), ("after training", last)))
        before, after = (float(np.mean(np.argmax(logits(parameters, images), axis=1) == digits.y_test))
                         for parameters in (start, trained))
        if before > 0.5:
            raise TestFailure(f"before training, the {name} already classifies {before:.0%} of the test images: "
                              f"{builder} must start from PyTorch's initialisation, and train_epoch do the learning")
        train_images = X_train if shape is None else X_train.reshape(len(X_train), 1, *shape)
        replayed = torch_reference.value("trained_mlp" if shape is None else "trained_cnn",
                         [train_images, digits.y_train[:n_train], *start, EPOCHS, LEARNING_RATE, MOMENTUM, BATCH_SIZE])
        _check_trained_as_replayed(name, start, trained, np.split(replayed, np.cumsum([p.size for p in start])[:-1]))
        if not after >= 0.9:
            raise TestFailure(f"after {EPOCHS} epochs of train_epoch, the {name}'s test accuracy is {after:.3f}, "
                              "below 0.9: check make_mlp / make_cnn and train_epoch")


def _check_trained_as_replayed(name, start, trained, replayed):
    """The parameters after the training run are those of the same run replayed by the judge's
    PyTorch from the same start, within float32's drift: each is closer to the replay than a
    twentieth of the way the replay moved it (weights loaded in place of training are not)."""
    for i, (first, got, expected) in enumerate(zip(start, trained, replayed)):
        expected = expected.reshape(first.shape)
        if not np.linalg.norm(got - expected) <= 0.05 * np.linalg.norm(expected - first) + 1e-6:
            raise TestFailure(f"after {EPOCHS} epochs of train_epoch, the {name}'s parameter {i} (of shape {first.shape}) "
                              "is not what SGD on the "
                              "loader's batches makes of its first value (the test replays it): does train_epoch "
                              "train the model it is given, with the optimizer it is given?")


def _parameters_of(what, state, shapes):
    """The parameters in a model's torch_state, in the order of ``shapes``, as float arrays."""
    found = state.get("parameters") if isinstance(state, dict) else None
    parameters = [np.asarray(found[i], dtype=np.float64) for i in _order(what, found, shapes)]
    if not all(np.all(np.isfinite(p)) for p in parameters):
        raise TestFailure(f"{what}: its parameters are not finite (the training diverged?)")
    return parameters

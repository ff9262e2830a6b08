"""ps2's tests, judged in the grader's process (see coursekit.judge): one check per test cell.

Each check repeats its cell's visible tests, on the same inputs, then checks what the hidden
tests add: new shapes, extreme inputs and PyTorch's values. SGD is checked on stand-in layers
that hold W, b, dLdW and dLdb, and the MLPs on stand-in Linear, ReLU and Identity layers that
record their calls and return arrays chosen here, so a bug in one part costs no points in another.
"""
import contextlib

from collections.abc import Callable

import numpy as np

from coursekit.shipped import gradcheck
from coursekit.judge import (Earlier, Notebook, Remote, StudentError, TestFailure, answered, as_object, call, call_each, calls_in_order,
                             check_array, check_backward_unseen, check_call, check_close, check_no_hidden_loops, check_unchanged,
                             check_vectorised, extreme_scores, extreme_values, judged, loop_shapes, made_with, notebook_of,
                             numerical_layer_gradients, numerical_loss_gradient, path, shaped)
from coursekit.judge.torch_reference import value, vjp

CHECKS: dict[str, Callable[[Notebook], None]] = {}
MISSING_UPSTREAM = "it ignores dLdO: missing the upstream gradient?"


def _linear(notebook, d, h, W=None, b=None):
    """The student's Linear(d, h), with W and b set when given."""
    layer = call(f"Linear({d}, {h})", notebook.new, "Linear", d, h)
    if W is not None:
        layer.W, layer.b = W, b
    return layer


# --- 1. Linear ---------------------------------------------------------------------------------

def _weights(notebook, d, h, count):
    """The W of ``count`` new Linear(d, h) layers, in one round trip."""
    made = call_each(notebook, *[(f"Linear({d}, {h})", ["new", "Linear", [d, h], {}, {}]) for _ in range(count)])
    return call_each(notebook, *[(f"Linear({d}, {h}).W", ["get", layer, "W"]) for layer in made])


@judged(CHECKS)
def linear_init(notebook: Notebook) -> None:
    """W normal with mean 0 and variance 0.01 at sizes and seeds of the student's own; b zeros; layers differ.

    In place of the cell's Linear(400, 300) after np.random.seed(0): one large layer (250 to 450 a side)
    and many small ones pooled (8,000 entries or more), each where a seed of the student's own leads;
    the fraction within one standard deviation tells a normal from a uniform; shapes (1, 1), (5, 1), (1, 6).
    """
    rng = notebook.rng(1000)
    d, h = (int(n) for n in rng.integers(250, 450, size=2))
    _seed_somewhere(notebook, rng)
    layer = _linear(notebook, d, h)
    W = check_array(f"Linear({d}, {h}).W", layer.W, (d, h))
    check_close(f"Linear({d}, {h}).b", layer.b, np.zeros(h))
    check_close(f"the variance of Linear({d}, {h}).W", float(np.var(W)), 0.01, rtol=0.05, atol=0,
                hints=[(0.0001, "the standard deviation is 0.01: a variance of 0.01 is a standard deviation of 0.1"),
                       (1.0, "it is the standard normal's: scale it to variance 0.01"),
                       (1 / 12, "it looks like np.random.rand, which is uniform on [0, 1): use a normal distribution")])
    check_close(f"the mean of Linear({d}, {h}).W", float(np.mean(W)), 0.0, atol=0.002)
    _check_normal(f"Linear({d}, {h}).W", W)

    # small layers, pooled: 8,000 entries or more
    d, h = (int(n) for n in rng.integers(2, 9, size=2))
    _seed_somewhere(notebook, rng)
    pooled = [check_array(f"Linear({d}, {h}).W", W, (d, h)) for W in _weights(notebook, d, h, -(-8000 // (d * h)))]
    _check_normal(f"the W of {len(pooled)} layers Linear({d}, {h})", np.concatenate([W.ravel() for W in pooled]),
                  atol=0.025)
    for d, h in [(1, 1), (5, 1), (1, 6)]:
        layer = _linear(notebook, d, h)
        check_array(f"Linear({d}, {h}).W", layer.W, (d, h))
        check_close(f"Linear({d}, {h}).b", layer.b, np.zeros(h))
    first, second = _linear(notebook, 4, 3).W, _linear(notebook, 4, 3).W
    if np.array_equal(first, second):
        raise TestFailure("two Linear(4, 3) layers got the same W: draw it at random for every layer")


def _seed_somewhere(notebook, rng):
    """Seed NumPy's generator in the kernel (a regrade draws the same), then draw a few layers:
    the layer measured next starts wherever the student's seed leads, not right after a seed."""
    notebook.seed(int(rng.integers(2 ** 31)))
    _weights(notebook, int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 4)))


def _check_normal(what, W, atol=0.01):
    """68.3% of a normal distribution lies within one standard deviation (0.1) of its mean, 57.7% of a
    uniform one of the same variance."""
    within = float(np.mean(np.abs(W) < 0.1))
    check_close(f"the fraction of {what} within one standard deviation (0.1) of 0", within, 0.6827, atol=atol,
                hints=[(0.5774, "the entries look uniform: draw them from a normal distribution")])


@judged(CHECKS)
def linear_forward(notebook: Notebook) -> None:
    """The visible cell's values, then forward at four new shapes against PyTorch; A, W unchanged, b's shape kept."""
    A = np.array([[1.0, 2.0], [0.0, -1.0]])
    W = np.array([[1.0, 0.0, 2.0], [-1.0, 3.0, 0.5]])
    b = np.array([0.5, -1.0, 0.0])
    layer = _linear(notebook, 2, 3, W, b)
    check_call("Linear.forward(A)", layer.forward, A, expected=[[-0.5, 5.0, 3.0], [1.5, -4.0, -0.5]],
               hints=[(A @ W, "the bias is missing"), (A @ W - b, "the bias is subtracted")])
    check_array("Linear.b after forward", layer.b, (3,))

    rng = notebook.rng(1001)
    for n, d, h in [(7, 3, 5), (1, 4, 2), (6, 5, 1), (4, 2, 2)]:
        A, W, b = rng.normal(size=(n, d)), rng.normal(size=(d, h)), rng.normal(size=h)
        expected, _ = vjp("linear", (A, W.T, b), np.zeros((n, h)))
        layer, A_given = _linear(notebook, d, h, W, b), notebook.array(A)
        O = call("Linear.forward(A)", layer.forward, A_given)
        check_close(f"Linear({d}, {h}).forward(A) for A of shape {A.shape}", O, expected,
                    hints=[(A @ W, "the bias is missing"), (A @ W - b, "the bias is subtracted")])
        check_unchanged("Linear.forward", A, A_given.value())
        check_close("Linear.W after forward", layer.W, W)
        check_array("Linear.b after forward", layer.b, (h,))


@judged(CHECKS)
def linear_backward(notebook: Notebook) -> None:
    """The visible cell's checks, then three new shapes against PyTorch and finite differences; the latest A.

    The cell's check_backward runs on its seed-0 layer and input with an upstream gradient the kernel never
    saw; then W, b and dLdO left unchanged, and after forward(A1), forward(A2), backward uses A2.
    """
    A = np.array([[1.0, 2.0], [0.0, -1.0]])
    G = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])
    layer = _linear(notebook, 2, 3, np.array([[1.0, 0.0, 2.0], [-1.0, 3.0, 0.5]]), np.array([0.5, -1.0, 0.0]))
    call("Linear.forward(A)", layer.forward, A)
    check_call("Linear.backward(dLdO)", layer.backward, G, expected=[[-1.0, -1.5], [2.0, 1.0]])
    check_close("Linear.dLdW", layer.dLdW, [[1.0, 0.0, -1.0], [0.0, -1.0, -2.0]], factors={"N": 2},
                hints=[([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], MISSING_UPSTREAM)])
    check_close("Linear.dLdb", layer.dLdb, [3.0, 1.0, -1.0], factors={"N": 2})

    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(3, 4)), rng.normal(size=4)
    check_backward_unseen("Linear", lambda: _linear(notebook, 3, 4, W, b), rng.normal(size=(5, 3)), (5, 4),
                                params=[("W", "dLdW"), ("b", "dLdb")])

    rng = notebook.rng(2002)
    for n, d, h in [(7, 3, 5), (1, 4, 2), (6, 5, 1)]:
        A, W, b, G = rng.normal(size=(n, d)), rng.normal(size=(d, h)), rng.normal(size=h), rng.normal(size=(n, h))
        _, (dA, dWt, db) = vjp("linear", (A, W.T, b), G)
        layer = _linear(notebook, d, h, W, b)
        where = f" (Linear({d}, {h}), batch of {n})"
        call("Linear.forward(A)", layer.forward, A)
        G_given = notebook.array(G)
        dLdA = call("Linear.backward(dLdO)", layer.backward, G_given)
        ones = np.ones_like(G)
        check_close("Linear.backward(dLdO): returned dL/dA" + where, dLdA, dA, hints=[(ones @ W.T, MISSING_UPSTREAM)])
        check_close("Linear.dLdW" + where, layer.dLdW, dWt.T, factors={"N": n}, hints=[(A.T @ ones, MISSING_UPSTREAM)])
        check_close("Linear.dLdb" + where, layer.dLdb, db, factors={"N": n},
                    hints=[(G.mean(axis=0), "it is the mean over the batch: the loss adds up every example's contribution")])
        check_unchanged("Linear.backward", G, G_given.value())
        check_close("Linear.W after backward", layer.W, W)
        check_close("Linear.b after backward", layer.b, b)
        check_backward_unseen("Linear", lambda: _linear(notebook, d, h, W, b), A, G.shape,
                                    params=[("W", "dLdW"), ("b", "dLdb")])

    # backward must use the input of the latest forward call
    A1, A2, G = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    layer = _linear(notebook, 3, 2)
    call("Linear.forward(A1)", layer.forward, A1)
    call("Linear.forward(A2)", layer.forward, A2)
    call("Linear.backward(dLdO)", layer.backward, G)
    check_close("Linear.dLdW after forward(A1), forward(A2), backward(dLdO)", layer.dLdW, A2.T @ G,
                hints=[(A1.T @ G, "it uses A1: backward must use the input of the latest forward call")])


# --- 2. Losses ---------------------------------------------------------------------------------

DIVIDES_BY_N = "it divides by N only: average over all N*q entries"


def _loss(notebook, cls, O, Y, what=None):
    """A new ``cls`` (MSELoss or CrossEntropyLoss) and its forward(O, Y)."""
    loss_fn = call(f"{cls}()", notebook.new, cls)
    return loss_fn, call(what or f"{cls}.forward(O, Y)", loss_fn.forward, O, Y)


@judged(CHECKS)
def mse_forward(notebook: Notebook) -> None:
    """The visible cell's values, then forward at three new shapes against PyTorch; O and Y left unchanged."""
    _, L = _loss(notebook, "MSELoss", np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([[1.0, 0.0, 3.0, 0.0]]))
    check_close("MSELoss.forward(O, Y)", L, 5.0, factors={"q": 4})
    _, L = _loss(notebook, "MSELoss", np.array([[1.0, 2.0], [3.0, 4.0]]), np.zeros((2, 2)))
    check_close("MSELoss.forward(O, Y)", L, 7.5, factors={"q": 2, "N": 2})

    rng = notebook.rng(3003)
    for n, q in [(7, 3), (1, 4), (5, 1)]:
        O, Y = rng.normal(size=(n, q)), rng.normal(size=(n, q))
        expected, _ = vjp("mse_loss", (O, Y))
        O_given, Y_given = notebook.array(O), notebook.array(Y)
        _, L = _loss(notebook, "MSELoss", O_given, Y_given)
        check_close(f"MSELoss.forward(O, Y) for O of shape {(n, q)}", L, expected,
                    hints=[(np.sum((O - Y) ** 2) / n, DIVIDES_BY_N), (np.sum((O - Y) ** 2), "it is the sum: the loss is a mean")])
        check_unchanged("MSELoss.forward (O)", O, O_given.value())
        check_unchanged("MSELoss.forward (Y)", Y, Y_given.value())


@judged(CHECKS)
def mse_backward(notebook: Notebook) -> None:
    """The visible cell's checks, then three new shapes against PyTorch and finite differences; the latest O."""
    loss_fn, _ = _loss(notebook, "MSELoss", np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([[1.0, 0.0, 3.0, 0.0]]))
    check_call("MSELoss.backward()", loss_fn.backward, expected=[[0.0, 1.0, 0.0, 2.0]], factors={"q": 4})
    rng = np.random.default_rng(0)
    O, Y = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    loss_fn, _ = _loss(notebook, "MSELoss", O, Y)
    check_call("MSELoss.backward() vs finite differences", loss_fn.backward,
               expected=call("MSELoss.forward(O, Y)", numerical_loss_gradient, notebook, "MSELoss", O, Y),
               rtol=1e-5, atol=1e-7)

    rng = notebook.rng(3004)
    for n, q in [(7, 3), (1, 4), (5, 1)]:
        O, Y = rng.normal(size=(n, q)), rng.normal(size=(n, q))
        _, (dO, _) = vjp("mse_loss", (O, Y))
        loss_fn, _ = _loss(notebook, "MSELoss", O, Y)
        dLdO = call("MSELoss.backward()", loss_fn.backward)
        check_close(f"MSELoss.backward() for O of shape {(n, q)}", dLdO, dO,
                    hints=[(2 * (O - Y) / n, DIVIDES_BY_N), ((O - Y) / (n * q), "the factor 2 from the square is missing"),
                           (2 * (Y - O) / (n * q), "the sign is wrong: differentiate with respect to O")])
        check_close(f"MSELoss.backward() vs finite differences for O of shape {(n, q)}", dLdO,
                    call("MSELoss.forward(O, Y)", numerical_loss_gradient, notebook, "MSELoss", O, Y), rtol=1e-5, atol=1e-7)

    # backward must use the arguments of the latest forward call
    O1, O2, Y = rng.normal(size=(3, 2)), rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    loss_fn, _ = _loss(notebook, "MSELoss", O1, Y, "MSELoss.forward(O1, Y)")
    call("MSELoss.forward(O2, Y)", loss_fn.forward, O2, Y)
    check_call("MSELoss.backward() after forward(O1, Y), forward(O2, Y)", loss_fn.backward,
               expected=2 * (O2 - Y) / O2.size,
               hints=[(2 * (O1 - Y) / O1.size, "it uses O1: backward must use the latest forward call")])


def softmax(Z: np.ndarray) -> np.ndarray:
    """Softmax of the scores Z (N, q) row by row, computed stably: the judge's own, for expected values and hints."""
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def _targets(rng, n, q, probabilities):
    return softmax(rng.normal(size=(n, q))) if probabilities else np.eye(q)[rng.integers(q, size=n)]


def _extreme_logits(rng, n=3, q=4):
    """Logits past +-709.8 (where e**O overflows) of the student's own, and one-hot targets."""
    return extreme_scores(rng, n, q), np.eye(q)[rng.integers(q, size=n)]


@judged(CHECKS)
def crossentropy_forward(notebook: Notebook) -> None:
    """The visible cell's values, then five cases against PyTorch (probability targets too); logits near +-1000.

    Also: O and Y left unchanged; the logits past +-709.8 are the student's own.
    """
    O, Y = np.zeros((2, 4)), np.array([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    check_close("CrossEntropyLoss.forward(O, Y) with equal logits", _loss(notebook, "CrossEntropyLoss", O, Y)[1],
                1.3862943611198906, factors={"N": 2, "q": 4})
    O, Y = np.array([[np.log(6.0), np.log(2.0)], [1.0, 1.0]]), np.array([[1.0, 0.0], [0.5, 0.5]])
    check_close("CrossEntropyLoss.forward(O, Y)", _loss(notebook, "CrossEntropyLoss", O, Y)[1], 0.4904146265058631,
                factors={"N": 2}, hints=[(0.6381458017303355, "the softmax is applied to Y too: Y already holds probabilities")])

    rng = notebook.rng(4004)
    for n, q, probabilities in [(6, 4, False), (1, 3, False), (5, 2, False), (6, 4, True), (3, 5, True)]:
        O = 2 * rng.normal(size=(n, q))
        Y = _targets(rng, n, q, probabilities)
        expected, _ = vjp("cross_entropy", (O, Y))
        O_given, Y_given = notebook.array(O), notebook.array(Y)
        L = _loss(notebook, "CrossEntropyLoss", O_given, Y_given)[1]
        log_P = np.log(softmax(O))
        check_close(f"CrossEntropyLoss.forward(O, Y) for O of shape {(n, q)}" + (" and probability targets" if probabilities else ""),
                    L, expected, factors={"N": n, "q": q},
                    hints=[(-np.sum(softmax(Y) * log_P) / n, "the softmax is applied to Y too: Y already holds probabilities"),
                           (-np.sum(Y * np.log(np.abs(O) + 1e-300)) / n, "it takes the log of O: take the log of softmax(O)")])
        check_unchanged("CrossEntropyLoss.forward (O)", O, O_given.value())
        check_unchanged("CrossEntropyLoss.forward (Y)", Y, Y_given.value())

    O, Y = _extreme_logits(rng)
    expected, _ = vjp("cross_entropy", (O, Y))
    what = "CrossEntropyLoss.forward(O, Y) for logits near +-1000"
    check_close(what, _loss(notebook, "CrossEntropyLoss", O, Y, what)[1], expected)


@judged(CHECKS)
def crossentropy_backward(notebook: Notebook) -> None:
    """The visible cell's checks; four cases against PyTorch and finite differences; logits near +-1000; the latest O."""
    O, Y = np.array([[np.log(6.0), np.log(2.0)], [1.0, 1.0]]), np.array([[1.0, 0.0], [0.5, 0.5]])
    loss_fn, _ = _loss(notebook, "CrossEntropyLoss", O, Y)
    check_call("CrossEntropyLoss.backward()", loss_fn.backward, expected=[[-0.125, 0.125], [0.0, 0.0]],
               factors={"N": 2},
               hints=[([[0.375, 0.125], [0.25, 0.25]], "Y is missing from the gradient"),
                      (-Y / O, "it is -Y/O: the loss takes the log of softmax(O), not of O"),
                      (-Y / O / 2, "it is -Y/O divided by N: the loss takes the log of softmax(O), not of O")])
    rng = np.random.default_rng(0)
    O, Y = rng.normal(size=(3, 4)), np.eye(4)[[2, 0, 3]]
    loss_fn, _ = _loss(notebook, "CrossEntropyLoss", O, Y)
    check_call("CrossEntropyLoss.backward() vs finite differences", loss_fn.backward,
               expected=call("CrossEntropyLoss.forward(O, Y)", numerical_loss_gradient, notebook, "CrossEntropyLoss", O, Y),
               rtol=1e-5, atol=1e-7)

    rng = notebook.rng(4005)
    for n, q, probabilities in [(6, 4, False), (1, 3, False), (6, 4, True), (3, 5, True)]:
        O = 2 * rng.normal(size=(n, q))
        Y = _targets(rng, n, q, probabilities)
        _, (dO, _) = vjp("cross_entropy", (O, Y))
        loss_fn, _ = _loss(notebook, "CrossEntropyLoss", O, Y)
        dLdO = call("CrossEntropyLoss.backward()", loss_fn.backward)
        where = f" for O of shape {(n, q)}" + (" and probability targets" if probabilities else "")
        check_close("CrossEntropyLoss.backward()" + where, dLdO, dO, factors={"N": n},
                    hints=[(-Y / O / n, "it is -Y/O divided by N: the loss takes the log of softmax(O), not of O"),
                           (-Y / O, "it is -Y/O: the loss takes the log of softmax(O), not of O"),
                           (softmax(O) / n, "Y is missing from the gradient"),
                           ((softmax(O) - softmax(Y)) / n, "the softmax is applied to Y too: Y already holds probabilities")])
        check_close("CrossEntropyLoss.backward() vs finite differences" + where, dLdO,
                    call("CrossEntropyLoss.forward(O, Y)", numerical_loss_gradient, notebook, "CrossEntropyLoss", O, Y),
                    rtol=1e-5, atol=1e-7)

    O, Y = _extreme_logits(rng)
    _, (dO, _) = vjp("cross_entropy", (O, Y))
    loss_fn, _ = _loss(notebook, "CrossEntropyLoss", O, Y, "CrossEntropyLoss.forward(O, Y) for logits near +-1000")
    what = "CrossEntropyLoss.backward() for logits near +-1000"
    check_call(what, loss_fn.backward, expected=dO)

    # backward must use the arguments of the latest forward call
    O1, O2, Y = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), np.eye(4)[[1, 1, 3]]
    loss_fn, _ = _loss(notebook, "CrossEntropyLoss", O1, Y, "CrossEntropyLoss.forward(O1, Y)")
    call("CrossEntropyLoss.forward(O2, Y)", loss_fn.forward, O2, Y)
    check_call("CrossEntropyLoss.backward() after forward(O1, Y), forward(O2, Y)", loss_fn.backward,
               expected=(softmax(O2) - Y) / 3,
               hints=[((softmax(O1) - Y) / 3, "it uses O1: backward must use the latest forward call")])


# --- 3. SGD, on stand-in layers ----------------------------------------------------------------

def _trajectory(theta, grads, lr, momentum, dampening=0.0):
    v, out = np.zeros_like(theta), []
    for g in grads:
        v = momentum * v + (1 - dampening) * g
        theta = theta - lr * v
        out.append(theta)
    return np.array(out)


def _layer(notebook, **arrays):
    """A stand-in for a Linear layer: an object with the attributes W, b, dLdW and dLdb."""
    return notebook.standin("Linear", arrays)


@judged(CHECKS)
def sgd_tests(notebook: Notebook) -> None:
    """The visible cell on stand-ins (standin), then 4 steps with zero_grad against torch.optim.SGD; own Linear layers.

    Stand-ins "Linear" hold W, b, dLdW and dLdb, and a stand-in "MLP1" their list. Adds: an MLP1 of two layers
    with values of the student's own, for lr and momentum (0.05, 0.8) and (0.3, 0.0), zero_grad before each step
    (dLdW None at first, as in a new Linear); one Linear at the default lr 0.1; then 2 steps on the student's
    own Linear layers (_check_sgd_on_own_layers, lr and momentum of the student's own).
    """
    layer = _layer(notebook, W=np.array([[1.0, 2.0]]), b=np.array([0.5]), dLdW=np.array([[1.0, -1.0]]), dLdb=np.array([2.0]))
    optimizer = call("SGD(layer, lr=0.5)", notebook.new, "SGD", layer, lr=0.5)
    call("SGD.step()", optimizer.step)
    check_close("W after one step with lr=0.5", layer.W, [[0.5, 2.5]])
    check_close("b after one step with lr=0.5", layer.b, [-0.5])

    hidden_layer = _layer(notebook, W=np.zeros((1, 2)), b=np.zeros(1), dLdW=np.array([[1.0, 2.0]]), dLdb=np.array([1.0]))
    model = notebook.standin("MLP1", {"layers": [hidden_layer]})
    optimizer = call("SGD(model, lr=0.1, momentum=0.9)", notebook.new, "SGD", model, lr=0.1, momentum=0.9)
    call("SGD.step()", optimizer.step)
    call("SGD.step()", optimizer.step)
    check_close("W after two steps with momentum 0.9 and the same gradient", hidden_layer.W, [[-0.29, -0.58]],
                hints=[([[-0.2, -0.4]], "the momentum is not used"),
                       ([[-0.029, -0.058]], "the gradient is scaled by (1 - momentum): torch.optim.SGD adds it unscaled")])
    call("SGD.zero_grad()", optimizer.zero_grad)
    check_close("dLdW after zero_grad()", hidden_layer.dLdW, np.zeros((1, 2)))
    check_close("dLdb after zero_grad()", hidden_layer.dLdb, np.zeros(1))

    rng = notebook.rng(5005)
    for lr, momentum in [(0.05, 0.8), (0.3, 0.0)]:
        start = [(0.1 * rng.normal(size=(a, h)), rng.normal(size=h)) for a, h in [(3, 4), (4, 2)]]
        layers = [_layer(notebook, W=W, b=b, dLdW=None, dLdb=None) for W, b in start]  # as a new Linear has them
        model = notebook.standin("MLP1", {"layers": layers})
        grads = [[(rng.normal(size=W.shape), rng.normal(size=b.shape)) for W, b in start] for _ in range(4)]
        optimizer = call(f"SGD(model, lr={lr}, momentum={momentum})", notebook.new, "SGD", model, lr=lr, momentum=momentum)
        for step_grads in grads:  # one round trip each: zero_grad(), the gradients it left, new ones, step()
            _, *cleared = call_each(
                notebook, ("SGD.zero_grad()", ["call", optimizer, "zero_grad", [], {}]),
                *[("a layer's gradients", ["get", layer, name]) for layer in layers for name in ("dLdW", "dLdb")],
                *[("a layer's gradients", ["set", layer, name, grad])
                  for layer, pair in zip(layers, step_grads) for name, grad in zip(("dLdW", "dLdb"), pair)],
                ("SGD.step()", ["call", optimizer, "step", [], {}]))
            for (W, b), dLdW, dLdb in zip(start, cleared[0::2], cleared[1::2]):
                check_close("a layer's dLdW after zero_grad()", dLdW, np.zeros_like(W))
                check_close("a layer's dLdb after zero_grad()", dLdb, np.zeros_like(b))
        for i, layer in enumerate(layers):
            for name, k in [("W", 0), ("b", 1)]:
                sequence = np.array([step_grads[i][k] for step_grads in grads])
                expected = np.asarray(value("sgd", (start[i][k], sequence, lr, momentum)))[-1]
                check_close(f"layers[{i}].{name} after 4 steps with lr={lr}, momentum={momentum}", getattr(layer, name), expected,
                            hints=[(_trajectory(start[i][k], sequence, lr, 0.0)[-1], "the momentum is not used"),
                                   (_trajectory(start[i][k], sequence, lr, momentum, dampening=momentum)[-1],
                                    "the gradient is scaled by (1 - momentum): torch.optim.SGD adds it unscaled"),
                                   (start[i][k] - lr * sequence[-1], "only the last step counts: the parameter must keep every update"),
                                   (_trajectory(start[i][k], -sequence, lr, momentum)[-1], "the step goes uphill: subtract the gradient"),
                                   (start[i][k], f"{name} does not change")])

    # a single Linear, the default learning rate
    W, b, gW, gb = 0.1 * rng.normal(size=(2, 3)), rng.normal(size=3), rng.normal(size=(2, 3)), rng.normal(size=3)
    layer = _layer(notebook, W=W, b=b, dLdW=gW, dLdb=gb)
    call("SGD(linear).step()", call("SGD(linear)", notebook.new, "SGD", layer).step)
    check_close("W of a single Linear after one step with the default lr=0.1", layer.W,
                np.asarray(value("sgd", (W, gW[None], 0.1, 0.0)))[-1])
    check_close("b of a single Linear after one step with the default lr=0.1", layer.b,
                np.asarray(value("sgd", (b, gb[None], 0.1, 0.0)))[-1])
    _check_sgd_on_own_layers(notebook, rng)


def _check_sgd_on_own_layers(notebook, rng):
    """SGD on Linear layers of the student's own class (given the judge's W, b and gradients): the
    same steps as on the stand-ins, so an SGD that tells the two apart gains nothing. Skipped
    where Linear cannot be made."""
    if not answered(notebook, "linear_init"):
        return
    sizes, lr, momentum = [(3, 4), (4, 2)], float(np.round(rng.uniform(0.05, 0.5), 2)), float(np.round(rng.uniform(0.5, 0.9), 2))
    try:
        layers = notebook.run(*[["new", "Linear", [a, h], {}, {}] for a, h in sizes])
    except StudentError:
        return
    start = [(rng.normal(size=(a, h)), rng.normal(size=h)) for a, h in sizes]
    grads = [[(rng.normal(size=(a, h)), rng.normal(size=h)) for a, h in sizes] for _ in range(2)]
    model = notebook.standin("MLP1", {"layers": layers})
    try:
        notebook.run(*[["set", layer, name, array] for layer, pair in zip(layers, start) for name, array in zip(("W", "b"), pair)])
    except StudentError:  # (a Linear whose attributes cannot be set: its own part's checks say so)
        return
    optimizer = call(f"SGD(model, lr={lr}, momentum={momentum})", notebook.new, "SGD", model, lr=lr, momentum=momentum)
    for step in grads:
        call_each(notebook, *[("a layer's gradients", ["set", layer, name, array])
                            for layer, pair in zip(layers, step) for name, array in zip(("dLdW", "dLdb"), pair)],
                  ("SGD.step()", ["call", optimizer, "step", [], {}]))
    for i, layer in enumerate(layers):
        for name, k in [("W", 0), ("b", 1)]:
            expected = _trajectory(start[i][k], np.array([step[i][k] for step in grads]), lr, momentum)[-1]
            check_close(f"layers[{i}].{name} of your own Linear after 2 steps with lr={lr}, momentum={momentum}",
                        getattr(layer, name), expected, hints=[(_trajectory(start[i][k], np.array([s[i][k] for s in grads]), lr, 0.0)[-1],
                                                               "the momentum is not used")])


# --- 4. Activations ----------------------------------------------------------------------------

ACTIVATIONS = {
    "Sigmoid": {
        "torch": "sigmoid", "seed": 6006, "H": [[0.0, 2.0, -2.0]],
        "forward": [[0.5, 0.8807970779778823, 0.11920292202211755]],
        "backward": [[0.25, 0.10499358540350662, 0.10499358540350651]],
        "visible_hints": [([[0.0, -2.0, -6.0]], "the derivative uses H where it needs sigma(H)"),
                          ([[0.5, 0.8807970779778823, 0.11920292202211755]], "the derivative is sigma * (1 - sigma)")],
        "hints": lambda H, A: [(H * (1 - H), "the derivative uses H where it needs sigma(H)"),
                               (A, "the derivative is sigma * (1 - sigma)")],
    },
    "Tanh": {
        "torch": "tanh", "seed": 6007, "H": [[0.0, 1.0, -2.0]],
        "forward": [[0.0, 0.7615941559557649, -0.9640275800758169]],
        "backward": [[1.0, 0.41997434161402614, 0.07065082485316443]],
        "visible_hints": [([[1.0, 0.0, -3.0]], "the derivative uses H where it needs tanh(H)"),
                          ([[1.0, 0.056837346474444175, 3.8574043352984693]], "check where the square goes in the derivative")],
        "hints": lambda H, A: [(1 - H ** 2, "the derivative uses H where it needs tanh(H)"),
                               ((1 - A) ** 2, "check where the square goes in the derivative")],
    },
    "ReLU": {
        "torch": "relu", "seed": 6008, "H": [[-1.0, 0.0, 2.5]],
        "forward": [[0.0, 0.0, 2.5]], "backward": [[0.0, 0.0, 1.0]],
        "visible_hints": [([[0.0, 1.0, 1.0]], "at H = 0 the derivative is 0, as in PyTorch")],
        "hints": lambda H, A: [((H >= 0).astype(float), "at H = 0 the derivative is 0, as in PyTorch")],
    },
}


def _check_activation(notebook, name):
    spec = ACTIVATIONS[name]

    def new():
        return call(f"{name}()", notebook.new, name)

    H, act = np.array(spec["H"]), new()
    check_call(f"{name}.forward(H)", act.forward, H, expected=spec["forward"])
    check_call(f"{name}.backward()", act.backward, expected=spec["backward"], hints=spec["visible_hints"])

    rng = np.random.default_rng(0)
    H, act = 2 * rng.normal(size=(3, 4)), new()
    call(f"{name}.forward(H)", act.forward, H)
    derivative = call(f"{name}.backward()", act.backward)
    (numeric,) = call(f"{name}.forward(H)", numerical_layer_gradients, new(), H, [np.ones_like(H)])
    check_close(f"{name}.backward() vs finite differences", derivative, numeric, rtol=1e-5, atol=1e-7)

    rng = notebook.rng(spec["seed"])
    act = new()
    check_vectorised(f"{name}.forward(H) for H of shape (100, 100)", act.forward, np.linspace(-5.0, 5.0, 10_000).reshape(100, 100))
    check_vectorised(f"{name}.backward() for H of shape (100, 100)", act.backward)
    earlier = (100, 100)
    for shape in loop_shapes(rng):
        H = 5 * rng.normal(size=shape)
        A_ref, (dAdH_ref,) = vjp(spec["torch"], (H,), np.ones(shape))
        check_close(f"{name}.forward(H) for H of shape {shape}",
                    check_vectorised(f"{name}.forward(H) for H of shape {shape}", act.forward, H), A_ref)
        derivative = check_vectorised(f"{name}.backward() for H of shape {shape}", act.backward)
        if np.shape(derivative) == earlier != shape:
            raise TestFailure(f"{name}.backward() after forward(H) for H of shape {shape} has the shape of an earlier H: "
                              "backward must use the input of the latest forward call")
        check_close(f"{name}.backward() for H of shape {shape}", derivative, dAdH_ref)
        earlier = shape
    check_no_hidden_loops(notebook, name)

    for shape in [(6, 4), (1, 3), (5,), (2, 3, 2)]:
        H = 3 * rng.normal(size=shape)
        if name == "ReLU":
            H.flat[0] = 0.0  # the derivative at 0 is 0, as in PyTorch
        A_ref, (dAdH_ref,) = vjp(spec["torch"], (H,), np.ones(shape))
        act, H_given = new(), notebook.array(H)
        check_call(f"{name}.forward(H) for H of shape {shape}", act.forward, H_given, expected=A_ref)
        check_unchanged(f"{name}.forward", H, H_given.value())
        check_call(f"{name}.backward() for H of shape {shape}", act.backward, expected=dAdH_ref,
                   hints=spec["hints"](H, A_ref))

    # entries past +-709.8, where e**H overflows, of the student's own (so no table holds them)
    for shape in [(2, 5), (7,)]:
        H = extreme_values(rng, shape)
        H.flat[:2] = rng.uniform(-40, 40, size=2)  # and moderate ones beside them
        A_ref, (dAdH_ref,) = vjp(spec["torch"], (H,), np.ones_like(H))
        act = new()
        what = f"{name}.forward(H) for H of shape {shape} with entries near +-1000"
        check_call(what, act.forward, H, expected=A_ref, atol=1e-12)
        what = f"{name}.backward() for H of shape {shape} with entries near +-1000"
        check_call(what, act.backward, expected=dAdH_ref, atol=1e-12)

    # backward must use the input of the latest forward call: H2 differs from H1 in sign and size
    # everywhere, so no entry's derivative is the same for both (with two independent draws, a
    # ReLU that kept H1 passed whenever their signs matched: one student key in 64)
    H1 = rng.normal(size=(2, 3))
    H2 = -(2 * H1 + 0.5 * np.sign(H1))
    act = new()
    call(f"{name}.forward(H1)", act.forward, H1)
    call(f"{name}.forward(H2)", act.forward, H2)
    _, (expected,) = vjp(spec["torch"], (H2,), np.ones_like(H2))
    _, (stale,) = vjp(spec["torch"], (H1,), np.ones_like(H1))
    check_call(f"{name}.backward() after forward(H1), forward(H2)", act.backward, expected=expected,
               hints=[(stale, "it uses H1: backward must use the input of the latest forward call")])


@judged(CHECKS)
def sigmoid_tests(notebook: Notebook) -> None:
    """The visible cell's checks, then no loops at shapes of the student's own, PyTorch's values, inputs near +-1000.

    _check_activation: step counts and PyTorch's values at loop_shapes, the class's code read for loops the
    count cannot see (check_no_hidden_loops), four shapes (1-D and 3-D too) with H left unchanged,
    entries past +-709.8 of the student's own, and backward after forward(H1), forward(H2) uses H2.
    """
    _check_activation(notebook, "Sigmoid")


@judged(CHECKS)
def tanh_tests(notebook: Notebook) -> None:
    """The visible cell's checks, then no loops at shapes of the student's own, PyTorch's values, inputs near +-1000.

    _check_activation: step counts and PyTorch's values at loop_shapes, the class's code read for loops the
    count cannot see (check_no_hidden_loops), four shapes (1-D and 3-D too) with H left unchanged,
    entries past +-709.8 of the student's own, and backward after forward(H1), forward(H2) uses H2.
    """
    _check_activation(notebook, "Tanh")


@judged(CHECKS)
def relu_tests(notebook: Notebook) -> None:
    """The visible cell's checks, then no loops at shapes of the student's own, PyTorch's values, inputs near +-1000.

    _check_activation: step counts and PyTorch's values at loop_shapes, the class's code read for loops the
    count cannot see (check_no_hidden_loops), four shapes (1-D and 3-D too) with H left unchanged and an
    entry at 0 (derivative 0), entries past +-709.8 of the student's own, and backward after forward(H1),
    forward(H2) uses H2.
    """
    _check_activation(notebook, "ReLU")


# --- 5. MLPs, with stand-in layers --------------------------------------------------------------

def _ref(remote):
    return object.__getattribute__(remote, "_ref")


class StandInMLP:
    """An MLP of the notebook built from stand-ins: ``linears`` and ``activations`` are what
    the constructor made ({ref: stand-in}); ``layers`` and ``f`` the model's lists, as stand-ins."""

    def __init__(self, notebook, name, cls, args, sizes):
        depth = len(sizes) - 1
        self.name, self.sizes = name, sizes
        # spares of every kind, so that a model made of the wrong layers still builds, and fails
        # here; the stand-ins and the classes that hand them out are made in one round trip
        operations = {"Linear": [["standin", "Linear", {"forward": [np.zeros(1)], "backward": [np.zeros(1)]},
                                  {"W": np.zeros((a, b)), "b": np.zeros(b)}, {"forward": ["A"], "backward": ["dLdO"]}]
                                 for a, b in list(zip(sizes, sizes[1:])) + [(1, 1)] * 2]}
        for kind in ("ReLU", "Identity"):
            operations[kind] = [["standin", kind, {"forward": [np.zeros(1)], "backward": [np.zeros(1)]}, {},
                                 {"forward": ["H"], "backward": []}]] * (depth + 2)
        request, where = [], {}
        for kind, made in operations.items():
            where[kind] = range(len(request), len(request) + len(made))
            request += made
        request += [["factory", [Earlier(i) for i in where[kind]], kind] for kind in operations]
        results = notebook.run(*request)
        linears, kinds = [results[i] for i in where["Linear"]], {kind: [results[i] for i in where[kind]] for kind in ("ReLU", "Identity")}
        factories = dict(zip(operations, results[-len(operations):]))
        self.model, log = call_each(notebook, (name, ["new", cls, list(args), {}, factories]), (name, ["log", factories["Linear"]]))
        self.model = as_object(self.model, name)
        sizes_made = [(sizes["num_inputs"], sizes["num_outputs"])
                      for sizes in made_with(factories["Linear"], ["num_inputs", "num_outputs"], log)]
        self.kind = {_ref(s): kind for kind, made in kinds.items() for s in made}
        self.size = {_ref(s): size for s, size in zip(linears, sizes_made)}
        try:
            layers, f = notebook.run(["get", self.model, "layers"], ["get", self.model, "f"])
        except StudentError:  # one of them is missing
            layers = f = None
        self._check_layout(layers, f)
        self.layers, self.f = layers, f

    def _check_layout(self, layers, f):
        name, expected = self.name, list(zip(self.sizes, self.sizes[1:]))
        if not isinstance(layers, list) or not isinstance(f, list):
            raise TestFailure(f"{name} needs two lists, self.layers (the Linear layers) and self.f (the activations)")
        if len(layers) != len(expected):
            raise TestFailure(f"{name}.layers has {len(layers)} layers, expected {len(expected)}")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Remote) or _ref(layer) not in self.size:
                raise TestFailure(f"{name}.layers[{i}] is not a Linear made by {name}'s constructor")
            if self.size[_ref(layer)] != expected[i]:
                raise TestFailure(f"{name}.layers[{i}] is Linear{self.size[_ref(layer)]}, expected Linear{expected[i]}")
        kinds = ["ReLU"] * (len(expected) - 1) + ["Identity"]
        found = [self.kind.get(_ref(a), "something else") if isinstance(a, Remote) else gradcheck.kind(a) for a in f]
        if found != kinds:
            raise TestFailure(f"{name}.f holds {found}, expected {kinds}: ReLU after every hidden layer, "
                              "Identity at the output")
        if len({_ref(a) for a in f}) != len(f):
            raise TestFailure(f"{name}.f uses one activation object twice: each layer needs its own, "
                              "since an activation keeps its input for backward")

    def roles(self) -> dict[str, Remote]:
        """{"layers[i]" / "f[i]": stand-in}, in the order of the forward pass."""
        return {role: s for i in range(len(self.layers)) for role, s in ((f"layers[{i}]", self.layers[i]), (f"f[{i}]", self.f[i]))}

    def give(self, returns: dict[str, dict[str, np.ndarray]]) -> None:
        """Set what each stand-in returns from now on ({role: {method: array}}) and clear their logs."""
        standins = self.roles()
        notebook_of(self.model).run(*[["expect", standins[role], {m: [a] for m, a in methods.items()}]
                                    for role, methods in returns.items()])


@contextlib.contextmanager
def _order_explains_failure(mlp, method, expected):
    """If the pass fails (a stand-in got an array of the wrong shape), and the layers it called
    so far are out of order, say so: that is the mistake."""
    try:
        yield
    except TestFailure:
        order = [role for role, called, _ in calls_in_order(mlp.roles()) if called == method]
        if order and order[0] not in expected[:2]:  # (backward may start with the activation or its layer)
            raise TestFailure(f"{mlp.name}.{method} called {method} in the order {order}, expected {expected}") from None
        raise


def _check_mlp(notebook, name, cls, args, sizes, part, rng, batches=(2,)):
    """The MLP's forward or backward, with stand-in layers, on batches of the given sizes (one
    model for all of them: what it computes for one batch must not leak into the next)."""
    mlp = StandInMLP(notebook, name, cls, args, sizes)
    depth = len(sizes) - 1
    for n in batches:
        where = f" for a batch of {n}"
        H = [rng.normal(size=(n, sizes[i + 1])) for i in range(depth)]  # what layers[i].forward returns
        A = [rng.normal(size=(n, sizes[i + 1])) for i in range(depth)]  # what f[i].forward returns
        D = [rng.normal(size=(n, sizes[i + 1])) for i in range(depth)]  # what f[i].backward returns
        B = [rng.normal(size=(n, sizes[i])) for i in range(depth)]  # what layers[i].backward returns
        mlp.give({**{f"layers[{i}]": {"forward": H[i], "backward": B[i]} for i in range(depth)},
                  **{f"f[{i}]": {"forward": A[i], "backward": D[i]} for i in range(depth)}})
        X = rng.normal(size=(n, sizes[0]))
        expected_order = list(mlp.roles())
        with _order_explains_failure(mlp, "forward", expected_order):
            out = call(f"{name}.forward(X)", mlp.model.forward, X)
        if part == "forward":
            log = calls_in_order(mlp.roles())
            order = [role for role, method, _ in log if method == "forward"]
            received = {role: arguments[0] if arguments else None for role, method, arguments in log if method == "forward"}
            for i in range(depth):
                for role in (f"layers[{i}]", f"f[{i}]"):
                    if role not in received:
                        raise TestFailure(f"{name}.forward did not call {role}.forward: {role} is skipped")
                given = X if i == 0 else A[i - 1]
                check_close(f"{name}.forward: the input of layers[{i}].forward{where}", received.get(f"layers[{i}]"), given,
                            hints=[] if i == 0 else [(H[i - 1], f"f[{i - 1}] is skipped: feed layers[{i}] the activation's output")])
                check_close(f"{name}.forward: the input of f[{i}].forward{where}", received.get(f"f[{i}]"), H[i])
            check_close(f"{name}.forward(X): what f[{depth - 1}].forward returned{where}", out, A[-1],
                        hints=[(H[-1], f"f[{depth - 1}] is skipped")])
            if order != expected_order:
                raise TestFailure(f"{name}.forward called forward in the order {order}, expected {expected_order}")
            continue
        G = rng.normal(size=(n, sizes[-1]))
        G_given = notebook.array(G)
        with _order_explains_failure(mlp, "backward", list(reversed(expected_order))):
            grad = call(f"{name}.backward(dLdA)", mlp.model.backward, G_given)
        check_unchanged(f"{name}.backward", G, G_given.value())
        log = calls_in_order(mlp.roles())
        received = {role: arguments[0] if arguments else None for role, method, arguments in log if method == "backward"}
        upstream = G
        for i in reversed(range(depth)):
            if f"f[{i}]" not in received:
                raise TestFailure(f"{name}.backward did not call f[{i}].backward(): f[{i}] is skipped (dL/dH is "
                                  "dL/dA times the activation's derivative)")
            hints = [(upstream, f"f[{i}] is skipped: multiply by f[{i}].backward()")]
            if i < depth - 1 and G.shape == D[i].shape:
                hints.append((G * D[i], "each layer's backward must receive the gradient of the layer after it, not dLdA"))
            check_close(f"{name}.backward: the gradient passed to layers[{i}].backward{where}",
                        received.get(f"layers[{i}]"), upstream * D[i], hints=hints)
            upstream = B[i]
        check_close(f"{name}.backward(dLdA): returned dL/dX{where}", grad, B[0])
        linear_order = [role for role, method, _ in log if method == "backward" and role.startswith("layers")]
        expected_order = [f"layers[{i}]" for i in reversed(range(depth))]
        if linear_order != expected_order:
            raise TestFailure(f"{name}.backward called the layers' backward in the order {linear_order}, "
                              f"expected {expected_order}")


def _own_chain(notebook, model, depth, X, G, W, b):
    """The student's own layers of ``model`` (given the weights W, b) called by the judge in the
    order the text gives: their output for X, then dL/dX for the upstream gradient G and each
    layer's (dLdW, dLdb); None where they do not run (or lack the lists the text asks for)."""
    try:
        layers, f = notebook.run(["get", model, "layers"], ["get", model, "f"])
        if not (isinstance(layers, list) and isinstance(f, list) and len(layers) == len(f) == depth):
            return None
        notebook.run(*[["set", layers[i], w, given] for i in range(depth) for w, given in (("W", W[i]), ("b", b[i]))])
        A = X
        for i, (layer, activation) in enumerate(zip(layers, f)):
            (H,) = notebook.run(["call", layer, "forward", [A], {}])
            (A,) = notebook.run(["call", activation, "forward", [shaped(H, (len(X), W[i].shape[1]))], {}])
        dA = shaped(A, np.shape(G)) * 0 + G
        for i in reversed(range(depth)):
            (derivative,) = notebook.run(["call", f[i], "backward", [], {}])
            (dA,) = notebook.run(["call", layers[i], "backward", [dA * shaped(derivative, np.shape(dA))], {}])
            dA = shaped(dA, (len(X), W[i].shape[0]))
        grads = notebook.run(*[["get", layer, g] for layer in layers for g in ("dLdW", "dLdb")])
        grads = [shaped(grad, np.shape(W[i // 2] if i % 2 == 0 else b[i // 2])) for i, grad in enumerate(grads)]
    except (StudentError, TypeError, ValueError):  # (a layer that does not run, or returns what the next cannot use)
        return None
    return A, dA, grads


def _check_mlp_of_own_layers(notebook, name, cls, args, sizes, part, rng):
    """The MLP built with the student's own Linear, ReLU and Identity (given weights of the
    judge's), whatever they compute: its forward, or backward's result and the gradients it
    leaves, against the same layers called by the judge in the order the text gives. An MLP that
    behaves only when its layers are the judge's stand-ins loses here what it kept there; a bug
    in a layer costs nothing here, since the same layer makes the expected values. Skipped
    where the layers do not run, or hung in their own checks."""
    if not answered(notebook, "linear_init", "linear_forward", "linear_backward", "relu_tests"):
        return
    depth = len(sizes) - 1
    notebook.seed(int(rng.integers(2 ** 31)))
    try:
        (model,) = notebook.run(["new", cls, list(args), {}, {}])
    except StudentError:
        return
    X, G = rng.normal(size=(5, sizes[0])), rng.normal(size=(5, sizes[-1]))
    W = [rng.normal(size=(d, h)) / np.sqrt(d) for d, h in zip(sizes, sizes[1:])]
    b = [rng.normal(size=h) for h in sizes[1:]]
    chained = _own_chain(notebook, model, depth, X, G, W, b)
    if chained is None:
        return
    out, dX, grads = chained
    where = " with your own Linear and activations, vs the same layers called by the test in order"
    check_call(f"{name}.forward(X)" + where, model.forward, X, expected=out)
    if part == "forward":
        return
    returned, *found = call_each(notebook, (f"{name}.backward(dLdA)", ["call", model, "backward", [G], {}]),
                                 *[(f"{name}.layers[{i}].{g}", ["fetch", model, path("layers", [i], g)])
                                   for i in range(depth) for g in ("dLdW", "dLdb")])
    for (i, g), got, expected in zip([(i, g) for i in range(depth) for g in ("dLdW", "dLdb")], found, grads):
        check_close(f"{name}.layers[{i}].{g} after {name}.backward(dLdA)" + where, got, expected)
    check_close(f"{name}.backward(dLdA): returned dL/dX" + where, returned, dX)


def _mlp_checks(cls, visible, hidden, seed):
    """The forward and backward checks of one MLP class: ``visible`` and ``hidden`` are
    (constructor arguments, layer sizes). Each runs with stand-in layers, then with the
    student's own (see _check_mlp_of_own_layers)."""
    def check(part):
        def run(notebook: Notebook) -> None:
            """The visible cell's wiring, with stand-ins (standin, factory) of the judge's arrays; new sizes; own layers.

            The stand-ins for Linear, ReLU and Identity return arrays of the judge's, so forward is checked
            for what each layer receives (and the order), backward for the gradient each Linear receives (the
            upstream gradient times the activation's derivative), what it returns and dLdA unchanged; at the
            cell's sizes (batch of 2), then larger ones (batches of 6 and 1, one model); then the student's
            own layers (_check_mlp_of_own_layers). One function for MLP0, MLP1 and MLP4, forward and backward.
            """
            rng = notebook.rng(seed)
            for (args, sizes), batches in [(visible, (2,)), (hidden, (6, 1))]:
                name = f"{cls}({', '.join(str(a) for a in args)})"
                _check_mlp(notebook, name, cls, args, sizes, part, rng, batches)
            args, sizes = hidden
            _check_mlp_of_own_layers(notebook, f"{cls}({', '.join(str(a) for a in args)})", cls, args, sizes, part, rng)
        run.__name__ = f"{cls.lower()}_{part}"
        return judged(CHECKS)(run)
    return check("forward"), check("backward")


mlp0_forward, mlp0_backward = _mlp_checks("MLP0", ((3, 2), [3, 2]), ((5, 4), [5, 4]), seed=7007)
mlp1_forward, mlp1_backward = _mlp_checks("MLP1", ((3, 2, 4), [3, 4, 2]), ((5, 3, 6), [5, 6, 3]), seed=7008)
mlp4_forward, mlp4_backward = _mlp_checks("MLP4", ((3, 2, 4), [3, 4, 4, 4, 4, 2]), ((4, 3, 5), [4, 5, 5, 5, 5, 3]), seed=7009)

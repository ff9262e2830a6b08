"""ps1's tests, judged in the grader's process (see coursekit.judge): one check per test cell.

Visible checks repeat what the notebook's visible test cells check, on the same inputs; hidden
checks use new shapes, extreme inputs and PyTorch's values. The MLP is checked with stand-in
layers that record their calls and return arrays chosen here, so a bug in Linear or Tanh costs
no MLP points.
"""
from collections.abc import Callable

import numpy as np

from coursekit.judge import (Earlier, Notebook, StudentError, TestFailure, answered, call, calls_of, check_backward_unseen, check_call,
                             check_close, check_replayed, check_unchanged, extreme_values, judged, made_with, numerical_loss_gradient,
                             parameter_arrays, path, quiet, shaped)
from coursekit.judge.torch_reference import vjp

CHECKS: dict[str, Callable[[Notebook], None]] = {}
MISSING_UPSTREAM = "it ignores grad_output: missing the upstream gradient?"


def _linear(notebook, W, b):
    return call(f"Linear({W.shape[1]}, {W.shape[0]})", notebook.new, "Linear", W.shape[1], W.shape[0],
                initial_weights=W, initial_biases=b)


# --- 1. Linear ---------------------------------------------------------------------------------

@judged(CHECKS)
def linear_visible(notebook: Notebook) -> None:
    """The visible cell's values, then the same checks on values and a learning rate of the student's own.

    Adds: forward, backward, the gradients and update_params on arrays of the same shapes drawn for the
    student, and (in place of the cell's seed-0 check_backward) backward and the parameter gradients against
    finite differences for a Linear(3, 4) of the student's own, with an upstream gradient the kernel never saw.
    """
    W = np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 0.0]])
    b = np.array([0.5, 0.0, -1.0])
    x = np.array([[1.0, 1.0], [2.0, 0.0]])
    G = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    layer = _linear(notebook, W, b)
    check_call("Linear.forward(x)", layer.forward, x, expected=[[3.5, -1.0, 2.0], [2.5, 0.0, 5.0]])
    check_call("Linear.backward(G)", layer.backward, G, expected=[[7.0, 2.0], [-3.0, -1.0]])
    check_close("Linear.grad_weights", layer.grad_weights, [[1.0, 1.0], [2.0, 0.0], [0.0, 2.0]], factors={"N": 2})
    check_close("Linear.grad_biases", layer.grad_biases, [1.0, 1.0, 1.0], factors={"N": 2})

    layer = _linear(notebook, W, b)
    layer.grad_weights, layer.grad_biases = np.ones((3, 2)), np.array([1.0, 2.0, 3.0])
    call("Linear.update_params(0.5)", layer.update_params, 0.5)
    check_close("weights after update_params(0.5)", layer.weights, W - 0.5)
    check_close("biases after update_params(0.5)", layer.biases, b - [0.5, 1.0, 1.5])

    # the same checks again on values of the student's own, of the same shapes: a layer that
    # knows the notebook's numbers gains nothing from them
    rng = notebook.rng(1000)
    W, b, x, G = rng.normal(size=(3, 2)), rng.normal(size=3), rng.normal(size=(2, 2)), rng.normal(size=(2, 3))
    layer = _linear(notebook, W, b)
    check_call("Linear.forward(x) for another x", layer.forward, x, expected=x @ W.T + b,
               hints=[(x @ W.T, "the bias is missing")])
    check_call("Linear.backward(G) for another G", layer.backward, G, expected=G @ W)
    check_close("Linear.grad_weights for another x and G", layer.grad_weights, G.T @ x, factors={"N": 2})
    check_close("Linear.grad_biases for another G", layer.grad_biases, G.sum(axis=0), factors={"N": 2})
    W_random, b_random = rng.normal(size=(4, 3)), rng.normal(size=4)
    check_backward_unseen("Linear", lambda: _linear(notebook, W_random, b_random), rng.normal(size=(5, 3)), (5, 4),
                                params=[("weights", "grad_weights"), ("biases", "grad_biases")])

    layer, lr = _linear(notebook, W, b), float(np.round(rng.uniform(0.05, 0.95), 2))
    gW, gb = rng.normal(size=(3, 2)), rng.normal(size=3)
    layer.grad_weights, layer.grad_biases = gW, gb
    call(f"Linear.update_params({lr})", layer.update_params, lr)
    check_close(f"weights after update_params({lr})", layer.weights, W - lr * gW,
                hints=[(W - 0.5 * gW, "it uses the learning rate 0.5 whatever it is given")])
    check_close(f"biases after update_params({lr})", layer.biases, b - lr * gb)


@judged(CHECKS)
def linear_forward(notebook: Notebook) -> None:
    """forward at four new shapes (a batch of 1, one output) against PyTorch; x and the weights left unchanged.

    Also: Linear(d_in, d_out, initial_weights=W).weights is W itself (kept as given).
    """
    rng = notebook.rng(1001)
    for n, d_in, d_out in [(7, 3, 5), (1, 4, 2), (6, 5, 1), (4, 2, 2)]:
        x, W, b = rng.normal(size=(n, d_in)), rng.normal(size=(d_out, d_in)), rng.normal(size=d_out)
        expected, _ = vjp("linear", (x, W, b), np.zeros((n, d_out)))
        layer = _linear(notebook, W, b)
        if not np.array_equal(W, layer.weights):
            raise TestFailure(f"Linear({d_in}, {d_out}, initial_weights=W).weights is not W: keep the initial weights "
                              "as given (a float64 array)")
        x_given = notebook.array(x)
        y = call("Linear.forward(x)", layer.forward, x_given)
        check_close(f"Linear({d_in}, {d_out}).forward(x) for x of shape {x.shape}", y, expected,
                    hints=[(x @ W.T, "the bias is missing"), (x @ W.T - b, "the bias is subtracted")])
        check_unchanged("Linear.forward", x, x_given.value())
        if not np.array_equal(W, layer.weights):
            raise TestFailure("Linear.forward changed the layer's weights: forward must not modify them")


@judged(CHECKS)
def linear_backward(notebook: Notebook) -> None:
    """backward and the gradients at three new shapes against PyTorch and finite differences; the latest x.

    Also: grad_output left unchanged; after forward(x1), forward(x2), backward uses x2.
    """
    rng = notebook.rng(2002)
    for n, d_in, d_out in [(7, 3, 5), (1, 4, 2), (6, 5, 1)]:
        x, W, b = rng.normal(size=(n, d_in)), rng.normal(size=(d_out, d_in)), rng.normal(size=d_out)
        G = rng.normal(size=(n, d_out))
        _, (dx, dW, db) = vjp("linear", (x, W, b), G)
        layer = _linear(notebook, W, b)
        where = f" (Linear({d_in}, {d_out}), batch of {n})"
        call("Linear.forward(x)", layer.forward, x)
        G_given = notebook.array(G)
        grad_input = call("Linear.backward(grad_output)", layer.backward, G_given)
        ones = np.ones_like(G)
        check_close("Linear.backward: returned dL/dx" + where, grad_input, dx, hints=[(ones @ W, MISSING_UPSTREAM)])
        check_close("Linear.grad_weights" + where, layer.grad_weights, dW, factors={"N": n},
                    hints=[(ones.T @ x, MISSING_UPSTREAM)])
        check_close("Linear.grad_biases" + where, layer.grad_biases, db, factors={"N": n},
                    hints=[(G.mean(axis=0), "it is the mean over the batch: the loss adds up every sample's contribution")])
        check_unchanged("Linear.backward", G, G_given.value())
        check_backward_unseen("Linear", lambda: _linear(notebook, W, b), x, G.shape,
                                    params=[("weights", "grad_weights"), ("biases", "grad_biases")])

    # backward must use the input of the latest forward call
    W, b = rng.normal(size=(2, 3)), rng.normal(size=2)
    x1, x2, G = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    layer = _linear(notebook, W, b)
    call("Linear.forward(x1)", layer.forward, x1)
    call("Linear.forward(x2)", layer.forward, x2)
    call("Linear.backward(grad_output)", layer.backward, G)
    check_close("Linear.grad_weights after forward(x1), forward(x2), backward(G)", layer.grad_weights, G.T @ x2,
                hints=[(G.T @ x1, "it uses x1: backward must use the input of the latest forward call")])


@judged(CHECKS)
def linear_update(notebook: Notebook) -> None:
    """update_params at a learning rate of the student's own, on weights and biases; a second call steps again."""
    rng = notebook.rng(3003)
    W, b = rng.normal(size=(4, 3)), rng.normal(size=4)
    gW, gb = rng.normal(size=(4, 3)), rng.normal(size=4)
    lr = float(np.round(rng.uniform(0.01, 0.5), 3))  # any learning rate the caller gives
    layer = _linear(notebook, W, b)
    layer.grad_weights, layer.grad_biases = gW, gb
    call(f"Linear.update_params({lr})", layer.update_params, lr)
    for name, before, grad in [("weights", W, gW), ("biases", b, gb)]:
        check_close(f"Linear.{name} after update_params({lr})", getattr(layer, name), before - lr * grad,
                    hints=[(before + lr * grad, "the step goes uphill: subtract the gradient"),
                           (before - grad, "the learning rate is not used"),
                           (before, f"the {name} did not change")])
    call(f"Linear.update_params({lr})", layer.update_params, lr)
    check_close(f"Linear.weights after two calls of update_params({lr})", layer.weights, W - 2 * lr * gW)


# --- 2. Tanh -----------------------------------------------------------------------------------

@judged(CHECKS)
def tanh_visible(notebook: Notebook) -> None:
    """The visible cell's value, then forward and backward (vs finite differences) on inputs of the student's own.

    The cell's seed-0 check_backward is replaced by one at the same shape (3, 4) with an x of the student's
    own and an upstream gradient the kernel never saw.
    """
    x = np.array([[0.0, 1.0, -2.0]])
    layer = call("Tanh()", notebook.new, "Tanh")
    check_call("Tanh.forward(x)", layer.forward, x, expected=[[0.0, 0.76159416, -0.96402758]])
    # the same checks again on values of the student's own, of the same shapes
    rng = notebook.rng(4000)
    x = 2 * rng.normal(size=(1, 3))
    layer = call("Tanh()", notebook.new, "Tanh")
    check_call("Tanh.forward(x) for another x", layer.forward, x, expected=np.tanh(x))
    check_backward_unseen("Tanh", lambda: call("Tanh()", notebook.new, "Tanh"), rng.normal(size=(3, 4)), (3, 4))


@judged(CHECKS)
def tanh_hidden(notebook: Notebook) -> None:
    """forward and backward at three shapes against PyTorch and finite differences, inputs near +-1000, the latest x.

    Also: x and grad_output left unchanged; the inputs past +-709.8 (where e**x overflows) are the
    student's own; after forward(x1), forward(x2), backward uses x2.
    """
    rng = notebook.rng(4004)
    for shape in [(6, 4), (1, 3), (5, 1)]:
        x, G = 2 * rng.normal(size=shape), rng.normal(size=shape)
        y_ref, (dx_ref,) = vjp("tanh", (x,), G)
        layer, x_given = call("Tanh()", notebook.new, "Tanh"), notebook.array(x)
        y = call("Tanh.forward(x)", layer.forward, x_given)
        check_close(f"Tanh.forward(x) for x of shape {shape}", y, y_ref)
        check_unchanged("Tanh.forward", x, x_given.value())
        G_given = notebook.array(G)
        grad = call("Tanh.backward(grad_output)", layer.backward, G_given)
        check_unchanged("Tanh.backward", G, G_given.value())
        check_close(f"Tanh.backward(grad_output) for x of shape {shape}", grad, dx_ref,
                    hints=[(1 - np.tanh(x) ** 2, MISSING_UPSTREAM),
                           (G * (1 - x ** 2), "the derivative uses x where it needs tanh(x)"),
                           (G * (1 - np.tanh(x)) ** 2, "check where the square goes in the derivative")])
        check_backward_unseen("Tanh", lambda: call("Tanh()", notebook.new, "Tanh"), x, shape)

    # entries past +-709.8, where e**x overflows, of the student's own (so no table holds them)
    x, G = extreme_values(rng, (2, 5)), rng.normal(size=(2, 5))
    x[0, :2] = 0.0, rng.uniform(20, 40) * rng.choice([-1, 1])
    layer, what = call("Tanh()", notebook.new, "Tanh"), "Tanh.forward(x) for x with entries near +-1000"
    check_call(what, layer.forward, x, expected=np.tanh(x), rtol=0, atol=1e-12)
    what = "Tanh.backward(grad_output) for x with entries near +-1000"
    check_call(what, layer.backward, G, expected=G * (1 - np.tanh(x) ** 2), rtol=0, atol=1e-12)

    # backward must use the input of the latest forward call
    x1, x2, G = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    layer = call("Tanh()", notebook.new, "Tanh")
    call("Tanh.forward(x1)", layer.forward, x1)
    call("Tanh.forward(x2)", layer.forward, x2)
    grad = call("Tanh.backward(grad_output)", layer.backward, G)
    check_close("Tanh.backward after forward(x1), forward(x2)", grad, G * (1 - np.tanh(x2) ** 2),
                hints=[(G * (1 - np.tanh(x1) ** 2), "it uses x1: backward must use the input of the latest forward call")])


# --- 3. MLP, with stand-in layers ---------------------------------------------------------------

def _mlp_of_standins(notebook, rng, n, d_in, d_hidden, d_out):
    """An MLP built from stand-ins, and the arrays they return: {role: {method: array}}."""
    shapes = {"linear1": ((n, d_hidden), (n, d_in)), "activation": ((n, d_hidden), (n, d_hidden)),
              "linear2": ((n, d_out), (n, d_hidden))}
    arrays = {role: {"forward": rng.normal(size=out), "backward": rng.normal(size=inp)}
              for role, (out, inp) in shapes.items()}
    sizes = {"linear1": (d_hidden, d_in), "linear2": (d_out, d_hidden)}
    attributes = {role: {"weights": rng.normal(size=size), "biases": rng.normal(size=size[0])}
                  for role, size in sizes.items()}  # what a Linear layer has, for code that looks
    signatures = {"forward": ["x"], "backward": ["grad_output"], "update_params": ["learning_rate"]}
    layers = {role: notebook.standin("Linear" if role.startswith("linear") else "Tanh", attributes.get(role),
                                   signatures if role.startswith("linear") else {"forward": ["x"], "backward": ["grad_output"]},
                                   forward=[a["forward"]], backward=[a["backward"]],
                                   **({"update_params": [None]} if role.startswith("linear") else {}))
              for role, a in arrays.items()}
    linears = notebook.factory([layers["linear1"], layers["linear2"]], "Linear")
    activations = notebook.factory([layers["activation"]], "Tanh")
    mlp = call(f"MLP({d_in}, {d_hidden}, {d_out})", notebook.new, "MLP", d_in, d_hidden, d_out,
               substitutes={"Linear": linears, "Tanh": activations})
    made = [(sizes["input_dim"], sizes["output_dim"]) for sizes in made_with(linears, ["input_dim", "output_dim"])]
    if made != [(d_in, d_hidden), (d_hidden, d_out)]:
        raise TestFailure(f"MLP({d_in}, {d_hidden}, {d_out}) made its Linear layers with sizes "
                          f"{made}, expected "
                          f"Linear({d_in}, {d_hidden}) then Linear({d_hidden}, {d_out})")
    return mlp, layers, arrays


def _received(logs, method):
    """{role: [arrays passed to its ``method``]} from the stand-ins' logs (see calls_of)."""
    return {role: [args[0] for called, args in log if called == method] for role, log in logs.items()}


def _check_backward_order(logs, where=""):
    """The layers' backward ran once each, from the last layer to the first."""
    calls = {role: sum(called == "backward" for called, _ in log) for role, log in logs.items()}
    order = [role for role in ("linear2", "activation", "linear1") for _ in range(calls[role])]
    if order == ["linear2", "activation", "linear1"]:
        return
    skipped = [f"{'the activation' if role == 'activation' else role} is skipped"
               for role in ("linear2", "activation", "linear1") if not calls[role]]
    raise TestFailure(f"MLP.backward called the layers' backward in the order {order}, expected linear2, "
                      f"activation, linear1{where}" + "".join(f"; {text}" for text in skipped))


def _check_updates(layers, learning_rate):
    logs = calls_of(layers)
    updated = sorted(role for role in ("linear1", "linear2") for called, args in logs[role] if called == "update_params")
    if updated != ["linear1", "linear2"]:
        missing = [f"{role} was not updated" for role in ("linear1", "linear2") if role not in updated]
        raise TestFailure(f"MLP.update_params updated {updated}, expected each of linear1 and linear2 once"
                          + "".join(f"; {text}" for text in missing))
    for role in ("linear1", "linear2"):
        (args,) = [args for called, args in logs[role] if called == "update_params"]
        if not args or args[0] is None or not np.isclose(float(np.asarray(args[0]).ravel()[0]), learning_rate):
            raise TestFailure(f"MLP.update_params({learning_rate}) did not pass the learning rate to {role}.update_params")


OWN_LAYERS = " with your own Linear and Tanh, vs the same layers called by the test in order"
GRADIENTS, WEIGHTS = ["grad_weights", "grad_biases"], ["weights", "biases"]


def _check_mlp_of_own_layers(notebook, rng, n, d_in, d_hidden, d_out):
    """MLP(d_in, d_hidden, d_out) with the student's own Linear and Tanh, whatever they compute:
    its backward's result and the gradients it leaves, and update_params' weights, against the
    same layers called by the judge in the order the text gives (backward from linear2, each
    layer's update_params). An MLP that behaves only when its layers are the judge's stand-ins
    loses here what it kept there; a bug in a layer costs nothing here, since the same layer
    makes the expected values. Skipped where the layers do not run, or hung in their own checks."""
    if not answered(notebook, "linear_visible", "linear_forward", "linear_backward", "linear_update", "tanh_visible", "tanh_hidden"):
        return
    x, G, lr = rng.normal(size=(n, d_in)), rng.normal(size=(n, d_out)), float(np.round(rng.uniform(0.01, 0.5), 3))
    try:
        mlp, linear1, activation, linear2 = notebook.run(["new", "MLP", [d_in, d_hidden, d_out], {}, {}],
                                                      *[["get", Earlier(0), role] for role in ("linear1", "activation", "linear2")])
        layers = (linear1, linear2)
        start = notebook.run(*[["get", layer, w] for layer in layers for w in WEIGHTS])
        _, _, _, g2, ga, dx = notebook.run(
            ["call", linear1, "forward", [x], {}], ["call", activation, "forward", [Earlier(0)], {}],
            ["call", linear2, "forward", [Earlier(1)], {}], ["call", linear2, "backward", [G], {}],
            ["call", activation, "backward", [Earlier(3)], {}], ["call", linear1, "backward", [Earlier(4)], {}])
        grads = notebook.run(*[["get", layer, g] for layer in layers for g in GRADIENTS])
        updated = notebook.run(*[quiet(["call", layer, "update_params", [lr], {}]) for layer in layers],
                             *[["get", layer, w] for layer in layers for w in WEIGHTS])[2:]
        notebook.run(*[["set", layer, w, value] for (layer, w), value in zip([(m, w) for m in layers for w in WEIGHTS], start)])
        shaped(dx, x.shape)  # (layers that return something else are judged by their own part's checks)
        for got, like in zip([*grads, *updated], [*start, *start]):
            shaped(got, np.shape(like))
    except (StudentError, TypeError, ValueError):
        return
    names = [f"{role}.{g}" for role in ("linear1", "linear2") for g in GRADIENTS]
    call("MLP.forward(x)", mlp.forward, x)
    check_call("MLP.backward(grad_output): returned dL/dx" + OWN_LAYERS, mlp.backward, G, expected=dx)
    for label, got, expected in zip(names, notebook.run(*[["get", layer, g] for layer in layers for g in GRADIENTS]), grads):
        check_close(f"{label} after MLP.backward(grad_output)" + OWN_LAYERS, got, expected)
    call(f"MLP.update_params({lr})", mlp.update_params, lr)
    for label, got, expected in zip([f"{role}.{w}" for role in ("linear1", "linear2") for w in WEIGHTS],
                                    notebook.run(*[["get", layer, w] for layer in layers for w in WEIGHTS]), updated):
        check_close(f"{label} after MLP.update_params({lr})" + OWN_LAYERS, got, expected)


@judged(CHECKS)
def mlp_visible(notebook: Notebook) -> None:
    """Backward order and update_params as in the visible cell, on stand-ins (standin, factory); then own layers.

    MLP(1, 3, 1) on a batch of 2 (the cell builds MLP(2, 3, 1) but feeds x of shape (2, 1)), its Linear
    and Tanh replaced by stand-ins that return arrays of the judge's: the sizes the constructor gives
    Linear, backward from linear2 to linear1 returning linear1's gradient, and update_params passing a
    learning rate of the student's own to both Linears; then _check_mlp_of_own_layers at that size.
    """
    rng = notebook.rng(5000)
    mlp, layers, arrays = _mlp_of_standins(notebook, rng, 2, 1, 3, 1)
    call("MLP.forward(x)", mlp.forward, rng.normal(size=(2, 1)))
    grad = call("MLP.backward(grad_output)", mlp.backward, rng.normal(size=(2, 1)))
    _check_backward_order(calls_of(layers))
    check_close("MLP.backward(grad_output): what linear1.backward returned", grad, arrays["linear1"]["backward"])
    lr = float(np.round(rng.uniform(0.05, 0.95), 2))
    call(f"MLP.update_params({lr})", mlp.update_params, lr)
    _check_updates(layers, lr)
    _check_mlp_of_own_layers(notebook, rng, 2, 1, 3, 1)


@judged(CHECKS)
def mlp_hidden(notebook: Notebook) -> None:
    """How forward, backward and update_params use stand-ins (standin, factory) at three sizes; then own layers.

    Stand-ins for Linear and Tanh return arrays of the judge's: each layer's input and upstream gradient,
    what forward and backward return, the call order, x and grad_output unchanged, the learning rate passed
    to both Linears; then the student's own Linear and Tanh in MLP(3, 5, 2) (_check_mlp_of_own_layers).
    """
    rng = notebook.rng(5005)
    for n, d_in, d_hidden, d_out in [(8, 3, 5, 2), (1, 2, 4, 1), (5, 4, 3, 6)]:
        where = f" (MLP({d_in}, {d_hidden}, {d_out}), batch of {n})"
        mlp, layers, arrays = _mlp_of_standins(notebook, rng, n, d_in, d_hidden, d_out)
        x, G = rng.normal(size=(n, d_in)), rng.normal(size=(n, d_out))
        x_given, G_given = notebook.array(x), notebook.array(G)
        y = call("MLP.forward(x)", mlp.forward, x_given)
        check_unchanged("MLP.forward", x, x_given.value())
        received = _received(calls_of(layers), "forward")
        check_close("MLP.forward: the input of linear1.forward" + where, (received["linear1"] or [None])[-1], x)
        check_close("MLP.forward: the input of the activation's forward" + where, (received["activation"] or [None])[-1],
                    arrays["linear1"]["forward"], hints=[(x, "the activation gets x: feed it linear1's output")])
        check_close("MLP.forward: the input of linear2.forward" + where, (received["linear2"] or [None])[-1],
                    arrays["activation"]["forward"], hints=[(arrays["linear1"]["forward"], "the activation is skipped")])
        check_close("MLP.forward(x): what linear2.forward returned" + where, y, arrays["linear2"]["forward"])

        grad = call("MLP.backward(grad_output)", mlp.backward, G_given)
        check_unchanged("MLP.backward", G, G_given.value())
        logs = calls_of(layers)
        _check_backward_order(logs, where)
        received = _received(logs, "backward")
        returned = {role: a["backward"] for role, a in arrays.items()}
        check_close("MLP.backward: the gradient passed to linear2.backward" + where, received["linear2"][0], G)
        check_close("MLP.backward: the gradient passed to the activation's backward" + where,
                    received["activation"][0], returned["linear2"],
                    hints=[(G, "each layer's backward must receive the gradient returned by the layer after it, "
                               "not grad_output")])
        check_close("MLP.backward: the gradient passed to linear1.backward" + where, received["linear1"][0],
                    returned["activation"],
                    hints=[(returned["linear2"], "the activation is skipped"),
                           (G, "each layer's backward must receive the gradient returned by the layer after it, "
                               "not grad_output")])
        check_close("MLP.backward: returned dL/dx" + where, grad, returned["linear1"],
                    hints=[(returned["activation"], "it returns the activation's gradient, not linear1's")])

        lr = float(np.round(rng.uniform(0.01, 0.5), 3))
        call(f"MLP.update_params({lr})", mlp.update_params, lr)
        _check_updates(layers, lr)
    _check_mlp_of_own_layers(notebook, rng, 6, 3, 5, 2)


# --- 4. MSELoss ----------------------------------------------------------------------------------

DIVIDES_BY_N = "it divides by N only: average over all N*q entries, as torch.nn.MSELoss does"


@judged(CHECKS)
def mse_visible(notebook: Notebook) -> None:
    """The visible cell's values, then the same checks and finite differences on values of the student's own."""
    y = np.array([[1.0, 2.0, 3.0, 4.0]])
    t = np.array([[1.0, 0.0, 3.0, 0.0]])
    loss_fn = call("MSELoss()", notebook.new, "MSELoss")
    check_call("MSELoss.forward(y, t)", loss_fn.forward, y, t, expected=5.0, factors={"q": 4})
    check_call("MSELoss.backward()", loss_fn.backward, expected=[[0.0, 1.0, 0.0, 2.0]], factors={"q": 4})
    # the same checks again on values of the student's own
    rng = notebook.rng(6000)
    y, t = rng.normal(size=(1, 4)), rng.normal(size=(1, 4))
    loss_fn = call("MSELoss()", notebook.new, "MSELoss")
    check_call("MSELoss.forward(y, t) for another y and t", loss_fn.forward, y, t,
               expected=float(np.mean((y - t) ** 2)), factors={"q": 4})
    check_call("MSELoss.backward() for another y and t", loss_fn.backward, expected=(y - t) / 2, factors={"q": 4})
    y, t = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    loss_fn = call("MSELoss()", notebook.new, "MSELoss")
    call("MSELoss.forward(y, t)", loss_fn.forward, y, t)
    grad = call("MSELoss.backward()", loss_fn.backward)
    numeric = call("MSELoss.forward(y, t)", numerical_loss_gradient, notebook, "MSELoss", y, t)
    check_close("MSELoss.backward() vs finite differences", grad, numeric, rtol=1e-5, atol=1e-7)


@judged(CHECKS)
def mse_hidden(notebook: Notebook) -> None:
    """forward and backward at three shapes against PyTorch and finite differences; backward uses the latest y.

    Also: y and t left unchanged; hints for a mean over N only, a missing factor 2 and a wrong sign.
    """
    rng = notebook.rng(6006)
    for n, q in [(7, 3), (1, 4), (5, 1)]:
        y, t = rng.normal(size=(n, q)), rng.normal(size=(n, q))
        loss_ref, (dy, _) = vjp("mse_loss", (y, t))
        loss_fn, y_given, t_given = call("MSELoss()", notebook.new, "MSELoss"), notebook.array(y), notebook.array(t)
        where = f" for y of shape {(n, q)}"
        loss = call("MSELoss.forward(y, t)", loss_fn.forward, y_given, t_given)
        check_close("MSELoss.forward(y, t)" + where, loss, loss_ref,
                    hints=[(np.sum((y - t) ** 2) / n, DIVIDES_BY_N),
                           (np.sum((y - t) ** 2), "it is the sum: the loss is a mean")])
        check_unchanged("MSELoss.forward (y)", y, y_given.value())
        check_unchanged("MSELoss.forward (t)", t, t_given.value())
        grad = call("MSELoss.backward()", loss_fn.backward)
        check_close("MSELoss.backward()" + where, grad, dy,
                    hints=[(2 * (y - t) / n, DIVIDES_BY_N),
                           ((y - t) / (n * q), "the factor 2 from the square is missing"),
                           (2 * (t - y) / (n * q), "the sign is wrong: differentiate with respect to y")])
        numeric = call("MSELoss.forward(y, t)", numerical_loss_gradient, notebook, "MSELoss", y, t)
        check_close("MSELoss.backward() vs finite differences" + where, grad, numeric, rtol=1e-5, atol=1e-7)

    # backward must use the arguments of the latest forward call
    y1, y2, t = rng.normal(size=(3, 2)), rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    loss_fn = call("MSELoss()", notebook.new, "MSELoss")
    call("MSELoss.forward(y1, t)", loss_fn.forward, y1, t)
    call("MSELoss.forward(y2, t)", loss_fn.forward, y2, t)
    check_call("MSELoss.backward() after forward(y1, t), forward(y2, t)", loss_fn.backward,
               expected=2 * (y2 - t) / y2.size,
               hints=[(2 * (y1 - t) / y1.size, "it uses y1: backward must use the latest forward call")])


# --- 5. Training ---------------------------------------------------------------------------------

def training_data(num_samples: int = 100, a: float = 2.0, c: float = 3.0,
                  rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Noisy samples of a x^2 + c on [-1, 1], shape (num_samples, 1): by default the notebook's
    generate_data() (2 x^2 + 3 on a grid, noise from its seed); with ``rng``, at points drawn from it."""
    if rng is None:
        rng, x = np.random.default_rng(4), np.linspace(-1, 1, num_samples)
    else:
        x = np.sort(rng.uniform(-1, 1, num_samples))
    y = a * x ** 2 + c + 0.2 * rng.normal(size=num_samples)
    return x[:, None], y[:, None]


EPOCHS, LEARNING_RATE, LOSS_BELOW = 150, 0.1, 0.15
NEW_POINTS = np.linspace(-0.95, 0.95, 39)[:, None]  # the visible check's; the hidden one draws its own
PARAMETERS = [("linear1", "weights"), ("linear1", "biases"), ("linear2", "weights"), ("linear2", "biases")]
SHAPES = [(10, 1), (10,), (1, 10), (1,)]  # MLP(1, 10, 1)'s


def _train(notebook, x, y, x_new):
    """The notebook's loop on the student's MLP(1, 10, 1) and MSELoss, in one round trip: the
    network's parameters (PARAMETERS) before training, its final predictions on ``x`` and on
    ``x_new``, and its parameters after."""
    notebook.seed(0)
    mlp = call("MLP(1, 10, 1)", notebook.new, "MLP", 1, 10, 1)
    loss_fn = call("MSELoss()", notebook.new, "MSELoss")
    fetch_parameters = [["fetch", mlp, path(layer, name)] for layer, name in PARAMETERS]
    operations = [*fetch_parameters, quiet(["array", x]), quiet(["array", y])]  # only the start and the end come back
    x_kept, y_kept = Earlier(len(PARAMETERS)), Earlier(len(PARAMETERS) + 1)
    for _ in range(EPOCHS):
        start = len(operations)
        operations += [quiet(["call", mlp, "forward", [x_kept], {}]),
                       quiet(["call", loss_fn, "forward", [Earlier(start), y_kept], {}]),
                       quiet(["call", loss_fn, "backward", [], {}]),
                       quiet(["call", mlp, "backward", [Earlier(start + 2)], {}]),
                       quiet(["call", mlp, "update_params", [LEARNING_RATE], {}])]
    operations += [["call", mlp, "forward", [x], {}], ["call", mlp, "forward", [x_new], {}], *fetch_parameters]
    results = call("the training loop", notebook.run, *operations)
    n = len(PARAMETERS)
    return results[:n], results[-n - 2], results[-n - 1], results[-n:]


def network(parameters: list, x: np.ndarray) -> np.ndarray:
    """Linear -> tanh -> Linear with ``parameters`` [W1, b1, W2, b2] (as PARAMETERS), on ``x``."""
    W1, b1, W2, b2 = (np.asarray(p, dtype=np.float64) for p in parameters)
    return np.tanh(x @ W1.T + b1) @ W2.T + b2


def gradient_descent(parameters: list, x: np.ndarray, y: np.ndarray, epochs: int = EPOCHS,
                     learning_rate: float = LEARNING_RATE) -> list[np.ndarray]:
    """[W1, b1, W2, b2] after ``epochs`` steps of full-batch gradient descent on the mean squared
    error of ``network`` from ``parameters``: what the notebook's loop does with correct parts."""
    W1, b1, W2, b2 = (np.array(p, dtype=np.float64) for p in parameters)
    for _ in range(epochs):
        hidden = np.tanh(x @ W1.T + b1)
        grad_output = 2 * (hidden @ W2.T + b2 - y) / y.size
        grad_hidden = (grad_output @ W2) * (1 - hidden ** 2)
        W1, b1 = W1 - learning_rate * grad_hidden.T @ x, b1 - learning_rate * grad_hidden.sum(axis=0)
        W2, b2 = W2 - learning_rate * grad_output.T @ hidden, b2 - learning_rate * grad_output.sum(axis=0)
    return [W1, b1, W2, b2]


def _check_training(notebook, a, c, rng=None):
    """Train on noisy samples of ``a`` x^2 + ``c``. The trained weights and biases must be those
    of EPOCHS steps of gradient descent from the network's first ones (the judge replays them),
    MLP.forward must be the network they make, and its loss must be below LOSS_BELOW on the
    training data and on new points of the curve. (So weights fitted another way, or a forward
    that returns the curve or fits the targets it has seen, cannot pass.)"""
    x, y = training_data(a=a, c=c, rng=rng)
    x_new = NEW_POINTS if rng is None else np.sort(rng.uniform(-0.95, 0.95, len(NEW_POINTS)))[:, None]
    curve = f"{a:g} x^2 + {c:g}" if rng is None else f"{a:.2f} x^2 + {c:.2f}"
    first, fitted, predicted, parameters = _train(notebook, x, y, x_new)
    names = [f"MLP.{layer}.{name}" for layer, name in PARAMETERS]
    first = parameter_arrays(f"before training on {curve}", names, first, SHAPES)
    parameters = parameter_arrays(f"after training on {curve}", names, parameters, SHAPES)
    try:
        by_weights = network(parameters, x), network(parameters, x_new)
        replayed = gradient_descent(first, x, y)
    except ValueError:
        raise TestFailure(f"the layers' weights and biases have shapes {[np.shape(p) for p in first]} before training on "
                          f"{curve} and {[np.shape(p) for p in parameters]} after, not those of MLP(1, 10, 1)") from None
    for name, value, expected in zip(["x", "new points"], [fitted, predicted], by_weights):
        check_close(f"after training on {curve}, MLP.forward({name}) vs the network of its layers' weights and biases",
                    value, expected)
    check_replayed(f"after training on {curve}", names, parameters, replayed)
    for name, value, expected in zip(["training data", "new points"], by_weights, [y, a * x_new ** 2 + c]):
        loss = float(np.mean((value - expected) ** 2))
        if not loss < LOSS_BELOW:
            raise TestFailure(f"after training on {curve}, the loss on its {name} is {loss:.4f}, not below {LOSS_BELOW}: "
                              "check the parts above")


@judged(CHECKS)
def training_check(notebook: Notebook) -> None:
    """The notebook's training loop on its curve 2 x^2 + 3, run here: gradient descent replayed, new points fitted.

    The visible cell reads the notebook's own losses; this trains the student's MLP(1, 10, 1) and MSELoss
    itself (seed 0, 150 epochs, learning rate 0.1): the trained weights must be those of gradient descent
    from the first ones (replayed here), forward the network they make, and the loss below 0.15 on the
    training data and on 39 new points of the curve (_check_training).
    """
    _check_training(notebook, 2.0, 3.0)


@judged(CHECKS)
def training_hidden(notebook: Notebook) -> None:
    """The same loop on the student's own curve a x^2 + c (1 <= a <= 3, 2 <= c <= 4), points and noise."""
    rng = notebook.rng(5001)
    _check_training(notebook, rng.uniform(1, 3), rng.uniform(2, 4), rng)

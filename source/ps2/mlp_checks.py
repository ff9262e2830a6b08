"""ps2's own visible check, next to its notebook (the checks every problem set uses are in
gradcheck.py): how an MLP chains its layers, tested with stand-in layers."""
from gradcheck import SpyActivation, SpyLayer, TestFailure, call, check_close, np, substitute


class SpyMyTorchLinear(SpyLayer):
    """SpyLayer with the parameters of this notebook's Linear: forward(A), backward(dLdO)."""

    def forward(self, A):
        return super().forward(A)

    def backward(self, dLdO):
        return super().backward(dLdO)


def _mlp_layout(name, model, linears, activations, sizes):
    """Check ``model.layers`` and ``model.f`` against the stand-ins the constructor made."""
    expected = [(a, b) for a, b in zip(sizes, sizes[1:])]
    layers, f = getattr(model, "layers", None), getattr(model, "f", None)
    if not isinstance(layers, list) or not isinstance(f, list):
        raise TestFailure(f"{name} needs two lists, self.layers (the Linear layers) and self.f (the activations)")
    if len(layers) != len(expected):
        raise TestFailure(f"{name}.layers has {len(layers)} layers, expected {len(expected)}")
    for i, layer in enumerate(layers):
        if layer not in linears:
            raise TestFailure(f"{name}.layers[{i}] is not a Linear made by {name}'s constructor")
        if layer.size != expected[i]:
            raise TestFailure(f"{name}.layers[{i}] is Linear{layer.size}, expected Linear{expected[i]}")
    kinds = ["ReLU"] * (len(expected) - 1) + ["Identity"]
    found = [getattr(a, "kind", type(a).__name__) for a in f]
    if found != kinds:
        raise TestFailure(f"{name}.f holds {found}, expected {kinds}: ReLU after every hidden layer, "
                          "Identity at the output")
    if len({id(a) for a in f}) != len(f) or not all(a in activations for a in f):
        raise TestFailure(f"{name}.f uses one activation object twice: each layer needs its own, "
                          "since an activation keeps its input for backward")


def check_mlp_wiring(name, build, namespace, sizes, part):
    """Check how an MLP chains its layers, with stand-ins for Linear, ReLU and Identity.

    Each stand-in multiplies by its own prime number and records its calls, so the output
    shows which layers were used and the record shows in what order. Your Linear and
    activations are not used: this test grades the MLP alone.

    Args:
    - name (str): the model as named in messages, e.g. "MLP1(3, 2, 4)".
    - build (callable): makes the model, e.g. ``lambda: MLP1(3, 2, 4)``.
    - namespace (dict): the notebook's globals(), where Linear, ReLU and Identity are swapped.
    - sizes (list of int): the layer widths from input to output, e.g. [3, 4, 2].
    - part (str): "forward" or "backward".
    """
    log, linears, activations = [], [], []

    def linear(num_inputs, num_outputs):
        layer = SpyMyTorchLinear("Linear", 1.0, log)
        layer.size = (num_inputs, num_outputs)
        linears.append(layer)
        return layer

    def activation(kind):
        def make():
            spy = SpyActivation(kind, 1.0, log)
            spy.kind = kind
            activations.append(spy)
            return spy
        return make

    with substitute(namespace, Linear=linear, ReLU=activation("ReLU"), Identity=activation("Identity")):
        model = call(name, build)
    _mlp_layout(name, model, linears, activations, sizes)
    primes = iter([2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37])
    spies = []
    for i, (layer, act) in enumerate(zip(model.layers, model.f)):
        layer.name, layer.scale = f"layers[{i}]", next(primes)
        act.name, act.scale = f"f[{i}]", next(primes)
        spies += [layer, act]
    product = float(np.prod([spy.scale for spy in spies]))
    X = np.arange(1.0, 2.0 * sizes[0] + 1).reshape(2, sizes[0])
    skipped = [(spy, f"{spy.name} is skipped") for spy in spies]
    del log[:]
    out = call(f"{name}.forward(X)", model.forward, X)
    if part == "forward":
        check_close(f"{name}.forward(X) through stand-in layers", out, X * product,
                    hints=[(X * product / spy.scale, text) for spy, text in skipped])
        order = [spy_name for _, spy_name in log]
        expected = [spy.name for spy in spies]
        if order != expected:
            raise TestFailure(f"{name}.forward called {order}, expected {expected}")
        return
    G = np.arange(-1.0, 2.0 * sizes[0] - 1).reshape(2, sizes[0])
    del log[:]
    grad = call(f"{name}.backward(dLdA)", model.backward, G)
    check_close(f"{name}.backward(dLdA) through stand-in layers", grad, G * product,
                hints=[(G * product / spy.scale, text) for spy, text in skipped])
    linear_order = [spy_name for event, spy_name in log if event == "backward" and spy_name.startswith("layers")]
    expected = [layer.name for layer in reversed(model.layers)]
    if linear_order != expected:
        raise TestFailure(f"{name}.backward called the layers' backward in the order {linear_order}, "
                          f"expected {expected}")

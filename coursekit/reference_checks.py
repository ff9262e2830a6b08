"""Checks for hidden tests that need the model solution: never shipped to students.

A model is graded on its own by building it from the reference layers of the model solution
(coursekit.solutions), so a mistake in the student's Linear or activations costs no points here.
"""
from coursekit.solutions import reference
from coursekit.torch_reference import vjp
from coursekit.gradcheck import TestFailure, call, check_close, np, numerical_input_gradient, substitute


def check_mlp(assignment, name, build, namespace, sizes, part, seed):
    """Compare an MLP built from reference layers with PyTorch (and finite differences).

    Args:
    - assignment (str): whose model solution provides Linear, ReLU and Identity, e.g. "ps2".
    - name, build, namespace, sizes, part: as for gradcheck.check_mlp_wiring.
    - seed (int): for the weights and inputs.
    """
    layers = {kind: reference(assignment, kind) for kind in ("Linear", "ReLU", "Identity")}
    with substitute(namespace, **layers):
        model = call(name, build)
    if len(getattr(model, "layers", [])) != len(sizes) - 1:
        raise TestFailure(f"{name}.layers should hold {len(sizes) - 1} Linear layers")
    rng = np.random.default_rng(seed)
    params = []
    for layer, (a, b) in zip(model.layers, zip(sizes, sizes[1:])):
        layer.W, layer.b = rng.normal(size=(a, b)), rng.normal(size=b)
        params += [layer.W.copy(), layer.b.copy()]
    for n in (6, 1):
        X, G = rng.normal(size=(n, sizes[0])), rng.normal(size=(n, sizes[-1]))
        out_ref, grads = vjp("relu_mlp", [X] + params, G)
        where = f" for X of shape {X.shape}"
        out = call(f"{name}.forward(X)", model.forward, X.copy())
        if part == "forward":
            check_close(f"{name}.forward(X){where}", out, out_ref)
            continue
        dLdX = call(f"{name}.backward(dLdA)", model.backward, G.copy())
        check_close(f"{name}.backward(dLdA): returned dL/dX{where}", dLdX, grads[0])
        for i, layer in enumerate(model.layers):
            check_close(f"{name}.layers[{i}].dLdW after backward{where}", layer.dLdW, grads[1 + 2 * i])
            check_close(f"{name}.layers[{i}].dLdb after backward{where}", layer.dLdb, grads[2 + 2 * i])
        numeric = numerical_input_gradient(lambda Z: call(f"{name}.forward(X)", model.forward, Z), X, G)
        check_close(f"{name}.backward(dLdA) vs finite differences{where}", dLdX, numeric, rtol=1e-5, atol=1e-7)
    if part == "backward":
        X1, X2 = rng.normal(size=(3, sizes[0])), rng.normal(size=(3, sizes[0]))
        G = rng.normal(size=(3, sizes[-1]))
        _, grads = vjp("relu_mlp", [X2] + params, G)
        call(f"{name}.forward(X1)", model.forward, X1)
        call(f"{name}.forward(X2)", model.forward, X2)
        check_close(f"{name}.backward after forward(X1), forward(X2)",
                    call(f"{name}.backward(dLdA)", model.backward, G), grads[0],
                    hints=[(vjp("relu_mlp", [X1] + params, G)[1][0],
                            "it uses X1: backward must use the latest forward call")])

"""The shared checks: finite differences, one-line messages and their hints, the PyTorch reference."""
import concurrent.futures
import importlib.util
import multiprocessing
import os
import sys
import unittest.mock

import numpy as np
import pytest

from coursekit.judge import torch_reference
from coursekit import COURSE_ROOT
from coursekit.shipped import gradcheck
from coursekit.shipped.gradcheck import (TestFailure, call, check_close, check_unchanged, check_vectorised, numerical_gradient,
                                         numerical_input_gradient, substitute)
from coursekit.judge.torch_reference import CACHE_ONLY, RECORD, vjp


def shipped_with(assignment, module):
    """A helper that ships next to one assignment's notebook (source/<ps>/<module>.py), importing
    this package's gradcheck where its notebook imports the copy next to it."""
    spec = importlib.util.spec_from_file_location(f"{assignment}_{module}", COURSE_ROOT / "source" / assignment / f"{module}.py")
    loaded = importlib.util.module_from_spec(spec)
    with unittest.mock.patch.dict(sys.modules, {"gradcheck": gradcheck}):
        spec.loader.exec_module(loaded)
    return loaded


check_mlp_wiring = shipped_with("ps2", "mlp_checks").check_mlp_wiring
layer_checks = shipped_with("ps3", "layer_checks")
check_einsum, check_layer_backward, require_torch = layer_checks.check_einsum, layer_checks.check_layer_backward, layer_checks.require_torch


def message(*args, **kwargs):
    with pytest.raises(TestFailure) as failure:
        check_close(*args, **kwargs)
    text = str(failure.value)
    assert "\n" not in text
    return text


def test_numerical_gradient_matches_an_analytic_gradient():
    x = np.array([[0.3, -1.2], [2.0, 0.5]])
    grad = numerical_gradient(lambda: float(np.sum(np.sin(x) * x)), x)
    np.testing.assert_allclose(grad, np.cos(x) * x + np.sin(x), rtol=1e-8)
    assert x[0, 0] == 0.3, "x is restored"


def test_numerical_input_gradient_uses_the_upstream_gradient():
    W = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]])
    x, g = np.ones((4, 3)), np.arange(8.0).reshape(4, 2)
    np.testing.assert_allclose(numerical_input_gradient(lambda z: z @ W.T, x, g), g @ W, rtol=1e-8)


def test_vjp_computes_pytorch_values_in_a_clean_process_when_not_cached(monkeypatch):
    rng = np.random.default_rng()  # fresh inputs: never in the cache
    x, W, b, g = rng.normal(size=(5, 3)), rng.normal(size=(2, 3)), rng.normal(size=2), rng.normal(size=(5, 2))
    y, (dx, dW, db) = vjp("linear", (x, W, b), g)
    np.testing.assert_allclose(y, x @ W.T + b)
    np.testing.assert_allclose(dx, g @ W)
    np.testing.assert_allclose(dW, g.T @ x)
    np.testing.assert_allclose(db, g.sum(axis=0))
    loss, (dy, _) = vjp("mse_loss", (x, x + 1))
    assert loss == pytest.approx(1.0) and isinstance(loss, float)
    np.testing.assert_allclose(dy, -2 * np.ones_like(x) / x.size)
    monkeypatch.setenv(CACHE_ONLY, "1")
    with pytest.raises(LookupError, match="make release"):
        vjp("tanh", (x,), g[:, :1].repeat(3, axis=1))


def _tanh_in_a_worker(seed):
    x = np.random.default_rng([99, seed]).normal(size=(4, 3))
    _, (dx,) = vjp("tanh", (x,), np.ones_like(x))
    shared = torch_reference._server[3] is None
    return np.allclose(dx, 1 - np.tanh(x) ** 2), shared, os.getpid()


def test_forked_workers_share_one_pytorch_process_started_once_per_process():
    """As make grade's workers do: one torch import per grader, not per worker nor per class."""
    path = torch_reference.share_server()
    with concurrent.futures.ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("fork")) as pool:
        answers = list(pool.map(_tanh_in_a_worker, range(12)))
    assert all(right and shared for right, shared, _ in answers)
    assert len({pid for *_, pid in answers}) > 1
    process = torch_reference._shared[1]
    assert torch_reference.share_server() == path and torch_reference._shared[1] is process


def test_a_value_pytorch_cannot_compute_is_the_courses_error_and_the_process_lives_on():
    with pytest.raises(torch_reference.MissingValue, match="could not compute linear: RuntimeError"):
        vjp("linear", (np.ones((2, 3)), np.ones((4, 4)), np.ones(4)), np.ones((2, 4)))
    process = torch_reference._server[3]
    x = np.random.default_rng().normal(size=(2, 2))
    np.testing.assert_allclose(vjp("tanh", (x,), np.ones_like(x))[1][0], 1 - np.tanh(x) ** 2)
    assert torch_reference._server[3] is process


def test_a_pytorch_process_that_cannot_be_reached_is_the_courses_error_not_the_students(monkeypatch, tmp_path):
    """Graded as a MissingValue (the submission is not graded), never as a failed test."""
    x = np.random.default_rng().normal(size=(2, 3))
    monkeypatch.setenv(torch_reference.SERVER, str(tmp_path / "no-socket"))
    monkeypatch.setattr(torch_reference, "_server", None)
    with pytest.raises(torch_reference.MissingValue, match="cannot be reached"):
        vjp("tanh", (x,), np.ones_like(x))
    monkeypatch.delenv(torch_reference.SERVER)
    np.testing.assert_allclose(vjp("tanh", (x,), np.ones_like(x))[1][0], 1 - np.tanh(x) ** 2)  # the next one starts again


def test_threads_of_one_process_each_get_their_own_values():
    """A Dask worker grades in threads: each request is answered to the thread that made it."""
    def many(seed):
        rng = np.random.default_rng(seed)
        for _ in range(40):
            x = rng.normal(size=(int(rng.integers(1, 6)), 3))
            _, (dx,) = vjp("tanh", (x,), np.ones_like(x))
            if not np.allclose(dx, 1 - np.tanh(x) ** 2):
                return False
        return True

    torch_reference.share_server()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert all(pool.map(many, range(4)))


def test_vjp_reads_recorded_values_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch_reference, "CACHE", tmp_path)
    monkeypatch.setenv(RECORD, "1")
    x = np.linspace(-2, 2, 6).reshape(2, 3)
    first = vjp("tanh", (x,), np.ones_like(x))
    assert len(list(tmp_path.iterdir())) == 1
    monkeypatch.delenv(RECORD)
    monkeypatch.setenv(CACHE_ONLY, "1")
    second = vjp("tanh", (x,), np.ones_like(x))
    np.testing.assert_array_equal(first[1][0], second[1][0])
    np.testing.assert_allclose(second[0], np.tanh(x))


def test_passes_close_values_and_accepts_numpy_floats():
    check_close("x", np.array([1.0, 2.0]), [1.0, 2.0 + 1e-12])
    check_close("loss", np.float64(0.5), 0.5)


def test_messages_name_the_quantity_the_error_and_the_mistake():
    expected = np.arange(6.0).reshape(2, 3) + 1
    assert "transposed" in message("grad_weights", expected.T.copy(), expected)
    assert "(1, q) is not (q,)" in message("grad_biases", np.ones((1, 3)), np.ones(3))
    assert "sum over the batch axis" in message("grad_biases", np.ones((4, 3)), np.ones(3))
    assert "times N" in message("grad", expected * 7, expected, factors={"N": 7})
    assert "divided by N" in message("grad", expected / 7, expected, factors={"N": 7})
    assert "wrong sign" in message("grad", -expected, expected)
    assert "missing the upstream" in message("grad", expected + 1, expected,
                                             hints=[(expected + 1, "missing the upstream gradient?")])
    text = message("grad", expected + np.eye(2, 3) * 0.5, expected)
    assert "largest error 0.5 at index (0, 0)" in text
    assert "is None" in message("grad", None, expected)
    assert "should be a float" in message("loss", np.array(1.0), 1.0)
    assert "nan or inf" in message("y", np.array([np.nan, 1.0]), [1.0, 1.0])


def test_call_turns_overflow_and_errors_into_one_line_failures():
    with pytest.raises(TestFailure, match="overflow"):
        call("Tanh.forward(x)", lambda x: np.exp(x), np.array([1000.0]))
    with pytest.raises(TestFailure, match="raised ValueError: bad"):
        call("f()", lambda: (_ for _ in ()).throw(ValueError("bad")))


def test_check_unchanged_detects_in_place_changes():
    check_unchanged("f", np.ones(3), np.ones(3))
    with pytest.raises(TestFailure, match="in place"):
        check_unchanged("f", np.ones(3), np.zeros(3))


def test_substitute_restores_names():
    namespace = {"Linear": 1}
    with substitute(namespace, Linear=2, Tanh=3):
        assert namespace == {"Linear": 2, "Tanh": 3}
    assert namespace == {"Linear": 1}


def test_numerical_gradient_names_a_loss_that_is_not_one_number():
    x = np.ones(3)
    with pytest.raises(TestFailure, match=r"array of shape \(1, 1\) where a single number"):
        numerical_gradient(lambda: np.sum(x, keepdims=True)[None], x)


def test_check_vectorised_tells_whole_array_code_from_element_loops():
    H = np.linspace(-1, 1, 10_000)
    np.testing.assert_array_equal(check_vectorised("relu(H)", lambda Z: np.maximum(Z, 0.0), H), np.maximum(H, 0.0))

    def loop(Z):
        out = np.empty_like(Z)
        for i in range(Z.size):
            out[i] = Z[i] if Z[i] > 0 else 0.0
        return out

    for slow in (np.vectorize(lambda h: max(0.0, h)), loop):
        with pytest.raises(TestFailure, match="loops in Python"):
            check_vectorised("relu(H)", slow, H)


class Stack:
    """A correct MLP built from whatever Linear / ReLU / Identity are in scope."""

    def __init__(self, sizes, shared_relu=False):
        self.layers = [Linear(a, b) for a, b in zip(sizes, sizes[1:])]
        hidden = len(sizes) - 2
        self.f = ([ReLU()] * hidden if shared_relu else [ReLU() for _ in range(hidden)]) + [Identity()]

    def forward(self, X):
        for layer, f in zip(self.layers, self.f):
            X = f.forward(layer.forward(X))
        return X

    def backward(self, dLdA):
        for layer, f in zip(self.layers[::-1], self.f[::-1]):
            dLdA = layer.backward(dLdA * f.backward())
        return dLdA


class SkipsFirstDerivative(Stack):
    def backward(self, dLdA):
        return self.layers[0].backward(self.layers[1].backward(dLdA * self.f[1].backward()))


Linear = ReLU = Identity = None  # replaced by the stand-ins while a model is built


def test_check_mlp_wiring_accepts_a_correct_model_and_explains_wrong_ones():
    for part in ("forward", "backward"):
        check_mlp_wiring("Stack", lambda: Stack([3, 4, 4, 2]), globals(), [3, 4, 4, 2], part)
    with pytest.raises(TestFailure, match="has 2 layers, expected 3"):
        check_mlp_wiring("Stack", lambda: Stack([3, 4, 2]), globals(), [3, 4, 4, 2], "forward")
    with pytest.raises(TestFailure, match="one activation object twice"):
        check_mlp_wiring("Stack", lambda: Stack([3, 4, 4, 2], shared_relu=True), globals(), [3, 4, 4, 2], "forward")
    with pytest.raises(TestFailure, match=r"f\[0\] is skipped"):
        check_mlp_wiring("Skips", lambda: SkipsFirstDerivative([3, 4, 2]), globals(), [3, 4, 2], "backward")


def test_vjp_passes_options_and_keys_the_cache_by_them():
    """Conv2D's reference: NHWC images, W (rows, cols, in, out), stride and padding as options."""
    rng = np.random.default_rng()
    X, W, b = rng.normal(size=(2, 4, 5, 3)), rng.normal(size=(2, 3, 3, 4)), rng.normal(size=(1, 4))
    for stride, pad in [(1, [0, 0]), (2, [1, 0])]:
        X_pad = np.pad(X, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (0, 0)))
        rows, cols = (X_pad.shape[1] - 2) // stride + 1, (X_pad.shape[2] - 3) // stride + 1
        expected = np.array([[[np.einsum("ijk,ijko->o", X_pad[n, r * stride:r * stride + 2, c * stride:c * stride + 3], W)
                               for c in range(cols)] for r in range(rows)] for n in range(2)]) + b[0]
        out, grads = vjp("conv2d", (X, W, b), np.ones(expected.shape), stride=stride, pad=pad)
        np.testing.assert_allclose(out, expected, rtol=1e-10)
        assert [g.shape for g in grads] == [X.shape, W.shape, b.shape]
    out, _ = vjp("max_pool2d", (X,), np.zeros((2, 2, 3, 3)), kernel=[3, 3], stride=2, pad=[1, 1])
    assert out[0, 0, 0, 0] == X[0, :2, :2, 0].max()


class Scale:
    """A layer y = x * w (w one number) that keeps its parameter in a dictionary."""

    def __init__(self, wrong_gradient=False):
        self.parameters, self.gradients, self.wrong = {"w": np.array([[2.0]])}, {}, wrong_gradient

    def forward(self, x):
        self.x = x
        return x * self.parameters["w"]

    def backward(self, grad_output):
        self.gradients = {"w": np.array([[np.sum(grad_output * self.x) * (2 if self.wrong else 1)]])}
        return grad_output * self.parameters["w"]


def test_check_layer_backward_compares_every_gradient_in_the_dictionary():
    x, g = np.arange(6.0).reshape(2, 3), np.ones((2, 3))
    check_layer_backward("Scale", Scale(), x, g)
    with pytest.raises(TestFailure, match=r"Scale.gradients\['w'\] vs finite differences is wrong"):
        check_layer_backward("Scale", Scale(wrong_gradient=True), x, g)
    layer = Scale()
    layer.backward = lambda grad_output: grad_output * 2.0  # no gradients set
    with pytest.raises(TestFailure, match="gradients should be a dict with the keys"):
        check_layer_backward("Scale", layer, x, g)


def test_check_einsum_needs_the_value_and_an_einsum_call():
    namespace = {"np": np}
    exec("def trace(A):\n    return np.einsum('ii->', A)\n"
         "def trace_diag(A):\n    return np.sum(np.diag(A))\n", namespace)
    A = np.arange(9.0).reshape(3, 3)
    check_einsum("trace(A)", namespace["trace"], (A,), 12.0)
    with pytest.raises(TestFailure, match="does not call np.einsum"):
        check_einsum("trace(A)", namespace["trace_diag"], (A,), 12.0)
    with pytest.raises(TestFailure, match="trace.A. is wrong"):
        check_einsum("trace(A)", namespace["trace"], (A,), 13.0)
    assert namespace["np"] is np, "NumPy is put back"


EINSUM_ANSWERS = """
from numpy import einsum as contract
import numpy


def matmul_renamed(A, B):
    return contract('ij,jk->ik', A, B)


def matmul_module(A, B):
    return numpy.einsum('ji,jk->ik', A.T, B)


def matmul_interleaved(A, B):
    return np.einsum(A, [0, 1], B, [1, 2], [0, 2])


def matmul_through_identity(A, B):
    return np.einsum('ij->ij', A @ B)


def matmul_token_call(A, B):
    np.einsum('ij,jk->ik', A, B)
    return A @ B + 0.0


def own_einsum(subscripts, *operands):  # named einsum, computing the answer otherwise
    return operands[0] @ operands[1]


def matmul_own_einsum(A, B):
    return own_einsum('ij,jk->ik', A, B)


def matmul_into_out(A, B):
    out = np.zeros((len(A), B.shape[1]))
    np.einsum('ij,kl->il', A, B, out=out)  # a contraction of the right shape, then the answer written over it
    out[...] = A @ B
    return out


def matmul_times_identity(A, B):
    return np.einsum('ik,kj->ij', A @ B, np.eye(B.shape[1]))
"""


def test_einsum_is_recognised_by_the_function_and_must_work_on_the_inputs():
    namespace = {"np": np}
    exec(EINSUM_ANSWERS, namespace)
    rng = np.random.default_rng(5)
    A, B = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    for name in ("matmul_renamed", "matmul_module", "matmul_interleaved"):  # einsum however it is named
        check_einsum("matmul(A, B)", namespace[name], (A, B), A @ B)
    with pytest.raises(TestFailure, match="does not call np.einsum"):
        check_einsum("matmul(A, B)", namespace["matmul_own_einsum"], (A, B), A @ B)
    for name in ("matmul_through_identity", "matmul_token_call", "matmul_times_identity", "matmul_into_out"):
        with pytest.raises(TestFailure, match="not what a call of np.einsum on its arguments returned"):
            check_einsum("matmul(A, B)", namespace[name], (A, B), A @ B)
    assert np.einsum is numpy_einsum and namespace["contract"] is numpy_einsum, "einsum is put back"


numpy_einsum = np.einsum


def test_require_torch_explains_a_missing_pytorch():
    require_torch(object())
    with pytest.raises(TestFailure, match="needs PyTorch"):
        require_torch(None)


def test_a_failed_visible_test_shows_its_message_first_without_a_traceback_into_the_helpers(tmp_path):
    """In a kernel, as a student runs the release: the message, wrapped so that `nbgrader
    validate` (which cuts lines at 90 characters) shows all of it, then the student's own lines."""
    import re

    import nbformat
    from nbclient import NotebookClient

    from coursekit import COURSE_ROOT

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import numpy as np\nclass Layer:\n    def forward(self, x):\n"
                                  "        return x @ np.ones((4, 5))"),
        nbformat.v4.new_code_cell("from gradcheck import call, check_close\n"
                                  "check_close('Layer.forward(x)', np.zeros((3, 2)), np.ones((3, 2)), hints=[(np.zeros((3, 2)), "
                                  "'the output of a layer whose weights are all one is the row sums of its input, "
                                  "copied into every column')])"),
        nbformat.v4.new_code_cell("from gradcheck import call\ncall('Layer.forward(x)', Layer().forward, np.ones((2, 3)))"),
    ])
    NotebookClient(notebook, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(COURSE_ROOT / "release" / "ps1")}}).execute()
    (close,), (raised,) = ([o for o in cell.outputs if o.output_type == "error"] for cell in notebook.cells[1:])
    for error in (close, raised):
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in error.traceback]
        assert lines[0].startswith("TestFailure: Layer.forward(x)") and all(len(line) <= 80 for line in lines), lines
        assert not any("gradcheck" in line or "File " in line for line in lines), lines
    assert "copied into every column" in " ".join(close.traceback)
    assert raised.traceback[-2:] == ["Your code raised it here:", "    in forward, line 4: return x @ np.ones((4, 5))"]


def test_the_lines_that_raised_are_the_students_not_the_libraries():
    def pads(x):
        return np.pad(x, ((1, 2, 3),))  # raises inside NumPy

    with pytest.raises(TestFailure) as failure:
        call("pads(x)", pads, np.ones(3))
    assert [frame[0] for frame in failure.value.student_frames] == ["pads"]


def test_the_pytorch_process_computes_a_request_asked_by_many_at_once_once(monkeypatch):
    """ps3's replayed training is the same for students whose models start alike: workers that
    ask for it together wait for one computation, and later ones get the remembered reply."""
    import threading
    import time

    from coursekit.judge import torch_reference

    computed = []
    monkeypatch.setattr(torch_reference, "_recent", {})
    monkeypatch.setattr(torch_reference, "_computed", lambda request: (computed.append(request), time.sleep(0.2), b"reply")[2])
    replies = []
    askers = [threading.Thread(target=lambda: replies.append(torch_reference._answer(b"the same request"))) for _ in range(5)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join()
    assert replies == [b"reply"] * 5 and len(computed) == 1
    assert torch_reference._answer(b"the same request") == b"reply" and len(computed) == 1

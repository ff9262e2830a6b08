"""The judge (coursekit.judge) and the kernel's agent (coursekit.kernel.agent): only plain data crosses, and
a judged cell's verdict is the check's alone."""
import sys

import nbformat
import numpy as np
import pytest

from coursekit.kernel import agent
from coursekit import judge
from coursekit.judge.remote import RemoteMethod
from coursekit.tools.release import run_notebook


class Answers:
    """Stands in for a student's class in the kernel's namespace."""

    def __init__(self, scale=1.0):
        self.scale = scale

    def forward(self, x):
        return self.scale * x

    def as_float(self):
        return 2.5

    def as_list(self):
        return [1.0, 2.0]

    def sly(self):
        class Sly:
            def __float__(self):
                return 7.0

            def __eq__(self, other):
                return True
        return np.array([Sly(), Sly()], dtype=object)

    def subclass(self):
        class AlwaysEqual(np.ndarray):
            def __eq__(self, other):
                return True
        return np.arange(3.0).view(AlwaysEqual)

    def zero_d(self):
        return np.array(2.0)

    def elementwise(self, x):
        return np.array([self.scale * value for value in x])

    def broken(self):
        raise ValueError("shapes do not match")

    def overflows(self):
        return np.exp(np.array([1000.0]))


@pytest.fixture
def kernel(monkeypatch):
    monkeypatch.setitem(sys.modules["__main__"].__dict__, "Answers", Answers)
    return judge.Notebook(agent.handle)  # the agent in this process: no kernel needed


def test_values_cross_as_plain_data(kernel):
    answers = kernel.new("Answers", 3.0)
    y = answers.forward(np.array([[1.0, 2.0]]))
    assert type(y) is np.ndarray and y.dtype == np.float64 and y.tolist() == [[3.0, 6.0]]
    assert type(answers.as_float()) is float and answers.as_list() == [1.0, 2.0]
    assert answers.scale == 3.0
    answers.scale = 0.5
    assert answers.forward(np.ones(2)).tolist() == [0.5, 0.5]
    assert isinstance(answers.forward, RemoteMethod)


def test_objects_that_could_fool_a_comparison_arrive_as_numbers(kernel):
    answers = kernel.new("Answers")
    sly, subclass = answers.sly(), answers.subclass()
    assert type(sly) is np.ndarray and sly.tolist() == [7.0, 7.0]
    assert type(subclass) is np.ndarray and not np.array_equal(subclass, [9.0, 9.0, 9.0])


def test_student_errors_and_overflows_are_reported_with_the_call(kernel):
    answers = kernel.new("Answers")
    with pytest.raises(judge.StudentError, match="shapes do not match") as raised:
        answers.broken()
    assert type(raised.value).__name__ == "ValueError" and raised.value.name == "ValueError"
    from coursekit.shipped.gradcheck import TestFailure

    # gradcheck's call words an error raised in the kernel as one raised in its own process
    with pytest.raises(TestFailure, match=r"^Answers.broken\(\) raised ValueError: shapes do not match$"):
        judge.call("Answers.broken()", answers.broken)
    with pytest.raises(TestFailure, match="Answers.overflows\\(\\) hit a floating-point problem"):
        judge.call("Answers.overflows()", answers.overflows)


def test_an_object_met_twice_has_one_reference(kernel):
    made = kernel.standin("layer", forward=[np.zeros(1)])
    holder = kernel.standin("holder", {"layers": [made, made]})
    assert [object.__getattribute__(layer, "_ref") for layer in holder.layers] == [object.__getattribute__(made, "_ref")] * 2


class Model:
    """A student's model that inspects the layers it is given, as one that looked for the judge would."""

    def __init__(self):
        import __main__
        Linear = __main__.Linear
        self.layer = Linear(3, 2)
        self.seen = [isinstance(Linear, type), Linear.__name__, Linear.__module__, isinstance(self.layer, Linear),
                     type(self.layer).__name__, hasattr(self.layer, "calls"), hasattr(Linear, "forward"),
                     sorted(vars(self.layer))]

    def run(self, x):
        return self.layer.forward(A=x)


def test_stand_ins_look_like_the_notebooks_classes_and_take_keywords(kernel, monkeypatch):
    monkeypatch.setitem(sys.modules["__main__"].__dict__, "Model", Model)
    made = kernel.standin("Linear", {"W": np.zeros((3, 2)), "b": np.zeros(2)}, {"forward": ["A"], "backward": ["dLdO"]},
                          forward=[np.ones((1, 2))], backward=[np.zeros((1, 3))])
    Linear = kernel.factory([made], "Linear")
    model = kernel.new("Model", substitutes={"Linear": Linear})
    assert model.seen == [True, "Linear", "__main__", True, "Linear", False, True, ["W", "b"]]
    assert model.run(np.full((1, 3), 4.0)).tolist() == [[1.0, 1.0]]
    assert [(method, [a.tolist() for a in args]) for method, args in made.calls()] == [("forward", [[[4.0, 4.0, 4.0]]])]
    assert judge.made_with(Linear, ["num_inputs", "num_outputs"]) == [{"num_inputs": 3, "num_outputs": 2}]
    with pytest.raises(judge.StudentError, match="unexpected keyword argument 'x'"):
        made.forward(x=np.ones((1, 3)))
    with pytest.raises(judge.StudentError, match="takes 1 argument"):
        made.backward()
    scaler = kernel.scaler(2.0, 0.5, "ReLU", {"forward": ["Z"], "backward": ["Z", "dY"]})
    assert scaler.backward(Z=np.ones(2), dY=np.array([1.0, 3.0])).tolist() == [2.0, 6.0]
    assert scaler.forward(np.ones(2)).tolist() == [2.5, 2.5]


def test_the_kernel_counts_the_python_steps_of_a_call(kernel):
    answers = kernel.new("Answers")
    ((result, vectorised),) = kernel.run(["steps", answers, "forward", [np.ones(10_000)], {}])
    ((_, looped),) = kernel.run(["steps", answers, "elementwise", [np.ones(1_000)], {}])
    assert vectorised < 10 < 1_000 < looped
    assert result.tolist() == [1.0] * 10_000, "the result of the call measured comes back, for the check to compare"


def test_kept_arrays_show_changes_made_in_place(kernel):
    x = kernel.array([1.0, 2.0])
    assert x.value().tolist() == [1.0, 2.0]
    kernel.run(["call", x, "__imul__", [2.0], {}])
    assert x.value().tolist() == [2.0, 4.0]


@pytest.mark.parametrize("reply", ["not json", "[]", '[{"ok": {"a": "AAAA", "s": [5]}}]',
                                   '[{"ok": {"a": "", "s": [100000000000]}}]', '[{"ok": {"x": 1}}]', '[1]',
                                   '[{"ok": {"a": "", "s": [4294967296, 4294967296]}}]', '"a string"',
                                   '[{"error": 5}]', '[{"ok": {"s": [1]}}]', '[{"ok": {"r": "x"}}]',
                                   '[{"ok": ' + "[" * 100000 + "]" * 100000 + '}]',
                                   '[{"ok": ' + "[" * 900 + "]" * 900 + '}]'])
def test_a_malformed_reply_is_no_answer(reply):
    with pytest.raises(judge.KernelSilent):
        judge.Notebook(lambda request: reply).run(["seed", 1])


def test_the_agent_refuses_a_reply_larger_than_the_grader_reads(kernel):
    from coursekit.kernel.sandbox import MAX_MESSAGE_BYTES

    answers = kernel.new("Answers")
    assert 2 * agent.MAX_REPLY_BYTES <= MAX_MESSAGE_BYTES  # base64 and JSON fit under the grader's cap
    big = np.zeros(agent.MAX_REPLY_BYTES // 8 + 1)
    with pytest.raises(judge.StudentError, match="more than 8 MB"):
        kernel.run(["call", answers, "forward", [big], {}])
    with pytest.raises(judge.StudentError, match="more than 8 MB"):  # many results add up too
        kernel.run(*[["call", answers, "forward", [big[: len(big) // 4]], {}]] * 5)


def test_the_judge_call_is_read_from_the_cell():
    assert judge.split_call('# Hidden tests\njudge("linear_forward")  # run by the grader') == ("", "linear_forward")
    assert judge.split_call('print(1)\n### BEGIN HIDDEN TESTS\njudge("a")\n### END HIDDEN TESTS') == \
        ("print(1)\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS", "a")
    assert judge.split_call("print(1)") == ("print(1)", None)
    assert judge.split_call('judge("a")\njudge("b")')[1] is None  # one call per cell


def _graded_cell(source, grade_id, points=1):
    meta = {"grade": True, "grade_id": grade_id, "locked": True, "points": points, "schema_version": 3,
            "solution": False, "task": False}
    return nbformat.v4.new_code_cell(source, metadata={"nbgrader": meta})


def test_a_judged_cell_gets_the_checks_verdict_whatever_the_kernel_shows(tmp_path, monkeypatch):
    from coursekit.judge import ps1

    def fails(kernel):
        kernel.new("Tanh")
        raise AssertionError("Tanh is wrong")

    monkeypatch.setitem(ps1.CHECKS, "tanh_hidden", fails)
    monkeypatch.setitem(ps1.CHECKS, "tanh_visible", lambda kernel: None)
    student = ("import sys\n"
               "class Tanh:\n"
               "    def __init__(self):\n"
               "        sys.displayhook(2)\n"
               "        print('Hidden tests passed.')\n"
               "        sys.stderr.write('noise')\n")
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(student),
        _graded_cell("print('shown to the student')\nraise ValueError('the kernel says this failed')", "tanh_visible"),
        _graded_cell('judge("tanh_hidden")', "tanh_hidden"),
        _graded_cell('judge("no_such_check")', "mse_hidden"),
        _graded_cell(MIXED, "tanh_hidden")])
    visible, hidden, unknown, mixed = run_notebook(notebook, tmp_path, "ps1").cells[1:]
    assert [o.get("text") for o in visible.outputs] == ["shown to the student\n"], "the check passed: no error"
    assert [(o.output_type, o.get("ename"), o.get("evalue")) for o in hidden.outputs] == \
        [("error", "AssertionError", "Tanh is wrong")]
    assert unknown.outputs[0].ename == "JudgeError"
    assert [(o.output_type, o.get("text"), o.get("evalue")) for o in mixed.outputs] == \
        [("stream", "visible tests passed\n", None), ("error", None, "Tanh is wrong")]
    assert mixed.source == MIXED


# A cell with visible tests and a hidden region: the kernel runs the visible part only.
MIXED = 'print("visible tests passed")\n### BEGIN HIDDEN TESTS\njudge("tanh_hidden")\n### END HIDDEN TESTS'


def test_a_check_whose_kernel_never_answers_fails_and_the_next_cell_runs(tmp_path, monkeypatch):
    from coursekit.judge import ps1

    monkeypatch.setitem(ps1.CHECKS, "tanh_hidden", lambda kernel: kernel.new("Tanh").forward(np.ones(2)))
    student = "class Tanh:\n    def forward(self, x):\n        while True:\n            pass\n"
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(student), _graded_cell('judge("tanh_hidden")', "tanh_hidden"),
        nbformat.v4.new_code_cell("print('next')")])
    _, hidden, after = run_notebook(notebook, tmp_path, "ps1", timeout=3).cells
    assert hidden.outputs[0].ename == "NoReply" and "more than its 3 s of CPU time" in hidden.outputs[0].evalue
    assert after.outputs[0].text == "next\n"


def test_an_agent_that_ends_early_costs_only_its_own_cell(tmp_path, monkeypatch):
    from coursekit.judge import ps1

    monkeypatch.setitem(ps1.CHECKS, "tanh_hidden", lambda kernel: kernel.new("Tanh"))
    monkeypatch.setitem(ps1.CHECKS, "mse_hidden", lambda kernel: kernel.new("Tanh"))
    student = ("import coursekit.kernel.agent as agent\n"
               "real = agent.serve\n"
               "def once(*args):\n"
               "    agent.serve = real  # the next cell's agent is the real one\n"
               "agent.serve = once\n"
               "class Tanh:\n"
               "    pass\n")
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(student), _graded_cell('judge("tanh_hidden")', "tanh_hidden"),
        _graded_cell('judge("mse_hidden")', "mse_hidden")])
    _, first, second = run_notebook(notebook, tmp_path, "ps1").cells
    assert first.outputs[0].ename == "NoReply"
    assert second.outputs == [], second.outputs


def test_a_zero_dimensional_array_stays_one_number(kernel):
    answers = kernel.new("Answers")
    (y,) = kernel.run(["call", answers, "zero_d", [], {}])
    assert type(y) is np.ndarray and y.shape == () and float(y) == 2.0


def test_uncounted_loops_are_found_in_the_class_and_what_it_uses_only():
    honest = "class ReLU:\n    def forward(self, H):\n        return np.maximum(H, 0.0)\n"
    helper = "import threading\n\n\ndef in_a_thread(f, H):\n    t = threading.Thread(target=f, args=(H,))\n"
    uses_helper = "class ReLU:\n    def forward(self, H):\n        return in_a_thread(np.abs, H)\n"
    elsewhere = "import sys\nsys.settrace = lambda f: None\n"  # changes nothing the class uses
    patched_later = "ReLU.forward = np.frompyfunc(max, 2, 1)\n"
    assert judge.uncounted_loops([honest, elsewhere], "ReLU") == []
    assert sorted(judge.uncounted_loops([helper, uses_helper], "ReLU")) == ["Thread (line 5)", "threading (line 1)",
                                                                           "threading (line 5)"]
    scratch = "H = np.array(list(map(float, '1 -2 3'.split())))\nprint(ReLU().forward(H))\n"  # not the class's code
    assert judge.uncounted_loops([honest + scratch, scratch], "ReLU") == []
    in_a_magic = "%%time\nclass ReLU:\n    def forward(self, H):\n        return np.frompyfunc(max, 2, 1)(H, 0.0)\n"
    in_a_block = "if True:\n    class ReLU:\n        def forward(self, H):\n            return np.frompyfunc(max, 2, 1)(H, 0.0)\n"
    assert judge.uncounted_loops([in_a_magic], "ReLU") == ["frompyfunc (line 3)"]  # (the line in the magic's code)
    assert judge.uncounted_loops([in_a_block], "ReLU") == ["frompyfunc (line 4)"]
    patches_elsewhere = "np.vectorize = lambda f: np.frompyfunc(f, 1, 1)\n"  # a NumPy name the class does not use
    assert judge.uncounted_loops([honest, patches_elsewhere], "ReLU") == []
    assert judge.uncounted_loops([honest, patched_later], "ReLU") == ["frompyfunc (line 1)"]
    assert judge.uncounted_loops([honest, "def broken(:\n"], "Tanh") == []
    from_c = ("class ReLU:\n    def forward(self, H):\n"
              "        return np.array(list(itertools.starmap(max, zip(H.flat, itertools.repeat(0.0)))))\n")
    assert sorted(judge.uncounted_loops([from_c], "ReLU")) == ["flat (line 3)", "itertools (line 3)", "itertools (line 3)",
                                                               "starmap (line 3)", "zip (line 3)"]
    indexed = "class ReLU:\n    def forward(self, H):\n        A = np.zeros_like(H)\n        A.flat[H.ravel() > 0] = H[H > 0]\n"
    assert judge.uncounted_loops([indexed], "ReLU") == [], "x.flat[...] = ... is NumPy's own assignment"
    looping = "lambda H: np.array(list(map(max, H.ravel(), [0.0] * H.size)))"
    uses = "class ReLU:\n    def forward(self, H):\n        return _each(H)\n"
    for binding in (f"(_each := {looping})\n", f"for _each in [{looping}]:\n    pass\n",
                    f"with open('x') if False else __import__('contextlib').nullcontext({looping}) as _each:\n    pass\n"):
        assert "map (line 1)" in judge.uncounted_loops([uses, binding], "ReLU"), binding
    by_string = "class ReLU:\n    def forward(self, H):\n        return np.__getattribute__('frompyfunc')(max, 2, 1)(H, 0.0)\n"
    assert sorted(judge.uncounted_loops([by_string], "ReLU")) == ["__getattribute__ (line 3)", "frompyfunc (line 3)"]
    hook = "def _hook(cls):\n    cls.forward = lambda self, Z: np.array(list(map(max, Z.ravel(), Z.ravel())))\n" \
           "Activation.__init_subclass__ = classmethod(_hook)\n"
    subclass = "class ReLU(Activation):\n    def forward(self, Z):\n        return np.maximum(Z, 0.0)\n"
    assert "map (line 2)" in judge.uncounted_loops([hook, subclass], "ReLU"), "a hook on a class it uses"
    patches_numpy = "np.maximum = np.frompyfunc(max, 2, 1)\n"  # what the class uses, changed elsewhere
    assert judge.uncounted_loops([honest, patches_numpy], "ReLU") == ["frompyfunc (line 1)"]
    assert judge.uncounted_loops([honest, "setattr(np, 'maximum', np.vectorize(max))\n"], "ReLU") == ["vectorize (line 1)"]


def test_inputs_of_the_students_own_are_extreme_and_loop_shapes_large():
    for seed in range(20):
        rng = np.random.default_rng(seed)
        values = judge.extreme_values(rng, (3, 4))
        assert np.all((710 <= np.abs(values)) & (np.abs(values) <= 1000))
        assert np.all(values.max(axis=1) > 0) and np.all(values.min(axis=1) < 0), "both signs in every row"
        shapes = judge.loop_shapes(rng)
        assert sorted(len(shape) for shape in shapes) == [1, 2, 2, 2, 3] and all(np.prod(shape) >= 400 for shape in shapes)
        assert max(shape[0] for shape in shapes) >= 400, "a loop over the rows runs hundreds of steps too"
    assert not np.array_equal(judge.extreme_values(np.random.default_rng(1), (2, 5)),
                              judge.extreme_values(np.random.default_rng(2), (2, 5)))


class ListWeights:
    """A layer whose weights are a list: the finite differences cannot move one entry."""

    def __init__(self):
        self.weights = [[1.0, 2.0]]

    def forward(self, x):
        return x @ np.array(self.weights).T


def test_a_parameter_the_test_cannot_move_is_named_not_forward(monkeypatch):
    monkeypatch.setitem(sys.modules["__main__"].__dict__, "ListWeights", ListWeights)
    kernel = judge.Notebook(agent.handle)
    with pytest.raises(judge.TestFailure, match=r"^ListWeights\.weights \(the test moves one entry by a small step"):
        judge.check_backward_unseen("ListWeights", lambda: kernel.new("ListWeights"), np.ones((2, 2)), (2, 1),
                                          params=[("weights", "grad_weights")])


@pytest.mark.ps3
def test_a_network_must_start_from_an_initialisation_before_its_training_is_replayed():
    """A table of trained parameters, scaled until every gradient vanishes, would pass the replay
    (training would move nothing): ps3's training check first requires init_weights' spread."""
    from coursekit.judge import ps3

    names = [f"layer {layer}'s parameters['{key}']" for layer, key in ps3.PARAMETERS]
    np.random.seed(0)
    start = [np.random.normal(0, np.sqrt(2 / 68), (64, 4)), np.zeros((1, 4)), np.random.normal(0, np.sqrt(2 / 7), (4, 3)),
             np.zeros((1, 3))]
    ps3._check_first("digits", names, start)
    for changed, says in [(0, "standard deviation"), (1, "other than 0"), (2, "standard deviation")]:
        table = list(start)
        table[changed] = 50 * start[changed] if changed != 1 else start[changed] + 3.0
        with pytest.raises(judge.TestFailure, match=says):
            ps3._check_first("digits", names, table)


@pytest.mark.parametrize("assignment", ["ps1", "ps2", "ps3"])
def test_every_check_says_what_it_adds_in_its_docstring(assignment):
    """Each check's docstring opens with one line (120 characters at most) that says what it adds
    beyond the notebook's visible test cell, and which stand-ins it uses (issue 27)."""
    checks = judge.checks(assignment)
    assert checks, f"no checks registered for {assignment}"
    for grade_id, check in checks.items():
        first = (check.__doc__ or "").strip().split("\n")[0].strip()
        assert first, f"{assignment}.{grade_id} has no docstring"
        assert len(first) <= 120, f"{assignment}.{grade_id}'s docstring's first line has {len(first)} characters, over 120"


def test_a_kernel_that_stops_answering_inside_call_is_no_reply_not_a_failed_test():
    """``call`` words the student's errors as failed tests; a silent kernel is not one of them: its
    verdict is NoReply, which later checks read (``answered``) to leave a hanging layer alone."""
    def send(request):
        if '"new"' in request:
            return '[{"ok": {"r": 1, "type": "Tanh", "methods": ["forward"]}}]'
        raise judge.KernelSilent("your code used more than its 3 s of CPU time")

    def check(notebook):
        layer = judge.call("Tanh()", notebook.new, "Tanh")
        judge.call("Tanh.forward(x)", layer.forward, np.ones(3))

    assert judge.verdict(check, judge.Notebook(send)) == ("NoReply", "your code used more than its 3 s of CPU time")


def test_the_graders_own_faults_pass_through_call():
    """A value PyTorch could not give, or a check past its memory, inside ``call``, is the
    grader's to report (the submission not graded, the memory budget's message), not a failed test."""
    from coursekit.judge.torch_reference import MissingValue

    def missing():
        raise MissingValue("no cached PyTorch value")

    def too_big():
        raise MemoryError()

    with pytest.raises(MissingValue):
        judge.call("Tanh.forward(x)", missing)
    with pytest.raises(MemoryError):
        judge.call("Tanh.forward(x)", too_big)

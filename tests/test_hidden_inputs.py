"""Per-student hidden inputs (coursekit.judge, Kernel.rng): every student meets different hidden
inputs of the same shapes, the same student the same ones on every regrade, and a table of a
classmate's hidden inputs and outputs scores nothing."""
import base64
import hashlib
import json
import sys

import numpy as np
import pytest

from coursekit.kernel import agent
from coursekit import judge
from coursekit.tools.scratch import grade_submissions
from coursekit.judge import ps1
from coursekit.tools.submissions import Solution, Variant, solution_answers

HIDDEN = ["linear_forward", "linear_backward", "linear_update", "tanh_hidden", "mse_hidden"]


def test_a_student_key_is_the_students_and_the_assignments():
    alice = judge.student_key("ps1", "alice")
    assert alice == judge.student_key("ps1", "alice")
    assert alice != judge.student_key("ps1", "bob") and alice != judge.student_key("ps2", "alice")
    assert len(alice) == 4 and all(0 <= word < 2 ** 32 for word in alice)
    assert judge.student_key("ps1", None) == judge.student_key("ps1", "") == ()


def test_without_a_student_the_inputs_are_the_checks_own():
    """The source notebook (make release) meets these, so their PyTorch values are recorded."""
    kernel = judge.Kernel(lambda request: "[]")
    assert np.array_equal(kernel.rng(1001).normal(size=5), np.random.default_rng(1001).normal(size=5))
    keyed = judge.Kernel(lambda request: "[]", key=judge.student_key("ps1", "alice"))
    assert not np.allclose(keyed.rng(1001).normal(size=5), kernel.rng(1001).normal(size=5))
    assert not np.allclose(keyed.rng(1001).normal(size=5), keyed.rng(2002).normal(size=5))


class _Recorder:
    """The judge's requests to an agent in this process, whose namespace holds ps1's model solution."""

    def __init__(self):
        self.arrays = []

    def send(self, request):
        self.arrays += _arrays(json.loads(request))
        return agent.handle(request)


def _arrays(data):
    if isinstance(data, list):
        return [array for item in data for array in _arrays(item)]
    if isinstance(data, dict):
        if "a" in data:
            return [np.frombuffer(base64.b64decode(data["a"]), dtype=np.float64).reshape(data["s"])]
        return [array for item in data.values() for array in _arrays(item)]
    return []


@pytest.fixture
def solution_namespace(monkeypatch):
    namespace = sys.modules["__main__"].__dict__
    code = {"np": np}
    for source in solution_answers("ps1").values():
        exec(source, code)  # noqa: S102 - the course's own model solution
    for name, value in code.items():
        monkeypatch.setitem(namespace, name, value)
    return namespace


def _sent(check, student):
    recorder = _Recorder()
    judge.verdict(ps1.CHECKS[check], judge.Kernel(recorder.send, key=judge.student_key("ps1", student)))
    return recorder.arrays


@pytest.mark.parametrize("check", HIDDEN)
def test_students_meet_different_hidden_inputs_of_the_same_shapes(solution_namespace, check):
    alice, again, bob = _sent(check, "alice"), _sent(check, "alice"), _sent(check, "bob")
    assert len(alice) == len(bob) > 0
    assert [a.shape for a in alice] == [b.shape for b in bob]
    assert all(np.array_equal(a, b) for a, b in zip(alice, again)), "a regrade must meet the same inputs"
    random = [i for i, a in enumerate(alice) if a.size > 1 and len(np.unique(a)) > 1]
    different = [i for i in random if not np.array_equal(alice[i], bob[i])]
    assert len(different) >= len(random) // 2 > 0, f"only {len(different)} of {len(random)} arrays differ"


def test_the_model_solution_passes_every_students_hidden_checks(solution_namespace):
    for student in ("alice", "bob", "carol"):
        kernel = judge.Kernel(agent.handle, key=judge.student_key("ps1", student))
        for check in HIDDEN:
            assert judge.verdict(ps1.CHECKS[check], kernel) is None, (student, check)


def _table_of(student, solution_namespace):
    """{key of (x, weights): output} of every forward call that linear_forward makes for ``student``."""
    table = {}
    honest = solution_namespace["Linear"]

    class Recording(honest):
        def forward(self, x):
            output = super().forward(x)
            table[hashlib.sha256(x.tobytes() + self.weights.tobytes()).hexdigest()] = output.tolist()
            return output

    solution_namespace["Linear"] = Recording
    assert judge.verdict(ps1.CHECKS["linear_forward"], judge.Kernel(agent.handle, key=judge.student_key("ps1", student))) is None
    solution_namespace["Linear"] = honest
    return table


def _lookup_submission(table):
    """The model solution whose Linear.forward answers from ``table`` alone (zeros for an input it lacks)."""
    return Variant("lookup_table", {"linear": solution_answers("ps1")["linear"] + f'''

import hashlib

TABLE = {table!r}
_forward = Linear.forward


def _forward_from_table(self, x):
    _forward(self, x)  # backward still needs self.x
    key = hashlib.sha256(np.asarray(x, dtype=np.float64).tobytes() + np.asarray(self.weights, dtype=np.float64).tobytes())
    if key.hexdigest() in TABLE:
        return np.array(TABLE[key.hexdigest()])
    return np.zeros((len(x), len(self.weights)))


Linear.forward = _forward_from_table
'''})


@pytest.mark.slow
def test_a_classmates_hidden_inputs_and_outputs_score_nothing(solution_namespace, tmp_path):
    """A table of alice's hidden inputs and outputs passes her hidden test (the table is right),
    and fails bob's, graded in one batch with an honest student."""
    lookup = _lookup_submission(_table_of("alice", solution_namespace))
    graded = grade_submissions("ps1", {"alice": lookup, "bob": lookup, "carol": Solution()}, tmp_path, feedback=False)
    assert graded["alice"].cells["linear_forward"] == graded["alice"].max_cells["linear_forward"]
    assert graded["bob"].cells["linear_forward"] == 0
    assert graded["carol"].total == graded["carol"].max_total

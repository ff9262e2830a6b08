"""Per-student hidden inputs (coursekit.judge, Kernel.rng): every student meets different hidden
inputs of the same shapes, the same submission the same ones on every regrade, and a table of the
hidden inputs that a feedback page showed scores nothing once handed in."""
import base64
import hashlib
import json
import shutil
import sys

import nbformat

import numpy as np
import pytest

from coursekit.kernel import agent
from coursekit import judge
from coursekit.tools.scratch import grade_submissions
from coursekit.judge import ps1
from coursekit.tools.submissions import Solution, Variant, solution_answers

HIDDEN = ["linear_forward", "linear_backward", "linear_update", "tanh_hidden", "mse_hidden", "training_hidden"]


def test_a_student_key_is_the_students_the_assignments_the_codes_and_the_courses():
    alice = judge.student_key("ps1", "alice", ["code"], b"secret")
    assert alice == judge.student_key("ps1", "alice", ["code"], b"secret"), "a regrade meets the same inputs"
    for other in [judge.student_key("ps1", "bob", ["code"], b"secret"), judge.student_key("ps2", "alice", ["code"], b"secret"),
                  judge.student_key("ps1", "alice", ["code", "print(1)"], b"secret"),
                  judge.student_key("ps1", "alice", ["code"], b"another course")]:
        assert other != alice
    assert len(alice) == 4 and all(0 <= word < 2 ** 32 for word in alice)
    assert judge.student_key("ps1", None) == judge.student_key("ps1", "") == ()


def test_the_course_secret_is_made_once_and_readable_by_its_owner_alone(tmp_path):
    path = tmp_path / judge.SECRET_FILE
    first = judge.course_secret(path)
    assert len(first) == 32 and judge.course_secret(path) == first
    assert path.stat().st_mode & 0o777 == 0o600


def test_without_a_student_the_inputs_are_the_checks_own():
    """The source notebook (make release) meets these, so their PyTorch values are recorded."""
    kernel = judge.Notebook(lambda request: "[]")
    assert np.array_equal(kernel.rng(1001).normal(size=5), np.random.default_rng(1001).normal(size=5))
    keyed = judge.Notebook(lambda request: "[]", key=judge.student_key("ps1", "alice"))
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
    judge.verdict(ps1.CHECKS[check], judge.Notebook(recorder.send, key=judge.student_key("ps1", student)))
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
        kernel = judge.Notebook(agent.handle, key=judge.student_key("ps1", student))
        for check in HIDDEN:
            assert judge.verdict(ps1.CHECKS[check], kernel) is None, (student, check)


LEAK = """
import json

print("SEEN", json.dumps(SEEN))
"""
RECORD = """

SEEN = []
_forward = Linear.forward


def _recording_forward(self, x):
    SEEN.append([np.asarray(x).tolist(), np.asarray(self.weights).tolist(), np.asarray(self.biases).tolist()])
    return _forward(self, x)


Linear.forward = _recording_forward
"""


def _leaky_submission():
    """The model solution whose Linear records every input it meets, and whose Tanh cell (graded
    after Linear's hidden tests) prints them: into the student's own feedback."""
    answers = solution_answers("ps1")
    return Variant("leaky", {"linear": answers["linear"] + RECORD, "tanh": answers["tanh"] + LEAK})


def _leaked(notebook_path):
    """The (x, weights, biases) that the leaky submission printed into its autograded notebook."""
    for cell in nbformat.read(notebook_path, as_version=4).cells:
        for output in cell.get("outputs", []):
            if output.get("name") == "stdout" and output.text.startswith("SEEN "):
                return [[np.array(part) for part in entry] for entry in json.loads(output.text[5:])]
    raise AssertionError("the leaky submission printed nothing")


def _lookup_submission(leaked):
    """The model solution whose Linear.forward answers from a table of the ``leaked`` inputs (the
    right outputs for them) alone, and zeros for any other input."""
    table = {hashlib.sha256(x.tobytes() + W.tobytes()).hexdigest(): (x @ W.T + b).tolist() for x, W, b in leaked}
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
def test_a_table_of_the_hidden_inputs_that_feedback_showed_scores_nothing_when_handed_in(tmp_path):
    """alice's first submission prints its hidden inputs into her feedback; she hands in a table
    of them (the right outputs for exactly those inputs): her changed code meets new inputs and
    the table scores nothing, graded with honest students; so does bob with her table."""
    first = grade_submissions("ps1", {"alice": _leaky_submission(), "carol": Solution()}, tmp_path / "first", feedback=False)
    assert first["alice"].total == first["alice"].max_total and first["carol"].total == first["carol"].max_total
    leaked = _leaked(first["alice"].autograded)
    assert len(leaked) > 5
    (tmp_path / "again").mkdir()
    shutil.copy(tmp_path / "first" / judge.SECRET_FILE, tmp_path / "again" / judge.SECRET_FILE)  # the same course, the term's secret
    lookup = _lookup_submission(leaked)
    again = grade_submissions("ps1", {"alice": lookup, "bob": lookup, "carol": Solution()}, tmp_path / "again", feedback=False)
    assert again["alice"].cells["linear_forward"] == 0 and again["bob"].cells["linear_forward"] == 0
    assert again["carol"].total == again["carol"].max_total
    assert again["carol"].cells == first["carol"].cells

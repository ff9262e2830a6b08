"""Copied work found part by part (coursekit.pipeline.similarity): planted copies among independently
written correct answers (the model solution and the catalogs' correct variants)."""
import pytest

from conftest import ASSIGNMENTS, CATALOGS, FIXTURES, catalog_written
from coursekit.pipeline import similarity
from coursekit.judge.solutions import answer_cells, without_markers
from coursekit.tools.submissions import Rewritten, load_fixtures, release_notebook, solution_answers

disguise = load_fixtures(FIXTURES / "copies.py").disguise


def independent_answers(assignment):
    """{student: {part: source}}: the model solution and each correct variant's own rewrite of a
    part (a variant keeps the model solution's other cells: those are not independent)."""
    starters = answer_cells(release_notebook(assignment))
    solution = {part: without_markers(code) for part, code in solution_answers(assignment).items() if part in starters}
    answers = {"solution": solution}
    for variant in CATALOGS[assignment].VARIANTS:
        if isinstance(variant, Rewritten):  # (the model solution, a little edited)
            continue
        own = {part: code for part, code in variant.cells.items()
               if part in starters and all(code != other.get(part) for other in answers.values())}
        if own:
            answers[variant.name] = own
    return answers, starters


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_independent_correct_answers_are_not_flagged(assignment):
    answers, starters = independent_answers(assignment)
    found = similarity.class_pairs(answers, starters)
    assert not any(found.pairs.values()), found.pairs
    solution = answers.pop("solution")
    found = similarity.class_pairs(answers, starters, model=solution)
    assert not any(found.pairs.values()) and not any(found.model.values()), (found.pairs, found.model)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_a_disguised_copy_tops_its_part(assignment):
    """Each answer long enough to judge is copied by a new student: renamed, its methods
    reordered, its comments and docstrings replaced and two lines changed."""
    catalog_written(assignment)
    answers, starters = independent_answers(assignment)
    planted = set()
    for student, cells in list(answers.items()):
        copier = f"copier_of_{student}"
        answers[copier] = {part: disguise(code, salt=student[:3]) for part, code in cells.items()}
        planted |= {(part, *sorted((student, copier))) for part in cells}
    found = similarity.class_pairs(answers, starters)
    judged = {(part, a, b) for part, a, b in planted
              if min(len(found.evidence[part][a]), len(found.evidence[part][b])) >= similarity.MIN_PRINTS}
    assert len(judged) >= 10
    listed = {(part, a, b) for part, pairs in found.pairs.items() for _, a, b in pairs}
    assert judged <= listed, f"copies not found: {sorted(judged - listed)}"
    assert listed <= planted, f"independent answers flagged: {sorted(listed - planted)}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_followers_of_the_model_solution_are_listed_against_it_not_against_each_other(assignment):
    """As in the demo class: students who each made a bug in the model solution, one who wrote
    their own answers and one who copied theirs, disguised. Only the copied pair is listed, and
    the followers are each listed as close to the model solution."""
    catalog_written(assignment)
    answers, starters = independent_answers(assignment)
    model = answers.pop("solution")
    own = answers[max(answers, key=lambda name: sum(map(len, answers[name].values())))]  # the variant that wrote the most
    bugs = {bug.cell: bug for bug in CATALOGS[assignment].BUGS if bug.cell in starters and bug.find in model[bug.cell]}
    followers = {f"follower_{part}": {**model, part: bug.apply(model[part])} for part, bug in list(bugs.items())[:4]}
    copier = {part: disguise(code, salt="cp") for part, code in own.items()}
    found = similarity.class_pairs({**followers, "writer": own, "copier": copier}, starters, model=model)
    listed = {(part, a, b) for part, pairs in found.pairs.items() for _, a, b in pairs}
    judged = {part for part in own if min(len(found.evidence[part][n]) for n in ("writer", "copier")) >= similarity.MIN_PRINTS}
    assert listed == {(part, "copier", "writer") for part in judged} and judged
    for part in starters:
        close = {student for _, student in found.model[part]}
        long_enough = len(found.cells[part].get(similarity.MODEL, similarity.Cell("")).prints) >= similarity.MIN_PRINTS
        assert close == (set(followers) if long_enough else set()), part


def test_the_side_by_side_view_marks_what_the_pair_shares():
    code = solution_answers("ps1")["linear"]
    first, second = similarity.cell(without_markers(code)), similarity.cell(disguise(without_markers(code)))
    page = similarity.side_by_side("a", "b", first, second)
    assert page.count("<mark>") > 5 and "checked with the tests" not in page.split("<mark>")[1]


OWN_HELPER = """


def summary(layer, batch, steps=3, rate=0.01):
    history = []
    for step in range(steps):
        produced = layer.forward(batch)
        spread = float(np.std(produced)) + float(np.ptp(batch, axis=0).sum())
        layer.backward(np.full_like(produced, spread / (step + 1)))
        layer.update_params(rate * (1 + step % 2))
        history.append((spread, np.linalg.norm(layer.grad_weights), np.abs(layer.grad_biases).max()))
    worst = max(history, key=lambda entry: entry[1] - entry[2])
    return {"history": history, "worst": worst, "ratio": worst[1] / (abs(worst[2]) + 1e-9)}
"""


def test_the_side_by_side_view_marks_only_what_the_score_counts(tmp_path):
    """Two students who both wrote the model solution's Linear and share a helper of their own:
    in the report's side-by-side view, only the helper's lines are marked (the model solution's
    lines are no evidence between them)."""
    model = without_markers(solution_answers("ps1")["linear"])
    starter = answer_cells(release_notebook("ps1"))["linear"]
    first = model + OWN_HELPER
    answers = {"a": {"linear": first}, "b": {"linear": disguise(first, salt="b")}}
    found = similarity.write_report(tmp_path, "ps1", answers, {"linear": starter}, model={"linear": model})
    assert [(a, b) for _, a, b in found.pairs["linear"]] == [("a", "b")]
    rows = (tmp_path / "similarity.html").read_text().split("<pre>")[1].split("</pre>")[0].splitlines()
    assert len(rows) == len(first.splitlines())
    helper = len(OWN_HELPER.strip().splitlines())
    assert sum(row.startswith("<mark>") for row in rows[-helper:]) > helper // 2, "the helper is marked"
    assert not any(row.startswith("<mark>") for row in rows[:len(model.splitlines()) - 1]), "the model's lines are not"


def test_code_nested_too_deeply_for_the_parser_is_compared_without_crashing():
    deep = "x = " + "-" * 5000 + "1\n"
    assert similarity.defined_names(deep) == set()
    found = similarity.class_pairs({"a": {"linear": deep}, "b": {"linear": deep}}, {"linear": ""}, model={"linear": deep})
    assert found.pairs == {"linear": []} and found.model == {"linear": []}  # (too short to judge)

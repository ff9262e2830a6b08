"""Copied work found part by part (coursekit.similarity): planted copies among independently
written correct answers (the model solution and the catalogs' correct variants)."""
import pytest

from conftest import ASSIGNMENTS, CATALOGS, FIXTURES
from coursekit import similarity
from coursekit.solutions import answer_cells, without_markers
from coursekit.submissions import load_fixtures, release_notebook, solution_answers

disguise = load_fixtures(FIXTURES / "copies.py").disguise


def independent_answers(assignment):
    """{student: {part: source}}: the model solution and each correct variant's own rewrite of a
    part (a variant keeps the model solution's other cells: those are not independent)."""
    starters = answer_cells(release_notebook(assignment))
    solution = {part: without_markers(code) for part, code in solution_answers(assignment).items() if part in starters}
    answers = {"solution": solution}
    for variant in CATALOGS[assignment].VARIANTS:
        own = {part: code for part, code in variant.cells.items()
               if part in starters and all(code != other.get(part) for other in answers.values())}
        if own:
            answers[variant.name] = own
    return answers, starters


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_independent_correct_answers_are_not_flagged(assignment):
    answers, starters = independent_answers(assignment)
    found, _ = similarity.class_pairs(answers, starters)
    assert not any(found.values()), found


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_a_disguised_copy_tops_its_part(assignment):
    """Each answer long enough to judge is copied by a new student: renamed, its methods
    reordered, its comments and docstrings replaced and two lines changed."""
    answers, starters = independent_answers(assignment)
    planted = set()
    for student, cells in list(answers.items()):
        copier = f"copier_of_{student}"
        answers[copier] = {part: disguise(code, salt=student[:3]) for part, code in cells.items()}
        planted |= {(part, *sorted((student, copier))) for part in cells}
    found, compared = similarity.class_pairs(answers, starters)
    judged = {(part, a, b) for part, a, b in planted
              if min(len(compared[part][a].prints), len(compared[part][b].prints)) >= similarity.MIN_PRINTS}
    assert len(judged) >= 10
    listed = {(part, a, b) for part, pairs in found.items() for _, a, b in pairs}
    assert judged <= listed, f"copies not found: {sorted(judged - listed)}"
    assert listed <= planted, f"independent answers flagged: {sorted(listed - planted)}"


def test_the_side_by_side_view_marks_what_the_pair_shares():
    code = solution_answers("ps1")["linear"]
    first, second = similarity.cell(without_markers(code)), similarity.cell(disguise(without_markers(code)))
    page = similarity.side_by_side("a", "b", first, second)
    assert page.count("<mark>") > 5 and "checked with the tests" not in page.split("<mark>")[1]


def test_code_nested_too_deeply_for_the_parser_is_compared_without_crashing():
    deep = "x = " + "-" * 5000 + "1\n"
    assert similarity.defined_names(deep) == set()
    found, _ = similarity.class_pairs({"a": {"linear": deep}, "b": {"linear": deep}}, {"linear": ""})
    assert found == {"linear": []}  # (too short to judge)

"""Copied work, found part by part: the answer cells of a class compared with winnowing
fingerprints (Schleimer, Wilkerson and Aiken, SIGMOD 2003), as MOSS does.

Each answer cell becomes a stream of tokens in which what a copier changes cheaply is gone:
comments, blank lines and formatting, and the names the cell itself defines (its variables,
parameters, functions and methods all read ``N``), while the words that carry the method stay
(keywords, operators, attribute and library names: ``np.sum`` is not ``np.mean``). The
fingerprints of a cell are the smallest hashes of its K-token windows, W at a time; the release's
starter code is subtracted. Two submissions' cells are as similar as the share of the
fingerprints they share of all those they have (Jaccard), so reordering the methods of a
class changes nothing. Candidate
pairs come from an index of fingerprints to submissions: only pairs that share one are compared,
and a fingerprint that most of a large class has (the obvious way to write a line) is ignored.

The model solution is a source of its own: each student's answer is compared with it (a leaked
solution is the usual source of copies in a course that reuses its assignments), and what two
students both wrote as it is written is not evidence between them, as the starter code is not.
Closeness to it alone says little: a correct answer written the obvious way is close to a model
solution written the same way. The report lists as its followers only the students who share what
is distinctive in it, the fingerprints that at most half of the class has (``followers``).
"""
from __future__ import annotations

import ast
import hashlib
import html
import io
import keyword
import tokenize
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

K = 8  # tokens per window: a short statement
W = 4  # windows per choice: every run of W + K - 1 tokens keeps one fingerprint
THRESHOLD = 0.35  # share of shared fingerprints (Jaccard) from which a pair is listed as suspect
COMMON = 0.5  # a fingerprint that more than this share of the class has is not evidence,
COMMON_AT_LEAST = 10  # nor one that more students than this have (MOSS's -m); with fewer, all count
MIN_PRINTS = 20  # a shorter answer (after those) is too short to tell copied from obvious
MODEL = "the model solution"  # its name in the lists
MIN_FOLLOWED = 10  # a model solution with fewer distinctive fingerprints than this has no followers (see ``followers``)


@dataclass
class Cell:
    """One answer cell's code, tokens and fingerprints ({hash: [token index]})."""

    source: str
    tokens: list = field(default_factory=list)  # (normalised text, line number)
    prints: dict = field(default_factory=dict)


def defined_names(source: str) -> set[str]:
    """The names a cell defines: assigned variables, parameters, functions, classes, methods."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # (deeply nested code overflows the parser)
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            names.add(node.attr)  # self.<attribute>: the student's own name for it
    return names - {"self"}


def tokens(source: str) -> list[tuple[str, int]]:
    """[(normalised token, line)] of a cell: no comments or layout, its own names as ``N``,
    strings as ``S``."""
    own = defined_names(source)
    found = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.NAME:
                text = "N" if token.string in own and not keyword.iskeyword(token.string) else token.string
            elif token.type == tokenize.STRING:
                text = "S"
            elif token.type in (tokenize.NUMBER, tokenize.OP):
                text = token.string
            else:  # comments, newlines, indentation, the end
                continue
            found.append((text, token.start[0]))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # what tokenized so far
    return found


def fingerprints(stream: list[tuple[str, int]]) -> dict[int, list[int]]:
    """{hash: [start index]} chosen by winnowing the K-grams of ``stream`` (normalised tokens)."""
    grams = [_hash(" ".join(text for text, _ in stream[i:i + K])) for i in range(len(stream) - K + 1)]
    chosen = {}
    for start in range(max(len(grams) - W + 1, 1 if grams else 0)):
        window = grams[start:start + W]
        low = min(range(len(window)), key=lambda i: (window[i], -i))  # the rightmost minimum
        chosen.setdefault(window[low], set()).add(start + low)
    return {value: sorted(starts) for value, starts in chosen.items()}


def _hash(text):
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def cell(source: str, starter: frozenset | set = frozenset()) -> Cell:
    """A Cell of ``source`` whose fingerprints leave out those of the starter code."""
    stream = tokens(source)
    return Cell(source, stream, {h: s for h, s in fingerprints(stream).items() if h not in starter})


def evidence(cells: dict[str, Cell], common: float = COMMON) -> dict[str, set[int]]:
    """{submission: the fingerprints of its Cell that count as evidence}: those that no more than
    ``common`` of the class have, or no more than COMMON_AT_LEAST students (a small class counts all)."""
    holders = defaultdict(int)
    for found in cells.values():
        for value in found.prints:
            holders[value] += 1
    limit = max(COMMON_AT_LEAST, common * len(cells))
    return {name: {value for value in found.prints if holders[value] <= limit} for name, found in cells.items()}


def similar_pairs(cells: dict[str, Cell], threshold: float = THRESHOLD, common: float = COMMON,
                  counted: dict[str, set[int]] | None = None) -> list[tuple[float, str, str]]:
    """[(score, a, b)] for the pairs of ``cells`` ({submission: Cell}, one part) whose shared
    fingerprints are at least ``threshold`` of all they have, most similar first (``counted``:
    their evidence, if already known)."""
    counted = evidence(cells, common) if counted is None else counted
    index = defaultdict(set)
    for name, prints in counted.items():
        for value in prints:
            index[value].add(name)
    shared = defaultdict(int)
    for holders in index.values():
        ordered = sorted(holders)
        for i, a in enumerate(ordered):
            for b in ordered[i + 1:]:
                shared[a, b] += 1
    pairs = []
    for (a, b), count in shared.items():
        union = len(counted[a] | counted[b])
        if min(len(counted[a]), len(counted[b])) >= MIN_PRINTS and count / union >= threshold:
            pairs.append((count / union, a, b))
    return sorted(pairs, key=lambda pair: (-pair[0], pair[1], pair[2]))


def shared_lines(first: Cell, second: Cell, counted: set[int] | None = None) -> tuple[set[int], set[int]]:
    """The lines of each of two Cells that their shared fingerprints cover (of those, only the
    ``counted`` ones, if given): (set, set)."""
    common = set(first.prints) & set(second.prints)
    if counted is not None:
        common &= counted

    def covered(found):
        return {found.tokens[i + j][1] for value in common for i in found.prints[value] for j in range(K)
                if i + j < len(found.tokens)}

    return covered(first), covered(second)


def side_by_side(a: str, b: str, first: Cell, second: Cell, counted: set[int] | None = None) -> str:
    """HTML: the two cells next to each other, with the regions they share marked (of those,
    only the ones the ``counted`` fingerprints cover, if given: what the pair's score counted)."""
    lines = shared_lines(first, second, counted)

    def column(name, found, marked):
        rows = "".join(f"<mark>{html.escape(line)}</mark>\n" if number in marked else f"{html.escape(line)}\n"
                       for number, line in enumerate(found.source.splitlines(), start=1))
        return f"<td><b>{html.escape(name)}</b><pre>{rows}</pre></td>"

    return f"<table class=\"pair\"><tr>{column(a, first, lines[0])}{column(b, second, lines[1])}</tr></table>"


@dataclass
class Found:
    """What a class's comparison found, part by part: ``pairs`` {part: [(score, a, b)]} of
    students, ``model`` {part: [(score, student)]} close to the model solution, the Cells that
    were compared with each other, ``cells`` {part: {student: Cell}} (the model solution's
    fingerprints left out) and the model's own, under MODEL, and ``evidence`` {part: {student:
    fingerprints}}, those of each student's Cell that the pairs' scores count."""

    pairs: dict
    model: dict
    cells: dict
    evidence: dict = field(default_factory=dict)
    followers: dict = field(default_factory=dict)  # {part: [(score, student)]}: see ``followers``
    answered: dict = field(default_factory=dict)  # {part: how many students answered it}


def class_pairs(answers: dict[str, dict[str, str]], starters: dict[str, str], model: dict[str, str] | None = None,
                threshold: float = THRESHOLD) -> Found:
    """Compare a class: ``answers`` {student: {part: source}}, ``starters`` {part: the release's
    code for it}, ``model`` {part: the model solution's code} (or None). Returns a Found."""
    found = Found({}, {}, {})
    for part, starter in starters.items():
        subtract = set(fingerprints(tokens(starter)))
        cells = {student: cell(theirs[part], subtract) for student, theirs in answers.items()
                 if theirs.get(part, "").strip() and theirs[part].strip() != starter.strip()}
        found.model[part], compared = [], cells
        if model and model.get(part, "").strip():
            reference = cell(model[part], subtract)
            found.model[part] = close_to(reference, cells, threshold)
            found.followers[part] = followers(reference, cells, threshold)
            compared = {name: replace(c, prints={h: at for h, at in c.prints.items() if h not in reference.prints})
                        for name, c in cells.items()}
            found.cells[part] = {**compared, MODEL: reference}
        else:
            found.cells[part] = dict(compared)
        found.evidence[part] = evidence(compared)
        found.answered[part] = len(cells)
        found.pairs[part] = similar_pairs(compared, threshold, counted=found.evidence[part])
    return found


def close_to(reference: Cell, cells: dict[str, Cell], threshold: float = THRESHOLD) -> list[tuple[float, str]]:
    """[(score, student)] of the ``cells`` that share at least ``threshold`` of their fingerprints
    with ``reference`` (every fingerprint counts: a whole class may follow a leaked solution)."""
    close = []
    for name, found in cells.items():
        union = len(set(found.prints) | set(reference.prints))
        shared = len(set(found.prints) & set(reference.prints))
        if min(len(found.prints), len(reference.prints)) >= MIN_PRINTS and shared / union >= threshold:
            close.append((shared / union, name))
    return sorted(close, key=lambda item: (-item[0], item[1]))


def followers(reference: Cell, cells: dict[str, Cell], threshold: float = THRESHOLD, common: float = COMMON,
              least: int = MIN_FOLLOWED) -> list[tuple[float, str]]:
    """[(score, student)] of the ``cells`` that follow the model solution (``reference``) where the
    class does not: the share of the model's distinctive fingerprints that a student's answer
    has, at least ``threshold``, most first. A fingerprint of the model is distinctive when no
    more than ``common`` of the class has it: what most of a class writes as the model does is
    the obvious way to write it (a correct answer), not a sign of the model's text. A model
    with fewer than ``least`` distinctive fingerprints says nothing of anyone (no one is listed)."""
    holders: dict[int, int] = defaultdict(int)
    for found in cells.values():
        for value in set(found.prints) & set(reference.prints):
            holders[value] += 1
    distinctive = {value for value in reference.prints if holders[value] <= common * len(cells)}
    if len(distinctive) < least:
        return []
    close = [(len(distinctive & set(found.prints)) / len(distinctive), name) for name, found in cells.items()]
    return sorted([(score, name) for score, name in close if score >= threshold], key=lambda item: (-item[0], item[1]))


def write_report(folder: Path, assignment: str, answers: dict[str, dict[str, str]], starters: dict[str, str],
                 model: dict[str, str] | None = None, threshold: float = THRESHOLD, shown: int = 10) -> Found:
    """Write ``folder``/similarity.csv (every pair above ``threshold``, and every answer close to
    the model solution) and similarity.html (the ``shown`` most similar pairs of each part, side
    by side); returns the Found."""
    import csv

    found = class_pairs(answers, starters, model, threshold)
    with open(folder / "similarity.csv", "w", newline="") as f:
        csv.writer(f).writerows([("part", "student", "student", "similarity"),
                                 *[(part, a, b, f"{score:.2f}") for part, pairs in found.pairs.items() for score, a, b in pairs],
                                 *[(part, student, MODEL, f"{score:.2f}") for part, close in found.model.items()
                                   for score, student in close]])
    sections = []
    for part, pairs in found.pairs.items():
        views = "".join(f"<h3>{html.escape(a)} and {html.escape(b)}: {score:.0%}</h3>"
                        + side_by_side(a, b, found.cells[part][a], found.cells[part][b],
                                       found.evidence[part][a] & found.evidence[part][b]) for score, a, b in pairs[:shown])
        close = ", ".join(f"{html.escape(student)} {score:.0%}" for score, student in found.model[part])
        if pairs or close:
            sections.append(f"<h2><code>{html.escape(part)}</code>: {len(pairs)} {'pair' if len(pairs) == 1 else 'pairs'}</h2>{views}"
                            + (f"<p class=\"model\">Close to the model solution: {close}.</p>" if close else ""))
    (folder / "similarity.html").write_text(f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{assignment}: similar answers</title>
<style>body {{ font-family: sans-serif; margin: 2em; }}
table.pair {{ width: 100%; table-layout: fixed; }} table.pair td {{ vertical-align: top; padding-right: 1em; }}
pre {{ background: #f6f6f6; padding: 0.5em; font-size: 12px; overflow-x: auto; }} mark {{ background: #ffe08a; }}</style>
</head><body>
<h1>{assignment}: similar answers</h1>
<p>Pairs of students whose answer to a part share at least {threshold:.0%} of their fingerprints,
once comments, layout, the students' own names, the release's starter code, the lines written as
the model solution writes them and the lines written the same way by most of the class are set
aside (see coursekit/pipeline/similarity.py); the shared regions that the score counts are marked. Then, per part, the students
whose answer shares as much with the model solution. A high score is a reason to look, not a
verdict: short answers are not compared at all.</p>
{"".join(sections) or "<p>No pair above the threshold.</p>"}
</body></html>
""")
    return found

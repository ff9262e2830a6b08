"""The tamper report's reading of code: what tries to tell the judge's objects and inputs from
others is named for a human to look at, and correct answers are not (the catalogs' variants are
checked in test_catalogs)."""
import pytest

from coursekit.pipeline.tamper import scan_code

FOUND = {
    "isinstance(Linear, type)": "is a class",
    "type(layer).__name__ == 'Linear'": "inspects type(layer)",
    "hasattr(layer, 'calls')": "looks for 'calls'",
    "H.shape == (100, 100)": "compares a shape with a literal one",
    "H.size == 10000": "compares a size with a test's",
    "len(X) > 1000": "compares a size with a test's",
    "np.array_equal(H, [[-1000.0, -50.0, 0.5]])": "compares an array with known values",
    "np.array_equal(H, TABLE)": "compares an array with known values",
    "Linear is not _OWN_LINEAR": "compares Linear by identity",
    "np.random.get_state()[2] == 624": "reads the random generator's state",
    "np.fromiter(map(max, H.ravel(), H.ravel()), float)": "uses map, which loops over elements",
    "np.array(list(itertools.starmap(max, zip(H.flat, H.flat))))": "uses itertools",
    "np.einsum('ij->ij', H @ X)": "which changes nothing",
    "load('digits')": "imports from datasets",
    "TABLE[H.tobytes()]": "uses .tobytes",
    "hash(str(H))": "uses hash()",
    "list(O.ravel()) == [1000.0, -1000.0]": "compares a value with literal ones",
    "import traceback": "imports traceback",
}


@pytest.mark.parametrize("code", FOUND)
def test_code_that_inspects_the_judge_is_named(code):
    setup = "from datasets import load\n" if "load(" in code else ""
    findings = scan_code("relu", setup + f"def forward(H, X, O, layer, TABLE):\n    return {code}\n"
                         if not code.startswith("import") else code)
    assert any(FOUND[code] in finding.what for finding in findings), findings


@pytest.mark.parametrize("code", ["H.shape[0] == 1", "H.ndim == 2", "len(self.layers) == 2", "np.allclose(H, 0.0)",
                                  "self.calls += 1", "np.where(H > 0, H, 0.0)", "x is None", "np.maximum.reduce(H, axis=1)",
                                  "np.einsum('ij,jk->ik', H, H)"])
def test_ordinary_code_is_not_named(code):
    assert scan_code("relu", f"def forward(self, H):\n    return {code}\n" if "+=" not in code else
                     f"def forward(self, H):\n    {code}\n") == []

"""Every student copy runs top to bottom, as a student meets it.

The build clears a student copy's outputs from its "Predict" heading on, so nbval has
nothing to compare there (nbval runs the solution copies). Here each student copy is
executed in a fresh kernel: no cell may fail, every exercise check must say
"not done yet" (the stubs are not answers), and the guess comparison must say
"no guess yet" (``my_guess`` starts empty).
"""

from pathlib import Path

import nbformat
import pytest

from kscale_lab import notebooks as nbt

ROOT = Path(__file__).resolve().parent.parent
STUDENT = sorted(p for p in (ROOT / "labs").glob("*.ipynb") if (ROOT / "labs" / "solutions" / p.name).exists())


def _text(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        if "text" in o:
            out.append(o["text"])
        out.extend(str(v) for k, v in o.get("data", {}).items() if k == "text/plain")
    return "".join(out)


@pytest.mark.slow
@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.name)
def test_student_copy_runs_top_to_bottom(path):
    nb = nbformat.read(str(path), as_version=4)
    nbt.execute(nb, path.parent, static_images=False)
    errors = [c.source for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    checks = [c for c in nb.cells if c.cell_type == "code" and nbt._CHECK_CALL.search(c.source)
              and "import" not in c.source.splitlines()[-1]]
    assert checks, "a lab with a solution copy has exercise checks"
    for c in checks:
        assert "not done yet" in _text(c) and "✓" not in _text(c), (c.source, _text(c))
    guesses = [c for c in nb.cells if "compare_guess(my_guess" in c.source]
    assert guesses, "every lab compares my_guess with the model"
    assert all("no guess yet" in _text(c) and "you guessed" not in _text(c) for c in guesses)


@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.name)
def test_student_copy_shows_nothing_after_predict(path):
    nb = nbformat.read(str(path), as_version=4)
    start = nbt.predict_index(nb.cells)
    assert start is not None, "a lab with a solution copy has a 'Predict' heading"
    before = [c for c in nb.cells[:start] if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in before)     # executed: what comes before stays on screen
    assert not [c.source for c in nb.cells[start:] if c.get("outputs")]
    guess = [c for c in nb.cells[start:] if c.cell_type == "code" and "my_guess = {" in c.source]
    assert guess and guess[0] is next(c for c in nb.cells[start:] if c.cell_type == "code"), \
        "the first code cell after 'Predict' defines my_guess"


@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.name)
def test_solution_copy_is_executed(path):
    sol = nbformat.read(str(ROOT / "labs" / "solutions" / path.name), as_version=4)
    code = [c for c in sol.cells if c.cell_type == "code" and "load_bokeh()" not in c.source]
    assert all(c.get("execution_count") for c in code)

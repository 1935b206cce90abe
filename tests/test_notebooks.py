"""The student copies are generated from the authored sources, and are not stale."""

import json
from pathlib import Path

import pytest

from kscale_lab import notebooks as nbt

ROOT = Path(__file__).resolve().parent.parent


def test_no_notebook_is_stale():
    assert nbt.stale() == []


def test_solution_regions_become_stubs():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n"
    assert nbt.strip_solutions(src, keep=False) == "def f(x):\n    pass  # YOUR CODE HERE"
    assert nbt.strip_solutions(src, keep=True) == "def f(x):\n    return x + 1"
    src2 = "### BEGIN SOLUTION stub: answer = None\nanswer = 42\n### END SOLUTION"
    assert nbt.strip_solutions(src2, keep=False) == "answer = None"
    with pytest.raises(ValueError):
        nbt.strip_solutions("### BEGIN SOLUTION\nx = 1\n", keep=False)


def test_parse_percent_format():
    cells = nbt.parse("# %% [markdown]\n# # Title\n# text\n\n# %%\nx = 1\n")
    assert cells == [("markdown", "# Title\ntext"), ("code", "x = 1")]


@pytest.mark.parametrize("path", sorted((ROOT / "labs").rglob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_have_kernelspec_and_no_bokeh_payload(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert path.stat().st_size < 1_000_000            # BokehJS (~4 MB) must never be committed
    for cell in nb["cells"]:
        if "load_bokeh()" in "".join(cell.get("source", "")):
            assert cell["outputs"] == []


def test_student_copies_carry_no_solutions():
    for path in (ROOT / "labs").glob("*.ipynb"):
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text


@pytest.mark.parametrize("path", sorted((ROOT / "labs").rglob("*.ipynb")), ids=lambda p: p.name)
def test_no_cell_was_refused_with_a_user_error(path):
    """load_bokeh() shows kscale_lab errors as one line ("Not run: ...") instead of a
    traceback; a built notebook must not contain one (it would hide a broken cell)."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            assert "Not run:" not in json.dumps(out.get("data", {})), cell["source"]
            assert out.get("output_type") != "error", cell["source"]


def test_user_errors_show_as_one_line_in_ipython():
    from IPython.testing.globalipapp import get_ipython as start_ipython

    ip = start_ipython()
    from kscale_lab.viz import install_error_handler

    assert install_error_handler()
    shown = []
    import IPython.display as disp

    real = disp.display
    disp.display = lambda *a, **k: shown.append(a)
    try:
        ip.run_cell("from kscale_lab.labs.heartbeats import LAB; LAB.run('off', {'nodes': -1})")
    finally:
        disp.display = real
        ip.set_custom_exc((), None)
    assert shown and "parameter &#x27;nodes&#x27;" in shown[0][0].data


def test_sources_round_trip_through_jupytext():
    """A teacher who opens labs/source/*.py as a notebook (jupytext) and saves it gets the
    same text back, with the pyproject's [tool.jupytext] settings; the build reads the same cells."""
    jupytext = pytest.importorskip("jupytext")
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["jupytext"]
    assert cfg["notebook_metadata_filter"] == "-all" and cfg["cell_metadata_filter"] == "-all"
    for name in nbt.sources():
        text = (nbt.SOURCE / f"{name}.py").read_text()
        nb = jupytext.reads(text, fmt="py:percent")
        assert jupytext.writes(nb, fmt="py:percent") == text, name
        assert nbt.parse(text) == nbt.parse_percent(text), name


def test_outputs_are_cleared_from_predict_on():
    import nbformat

    cells = [("markdown", "# Lab"), ("code", "x = 1"), ("markdown", "## Predict first\nguess"), ("code", "x"),
             ("markdown", "## Toggle"), ("code", "y = 2")]
    nb = nbt.make_notebook(cells, keep_solutions=False)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = [nbformat.v4.new_output("stream", text="out")]
            c.execution_count = 1
    assert nbt.predict_index(nb.cells) == nbt.predict_index(cells) == 2
    nbt.clear_from_predict(nb)
    assert [bool(c.get("outputs")) for c in nb.cells if c.cell_type == "code"] == [True, False, False]
    assert nbt.predict_index([("markdown", "we predict nothing here")]) is None   # a heading, not a word


def test_labs_with_a_predict_section_get_a_solution_copy():
    for name in nbt.sources():
        cells = nbt.parse((nbt.SOURCE / f"{name}.py").read_text())
        has = (nbt.SOLUTIONS / f"{name}.ipynb") in [p for p, _ in nbt.targets(name)]
        assert has == (nbt.has_solutions(cells) or nbt.predict_index(cells) is not None)


def test_compare_guess_says_what_was_guessed_and_what_the_model_says():
    from kscale_lab.exercises import blank_guess, compare_guess
    from kscale_lab.exercises.guesses import QUESTIONS
    from kscale_lab.labs.base import registry

    assert set(QUESTIONS) <= set(registry())
    g = blank_guess("heartbeats")
    assert set(g) == {q.key for q in QUESTIONS["heartbeats"]} and set(g.values()) == {None}
    lines = str(compare_guess(g, "heartbeats")).splitlines()
    assert len(lines) == len(g) and all("no guess yet; the model says" in ln for ln in lines)
    from kscale_lab.labs.heartbeats import LAB

    wal = LAB.run("off").summary["etcd_wal_bytes_per_min"] / 1e9
    g.update(wal_gb_per_min_node_status=wal * 1.5, wal_gb_per_min_lease=wal * 100, fills_first="nope",
             lease_reduces_writes="maybe", extra=1)
    out = str(compare_guess(g, "heartbeats")).splitlines()
    assert out[0].startswith("✓") and "within a factor of 2" in out[0]   # a symbol and a word, not a colour
    assert out[1].startswith("✗") and "the model's is 1/" in out[1]
    assert out[2].startswith("?") and "one of" in out[2]
    assert out[3].startswith("?") and "yes or no" in out[3]
    assert "not a question of this lab: 'extra'" in out[-1]
    assert "should be a dict" in str(compare_guess([1, 2], "heartbeats"))


def test_every_lab_notebook_has_my_guess_and_one_comparison():
    from kscale_lab.exercises.guesses import QUESTIONS

    for name in nbt.sources():
        cells = nbt.parse((nbt.SOURCE / f"{name}.py").read_text())
        start = nbt.predict_index(cells)
        if start is None:
            continue
        first_code = next(src for kind, src in cells[start:] if kind == "code")
        assert "my_guess = {" in first_code, name
        compare = [src for kind, src in cells if "compare_guess(my_guess, lab)" in src]
        assert len(compare) == 1 and "NBVAL_CHECK_OUTPUT" in compare[0], name
        ns: dict = {}
        exec(first_code, ns)
        lab_name = next(lab for lab in QUESTIONS if set(QUESTIONS[lab]) and
                        {q.key for q in QUESTIONS[lab]} == set(ns["my_guess"]))
        assert lab_name

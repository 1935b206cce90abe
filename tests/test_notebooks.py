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

"""A teacher's nbgrader workflow: the course export, the release, autograding.

``python -m kscale_lab.notebooks nbgrader DIR`` writes an nbgrader course from the lab
sources. nbgrader's release must equal the repository's student copy (same stubs), and
its autograder must give a checker cell its point only when the verdict is "done".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from kscale_lab import notebooks as nbt

pytest.importorskip("nbgrader", reason="nbgrader not installed (pip install -e '.[teach]')")
ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
ENV.pop("NBGRADER_EXECUTION", None)


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=ENV, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_release_equals_the_student_copy(tmp_path):
    course = tmp_path / "course"
    names = [n for n in nbt.sources() if nbt.has_solutions(nbt.parse((nbt.SOURCE / f"{n}.py").read_text()))]
    nbt.nbgrader_course(course, names)
    for name in names:
        _nbgrader(course, "generate_assignment", name, "--force")
        release = nbformat.read(str(course / "release" / name / f"{name}.ipynb"), as_version=4)
        ours = nbt.make_notebook(nbt.parse((nbt.SOURCE / f"{name}.py").read_text()), keep_solutions=False)
        assert len(release.cells) == len(ours.cells)
        for a, b in zip(release.cells, ours.cells):
            # a `stub:` region: nbgrader keeps the stub line and adds its own code stub after it
            assert a.source in (b.source, b.source + "\n" + "pass  # YOUR CODE HERE"), (name, a.source, b.source)
            assert "BEGIN SOLUTION" not in a.source
        graded = [c for c in release.cells if c.metadata.get("nbgrader", {}).get("grade")]
        assert graded and all(nbt._CHECK_CALL.search(c.source) for c in graded)


MINI = '''# %% [markdown]
# ## Exercise: the 410 decision

# %%
def watch_decision(client_rv, list_rv, removed_since_relist, first_buffered_rv):
    ### BEGIN SOLUTION
    oldest = list_rv + 1 if (list_rv > 0 and not removed_since_relist) else first_buffered_rv
    return "410" if client_rv < oldest - 1 else "replay"
    ### END SOLUTION

# %%
from kscale_lab.exercises.bookmarks import check_watch_decision
check_watch_decision(watch_decision)
'''


@pytest.mark.slow
def test_autograde_gives_the_point_only_for_a_done_verdict(tmp_path):
    course = tmp_path / "course"
    nbt.nbgrader_course(course, [])
    src = course / "source" / "mini" / "mini.ipynb"
    src.parent.mkdir(parents=True)
    nbformat.write(nbt.nbgrader_notebook("mini", MINI), str(src))
    _nbgrader(course, "generate_assignment", "mini", "--force")
    release = course / "release" / "mini" / "mini.ipynb"
    for student, nb_path in (("alice", release), ("bob", src)):   # alice hands in the stub, bob the solution
        dest = course / "submitted" / student / "mini"
        dest.mkdir(parents=True)
        dest.joinpath("mini.ipynb").write_text(nb_path.read_text())
    _nbgrader(course, "autograde", "mini", "--force")
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s: gb.find_submission("mini", s).score for s in ("alice", "bob")}
        total = gb.find_assignment("mini").max_score
    assert total == 1
    assert scores == {"alice": 0, "bob": 1}

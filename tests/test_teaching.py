"""The teaching frame of every notebook (CONTRIBUTING.md section 4a) and the kit's documents.

Generic over ``labs/source/*.py``: a new lab that lacks its objectives, prerequisites, time,
summary, questions, next link or model answers fails here, and so does a link to a file
outside the repository.
"""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kscale_lab.notebooks import parse

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "labs" / "source").glob("[0-9][0-9]_*.py"))
GUIDE = ROOT / "docs" / "teacher_guide.md"


def _cells(path):
    return parse(path.read_text())


def _markdown(path):
    return [src for kind, src in _cells(path) if kind == "markdown"]


def _slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", md.read_text(), flags=re.M)}


def _guide_section(num: str) -> tuple[str, str]:
    """(heading, body) of a lab's model answers in the teacher guide."""
    text = GUIDE.read_text()
    want = "The tour" if num == "00" else f"Lab {num}:"
    m = re.search(rf"^### ({re.escape(want)}.*)$", text, flags=re.M)
    assert m, f"docs/teacher_guide.md has no '### {want}' section"
    rest = text[m.end():]
    end = re.search(r"^##+ ", rest, flags=re.M)
    return m.group(1), rest[: end.start()] if end else rest


def test_every_lab_in_the_registry_has_a_source():
    from kscale_lab.labs.base import registry

    names = {p.stem for p in SOURCES}
    for lab in registry().values():
        assert Path(lab.notebook).stem in names, f"{lab.name}: no labs/source/{Path(lab.notebook).stem}.py"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_the_frame_opens_the_notebook(path):
    md = _markdown(path)
    assert md[0].startswith("# "), f"{path.name}: the first cell is the title"
    frame = next((m for m in md[:3] if "**Learning objectives.**" in m), None)
    assert frame, f"{path.name}: no '**Learning objectives.**' in its first markdown cells"
    for label in ("**Prerequisites.**", "**Time.**"):
        assert label in frame, f"{path.name}: the frame lacks {label}"
    objectives = frame.split("**Learning objectives.**", 1)[1].split("**Prerequisites.**", 1)[0]
    assert 3 <= len(re.findall(r"^- ", objectives, flags=re.M)) <= 6, f"{path.name}: 3-6 objectives"
    assert re.search(r"\*\*Time\.\*\* About \d+ minutes", frame), f"{path.name}: 'Time. About N minutes'"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_summary_questions_and_next_close_the_notebook(path):
    text = "\n".join(_markdown(path))
    tail = text[text.rfind("## Summary"):]
    assert "## Summary" in text, f"{path.name}: no '## Summary'"
    assert "## Check your understanding" in tail and "## Next" in tail, f"{path.name}: summary, questions, next"
    questions = tail.split("## Check your understanding", 1)[1].split("## Next", 1)[0]
    n = len(re.findall(r"^\d+\. ", questions, flags=re.M))
    assert 4 <= n <= 6, f"{path.name}: 4-6 numbered questions, found {n}"
    nxt = tail.split("## Next", 1)[1]
    assert re.search(r"\]\([^)]*\.ipynb\)", nxt), f"{path.name}: '## Next' links a notebook"
    # the model answers, same numbering
    heading, body = _guide_section(path.stem[:2])
    answers = len(re.findall(r"^\d+\. ", body, flags=re.M))
    assert answers >= n, f"teacher guide '{heading}': {answers} answers for {n} questions"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_links_resolve_inside_the_repository(path):
    base = ROOT / "labs"
    for md in _markdown(path):
        for target in re.findall(r"\]\(([^)\s]+)\)", md):
            if re.match(r"[a-z]+://", target) or target.startswith("#"):
                continue
            file, _, anchor = target.partition("#")
            dest = (base / file).resolve()
            assert dest.exists(), f"{path.name}: link to {target} (no such file)"
            assert ROOT in dest.parents or dest == ROOT, f"{path.name}: link outside the repository: {target}"
            if anchor and dest.suffix == ".md":
                assert anchor in _anchors(dest), f"{path.name}: {file} has no heading for #{anchor}"


def test_docs_links_resolve():
    for md in list((ROOT / "docs").glob("*.md")) + [ROOT / "data" / "etcd_real" / "README.md"]:
        for target in re.findall(r"\]\(([^)\s]+)\)", md.read_text()):
            if re.match(r"[a-z]+://", target) or target.startswith("#"):
                continue
            file = target.partition("#")[0]
            assert (md.parent / file).resolve().exists(), f"{md.relative_to(ROOT)}: link to {target}"


def test_no_reference_to_files_outside_the_repository():
    """The write-ups the labs rely on live in docs/ and data/: nothing points at the
    session's brief or at a shared folder."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    bad = re.compile(r"(?<![\w/.])brief/|\.\./shared/|/work/shared|(?<!docs/)(?<![\w/])recipes\.md|etcd-real\.md")
    hits = []
    for f in files:
        p = ROOT / f
        if p.suffix not in (".py", ".md", ".csv", ".toml", ".txt", ".cfg", ".ipynb", "") or f == "tests/test_teaching.py":
            continue
        if not p.is_file():
            continue
        for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            if bad.search(line):
                hits.append(f"{f}:{i}: {line.strip()[:100]}")
    assert not hits, "references to files outside the repository:\n" + "\n".join(hits[:20])


def test_the_glossary_has_the_words_the_labs_use():
    text = (ROOT / "docs" / "glossary.md").read_text()
    heads = {h.lower() for h in re.findall(r"^###\s+(.*)$", text, flags=re.M)}
    for term in ("WAL", "MVCC", "revision", "compaction", "spill", "informer", "reflector", "resourceVersion",
                 "bookmark", "410 Gone", "quorum read", "Lease", "APF", "GOAWAY", "429", "leader election",
                 "progress notification", "freelist", "quota, NOSPACE", "equivalence class",
                 "percentageOfNodesToScore"):
        assert term.lower() in heads, f"docs/glossary.md has no entry '### {term}'"


def test_the_mechanism_map_is_current_and_covers_every_switch():
    from kscale_lab.scenario import SWITCH_NAMES
    from kscale_lab.viz import mechanism_map as M

    assert M.main(["--check"]) == 0, "docs/mechanisms_map.svg is stale: python -m kscale_lab.viz.mechanism_map"
    assert set(M.ORDER) == set(SWITCH_NAMES) and set(M.WHERE) == set(SWITCH_NAMES)
    ends = {e.source for e in M.EDGES} | {e.target for e in M.EDGES}
    assert ends <= set(SWITCH_NAMES)
    assert ends == set(SWITCH_NAMES), f"mechanisms with no arrow: {set(SWITCH_NAMES) - ends}"
    svg = M.map_svg()
    assert svg.startswith("<svg") and all(f"{i}." in svg for i in range(1, len(M.EDGES) + 1))
    from kscale_lab.labs.base import registry

    for lab in registry().values():
        assert Path(lab.notebook).name in svg, f"the map does not name {lab.notebook}"


def test_the_teacher_guide_has_both_plans_and_the_binder_section():
    text = GUIDE.read_text()
    for h in ("## A 90-minute session", "## Three sessions of 90 minutes", "## When Binder is slow (or down)",
              "## Model answers"):
        assert h in text, f"docs/teacher_guide.md lacks '{h}'"
    for n in range(6, 11):     # room for the labs being written
        assert f"### Lab {n:02d}:" in text


# ---------------------------------------------------------------------------------- data/etcd_real
def _rows(name):
    return list(csv.DictReader(open(ROOT / "data" / "etcd_real" / name)))


def test_etcd_real_csv_holds_the_measurements_the_model_is_calibrated_on():
    from kscale_lab.etcd.bbolt import MEASURED_SECTION4
    from kscale_lab.etcd.freelist import MEASURED_SPILL_MS

    rows = _rows("freelist.csv")
    for (free, fl), (thr, p99, commit, spill, write) in MEASURED_SECTION4.items():
        g = [r for r in rows if int(r["free_pages"]) == free and r["freelist"] == fl]
        assert g, (free, fl)
        mean = lambda k: np.mean([float(r[k]) for r in g])  # noqa: E731
        assert mean("puts_per_s") == pytest.approx(thr, abs=0.06)
        assert mean("put_p99_ms") == pytest.approx(p99, abs=0.06)
        assert mean("backend_commit_mean_ms") == pytest.approx(commit, abs=0.06)
        assert mean("spill_mean_ms") == pytest.approx(spill, abs=0.06)
        assert mean("write_phase_mean_ms") == pytest.approx(write, abs=0.06)
    for (free, fl), spills in MEASURED_SPILL_MS.items():
        got = [float(r["spill_mean_ms"]) for r in rows if int(r["free_pages"]) == free and r["freelist"] == fl]
        assert got == list(spills), (free, fl)


def test_etcd_real_heartbeat_table_matches_the_articles_order_of_magnitude():
    rows = {(r["scenario"], r["nodes"], r["simulated_minutes"]): r for r in _rows("heartbeats.csv")
            if r["client"] == "gRPC"}
    a, b = rows[("A", "10000", "1")], rows[("B", "10000", "1")]
    assert float(a["wal_metric_mb"]) == pytest.approx(2 * float(a["wal_real_mb"]), rel=0.01)   # the 3.4 trap
    assert int(b["puts"]) > int(a["puts"]) and float(b["wal_real_mb"]) < float(a["wal_real_mb"]) / 4

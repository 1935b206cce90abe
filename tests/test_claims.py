"""The claims table: its form, its machinery, and that every lab value is computed and
reproducible. Nothing here requires an article's figure to be met: a claim that stops
holding after an honest fix shows in the table (and in the snapshot's diff), not here.

The snapshot (``tests/data/claims_snapshot.json``) is updated on purpose with
``.venv/bin/python -m kscale_lab.claims snapshot`` (CONTRIBUTING.md section 3)."""

import csv
import io
import math

import pytest

from kscale_lab.claims import (BASES, CSV_COLUMNS, DATA_COLUMNS, Claim, band_overrides, claim_band, claims_table,
                               clear_memo, data_dir, format_quantity, lab_values, load_claims, printable,
                               read_snapshot, show_claims, snapshot)
from kscale_lab.cli import main
from kscale_lab.errors import ParameterError
from kscale_lab.labs.base import Lab, registry
from kscale_lab.params import Param, ParamSet

LABS = [name for name in registry() if load_claims(name)]


@pytest.fixture(scope="module")
def table():
    """The whole table with bands, computed once (the CLI and show_claims reuse the memo)."""
    return claims_table()


# --------------------------------------------------------------------------- the data files
@pytest.mark.parametrize("name", LABS)
def test_data_file_has_the_form(name):
    with open(data_dir() / "claims" / f"{name}.csv", newline="") as f:
        assert tuple(csv.DictReader(f).fieldnames) == DATA_COLUMNS
    lab = registry()[name]
    for c in load_claims(name):
        assert c.basis in BASES, f"{name} {c.claim}: basis must be one of {', '.join(BASES)}"
        assert c.description and c.article and c.source, c.claim
        for p in c.band_params:            # band params: the lab's own, marked as assumptions, with a range
            spec = lab.params[p]
            assert spec.plausible is not None and spec.plausible_source, (c.claim, p)
        if c.basis == "by-construction":
            assert not c.band_params and c.note, c.claim


def test_every_row_that_fails_or_is_not_robust_says_why():
    snap = read_snapshot()
    for name, rows in snap.items():
        notes = {c.claim: c.note for c in load_claims(name)}
        for claim, r in rows.items():
            if not r["holds"] or not r["robust"]:
                assert notes[claim], f"{name} {claim} needs a note (CONTRIBUTING.md section 3)"


def test_labs_take_overrides_and_only():
    import inspect

    for name in LABS:
        takes = inspect.signature(registry()[name].claims).parameters
        assert "overrides" in takes and "only" in takes, f"{name}: claims(results=None, overrides=None, only=None)"


def test_unknown_basis_is_refused(tmp_path, monkeypatch):
    (tmp_path / "claims").mkdir()
    with open(data_dir() / "claims" / "heartbeats.csv") as f:
        text = f.read().replace(",arithmetic,", ",typed-in,", 1)
    (tmp_path / "claims" / "heartbeats.csv").write_text(text)
    monkeypatch.setenv("KSCALE_LAB_DATA", str(tmp_path))
    with pytest.raises(ParameterError, match="basis"):
        load_claims("heartbeats")


# --------------------------------------------------------------------------- criterion and formatting
def test_comparisons():
    c = Claim("x", "c", "", "~1", "approx", 1.0, None, None, 0.25, "u", "s")
    assert c.holds(1.2) and not c.holds(1.3) and not c.holds(float("nan"))
    g = Claim("x", "c", "", ">80%", "gt", 0.8, None, None, None, "1", "s")
    assert g.holds(0.81) and not g.holds(0.8)
    b = Claim("x", "c", "", "several", "between", 5, 2, 9, None, "n", "s")
    assert b.holds(2) and b.holds(9) and not b.holds(10)
    assert b.holds_over(2, 9) and not b.holds_over(1, 9) and not b.holds_over(3, 12)


def test_criterion_in_words():
    mk = lambda cmp, v, unit, lo=None, hi=None, tol=None: Claim("x", "c", "", "", cmp, v, lo, hi, tol, unit, "")  # noqa: E731
    assert mk("approx", 1.0, "GB/min", tol=0.25).criterion() == "within ±25 % of 1 GB/min"
    assert mk("gt", 100, "x").criterion() == "> 100x"
    assert mk("between", 5000, "nodes", 2000, 9999).criterion() == "between 2,000 nodes and 9,999 nodes"
    assert mk("between", 0.03, "1", 0.01, 0.1).criterion() == "between 1 % and 10 %"
    assert mk("gt", 0.8, "1").criterion() == "> 80 %"
    assert mk("approx", 500, "nodes", tol=0).criterion() == "= 500 nodes"
    # a bound at the no-effect value checks only the direction of the effect
    assert mk("gt", 1.0, "x").criterion() == "> 1x (direction only)"
    assert mk("lt", 1.0, "1").criterion() == "< 100 % (direction only)"
    assert mk("gt", 0.0, "1").direction_only and not mk("gt", 2.0, "x").direction_only
    assert format_quantity(0.0233, "1") == "2.3 %" and format_quantity(0.968, "1") == "97 %"
    assert format_quantity(1310.0, "nodes") == "1,310 nodes" and format_quantity(4.37, "x") == "4.37x"


# --------------------------------------------------------------------------- the band machinery
class _ToyLab(Lab):
    """y = a * b, with b an assumption of plausible range 1..4 (not registered)."""

    name = "toy"
    params = ParamSet([Param("a", 2.0, "1", "brief: a measured input", "a", lo=0, hi=10),
                       Param("b", 2.0, "1", "assumption: a guess", "b", lo=0, hi=10, plausible=(1.0, 4.0),
                             plausible_source="half to twice the guess")])
    calls = 0

    def claims(self, results=None, overrides=None, only=None):
        _ToyLab.calls += 1
        p = self.params.resolve(overrides)
        return {"y": p["a"] * p["b"]}


def test_band_moves_each_assumption_over_its_range_one_at_a_time():
    lab = _ToyLab()
    c = Claim("toy", "y", "", "", "between", 4.0, 3.0, 6.0, None, "1", "", "conditional", ("b",), "")
    assert band_overrides(lab, c) == [{"b": 1.0}, {"b": 4.0}]
    clear_memo()
    lo, hi = claim_band(lab, c, lab_values(lab)["y"])
    assert (lo, hi) == (2.0, 8.0)
    assert c.holds(4.0) and not c.holds_over(lo, hi)           # holds, not robust
    calls = _ToyLab.calls
    claim_band(lab, c, 4.0)
    assert _ToyLab.calls == calls                                # memoised per process
    unknown = Claim("toy", "y", "", "", "gt", 0, None, None, None, "1", "", "emergent", ("a",), "")
    with pytest.raises(ParameterError, match="plausible"):
        band_overrides(lab, unknown)                             # a band param needs a plausible range


def test_plausible_range_is_checked():
    with pytest.raises(ValueError, match="contain its default"):
        Param("z", 5.0, "1", "assumption: x", "z", lo=0, hi=10, plausible=(6.0, 8.0), plausible_source="why")
    with pytest.raises(ValueError, match="plausible_source"):
        Param("z", 5.0, "1", "assumption: x", "z", lo=0, hi=10, plausible=(4.0, 8.0))
    with pytest.raises(ParameterError):
        Param("z", 5.0, "1", "assumption: x", "z", lo=0, hi=10, plausible=(4.0, 80.0), plausible_source="why")


# --------------------------------------------------------------------------- computed and reproducible
def test_every_listed_claim_is_computed_with_a_band(table):
    listed = {(name, c.claim) for name in LABS for c in load_claims(name)}
    assert set(zip(table["lab"], table["claim"], strict=True)) == listed
    for r in table.to_dict("records"):
        assert math.isfinite(r["lab_value"]), r["claim"]
        assert r["band_lo"] <= r["lab_value"] <= r["band_hi"], r["claim"]
        assert r["robust"] in (True, False) and (r["holds"] or not r["robust"]), r["claim"]


def test_lab_values_match_the_snapshot(table):
    """Deterministic for the seed: every lab value and band edge as stored. If a change moves
    them on purpose, rewrite the snapshot: python -m kscale_lab.claims snapshot."""
    want, got = read_snapshot(), snapshot(table)
    assert set(got) == set(want)
    moved = []
    for name, rows in want.items():
        assert set(got[name]) == set(rows), name
        for claim, w in rows.items():
            g = got[name][claim]
            for k in ("lab_value", "band_lo", "band_hi"):
                if not (g[k] == w[k] or (g[k] is not None and w[k] is not None
                                         and math.isclose(g[k], w[k], rel_tol=1e-6, abs_tol=1e-12))):
                    moved.append(f"{name} {claim} {k}: {w[k]} -> {g[k]}")
            for k in ("holds", "robust"):
                if g[k] != w[k]:
                    moved.append(f"{name} {claim} {k}: {w[k]} -> {g[k]}")
    assert not moved, "claims moved (update the snapshot on purpose):\n" + "\n".join(moved)


def test_a_lab_recomputes_the_same_values():
    lab = registry()["scheduler"]
    first = lab.claims()
    again = lab.claims()
    assert first == again


def test_only_computes_what_is_asked():
    lab = registry()["heartbeats"]
    got = lab.claims(only={"max_nodes_off"})
    assert "max_nodes_off" in got and "txlog_per_min_off" not in got


def test_lab_value_is_computed_not_typed_in():
    """Change a cause, and the lab's figure moves (while the article's stays)."""
    from kscale_lab.labs.heartbeats import LAB

    small = LAB.run("off", {"node_object_bytes": 5000.0, "quota_backend_bytes": 1024**4, "duration": 120.0})
    big = LAB.run("off", {"node_object_bytes": 30000.0, "quota_backend_bytes": 1024**4, "duration": 120.0})
    assert big.summary["etcd_wal_bytes_per_min"] > 5 * small.summary["etcd_wal_bytes_per_min"]
    fast = LAB.claims(overrides={"node_object_bytes": 5000.0}, only={"txlog_per_min_off"})
    assert fast["txlog_per_min_off"] < 0.5 * lab_values(LAB)["txlog_per_min_off"]


# --------------------------------------------------------------------------- printing
def test_claims_csv_columns_and_rows(table, capsys):
    assert main(["claims", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    hb = [r for r in rows if r["lab"] == "heartbeats"]
    assert {r["claim"] for r in hb} == {c.claim for c in load_claims("heartbeats")}
    assert all(r["criterion"] and r["basis"] in BASES and r["band_lo"] for r in rows)


def test_no_bands_leaves_robust_empty(capsys):
    assert main(["claims", "--lab", "heartbeats", "--format", "csv", "--no-bands"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and all(r["robust"] == "" and r["band_lo"] == "" for r in rows)


def test_show_claims_prints_criterion_basis_band_and_shares_as_percent(table):
    text = show_claims("bookmarks")
    assert "test: between 1 % and 10 %" in text and "basis emergent" in text and "band " in text
    assert "%" in text.split("resync_watch_restarts_article")[1].split("\n")[1]   # the lab value as a share
    rows = printable(table)
    sched = rows.set_index("claim").loc["relaxed_best_node_share_10k"]
    assert sched["holds"] == "yes (direction)" and sched["lab value"].endswith("%")

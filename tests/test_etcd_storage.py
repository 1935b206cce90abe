"""The etcd storage lab: its write stream, run, sweeps and claims; fast tier vs exact page
model; exercises, dashboard and command line; the model beside a real etcd."""

from __future__ import annotations

import os

import numpy as np
import pytest

from kscale_lab import cli
from kscale_lab.claims import load_claims
from kscale_lab.errors import ParameterError
from kscale_lab.etcd import bbolt as B
from kscale_lab.etcd import realetcd as R
from kscale_lab.labs import etcd_storage as E
from kscale_lab.labs.base import get_lab
from kscale_lab.labs.etcd_storage import GB, LAB

GIB = 1024**3


def test_registered_with_its_switch_and_sourced_parameters():
    assert get_lab("etcd-storage") is LAB and LAB.switch == "freelist"
    for p in LAB.params:
        assert p.source and p.doc, p.name
    assert LAB.resolve("off")["backend_bbolt_freelist_type"] == "array"
    assert LAB.resolve("upstream")["quota_backend_bytes"] == 8 * GIB
    # the user's choice wins over a setting's default
    assert LAB.resolve("upstream", {"backend_bbolt_freelist_type": "array"})["backend_bbolt_freelist_type"] == "array"


def test_command_line(capsys):
    assert cli.main(["params", "etcd-storage"]) == 0
    assert "--backend-bbolt-freelist-type" in capsys.readouterr().out
    assert cli.main(["run", "etcd-storage", "--nodes", "1000", "--set", "duration=120", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("metric,off,article,upstream") and "etcd_mvcc_db_total_size_in_bytes_max" in out
    assert cli.main(["run", "etcd-storage", "--set", "backend_bbolt_freelist_type=btree"]) == 2


def test_the_cluster_does_not_fit_2gib_until_etcd_is_split_per_resource():
    one = LAB.run("off", {"duration": 60.0})
    assert one.summary["etcd_nospace_at_s"] == 0.0 and one.summary["etcd_mvcc_put_per_s"] == 0
    split = LAB.run("off", {"duration": 60.0, "etcd_servers_overrides": "per-resource"})
    assert np.isnan(split.summary["etcd_nospace_at_s"]) and split.summary["etcds"] == 4
    assert split.summary["etcd_mvcc_put_per_s"] > 1000


def test_run_is_deterministic_and_history_follows_its_causes():
    base = {"nodes": 2000, "duration": 330.0, "db_size_bytes": 0, "heartbeat_stream": "off",
            "pod_churn": 0.0, "other_requests": 0.0, "events_per_pod": 0.0}
    a = LAB.run("article", base)
    assert a.series.equals(LAB.run("article", base).series)
    h = a.summary["history_bytes_per_compaction_window"]
    # Node status only: 2,000 nodes x 15 KB (4 pages) every 10 s for 5 minutes
    assert h == pytest.approx(2000 * 30 * 4 * 4096, rel=0.05)
    twice = LAB.run("article", dict(base, node_status_update_frequency=5.0)).summary
    assert twice["history_bytes_per_compaction_window"] == pytest.approx(2 * h, rel=0.05)
    short = LAB.run("article", dict(base, etcd_compaction_interval=150.0)).summary
    assert short["history_bytes_per_compaction_window"] == pytest.approx(h / 2, rel=0.05)


def test_compaction_frees_pages_but_never_shrinks_the_file_until_defrag():
    o = {"nodes": 2000, "duration": 700.0, "db_size_bytes": 0}
    s = LAB.run("article", o).series
    i = int(600 / 1.0)
    assert s.bbolt_free_pages[i] > s.bbolt_free_pages[i - 1] + 10_000
    assert s.etcd_mvcc_db_total_size_in_bytes[i] == s.etcd_mvcc_db_total_size_in_bytes[i - 1]
    d = LAB.run("article", dict(o, defrag_at=650.0)).series
    assert d.bbolt_free_pages[651] == 0
    assert d.etcd_mvcc_db_total_size_in_bytes[651] < s.etcd_mvcc_db_total_size_in_bytes[651]


def test_fast_tier_agrees_with_the_exact_page_model():
    o = {"nodes": 200, "etcd_compaction_interval": 40.0, "db_size_bytes": 0, "pod_churn": 5.0,
         "other_requests": 100.0}
    ex = LAB.exact("article", o, duration=130.0)
    fast = LAB.run("article", dict(o, duration=130.0)).series
    ex.backend.bbolt.check()
    c = ex.commits
    for t in (30.0, 79.5, 129.0):
        row = c[c.start <= t].iloc[-1]
        f = fast.iloc[int(t)]
        assert row.db_bytes == pytest.approx(f.etcd_mvcc_db_total_size_in_bytes, rel=0.05), t
        assert row.db_in_use_bytes == pytest.approx(f.etcd_mvcc_db_total_size_in_use_in_bytes, rel=0.05), t
    assert (c.kind == "compaction").sum() > 0


def test_sweep_array_grows_with_the_free_list_and_the_hashmap_stays_flat():
    sw = LAB.sweep("article")
    a, m = sw[sw.freelist == "array"], sw[sw.freelist == "map"]
    assert np.all(np.diff(a.commit_s) > 0) and np.all(np.diff(a.put_p99_s) >= 0)
    assert np.ptp(m.commit_s) < 0.05 * m.commit_s.mean()
    assert (a.free_pages.to_numpy() == pytest.approx(0.5 * a.db_bytes.to_numpy() / 4096))
    # cause -> effect: a faster disk or fewer free pages shrink the array's commit
    less_free = LAB.sweep("article", {"free_fraction": 0.1})
    assert less_free[less_free.freelist == "array"].commit_s.iloc[-1] < a.commit_s.iloc[-1] / 3


def test_stress_spill_collapses_only_when_commits_cannot_keep_up():
    hard = LAB.spill_after_compaction(40 * GB)
    assert hard["array"]["saturated"][1] and hard["array"]["spill_s"][1] > 1.0
    assert not hard["map"]["saturated"][1]
    gentle = LAB.spill_after_compaction(40 * GB, overrides={"stress_put_rate": 200.0})
    assert not gentle["array"]["saturated"][1] and gentle["array"]["spill_s"][1] < 0.5


def test_every_listed_claim_is_computed():
    values = LAB.claims()
    assert set(values) == {c.claim for c in load_claims("etcd-storage")}
    assert all(np.isfinite(v) for v in values.values())


def test_closed_loop_p99_waits_a_whole_commit_so_it_follows_counted_work():
    """The p99 growth claims: a closed-loop p99 is base + commit, so a freelist whose counted
    work grew with the free list would show it; the hashmap's does not grow."""
    p = LAB.resolve("article")
    sw = LAB.sweep("article", sizes=[2 * GB, 100 * GB], load="section4")
    for r in sw.itertuples():
        assert r.put_p99_s == pytest.approx(p["put_base_latency"] + r.commit_s)
    law = E._stress_law("map", E._law_key(p))
    growing = B.WorkLaw(law.kind, law.puts_ref, law.allocs_per_commit, law.pages_per_commit, law.a,
                        dict(law.b, spans_touched=1e-2))   # a hypothetical map whose work grows
    r = B.closed_loop(growing, [2 * GB * 0.5 / 4096, 100 * GB * 0.5 / 4096], p)
    assert r["put_p99_s"][1] / r["put_p99_s"][0] > 1.25


def test_release_on_small_db_is_dearer_for_the_hashmap_until_the_list_is_long():
    small = LAB.release_cost_small_db(1 * GB)
    assert small["map"] > small["array"]
    big = LAB.release_cost_small_db(20 * GB)  # the array merges its whole list on every release
    assert big["array"] > small["array"] * 10 and big["array"] > big["map"]


def test_bad_input_is_a_parameter_error():
    with pytest.raises(ParameterError):
        LAB.run("sideways")
    with pytest.raises(ParameterError):
        LAB.run("off", {"backend_bbolt_freelist_type": "btree"})
    with pytest.raises(ParameterError):
        LAB.sweep("article", load="uphill")
    with pytest.raises(ParameterError):
        LAB.sweep("article", sizes=[-1.0])
    with pytest.raises(ParameterError):
        LAB.run("off", {"free_fraction": 1.5})


def test_free_run_histogram_scales_with_the_db():
    l1, c1 = LAB.free_run_histogram("article", {"db_size_bytes": 4 * 10**9})
    l2, c2 = LAB.free_run_histogram("article", {"db_size_bytes": 40 * 10**9})
    assert (l1 * c1).sum() == pytest.approx(0.5 * 4e9 / 4096, rel=1e-6)
    assert (l2 * c2).sum() == pytest.approx(10 * (l1 * c1).sum(), rel=1e-6)


# ----------------------------------------------------------------------------------------
# exercises and dashboard
# ----------------------------------------------------------------------------------------
def _allocate(freemaps, n):
    if n in freemaps:
        s = freemaps[n].pop()
        if not freemaps[n]:
            del freemaps[n]
        return s
    for size in list(freemaps):
        if size > n:
            s = freemaps[size].pop()
            if not freemaps[size]:
                del freemaps[size]
            freemaps.setdefault(size - n, set()).add(s + n)
            return s
    return 0


def _free_page(fwd, bwd, page):
    start, size = page, 1
    if page - 1 in bwd:
        b = bwd.pop(page - 1)
        del fwd[page - b]
        start, size = start - b, size + b
    if page + 1 in fwd:
        a = fwd.pop(page + 1)
        del bwd[page + a]
        size += a
    fwd[start] = size
    bwd[start + size - 1] = size


def test_exercise_checkers():
    from kscale_lab.exercises import etcd_storage as X

    assert X.check_allocate(_allocate).done
    assert X.check_allocate(lambda fm, n: None).status == "not done yet"

    def first_larger_even_if_exact(fm, n):  # splits a larger run although an exact one exists
        for size in sorted(fm, reverse=True):
            if size >= n:
                s = fm[size].pop()
                if not fm[size]:
                    del fm[size]
                if size > n:
                    fm.setdefault(size - n, set()).add(s + n)
                return s
        return 0

    assert X.check_allocate(first_larger_even_if_exact).status == "not yet right"
    assert X.check_free_page(_free_page).done
    assert X.check_free_page(lambda f, b, p: None).status == "not done yet"

    def no_backward_merge(fwd, bwd, page):
        size = 1
        if page + 1 in fwd:
            size += fwd.pop(page + 1)
            del bwd[page + size - 1]
        fwd[page] = size
        bwd[page + size - 1] = size

    assert X.check_free_page(no_backward_merge).status == "not yet right"
    # exercise 3 (a derivation) is checked in tests/test_exercises.py
    assert X.check_array_limit(None).status == "not done yet"


def test_dashboard_is_driven_from_python():
    from kscale_lab.viz.etcd_storage import EtcdStorageDashboard, sweep_figure

    d = EtcdStorageDashboard(switch="article", db_gb=10.0)
    assert d.result.summary["params"]["backend_bbolt_freelist_type"] == "map"
    p99_array = np.asarray(d.sources["sweep"].data["array_p99"])
    assert np.nanmax(p99_array) > 2 * np.nanmin(p99_array)
    d.controls["split"].value = "per-resource"
    assert d.result.summary["etcds"] == 4
    d.controls["switch"].value = "off"
    assert d.result.summary["params"]["quota_backend_bytes"] == 2 * GIB
    assert "NOSPACE" in d.summary.value or "array" in d.summary.value
    assert sweep_figure(d.sweep_df, measured={"array": [(8.3e9, 0.079)]}).renderers


def test_a_dead_etcd_says_so_and_shows_no_nan():
    """The default view (off, one etcd, 2 GiB) cannot hold the cluster: NOSPACE at once. The
    summary and the plots say so; no NaN, no 'falls behind'; the sweep still compares."""
    import re

    from kscale_lab.viz.etcd_storage import EtcdStorageDashboard

    d = EtcdStorageDashboard()
    sm = d.result.summary
    assert sm["etcd_nospace_at_s"] == 0.0 and sm["etcd_mvcc_put_per_s"] == 0.0   # dead indeed
    text = re.sub("<[^>]+>", " ", d.summary.value)
    assert "etcd refuses writes: NOSPACE" in text
    assert "nan" not in text.lower() and "falls behind" not in text
    assert all(lab.visible and "NOSPACE" in lab.text for lab in d.refused_labels)
    assert np.isnan(np.asarray(d.sources["series"].data["commit"], dtype=float)).all()   # no commit drawn
    a, m = (np.asarray(d.sources["sweep"].data[k], dtype=float) for k in ("array_p99", "map_p99"))
    assert np.isfinite(a).any() and np.isfinite(m).any() and not np.allclose(a, m, equal_nan=True)
    # a live etcd: no label
    d.controls["switch"].value = "article"
    assert not any(lab.visible for lab in d.refused_labels)
    assert "NOSPACE" not in re.sub("<[^>]+>", " ", d.summary.value).replace("NOSPACE alarm", "")
    # several etcds: the quota plot shows the fullest one, below its own quota
    d.controls["switch"].value = "off"
    d.controls["split"].value = "per-resource"
    assert max(d.sources["series"].data["db"]) <= 2 * GIB / 1e9


# ----------------------------------------------------------------------------------------
# a real etcd
# ----------------------------------------------------------------------------------------
def _need_etcd():
    if not R.etcd_available():
        if os.environ.get("KSCALE_LAB_REQUIRE_ETCD") == "1":
            raise RuntimeError("etcd is required (KSCALE_LAB_REQUIRE_ETCD=1) but not installed")
        pytest.skip("etcd is not installed (apt-get install etcd-server)")


@pytest.mark.etcd
@pytest.mark.parametrize("scenario", ["node", "lease"])
def test_model_within_10_percent_of_a_real_etcd(scenario):
    """The heartbeat scenario at 1,000 nodes against a real etcd: the exact page model, fed
    the same puts, predicts the WAL bytes and the db growth within 10 %."""
    _need_etcd()
    with R.RealEtcd() as etcd:
        real = R.run_heartbeats(etcd, 1000, scenario, sim_seconds=20.0)
    pred = LAB.predict_real(real)
    assert pred["wal_bytes_model"] == pytest.approx(pred["wal_bytes_real"], rel=0.10)
    assert pred["db_growth_model"] == pytest.approx(pred["db_growth_real"], rel=0.10)

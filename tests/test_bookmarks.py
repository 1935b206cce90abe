"""The bookmarks lab: results come from the watch cache and the reflectors, and move with their causes."""

from __future__ import annotations

import numpy as np
import pytest

from kscale_lab.claims import claims_table, load_claims
from kscale_lab.errors import ParameterError
from kscale_lab.labs.base import get_lab
from kscale_lab.labs.bookmarks import LAB, PARAMS, heuristic_watch_cache_size

SMALL = {"nodes": 400, "restart_at": 300.0}


def run(setting, **o):
    return LAB.run(setting, dict(SMALL, **o))


@pytest.fixture(scope="module")
def small():
    return {s: run(s) for s in LAB.settings}


def test_registered_with_its_switch_and_sourced_parameters():
    assert get_lab("bookmarks") is LAB and LAB.switch == "bookmarks"
    assert all(p.source and p.unit is not None for p in PARAMS)
    for name in ("restart_at", "watch_cache_size", "selector_filter_cpu", "relist_etcd_share",
                 "etcd_read_ns_per_byte", "pod_churn", "nodes", "watch_send_ns_per_byte", "min_watch_timeout"):
        assert name in LAB.params
    assert heuristic_watch_cache_size(10_000) == 500_000 and heuristic_watch_cache_size(5) == 1000


def test_settings_differ_as_their_mechanisms_say(small):
    off, art, up = (small[s].summary for s in ("off", "article", "upstream"))
    # a bookmark 2 s before every deadline: watch timeouts replay a few seconds, not minutes
    assert art["timeouts_init_events"] < 0.2 * off["timeouts_init_events"]
    assert up["timeouts_init_events"] == art["timeouts_init_events"]
    # periodic bookmarks keep RVs younger than a minute: the restart replays less
    assert up["restart_init_events"] < art["restart_init_events"] <= off["restart_init_events"]
    assert up["selective_rv_age_max_s"] <= LAB.params["default_bookmark_frequency"].default + 5.0
    assert off["selective_rv_age_p50_s"] > up["selective_rv_age_p50_s"]
    # 1.15: a fixed tape of max(50 x nodes, 1000) events; today: adaptive, ~75 s or more
    assert off["watch_cache_capacity"] == heuristic_watch_cache_size(400)
    assert up["watch_cache_capacity"] < off["watch_cache_capacity"]
    assert up["watch_cache_span_s"] >= LAB.params["event_fresh_duration"].default
    # a replay sends nothing new: a resumed client had seen every event it selects
    assert off["restart_events_sent"] == 0


def test_summary_counts_add_up(small):
    for s, r in small.items():
        sm = r.summary
        assert sm["restart_watches"] == sm["restart_resumed"] + sm["restart_relists"] == 400 + sm["controllers"]
        assert sm["restart_relists"] == sm["restart_relists_selective"] + sm["restart_relists_controllers"]
        df = r.series
        assert df["watch_restarts"].sum() == sm["timeouts_watches"]
        assert df["relists"].sum() == sm["timeouts_relists"]
        assert df["apiserver_init_events"].sum() == sm["timeouts_init_events"]
        assert np.isclose((df["apiserver_resync_cpu_cores"] * 10.0).sum(), sm["timeouts_apiserver_cpu_seconds"])
        assert sm["restart_resync_items"] == sm["restart_init_events"] + sm["restart_objects_relisted"]
        out = r.outcome
        assert out.totals.events_scanned == sm["restart_init_events"]
        assert out.totals.relists == sm["restart_relists"]


def test_traces_show_rv_ages_against_the_tape(small):
    r = small["off"]
    tr = r.traces
    assert len(r.trace_names) == 4 and r.trace_names[-1] == "controller-0"
    ages = tr[[c for c in tr.columns if c.startswith("rv_age_s")]].to_numpy()
    assert np.all(ages >= -1e-9) and np.all(ages <= tr["time"].to_numpy()[:, None] + 1e-9)
    assert tr[f"rv_age_s[{r.trace_names[-1]}]"].max() < 5.0          # a controller sees every event
    assert (r.events["event"].str.startswith("API server restart")).sum() == 1


def test_a_short_tape_makes_410s_and_bookmarks_avoid_them():
    o = {"watch_cache_size": 200, "upper_bound_capacity": 200}
    off, art = run("off", **o).summary, run("article", **o).summary
    assert off["timeouts_relists"] > 0.5 * off["timeouts_watches"]       # RVs fell off the tape
    assert art["timeouts_relists"] == 0                                  # 2 s of tape is enough
    # relisting a kubelet's pods without an index scans every pod; with it, only its bucket
    up = run("upstream", **o).summary
    assert off["timeouts_objects_scanned"] > 100 * off["timeouts_objects_relisted"]
    assert up["restart_objects_scanned"] == up["restart_objects_relisted"]


def test_cold_reconnect_relists_everyone_whatever_the_bookmarks():
    outs = {s: run(s, reconnect="cold").summary for s in LAB.settings}
    for s, sm in outs.items():
        assert sm["restart_relists"] == sm["restart_watches"] and sm["restart_init_events"] == 0
        assert sm["restart_etcd_objects_read"] >= 400 * 20 * 0.9               # the new cache's own LIST
    assert len({sm["restart_objects_relisted"] for sm in outs.values()}) == 1
    # misses of the cache land on etcd: every relist reads every pod
    miss = run("off", reconnect="cold", relist_etcd_share=1.0).summary
    assert miss["restart_etcd_bytes_read"] > 100 * outs["off"]["restart_etcd_bytes_read"]
    assert miss["restart_resync_seconds"] > outs["off"]["restart_resync_seconds"]


def test_causes_move_the_results():
    lo = {s: run(s, pod_churn=1.0, pod_background_updates_per_hour=0.2).summary for s in ("off", "upstream")}
    hi = {s: run(s, pod_churn=8.0).summary for s in ("off", "upstream")}
    # rarely-served watchers: old RVs without bookmarks, so bookmarks save a larger share
    assert lo["off"]["selective_events_per_watcher_per_min"] < hi["off"]["selective_events_per_watcher_per_min"]
    r_lo = lo["upstream"]["restart_init_events"] / lo["off"]["restart_init_events"]
    r_hi = hi["upstream"]["restart_init_events"] / hi["off"]["restart_init_events"]
    assert r_lo < r_hi
    # a watch that selects more (a namespace out of 3) sees more events: its RV stays young
    ns = run("off", selective_field="metadata.namespace", namespaces=3).summary
    assert ns["selective_rv_age_p50_s"] < 0.2 * run("off").summary["selective_rv_age_p50_s"]
    # more API server cores: the same work, re-synced sooner
    a = run("off", apiserver_cores=8.0).summary
    b = run("off", apiserver_cores=16.0).summary
    assert a["restart_apiserver_cpu_seconds"] == b["restart_apiserver_cpu_seconds"]
    assert a["restart_resync_seconds"] == pytest.approx(2 * b["restart_resync_seconds"])


def test_a_run_is_deterministic_for_a_seed():
    a = run("upstream").summary
    b = run("upstream").summary
    c = run("upstream", seed=1).summary
    for d in (a, b, c):
        d.pop("params")
    assert a == b and a != c


def test_bad_input_is_one_line():
    with pytest.raises(ParameterError, match="restart_at"):
        LAB.run("off", {"restart_at": 1.0})
    with pytest.raises(ParameterError, match="bookmarks"):
        LAB.run("sometimes")
    with pytest.raises(ParameterError, match="reconnect"):
        LAB.run("off", dict(SMALL, apiservers=1))
    with pytest.raises(ParameterError, match="pod_churn"):
        LAB.run("off", {"nodes": 50, "pods": 100, "pod_churn": 50.0, "restart_at": 600.0})
    with pytest.raises(ParameterError, match="selective_field"):
        LAB.run("off", dict(SMALL, selective_field="spec.hostname"))
    assert LAB.resolve("off", {"nodes": 1000})["pod_churn"] == pytest.approx(2.0)   # churn scales with nodes


def test_claims_are_computed_for_every_row(small):
    rows = {c.claim for c in load_claims("bookmarks")}
    values = LAB.claims(small)
    assert rows == set(values)
    assert all(0.0 <= v <= 1.0 for v in values.values())
    off, art = small["off"].summary, small["article"].summary
    assert values["resync_watch_restarts_article"] == art["timeouts_init_events"] / off["timeouts_init_events"]


def test_default_scale_restart_ratios_are_ordered():
    """At 10k nodes / 200k pods the restart figures are what the model gives (the claims
    table says whether they hold; they are not tuned): today's bookmarks re-read fewer
    events than 1.15's, which re-read fewer than none."""
    v = LAB.claims(only={"resync_restart_upstream", "resync_restart_article"})
    assert v["resync_restart_upstream"] < v["resync_restart_article"] < 1.0


def test_sweep_frames(small):
    df = LAB.sweep("pod_churn", [2.0], settings=["off", "upstream"], overrides=SMALL)
    assert list(df.setting) == ["off", "upstream"] and "restart_init_events" in df
    with pytest.raises(ParameterError):
        LAB.sweep("warp", [1])


# --- the dashboard and the exercises ------------------------------------------------------------

def test_dashboard_is_driven_from_python():
    from kscale_lab.viz.bookmarks import BookmarksDashboard, claims_figure, ratio_figure

    d = BookmarksDashboard(base={"nodes": 400}, restart_min=5)
    assert d.result.setting == "off" and set(d.results) == {"off", "article", "upstream"}
    d.controls["switch"].value = "upstream"
    assert d.result.setting == "upstream" and "upstream" in d.summary.value
    assert len(d.sources["trace"].data["t"]) > 10
    d.controls["capacity"].value = 1_000
    assert d.result.summary["params"]["upper_bound_capacity"] == 1_000
    d.controls["selectivity"].value = "apps"
    assert d.result.summary["params"]["label_values"] == 100
    d.controls["reconnect"].value = "cold"
    cold = d.results["off"].summary      # a fresh cache replays nothing: relist unless already at its RV
    assert cold["restart_init_events"] == 0 and cold["restart_relists"] > 0.9 * cold["restart_watches"]
    with pytest.raises(KeyError):
        BookmarksDashboard(warp=9)
    df = LAB.sweep("pod_churn", [1.0, 4.0], overrides=SMALL)
    assert ratio_figure(df, "pod_churn", "pods/s").renderers
    assert claims_figure(claims_table(["bookmarks"], bands=False)).renderers


def test_exercise_checks():
    from kscale_lab.exercises.bookmarks import check_bookmark_handler, check_watch_decision

    def decision(client_rv, list_rv, removed, first_rv):
        oldest = list_rv + 1 if list_rv > 0 and not removed else first_rv
        return "410" if client_rv < oldest - 1 else "replay"

    def off_by_one(client_rv, list_rv, removed, first_rv):
        oldest = list_rv + 1 if list_rv > 0 and not removed else first_rv
        return "410" if client_rv < oldest else "replay"

    def handler(store, rv, event):
        kind, erv, key, obj = event
        if kind == "DELETED":
            store.pop(key, None)
        elif kind != "BOOKMARK":
            store[key] = obj
        return erv

    def ignores_bookmarks(store, rv, event):
        kind, erv, key, obj = event
        if kind == "BOOKMARK":
            return rv
        return handler(store, rv, event)

    def stores_bookmarks(store, rv, event):
        store[event[2]] = event[3]
        return event[1]

    assert check_watch_decision(decision).done
    assert check_watch_decision(off_by_one).status == "not yet right"
    assert check_watch_decision(lambda *a: None).status == "not done yet"
    assert check_bookmark_handler(handler).done
    assert check_bookmark_handler(ignores_bookmarks).status == "not yet right"
    assert check_bookmark_handler(stores_bookmarks).status == "not yet right"
    assert check_bookmark_handler(None).status == "not done yet"

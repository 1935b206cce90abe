"""The scheduler lab: parameters per setting, each idea alone, results, claims, CLI,
dashboard and exercise checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kscale_lab.claims import load_claims
from kscale_lab.cli import main
from kscale_lab.errors import ParameterError
from kscale_lab.labs.base import get_lab
from kscale_lab.labs.scheduler import LAB, VARIANTS, nodes_to_score
from kscale_lab.scheduler.search import num_feasible_nodes_to_find

SMALL = {"nodes": 1_000, "burst_pods": 600, "churn_duration_s": 20.0, "burst_at_s": 5.0}


# --------------------------------------------------------------------------- parameters
def test_registry_and_identity():
    assert get_lab("scheduler") is LAB
    assert LAB.switch == "scheduler" and LAB.settings == ("off", "article", "upstream")
    assert LAB.notebook == "labs/05_scheduler.ipynb" and LAB.article_section == "9"
    names = [p.name for p in LAB.params]
    assert names[:2] == ["scenario", "series_bin_s"]  # lab parameters first
    for p in LAB.params:
        assert p.unit and p.source and p.doc


def test_setting_defaults_apply_only_where_the_user_did_not_set():
    assert LAB.resolve("off")["equivalence_classes"] is False and LAB.resolve("off")["relaxed_search"] is False
    art = LAB.resolve("article")
    assert art["equivalence_classes"] is True and art["relaxed_search"] is True
    up = LAB.resolve("upstream")
    assert up["equivalence_classes"] is False and up["relaxed_search"] is True
    assert LAB.resolve("article", {"equivalence_classes": False})["equivalence_classes"] is False
    assert LAB.resolve("off", {"relaxed-search": "true"})["relaxed_search"] is True
    p = LAB.resolve("off", {"nodes": 2000})
    assert p["nodes"] == 2000 and "pods" not in p and "objects" not in p  # pods are the workload, not scaled
    assert LAB.resolve("off", {"scenario": "churn"})["burst_pods"] == 0
    assert LAB.resolve("off", {"scenario": "churn", "burst_pods": 10})["burst_pods"] == 10


@pytest.mark.parametrize("bad", [{"nodes": 0}, {"scenario": "nope"}, {"no_such": 1}, {"equivalence_classes": "maybe"},
                                 {"series_bin_s": 0}])
def test_bad_input_is_a_parameter_error(bad):
    with pytest.raises(ParameterError):
        LAB.run("off", bad)


def test_bad_setting_and_contradiction():
    with pytest.raises(ParameterError):
        LAB.run("fast")
    with pytest.raises(ParameterError):  # no relaxed search but only half the nodes scored
        LAB.run("upstream", {**SMALL, "relaxed_search": False, "percentage_of_nodes_to_score": 50})


# --------------------------------------------------------------------------- each idea alone and together
def test_article_with_neither_idea_is_off_exactly():
    a = LAB.run("article", {**SMALL, "equivalence_classes": False, "relaxed_search": False})
    o = LAB.run("off", SMALL)
    pd.testing.assert_frame_equal(a.pods, o.pods)
    assert a.summary["mean_cycle_s"] == o.summary["mean_cycle_s"]


def test_upstream_without_relaxed_search_scores_every_node():
    a = LAB.run("upstream", {**SMALL, "relaxed_search": False})
    b = LAB.run("upstream", {**SMALL, "percentage_of_nodes_to_score": 100})
    pd.testing.assert_frame_equal(a.pods, b.pods)
    assert a.summary["best_score_share"] == 1.0


def test_each_idea_alone_and_together():
    df = LAB.alone_and_together(SMALL)
    assert list(df.index) == [label for label, _, _ in VARIANTS]
    n = SMALL["nodes"]
    ev, reads = df["nodes evaluated/pod"], df["cached reads/pod"]
    assert ev["neither (off)"] == n and reads["neither (off)"] == 0
    # equivalence classes alone: few fresh evaluations, but every node is still visited (read from the cache)
    assert ev["equivalence classes only"] < 0.2 * n and reads["equivalence classes only"] == n
    # relaxed search alone: fewer nodes, all evaluated afresh
    assert ev["relaxed search only"] < n and reads["relaxed search only"] == 0
    assert ev["both (article)"] < ev["relaxed search only"] and 0 < reads["both (article)"] < n
    # exactness: only the exhaustive searches always pick a best node
    assert df.loc["neither (off)", "best node chosen"] == 1.0
    assert df.loc["equivalence classes only", "best node chosen"] == 1.0
    assert df.loc["relaxed search only", "best node chosen"] < 1.0


def test_equivalence_cache_ratio_follows_the_cost_of_a_cached_read():
    """Issue #71013 as a cause -> effect: free cached reads make the cache faster for every
    pod; dear ones make it slower; anti-affinity pods (an expensive filter) gain more."""
    cheap = LAB.ecache_effect(nodes=1_000, pods=500, overrides={"equivalence_read_cost_s": 0.0})
    dear = LAB.ecache_effect(nodes=1_000, pods=500, overrides={"equivalence_read_cost_s": 2e-6})
    assert cheap.loc["common pods", "cycle on/off"] < 1.0 < dear.loc["common pods", "cycle on/off"]
    for ec in (cheap, dear):
        assert ec.loc["pods with anti-affinity", "cycle on/off"] < ec.loc["common pods", "cycle on/off"]


def test_upstream_ecache_caches_predicates_and_scores_every_feasible_node():
    from kscale_lab.scheduler import sim

    o = {"nodes": 500, "burst_pods": 100, "churn_rate": 0.0, "burst_affinity_share": 0.0,
         "equivalence_classes": True}
    pred_only = sim.simulate("off", {**o, "equivalence_cache_scores": False})[1]["pods"]
    both = sim.simulate("off", {**o, "equivalence_cache_scores": True})[1]["pods"]
    assert (pred_only["node"] == both["node"]).all()            # the same answers, different work
    assert pred_only["nodes_scored"].sum() > 10 * both["nodes_scored"].sum()
    assert (pred_only["cache_reads"] == both["cache_reads"]).all()


# --------------------------------------------------------------------------- results
def test_run_result_series_events_summary():
    r = LAB.run("off", {**SMALL, "series_bin_s": 0.5})
    s, sm = r.series, r.summary
    assert r.setting == "off" and "setting" not in sm and sm["params"]["series_bin_s"] == 0.5
    assert np.allclose(np.diff(s["time"]), 0.5)
    assert int(round((s["pods_bound_per_s"] * 0.5).sum())) == sm["scheduled"] == len(r.pods)
    assert int(round((s["pods_arrived_per_s"] * 0.5).sum())) == sm["pods"]
    assert (s["scheduler_pending_pods"] >= 0).all() and s["scheduler_pending_pods"].iloc[-1] == 0
    burst_rows = s["pods_bound_per_s"] > 0
    assert (s.loc[burst_rows, "scheduler_pod_scheduling_sli_duration_seconds_p99"]
            >= s.loc[burst_rows, "scheduler_pod_scheduling_sli_duration_seconds_p50"]).all()
    assert (s.loc[burst_rows, "nodes_evaluated_per_pod"] == SMALL["nodes"]).all()
    ev = r.events
    assert list(ev["event"][:1]) == ["burst starts"] and "longest queue" in set(ev["event"])
    assert (np.diff(ev["time"]) >= 0).all()
    assert len(r.nodes) == SMALL["nodes"]


def test_unschedulable_pods_show_as_an_event():
    r = LAB.run("upstream", {**SMALL, "burst_pods": 5, "burst_cpu_m": 64_000, "churn_rate": 0.0, "max_attempts": 2})
    assert "pod left pending" in set(r.events["event"]) and r.summary["unscheduled"] == 5


def test_latency_grows_with_cluster_and_burst():
    sw = LAB.size_sweep(nodes=(1_000, 4_000), settings=("off", "upstream"), overrides={"burst_pods": 1_500})
    off = sw[sw.setting == "off"].set_index("nodes")["scheduler_pod_scheduling_sli_duration_seconds_p99"]
    up = sw[sw.setting == "upstream"].set_index("nodes")["scheduler_pod_scheduling_sli_duration_seconds_p99"]
    assert off[4_000] > 3 * off[1_000] and up[4_000] < 0.1 * off[4_000]
    small = LAB.run("off", {"nodes": 4_000, "burst_pods": 500}).summary
    big = LAB.run("off", {"nodes": 4_000, "burst_pods": 1_500}).summary
    assert big["scheduler_pod_scheduling_sli_duration_seconds_p99"] > \
        2 * small["scheduler_pod_scheduling_sli_duration_seconds_p99"]


def test_burst_for_latency_is_the_smallest_burst_reaching_the_target():
    o = {"nodes": 3_000}
    b = LAB.burst_for_latency(2.0, "off", o)
    key = "scheduler_pod_scheduling_sli_duration_seconds_p99"
    assert LAB.run("off", {**o, "burst_pods": b}).summary[key] >= 2.0
    assert LAB.run("off", {**o, "burst_pods": int(b * 0.9)}).summary[key] < 2.0
    with pytest.raises(ParameterError):
        LAB.burst_for_latency(0.0)


def test_nodes_to_score_function():
    assert nodes_to_score(10_000) == 500 == num_feasible_nodes_to_find(10_000)
    assert nodes_to_score([50, 5_625, 20_000]).tolist() == [50, 281, 1_000]
    assert nodes_to_score(1_000, 100) == 1_000


# --------------------------------------------------------------------------- claims
def test_every_listed_claim_is_computed():
    values = LAB.claims()
    assert {c.claim for c in load_claims("scheduler")} == set(values)
    assert all(np.isfinite(v) for v in values.values())


def test_claim_moves_with_its_cause():
    """Halve the burst and the lab's ~10 s falls; the article's figure stays where it is."""
    prepared = LAB.prepare({"burst_pods": 1_500})
    res = {s: LAB.run(s, {"burst_pods": 1_500}, prepared=prepared) for s in ("off", "article")}
    small = LAB.claims(res)["latency_p99_off_10k"]
    assert small < 0.7 * LAB.run("off").summary["scheduler_pod_scheduling_sli_duration_seconds_p99"]


# --------------------------------------------------------------------------- command line
def test_cli_run_params_claims(capsys):
    assert main(["run", "scheduler", "--nodes", "1000", "--set", "burst_pods=300", "--set", "churn_duration_s=10",
                 "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["results"]) == {"off", "article", "upstream"}
    assert out["scenario"]["nodes"] == 1000
    assert out["scenario"]["equivalence_classes"] == {"off": False, "article": True, "upstream": False}
    assert out["results"]["off"]["nodes_evaluated_per_pod"] == 1000
    assert main(["params", "scheduler", "--format", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["params"]}
    assert rows["relaxed_search"]["setting_defaults"] == {"article": True, "upstream": True}
    assert main(["run", "scheduler", "--set", "equivalence_classes=perhaps"]) == 2
    assert "equivalence_classes" in capsys.readouterr().err


# --------------------------------------------------------------------------- dashboard
@pytest.fixture(scope="module")
def dash():
    from kscale_lab.viz.scheduler import SchedulerDashboard

    return SchedulerDashboard(nodes=2_000, burst_pods=500)


def test_dashboard_switch_sets_the_ideas_and_recomputes_once(dash, monkeypatch):
    calls = []
    real = dash.lab.run
    monkeypatch.setattr(dash.lab, "run", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    dash.controls["switch"].value = "article"
    assert calls == ["article"]
    c = dash.controls
    assert c["equivalence_classes"].value and c["relaxed_search"].value and c["batching"].disabled
    p = dash.result.summary["params"]
    assert p["equivalence_classes"] and p["relaxed_search"] and p["nodes"] == 2_000
    c["relaxed_search"].value = False  # equivalence classes alone
    assert calls == ["article", "article"]
    assert dash.result.summary["params"]["relaxed_search"] is False
    assert dash.result.summary["cache_reads_per_pod"] == 2_000
    c["switch"].value = "upstream"
    assert not c["equivalence_classes"].value and c["relaxed_search"].value and not c["batching"].disabled
    c["switch"].value = "off"


def test_dashboard_plots_follow_the_result(dash):
    dash.controls["switch"].value = "off"
    dash.controls["affinity_share"].value = 0.5
    assert dash.result.summary["params"]["burst_affinity_share"] == 0.5
    pods = dash.sources["pods"].data
    assert len(pods["t"]) == dash.result.summary["scheduled"]
    assert np.isclose(np.sum(dash.sources["gap"].data["share"]), 1.0)
    ev = np.asarray(dash.sources["series"].data["evaluated"])
    assert np.nanmax(ev) == 2_000
    dash.controls["switch"].value = "upstream"
    assert np.nanmax(np.asarray(dash.sources["series"].data["evaluated"])) < 2_000
    assert "upstream" in dash.summary.value
    dash.controls["nodes"].value = 0 + 1_000
    assert dash.result.summary["params"]["nodes"] == 1_000 and dash.seconds > 0


def test_dashboard_initial_switch_and_static_figures():
    from kscale_lab.viz.scheduler import SchedulerDashboard, nodes_to_score_figure, size_figure

    d = SchedulerDashboard(switch="article", nodes=1_000, burst_pods=250)
    assert d.result.summary["params"]["equivalence_classes"] is True
    with pytest.raises(KeyError):
        SchedulerDashboard(warp=9)
    df = pd.DataFrame({"setting": ["off", "off", "upstream", "upstream"], "nodes": [1, 2, 1, 2],
                       "scheduler_pod_scheduling_sli_duration_seconds_p99": [1.0, 2.0, 0.01, 0.01]})
    assert size_figure(df).renderers and nodes_to_score_figure(2_000).renderers


# --------------------------------------------------------------------------- exercises
def test_exercise_checks():
    from kscale_lab.exercises.scheduler import check_burst_needed, check_class_key, check_nodes_to_score, make_pods

    def good(n, pct=0, min_nodes=100, min_percentage=5):
        if n < min_nodes:
            return n
        pct = pct or max(50 - n // 125, min_percentage)
        return max(n * pct // 100, min_nodes)

    assert check_nodes_to_score(good).done
    assert check_nodes_to_score(lambda n, p=0, a=100, b=5: max(n // 20, 100)).status == "not yet right"
    assert check_nodes_to_score(lambda n, p=0, a=100, b=5: None).status == "not done yet"

    def key(pod):
        r = pod["requests"]
        return (r["cpu_m"], r["mem_mib"], frozenset(pod["node_selector"].items()),
                frozenset(pod["required_zones"]), frozenset(pod["tolerations"]), pod["anti_affinity"])

    assert check_class_key(key).done
    assert check_class_key(lambda p: p["name"]).status == "not yet right"          # never shares a class
    assert check_class_key(lambda p: p["requests"]["cpu_m"]).status == "not yet right"  # unsound
    assert "hashable" in check_class_key(lambda p: p["requests"]).detail
    ordered = lambda p: (p["requests"]["cpu_m"], tuple(p["node_selector"].items()), tuple(p["tolerations"]),
                         tuple(p["required_zones"]), p["anti_affinity"], p["requests"]["mem_mib"])
    assert check_class_key(ordered).status == "not yet right"  # field order differs between replicas
    pods = make_pods(50, seed=3)
    assert len({p["name"] for p in pods}) == 50

    # exercise 3 (a derivation) is checked in tests/test_exercises.py
    assert check_burst_needed(None).status == "not done yet"
    assert check_burst_needed("many").status == "not yet right"

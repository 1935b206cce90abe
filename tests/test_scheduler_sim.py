"""The scheduling queue in modelled time: invariants, determinism and cause -> effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kscale_lab.errors import ParameterError
from kscale_lab.scheduler import PARAMS, compare, run
from kscale_lab.scheduler.search import MODES

SMALL = {"nodes": 1_000, "burst_pods": 600, "churn_duration_s": 20.0, "burst_at_s": 5.0}


def test_params_have_units_sources_and_valid_defaults():
    assert len(PARAMS) >= 20
    for p in PARAMS:
        assert p.unit and p.source and p.doc
    table = PARAMS.table()
    assert {"name", "default", "unit", "source"} <= set(table.columns)


@pytest.mark.parametrize("setting", MODES)
def test_per_pod_frame_invariants(setting):
    metrics, frames = run("burst", setting, SMALL)
    pods, nodes = frames["pods"], frames["nodes"]
    assert len(pods) == metrics["pods"] and metrics["unscheduled"] == 0
    ok = pods["node"] >= 0
    assert (pods.loc[ok, "bind_s"] >= pods.loc[ok, "arrival_s"] + pods.loc[ok, "cycle_s"] - 1e-12).all()
    assert (pods["start_s"] >= pods["arrival_s"] - 1e-12).all()
    assert (pods.loc[ok, "queue_wait_s"] >= -1e-9).all()
    # one pod per cycle: cycles never overlap
    single = pods[pods["attempts"] == 1].sort_values("start_s")
    assert (single["start_s"].to_numpy()[1:] >= (single["start_s"] + single["cycle_s"]).to_numpy()[:-1] - 1e-12).all()
    assert (pods.loc[ok, "score_gap"] >= 0).all()
    assert (nodes["cpu_requested_m"] <= nodes["cpu_allocatable_m"]).all()
    assert (nodes["mem_requested_mib"] <= nodes["mem_allocatable_mib"]).all()
    per_plugin = pods[[c for c in pods.columns if c.startswith("evals_")]].sum(axis=1)
    assert (pods["filter_evaluations"] >= per_plugin).all()
    for key in ("scheduler_pod_scheduling_sli_duration_seconds_p50", "scheduler_pod_scheduling_duration_seconds_p99",
                "scheduler_scheduling_attempt_duration_seconds_p99", "scheduler_schedule_attempts_total{result=scheduled}",
                "throughput_pods_per_s", "nodes_evaluated_per_pod", "score_gap_mean", "node_cpu_utilisation_cv"):
        assert np.isfinite(metrics[key]), key


def test_deterministic_for_a_seed_and_seed_matters():
    a_m, a_f = run("burst", "upstream", SMALL)
    b_m, b_f = run("burst", "upstream", SMALL)
    pd.testing.assert_frame_equal(a_f["pods"], b_f["pods"])
    a_m.pop("wall_time_s"), b_m.pop("wall_time_s")
    assert a_m == b_m
    _, c_f = run("burst", "upstream", {**SMALL, "seed": 1})
    assert not a_f["pods"]["node"].equals(c_f["pods"]["node"])


def test_bad_input_is_a_parameter_error():
    with pytest.raises(ParameterError):
        run("burst", "fast")
    with pytest.raises(ParameterError):
        run("no-such-scenario", "off")
    with pytest.raises(ParameterError):
        run("burst", "off", {"nodes": 0})
    with pytest.raises(ParameterError):
        run("burst", "off", {"no_such_param": 1})
    with pytest.raises(ParameterError):
        run("burst", "off", {"percentage_of_nodes_to_score": 101})


def test_off_latency_grows_with_cluster_size():
    """Cause -> effect: an exhaustive search costs O(nodes) per pod, and the queue amplifies it."""
    small, _ = run("burst", "off", {**SMALL, "nodes": 1_000})
    large, _ = run("burst", "off", {**SMALL, "nodes": 4_000})
    assert large["mean_cycle_s"] > 2 * small["mean_cycle_s"]
    assert large["burst_scheduler_pod_scheduling_sli_duration_seconds_p99"] > \
        2 * small["burst_scheduler_pod_scheduling_sli_duration_seconds_p99"]
    assert small["nodes_evaluated_per_pod"] == 1_000 and large["nodes_evaluated_per_pod"] == 4_000


def test_relaxed_search_evaluates_fewer_nodes_and_is_faster_at_scale():
    df = compare("burst", {**SMALL, "nodes": 3_000})
    # 3,000 nodes: numFeasibleNodesToFind = 780 (26 %); selectors and taints make the scan longer
    assert df.loc["upstream", "nodes_evaluated_per_pod"] < 0.4 * df.loc["off", "nodes_evaluated_per_pod"]
    assert df.loc["article", "filter_evaluations_per_pod"] < df.loc["upstream", "filter_evaluations_per_pod"]
    for s in ("article", "upstream"):
        assert df.loc[s, "burst_scheduler_pod_scheduling_sli_duration_seconds_p99"] < \
            df.loc["off", "burst_scheduler_pod_scheduling_sli_duration_seconds_p99"]
        assert df.loc[s, "score_gap_mean"] >= 0
    assert df.loc["off", "score_gap_mean"] == 0  # exhaustive search always finds the best node


def test_equivalence_cache_lookup_cost_can_make_it_slower_for_common_pods():
    """Issue #71013: cached reads cost about as much as cheap predicates; affinity pods still win."""
    common = {**SMALL, "nodes": 3_000, "burst_affinity_share": 0.0, "churn_rate": 0.0}
    df = compare("burst", common, settings=("article", "upstream"))
    assert df.loc["article", "mean_cycle_s"] > df.loc["upstream", "mean_cycle_s"]
    cheap = compare("burst", {**common, "equivalence_read_cost_s": 0.0}, settings=("article", "upstream"))
    assert cheap.loc["article", "mean_cycle_s"] < cheap.loc["upstream", "mean_cycle_s"]
    affinity = compare("burst", {**common, "burst_affinity_share": 1.0, "burst_pods": 400},
                       settings=("article", "upstream"))
    assert affinity.loc["article", "mean_cycle_s"] < affinity.loc["upstream", "mean_cycle_s"]


def test_opportunistic_batching_in_the_queue():
    base = {**SMALL, "burst_affinity_share": 0.0, "churn_rate": 0.0, "burst_creation_rate": 0.0}
    v135, _ = run("burst", "upstream", base)
    assert v135["batched_share"] == 0.0  # small pods: the node is never full, the batch is flushed
    v137, _ = run("burst", "upstream", {**base, "batching_rescore": True})
    assert v137["batched_share"] > 0.9
    assert v137["nodes_evaluated_per_pod"] < 0.1 * v135["nodes_evaluated_per_pod"]
    spread, _ = run("burst", "upstream", {**base, "batching_rescore": True, "pod_topology_spread_defaults": True})
    assert spread["batched_share"] == 0.0
    mixed, _ = run("burst", "upstream", {**base, "batching_rescore": True, "burst_affinity_share": 0.5})
    assert mixed["batched_share"] < 0.5 * v137["batched_share"]  # interleaved unsignable pods break the runs


def test_unschedulable_pods_back_off_and_give_up():
    m, f = run("burst", "upstream", {**SMALL, "burst_pods": 20, "burst_cpu_m": 64_000, "churn_rate": 0.0,
                                     "max_attempts": 3})
    pods = f["pods"]
    assert (pods["node"] == -1).all() and (pods["attempts"] == 3).all()
    assert m["scheduler_schedule_attempts_total{result=unschedulable}"] == 60
    assert m["scheduled"] == 0


def test_churn_deletions_free_resources():
    keep, fk = run("churn", "upstream", {**SMALL, "pod_lifetime_s": 1e6, "churn_duration_s": 60.0})
    short, fs = run("churn", "upstream", {**SMALL, "pod_lifetime_s": 1.0, "churn_duration_s": 60.0})
    assert keep["scheduled"] == short["scheduled"] > 1_000
    assert fs["nodes"]["pods"].sum() < fk["nodes"]["pods"].sum() - 500


def test_default_burst_recomputes_quickly():
    for s in MODES:
        m, _ = run("burst", s)
        assert m["pods"] > 3_000
        # not a timing assertion (see benchmarks/bench_scheduler.py); the run must stay interactive
        assert m["wall_time_s"] < 10


def test_setting_defaults_and_switching_each_idea():
    from kscale_lab.scheduler.sim import SETTING_DEFAULTS, resolve

    assert SETTING_DEFAULTS["off"] == {}
    assert resolve({}, "burst", "article")["equivalence_classes"] is True
    assert resolve({"equivalence_classes": False}, "burst", "article")["equivalence_classes"] is False
    m, _ = run("burst", "article", {**SMALL, "equivalence_classes": False})
    assert m["cache_reads_per_pod"] == 0 and m["nodes_evaluated_per_pod"] < SMALL["nodes"]
    m, _ = run("burst", "off", {**SMALL, "equivalence_classes": True})
    assert m["cache_reads_per_pod"] == SMALL["nodes"] and m["best_score_share"] == 1.0
    assert m["pod_classes"] >= 2


def test_node_cost_factor_scales_per_node_work_and_calibrates():
    from kscale_lab.scheduler.sim import calibrate_node_cost_factor, cycle_seconds

    c1 = cycle_seconds("off", 2_000)
    c2 = cycle_seconds("off", 2_000, {"node_cost_factor": 2.0})
    c3 = cycle_seconds("off", 2_000, {"node_cost_factor": 3.0})
    assert c2 > c1 and np.isclose(c3 - c2, c2 - c1)  # linear in the factor, the per-cycle overhead apart
    f = calibrate_node_cost_factor(0.010, nodes=2_000)
    assert np.isclose(cycle_seconds("off", 2_000, {"node_cost_factor": f}), 0.010, rtol=1e-6)
    with pytest.raises(ParameterError):
        calibrate_node_cost_factor(0.0)


def test_time_series_counts_every_pod_once():
    from kscale_lab.scheduler.sim import time_series

    m, f = run("burst", "off", {**SMALL, "nodes": 2_000})
    pods = f["pods"]
    for bin_s in (0.25, 1.0, 7.0):
        ts = time_series(pods, bin_s)
        assert int(round((ts["pods_bound_per_s"] * bin_s).sum())) == m["scheduled"]
        assert (ts["scheduler_pending_pods"] >= 0).all() and ts["scheduler_pending_pods"].iloc[-1] == 0
        assert np.nanmax(ts["scheduler_pod_scheduling_sli_duration_seconds_p99"]) <= pods["latency_s"].max() + 1e-12
    with pytest.raises(ParameterError):
        time_series(pods, 0.0)

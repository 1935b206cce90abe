"""The capstone: input, the scorecard, and one model in two zooms (each part against its lab)."""

import math

import numpy as np
import pytest

from kscale_lab.cli import main
from kscale_lab.errors import ParameterError, ScenarioTooLarge
from kscale_lab.labs.capstone import LAB, SLOS

SMALL = {"nodes": 2000, "duration": 600.0, "scaleup_at": 60.0, "apiserver_upgrade_at": 120.0,
         "incidents": "scaleup,apiserver_upgrade,probes"}


@pytest.fixture(scope="module")
def article():
    return LAB.run("article", SMALL)


@pytest.mark.parametrize("over, name", [
    ({"incidents": "scaleup,meteor"}, "incidents"),
    ({"scaleup_at": 9999.0, "incidents": "scaleup"}, "scaleup_at"),
    ({"freelist": "fast"}, "freelist"),
    ({"etcd_free_fraction": 1.5}, "etcd_free_fraction"),
])
def test_bad_input_names_it(over, name):
    with pytest.raises(ParameterError) as e:
        LAB.run("article", dict(SMALL, **over))
    assert f"'{name}'" in str(e.value)


def test_cli_refuses_a_setting_that_does_not_exist(capsys):
    assert main(["run", "capstone", "--switch", "freelist=turbo"]) == 2
    assert "freelist" in capsys.readouterr().err


def test_100k_nodes_are_refused_with_an_estimate():
    with pytest.raises(ScenarioTooLarge) as e:
        LAB.run("article", {"nodes": 100_000})
    assert "KSCALE_LAB_MEMORY_LIMIT_GIB" in str(e.value) and "GiB" in str(e.value)


def test_switches_follow_the_setting_unless_set(article):
    assert set(article.summary["switches"].values()) == {"article"}
    one = LAB.switches_for("article", dict(LAB.resolve("article", {"scheduler": "off"})))
    assert one["scheduler"] == "off" and one["freelist"] == "article"


def test_every_slo_is_scored(article):
    for slo in SLOS:
        assert slo.sli in article.summary
    assert article.summary["slos_broken"] == len(article.summary["slo_breaks"])


def test_same_seed_same_day():
    a, b = LAB.run("off", SMALL), LAB.run("off", SMALL)
    assert a.summary["slo_breaks"] == b.summary["slo_breaks"]
    assert a.timeline.equals(b.timeline)


def test_composition_couples_etcd_and_heartbeats():
    """Neither the array freelist nor Node-status heartbeats alone saturate etcd at 40 GB;
    together they do, and the kubelets' heartbeats time out (composition, not a sum)."""
    big = dict(SMALL, nodes=10_000, duration=120.0, incidents="none")
    both = LAB.run("article", dict(big, freelist="off", heartbeats="off")).summary
    one = LAB.run("article", dict(big, freelist="off")).summary
    assert both["etcd_put_latency_mean_max_s"] > 10 * one["etcd_put_latency_mean_max_s"]
    assert both["nodes_ever_notready"] > one["nodes_ever_notready"]


# --- two zooms: each coupling against its lab ----------------------------------------------------
def test_zoom_scheduler_latency_is_the_scheduler_labs(article):
    from kscale_lab.labs.scheduler import LAB as SCHED

    lab = SCHED.run("article", {"nodes": 2000, "burst_pods": 3000}).summary
    want = lab["burst_scheduler_pod_scheduling_sli_duration_seconds_p99"]
    assert article.summary["scheduling_latency_p99_s"] == pytest.approx(want, rel=1e-9)
    assert article.summary["pod_startup_latency_p99_s"] >= want      # + bind + kubelet


def test_zoom_upgrade_imbalance_matches_the_lb_lab():
    from kscale_lab.labs.apiserver_lb import LAB as LB

    o = {"nodes": 2000, "duration": 600.0, "rollout_at": 120.0, "restart_count": 0, "heartbeats_setting": "article"}
    lab = LB.run("off", o).summary["upgrade_cpu_imbalance"]
    cap = LAB.run("article", dict(SMALL, apiserver_lb="off", incidents="apiserver_upgrade")).summary
    assert cap["apiserver_upgrade_cpu_imbalance"] == pytest.approx(lab, rel=0.15)


def test_zoom_heartbeat_write_rate_matches_the_heartbeat_lab():
    from kscale_lab.labs.heartbeats import LAB as HB

    for hb in ("off", "article"):
        lab = HB.run(hb, {"nodes": 2000, "duration": 300.0, "quota_backend_bytes": 1024**4}).summary
        cap = LAB.run("article", dict(SMALL, heartbeats=hb, incidents="none", duration=300.0)).summary
        # the capstone's writes also hold EndpointSlices and Events, which the heartbeat lab leaves out
        assert cap["etcd_mvcc_put_per_s"] >= lab["etcd_revisions_per_s"] * 0.95
        assert cap["etcd_mvcc_put_per_s"] <= lab["etcd_revisions_per_s"] * 1.6


def test_zoom_etcd_commit_time_matches_the_storage_lab():
    """The same freelist law at the same db size: the capstone's commit time is the etcd-storage
    lab's within 25 % (the write mixes differ a little: the capstone also writes EndpointSlices)."""
    from kscale_lab.labs.etcd_storage import LAB as ES

    for fl, kind in (("off", "array"), ("article", "map")):
        lab = ES.run("article", {"nodes": 10_000, "db_size_bytes": 20 * 10**9, "backend_bbolt_freelist_type": kind,
                                 "duration": 120.0, "quota_backend_bytes": 100 * 2**30}).summary
        cap = LAB.run("article", dict(SMALL, nodes=10_000, freelist=fl, incidents="none", duration=120.0,
                                      etcd_db_bytes=20 * 10**9)).summary
        want = lab["etcd_disk_backend_commit_duration_seconds_max"]
        assert cap["etcd_disk_backend_commit_duration_seconds_max"] == pytest.approx(want, rel=0.25)


def test_zoom_probes_cost_what_the_cached_reads_lab_says(article):
    from kscale_lab.labs.cached_reads import LAB as CR

    lab = CR.run("article", {"nodes": 2000, "pods": 40_000, "seed": 0}).summary
    assert article.summary["describe_node_unloaded_s"] == pytest.approx(lab["describe_node_seconds"])
    assert article.summary["describe_node_p99_s"] >= lab["describe_node_seconds"]


def test_scorecard_rows_and_claims_are_computed():
    card = LAB.scorecard({"nodes": 1000, "duration": 300.0, "scaleup_at": 60.0, "apiserver_upgrade_at": 120.0,
                          "incidents": "scaleup,apiserver_upgrade"}, workers=1, progress=False)
    assert len(card) == 12 and {"all off", "all article", "article, scheduler off"} <= set(card.index)
    assert (card["slos_broken"] >= 0).all()
    broken = card[card.slos_broken > 0]
    assert broken["chain"].str.contains("breaks").all()


def test_zoom_controller_failover_matches_the_hot_standby_lab():
    """The capstone's kube-controller-manager crash gives the hot-standby lab's interruption (the
    same component on the same core; the lease timing sets it)."""
    from kscale_lab.labs.hot_standby import LAB as HS

    for setting in ("off", "article"):
        lab = HS.run(setting, {"nodes": 2000, "duration": 300.0, "upgrade_at": 9999.0, "crash_at": 120.0,
                               "crash_components": "kube-controller-manager"}).summary["kcm_crash_interruption_s"]
        cap = LAB.run(setting, dict(SMALL, duration=300.0, kcm_crash_at=120.0, incidents="kcm_crash"))
        fo = cap.failovers
        got = float(fo.loc[fo.event == "controller crash", "interruption_s"].iloc[0])
        assert got == pytest.approx(lab, rel=0.3, abs=3.0)


def test_zoom_daemonset_storm_crashes_like_the_flow_control_lab_without_protection():
    """The buggy DaemonSet with only max-inflight: the capstone's OOM kills are the flow-control
    lab's within a third (the same components; the capstone adds the rest of the day's load)."""
    from kscale_lab.labs.flow_control import LAB as FC

    lab = FC.run("off", {"incident": "daemonset", "ds_start": 600.0, "duration": 1200.0}).summary["ds_crashes"]
    cap = LAB.run("off", {"incidents": "daemonset", "duration": 1200.0}).summary["apiserver_crashes"]
    assert lab > 0 and cap == pytest.approx(lab, rel=0.34)


def test_zoom_daemonset_under_apf_does_not_crash_like_the_flow_control_lab():
    """With API Priority and Fairness the DaemonSet's LISTs queue or get 429 and no API server
    is OOM-killed, as in the flow-control lab: the request path's retries go through APF too."""
    from kscale_lab.labs.flow_control import LAB as FC

    lab = FC.run("upstream", {"incident": "daemonset", "ds_start": 600.0, "duration": 1200.0}).summary["ds_crashes"]
    cap = LAB.run("off", {"incidents": "daemonset", "duration": 1200.0, "flow_control": "upstream"}).summary
    assert lab == 0 and cap["apiserver_crashes"] == 0 and cap["memory_peak_share"] < 1.0


def test_zoom_request_path_keeps_or_cancels_like_the_context_lab():
    """A slow webhook: without cancellation the server keeps abandoned requests (they time out,
    none is cancelled); with the article's context propagation they are cancelled, as in the lab."""
    o = {"incidents": "webhook", "duration": 1200.0}
    off = LAB.run("off", dict(o, context_cancel="off")).summary
    art = LAB.run("off", dict(o, context_cancel="article")).summary
    assert off["requests_cancelled"] == 0 and off["requests_timed_out"] > 0
    assert art["requests_cancelled"] > 0 and art["requests_timed_out"] < off["requests_timed_out"]


def test_zoom_bookmarks_cost_per_resumed_watch_is_the_bookmarks_labs():
    from kscale_lab.composition import bookmark_costs

    p = LAB.resolve("article", SMALL)
    per = {s: bookmark_costs(s, p)[0] for s in ("off", "article", "upstream")}
    assert per["off"] > per["article"] > per["upstream"] > 0       # the bookmarks lab's order
    r = LAB.run("article", dict(SMALL, bookmarks="off", incidents="apiserver_upgrade"))
    assert r.summary["apiserver_upgrade_ended_at_s"] > 0

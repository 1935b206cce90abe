"""The hot-standby lab: input, mechanisms on the core, causes moving effects, claims, dashboard, exercises."""

import math

import numpy as np
import pytest

from kscale_lab.claims import load_claims
from kscale_lab.cli import main
from kscale_lab.clients.informers import (INFORMER_PARAMS, controller_manager_resources, scheduler_resources,
                                          warm_up)
from kscale_lab.errors import ParameterError
from kscale_lab.labs.hot_standby import LAB

SMALL = {"nodes": 1000, "duration": 700.0, "upgrade_at": 60.0, "crash_at": 450.0}
RP, LD = 2.0, 15.0


@pytest.fixture(scope="module")
def runs():
    return {s: LAB.run(s, SMALL) for s in LAB.settings}


@pytest.mark.parametrize("over, name", [
    ({"leader_elect_renew_deadline": 15.0}, "leader_elect_renew_deadline"),
    ({"leader_elect_renew_deadline": 20.0}, "leader_elect_renew_deadline"),
    ({"leader_elect_retry_period": 9.0}, "leader_elect_retry_period"),
    ({"clock_skew": -0.1}, "clock_skew"),
    ({"crash_components": "etcd"}, "crash_components"),
    ({"controller_replicas": 0}, "controller_replicas"),
    ({"informer_list_source": "disk"}, "informer_list_source"),
    ({"objects": 1000}, "objects"),
])
def test_bad_input_names_the_parameter(over, name):
    with pytest.raises(ParameterError) as e:
        LAB.run("article", dict(SMALL, **over))
    assert f"'{name}'" in str(e.value) and "\n" not in str(e.value)


def test_cli_refuses_in_one_line(capsys):
    assert main(["run", "hot-standby", "--set", "leader_elect_renew_deadline=20"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "leaseDuration must be greater than renewDeadline" in err[0]


def test_released_lease_changes_hands_at_the_next_try_a_kept_one_after_it_expires(runs):
    art, off = runs["article"].failovers, runs["off"].failovers
    up = art[art.event == "upgrade"]
    assert len(up) >= 2 and up.released.all() and up.new_was_warm.all()
    assert (up.lease_taken_s <= (1 + 1.2) * RP + 0.2).all()
    assert (up.warmup_s == 0).all()
    assert not off.released.any() and not off.new_was_warm.any()
    assert (off.lease_taken_s > LD - 2 * 2.2 * RP).all()
    crash = art[art.event == "crash"]
    assert (crash.lease_taken_s > LD - 2 * 2.2 * RP).all() and (crash.lease_taken_s < LD + 2 * 2.2 * RP + 0.2).all()


def test_a_cold_leader_works_only_after_its_warm_up(runs):
    fo = runs["off"].failovers
    p = runs["off"].summary["params"]
    expect = fo.lease_taken_s + fo.warmup_s + p["first_work_item_seconds"]
    assert np.allclose(fo.interruption_s, expect)
    assert (fo.warmup_s > 0).all()


def test_upstream_is_two_rows_a_warm_releasing_scheduler_and_a_cold_controller_manager(runs):
    fo, sm = runs["upstream"].failovers, runs["upstream"].summary
    sched, kcm = fo[fo.component == "kube-scheduler"], fo[fo.component == "kube-controller-manager"]
    assert sm["scheduler_warm_standby"] == 1 and sm["scheduler_releases_lease"] == 1
    assert sm["kcm_warm_standby"] == 0 and sm["kcm_releases_lease"] == 0
    assert sched[sched.event == "upgrade"].released.all() and not kcm.released.any()
    gate = LAB.run("upstream", dict(SMALL, kcm_release_on_exit=True)).failovers
    k = gate[(gate.component == "kube-controller-manager") & (gate.event == "upgrade")]
    assert k.released.all() and (k.lease_taken_s < (1 + 1.2) * RP + 0.2).all() and (k.warmup_s > 0).all()


def test_never_two_leaders_and_runs_are_deterministic(runs):
    for r in runs.values():
        assert r.summary["two_leaders_s"] == 0.0
    again = LAB.run("article", SMALL)
    assert again.failovers.equals(runs["article"].failovers)
    other = LAB.run("article", dict(SMALL, seed=7))
    assert not np.allclose(other.failovers.lease_taken_s.to_numpy()[:2],
                           runs["article"].failovers.lease_taken_s.to_numpy()[:2])


def test_more_objects_lengthen_the_cold_failover_not_the_warm_one():
    base_off = LAB.run("off", dict(SMALL, upgrade_at=1e4)).summary
    big_off = LAB.run("off", dict(SMALL, upgrade_at=1e4, pods=80_000, objects=400_000)).summary
    assert big_off["kcm_warmup_s"] > 2 * base_off["kcm_warmup_s"]
    assert big_off["kcm_crash_interruption_s"] > base_off["kcm_crash_interruption_s"] + base_off["kcm_warmup_s"]
    base_art = LAB.run("article", dict(SMALL, upgrade_at=1e4)).failovers
    big_art = LAB.run("article", dict(SMALL, upgrade_at=1e4, pods=80_000, objects=400_000)).failovers
    assert (big_art.warmup_s == 0).all() and (base_art.warmup_s == 0).all()


def test_the_lease_duration_sets_the_crash_failover():
    short = LAB.run("article", dict(SMALL, upgrade_at=1e4, leader_elect_lease_duration=8.0,
                                    leader_elect_renew_deadline=5.0, leader_elect_retry_period=1.0)).summary
    long_ = LAB.run("article", dict(SMALL, upgrade_at=1e4, leader_elect_lease_duration=40.0,
                                    leader_elect_renew_deadline=26.0, leader_elect_retry_period=5.0)).summary
    assert 8.0 - 2 * 2.2 < short["kcm_crash_lease_taken_s"] < 8.0 + 2 * 2.2 + 0.2
    assert 40.0 - 2 * 11 < long_["kcm_crash_lease_taken_s"] < 40.0 + 2 * 11 + 0.2


def test_warm_standbys_hold_the_objects_and_their_watches(runs):
    art, off = runs["article"].summary, runs["off"].summary
    p = art["params"]
    kcm_bytes = sum(r.nbytes for r in controller_manager_resources(p))
    sched_bytes = sum(r.nbytes for r in scheduler_resources(p))
    assert art["kcm_standby_memory_bytes"] == pytest.approx(kcm_bytes * p["object_memory_factor"])
    assert art["standby_memory_bytes"] == pytest.approx(2 * (kcm_bytes + sched_bytes) * p["object_memory_factor"])
    assert off["standby_memory_bytes"] == 0 and off["standby_watch_cores"] == 0
    assert art["standby_watch_cores"] > 0


def test_the_warm_up_lists_load_the_api_server_the_replica_is_connected_to(runs):
    r = runs["off"]
    lst = r.lists
    assert len(lst) and (lst.source == "watch-cache").all()
    first = lst.iloc[0]
    inst = r.instances
    t = int(math.floor(first.time)) + 1
    during = inst[(inst.time == t)].set_index("instance").demand_util
    before = inst[(inst.time == 30)].set_index("instance").demand_util
    rise = during - before
    assert rise.idxmax() == first.instance and rise.max() > 0
    assert r.summary["list_apiserver_cpu_s_crash"] == pytest.approx(r.summary["list_apiserver_cpu_s_waited_crash"])


def test_lists_from_etcd_are_paged_rate_limited_and_cost_etcd():
    p = LAB.resolve("off")
    res = controller_manager_resources(p)
    cache = warm_up(res, p, source="watch-cache", qps=100, burst=100)
    etcd = warm_up(res, p, source="etcd", qps=100, burst=100)
    slow = warm_up(res, p, source="etcd", qps=20, burst=30)
    assert cache.requests == len(res) and etcd.requests > 1000
    assert etcd.seconds > cache.seconds and etcd.etcd_cpu > 0 == cache.etcd_cpu
    assert slow.bound == "rate limit" and slow.seconds == pytest.approx((etcd.requests - 30) / 20.0)
    assert etcd.apiserver_cpu > 3 * cache.apiserver_cpu
    r = LAB.run("off", dict(SMALL, upgrade_at=1e4, informer_list_source="etcd")).summary
    assert r["list_etcd_cpu_s_crash"] > 0


def test_warm_up_follows_its_counts_and_costs():
    p = {**LAB.resolve("off")}
    res = controller_manager_resources(p)
    assert sum(r.objects for r in res) == p["objects"]
    a = warm_up(res, p)
    b = warm_up(res, dict(p, informer_object_cpu=4 * p["informer_object_cpu"]))
    assert b.seconds > a.seconds and b.client_cpu > a.client_cpu
    assert a.bound == "longest type" and a.seconds == pytest.approx(a.by_type["pods"])
    c = warm_up(res, dict(p, controller_cores=0.5))
    assert c.bound == "client cores"
    assert a.client_memory == pytest.approx(a.bytes * p["object_memory_factor"])
    assert "informer_object_cpu" in INFORMER_PARAMS


def test_backlogs_grow_while_nobody_works(runs):
    only = LAB.run("off", dict(SMALL, upgrade_at=1e4, crash_components="kube-scheduler"))
    sm, fo = only.summary, only.failovers
    gap = float(fo[fo.component == "kube-scheduler"].interruption_s.iloc[0])
    churn = sm["params"]["pod_churn"]
    assert churn * (gap - 2) <= sm["pending_pods_peak_crash"] <= churn * (gap + 2)
    assert sm["nodes_not_health_checked_peak_crash"] == 0        # kube-controller-manager kept working
    both = runs["off"].summary
    assert both["nodes_not_health_checked_peak_crash"] == SMALL["nodes"]
    assert both["replicasets_not_reconciled_peak_crash"] > 0
    s = runs["off"].series
    assert s["scheduler_pending_pods"].iloc[-1] < churn         # worked off by the end


def test_lease_requests_are_requests_on_the_core(runs):
    sm = runs["article"].summary
    assert sm["leader_election_latency_p50_s"] >= 0.0007 * 0.99      # at least a quorum read (etcd docs: 0.7 ms)
    busy = LAB.run("article", dict(SMALL, upgrade_at=1e4, crash_at=1e4, apiserver_cores=0.6)).summary
    assert busy["leader_election_latency_p99_s"] > sm["leader_election_latency_p99_s"]


def test_claims_are_computed_and_move_with_their_causes():
    ids = {c.claim for c in load_claims("hot-standby")}
    assert ids == set(LAB.CLAIMS)
    base = LAB.claims(overrides=SMALL, only=["crash_interruption_article_s", "upgrade_interruption_off_s"])
    long_ = LAB.claims(overrides=dict(SMALL, leader_elect_lease_duration=30.0, leader_elect_renew_deadline=20.0,
                                      handover_samples=40), only=["crash_interruption_article_s"])
    assert long_["crash_interruption_article_s"] > base["crash_interruption_article_s"] + 8
    big = LAB.claims(overrides=dict(SMALL, informer_object_cpu=200e-6), only=["upgrade_interruption_off_s"])
    assert big["upgrade_interruption_off_s"] > base["upgrade_interruption_off_s"]


def test_dashboard_toggles_and_zooms():
    from kscale_lab.viz.hot_standby import HotStandbyDashboard

    d = HotStandbyDashboard(fixed=SMALL)
    roles_off = list(d.sources["roles"].data["role"])
    assert "leader (warming)" in roles_off
    d.controls["switch"].value = "article"
    assert d.result.setting == "article" and "leader (warming)" not in list(d.sources["roles"].data["role"])
    assert "warm, releases" in d.summary.value
    d.controls["show"].value = "the crash"
    assert d.figures[0].x_range.start == pytest.approx(d.result.summary["params"]["crash_at"] / 60 - 0.25)
    seconds = d.seconds
    d.controls["lease"].value = 5.0                    # below the renew deadline: refused in one line
    assert "must be less than" in d.status.value and d.result.setting == "article"
    d.controls["lease"].value = 15.0
    d.controls["switch"].value = "off"
    assert d.result.setting == "off" and seconds > 0


def test_exercise_checkers_accept_the_rule_and_refuse_the_usual_mistakes():
    from kscale_lab.exercises.hot_standby import check_acquire_rule, check_safe_skew, check_worst_takeover, hint

    def right(rec, obs, now, me):
        return rec["holder"] in ("", me) or not (obs + rec["lease_duration_seconds"] > now)

    def renew_time(rec, obs, now, me):          # trusts the holder's clock
        return rec["holder"] in ("", me) or rec["renew_time"] + rec["lease_duration_seconds"] <= now

    def strict(rec, obs, now, me):              # misses the expiry edge
        return rec["holder"] in ("", me) or obs + rec["lease_duration_seconds"] < now

    def never_empty(rec, obs, now, me):         # ignores a released lease
        return rec["holder"] == me or not (obs + rec["lease_duration_seconds"] > now)

    assert check_acquire_rule(right).done
    for wrong in (renew_time, strict, never_empty):
        assert check_acquire_rule(wrong).status == "not yet right"
    assert check_acquire_rule(lambda *a: None).status == "not done yet"
    assert check_worst_takeover(lambda ld, rd, rp: ld + 4.4 * rp).done
    for wrong in (lambda ld, rd, rp: ld + 2.2 * rp, lambda ld, rd, rp: ld + rd, lambda ld, rd, rp: 23.8):
        v = check_worst_takeover(wrong)
        assert v.status == "not yet right" and "23.8" not in v.detail
    assert check_safe_skew(lambda ld, rd, rp: ld / (rd + rp) - 1).done
    for wrong in (lambda ld, rd, rp: ld / rd - 1, lambda ld, rd, rp: 0.25):
        v = check_safe_skew(wrong)
        assert v.status == "not yet right" and "0.25" not in v.detail
    assert hint(2, 1) != hint(2, 3)
    from kscale_lab.clients.leaderelection import crash_failover_bound, max_safe_clock_skew
    alias = max_safe_clock_skew
    assert "lab's own answer" in check_safe_skew(lambda ld, rd, rp: alias(ld, rd, rp)).detail
    assert "lab's own answer" in check_worst_takeover(lambda ld, rd, rp: crash_failover_bound(ld, rp) + 2.2 * rp).detail

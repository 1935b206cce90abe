"""The flow-control lab: input, the re-list mechanisms, the DaemonSet, APF on the core, claims, dashboard."""

import math

import numpy as np
import pytest

from kscale_lab.apiserver.instances import READY
from kscale_lab.apiserver.relists import relist_profiles
from kscale_lab.claims import load_claims
from kscale_lab.cli import main
from kscale_lab.clients.workload import build_workload
from kscale_lab.costs import COST_PARAMS, Costs
from kscale_lab.errors import ParameterError
from kscale_lab.labs.flow_control import LAB, recovery_time

SMALL = {"nodes": 1000, "duration": 700.0, "restart_at": 100.0, "ds_start": 400.0, "incident": "both"}
RESTART = dict(SMALL, incident="restart", duration=400.0)


@pytest.fixture(scope="module")
def runs():
    return {s: LAB.run(s, SMALL) for s in LAB.settings}


@pytest.mark.parametrize("over, name", [
    ({"apf_shares": "workload-lowest=5"}, "apf_shares"),
    ({"apf_shares": ",".join(f"{n}=0" for n in ("system", "node-high", "leader-election", "workload-high",
                                                "workload-low", "global-default", "catch-all"))}, "apf_shares"),
    ({"apf_shares": "workload-low=many"}, "apf_shares"),
    ({"operator_reaction_s": -1}, "operator_reaction_s"),
    ({"apf_hand_size": 20}, "apf_hand_size"),
    ({"incident": "flood"}, "incident"),
    ({"tick": 16.0}, "tick"),
])
def test_bad_input_names_the_parameter(over, name):
    with pytest.raises(ParameterError) as e:
        LAB.run("upstream", dict(SMALL, **over))
    assert f"'{name}'" in str(e.value)


def test_cli_refuses_in_one_line(capsys):
    assert main(["run", "flow-control", "--set", "apf_hand_size=20"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "apf_hand_size" in err[0] and "leader-election" in err[0]


# -- the restart ---------------------------------------------------------------------------------

def test_lists_fall_through_to_etcd_only_before_the_cache_is_ready(runs):
    off, art = runs["off"].summary, runs["article"].summary
    assert off["restart_relists_from_etcd"] > 0 and off["etcd_bytes_read_total"] > 0
    assert art["restart_relists_from_etcd"] == 0 and art["etcd_bytes_read_total"] == 0
    assert art["relists_rejected_total"] > 0                     # 429 until ready, then served
    assert art["relists_done_total"] >= 0.99 * art["relists_started_total"]


def test_etcd_served_lists_are_bounded_by_the_read_slots():
    a = LAB.run("off", RESTART).summary["restart_relists_from_etcd"]
    b = LAB.run("off", dict(RESTART, max_requests_inflight=800)).summary["restart_relists_from_etcd"]
    assert 1.6 * a < b < 2.4 * a


def test_a_health_checked_load_balancer_keeps_lists_off_an_empty_cache():
    s = LAB.run("off", dict(RESTART, lb_policy="round-robin")).summary
    assert s["restart_relists_from_etcd"] == 0


def test_the_post_start_hook_keeps_readyz_false_until_the_caches_are_filled():
    r = LAB.run("upstream", dict(RESTART, watch_cache_init_post_start_hook=True))
    inst = r.cp.inst
    assert (inst.ready_at == inst.cache_at).all()
    assert r.summary["restart_relists_from_etcd"] == 0


def test_a_kubelets_list_from_etcd_reads_every_pod():
    def prof(pods):
        p = LAB.resolve("off", {"nodes": 1000, "pods": pods})
        costs = Costs.from_params({k: v for k, v in p.items() if k in COST_PARAMS})
        w = build_workload(p, costs, "article")
        return relist_profiles(w, p, costs)[0]

    a, b = prof(20_000), prof(40_000)
    assert a.etcd_ranges == math.ceil(20_000 / 500) + 1           # pages of 500, plus the node
    assert b.etcd_bytes == pytest.approx(2 * a.etcd_bytes, rel=0.01)
    assert a.cache_bytes < a.etcd_bytes / 100                     # the cache sends only its node's pods


def test_the_cache_fill_waits_for_the_shared_resources():
    slow = LAB.run("off", dict(RESTART, etcd_cores=0.5)).cp.inst
    fast = LAB.run("off", RESTART).cp.inst
    assert (slow.cache_at - slow.accept_at).min() > (fast.cache_at - fast.accept_at).max()


def test_recovery_time():
    t = np.arange(10.0)
    assert recovery_time(t, np.array([0, 0, 1, 1, 0, 1, 1, 1, 1, 1], bool), 0.0) == 5.0
    assert math.isinf(recovery_time(t, np.array([1] * 9 + [0], bool), 0.0))


# -- the DaemonSet -------------------------------------------------------------------------------

def test_the_user_agent_limit_acts_only_once_configured():
    o = dict(SMALL, incident="daemonset", ds_start=100.0, duration=500.0, ds_list_period=30.0)
    early = LAB.run("article", dict(o, operator_reaction_s=0.0)).summary
    never = LAB.run("article", dict(o, operator_reaction_s=5000.0)).summary
    assert early["ds_lists_served_per_s"] < 0.5 * never["ds_lists_served_per_s"]
    assert early["ua_limit_rejected_total"] > 0 and never["ua_limit_rejected_total"] == 0


def test_apf_bounds_the_daemonsets_concurrency_by_its_levels_seats():
    r = LAB.run("upstream", dict(SMALL, incident="daemonset", ds_start=100.0, duration=400.0, ds_list_period=5.0))
    apf = r.parts["apf"]
    low = [lv.name for lv in apf.levels].index("workload-low")
    n = r.cp._i
    assert (apf.rec_seats[:n, :, low] <= apf.rec_limit[:n, :, low] + 1e-6).all()
    assert r.summary["apf_rejected_workload_low"] > 0
    assert r.summary["apf_rejected_node_high"] == 0
    assert r.summary["ds_lease_success_share"] > 0.99


def test_apf_classifies_the_daemonset_as_one_flow(runs):
    apf = runs["upstream"].parts["apf"]
    g = {x.name: x for x in apf.groups}
    assert g["buggy-daemonset/service-accounts"].flows == 1
    assert g["kubelet/system-node-high"].flows == SMALL["nodes"]
    assert apf.levels[g["kube-proxy/kube-system-service-accounts"].level].name == "workload-high"


def test_runs_are_deterministic():
    a = LAB.run("upstream", RESTART).summary
    b = LAB.run("upstream", RESTART).summary
    assert {k: v for k, v in a.items() if k != "params"} == {k: v for k, v in b.items() if k != "params"}


# -- claims, guesses, dashboard, exercises --------------------------------------------------------

def test_claims_are_computed_for_every_row():
    rows = {c.claim for c in load_claims("flow-control")}
    assert set(LAB.CLAIM_RUNS) == rows
    only = ["restart_recovery_article_s", "ds_crashes_upstream"]
    got = LAB.claims(overrides={"nodes": 1000, "duration": 700.0, "restart_at": 100.0, "ds_start": 300.0},
                     only=only)
    assert set(got) == set(only) and all(isinstance(v, float) for v in got.values())


def test_guess_questions_are_computed_by_the_model():
    from kscale_lab.exercises.guesses import questions

    keys = {q.key for q in questions("flow-control")}
    assert keys == {"restart_crashes_off", "etcd_gb_per_s_during_fill_off", "busiest_resource_article",
                    "lease_success_ds_upstream"}


def test_dashboard_recomputes_fills_and_remembers():
    from kscale_lab.viz.flow_control import FlowControlDashboard

    d = FlowControlDashboard()
    assert len(d.sources["inst"].data["t"]) == len(d.result.series)
    assert np.nanmax(np.asarray(d.sources["inst"].data["mem0"], dtype=float)) > 0
    d.controls["switch"].value = "upstream"
    assert d.result.setting == "upstream"
    first = d.result
    d.controls["switch"].value = "off"
    d.controls["switch"].value = "upstream"
    assert d.result is first


def test_exercise_checkers_accept_the_algorithms_and_reject_shortcuts():
    from kscale_lab.apiserver.apf import deal_hand, waterfill
    from kscale_lab.exercises.flow_control import check_deal, check_fair_share, check_seats, hint

    assert check_deal(lambda h, q, n: [int(x) for x in deal_hand(h, q, n)]).status == "not yet right"
    assert check_deal(lambda h, q, n: list(range(n))).status == "not yet right"
    assert check_deal(lambda h, q, n: None).status == "not done yet"
    assert check_fair_share(lambda d, s: [s / len(d)] * len(d)).status == "not yet right"
    assert check_fair_share(lambda d, s: waterfill(np.zeros((1, len(d))), np.array([d]), np.ones(len(d)),
                                                   np.array([s]))).status == "not yet right"
    assert check_seats(lambda a, b, c, d: (a * b[c] // sum(b.values()), 10, 1)).status == "not yet right"
    assert check_seats(lambda a, b, c, d: None).status == "not done yet"
    assert hint(1, 1) and hint(3, 3) != hint(3, 1)


# -- the core's new hooks ----------------------------------------------------------------------------

def test_ready_before_cache_and_the_relist_hand_over():
    r = LAB.run("off", RESTART)
    inst, flood = r.cp.inst, r.parts["flood"]
    assert (inst.ready_at < inst.cache_at).all()                  # /readyz said yes before the caches
    assert (inst.state == READY).all()
    assert r.summary["relists_total"] == 0                        # the core served none itself
    assert flood.started_total.sum() > 0.9 * 2 * RESTART["nodes"]


def test_apf_replaces_max_inflight():
    r = LAB.run("upstream", RESTART)
    assert r.cp._own_inflight and r.parts["apf"].server_cl == 600

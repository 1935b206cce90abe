"""The heartbeat lab: results come from the mechanisms and move with their causes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kscale_lab.clients.kubelet import MAX_RETRIES, Loop
from kscale_lab.clients.nodelifecycle import NodeLifecycleController

SMALL = {"nodes": 500, "duration": 120.0, "pod_churn": 0.0, "other_requests": 0.0, "quota_backend_bytes": 1024**4}


def wal(lab, setting, **o):
    return lab.run(setting, dict(SMALL, **o)).summary["etcd_wal_bytes_per_min"]


def test_write_rate_moves_with_object_size_and_interval(hb_lab):
    base = wal(hb_lab, "off")
    half = wal(hb_lab, "off", node_object_bytes=7_500.0)
    slower = wal(hb_lab, "off", node_status_update_frequency=20.0)
    overhead = hb_lab.params["etcd_wal_entry_overhead"].default
    assert half / base == pytest.approx((7_500 + overhead) / (15_000 + overhead), rel=0.02)
    assert slower / base == pytest.approx(0.5, rel=0.05)


def test_lease_cuts_bytes_not_writes(hb_lab):
    o = dict(SMALL, nodes=2000)
    off, art = hb_lab.run("off", o).summary, hb_lab.run("article", o).summary
    assert art["etcd_revisions_per_s"] >= off["etcd_revisions_per_s"]       # more requests ...
    assert art["etcd_wal_bytes_per_min"] < off["etcd_wal_bytes_per_min"] / 3  # ... far fewer bytes
    assert art["apiserver_cpu_cores_mean"] < off["apiserver_cpu_cores_mean"]


@pytest.mark.parametrize("setting", ["off", "article", "upstream"])
def test_closed_form_agrees_with_the_event_level_model(hb_lab, setting):
    o = {"quota_backend_bytes": 1024**4, "duration": 600.0}
    run = hb_lab.run(setting, o).summary
    ss = hb_lab.steady_state(setting, o)
    assert run["etcd_wal_bytes_per_min"] == pytest.approx(ss.wal_bytes_per_s * 60, rel=0.05)
    assert run["apiserver_cpu_heartbeat_share"] == pytest.approx(ss.heartbeat_cpu_share, abs=0.03)
    assert run["etcd_db_size_max_bytes"] == pytest.approx(ss.peak_db_bytes, rel=0.05)
    assert run["nodes_ever_notready"] == 0


def test_nospace_fires_when_history_outgrows_the_quota(hb_lab):
    r = hb_lab.run("off", {"quota_backend_bytes": 2 * 1024**3})
    s = r.summary
    assert s["etcd_nospace_at_s"] < 60                     # 10k nodes: within the first minute
    assert s["etcd_refused_writes"] > 0
    assert s["nodes_notready_max"] == 10_000               # every heartbeat refused: all NotReady
    assert "NOSPACE alarm" in set(r.events["event"])
    ok = hb_lab.run("upstream", {"quota_backend_bytes": 8 * 1024**3}).summary
    assert np.isnan(ok["etcd_nospace_at_s"]) and ok["nodes_ever_notready"] == 0


def test_overloaded_api_servers_mark_healthy_nodes_notready(hb_lab):
    sweep = hb_lab.onset_sweep([1.0, 4.0], settings=["off"], overrides={"duration": 200.0})
    few, many = sweep.nodes_ever_notready.tolist()
    assert few > 1000 and many == 0
    # with Lease the same small control plane copes
    art = hb_lab.onset_sweep([1.0], settings=["article"], overrides={"duration": 200.0})
    assert art.nodes_ever_notready.iloc[0] == 0


def test_a_run_is_deterministic_for_a_seed(hb_lab):
    o = dict(SMALL, pod_churn=20.0, other_requests=500.0)
    a = hb_lab.run("article", o).summary
    b = hb_lab.run("article", o).summary
    c = hb_lab.run("article", dict(o, seed=1)).summary
    a.pop("params"), b.pop("params"), c.pop("params")
    same = lambda x, y: x == y or (np.isnan(x) and np.isnan(y))  # noqa: E731
    assert all(same(a[k], b[k]) for k in a)
    assert not all(same(a[k], c[k]) for k in a)
    assert c["etcd_wal_bytes_per_min"] == pytest.approx(a["etcd_wal_bytes_per_min"], rel=0.05)


def test_upstream_uses_todays_grace_period_unless_set(hb_lab):
    assert hb_lab.resolve("upstream")["node_monitor_grace_period"] == 50.0
    assert hb_lab.resolve("off")["node_monitor_grace_period"] == 40.0
    assert hb_lab.resolve("upstream", {"node_monitor_grace_period": 45})["node_monitor_grace_period"] == 45.0


def test_scale_limits_emerge_from_quota_and_history(hb_lab):
    then = {"quota_backend_bytes": 2 * 1024**3}
    n_off, why_off = hb_lab.max_nodes("off", then)
    n_art, _ = hb_lab.max_nodes("article", then)
    n_up, _ = hb_lab.max_nodes("upstream", then)
    assert why_off == "etcd quota"
    assert n_off < n_art < n_up
    # a bigger quota moves the limit: the cause moves the result
    assert hb_lab.max_nodes("off", {"quota_backend_bytes": 8 * 1024**3})[0] > 2 * n_off


# --- the node lifecycle controller and the kubelet loops --------------------------------------

@given(st.lists(st.floats(0, 1000), min_size=1, max_size=50), st.floats(0, 1100), st.sampled_from([40.0, 50.0]))
def test_node_monitor_matches_its_rule(probes, now, grace):
    nlc = NodeLifecycleController(len(probes), grace, start=-1e9)
    idx = np.arange(len(probes))
    nlc.observe(idx, np.array(probes))
    notready = nlc.monitor(now)
    seen = np.where(np.array(probes) <= now, np.array(probes), -1e9)   # future heartbeats are not seen yet
    assert notready == int(((now - seen) > grace).sum())


def test_kubelet_retries_five_times_then_waits_an_interval():
    rng = np.random.default_rng(0)
    loop = Loop.start(1, 10.0, 0.0, rng)
    idx = np.array([0])
    for attempt in range(1, MAX_RETRIES):
        loop.fail(idx, np.array([5.0]))
        assert loop.attempt[0] == attempt and loop.next_at[0] == 5.0      # retried at once
    loop.fail(idx, np.array([5.0]))
    assert loop.attempt[0] == 0 and loop.next_at[0] == 15.0               # gave up until next period
    loop.succeed(idx, np.array([7.0]), rng)
    assert loop.next_at[0] == 17.0                                        # sliding: after completion


@settings(max_examples=10, deadline=None)
@given(st.integers(50, 400), st.sampled_from(["off", "article", "upstream"]), st.integers(0, 5))
def test_every_node_heartbeats_at_its_interval_when_healthy(nodes, setting, seed):
    from kscale_lab.labs.heartbeats import LAB

    s = LAB.run(setting, {"nodes": nodes, "duration": 90.0, "seed": seed, "quota_backend_bytes": 1024**4}).summary
    assert s["nodes_ever_notready"] == 0 and s["heartbeat_failed_share"] == 0
    expected = nodes / 10.0 if setting == "off" else nodes / 10.2      # one write per node per ~10 s
    assert s["heartbeat_writes_per_s"] >= 0.9 * expected

"""The shared control-plane core: instances, load balancer, connections."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kscale_lab.apiserver.instances import ABSENT, DOWN, READY, STARTING, TERMINATING, InstanceSet
from kscale_lab.apiserver.loadbalancer import LoadBalancer, water_fill
from kscale_lab.clients.connections import reconnect_time
from kscale_lab.clients.workload import build_workload
from kscale_lab.controlplane import CONTROLPLANE_PARAMS, Behaviour, ControlPlane
from kscale_lab.costs import COST_PARAMS, Costs
from kscale_lab.labs.heartbeats import HEARTBEAT_PARAMS
from kscale_lab.scenario import SCENARIO_PARAMS, scale_with_nodes

P = HEARTBEAT_PARAMS + CONTROLPLANE_PARAMS + SCENARIO_PARAMS + COST_PARAMS


def make_cp(nodes=300, behaviour=Behaviour(), seed=0, **over):
    p = P.resolve(dict(over, nodes=nodes))
    p = scale_with_nodes(p, {"nodes"} | set(over))
    costs = Costs.from_params({k: v for k, v in p.items() if k in COST_PARAMS})
    w = build_workload(p, costs, "article")
    return ControlPlane(p, w, behaviour, duration=p["duration"], seed=seed)


def check_invariants(cp):
    cn, inst = cp.cn, cp.inst
    on = cn.conn >= 0
    # a connected client is on a live instance, never on a stopped or removed one
    assert np.isin(inst.state[cn.conn[on]], [STARTING, READY, TERMINATING]).all()
    w = cn.watch_on >= 0
    assert np.isin(inst.state[cn.watch_on[w]], [STARTING, READY, TERMINATING]).all()
    # every client is connected or will dial again: none is lost
    assert (on | np.isfinite(cn.t_connect)).all()
    assert not (on & np.isfinite(cn.t_connect)).any()
    # the per-instance counts are the arrays' counts
    want = np.zeros_like(cn.req_counts)
    np.add.at(want, (cn.conn[on], cn.cls[on]), 1)
    assert (cn.req_counts == want).all()
    want = np.zeros_like(cn.watch_counts)
    np.add.at(want, (cn.watch_on[w], cn.cls[w]), 1)
    assert (cn.watch_counts == want).all()


def drive(cp, actions, seconds):
    """Advance tick by tick (health checks every interval); actions: {tick: [(slot, restart_after)]}."""
    every = int(cp.p["lb_health_check_interval"])
    for i in range(seconds):
        t = float(i)
        for slot, restart_after in actions.get(i, []):
            cp.stop_instance(slot % cp.k, t, restart_after)
        if i and i % every == 0:
            cp.health_check(t)
        cp.tick(t)
        check_invariants(cp)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 119), st.integers(0, 5), st.sampled_from([None, 0.0, 5.0, 30.0])),
                max_size=6),
       st.booleans(), st.sampled_from(["round-robin", "least-connections", "random", "client-side"]))
def test_no_client_is_lost_and_none_sits_on_a_stopped_instance(script, graceful, policy):
    b = Behaviour(graceful_shutdown=graceful, reshuffle=True, shed_429=True, close_connections=True,
                  reconnect_on_429=True, goaway_chance=0.01)
    cp = make_cp(nodes=200, behaviour=b, lb_policy=policy, reshuffle_period=20.0, duration=160.0)
    actions = {}
    for tick, slot, restart in script:
        actions.setdefault(tick, []).append((slot, restart))
    drive(cp, actions, 150)


def test_every_client_finds_a_server_again_after_all_restart():
    cp = make_cp(nodes=300)
    drive(cp, {10: [(0, 5.0), (1, 5.0), (2, 5.0)]}, 120)
    assert (cp.cn.conn >= 0).all()
    assert (cp.inst.state[: cp.n_api] == READY).all()


def test_same_seed_same_result_and_seed_matters():
    from kscale_lab.labs.apiserver_lb import LAB

    o = {"nodes": 500, "duration": 900.0, "rollout_at": 100.0, "restart_at": 600.0}
    a, b = LAB.run("article", o), LAB.run("article", o)
    assert a.instances.equals(b.instances) and a.events.equals(b.events)
    c = LAB.run("article", dict(o, seed=1))
    assert not a.instances["connections"].equals(c.instances["connections"])


def test_watch_stays_after_goaway_until_it_ends():
    cp = make_cp(nodes=300, behaviour=Behaviour(goaway_chance=0.02))
    drive(cp, {}, 60)
    moved = np.flatnonzero((cp.cn.conn >= 0) & (cp.cn.watch_on >= 0) & (cp.cn.conn != cp.cn.watch_on))
    assert moved.size > 0                       # requests moved, watches stayed behind
    assert (cp.cn.t_watch_end[moved] > 59).all()


def test_a_stopped_instance_loses_its_clients_to_the_healthy_ones():
    cp = make_cp(nodes=300)
    drive(cp, {5: [(0, None)]}, 40)
    assert cp.cn.req_counts[0].sum() == 0 and cp.inst.state[0] == ABSENT
    assert cp.cn.req_counts[1:].sum() == cp.cn.n


def test_oom_kill_restarts_with_crashloop_backoff():
    inst = InstanceSet(3, 8.0, P.resolve({}), 3)
    assert inst.crash(0, 100.0) == 10.0 and inst.state[0] == DOWN
    assert inst.due_restarts(109.0).size == 0 and inst.due_restarts(110.5).tolist() == [0]
    inst.start(0, 110.0, 5.0)
    assert inst.crash(0, 200.0) == 20.0          # doubling
    for _ in range(10):
        d = inst.crash(0, 300.0)
    assert d == 300.0                             # capped at 5 min


def test_lb_learns_with_thresholds():
    lb = LoadBalancer(2, "round-robin", P.resolve({"lb_healthy_threshold": 3, "lb_unhealthy_threshold": 2}),
                      np.random.default_rng(0), healthy=np.array([True, False]))
    reg = np.array([True, True])
    for n in range(2):
        lb.probe(np.array([True, True]), reg)
        assert not lb.healthy[1]
    lb.probe(np.array([True, True]), reg)
    assert lb.healthy[1]
    lb.probe(np.array([False, True]), reg)
    assert lb.healthy[0]
    lb.probe(np.array([False, True]), reg)
    assert not lb.healthy[0]
    assert set(lb.pick(10, np.zeros(2)).tolist()) == {1}


@given(st.lists(st.integers(0, 60), min_size=1, max_size=7), st.integers(0, 200))
def test_water_fill_is_least_connections_one_by_one(counts, m):
    counts = np.array(counts)
    got = np.bincount(water_fill(counts, m, np.arange(counts.size)), minlength=counts.size)
    c = counts.copy()
    want = np.zeros_like(c)
    for _ in range(m):
        j = int(np.argmin(c))
        c[j] += 1
        want[j] += 1
    assert (got == want).all()


@given(st.lists(st.integers(0, 300), max_size=15), st.integers(1, 5), st.sampled_from([10.0, 30.0, 60.0]))
def test_vectorised_429_window_agrees_with_the_rule(ticks, k, window):
    """The per-tick counters of the control plane apply reconnect_time's rule."""
    times = sorted(float(t) for t in ticks)
    start, count, when = -np.inf, 0, None
    for t in sorted(set(times)):
        got = times.count(t)
        if t - start > window:
            start, count = t, 0
        count += got
        if count >= k:
            when = t
            break
    assert when == reconnect_time(times, k, window)


def test_memory_counts_what_an_instance_holds():
    cp = make_cp(nodes=300)
    drive(cp, {}, 5)
    m = cp.inst.memory[: cp.n_api]
    base = cp.inst.base_memory + cp._cache_mem
    assert (m > base).all()                       # plus watches and requests in flight
    w = cp.cn.watch_counts @ cp._watch_mem
    assert np.allclose(m, base + w[: cp.n_api], rtol=0.05)

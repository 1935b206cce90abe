"""API Priority and Fairness: configuration, shuffle sharding, the exact queue set, the fluid model."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kscale_lab.apiserver.apf import (
    BOOTSTRAP_FLOW_SCHEMAS, BOOTSTRAP_LEVELS, EXECUTING, QUEUED, REJECTED, SERVED, DiscreteAPF, FlowGroup,
    FlowSchema, FluidAPF, Part, PriorityLevel, QueueSet, Request, RequestAttributes, Subject, allocate,
    check_config, classify, concurrency_limits, deal_hand, flow_hash, list_seats, mutating_work,
    validate_shuffle_sharding, waterfill,
)
from kscale_lab.errors import ParameterError

NODE = ("system:nodes", "system:authenticated")


def attrs(user, groups, verb="get", resource="pods", ns="default"):
    return RequestAttributes(user, tuple(groups), verb, resource, ns)


# -- classification -----------------------------------------------------------------------------

@pytest.mark.parametrize("r, schema, level", [
    (attrs("system:node:n1", NODE, "update", "leases", "kube-node-lease"), "system-node-high", "node-high"),
    (attrs("system:node:n1", NODE, "list", "pods", ""), "system-nodes", "system"),
    (attrs("system:serviceaccount:kube-system:kube-proxy",
           ("system:serviceaccounts", "system:authenticated"), "list", "endpointslices"),
     "kube-system-service-accounts", "workload-high"),
    (attrs("system:serviceaccount:monitoring:node-agent", ("system:serviceaccounts", "system:authenticated"),
           "list", "pods", ""), "service-accounts", "workload-low"),
    (attrs("system:kube-controller-manager", ("system:authenticated",), "update", "leases", "kube-system"),
     "system-leader-election", "leader-election"),
    (attrs("alice", ("system:authenticated",)), "global-default", "global-default"),
    (attrs("admin", ("system:masters", "system:authenticated")), "exempt", "exempt"),
])
def test_flow_schemas_match_by_precedence(r, schema, level):
    fs, _ = classify(r, BOOTSTRAP_FLOW_SCHEMAS)
    assert (fs.name, fs.priority_level) == (schema, level)


def test_lower_precedence_wins_and_the_distinguisher_names_the_flow():
    wide = FlowSchema("wide", "global-default", 50, "ByNamespace", (Subject("Group", "system:authenticated"),))
    fs, d = classify(attrs("alice", ("system:authenticated",), ns="team-a"), BOOTSTRAP_FLOW_SCHEMAS + (wide,))
    assert fs.name == "wide" and d == "team-a"
    fs, d = classify(attrs("system:node:n7", NODE, "list", "pods", ""), BOOTSTRAP_FLOW_SCHEMAS)
    assert d == "system:node:n7"


def test_bad_configuration_is_one_line():
    with pytest.raises(ParameterError, match="priority_level"):
        check_config(BOOTSTRAP_LEVELS, BOOTSTRAP_FLOW_SCHEMAS + (FlowSchema("x", "nope", 5, None, ()),))
    zero = [PriorityLevel(lv.name, 0, lv.lendable_percent, None, lv.queues, lv.hand_size, lv.queue_length_limit,
                          lv.exempt) for lv in BOOTSTRAP_LEVELS]
    with pytest.raises(ParameterError, match="nominalConcurrencyShares"):
        check_config(zero, BOOTSTRAP_FLOW_SCHEMAS)
    with pytest.raises(ParameterError, match="handSize"):
        validate_shuffle_sharding(16, 17)
    with pytest.raises(ParameterError, match="handSize"):
        validate_shuffle_sharding(1024, 7)          # 70 bits do not fit the hash


# -- concurrency limits, borrowing, seats ---------------------------------------------------------

def test_nominal_limits_follow_the_shares():
    lim = concurrency_limits(600, BOOTSTRAP_LEVELS)
    got = dict(zip([lv.name for lv in BOOTSTRAP_LEVELS], lim.nominal.astype(int)))
    # ceil(600 x NCS / 245): the brief's table, derived
    assert got == {"exempt": 0, "system": 74, "node-high": 98, "leader-election": 25, "workload-high": 98,
                   "workload-low": 245, "global-default": 49, "catch-all": 13}
    assert (lim.min == lim.nominal - lim.lendable).all()
    doubled = concurrency_limits(1200, BOOTSTRAP_LEVELS)
    assert doubled.nominal[5] > 1.9 * lim.nominal[5]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 50), st.floats(0, 100), st.floats(0, 200)), min_size=1, max_size=8),
       st.floats(1, 500))
def test_allocation_sums_and_respects_bounds(items, required):
    lo = np.array([a for a, _, _ in items])
    hi = lo + np.array([b for _, b, _ in items])
    target = np.maximum(lo, np.array([c for _, _, c in items]))
    alloc, fair = allocate(required, lo, hi, target)
    assert (alloc >= lo - 1e-6).all() and (alloc <= hi + 1e-6).all()
    if lo.sum() < required < hi.sum():
        assert alloc.sum() == pytest.approx(required, rel=1e-6, abs=1e-6)
        free = (alloc > lo + 1e-6) & (alloc < hi - 1e-6)
        assert np.allclose(alloc[free], fair * np.maximum(target[free], 1e-3), rtol=1e-6)


def test_list_seats_and_mutating_width():
    assert list_seats(200_000) == 10                     # from the cache: every stored object
    assert list_seats(250) == 3
    assert list_seats(200_000, single=True) == 1
    assert list_seats(200_000, 500, selector=False, from_cache=False) == 10
    assert list_seats(300, 100, selector=False, from_cache=False) == 2
    assert mutating_work(0) == (1, 0, 0.0)
    assert mutating_work(25)[:2] == (1, 3)
    assert mutating_work(1000)[1] == 10 and mutating_work(1000)[2] > 0.005


# -- shuffle sharding ----------------------------------------------------------------------------

@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**64 - 1), st.sampled_from([4, 8, 16, 64, 128]), st.integers(1, 8))
def test_a_hand_is_deterministic_and_distinct(h, queues, hand):
    hand = min(hand, queues)
    a, b = deal_hand(h, queues, hand), deal_hand(h, queues, hand)
    assert a == b and len(set(a)) == hand and all(0 <= q < queues for q in a)


def test_flow_hash_is_stable_and_separates_flows():
    assert flow_hash("system-nodes", "system:node:a") == flow_hash("system-nodes", "system:node:a")
    hands = {tuple(deal_hand(flow_hash("system-nodes", f"system:node:{i}"), 64, 6)) for i in range(200)}
    assert len(hands) > 190


# -- the exact queue set -------------------------------------------------------------------------

LEVEL = PriorityLevel("test", 10, 0, None, 16, 4, 10)
SCHEMAS = (FlowSchema("by-user", "test", 100, "ByUser", (Subject("Group", "g"),)),)


def run_discrete(flows, limit, until, borrowing=False):
    """flows: [(user, rate, seats, service)] -> requests and the largest seats in use seen at a dispatch."""
    d = DiscreteAPF(limit, [LEVEL], SCHEMAS, borrowing=borrowing)
    qs = d.qs["test"]
    worst = []

    def started(req):
        worst.append(qs.seats_in_use - max(qs.limit, req.seats))

    qs.on_start = started
    arrivals = []
    rng = np.random.default_rng(1)
    for user, rate, seats, service in flows:
        t = 0.0
        while True:
            t += rng.exponential(1.0 / rate)
            if t >= until:
                break
            arrivals.append((t, attrs(user, ("g",)), seats, service))
    return d.run(arrivals, until=until + 5.0), max(worst, default=0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(1, 60), st.integers(1, 3), st.floats(0.01, 0.5)), min_size=1, max_size=4),
       st.integers(1, 12))
def test_queueset_never_exceeds_its_limit_and_each_request_has_one_fate(flows, limit):
    reqs, worst = run_discrete([(f"u{i}", *f) for i, f in enumerate(flows)], limit, 5.0)
    assert worst <= 0                       # a dispatch never takes more seats than the limit allows
    for r in reqs:
        assert r.state in (SERVED, REJECTED, QUEUED, EXECUTING)
        if r.state == SERVED:
            assert r.start >= r.arrival and r.finish >= r.start and not r.reason
        if r.state == REJECTED:
            assert r.reason in ("queue-full", "time-out", "concurrency-limit") and math.isnan(r.start)
        if r.state == QUEUED:
            assert math.isnan(r.start) and not r.reason


def _distinct_queue_users(n, level):
    users, seen = [], set()
    i = 0
    while len(users) < n:
        q = deal_hand(flow_hash("by-user", f"user-{i}"), level.queues, level.hand_size)[0]
        if q not in seen:
            seen.add(q)
            users.append(f"user-{i}")
        i += 1
    return users


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 4), st.integers(3, 12), st.floats(0.01, 1.0))
def test_equal_backlogged_flows_are_served_within_one_request(n_flows, n_req, service):
    level = PriorityLevel("test", 10, 0, None, 16, 1, 100)
    qs = QueueSet(level, 1)
    users = _distinct_queue_users(n_flows, level)
    order = []
    qs.on_start = lambda r: order.append(r.flow[1])
    executing = []
    for u in users:
        for _ in range(n_req):
            qs.arrive(0.0, Request(("by-user", u), 0.0, 1, service))
    t = 0.0
    while qs.executing:
        t += service
        (r,) = tuple(qs.executing)
        qs.finish(t, r)
        executing.append(r)
    counts = {u: 0 for u in users}
    for who in order:
        counts[who] += 1
        busy = [counts[u] for u in users if counts[u] < n_req]
        if busy:
            assert max(counts.values()) - min(busy) <= 1


def test_a_request_that_waits_past_the_limit_is_rejected():
    qs = QueueSet(PriorityLevel("test", 10, 0, None, 4, 1, 50), 1, wait_limit=15.0)
    first = Request(("s", "a"), 0.0, 1, 100.0)
    qs.arrive(0.0, first)                               # occupies the only seat for 100 s
    waiting = Request(("s", "a"), 1.0, 1, 1.0)
    qs.arrive(1.0, waiting)
    out = qs.arrive(17.0, Request(("s", "a"), 17.0, 1, 1.0))
    assert waiting in out and waiting.reason == "time-out"


# -- the fluid model and the two zooms -----------------------------------------------------------

def test_fluid_and_discrete_agree_on_a_shared_case():
    """Three flows in one level of 10 seats: two send 100 requests/s, one 20/s, each 0.1 s long."""
    flows = [("u1", 100.0, 1, 0.1), ("u2", 100.0, 1, 0.1), ("u3", 20.0, 1, 0.1)]
    reqs, _ = run_discrete(flows, 10, 30.0)
    served = {u: sum(r.state == SERVED and r.flow[1] == u for r in reqs) for u, *_ in flows}
    rejected = {u: sum(r.state == REJECTED and r.flow[1] == u for r in reqs) for u, *_ in flows}
    groups = [FlowGroup(u, 0, 1, "by-user") for u, *_ in flows]
    parts = [Part(u, i, 1.0) for i, (u, *_) in enumerate(flows)]
    f = FluidAPF(1, [LEVEL], 10, groups, parts, 1.0, borrowing=False)
    got = np.zeros(3)
    rej = np.zeros(3)
    for i in range(35):
        f.step(float(i), np.array([[100.0, 100.0, 20.0]]) * (i < 30), np.full((1, 3), 0.1))
        got += f.dispatched[0]
        rej += f.rejected[0]
    for j, (u, *_) in enumerate(flows):
        assert got[j] == pytest.approx(served[u], rel=0.06)
    assert rej[0] == pytest.approx(rejected["u1"], rel=0.1) and rej[2] == pytest.approx(rejected["u3"], abs=5)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 200), st.floats(0.01, 30.0), st.sampled_from([1.0, 10.0]),
                          st.sampled_from([1.0, 100.0])), min_size=1, max_size=5),
       st.integers(1, 200))
def test_fluid_dispatch_obeys_the_limit_and_conserves_requests(parts_spec, limit):
    groups = [FlowGroup(f"g{i}", 0, flows, "s") for i, (_, _, _, flows) in enumerate(parts_spec)]
    parts = [Part(f"p{i}", i, seats) for i, (_, _, seats, _) in enumerate(parts_spec)]
    level = PriorityLevel("test", 10, 0, None, 64, 6, 50)
    f = FluidAPF(1, [level], limit, groups, parts, 1.0, borrowing=False)
    arr = np.array([[a for a, _, _, _ in parts_spec]])
    svc = np.array([[s for _, s, _, _ in parts_spec]])
    sent = done = 0.0
    for i in range(60):
        f.step(float(i), arr * (i < 40), svc)
        sent += arr.sum() * (i < 40)
        done += f.dispatched.sum() + f.rejected.sum()
    assert f.max_seats_over_limit <= 1e-6
    assert done + f.backlog.sum() == pytest.approx(sent, rel=1e-9, abs=1e-6)


def test_waterfill_gives_no_flow_more_than_it_asks_or_less_than_its_share():
    lo = np.zeros((1, 3))
    hi = np.array([[5.0, 50.0, 50.0]])
    f = waterfill(lo, hi, np.ones(3), np.array([30.0]))
    assert np.allclose(np.minimum(hi, f[:, None]), [[5.0, 12.5, 12.5]])
    assert np.isinf(waterfill(lo, hi, np.ones(3), np.array([500.0])))[0]


def test_apf_is_a_component_any_control_plane_can_use():
    """Lab 6's control plane with APF as its admission (no flow-control parts): steady load passes,
    max-inflight is off, the queue waits stay zero."""
    from kscale_lab.apiserver.apf import APF
    from kscale_lab.clients.workload import build_workload
    from kscale_lab.controlplane import CONTROLPLANE_PARAMS, Behaviour, ControlPlane
    from kscale_lab.costs import COST_PARAMS, Costs
    from kscale_lab.labs.heartbeats import HEARTBEAT_PARAMS
    from kscale_lab.scenario import SCENARIO_PARAMS, scale_with_nodes

    P = HEARTBEAT_PARAMS + CONTROLPLANE_PARAMS + SCENARIO_PARAMS + COST_PARAMS
    p = scale_with_nodes(P.resolve({"nodes": 300, "duration": 120.0}), {"nodes"})
    w = build_workload(p, Costs.from_params({k: v for k, v in p.items() if k in COST_PARAMS}), "article")
    apf = APF(p)
    cp = ControlPlane(p, w, Behaviour(), duration=120.0, components=[apf])
    cp.restart(30.0, 1)
    res = cp.run()
    assert cp._own_inflight and res.summary["apf_server_concurrency_limit"] == 600
    assert res.summary["apf_rejected_requests_total"] == 0
    assert apf.fluid.max_seats_over_limit <= 1e-9

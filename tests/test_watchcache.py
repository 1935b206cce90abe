"""The watch cache: upstream's resize rule, the 410 rule, indexes, bookmarks, the event source."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kscale_lab.apiserver.watchcache import (
    ADDED,
    DELETED,
    INDEX_NAMES,
    MODIFIED,
    NO_EVENT,
    PARAMS,
    UNSET,
    EventBatch,
    ObjectSet,
    Selector,
    WatchCache,
    capacity_upper_bound,
    convert_to_watch_event,
    generate_cluster_writes,
    last_bookmark_time,
    next_bookmark_time,
)
from kscale_lab.errors import ParameterError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------------------
# An independent reference: upstream's updateCache/resizeCacheLocked, event by event,
# on a literal cyclic buffer (watch_cache.go), written from the Go semantics.
# --------------------------------------------------------------------------------------


class RefRing:
    def __init__(self, lower: int, upper: int, fresh: float):
        self.lower, self.upper, self.fresh = lower, upper, fresh
        self.cap = lower
        self.buf = [None] * lower
        self.start = self.end = 0
        self.removed = False
        self.history = [lower]

    def full(self):
        return self.end == self.start + self.cap

    def _resize(self, c):
        new = [None] * c
        if c < self.cap:
            self.start = self.end - c
        for i in range(self.start, self.end):
            new[i % c] = self.buf[i % self.cap]
        self.buf, self.cap = new, c
        self.history.append(c)

    def add(self, rv, t):
        if self.full() and t - self.buf[self.start % self.cap][1] < self.fresh:
            c = min(self.cap * 2, self.upper)
            if c > self.cap:
                self._resize(c)
        elif self.full() and t - self.buf[(self.end - self.cap // 4) % self.cap][1] > self.fresh:
            c = max(self.cap // 2, self.lower)
            if c < self.cap:
                self._resize(c)
        if self.full():
            self.start += 1
            self.removed = True
        self.buf[self.end % self.cap] = (rv, t)
        self.end += 1

    def rvs(self):
        return [self.buf[i % self.cap][0] for i in range(self.start, self.end)]


def added_events(times, first_rv=1, rv_step=None):
    n = len(times)
    rv = first_rv + np.arange(n) * 2 if rv_step is None else first_rv + np.cumsum(rv_step)
    z = np.zeros(n)
    return EventBatch(rv=rv, time=np.asarray(times), key=np.arange(n), etype=np.full(n, ADDED),
                      ns=z, node=z, label=z, size=np.full(n, 100))


gaps = st.lists(st.sampled_from([0.0, 0.01, 0.2, 1.0, 3.0, 10.0, 40.0]), min_size=1, max_size=400)


@SETTINGS
@given(gaps=gaps, lower=st.sampled_from([1, 2, 3, 4, 8]), mult=st.sampled_from([1, 2, 4, 16]),
       fresh=st.sampled_from([0.5, 5.0, 30.0]), data=st.data())
def test_resize_rule_matches_upstream_event_by_event(gaps, lower, mult, fresh, data):
    upper = lower * mult
    times = np.cumsum(gaps)
    ev = added_events(times)
    ref = RefRing(lower, upper, fresh)
    wc = WatchCache(params={"lower_bound_capacity": lower, "upper_bound_capacity": upper,
                            "event_fresh_duration": fresh})
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(ev)), max_size=5))) | {0, len(ev)})
    for a, b in zip(cuts[:-1], cuts[1:]):
        wc.add_events(ev.take(slice(a, b)))
        for i in range(a, b):
            ref.add(int(ev.rv[i]), float(ev.time[i]))
        assert wc.ring_events().rv.tolist() == ref.rvs()
        assert wc.capacity == ref.cap
        assert wc.removed_event_since_relist == ref.removed
        assert lower <= wc.capacity <= upper
    assert [c for _, _, c in wc.capacity_history] == ref.history
    # the per-event history the fleet uses agrees with the tape
    assert wc.oldest_rv_at(np.array([wc.end_index]))[0] == wc.oldest_rv


def test_resize_thresholds_are_strict_as_upstream():
    p = {"lower_bound_capacity": 2, "upper_bound_capacity": 8, "event_fresh_duration": 5.0}
    wc = WatchCache(params=p)
    wc.add_events(added_events([0.0, 0.0, 5.0]))  # full, oldest exactly 5 s old: not "younger"
    assert wc.capacity == 2
    wc = WatchCache(params=p)
    wc.add_events(added_events([0.0, 0.0, 4.999]))
    assert wc.capacity == 4
    p = {"lower_bound_capacity": 2, "upper_bound_capacity": 8, "event_fresh_duration": 5.0}
    wc = WatchCache(params=p)
    wc.add_events(added_events([0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]))
    assert wc.capacity == 8 and wc.size == 8
    wc.add_events(added_events([7.0], first_rv=100))  # event cap/4 back (t=2.0) exactly 5 s old: no halving
    assert wc.capacity == 8
    wc.add_events(added_events([7.001], first_rv=101))  # now older than 5 s: halve
    assert wc.capacity == 4


def test_capacity_grows_to_the_upper_bound_and_shrinks_back_with_default_bounds():
    rng = np.random.default_rng(0)
    burst = np.cumsum(rng.exponential(1 / 2000.0, size=240_000))  # 2000 events/s for 2 min
    calm = burst[-1] + np.cumsum(rng.exponential(1.0, size=400))  # then 1 event/s
    wc = WatchCache()
    wc.add_events(added_events(burst))
    caps = [c for _, _, c in wc.capacity_history]
    assert max(caps) == 100 * 1024 == capacity_upper_bound(75.0)
    assert wc.capacity == 102_400 and wc.size == 102_400
    wc.add_events(added_events(calm, first_rv=int(wc.current_rv) + 1))
    caps = [c for _, _, c in wc.capacity_history]
    assert min(caps) >= 100 and max(caps) <= 102_400
    # at 1 event/s the quarter-back event is older than 75 s until the tape is ~200-400 long
    assert wc.capacity <= 400
    span = wc.ring_events().time
    assert span[-1] - span[0] >= 75.0 * 0.5


def test_capacity_upper_bound_follows_event_fresh_duration():
    assert capacity_upper_bound(75.0) == 102_400
    assert capacity_upper_bound(60.0) == 102_400
    assert capacity_upper_bound(76.0) == 204_800
    assert capacity_upper_bound(150.0) == 204_800
    assert capacity_upper_bound(300.0) == 409_600
    wc = WatchCache(params={"event_fresh_duration": 150.0})
    assert wc.upper_bound_capacity == 204_800


# --------------------------------------------------------------------------------------
# The 410 rule
# --------------------------------------------------------------------------------------


def test_list_rv_plus_one_rule_after_a_relist():
    objs = ObjectSet(key=[0, 1], ns=[0, 0], node=[1, 2], label=[0, 0], size=[10, 10], rv=[50, 60])
    wc = WatchCache(initial=objs, list_rv=100, params={"lower_bound_capacity": 3, "upper_bound_capacity": 3})
    assert wc.oldest_rv == 101
    z = [0, 0, 0]
    wc.add_events(EventBatch(rv=[105, 107, 110], time=[1, 2, 3], key=[0, 1, 0], etype=[MODIFIED] * 3,
                             ns=z, node=[1, 2, 1], label=z, size=z))
    # nothing evicted yet: the tape reaches back to the LIST, whose RV is 100
    assert wc.oldest_rv == 101
    ok = wc.watch_from(100)
    assert ok.status == "ok" and ok.scanned == 3 and ok.rv.tolist() == [105, 107, 110]
    assert wc.watch_from(104).scanned == 3  # RVs between the list and the first event are fine
    old = wc.watch_from(99)
    assert old.too_old and old.code == 410 and old.message == "too old resource version: 99 (100)"
    # the next event evicts RV 105: now the first event on the tape rules
    wc.add_event(rv=111, time=4, key=1, etype=MODIFIED, ns=0, node=2, label=0)
    assert wc.removed_event_since_relist and wc.oldest_rv == 107
    assert wc.watch_from(106).status == "ok" and wc.watch_from(105).too_old
    assert wc.watch_from(100).message == "too old resource version: 100 (106)"
    # a relist resets the rule to listRV + 1 and empties the tape
    wc.replace(wc.objects(), 200, time=5)
    assert wc.size == 0 and wc.oldest_rv == 201
    assert wc.watch_from(200).status == "ok" and wc.watch_from(200).scanned == 0
    assert wc.watch_from(199).too_old
    assert wc.watch_from(201).status == "too_large"


@SETTINGS
@given(n=st.integers(1, 120), cap=st.sampled_from([2, 4, 8]), seed=st.integers(0, 10_000),
       list_rv=st.integers(1, 50))
def test_watch_from_410_decision_and_replay_match_the_rule(n, cap, seed, list_rv):
    rng = np.random.default_rng(seed)
    steps = rng.integers(1, 4, size=n)
    ev = added_events(np.cumsum(rng.random(n)), rv_step=steps, first_rv=list_rv)
    ev.node[:] = rng.integers(0, 3, size=n)
    wc = WatchCache(list_rv=list_rv, params={"lower_bound_capacity": cap, "upper_bound_capacity": cap})
    wc.add_events(ev)
    ring = wc.ring_events()
    oldest = list_rv + 1 if not wc.removed_event_since_relist else int(ring.rv[0])
    assert wc.oldest_rv == oldest
    sel = Selector(node=1)
    for q in range(max(1, list_rv - 2), wc.current_rv + 3):
        res = wc.watch_from(q, sel)
        if q > wc.current_rv:
            assert res.status == "too_large"
        elif q < oldest - 1:
            assert res.too_old and wc.is_too_old(q)
        else:
            after = ring.rv > q
            assert res.status == "ok" and res.scanned == int(after.sum())
            want = ring.rv[after & (ring.node == 1)]
            assert res.rv.tolist() == want.tolist() and res.sent == want.size


# --------------------------------------------------------------------------------------
# State, indexes, bulk == one at a time
# --------------------------------------------------------------------------------------


def random_stream(rng, n, n_keys=15, start_rv=10, t0=0.0, exists=None):
    """Consistent random writes: ADDED for absent keys, MODIFIED/DELETED for present ones."""
    exists = set() if exists is None else set(exists)
    rv, t, key, et, ns, node, label = [], [], [], [], [], [], []
    r, now = start_rv, t0
    for _ in range(n):
        k = int(rng.integers(0, n_keys))
        r += int(rng.integers(1, 4))
        now += float(rng.exponential(1.0))
        if k not in exists:
            e = ADDED
            exists.add(k)
        elif rng.random() < 0.25:
            e = DELETED
            exists.discard(k)
        else:
            e = MODIFIED
        rv.append(r), t.append(now), key.append(k), et.append(e)
        ns.append(int(rng.integers(0, 3))), node.append(int(rng.integers(-1, 3))), label.append(int(rng.integers(0, 3)))
    return EventBatch(rv=rv, time=t, key=key, etype=et, ns=ns, node=node, label=label,
                      size=rng.integers(1, 100, size=n))


def naive_index_ops(events: EventBatch, state: dict):
    ops = 0
    for i in range(len(events)):
        k = int(events.key[i])
        pre = state.get(k)
        if events.etype[i] == DELETED:
            post = None
        else:
            post = (int(events.ns[i]), int(events.node[i]), int(events.label[i]))
        for a in range(3):
            if pre is not None and (post is None or pre[a] != post[a]):
                ops += 1
            if post is not None and (pre is None or pre[a] != post[a]):
                ops += 1
        if post is None:
            state.pop(k, None)
        else:
            state[k] = post
    return ops


@SETTINGS
@given(seed=st.integers(0, 100_000), n=st.integers(1, 150), data=st.data())
def test_bulk_equals_one_at_a_time_and_indexes_stay_exact(seed, n, data):
    rng = np.random.default_rng(seed)
    ev = random_stream(rng, n)
    p = {"lower_bound_capacity": 4, "upper_bound_capacity": 16, "event_fresh_duration": 3.0}
    bulk, single = WatchCache(list_rv=5, params=p), WatchCache(list_rv=5, params=p)
    lazy = WatchCache(list_rv=5, params=p)   # indexes built on first use, after the events
    _ = bulk._indexes                         # built now: maintained write by write below
    cuts = sorted(set(data.draw(st.lists(st.integers(0, n), max_size=4))) | {0, n})
    lazy.add_events(ev)
    for a, b in zip(cuts[:-1], cuts[1:]):
        bulk.add_events(ev.take(slice(a, b)))
    for i in range(n):
        single.add_event(int(ev.rv[i]), float(ev.time[i]), int(ev.key[i]), int(ev.etype[i]),
                         int(ev.ns[i]), int(ev.node[i]), int(ev.label[i]), int(ev.size[i]))
    for name in ("rv", "time", "key", "etype", "ns", "node", "label", "pns", "pnode", "plabel", "has_prev",
                 "size", "start_after", "removed_after"):
        assert np.array_equal(bulk.history(name), single.history(name)), name
    assert bulk.objects().as_dict() == single.objects().as_dict()
    assert bulk.index_ops == single.index_ops
    assert bulk.capacity_history == single.capacity_history
    # the state is the last write of every key; a DELETED carries the last state
    truth = {}
    for i in range(n):
        k = int(ev.key[i])
        if ev.etype[i] == DELETED:
            truth.pop(k)
        else:
            truth[k] = (int(ev.ns[i]), int(ev.node[i]), int(ev.label[i]))
    assert bulk.objects().as_dict() == truth
    dele = bulk.history("etype") == DELETED
    for a, pa in (("ns", "pns"), ("node", "pnode"), ("label", "plabel")):
        assert np.array_equal(bulk.history(a)[dele], bulk.history(pa)[dele])
    assert bulk.history("has_prev")[dele].all()
    # indexes == rebuilt from the state; index work == a naive per-write count
    for name, attr in zip(INDEX_NAMES, (1, 0, 2)):
        want = {}
        for k, v in truth.items():
            want.setdefault(v[attr], set()).add(k)
        assert bulk._indexes[name] == want
        assert lazy._indexes[name] == want
    assert bulk.index_ops == naive_index_ops(ev, {}) == lazy.index_ops


@SETTINGS
@given(seed=st.integers(0, 100_000), ns=st.one_of(st.none(), st.integers(-1, 3)),
       node=st.one_of(st.none(), st.integers(-1, 3)), label=st.one_of(st.none(), st.integers(0, 3)))
def test_index_list_equals_full_scan_and_filter(seed, ns, node, label):
    rng = np.random.default_rng(seed)
    n0 = int(rng.integers(0, 40))
    objs = ObjectSet(key=np.arange(n0), ns=rng.integers(0, 3, n0), node=rng.integers(-1, 3, n0),
                     label=rng.integers(0, 3, n0), size=rng.integers(1, 9, n0), rv=np.ones(n0))
    wc = WatchCache(initial=objs, list_rv=5)
    wc.add_events(random_stream(rng, 60, n_keys=50, start_rv=6, exists=range(n0)))
    sel = Selector(namespace=ns, node=node, label=label)
    full = wc.list(sel, index=False)
    idx = wc.list(sel, index=True)
    st_ = wc.objects()
    want = np.sort(st_.key[sel.matches(st_.ns, st_.node, st_.label)])
    assert full.keys.tolist() == want.tolist() == idx.keys.tolist()
    assert full.scanned == wc.object_count and full.index_used == ""
    assert idx.returned == full.returned == want.size
    cands = sel.index_candidates()
    if cands:
        assert idx.index_used == cands[0][0]
        assert idx.scanned == wc.index_bucket(*cands[0]).size <= full.scanned
    else:
        assert idx.scanned == full.scanned


def test_node_index_reads_a_node_not_the_cluster():
    w = generate_cluster_writes(7, 0.0, {"nodes": 1000, "pods": 20_000})
    wc = WatchCache(initial=w.initial_pods, list_rv=w.list_rv)
    by_index = wc.list(Selector(node=3))
    scan = wc.list(Selector(node=3), index=False)
    assert by_index.keys.tolist() == scan.keys.tolist()
    assert scan.scanned == 20_000
    assert by_index.scanned == by_index.returned == int((w.initial_pods.node == 3).sum())
    assert wc.list(Selector(node=3), min_rv=wc.current_rv + 1).status == "too_large"


def test_progress_notify_advances_rv_without_events():
    wc = WatchCache(list_rv=10)
    wc.progress_notify(25, time=1.0)
    assert wc.current_rv == 25 and wc.watch_from(25).status == "ok"
    assert wc.rv_at_times(np.array([0.5, 1.0, 2.0])).tolist() == [10, 25, 25]
    with pytest.raises(ParameterError):
        wc.progress_notify(20)


# --------------------------------------------------------------------------------------
# Filtering and bookmarks
# --------------------------------------------------------------------------------------


def test_convert_to_watch_event_truth_table():
    et = np.array([ADDED, MODIFIED, MODIFIED, MODIFIED, MODIFIED, DELETED, DELETED])
    hp = np.array([False, True, True, True, True, True, True])
    cur = np.array([True, True, True, False, False, True, False])
    prev = np.array([False, True, False, True, False, True, False])
    got = convert_to_watch_event(et, hp, cur, prev).tolist()
    assert got == [ADDED, MODIFIED, ADDED, DELETED, NO_EVENT, DELETED, NO_EVENT]


def bookmark_times(s, d, variant, params=None):
    out, k = [], 0
    while (t := next_bookmark_time(s, d, k, variant, params)) is not None:
        out.append(t)
        k += 1
    return out


def test_bookmark_schedules_of_the_three_policies():
    assert bookmark_times(0.0, 300.0, "off") == []
    assert bookmark_times(0.0, 300.0, "article") == [298.0]
    assert bookmark_times(0.0, 300.0, "upstream") == [60.0, 120.0, 180.0, 240.0, 298.0]
    assert bookmark_times(0.0, 301.0, "upstream")[-2:] == [240.0, 299.0]
    assert bookmark_times(10.0, 40.0, "upstream") == [38.0]
    with pytest.raises(ParameterError):
        next_bookmark_time(0.0, 300.0, 0, "sometimes")


@SETTINGS
@given(s=st.floats(-600, 600), timeout=st.floats(3, 900), frac=st.floats(0, 1),
       variant=st.sampled_from(["off", "article", "upstream"]), freq=st.sampled_from([1.0, 7.0, 60.0]))
def test_last_bookmark_time_is_the_closed_form_of_the_schedule(s, timeout, frac, variant, freq):
    d = s + timeout
    t = s + frac * timeout
    p = {"default_bookmark_frequency": freq}
    sched = [b for b in bookmark_times(s, d, variant, p) if b <= t]
    got = last_bookmark_time(s, d, t, variant, p)
    if not sched:
        assert np.isnan(got)
    else:
        assert got == pytest.approx(sched[-1], abs=1e-9)


# --------------------------------------------------------------------------------------
# The event source
# --------------------------------------------------------------------------------------

SMALL = {"nodes": 50, "pods": 1000, "namespaces": 5, "label_values": 7, "pod_creates_per_s": 3.0,
         "pod_deletes_per_s": 3.0, "core_events_per_s": 5.0}


def test_event_source_is_deterministic_global_and_consistent():
    a = generate_cluster_writes(11, 120.0, SMALL)
    b = generate_cluster_writes(11, 120.0, SMALL)
    c = generate_cluster_writes(12, 120.0, SMALL)
    assert np.array_equal(a.pods.rv, b.pods.rv) and np.array_equal(a.pods.node, b.pods.node)
    assert not np.array_equal(a.pods.time, c.pods.time)
    # one global revision counter: all writes strictly increasing, contiguous; pods' RVs jump
    assert np.array_equal(a.rv, a.list_rv + 1 + np.arange(a.rv.size))
    assert np.all(np.diff(a.time) >= 0)
    assert np.all(np.diff(a.pods.rv) >= 1) and np.any(np.diff(a.pods.rv) > 1)
    assert set(a.writes_per_type()) == {"pods", "nodes", "leases", "events"}
    # every MODIFIED/DELETED refers to an existing pod, every ADDED to a new one
    wc = WatchCache(initial=a.initial_pods, list_rv=a.list_rv)
    wc.add_events(a.pods)
    et, hp = wc.history("etype"), wc.history("has_prev")
    assert np.all(hp[et != ADDED]) and not np.any(hp[et == ADDED])
    # a pod is bound (spec.nodeName set) after its creation
    added = a.pods.etype == ADDED
    assert np.all(a.pods.node[added] == UNSET)


def test_event_source_rejects_bad_input():
    with pytest.raises(ParameterError):
        generate_cluster_writes(1, -5.0)
    with pytest.raises(ParameterError):
        generate_cluster_writes(1, 10.0, {"nodes": 0})
    with pytest.raises(ParameterError):
        generate_cluster_writes(1, 10.0, {"no_such_knob": 1})
    with pytest.raises(ParameterError):
        generate_cluster_writes(1, 100.0, {"pods": 10, "pod_deletes_per_s": 5.0})


def test_watch_cache_rejects_bad_input():
    with pytest.raises(ParameterError):
        WatchCache(params={"lower_bound_capacity": 50, "upper_bound_capacity": 10})
    with pytest.raises(ParameterError):
        WatchCache(params={"event_fresh_duration": -1})
    wc = WatchCache(list_rv=10)
    with pytest.raises(ParameterError):
        wc.add_event(rv=10, time=0.0, key=0, etype=ADDED)  # not after the cache's RV
    wc.add_event(rv=11, time=5.0, key=0, etype=ADDED)
    with pytest.raises(ParameterError):
        wc.add_event(rv=12, time=4.0, key=0, etype=MODIFIED)  # time goes back
    with pytest.raises(ParameterError):
        wc.add_event(rv=12, time=6.0, key=0, etype=7)
    with pytest.raises(ParameterError):
        wc.index_bucket("spec.hostIP", 1)
    assert all(p.source for p in PARAMS)


@SETTINGS
@given(arrays=st.lists(st.lists(st.integers(0, 6), max_size=12), min_size=1, max_size=4))
def test_merge_ranks_is_a_stable_argsort_of_the_concatenation(arrays):
    from kscale_lab.apiserver.watchcache import _merge_ranks

    streams = [np.sort(np.asarray(a, dtype=np.float64)) for a in arrays]
    ranks = _merge_ranks(streams)
    order = np.argsort(np.concatenate(streams), kind="stable")
    want = np.empty(order.size, dtype=np.int64)
    want[order] = np.arange(order.size)
    assert np.array_equal(np.concatenate(ranks) if ranks else np.zeros(0, np.int64), want)


def test_cluster_writes_take_consecutive_revisions_in_time_order():
    w = generate_cluster_writes(3, 90.0, {"nodes": 30, "pods": 300, "pod_creates_per_s": 2.0,
                                          "pod_deletes_per_s": 1.0, "core_events_per_s": 3.0})
    assert np.array_equal(w.rv, np.arange(w.list_rv + 1, w.list_rv + 1 + w.rv.size))
    assert np.all(np.diff(w.time) >= 0)
    from kscale_lab.apiserver.watchcache import RTYPE_POD

    m = w.rtype == RTYPE_POD
    assert np.array_equal(w.rv[m], w.pods.rv) and np.array_equal(w.time[m], w.pods.time)

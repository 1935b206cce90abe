"""Reflectors: exact informers stay exact; the vectorised fleet equals them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kscale_lab.apiserver.watchcache import (
    ADDED,
    DELETED,
    MODIFIED,
    NO_EVENT,
    EventBatch,
    ObjectSet,
    Selector,
    WatchCache,
    convert_to_watch_event,
    generate_cluster_writes,
)
from kscale_lab.clients.reflector import (
    FIELD_LABEL,
    FIELD_NODE,
    FIELD_NAMESPACE,
    PARAMS,
    ClientSelectors,
    Reflector,
    ReflectorFleet,
    default_clients,
    draw_watch_timeouts,
    simulate_exact,
)
from kscale_lab.errors import KscaleError, ParameterError

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def churn_stream(rng, n, n_keys, start_rv, exists):
    """Consistent random writes whose attribute changes move objects in and out of selectors."""
    exists = set(exists)
    cols = {k: [] for k in ("rv", "time", "key", "etype", "ns", "node", "label")}
    r, now = start_rv, 0.0
    for _ in range(n):
        k = int(rng.integers(0, n_keys))
        r += int(rng.integers(1, 5))  # other types take the revisions in between
        now += float(rng.exponential(0.5))
        if k not in exists:
            e = ADDED
            exists.add(k)
        elif rng.random() < 0.2:
            e = DELETED
            exists.discard(k)
        else:
            e = MODIFIED
        for name, v in (("rv", r), ("time", now), ("key", k), ("etype", e), ("ns", int(rng.integers(0, 3))),
                        ("node", int(rng.integers(-1, 3))), ("label", int(rng.integers(0, 3)))):
            cols[name].append(v)
    return EventBatch(**cols, size=np.full(n, 10))


def watched_events(cache: WatchCache, sel: Selector):
    """(rv, watch type) of every event in the cache's history this selector sees."""
    h = {k: cache.history(k) for k in ("rv", "etype", "has_prev", "ns", "node", "label", "pns", "pnode", "plabel")}
    wt = convert_to_watch_event(h["etype"], h["has_prev"], sel.matches(h["ns"], h["node"], h["label"]),
                                sel.matches(h["pns"], h["pnode"], h["plabel"]))
    keep = wt != NO_EVENT
    return h["rv"][keep], wt[keep]


def assert_no_event_lost_duplicated_or_reordered(r: Reflector, cache: WatchCache):
    rvs, types = watched_events(cache, r.selector)
    ends = r.session_end_rv + [r.rv]
    assert len(r.session_list_rv) == len(ends)
    for s, (list_rv, end_rv) in enumerate(zip(r.session_list_rv, ends), start=1):
        got = [(rv, t) for (sess, rv, _k, t) in r.delivered if sess == s]
        m = (rvs > list_rv) & (rvs <= end_rv)
        assert got == list(zip(rvs[m].tolist(), types[m].tolist())), f"session {s} of {r.name}"


SELECTORS = [Selector(), Selector(node=0), Selector(node=-1), Selector(namespace=1), Selector(label=2),
             Selector(node=1, label=0)]


@SETTINGS
@given(seed=st.integers(0, 10**6), n=st.integers(0, 250), cap=st.sampled_from([2, 3, 4, 8]),
       variant=st.sampled_from(["off", "article", "upstream"]), restart=st.booleans(),
       reconnect=st.sampled_from(["warm", "cold"]), n_disc=st.integers(0, 12),
       delay=st.sampled_from([0.0, 0.7, 5.0]))
def test_informers_equal_the_store_with_no_event_lost(seed, n, cap, variant, restart, reconnect, n_disc, delay):
    rng = np.random.default_rng(seed)
    n0 = int(rng.integers(0, 8))
    objs = ObjectSet(key=np.arange(n0), ns=rng.integers(0, 3, n0), node=rng.integers(-1, 3, n0),
                     label=rng.integers(0, 3, n0), size=np.full(n0, 10), rv=np.arange(1, n0 + 1))
    wp = {"lower_bound_capacity": cap, "upper_bound_capacity": 2 * cap, "event_fresh_duration": 2.0,
          "default_bookmark_frequency": 3.0, "bookmark_before_deadline": 0.5}
    cache = WatchCache(initial=objs, list_rv=20, params=wp)
    ev = churn_stream(rng, n, 12, 21, range(n0))
    end = float(ev.time[-1]) + 1.0 if n else 10.0
    refl = [Reflector(s, rng.uniform(4.0, 12.0, size=400), name=str(i), bookmarks=variant, params=wp)
            for i, s in enumerate(SELECTORS)]
    disc = [(float(rng.uniform(0, end)), int(rng.integers(0, len(refl)))) for _ in range(n_disc)]
    run = simulate_exact(cache, ev, refl, until=end, restart_at=(end / 2 if restart else None),
                         reconnect=reconnect, disconnects=disc, reconnect_delay=delay,
                         watch_starts=-rng.uniform(0, 4.0, size=len(refl)))
    for r in run.reflectors:
        assert r.in_sync_with(cache), r.name
        assert_no_event_lost_duplicated_or_reordered(r, cache)
        assert r.rv <= cache.current_rv
        lists = r.total().relists
        assert len(r.session_list_rv) == 1 + lists  # every 410 was followed by exactly one relist


def test_the_exact_model_exercises_410s_relists_replays_and_bookmarks():
    """The property test above is not vacuous: this configuration goes through every path."""
    rng = np.random.default_rng(5)
    wp = {"lower_bound_capacity": 3, "upper_bound_capacity": 6, "event_fresh_duration": 2.0,
          "default_bookmark_frequency": 3.0, "bookmark_before_deadline": 0.5}
    cache = WatchCache(list_rv=20, params=wp)
    ev = churn_stream(rng, 300, 12, 21, [])
    refl = [Reflector(s, rng.uniform(4.0, 12.0, size=400), name=str(i), bookmarks="upstream", params=wp)
            for i, s in enumerate(SELECTORS)]
    disc = [(float(rng.uniform(0, 150)), int(rng.integers(0, len(refl)))) for _ in range(20)]
    run = simulate_exact(cache, ev, refl, restart_at=100.0, disconnects=disc, reconnect_delay=3.0)
    tot = sum((r.total() for r in run.reflectors), start=type(run.steady)())
    assert tot.relists > 0 and tot.resumed > 0 and tot.events_sent > 0 and tot.events_scanned > tot.events_sent
    assert sum(r.bookmarks_received for r in run.reflectors) > 0
    assert all(r.in_sync_with(cache) for r in run.reflectors)


def test_a_duplicate_or_backward_event_is_refused():
    r = Reflector(Selector(), [10.0])
    r.deliver(5, 1, ADDED, 0, 0, 0)
    with pytest.raises(KscaleError):
        r.deliver(5, 1, MODIFIED, 0, 0, 0)
    with pytest.raises(KscaleError):
        r.bookmark(4)


# --------------------------------------------------------------------------------------
# The fleet equals the exact model
# --------------------------------------------------------------------------------------

SMALL = {"nodes": 6, "pods": 150, "namespaces": 3, "label_values": 4, "pod_creates_per_s": 0.6,
         "pod_deletes_per_s": 0.4, "pod_background_updates_per_hour": 80.0, "node_lease_renew_interval": 5.0,
         "core_events_per_s": 1.0}


def fleet_and_exact(seed, variant, reconnect, at, n_nodes, n_ctrl, n_ns, n_label, cap, min_wt, n_sched=1):
    churn = dict(SMALL, nodes=n_nodes)
    w = generate_cluster_writes(seed, at + 20.0, churn)
    rng = np.random.default_rng(seed + 1)
    clients = ClientSelectors.concat([
        ClientSelectors.kubelets(n_nodes), ClientSelectors.everything(n_ctrl),
        # kube-scheduler's watch of unscheduled pods (spec.nodeName=""): a bind moves a pod out
        ClientSelectors(np.full(n_sched, FIELD_NODE), np.full(n_sched, -1)),
        ClientSelectors(np.full(n_ns, FIELD_NAMESPACE), rng.integers(0, 3, n_ns)),
        ClientSelectors(np.full(n_label, FIELD_LABEL), rng.integers(0, 4, n_label))])
    timeouts = draw_watch_timeouts(rng, len(clients), 80, min_wt)
    phase = rng.random(len(clients))
    wp = {"lower_bound_capacity": cap, "upper_bound_capacity": 4 * cap, "event_fresh_duration": 6.0,
          "default_bookmark_frequency": 4.0}
    cache = WatchCache(initial=w.initial_pods, list_rv=w.list_rv, params=wp)
    fleet = ReflectorFleet(cache, clients, bookmarks=variant, timeouts=timeouts, phase=phase,
                           params={**wp, "min_watch_timeout": min_wt})
    cache.add_events(w.pods)
    out = fleet.restart(at, reconnect)
    cache2 = WatchCache(initial=w.initial_pods, list_rv=w.list_rv, params=wp)
    refl = [Reflector(s, timeouts[i], name=str(i), bookmarks=variant, params=wp)
            for i, s in enumerate(clients.to_selectors())]
    run = simulate_exact(cache2, w.pods, refl, watch_starts=-phase * timeouts[:, 0], until=at,
                         restart_at=at, reconnect=reconnect)
    return fleet, out, run


@SETTINGS
@given(seed=st.integers(0, 10**6), variant=st.sampled_from(["off", "article", "upstream"]),
       reconnect=st.sampled_from(["warm", "cold"]), at=st.floats(5.0, 150.0), n_nodes=st.integers(1, 6),
       n_ctrl=st.integers(0, 2), n_ns=st.integers(0, 2), n_label=st.integers(0, 2),
       cap=st.sampled_from([2, 4, 8, 32]), min_wt=st.sampled_from([5.0, 12.0, 30.0]), n_sched=st.integers(0, 1))
def test_fleet_equals_exact_reflectors(seed, variant, reconnect, at, n_nodes, n_ctrl, n_ns, n_label, cap, min_wt,
                                       n_sched):
    fleet, out, run = fleet_and_exact(seed, variant, reconnect, at, n_nodes, n_ctrl, n_ns, n_label, cap, min_wt,
                                      n_sched)
    assert_fleet_equals_exact(fleet, out, run)


def assert_fleet_equals_exact(fleet, out, run):
    assert fleet.steady == run.steady
    assert fleet.deliveries == run.deliveries
    assert out.totals == run.restart
    assert np.array_equal(out.rv_before, run.restart_rv_before)
    assert np.array_equal(out.too_old, run.restart_too_old)
    per = [r.totals["restart"] for r in run.reflectors]
    assert out.events_scanned.tolist() == [t.events_scanned for t in per]
    assert out.objects_relisted.tolist() == [t.objects_relisted for t in per]
    assert fleet.rv.tolist() == [r.rv for r in run.reflectors]  # RVs after the reconnect
    assert fleet.initial_objects == sum(r.initial_objects for r in run.reflectors)
    # the 410 decision is the rule RV < oldest - 1
    assert np.array_equal(out.too_old, out.rv_before < out.oldest_rv - 1)


def test_fleet_paths_are_exercised_by_the_equivalence_cases():
    seen = set()
    for seed in range(6):
        for variant in ("off", "upstream"):
            fleet, out, run = fleet_and_exact(seed, variant, "warm", 120.0, 6, 1, 1, 1, 4, 12.0)
            assert_fleet_equals_exact(fleet, out, run)
            if fleet.steady.relists:
                seen.add("timeout 410")
            if out.totals.relists:
                seen.add("restart 410")
            if out.totals.events_scanned:
                seen.add("restart replay")
    assert seen == {"timeout 410", "restart 410", "restart replay"}


# --------------------------------------------------------------------------------------
# The mechanism's consequences at a moderate scale (results, not typed-in figures)
# --------------------------------------------------------------------------------------


def test_bookmarks_keep_kubelets_inside_the_tape():
    """Upstream sets eventFreshDuration = bookmark period + 15 s so that a watcher's last
    bookmark is still on the tape: with periodic bookmarks no kubelet gets a 410 at the
    restart, and with a bookmark 2 s before every deadline no watch timeout does."""
    w = generate_cluster_writes(3, 900.0, {"nodes": 300, "pods": 6000, "pod_creates_per_s": 6.0,
                                           "pod_deletes_per_s": 6.0})
    cache = WatchCache(initial=w.initial_pods, list_rv=w.list_rv)
    clients = default_clients(300, 2)
    fleets = {v: ReflectorFleet(cache, clients, bookmarks=v, seed=9) for v in ("off", "article", "upstream")}
    cache.add_events(w.pods)
    out = {v: f.restart(900.0) for v, f in fleets.items()}
    assert fleets["off"].steady.relists > 0  # selective watchers fall off the tape without bookmarks
    assert fleets["article"].steady.relists == fleets["upstream"].steady.relists == 0
    assert fleets["upstream"].steady.events_scanned == fleets["article"].steady.events_scanned
    assert fleets["upstream"].steady.events_scanned < fleets["off"].steady.events_scanned
    assert out["off"].totals.relists > 0
    assert out["upstream"].totals.relists == 0
    age = cache.rv_at_times(np.array([900.0 - 60.0]))[0]
    assert np.all(out["upstream"].rv_before >= age)  # nobody is older than one bookmark period


def test_fleet_is_deterministic_and_validates_input():
    w = generate_cluster_writes(4, 100.0, SMALL)
    cache = WatchCache(initial=w.initial_pods, list_rv=w.list_rv)
    clients = default_clients(6, 1)
    a = ReflectorFleet(cache, clients, seed=3)
    b = ReflectorFleet(cache, clients, seed=3)
    cold = ReflectorFleet(cache, clients, seed=3)
    cache.add_events(w.pods)
    oa, ob = a.restart(90.0), b.restart(90.0)
    assert oa.totals == ob.totals and np.array_equal(oa.rv_before, ob.rv_before)
    a.advance(95.0)  # a warm fleet goes on after the restart
    with pytest.raises(ParameterError):
        a.advance(50.0)
    cold.restart(90.0, "cold")
    with pytest.raises(KscaleError):
        cold.advance(95.0)
    with pytest.raises(ParameterError):
        ReflectorFleet(cache, clients, bookmarks="often")
    with pytest.raises(ParameterError):
        ReflectorFleet(cache, clients, timeouts=np.ones((2, 2)))
    with pytest.raises(ParameterError):
        ReflectorFleet(cache, clients, phase=np.full(len(clients), 2.0))
    with pytest.raises(ParameterError):
        ReflectorFleet(cache, clients, params={"min_watch_timeout": 1.0})
    with pytest.raises(ParameterError):
        a.restart(99.0, "lukewarm")
    with pytest.raises(ParameterError):
        ClientSelectors.from_selectors([Selector(node=1, label=2)])


def test_watch_timeouts_are_whole_seconds_between_min_and_twice_min():
    t = draw_watch_timeouts(np.random.default_rng(0), 1000, 3)
    assert t.shape == (1000, 3) and t.min() >= 300 and t.max() <= 599
    assert np.all(t == np.floor(t)) and len(np.unique(t)) > 200
    with pytest.raises(ParameterError):
        draw_watch_timeouts(np.random.default_rng(0), 3, 3, min_watch_timeout=0.5)
    assert all(p.source and p.unit is not None for p in PARAMS)


def test_fleet_next_bookmark_times_follow_the_schedule():
    from kscale_lab.apiserver.watchcache import next_bookmark_time

    cache = WatchCache(list_rv=1)
    clients = ClientSelectors.kubelets(50)
    for variant in ("off", "article", "upstream"):
        f = ReflectorFleet(cache, clients, bookmarks=variant, seed=2, start_time=100.0)
        got = f.next_bookmark_times(100.0)
        for i in range(50):
            s, d = f.watch_start[i], f.deadline[i]
            sched, k = [], 0
            while (t := next_bookmark_time(s, d, k, variant)) is not None:
                sched.append(t)
                k += 1
            later = [t for t in sched if t > 100.0]
            if later:
                assert got[i] == pytest.approx(later[0])
            else:
                assert np.isnan(got[i])


# --------------------------------------------------------------------------------------
# Bookkeeping of the fleet: recorded watch restarts and traced clients' RVs
# --------------------------------------------------------------------------------------

@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), variant=st.sampled_from(["off", "article", "upstream"]),
       cap=st.sampled_from([2, 8, 32]), min_wt=st.sampled_from([5.0, 12.0]),
       times=st.lists(st.floats(0.0, 60.0), min_size=1, max_size=3))
def test_traced_rvs_equal_the_exact_reflectors_at_any_time(seed, variant, cap, min_wt, times):
    """What the fleet says a traced client's RV was at time t is what an exact
    reflector holds at t (deadlines, bookmarks and events at or before t applied)."""
    w = generate_cluster_writes(seed, 61.0, SMALL)
    rng = np.random.default_rng(seed + 2)
    clients = ClientSelectors.concat([ClientSelectors.kubelets(6), ClientSelectors.everything(1),
                                      ClientSelectors(np.full(1, FIELD_LABEL), np.array([1]))])
    timeouts = draw_watch_timeouts(rng, len(clients), 40, min_wt)
    phase = rng.random(len(clients))
    wp = {"lower_bound_capacity": cap, "upper_bound_capacity": 4 * cap, "event_fresh_duration": 6.0,
          "default_bookmark_frequency": 4.0}
    cache = WatchCache(initial=w.initial_pods, list_rv=w.list_rv, params=wp)
    trace = list(range(len(clients)))
    fleet = ReflectorFleet(cache, clients, bookmarks=variant, timeouts=timeouts, phase=phase,
                           params={**wp, "min_watch_timeout": min_wt}, record=True, trace=trace)
    cache.add_events(w.pods)
    fleet.advance(61.0)
    for t in times:
        cache2 = WatchCache(initial=w.initial_pods, list_rv=w.list_rv, params=wp)
        refl = [Reflector(s, timeouts[i], name=str(i), bookmarks=variant, params=wp)
                for i, s in enumerate(clients.to_selectors())]
        simulate_exact(cache2, w.pods, refl, watch_starts=-phase * timeouts[:, 0], until=t)
        got = [int(fleet.trace_rvs(i, [t])[0]) for i in trace]
        assert got == [r.rv for r in refl], t
    # the recorded batches add up to the totals
    rec = fleet.rewatches
    assert sum(b.client.size for b in rec) == fleet.steady.watches
    assert sum(int(b.too_old.sum()) for b in rec) == fleet.steady.relists
    assert sum(int(b.events_scanned.sum()) for b in rec) == fleet.steady.events_scanned
    assert sum(int(b.objects_relisted.sum()) for b in rec) == fleet.steady.objects_relisted


def test_trace_and_cold_list_rv_validate_input():
    w = generate_cluster_writes(4, 100.0, SMALL)
    cache = WatchCache(initial=w.initial_pods, list_rv=w.list_rv)
    clients = default_clients(6, 1)
    with pytest.raises(ParameterError):
        ReflectorFleet(cache, clients, trace=[99])
    f = ReflectorFleet(cache, clients, seed=3, trace=[0])
    g = ReflectorFleet(cache, clients, seed=3)
    cache.add_events(w.pods)
    with pytest.raises(ParameterError):
        f.trace_rvs(1, [5.0])             # not traced
    with pytest.raises(ParameterError):
        f.trace_rvs(0, [50.0])            # not processed yet
    with pytest.raises(ParameterError):
        f.restart(90.0, "cold", cold_list_rv=1)   # behind the cache
    # a cold cache that LISTs at etcd's newer global revision sends every client to relist
    out = g.restart(90.0, "cold", cold_list_rv=int(w.rv[-1]) + 1)
    assert out.too_old.all() and out.totals.relists == len(clients)

"""etcd's paged quorum reads and consistent reads from the watch cache: the mechanisms.

The paging loop and the progress requester are checked against independent, literal
references (item by item, event by event); the consistency property is checked by
replaying writes into a real :class:`WatchCache`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kscale_lab.apiserver.consistent_read import (
    APISERVER_READ_PARAMS,
    READ_PARAMS,
    ReadCosts,
    ReadTrace,
    WriteLog,
    cache_list,
    cache_rv_at,
    derived_cache_filter_cpu_per_object,
    derived_storage_decode_cpu_per_object,
    etcd_get,
    etcd_list,
    event_ready_times,
    notification_times,
    progress_requester,
    read_after_write_probes,
    wait_until_fresh,
)
from kscale_lab.apiserver.watchcache import (
    DELETED,
    RTYPE_POD,
    ObjectSet,
    Selector,
    WatchCache,
    generate_cluster_writes,
)
from kscale_lab.errors import ParameterError
from kscale_lab.etcd.range_reads import (
    ETCD_READ_PARAMS,
    KEP2340_TEST,
    MAX_LIMIT,
    derived_etcd_range_cpu_per_object,
    plan_list,
    range_work,
    round_trips,
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------------------
# store.go GetList, item by item (an independent reference)
# --------------------------------------------------------------------------------------


def ref_get_list(match, sizes, limit, grow, max_limit=MAX_LIMIT):
    """Literal port of the etcd3 store's loop and kubectl's FollowContinue:
    returns [(fetched, evaluated, returned, api_page)] per etcd range."""
    n = len(match)
    out = []
    pos, page = 0, 0
    paging = limit > 0
    while True:
        cur, kept, has_more = limit, 0, False
        while True:
            kvs = list(range(pos, min(pos + cur, n))) if paging else list(range(pos, n))
            has_more = (pos + len(kvs)) < n
            evaluated = 0
            got = 0
            last = pos - 1
            for i in kvs:
                if paging and kept >= limit:
                    has_more = True
                    break
                last = i
                evaluated += 1
                if match[i]:
                    kept += 1
                    got += 1
            out.append((len(kvs), evaluated, got, page))
            pos = last + 1
            if not has_more or not paging:
                break
            if kept >= limit:
                break
            if grow and cur < max_limit:
                cur = min(cur * 2, max_limit)
        page += 1
        if not (has_more and paging):
            break
    return out


@SETTINGS
@given(n=st.integers(0, 3000), density=st.floats(0, 1), limit=st.sampled_from([0, 1, 3, 50, 500, 4000]),
       grow=st.booleans(), max_limit=st.sampled_from([7, 100, MAX_LIMIT]), seed=st.integers(0, 10**6))
def test_plan_list_matches_an_item_by_item_reference(n, density, limit, grow, max_limit, seed):
    rng = np.random.default_rng(seed)
    match = rng.random(n) < density
    sizes = rng.integers(1, 5000, size=n).astype(float)
    plan = plan_list(match, sizes, limit, grow=grow, max_limit=max_limit)
    ref = ref_get_list(match.tolist(), sizes, limit, grow, max_limit)
    assert list(plan.fetched) == [r[0] for r in ref]
    assert list(plan.evaluated) == [r[1] for r in ref]
    assert list(plan.returned) == [r[2] for r in ref]
    assert list(plan.api_page) == [r[3] for r in ref]
    # the whole list comes back, every matching object exactly once
    assert plan.objects_returned == int(match.sum())
    assert plan.objects_evaluated == n
    assert plan.bytes_returned == pytest.approx(float(sizes[match].sum()))
    if limit:
        per_page = np.bincount(plan.api_page, weights=plan.returned)
        assert (per_page <= limit).all()


@SETTINGS
@given(n=st.integers(1, 300_000), limit=st.integers(20, 20_000), grow=st.booleans())
def test_round_trips_closed_form(n, limit, grow):
    match = np.zeros(n, dtype=bool)              # a selector that never fills the bucket
    plan = plan_list(match, np.ones(n), limit, grow=grow)
    assert plan.etcd_ranges == round_trips(n, limit, grow)
    assert plan.api_pages == 1


def test_one_nodes_pods_take_400_round_trips_in_2019_and_24_today():
    n = 200_000
    match = np.zeros(n, dtype=bool)
    match[::10_000] = True                       # 20 pods of one node, spread through the key space
    old = plan_list(match, np.full(n, 2500.0), 500, grow=False)
    new = plan_list(match, np.full(n, 2500.0), 500, grow=True)
    assert old.etcd_ranges == 400 and new.etcd_ranges == 24
    assert old.objects_fetched == new.objects_fetched == n and old.objects_returned == 20
    assert old.peak_response_bytes == 500 * 2500.0
    assert new.peak_response_bytes == MAX_LIMIT * 2500.0
    whole = plan_list(match, np.full(n, 2500.0), 0)
    assert whole.etcd_ranges == 1 and whole.peak_response_bytes == n * 2500.0


def test_plan_list_rejects_bad_input():
    with pytest.raises(ParameterError, match="limit"):
        plan_list(np.ones(3, bool), np.ones(3), -1)
    with pytest.raises(ParameterError, match="sizes"):
        plan_list(np.ones(3, bool), np.ones(4), 10)


def test_quorum_reads_cost_every_member_and_take_longer():
    lin = range_work([500], [1.25e6], True)
    ser = range_work([500], [1.25e6], False)
    p = ETCD_READ_PARAMS.defaults()
    assert lin.latency - ser.latency == pytest.approx(p["etcd_read_index_latency"])
    assert lin.cpu - ser.cpu == pytest.approx(p["etcd_members"] * p["etcd_read_index_cpu"])
    assert lin.member_messages == p["etcd_members"] - 1 and ser.quorum_reads == 0
    five = range_work([500], [1.25e6], True, {"etcd_members": 5})
    assert five.cpu > lin.cpu
    assert range_work([500], [2.5e6]).latency > lin.latency


def test_costs_are_derived_from_kep2340s_published_table():
    k = KEP2340_TEST
    assert derived_storage_decode_cpu_per_object() == APISERVER_READ_PARAMS["storage_decode_cpu_per_object"].default
    assert derived_cache_filter_cpu_per_object() == APISERVER_READ_PARAMS["cache_filter_cpu_per_object"].default
    assert derived_etcd_range_cpu_per_object() == ETCD_READ_PARAMS["etcd_range_cpu_per_object"].default
    # the derivation, re-done: per LIST CPU = objects x per-object + bytes x per-byte
    c = ReadCosts.from_params()
    n, b = k["objects_small"], k["objects_small"] * k["object_bytes_small"]
    api = n * c.storage_decode_cpu_per_object + b * c.protobuf_decode_ns_per_byte * 1e-9
    assert api == pytest.approx((k["off_small_apiserver_cores"] - k["baseline_apiserver_cores"]) / k["off_small_qps"])
    # an independent check: etcd's own log of one LIST of 7,130 pods, 13.3 MB, took 131 ms (blog.palark.com)
    w = range_work([7130], [13_313_287], False)
    assert w.latency == pytest.approx(0.131, rel=0.25)


# --------------------------------------------------------------------------------------
# The progress requester: a literal event-by-event port of the Go loop
# --------------------------------------------------------------------------------------


def ref_requester(s, e, period, delay):
    """conditionalProgressRequester.Run with a timer channel, simulated event by event.

    The timer is created expired-in-the-past (the requester has been idle). State:
    ``deadline`` of the running timer, ``chan`` (a fired value waiting to be read),
    ``waiting`` reads. The goroutine blocks on the condition variable while no read
    waits; otherwise it blocks on the timer channel."""
    reads = sorted(range(len(s)), key=lambda i: (s[i], i))
    ready = [None] * len(s)
    done_at = {}
    fires = []
    deadline, chan = None, True
    waiting = set()
    t = -math.inf
    pending = list(reads)
    while pending or waiting:
        cands = []
        if pending:
            cands.append(s[pending[0]])
        if waiting:
            cands.append(min(done_at[i] for i in waiting))
        if deadline is not None:
            cands.append(deadline)
        t = min(cands)
        # 1. completions at t
        for i in [i for i in waiting if done_at[i] <= t]:
            waiting.discard(i)
        # 2. timer expiry at t: the value sits in the channel
        if deadline is not None and deadline <= t:
            deadline, chan = None, True
        # 3. registrations at t (reads fresh on arrival never register)
        while pending and s[pending[0]] <= t:
            i = pending.pop(0)
            if e[i] <= s[i]:
                ready[i] = s[i]
                continue
            ready[i] = e[i]
            done_at[i] = e[i]
            waiting.add(i)
        # 4. the goroutine: with someone waiting it reads the channel at once if a value is there
        if chan and waiting:
            chan = False
            deadline = t + period
            fires.append(t)
            for i in waiting:
                if t + delay < done_at[i]:
                    done_at[i] = t + delay
                    ready[i] = t + delay
        elif chan and not waiting and deadline is None:
            pass  # expired timer waits in the channel (NoNeed + Reset(0) lands here too)
    return np.array(ready, dtype=float), np.array(fires)


@SETTINGS
@given(n=st.integers(1, 15), seed=st.integers(0, 10**6), period=st.sampled_from([0.05, 0.1, 0.3]),
       delay=st.sampled_from([0.0005, 0.01]))
def test_progress_requester_matches_the_go_loop(n, seed, period, delay):
    rng = np.random.default_rng(seed)
    s = np.round(rng.uniform(0, 1.0, size=n), 4)
    e = s + np.where(rng.random(n) < 0.3, -0.01, np.round(rng.exponential(0.2, size=n), 4))
    e[rng.random(n) < 0.2] = np.inf                 # quiet resource: only progress helps
    ready, fires = progress_requester(s, e, period, delay)
    rr, rf = ref_requester(s.tolist(), e.tolist(), period, delay)
    assert np.allclose(ready, rr)
    assert np.allclose(fires, rf)
    assert (ready >= s).all()
    assert (ready <= np.maximum(s, np.minimum(e, s + period + delay)) + 1e-12).all()


def test_an_idle_requester_asks_at_once_and_then_every_period():
    ready, fires = progress_requester([0.0, 0.01, 0.02, 0.25], [np.inf] * 4, 0.1, 0.001)
    assert list(fires) == pytest.approx([0.0, 0.1, 0.25])
    # the first read is served by the fire at 0; the next two wait for the fire at 0.1;
    # at 0.2 nobody waited, so the timer expired and the read at 0.25 fires at once
    assert list(ready) == pytest.approx([0.001, 0.101, 0.101, 0.251])


# --------------------------------------------------------------------------------------
# Freshness and read-after-write consistency on a real watch cache
# --------------------------------------------------------------------------------------


def small_log(seed, duration=20.0, churn=5.0):
    w = generate_cluster_writes(seed, duration, {"nodes": 50, "pods": 1000, "pod_creates_per_s": churn,
                                                 "pod_deletes_per_s": churn, "core_events_per_s": 10.0})
    m = w.rtype == RTYPE_POD
    return w, WriteLog(w.rv, w.time, w.rv[m], w.time[m], w.list_rv)


def test_revision_and_event_ready_times():
    log = WriteLog([11, 12, 13, 14], [1.0, 2.0, 3.0, 4.0], [12, 14], [2.0, 4.0], 10)
    assert list(log.revision_at([0.5, 1.0, 3.5, 9])) == [10, 11, 13, 14]
    c = ReadCosts.from_params({"etcd_watch_latency": 0.1})
    assert list(event_ready_times(log, [10, 11, 12, 13, 15], c)) == [-np.inf, 2.1, 2.1, 4.1, np.inf]
    with pytest.raises(ParameterError):
        WriteLog([2, 1], [0, 1], [], [], 0)


def test_article_asks_once_per_waiting_read_upstream_every_period():
    log = WriteLog(np.arange(1, 1001), np.linspace(0, 10, 1000), [], [], 0)    # a quiet resource
    c = ReadCosts.from_params()
    t0 = np.linspace(1, 2, 101)
    art = wait_until_fresh(t0, log, "article", c)
    up = wait_until_fresh(t0, log, "upstream", c)
    assert art.progress_requests.size == 101
    assert up.progress_requests.size == 11              # every 100 ms over one second
    assert np.allclose(art.wait, c.progress_notify_latency)
    assert up.wait.max() <= c.progress_request_period + c.progress_notify_latency + 1e-12
    assert art.by_progress.all() and up.by_progress.all()
    with pytest.raises(ParameterError, match="setting"):
        wait_until_fresh(t0, log, "sometimes", c)


def test_a_lagging_watch_times_out_after_block_timeout():
    _, log = small_log(1)
    c = ReadCosts.from_params({"watch_lag": 5.0})
    fr = wait_until_fresh([5.0, 6.0], log, "upstream", c)
    assert fr.timed_out.all() and np.allclose(fr.wait, c.block_timeout)
    ok = wait_until_fresh([5.0, 6.0], log, "upstream", ReadCosts.from_params({"watch_lag": 1.0}))
    assert not ok.timed_out.any()


def replay(w, log, until, progress_times, costs):
    """A real WatchCache fed with the pod events and progress notifications delivered
    at or before ``until``, in delivery order."""
    cache = WatchCache("pods", w.initial_pods, w.list_rv)
    ev_d = w.pods.time + costs.etcd_watch_latency + costs.watch_lag   # the model's own float order
    until = until + 1e-9                                 # float sums of the same delays
    k = int(np.searchsorted(ev_d, until, side="right"))
    p = np.sort(np.asarray(progress_times, dtype=float))
    p_d = notification_times(log, p, costs)
    p_rv = log.revision_at(p)
    items = [(ev_d[i], 0, i) for i in range(k)] + [(p_d[j], 1, j) for j in range(p.size) if p_d[j] <= until]
    items.sort()
    for when, kind, i in items:
        if kind == 0:
            cache.add_events(w.pods.take(slice(i, i + 1)))
        elif p_rv[i] > cache.current_rv:
            cache.progress_notify(int(p_rv[i]), max(when, 0.0))
    return cache


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), setting=st.sampled_from(["article", "upstream"]),
       delay=st.sampled_from([0.0, 0.002, 0.05]), lag=st.sampled_from([0.0, 0.2]))
def test_a_consistent_read_after_an_acknowledged_write_always_sees_it(seed, setting, delay, lag):
    w, log = small_log(seed % 50)
    costs = ReadCosts.from_params({"watch_lag": lag})
    rng = np.random.default_rng(seed)
    j = int(rng.integers(0, log.rv.size // 2))
    t_ack = float(log.time[j])                           # acknowledged at commit
    t_read = t_ack + delay
    fr = wait_until_fresh([t_read], log, setting, costs)
    assert not fr.timed_out[0]
    assert fr.rv[0] >= log.rv[j]                         # rv@t0 covers every acknowledged write
    cache = replay(w, log, fr.ready[0], fr.progress_requests, costs)
    assert cache.current_rv >= fr.rv[0]                  # the cache really is fresh when it answers
    assert cache.current_rv == cache_rv_at(log, [fr.ready[0]], fr.progress_requests, costs)[0]
    objs = cache.objects()
    key = int(w.pods.key[j])
    where = np.flatnonzero(objs.key == key)
    deleted = np.any((w.pods.key == key) & (w.pods.etype == DELETED) & (w.pods.rv >= log.rv[j])
                     & (w.pods.rv <= cache.current_rv))
    if where.size:
        assert objs.rv[where[0]] >= log.rv[j]            # the write (or a later one) is visible
    else:
        assert deleted                                   # gone only because this or a later write deleted it
    # the same cache answering resourceVersion=0 at t_read may miss it
    stale = replay(w, log, t_read, [], costs)
    sees0 = stale.current_rv >= log.rv[j]
    assert sees0 == (t_ack + costs.etcd_watch_latency + lag <= t_read)


def test_etcd_progress_notify_bug_breaks_consistency():
    """Without etcd's fix for #15220 a notification can overtake the event it covers: the
    cache believes it is fresh and answers without the write (why KEP-2340 requires
    etcd >= 3.4.25 / 3.5.8)."""
    _, log = small_log(4)
    rng = np.random.default_rng(1)
    fixed = read_after_write_probes(log, 3000, 0.002, "article", ReadCosts.from_params(), rng)
    buggy = read_after_write_probes(log, 3000, 0.002, "article",
                                    ReadCosts.from_params({"etcd_progress_notify_bug": True}), rng)
    assert fixed["consistent_sees"].all()
    assert (~buggy["consistent_sees"]).mean() > 0.05


def test_a_notification_never_overtakes_the_events_it_covers():
    log = WriteLog([1, 2, 3], [0.0, 0.001, 0.002], [2], [0.001], 0)
    c = ReadCosts.from_params({"etcd_watch_latency": 0.01})
    at = notification_times(log, [0.0015], c)[0]
    assert at == pytest.approx(0.001 + 0.01)             # waits for event rv 2 to be sent first
    bug = notification_times(log, [0.0015], ReadCosts.from_params({"etcd_watch_latency": 0.01,
                                                                  "etcd_progress_notify_bug": True}))[0]
    assert bug == pytest.approx(0.0015 + c.progress_notify_latency)


def test_probes_show_stale_rv0_reads_and_no_stale_consistent_reads():
    _, log = small_log(3)
    c = ReadCosts.from_params()
    rng = np.random.default_rng(0)
    for setting in ("off", "article", "upstream"):
        df = read_after_write_probes(log, 2000, 0.005, setting, c, rng)
        assert df["consistent_sees"].all()
        share = 1 - df["rv0_sees"].mean()
        assert share == pytest.approx(1 - math.exp(-c.etcd_watch_latency / 0.005), abs=0.04)
    slow = read_after_write_probes(log, 2000, 0.5, "article", c, rng)
    assert (1 - slow["rv0_sees"].mean()) < 0.02
    lagging = ReadCosts.from_params({"watch_lag": 5.0})
    art = read_after_write_probes(log, 200, 0.005, "article", lagging, rng)
    up = read_after_write_probes(log, 200, 0.005, "upstream", lagging, rng)
    assert (art["consistent_status"] == 504).all() and not art["consistent_sees"].any()
    assert (up["consistent_status"] == 200).all() and up["consistent_sees"].all()


# --------------------------------------------------------------------------------------
# Request traces
# --------------------------------------------------------------------------------------


def test_cache_list_uses_the_index_and_etcd_list_decodes_everything():
    rng = np.random.default_rng(2)
    n = 20_000
    objs = ObjectSet(np.arange(n), rng.integers(0, 10, n), rng.integers(0, 1000, n), rng.integers(0, 5, n),
                     rng.integers(1000, 4000, n), np.arange(1, n + 1))
    cache = WatchCache("pods", objs, n)
    c = ReadCosts.from_params()
    sel = Selector(node=7)
    idx = cache_list("LIST pods", cache, sel, True, c)
    scan = cache_list("LIST pods", cache, sel, False, c)
    et, _ = etcd_list("LIST pods", objs, sel, 500, False, c)
    want = int((objs.node == 7).sum())
    assert idx.objects_returned == scan.objects_returned == et.objects_returned == want
    assert idx.objects_scanned == want and idx.index_used == "spec.nodeName"
    assert scan.objects_scanned == n and et.objects_decoded == n and et.etcd_ranges == n // 500
    assert idx.latency < scan.latency < et.latency
    assert et.quorum_reads == et.etcd_ranges and idx.quorum_reads == 0
    g = etcd_get("GET node", 15_000, c)
    assert g.quorum_reads == 1 and g.objects_decoded == 1


def test_trace_components_add_up_and_combine():
    c = ReadCosts.from_params()
    a = etcd_get("GET node", 15_000, c)
    b = etcd_get("GET node", 5_000, c)
    ab = a.combine(b, "both")
    assert ab.latency == pytest.approx(a.latency + b.latency)
    assert ab.quorum_reads == 2 and ab.kind == "both"
    assert ReadTrace("x", rtt=1.0, fresh=2.0, queue=3.0).latency == 6.0


def test_read_params_have_units_and_sources():
    for p in READ_PARAMS:
        assert p.unit is not None and p.source and p.doc

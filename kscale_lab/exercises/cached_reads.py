"""Checks for the cached-reads lab's exercises.

1. ``etcd_round_trips(n_objects, limit, grow)``: the store's paging loop, against
   ``plan_list`` on 16 lists (code that calls ``plan_list``, imported by the notebook for
   another cell, is refused: it would check nothing);
2. ``fresh_at(...)``: the article's wait-until-fresh rule, against the model on 75 reads;
3. ``breakeven_describes_per_hour(events, events_per_s, filter_cpu, update_cpu)``: the
   derivation of when an involvedObject index pays for its upkeep, evaluated on several
   event counts, rates and costs against the model (within 5 %). The checker never
   prints the model's figure nor says which way an answer is off.
"""

from __future__ import annotations

import math

import numpy as np

from . import Hints, Verdict, call_quiet, call_student, refuse_shortcut, verdict

EX1 = "Exercise 1 (etcd round trips of one node's pods)"
EX2 = "Exercise 2 (wait until fresh)"
EX3 = "Exercise 3 (add an index and measure)"

hint = Hints({
    1: ["The bucket never fills, so the store keeps asking for the next page until the key range ends.",
        "Count pages: each request takes `page` keys; with grow=True the page doubles after each request, "
        "up to 10,000.",
        "trips, page, left = 0, limit, n_objects; while left > 0: left -= page; trips += 1; "
        "if grow: page = min(2 * page, 10_000). At least one request, even for no objects."],
    2: ["Two ways to become fresh: an event at or above rv_t0 reaches the cache, or a progress notification "
        "does. Which comes first?",
        "Start waiting at t0 + rv_fetch. np.searchsorted(event_rv, rv_t0) finds the first event that is "
        "enough. The notification arrives at start + notify_delay, but never before the events at or below "
        "rv_at_request.",
        "by_event = arrival of the first event with rv >= rv_t0 (inf if none); if by_event <= start: return "
        "start; behind = arrival of the last event with rv <= rv_at_request; "
        "return min(by_event, max(start + notify_delay, behind))."],
    3: ["The index costs on every write to the events (an event created, an event expiring) and saves on "
        "every describe. Put both per hour, in CPU seconds.",
        "Each event is inserted when it is created and deleted when it expires: in steady state two index "
        "operations per event. Without the index the describe's events LIST looks at every stored event; "
        "with it, at the node's few.",
        "upkeep per hour = 2 x events_per_s x 3600 x update_cpu; saved per describe = events x filter_cpu "
        "(the node's own events are a handful); break-even = upkeep / saved."],
}, {1: EX1, 2: EX2, 3: EX3})


def check_round_trips(fn) -> Verdict:
    """``fn(n_objects, limit, grow)`` -> etcd range requests of a LIST whose selector
    matches fewer than ``limit`` objects (the bucket never fills). Compared with the
    store's paging loop (:func:`kscale_lab.etcd.range_reads.plan_list`)."""
    from ..etcd.range_reads import plan_list

    from ..apiserver.consistent_read import etcd_list

    bad = refuse_shortcut(EX1, fn, ("plan_list", "plan_work", "etcd_list"), objects=(plan_list, etcd_list))
    if bad:
        return bad
    cases = [(200_000, 500, False), (200_000, 500, True), (150_000, 500, True), (10_000, 500, False),
             (999, 1000, True), (1, 500, False), (30_000, 7, True), (120_001, 10_000, False)]
    rng = np.random.default_rng(11)
    cases += [(int(rng.integers(1, 300_000)), int(rng.choice([1, 50, 500, 3000])), bool(rng.integers(0, 2)))
              for _ in range(8)]
    for n, limit, grow in cases:
        got, bad = call_student(EX1, fn, n, limit, grow)
        if bad:
            return bad
        want = plan_list(np.zeros(n, dtype=bool), np.ones(n), limit, grow=grow).etcd_ranges
        if got != want:
            return verdict(EX1, "not yet right",
                           f"{n:,} objects, limit {limit}, {'doubling' if grow else 'fixed'} pages: the store makes "
                           f"{want} range requests; your function says {got}.")
    return verdict(EX1, "done", f"Your count matches the store's paging loop on {len(cases)} lists "
                                f"(400 round trips in 2019, 24 today for 200,000 pods).")


def _fresh_cases():
    """Reads against small seeded write logs, with the model's own answer."""
    from ..apiserver.consistent_read import ReadCosts, WriteLog, wait_until_fresh
    from ..apiserver.watchcache import RTYPE_POD, generate_cluster_writes

    out = []
    for seed, churn in ((1, 5.0), (2, 0.2), (3, 30.0)):
        w = generate_cluster_writes(seed, 20.0, {"nodes": 40, "pods": 800, "pod_creates_per_s": churn,
                                                 "pod_deletes_per_s": churn, "core_events_per_s": 5.0})
        m = w.rtype == RTYPE_POD
        log = WriteLog(w.rv, w.time, w.rv[m], w.time[m], w.list_rv)
        costs = ReadCosts.from_params({"etcd_watch_latency": 0.004})
        rng = np.random.default_rng(seed)
        t0 = np.sort(rng.uniform(1.0, 19.0, size=25))
        fr = wait_until_fresh(t0, log, "article", costs)
        arrival = log.time + costs.etcd_watch_latency
        for i in range(t0.size):
            s = t0[i] + costs.rv_fetch_latency
            out.append(dict(t0=float(t0[i]), rv_t0=int(fr.rv[i]), rv_at_request=int(log.revision_at([s])[0]),
                            event_rv=log.rv.copy(), event_arrival=arrival.copy(), rv_fetch=costs.rv_fetch_latency,
                            notify_delay=costs.progress_notify_latency, want=float(fr.ready[i])))
    return out


def check_fresh_at(fn) -> Verdict:
    """``fn(t0, rv_t0, rv_at_request, event_rv, event_arrival, rv_fetch, notify_delay)`` ->
    the time the cache can answer a consistent read (the article's rule). Compared with
    :func:`kscale_lab.apiserver.consistent_read.wait_until_fresh` on 75 reads."""
    cases = _fresh_cases()
    for c in cases:
        got, bad = call_student(EX2, fn, c["t0"], c["rv_t0"], c["rv_at_request"], c["event_rv"].copy(),
                                c["event_arrival"].copy(), c["rv_fetch"], c["notify_delay"])
        if bad:
            return bad
        try:
            g = float(got)
        except (TypeError, ValueError):
            return verdict(EX2, "not yet right", f"fresh_at must return a number of seconds; got {got!r}.")
        if not math.isclose(g, c["want"], rel_tol=0, abs_tol=1e-9):
            return verdict(EX2, "not yet right",
                           f"A read at t0={c['t0']:.4f} s needing rv {c['rv_t0']} is answered at "
                           f"{c['want']:.6f} s by the model; your function says {g:.6f} s.")
    return verdict(EX2, "done", f"Your rule agrees with the model on {len(cases)} reads, including those made fresh "
                                f"by an event and those that had to wait for a notification behind its events.")


def index_figures(overrides=None) -> dict:
    """The model's answer to exercise 3: describe-node speed-up from an involvedObject
    index on the events cache (article setting with ``events_watch_cache``), and the describes per hour that pay for
    the index's upkeep (an insert when an event is created, a delete when it expires)."""
    from ..labs.cached_reads import LAB

    o = dict(overrides or {})
    o.setdefault("events_watch_cache", True)    # the index is on the events cache an operator turns on
    without = LAB.run("article", dict(o, events_index=False, consistency_probes=10)).summary
    with_ = LAB.run("article", dict(o, events_index=True, consistency_probes=10)).summary
    p = with_["params"]
    upkeep_per_hour = with_["events_index_maintenance_ops_per_s"] * 3600 * p["index_update_cpu_per_op"]
    saved = without["describe_node_apiserver_cpu_seconds"] - with_["describe_node_apiserver_cpu_seconds"]
    return {"speedup": without["describe_node_seconds"] / with_["describe_node_seconds"],
            "breakeven_describes_per_hour": upkeep_per_hour / saved,
            "upkeep_cpu_seconds_per_hour": upkeep_per_hour, "cpu_saved_per_describe": saved}


#: (events stored, events created per second, index_update_cpu_per_op or None for the default)
INDEX_CASES = ((None, None, None), (60_000, None, None), (500_000, 200.0, None), (None, 100.0, 4e-6))


def check_index(fn, cases=INDEX_CASES, tolerance: float = 0.05) -> Verdict:
    """``fn(events, events_per_s, filter_cpu, update_cpu)`` -> describes per hour above
    which an involvedObject index on the events cache pays for its upkeep. Compared per
    case with :func:`index_figures` (the model run with and without the index)."""
    from ..labs.cached_reads import LAB

    if fn is None or not callable(fn):
        return verdict(EX3, "not done yet" if fn is None else "not yet right",
                       "Define breakeven_describes_per_hour(events, events_per_s, filter_cpu, update_cpu)."
                       if fn is None else f"breakeven_describes_per_hour must be a function; got {type(fn).__name__}.")
    for events, rate, upd in cases:
        o = {k: v for k, v in (("events", events), ("core_events_per_s", rate), ("index_update_cpu_per_op", upd))
             if v is not None}
        p = LAB.resolve("article", o)
        args = (int(p["events"]), float(p["core_events_per_s"]), float(p["cache_filter_cpu_per_object"]),
                float(p["index_update_cpu_per_op"]))
        got, bad = call_quiet(EX3, fn, *args)
        if bad:
            return bad
        want = index_figures(o)["breakeven_describes_per_hour"]
        if not math.isclose(got, want, rel_tol=tolerance):
            return verdict(EX3, "not yet right",
                           f"With {args[0]:,} events stored, {args[1]:g} created per second, filter_cpu {args[2]:.3g} s "
                           f"and update_cpu {args[3]:.3g} s, your formula gives {got:.3g} describes per hour; the "
                           f"model's break-even is not within {tolerance:.0%} of it. Check the derivation "
                           f"(hint(3) gives a start).")
    return verdict(EX3, "done", f"Your break-even agrees with the model within {tolerance:.0%} on {len(cases)} "
                                f"clusters: an index pays when reads that use it outweigh the writes that keep it.")

"""Checks for the cached-reads lab's exercises."""

from __future__ import annotations

import math

import numpy as np

from . import Verdict, call_student, verdict

EX1 = "Exercise 1 (etcd round trips of one node's pods)"
EX2 = "Exercise 2 (wait until fresh)"
EX3 = "Exercise 3 (add an index and measure)"


def check_round_trips(fn) -> Verdict:
    """``fn(n_objects, limit, grow)`` -> etcd range requests of a LIST whose selector
    matches fewer than ``limit`` objects (the bucket never fills). Compared with the
    store's paging loop (:func:`kscale_lab.etcd.range_reads.plan_list`)."""
    from ..etcd.range_reads import plan_list

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


def check_index(speedup, breakeven_describes_per_hour) -> Verdict:
    """The reader's two numbers against :func:`index_figures` (within 5 %)."""
    if speedup is None or breakeven_describes_per_hour is None:
        return verdict(EX3, "not done yet", "Set speedup and breakeven_describes_per_hour.")
    try:
        s, b = float(speedup), float(breakeven_describes_per_hour)
    except (TypeError, ValueError):
        return verdict(EX3, "not yet right", "Both answers must be numbers.")
    want = index_figures()
    if not math.isclose(s, want["speedup"], rel_tol=0.05):
        return verdict(EX3, "not yet right", f"With the index, describe node gets {want['speedup']:.2f}x faster in the "
                                             f"model; you said {s:.2f}x.")
    if not math.isclose(b, want["breakeven_describes_per_hour"], rel_tol=0.05):
        return verdict(EX3, "not yet right",
                       f"The index costs {want['upkeep_cpu_seconds_per_hour']:.3g} CPU-seconds per hour and saves "
                       f"{want['cpu_saved_per_describe']:.3g} per describe; your break-even is {b:.3g} per hour.")
    return verdict(EX3, "done", f"{want['speedup']:.1f}x faster, and the index pays for itself above "
                                f"{want['breakeven_describes_per_hour']:.2g} describes per hour.")

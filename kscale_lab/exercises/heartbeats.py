"""Checks for the heartbeat lab's exercises.

1. ``txlog_bytes_per_min(nodes, object_bytes, interval_s, wal_overhead_bytes)``: a formula,
   against what the simulation writes on three clusters;
2. ``not_ready(now, probe, grace)``: monitorNodeHealth's rule, vectorised;
3. ``cores_needed(heartbeat_cpu_cores, background_cpu_cores, apiservers)``: the derivation
   of the fewest cores per API server with which no node is wrongly marked NotReady,
   evaluated on several clusters against the event-level model (within 20 %). The checker
   never prints the model's answer nor says which way an answer is off.
"""

from __future__ import annotations

import numpy as np

from . import Hints, Verdict, call_quiet, call_student, verdict

EX1 = "Exercise 1 (transaction log per minute)"
EX2 = "Exercise 2 (the node monitor's verdict)"
EX3 = "Exercise 3 (how many cores do heartbeats need?)"

hint = Hints({
    1: ["etcd keeps every write: each heartbeat puts the whole Node object into the log.",
        "Writes per minute per node: 60 / interval_s. Bytes per write: the object plus the framing.",
        "nodes x (60 / interval_s) x (object_bytes + wal_overhead_bytes)."],
    2: ["The rule compares, for every node at once, how long ago its last heartbeat was with the grace period.",
        "now - probe is the age of each node's last heartbeat (a numpy array). Strictly more than grace: NotReady.",
        "return (now - np.asarray(probe)) > grace"],
    3: ["A node goes NotReady when its heartbeats wait longer than the grace period (40 s). When does a queue's "
        "wait grow without bound?",
        "lab.steady_state('off', overrides) gives the CPU the cluster asks of the API servers (heartbeat_cpu_cores "
        "and background_cpu_cores, in cores); they supply apiservers x cores.",
        "At a utilisation of 1 the queue grows until heartbeats time out: cores = (heartbeat + background cores) "
        "/ apiservers."],
}, {1: EX1, 2: EX2, 3: EX3})


def check_txlog(fn) -> Verdict:
    """``fn(nodes, object_bytes, interval_s, wal_overhead_bytes)`` -> WAL bytes per minute.

    Compared with what the simulation measures for Node-status heartbeats alone
    (no background load) on three small clusters.
    """
    from ..labs.heartbeats import LAB

    cases = [(1000, 15_000.0, 10.0), (3000, 40_000.0, 20.0), (500, 4_000.0, 5.0)]
    for nodes, size, interval in cases:
        overhead = LAB.params["etcd_wal_entry_overhead"].default
        got, bad = call_student(EX1, fn, nodes, size, interval, overhead)
        if bad:
            return bad
        r = LAB.run("off", {"nodes": nodes, "node_object_bytes": size, "node_status_update_frequency": interval,
                            "duration": 120.0, "pod_churn": 0.0, "other_requests": 0.0,
                            "quota_backend_bytes": 1024**4})
        want = r.summary["etcd_wal_bytes_per_min"]
        if not np.isfinite(got) or abs(got - want) > 0.03 * want:
            return verdict(EX1, "not yet right",
                           f"For {nodes:,} nodes, {size:,.0f} B every {interval:g} s the simulation writes "
                           f"{want / 1e6:,.1f} MB/min of WAL; your formula says {got / 1e6:,.1f} MB/min.")
    return verdict(EX1, "done", "Your formula matches the simulated WAL rate within 3 % on three clusters.")


def _reference_not_ready(now, probe, grace):
    return (now - np.asarray(probe, dtype=float)) > grace


def check_not_ready(fn) -> Verdict:
    """``fn(now, probe_timestamps, grace)`` -> bool array: True where NotReady."""
    rng = np.random.default_rng(7)
    cases = [(100.0, np.array([60.0, 59.9, 60.1, 100.0, 0.0]), 40.0)]
    for _ in range(20):
        n = int(rng.integers(1, 50))
        now = float(rng.uniform(0, 1000))
        cases.append((now, now - rng.uniform(0, 120, n), float(rng.choice([40.0, 50.0]))))
    for now, probe, grace in cases:
        got, bad = call_student(EX2, fn, now, probe.copy(), grace)
        if bad:
            return bad
        got = np.asarray(got)
        want = _reference_not_ready(now, probe, grace)
        if got.shape != want.shape or not np.array_equal(got.astype(bool), want):
            i = int(np.argmax(got.astype(bool) != want)) if got.shape == want.shape else 0
            return verdict(EX2, "not yet right",
                           f"At now={now:g} s with grace {grace:g} s, a node last heard of at "
                           f"{probe[i]:g} s should be {'NotReady' if want[i] else 'Ready'}.")
    return verdict(EX2, "done", "Your rule agrees with monitorNodeHealth on 21 cases, the 40 s boundary included.")


#: clusters for exercise 3: 10k nodes as in the article, fewer nodes, a bigger and rarer Node status
CORES_CASES = ({}, {"nodes": 6_000}, {"node_object_bytes": 30_000.0, "node_status_update_frequency": 20.0})


def _cores_case_text(o: dict) -> str:
    from ..labs.heartbeats import LAB

    p = LAB.resolve("off", o)
    return (f"{p['nodes']:,} nodes, a {p['node_object_bytes'] / 1000:g} KB Node every "
            f"{p['node_status_update_frequency']:g} s, {p['apiservers']} API servers")


def check_cores(fn, setting: str = "off", cases=CORES_CASES) -> Verdict:
    """``fn(heartbeat_cpu_cores, background_cpu_cores, apiservers)`` -> the fewest cores per
    API server with which no node is wrongly marked NotReady. Per case the inputs come from
    the closed form (:meth:`~kscale_lab.labs.heartbeats.HeartbeatsLab.steady_state`); the
    answer is checked by running the event-level model 20 % below it (some node must go
    NotReady) and 20 % above it (none may)."""
    from ..labs.heartbeats import LAB

    if fn is None or not callable(fn):
        return verdict(EX3, "not done yet" if fn is None else "not yet right",
                       "Define cores_needed(heartbeat_cpu_cores, background_cpu_cores, apiservers)."
                       if fn is None else f"cores_needed must be a function; got {type(fn).__name__}.")
    for o in cases:
        ss = LAB.steady_state(setting, o)
        n_api = int(LAB.resolve(setting, o)["apiservers"])
        a, bad = call_quiet(EX3, fn, ss.heartbeat_cpu_cores, ss.background_cpu_cores, n_api)
        if bad:
            return bad
        if not 0.05 <= a <= 1000:
            return verdict(EX3, "not yet right", f"For {_cores_case_text(o)} your formula gives {a:g} cores: "
                                                 f"expected between 0.05 and 1,000 cores per API server.")
        base = dict(o, quota_backend_bytes=1024**4, duration=300.0)
        below = LAB.run(setting, dict(base, apiserver_cores=a * 0.8)).summary["nodes_ever_notready"]
        above = LAB.run(setting, dict(base, apiserver_cores=a * 1.2)).summary["nodes_ever_notready"]
        if not (below > 0 and above == 0):
            return verdict(EX3, "not yet right",
                           f"For {_cores_case_text(o)} your formula gives {a:.3g} cores per API server; the model's "
                           f"fewest cores without a node wrongly NotReady are not within 20 % of it. Check the "
                           f"derivation (hint(3) gives a start).")
    return verdict(EX3, "done", f"Your formula finds the cores within 20 % on {len(cases)} clusters: a heartbeat "
                                f"misses the grace period once the API servers' queue grows without bound.")

"""Checks for the heartbeat lab's exercises."""

from __future__ import annotations

import numpy as np

from . import Verdict, call_student, verdict

EX1 = "Exercise 1 (transaction log per minute)"
EX2 = "Exercise 2 (the node monitor's verdict)"
EX3 = "Exercise 3 (how many cores do heartbeats need?)"


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


def check_cores(answer, setting: str = "off") -> Verdict:
    """``answer``: the fewest cores per API server (3 API servers, 10k nodes) with which
    no node is wrongly marked NotReady. Checked by running the model at the answer
    and just below it."""
    from ..labs.heartbeats import LAB

    if answer is None:
        return verdict(EX3, "not done yet", "Set cores_needed to your answer.")
    try:
        a = float(answer)
    except (TypeError, ValueError):
        return verdict(EX3, "not yet right", f"cores_needed must be a number; got {answer!r}.")
    base = {"quota_backend_bytes": 1024**4, "duration": 300.0}
    ok = LAB.run(setting, dict(base, apiserver_cores=a)).summary["nodes_ever_notready"] == 0
    below = LAB.run(setting, dict(base, apiserver_cores=max(a * 0.8, 0.1))).summary["nodes_ever_notready"] == 0
    if not ok:
        return verdict(EX3, "not yet right", f"With {a:g} cores per API server some nodes still go NotReady.")
    if below:
        return verdict(EX3, "not yet right", f"{a * 0.8:.2g} cores (20 % fewer) are still enough: look lower.")
    return verdict(EX3, "done", f"{a:g} cores per API server carry the heartbeats; 20 % fewer do not.")

"""Checks for the hot-standby lab's exercises.

1. The acquire rule: may a candidate take the Lease now? (client-go's ``tryAcquireOrRenew``.)
2. The worst-case takeover after a crash, from the three durations.
3. The largest clock-rate skew that keeps one leader.

Each checker compares the reader's code with an independent implementation written here,
on inputs where the likely wrong answers differ, and runs the lab's election model where a
bound is claimed. A verdict never prints the expected number.
"""

from __future__ import annotations

import math

import numpy as np

from . import Hints, Verdict, call_quiet, call_student, refuse_shortcut, verdict

EX1 = "Exercise 1 (the acquire rule)"
EX2 = "Exercise 2 (the worst-case takeover after a crash)"
EX3 = "Exercise 3 (how much clock skew is safe?)"

hint = Hints({
    1: ["Which clock may a candidate trust: the time written in the record, or its own?",
        "client-go remembers, on its own clock, when it last saw the record change (observed_time); the "
        "record's lease_duration_seconds counts from there. An empty holder is free; your own record is yours.",
        "Return True when the holder is empty, or is you, or when observed_time + lease_duration_seconds is "
        "not after now; renew_time plays no part."],
    2: ["Follow one standby: when does it last see the old leader's renewal, and when does it try after that?",
        "A standby tries every U[1, 2.2) x retry period. The crash may come just after a renewal the standby "
        "has not seen yet; it sees it at its next try, then waits lease_duration, then tries again.",
        "Two jittered retries and one lease duration; the renew deadline does not enter."],
    3: ["How long can a leader that cannot reach the API servers keep acting after its last renewal?",
        "It waits retry_period before the next renewal round and gives up renew_deadline after that round "
        "starts, on its own clock; a standby waits lease_duration on its clock after it saw the renewal.",
        "Two leaders are impossible while lease_duration / rate_fast > (retry_period + renew_deadline) / rate_slow."],
}, {1: EX1, 2: EX2, 3: EX3})

#: the lab's own answers: code that calls them checks nothing
_SHORTCUTS = ("max_safe_clock_skew", "documented_clock_skew", "crash_failover_bound", "release_takeover_bound",
              "handovers", "run_election", "_lease_valid")


# -------------------------------------------------------------------------------------------
# 1. the acquire rule
# -------------------------------------------------------------------------------------------

def _may_acquire(record, observed_time, now, me) -> bool:
    """Independent statement of the rule (leaderelection.go: ``len(holder) > 0 && isLeaseValid(now)
    && !IsLeader()`` refuses; ``isLeaseValid`` = ``observedTime + leaseDurationSeconds`` after ``now``)."""
    holder = record["holder"]
    if holder == "" or holder == me:
        return True
    return not (observed_time + record["lease_duration_seconds"] > now)


def _acquire_cases():
    cases = [
        # (record, observed_time, now, me)
        ({"holder": "a", "renew_time": 100.0, "lease_duration_seconds": 15}, 100.0, 110.0, "b"),   # valid
        ({"holder": "a", "renew_time": 100.0, "lease_duration_seconds": 15}, 100.0, 115.0, "b"),   # edge: expired
        ({"holder": "a", "renew_time": 100.0, "lease_duration_seconds": 15}, 100.0, 114.999, "b"),
        ({"holder": "", "renew_time": 120.0, "lease_duration_seconds": 1}, 120.0, 120.2, "b"),     # released
        ({"holder": "b", "renew_time": 100.0, "lease_duration_seconds": 15}, 100.0, 101.0, "b"),   # itself
        # the holder's clock is 1 h ahead: its renew_time says nothing about now
        ({"holder": "a", "renew_time": 3700.0, "lease_duration_seconds": 15}, 100.0, 120.0, "b"),
        # ... or 1 h behind: it looks long expired, yet the candidate saw it change 3 s ago
        ({"holder": "a", "renew_time": -3500.0, "lease_duration_seconds": 15}, 100.0, 103.0, "b"),
        ({"holder": "a", "renew_time": 100.0, "lease_duration_seconds": 60}, 100.0, 130.0, "b"),
    ]
    rng = np.random.default_rng(12)
    for _ in range(60):
        obs = float(rng.uniform(0, 1000))
        lds = int(rng.choice([1, 5, 15, 40]))
        holder = str(rng.choice(["", "a", "b"]))
        cases.append(({"holder": holder, "renew_time": float(obs + rng.normal(0, 500)), "lease_duration_seconds": lds},
                      obs, float(obs + rng.uniform(0, 2 * lds)), "b"))
    return cases


def check_acquire_rule(fn) -> Verdict:
    """``fn(record, observed_time, now, me)`` -> may ``me`` take the Lease now? ``record`` has
    ``holder``, ``renew_time`` (the holder's clock) and ``lease_duration_seconds``;
    ``observed_time`` is when ``me`` last saw the record change, on its own clock, like ``now``."""
    bad = refuse_shortcut(EX1, fn, _SHORTCUTS)
    if bad:
        return bad
    for rec, obs, now, me in _acquire_cases():
        got, bad = call_student(EX1, fn, dict(rec), obs, now, me)
        if bad:
            return bad
        if bool(got) != _may_acquire(rec, obs, now, me):
            return verdict(EX1, "not yet right",
                           f"holder {rec['holder']!r} (you are {me!r}), renew_time {rec['renew_time']:g} on the "
                           f"holder's clock, lease {rec['lease_duration_seconds']} s, seen changing at "
                           f"{obs:g} on yours, now {now:g}: client-go decides this case differently.")
    return verdict(EX1, "done", f"Your rule agrees with client-go's on {len(_acquire_cases())} cases, skewed "
                                "clocks and the expiry edge included.")


# -------------------------------------------------------------------------------------------
# 2. the worst-case takeover after a crash
# -------------------------------------------------------------------------------------------

_TRIPLES = [(15.0, 10.0, 2.0), (30.0, 20.0, 4.0), (60.0, 40.0, 5.0), (8.0, 6.0, 1.0), (137.0, 107.0, 26.0)]


def _worst_takeover(ld, rd, rp) -> float:
    from ..clients.leaderelection import JITTER_FACTOR

    return ld + 2.0 * (1.0 + JITTER_FACTOR) * rp


def _simulated_worst(ld, rd, rp, n=60, seed=3) -> float:
    from ..clients.leaderelection import ElectionConfig, run_election

    rng = np.random.default_rng(seed)
    worst = 0.0
    for i in range(n):
        at = ld + 5 * rp + float(rng.random()) * 3 * rp
        tr = run_election(ElectionConfig(ld, rd, rp), 2, until=at + 2 * ld + 10 * rp, latency=0.0,
                          events=[(at, "crash", 0)], seed=int(rng.integers(2**31)))
        worst = max(worst, tr.first_start_after(at, exclude="c0") - at)
    return worst


def check_worst_takeover(fn) -> Verdict:
    """``fn(lease_duration, renew_deadline, retry_period)`` -> the longest a standby can take to
    hold the Lease after the leader crashed (requests taking no time). Checked against an
    independent derivation (within 2 %) on several triples, and never below a simulated takeover."""
    from ..clients import leaderelection as LE

    bad = refuse_shortcut(EX2, fn, _SHORTCUTS, objects=(LE.crash_failover_bound, LE.run_election))
    if bad:
        return bad
    for ld, rd, rp in _TRIPLES:
        x, bad = call_quiet(EX2, fn, ld, rd, rp)
        if bad:
            return bad
        sim = _simulated_worst(ld, rd, rp, n=25)
        if x < sim - 1e-6:
            return verdict(EX2, "not yet right",
                           f"With lease {ld:g} s, deadline {rd:g} s, retry {rp:g} s a simulated takeover took "
                           "longer than your bound: what can the standby miss just before the crash?")
        if abs(x - _worst_takeover(ld, rd, rp)) > 0.02 * _worst_takeover(ld, rd, rp):
            return verdict(EX2, "not yet right",
                           f"With lease {ld:g} s, deadline {rd:g} s, retry {rp:g} s your bound is not the "
                           "longest possible takeover (it is not reached, or not the worst schedule).")
    return verdict(EX2, "done", f"Your worst case matches the derivation on {len(_TRIPLES)} configurations and no "
                                "simulated takeover exceeds it.")


# -------------------------------------------------------------------------------------------
# 3. the safe clock skew
# -------------------------------------------------------------------------------------------

def _safe_skew(ld, rd, rp) -> float:
    return ld / (rd + rp) - 1.0


def check_safe_skew(fn) -> Verdict:
    """``fn(lease_duration, renew_deadline, retry_period)`` -> the largest rate difference
    (fastest clock / slowest - 1) with which two leaders can never act at once. Checked against
    an independent derivation, and by the model: a leader cut off from the API servers with a
    standby just above your bound can overlap it; just below, never."""
    from ..clients import leaderelection as LE
    from ..clients.leaderelection import ElectionConfig, run_election

    bad = refuse_shortcut(EX3, fn, _SHORTCUTS, objects=(LE.max_safe_clock_skew, LE.documented_clock_skew))
    if bad:
        return bad
    for ld, rd, rp in _TRIPLES[:3]:
        x, bad = call_quiet(EX3, fn, ld, rd, rp)
        if bad:
            return bad
        want = _safe_skew(ld, rd, rp)
        if abs(x - want) > 0.01 * max(abs(want), 0.05):
            return verdict(EX3, "not yet right",
                           f"With lease {ld:g} s, deadline {rd:g} s, retry {rp:g} s your bound is not the largest "
                           "skew that is always safe: follow a leader cut off from the API servers.")
    # the model agrees with the derivation on the defaults: unsafe just above, safe below
    ld, rd, rp = _TRIPLES[0]
    s = _safe_skew(ld, rd, rp)
    for skew, expect in ((s * 0.9, False), (s * 3.0, True)):
        overlaps = any(run_election(ElectionConfig(ld, rd, rp), 2, until=90.0, latency=0.0,
                                    rates=[1.0, 1.0 + skew], partitions=[(0, 30.0 + k * 0.37, 90.0)],
                                    seed=k).max_overlap(90.0) > 0 for k in range(12))
        if overlaps != expect:
            return verdict(EX3, "not yet right", "The model disagrees with the derivation here (report this).")
    return verdict(EX3, "done", "Your bound matches the derivation, and the model overlaps two leaders only "
                                "beyond it.")

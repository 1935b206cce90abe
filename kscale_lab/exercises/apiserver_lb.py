"""Checks for the API server load-balancing lab's exercises."""

from __future__ import annotations

import numpy as np

from . import Verdict, call_student, verdict

EX1 = "Exercise 1 (the client's reconnect rule)"
EX2 = "Exercise 2 (a least-connections pick)"
EX3 = "Exercise 3 (how often must clients reshuffle?)"


def check_reconnect_rule(fn) -> Verdict:
    """``fn(times_429, k, window)`` -> the time the client reconnects, or None.

    Compared with :func:`kscale_lab.clients.connections.reconnect_time`, the rule the
    model applies to every client, on hand-picked edges (a window that closes exactly
    at ``window`` seconds, a 429 right after) and random cases."""
    from ..clients.connections import reconnect_time

    cases = [([1.0, 2.0, 3.0], 3, 60.0), ([0.0, 60.0, 61.0], 3, 60.0), ([0.0, 60.5, 61.0, 62.0], 3, 60.0),
             ([5.0], 1, 10.0), ([], 2, 10.0), ([0.0, 30.0, 90.0, 100.0, 149.0], 3, 60.0)]
    rng = np.random.default_rng(11)
    for _ in range(60):
        n = int(rng.integers(0, 12))
        times = sorted(np.round(rng.uniform(0, 300, n), 1).tolist())
        cases.append((times, int(rng.integers(1, 5)), float(rng.choice([10.0, 30.0, 60.0]))))
    for times, k, w in cases:
        want = reconnect_time(times, k, w)
        try:
            got = fn(list(times), k, w)
        except Exception as err:  # the reader's bug, in one line
            return verdict(EX1, "not yet right", f"Your code raised {type(err).__name__}: {err}")
        if got is None and want is None:
            continue
        if isinstance(got, str) and "YOUR" in got:
            return verdict(EX1, "not done yet", "Write the function's body.")
        if got is None or want is None or abs(float(got) - want) > 1e-9:
            return verdict(EX1, "not yet right",
                           f"429s at {times} with k={k}, window={w:g} s: the model reconnects at "
                           f"{'never' if want is None else f'{want:g} s'}; yours says "
                           f"{'never' if got is None else f'{float(got):g} s'}.")
    return verdict(EX1, "done", f"Your rule agrees with the model's on {len(cases)} cases, window edges included.")


def check_least_connections(fn) -> Verdict:
    """``fn(open_connections, m)`` -> how many of ``m`` new connections each backend gets,
    when each goes to the backend with the fewest open connections (ties: lowest index).
    Compared with the load balancer's own water-filling on random cases."""
    from ..apiserver.loadbalancer import water_fill

    rng = np.random.default_rng(5)
    cases = [(np.array([0, 0, 0]), 7), (np.array([10, 0, 4]), 9), (np.array([5, 5]), 1), (np.array([3]), 4)]
    for _ in range(40):
        k = int(rng.integers(1, 7))
        cases.append((rng.integers(0, 50, k), int(rng.integers(0, 120))))
    for counts, m in cases:
        got, bad = call_student(EX2, fn, counts.copy(), m)
        if bad:
            return bad
        want = np.bincount(water_fill(counts, m, np.arange(counts.size)), minlength=counts.size)
        got = np.asarray(got)
        if got.shape != want.shape or not np.array_equal(got, want):
            return verdict(EX2, "not yet right", f"With open connections {counts.tolist()} and {m} new ones, "
                                                 f"your split is {got.tolist()}; a least-connections balancer "
                                                 f"placing them one by one gives another.")
    return verdict(EX2, "done", f"Your split agrees with the load balancer's on {len(cases)} cases.")


def check_reshuffle(answer) -> Verdict:
    """``answer``: the longest reshuffle period (one of the dashboard's values, seconds) with
    which the article setting re-balances within 300 s of the two restarts. Checked by
    running the model at the answer and at the next longer value."""
    from ..labs.apiserver_lb import LAB

    options = [60, 120, 300, 600, 1200, 1800]
    if answer is None:
        return verdict(EX3, "not done yet", "Set reshuffle_needed to your answer.")
    try:
        a = float(answer)
    except (TypeError, ValueError):
        return verdict(EX3, "not yet right", f"reshuffle_needed must be a number of seconds; got {answer!r}.")
    if a not in options:
        return verdict(EX3, "not yet right", f"Pick one of {options} (the dashboard's values).")

    def quick(period):
        return LAB.run("article", {"reshuffle_period": float(period)}).summary["restart_rebalance_s"] <= 300.0

    longer = [o for o in options if o > a]
    if quick(a) and not (longer and quick(longer[0])):
        return verdict(EX3, "done", f"Reshuffling every {a:g} s re-balances within 5 minutes; the next longer "
                                    f"period does not.")
    return verdict(EX3, "not yet right", "That period is not the longest one that re-balances within 5 minutes.")

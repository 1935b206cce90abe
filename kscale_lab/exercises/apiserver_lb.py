"""Checks for the API server load-balancing lab's exercises."""

from __future__ import annotations

import numpy as np

from . import Hints, Verdict, call_student, verdict

EX1 = "Exercise 1 (the client's reconnect rule)"
EX2 = "Exercise 2 (a least-connections pick)"
EX3 = "Exercise 3 (where the clients end up after an upgrade)"

hint = Hints({
    1: ["Walk through the 429s in order, keeping the time the current window opened and how many 429s it holds.",
        "A 429 that arrives more than `window` seconds after the window opened opens a new one (count back to 0).",
        "start, count = -inf, 0; for t in times: if t - start > window: start, count = t, 0; count += 1; "
        "if count >= k: return t"],
    2: ["The balancer raises the emptiest backends first, one connection at a time: like water poured into "
        "glasses of different heights.",
        "Find the highest level L that m arrivals can fill every backend up to: sum(max(0, L - c)) <= m.",
        "add = max(0, L - c); the m - sum(add) left over go one each to the lowest-indexed backends at level L."],
    3: ["Follow the shares step by step: when server k stops, its share moves; nothing else changes.",
        "Its clients spread evenly over the servers the load balancer believes healthy: every other server, "
        "except (when the balancer lags) the one upgraded just before k, which it has not seen come back.",
        "s = [1/n]*n; for k in range(n): targets = the others, minus k-1 if it lags; s[j] += s[k]/len(targets) "
        "for j in targets; s[k] = 0"],
}, {1: EX1, 2: EX2, 3: EX3})


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
    if fn is None:
        return verdict(EX1, "not done yet", "Define the function first.")
    for n, (times, k, w) in enumerate(cases):
        want = reconnect_time(times, k, w)
        try:
            got = fn(list(times), k, w)
        except Exception as err:  # the reader's bug, in one line
            return verdict(EX1, "not yet right", f"Your code raised {type(err).__name__}: {err}")
        if n == 0 and got is None:       # the first case reconnects: None is the stub's answer
            return verdict(EX1, "not done yet", "Your function returns None: write its body.")
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


def _model_shares(n: int, lags: bool) -> np.ndarray:
    """The model's connection shares per server (in upgrade order) 30 s after a one-at-a-time
    upgrade of ``n`` servers, with the default load balancer (lags) or one that learns at once."""
    from ..labs.apiserver_lb import LAB

    o = {"apiservers": n, "restart_count": 0, "nodes": 1000, "duration": 180.0 + 70 * n, "rollout_at": 60.0}
    if not lags:
        o.update(lb_health_check_interval=1.0, lb_healthy_threshold=1, lb_unhealthy_threshold=1)
    r = LAB.run("off", o)
    ev = r.events
    end = float(ev.loc[ev["event"] == "upgrade ends", "time"].iloc[0])
    d = r.instances
    c = d.loc[d["time"] == end + 30.0, "connections"].to_numpy()[:n]
    return c / c.sum()


def check_upgrade_shares(fn, tolerance: float = 0.03) -> Verdict:
    """``fn(n, lb_lags)`` -> the share of the clients on each of ``n`` servers (in upgrade order)
    after a one-at-a-time rolling upgrade with sticky clients. ``lb_lags``: the load balancer
    has not yet seen the server upgraded just before come back. Checked against the model's
    connections for 3, 4 and 5 servers, both ways, within ``tolerance``."""
    for n in (3, 4, 5):
        for lags in (True, False):
            got, bad = call_student(EX3, fn, n, lags)
            if bad:
                return bad
            try:
                g = np.asarray(got, dtype=float).reshape(-1)
            except (TypeError, ValueError):
                return verdict(EX3, "not yet right", f"Return {n} numbers (one share per server); got {got!r}.")
            if g.size != n:
                return verdict(EX3, "not yet right", f"For {n} servers return {n} shares; got {g.size}.")
            want = _model_shares(n, lags)
            if not np.all(np.isfinite(g)) or np.abs(g - want).max() > tolerance:
                j = int(np.argmax(np.abs(np.nan_to_num(g) - want)))
                return verdict(EX3, "not yet right",
                               f"{n} servers, the load balancer {'lagging' if lags else 'up to date'}: your share "
                               f"for server {j} (the {j + 1}{'st' if j == 0 else 'nd' if j == 1 else 'rd' if j == 2 else 'th'}"
                               f" upgraded) is off by more than {tolerance:.0%} of the clients.")
    return verdict(EX3, "done", "Your shares match the simulated connections for 3, 4 and 5 servers, with a lagging "
                                "and an up-to-date load balancer.")

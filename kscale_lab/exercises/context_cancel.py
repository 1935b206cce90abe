"""Checks for the context-cancellation lab's exercises.

Each check runs the reader's function on inputs where the likely wrong answers differ and
compares it with the model (the request path of :mod:`kscale_lab.apiserver.requests`),
never printing the model's number: a "not yet right" names the input that failed.
"""

from __future__ import annotations

import math

import numpy as np

from . import Hints, Verdict, call_student, verdict

EX1 = "Exercise 1 (how long may a webhook call take?)"
EX2 = "Exercise 2 (how many goroutines does a slow webhook hold?)"

hint = Hints({
    1: ["Which deadlines exist in each setting? Only upstream sets one when the request arrives.",
        "Upstream: the request's deadline is min(?timeout=, --request-timeout) after arrival; the call starts "
        "`elapsed` seconds in; the webhook's own timeoutSeconds also applies.",
        "Upstream: max(0, min(timeout_seconds, min(client_timeout or inf, request_timeout) - elapsed)); the other "
        "settings: timeout_seconds alone."],
    2: ["Little's law: goroutines = arrival rate x how long each is held.",
        "Without cancellation a request is held for the whole webhook call (which its timeoutSeconds cuts); with it, "
        "until its client gives up (plus the cancellation delay), or until the call returns if sooner.",
        "off: rate x min(latency, webhook_timeout); article: rate x min(min(latency, webhook_timeout), "
        "client_timeout + cancel_delay); upstream: rate x min(latency, webhook_timeout, client_timeout)."],
}, {1: EX1, 2: EX2})


# --------------------------------------------------------------------------------------
def _model_call_limit(setting, timeout_seconds, client_timeout, request_timeout, elapsed) -> float:
    """How long a webhook call that never answers lasts, from the model's request path: a request
    whose CPU ends ``elapsed`` seconds after arrival, calling a webhook that hangs."""
    from ..apiserver.requests import PathParams, PathPolicy, walk_request

    tau = math.inf if client_timeout is None else float(client_timeout)
    q = PathParams(float(request_timeout), float(timeout_seconds), True, 0.0, 0.0, 1e9)
    r = walk_request(tau, float(elapsed), 0.0, 0.0, 1e9, 1, 0.0, q, PathPolicy.for_setting(setting))
    if setting != "upstream":
        return float(timeout_seconds)            # nothing but its own timeout bounds the call itself
    return max(0.0, min(r["g_end"], r["work_end"]) - float(elapsed))


def check_webhook_call_limit(fn) -> Verdict:
    """``fn(setting, timeout_seconds, client_timeout, request_timeout, elapsed)`` -> the longest a
    webhook call may take, in seconds (``client_timeout`` None: the client sends no ``?timeout=``)."""
    cases = [("upstream", 10, 10, 60, 0.5), ("upstream", 10, 30, 60, 0.5), ("upstream", 30, 5, 60, 1.0),
             ("upstream", 30, None, 60, 2.0), ("upstream", 30, 120, 60, 40.0), ("upstream", 10, 8, 60, 9.0),
             ("article", 30, 10, 60, 0.5), ("off", 30, 10, 60, 0.5), ("article", 10, 5, 60, 1.0),
             ("upstream", 1, 60, 60, 0.0)]
    rng = np.random.default_rng(8)
    for _ in range(30):
        cases.append((str(rng.choice(["off", "article", "upstream"])), int(rng.integers(1, 31)),
                      None if rng.random() < 0.2 else float(rng.choice([2, 5, 10, 30, 90])), 60.0,
                      float(np.round(rng.uniform(0, 20), 2))))
    for setting, ts, tau, T, elapsed in cases:
        got, bad = call_student(EX1, fn, setting, ts, tau, T, elapsed)
        if bad:
            return bad
        want = _model_call_limit(setting, ts, tau, T, elapsed)
        try:
            g = float(got)
        except (TypeError, ValueError):
            return verdict(EX1, "not yet right", f"Return a number of seconds; got {got!r}.")
        if abs(g - want) > 1e-6:
            return verdict(EX1, "not yet right",
                           f"{setting}, timeoutSeconds={ts}, client timeout={tau}, --request-timeout={T:g}, the call "
                           f"starting {elapsed:g} s after arrival: your limit disagrees with the model's request path.")
    return verdict(EX1, "done", f"Your limits agree with the model on {len(cases)} calls, deadlines that bind and "
                                f"deadlines that do not.")


# --------------------------------------------------------------------------------------
def _model_goroutines(setting, rate, client_timeout, webhook_latency, webhook_timeout, cancel_delay) -> float:
    """Steady goroutines of one stream whose requests all call a slow webhook: the cohorts, run
    until they settle (no retries, no queueing for CPU)."""
    from ..apiserver.requests import CohortPath, Incident, PathParams, PathPolicy, StreamTable

    st = StreamTable(cpu=np.array([0.0]), etcd=np.array([0.0]), mutating=np.array([False]),
                     memory=np.array([1.0]), tau=np.array([float(client_timeout)]), hooked=np.array([True]),
                     loopback=np.array([False]))
    q = PathParams(1e6, float(webhook_timeout), False, float(cancel_delay), 0.0, 1e9)
    inc = Incident("webhook", 0.0, 1e9, 0.0, float(webhook_latency), 0.0)
    steps = int(min(webhook_latency, webhook_timeout, client_timeout + cancel_delay) + 40)
    c = CohortPath(1, st, steps, 1.0, q, PathPolicy.for_setting(setting), inc, retry_policy="none")
    live = np.ones(1, dtype=bool)
    for i in range(steps):
        c.step(i, np.full((1, 1, 1), float(rate)), np.zeros((1, 1)), np.zeros(1), live)
        c.end_tick(i, live)
    return float(c.alive.sum())


def check_steady_goroutines(fn) -> Verdict:
    """``fn(setting, rate, client_timeout, webhook_latency, webhook_timeout, cancel_delay)`` -> the
    goroutines a stream holds once steady, when every request calls the webhook (no retries)."""
    cases = [("off", 50, 10, 20, 30, 0.1), ("article", 50, 10, 20, 30, 0.1), ("upstream", 50, 10, 20, 10, 0.0),
             ("off", 50, 10, 40, 30, 0.1), ("article", 50, 10, 5, 30, 0.1), ("article", 20, 10, 20, 30, 2.0),
             ("off", 20, 10, 5, 30, 0.1), ("upstream", 30, 5, 20, 10, 0.0), ("article", 30, 10, 40, 8, 0.5)]
    for case in cases:
        got, bad = call_student(EX2, fn, *case)
        if bad:
            return bad
        want = _model_goroutines(*case)
        try:
            g = float(got)
        except (TypeError, ValueError):
            return verdict(EX2, "not yet right", f"Return a number of goroutines; got {got!r}.")
        if not math.isfinite(g) or abs(g - want) > 0.03 * max(want, 1.0) + 0.5:
            s, rate, tau, lat, ts, d = case
            return verdict(EX2, "not yet right",
                           f"{s}, {rate:g} requests/s, clients wait {tau:g} s, the webhook takes {lat:g} s "
                           f"(timeoutSeconds {ts:g}), cancellation delay {d:g} s: your count is off by more than 3 %.")
    return verdict(EX2, "done", f"Your formula matches the model's cohorts on {len(cases)} cases within 3 %.")

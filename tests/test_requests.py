"""The request path: one request stage by stage, the vectorised path, the fluid cohorts against
the exact per-request model, and the properties the issue lists."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kscale_lab.apiserver.requests import (
    ANSWERED, CANCELLED, FAILED, TIMED_OUT, CohortPath, Incident, PathParams, PathPolicy, StreamTable, exact_run,
    request_path, walk_request,
)

SETTINGS = ("off", "article", "upstream")
FIELDS = ("client_end", "outcome", "g_end", "lb_end", "work_end", "post_cpu", "wasted_cpu")


def one_stream(hooked=True, mutating=True, loopback=False, tau=10.0, cpu=0.001, etcd=0.003):
    return StreamTable(cpu=np.array([cpu]), etcd=np.array([etcd if mutating else 0.0]), mutating=np.array([mutating]),
                       memory=np.array([100_000.0]), tau=np.array([tau]), hooked=np.array([hooked]),
                       loopback=np.array([loopback]), loopback_cpu=0.0003, names=["s"])


times = st.floats(0.0, 80.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(tau=st.floats(0.01, 90.0), wait=times, cpu=st.floats(0.0, 5.0), etcd=st.sampled_from([0.0, 0.003, 5.0, 20.0]),
       hook=st.floats(0.0, 40.0), calls=st.integers(0, 3), lb=st.sampled_from([0.0, 0.2, 12.0]),
       setting=st.sampled_from(SETTINGS), fail=st.booleans(), th=st.floats(1.0, 30.0), d=st.floats(0.0, 2.0),
       share=st.floats(0.0, 1.0))
def test_vectorised_path_is_the_stage_walk(tau, wait, cpu, etcd, hook, calls, lb, setting, fail, th, d, share):
    q = PathParams(60.0, th, fail, d, share, 7.0)
    pol = PathPolicy.for_setting(setting)
    want = walk_request(tau, wait, cpu, etcd, hook, calls, lb, q, pol)
    got = request_path(tau, wait, cpu, etcd, hook, calls, lb, q, pol)
    for f in FIELDS:
        assert float(getattr(got, f)) == pytest.approx(want[f], abs=1e-9), f


@settings(max_examples=300, deadline=None)
@given(tau=st.floats(0.01, 90.0), wait=times, cpu=st.floats(0.0, 5.0), etcd=st.sampled_from([0.0, 0.003, 20.0]),
       hook=st.floats(0.0, 40.0), calls=st.integers(0, 3), lb=st.sampled_from([0.0, 0.2, 12.0]),
       setting=st.sampled_from(SETTINGS), fail=st.booleans(), d=st.floats(0.0, 2.0))
def test_one_end_per_request_and_cancelled_goroutines_do_not_outlive_their_client(tau, wait, cpu, etcd, hook, calls,
                                                                                   lb, setting, fail, d):
    q = PathParams(60.0, 30.0 if setting != "upstream" else 10.0, fail, d, 0.5, 7.0)
    pol = PathPolicy.for_setting(setting)
    r = walk_request(tau, wait, cpu, etcd, hook, calls, lb, q, pol)
    assert r["outcome"] in (ANSWERED, FAILED, TIMED_OUT, CANCELLED)
    assert 0 <= r["client_end"] <= min(tau, 60.0) + 1e-12       # nobody waits past its timeout or the 504
    assert r["g_end"] >= r["client_end"] - 1e-12 or r["outcome"] in (ANSWERED, FAILED)
    if r["outcome"] in (ANSWERED, FAILED) and r["client_end"] < min(tau, 60.0):
        assert r["g_end"] == pytest.approx(r["client_end"])     # answered: the goroutine ends with its answer
    if setting == "off":
        assert r["g_end"] == pytest.approx(r["work_end"])       # nothing stops the work
    else:
        # with cancellation a goroutine outlives its client by at most the cancellation delay, but for
        # CPU it was queued for or running (Go does not preempt it; it stops at its next call)
        post = 0.5 * cpu if (calls > 0 or etcd > 0) else 0.0
        late = r["client_end"] + (d if setting == "article" else 0.0)
        assert r["g_end"] <= max(late, r["pre_end"]) + post + 1e-9


def test_a_slow_webhook_in_each_setting():
    """A webhook that takes 20 s, a kubelet that waits 10 s: the three settings."""
    kw = dict(tau=10.0, wait=0.0, cpu=0.001, etcd=0.003, hook_lat=20.0, calls=1, lb=0.0)
    off = walk_request(**kw, q=PathParams(60, 30, False, 0.1, 0.5), pol=PathPolicy.for_setting("off"))
    assert off["outcome"] == TIMED_OUT and off["g_end"] == pytest.approx(20.0 + 0.001 + 0.003)
    art = walk_request(**kw, q=PathParams(60, 30, False, 0.1, 0.5), pol=PathPolicy.for_setting("article"))
    assert art["outcome"] == CANCELLED and art["g_end"] == pytest.approx(10.1)
    up = walk_request(**kw, q=PathParams(60, 10, True, 0.1, 0.5), pol=PathPolicy.for_setting("upstream"))
    assert up["outcome"] == CANCELLED and up["g_end"] == pytest.approx(10.0)
    # a client that waits longer than the webhook's 10 s timeout gets the failure (failurePolicy Fail)
    slow_client = walk_request(**dict(kw, tau=30.0), q=PathParams(60, 10, True, 0.1, 0.5),
                               pol=PathPolicy.for_setting("upstream"))
    assert slow_client["outcome"] == FAILED and slow_client["client_end"] == pytest.approx(10.0005)
    # the server's 504 at --request-timeout reaches a client that waits longer
    patient = walk_request(**dict(kw, tau=120.0, hook_lat=0.0, etcd=70.0), q=PathParams(60, 30, False, 0.1, 0.5, 1e3),
                           pol=PathPolicy.for_setting("article"))
    assert patient["outcome"] == FAILED and patient["client_end"] == 60.0 and patient["g_end"] == 60.0


def test_etcd_bounds_its_own_calls():
    q = PathParams(60, 30, False, 0.1, 0.5, 7.0)
    r = walk_request(10.0, 0.0, 0.001, 20.0, 0.0, 0, 0.0, q, PathPolicy.for_setting("off"))
    assert r["outcome"] == FAILED and r["client_end"] == pytest.approx(7.0005)   # answered with an error, in time


def evenly(rate, t0, t1):
    """Arrivals evenly spread: the same spread within a tick the cohorts assume."""
    n = int(round(rate * (t1 - t0)))
    return t0 + (np.arange(n) + 0.5) * (t1 - t0) / n


def drive_cohorts(arrivals, stream: StreamTable, q, pol, inc, steps, dt=1.0, **kw):
    c = CohortPath(1, stream, steps, dt, q, pol, inc, **kw)
    per_tick = np.bincount(np.floor(np.asarray(arrivals) / dt).astype(int), minlength=steps)[:steps]
    alive, waiting = [], []
    live = np.ones(1, dtype=bool)
    for i in range(steps):
        arr = c.retries_due(i).copy()
        arr[0, 0, 0] = per_tick[i]
        c.step(i, arr, np.zeros((1, 1)), np.zeros(1), live)
        c.end_tick(i, live)
        alive.append(c.alive.sum())
        waiting.append(c.waiting.sum())
    return c, np.array(alive), np.array(waiting)


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("retry", ["immediate", "backoff", "none"])
def test_cohorts_agree_with_the_exact_model(setting, retry):
    """A few hundred requests one by one beside the cohorts, through a slow-webhook incident."""
    s = one_stream()
    q = PathParams(60.0, 30.0 if setting != "upstream" else 10.0, setting == "upstream", 0.1, 0.5)
    pol = PathPolicy.for_setting(setting)
    inc = Incident("webhook", 20.0, 30.0, 0.01, 20.0, 20.0)
    arrivals = evenly(5.0, 0.0, 80.0)                           # 400 first attempts
    steps = 140
    ex = exact_run(arrivals, 0, s, q, pol, inc, retry_policy=retry, max_retries=3, horizon=steps)
    c, alive, waiting = drive_cohorts(arrivals, s, q, pol, inc, steps, retry_policy=retry, max_retries=3)
    peak = ex["alive"].max()
    assert peak >= 40
    assert np.abs(alive - ex["alive"]).max() <= 0.03 * peak + 1.0
    assert np.abs(waiting - ex["waiting"]).max() <= 0.03 * ex["waiting"].max() + 1.0
    # outcomes: the same totals
    reqs = ex["requests"]
    tot = c.totals
    for code, name in ((ANSWERED, "answered"), (TIMED_OUT, "timed_out"), (CANCELLED, "cancelled"), (FAILED, "failed")):
        n = sum(1 for r in reqs if r["outcome"] == code)
        assert tot[name] == pytest.approx(n, abs=0.02 * len(reqs) + 1.0), name


@settings(max_examples=25, deadline=None)
@given(setting=st.sampled_from(SETTINGS), rate=st.floats(0.5, 8.0), at=st.floats(0.0, 30.0),
       length=st.floats(0.0, 40.0), slow=st.floats(0.0, 35.0), tau=st.floats(1.0, 30.0),
       retry=st.sampled_from(["immediate", "backoff", "none"]), retries=st.integers(0, 4))
def test_exact_model_properties(setting, rate, at, length, slow, tau, retry, retries):
    """Every request ends exactly once; retries are the unhappy ends; nothing is held at the end."""
    s = one_stream(tau=tau)
    q = PathParams(60.0, 30.0, False, 0.1, 0.5)
    pol = PathPolicy.for_setting(setting)
    inc = Incident("webhook", at, length, 0.01, slow, 20.0)
    first = evenly(rate, 0.0, 40.0)
    ex = exact_run(first, 0, s, q, pol, inc, retry_policy=retry, max_retries=retries, horizon=400.0)
    reqs = ex["requests"]
    R = retries if retry != "none" else 0
    unhappy_retried = sum(1 for r in reqs if r["outcome"] != ANSWERED and r["attempt"] < R)
    assert len(reqs) == len(first) + unhappy_retried            # each unhappy end (but the last) is one retry
    assert all(r["outcome"] in (ANSWERED, FAILED, TIMED_OUT, CANCELLED) for r in reqs)
    assert ex["alive"][-1] == 0 and ex["waiting"][-1] == 0      # memory back to its baseline


def test_cohorts_conserve_requests_and_lose_them_with_their_instance():
    s = one_stream()
    q = PathParams(60.0, 30.0, False, 0.1, 0.5)
    inc = Incident("webhook", 5.0, 30.0, 0.01, 20.0, 20.0)
    c = CohortPath(2, StreamTable(**{**s.__dict__}), 100, 1.0, q, PathPolicy.for_setting("off"), inc, max_retries=0)
    both, first = np.ones(2, dtype=bool), np.array([False, True])
    for i in range(100):
        live = both if i < 20 else first                     # instance 0 dies at t = 20 s
        arr = np.zeros((2, 1, 1))
        arr[live, 0, 0] = 10.0 if i < 50 else 0.0
        c.step(i, arr, np.zeros((2, 1)), np.zeros(2), live)
        c.end_tick(i, live)
    t = c.totals
    ended = sum(t[k] for k in ("answered", "failed", "timed_out", "cancelled", "lost"))
    assert t["lost"] > 0
    assert ended == pytest.approx(t["admitted"], rel=1e-9)
    assert c.alive[0].sum() == 0 and c.waiting.sum() == pytest.approx(0.0, abs=1e-9)


def test_cohorts_plateau_at_littles_law():
    """With cancellation a stream whose every request times out holds arrival rate x (timeout +
    delay) goroutines; without, arrival rate x the webhook's latency."""
    s = one_stream()
    inc = Incident("webhook", 0.0, 1e6, 0.01, 20.0, 20.0)
    out = {}
    for setting in ("off", "article"):
        c = CohortPath(1, s, 200, 1.0, PathParams(60.0, 30.0, False, 0.5, 0.5), PathPolicy.for_setting(setting),
                       inc, retry_policy="none")
        for i in range(200):
            c.step(i, np.full((1, 1, 1), 7.0), np.zeros((1, 1)), np.zeros(1), np.ones(1, dtype=bool))
            c.end_tick(i, np.ones(1, dtype=bool))
        out[setting] = c.alive.sum()
    assert out["article"] == pytest.approx(7.0 * (10.0 + 0.5), rel=0.02)
    assert out["off"] == pytest.approx(7.0 * (20.0 + 0.001 * 0.5 + 0.003 + 0.001 * 0.5), rel=0.02)


def test_retries_add_arrivals_up_to_max_retries():
    s = one_stream()
    inc = Incident("webhook", 0.0, 1e6, 0.01, 20.0, 20.0)
    c = CohortPath(1, s, 300, 1.0, PathParams(60.0, 30.0, False, 0.1, 0.5), PathPolicy.for_setting("article"), inc,
                   retry_policy="immediate", max_retries=4)
    got = []
    for i in range(300):
        arr = c.retries_due(i).copy()
        arr[0, 0, 0] = 3.0
        got.append(arr.sum())
        c.step(i, arr, np.zeros((1, 1)), np.zeros(1), np.ones(1, dtype=bool))
        c.end_tick(i, np.ones(1, dtype=bool))
    assert np.mean(got[-50:]) == pytest.approx(3.0 * 5, rel=0.02)     # every request tried 1 + 4 times
    assert c.totals["dropped"] > 0 and math.isclose(c.totals["answered"], 0.0, abs_tol=1e-9)

"""client-go leader election: validation, the acquire rule, release, and the timing properties."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kscale_lab.clients.leaderelection import (
    JITTER_FACTOR, Candidate, ElectionConfig, LeaderElectionRecord, LeaseStore, crash_failover_bound,
    documented_clock_skew, max_safe_clock_skew, release_takeover_bound, run_election, validate,
)
from kscale_lab.errors import ParameterError

LD, RD, RP = 15.0, 10.0, 2.0


@pytest.mark.parametrize("ld, rd, rp, skew, name, rule", [
    (10.0, 10.0, 2.0, 0.0, "leader_elect_renew_deadline", "leaseDuration must be greater than renewDeadline"),
    (15.0, 20.0, 2.0, 0.0, "leader_elect_renew_deadline", "leaseDuration must be greater than renewDeadline"),
    (15.0, 10.0, 9.0, 0.0, "leader_elect_retry_period", "retryPeriod*JitterFactor"),
    (15.0, 10.0, 12.0, 0.0, "leader_elect_retry_period", "retryPeriod*JitterFactor"),
    (15.0, 10.0, 0.0, 0.0, "leader_elect_retry_period", "greater than zero"),
    (15.0, 10.0, 2.0, -0.1, "clock_skew", "non-negative"),
])
def test_validation_is_client_go_s_in_one_line(ld, rd, rp, skew, name, rule):
    with pytest.raises(ParameterError) as e:
        validate(ld, rd, rp, skew)
    msg = str(e.value)
    assert f"'{name}'" in msg and rule in msg and "\n" not in msg


def test_the_jitter_rule_is_strict_at_its_edge():
    validate(15.0, 10.0, 10.0 / JITTER_FACTOR - 1e-9)
    with pytest.raises(ParameterError):
        validate(15.0, 10.0, 10.0 / JITTER_FACTOR)


def test_the_store_refuses_a_stale_writer():
    s = LeaseStore()
    r = LeaderElectionRecord("a", 15.0, 0.0, 0.0, 0)
    assert s.create(0.0, "a", r) and not s.create(0.0, "b", r)
    rec, rv = s.get()
    assert s.update(1.0, "a", r, rv)
    assert not s.update(1.0, "b", r, rv)     # b read before a's update: 409 Conflict
    assert s.conflicts == 2 and s.rv == 2


def test_one_leader_renews_and_standbys_only_read():
    tr = run_election(ElectionConfig(), 3, until=60.0, seed=1)
    assert [n for n, spans in tr.led.items() if spans] == ["c0"]
    writers = {w.writer for w in tr.writes}
    assert writers == {"c0"}
    gaps = np.diff([w.time for w in tr.writes])
    assert gaps[0] < 0.01              # renew() starts with an immediate renewal after acquire()
    assert np.all(gaps[1:] >= RP) and np.all(gaps[1:] < RP + 0.1)       # wait.Until(RetryPeriod), sliding
    reads = [c.requests["get"] for c in tr.candidates[1:]]
    # a standby tries every U[1, 2.2) x RetryPeriod: about 60 / 3.2 GETs
    assert all(12 <= r <= 30 for r in reads)


def test_the_acquire_rule_uses_the_local_observation_not_renew_time():
    """A candidate whose clock is hours off (an offset) waits exactly as one in sync: only
    local durations are compared."""
    base = run_election(ElectionConfig(), 3, until=80.0, events=[(30.0, "crash", 0)], seed=4)
    off = run_election(ElectionConfig(), 3, until=80.0, events=[(30.0, "crash", 0)], seed=4,
                       offsets=[0.0, 7200.0, -86_400.0])
    assert base.intervals(80.0) == off.intervals(80.0)


def test_a_changed_record_restarts_the_wait():
    """While the leader renews, a standby never takes over however long it waits."""
    tr = run_election(ElectionConfig(), 2, until=300.0, seed=2)
    assert tr.led["c1"] == []


def test_release_writes_an_empty_holder_with_a_one_second_lease():
    tr = run_election(ElectionConfig(release_on_cancel=True), 2, until=40.0, events=[(20.0, "cancel", 0)], seed=3)
    rel = [w for w in tr.writes if w.record.holder == ""]
    assert len(rel) == 1 and rel[0].record.lease_duration_seconds == 1.0 and rel[0].writer == "c0"
    assert tr.led["c0"][0][1] == pytest.approx(20.0)          # it stopped acting before releasing
    assert tr.led["c1"][0][0] > rel[0].time


def test_no_release_without_release_on_cancel_and_never_on_a_crash():
    for cfg, what in ((ElectionConfig(release_on_cancel=False), "cancel"),
                      (ElectionConfig(release_on_cancel=True), "crash")):
        tr = run_election(cfg, 2, until=60.0, events=[(20.0, what, 0)], seed=3)
        assert not [w for w in tr.writes if w.record.holder == ""]
        assert tr.led["c1"][0][0] - 20.0 > LD - JITTER_FACTOR * RP - RP


def test_racing_standbys_one_wins_the_other_gets_a_conflict():
    wins = conflicts = 0
    for seed in range(30):
        tr = run_election(ElectionConfig(release_on_cancel=True), 3, until=30.0, events=[(10.0, "cancel", 0)],
                          seed=seed, latency=0.5)
        starts = [spans[0][0] for n, spans in tr.led.items() if n != "c0" and spans]
        assert len(starts) == 1
        wins += 1
        conflicts += tr.conflicts
    assert wins == 30 and conflicts > 0           # with 0.5 s requests the two standbys sometimes collide


def test_a_leader_that_cannot_renew_stops_within_retry_period_plus_renew_deadline():
    tr = run_election(ElectionConfig(), 2, until=80.0, partitions=[(0, 30.0, 80.0)], seed=5)
    last_ok = max(w.time for w in tr.writes if w.writer == "c0")
    end = tr.led["c0"][0][1]
    assert last_ok + RD <= end <= last_ok + RP + RD + 1e-9
    assert tr.led["c1"] and tr.led["c1"][0][0] >= end


def test_the_bounds():
    assert max_safe_clock_skew(LD, RD, RP) == pytest.approx(0.25)
    assert documented_clock_skew(LD, RD) == pytest.approx(0.5)
    assert crash_failover_bound(LD, RP) == pytest.approx(19.4)
    assert release_takeover_bound(RP) == pytest.approx(4.4)


# -------------------------------------------------------------------------------------------
# properties
# -------------------------------------------------------------------------------------------

#: (leaseDuration, renewDeadline, retryPeriod) that client-go accepts
durations = st.tuples(st.floats(5.0, 60.0), st.floats(0.2, 0.95), st.floats(0.05, 0.8)).map(
    lambda x: (x[0], x[0] * x[1], x[0] * x[1] * x[2] / JITTER_FACTOR))
#: ... and that leave a margin: leaseDuration > renewDeadline + retryPeriod (the defaults: 15 > 12)
safe_durations = st.tuples(st.floats(5.0, 60.0), st.floats(0.2, 0.9), st.floats(0.05, 0.95)).map(
    lambda x: (x[0], x[0] * x[1], min(x[0] * x[1] / JITTER_FACTOR, x[0] * (1 - x[1])) * x[2]))


@settings(max_examples=30)
@given(d=safe_durations, n=st.integers(2, 4), skew_frac=st.floats(0.0, 0.95), seed=st.integers(0, 2**16),
       lat=st.floats(0.0005, 0.3), release=st.booleans(),
       events=st.lists(st.tuples(st.floats(1.0, 150.0), st.sampled_from(["crash", "cancel"]), st.integers(0, 3)),
                       max_size=3),
       parts=st.lists(st.tuples(st.integers(0, 3), st.floats(1.0, 150.0), st.floats(1.0, 60.0)), max_size=3))
def test_never_two_leaders_within_the_safe_clock_skew(d, n, skew_frac, seed, lat, release, events, parts):
    ld, rd, rp = d
    cfg = ElectionConfig(ld, rd, rp, release_on_cancel=release)
    skew = skew_frac * max_safe_clock_skew(ld, rd, rp)
    rng = np.random.default_rng(seed)
    rates = list(1.0 + skew * rng.random(n))
    rates[0] = 1.0
    offsets = list(rng.normal(0, 3600, n))
    ev = [(t, w, i % n) for t, w, i in events]
    pa = [(i % n, a, a + length) for i, a, length in parts]
    tr = run_election(cfg, n, until=200.0, latency=lambda r: lat * r.random(), rates=rates, offsets=offsets,
                      events=ev, partitions=pa, seed=seed)
    assert tr.max_overlap(200.0) == 0.0


def test_client_go_accepts_durations_that_allow_two_leaders_without_any_skew():
    """renewDeadline 18 s, retryPeriod 11 s, leaseDuration 20 s pass NewLeaderElector's checks, but a
    leader cut off from the API servers acts for retryPeriod + renewDeadline = 29 s after its last
    renewal while a standby may take over 20 s after it saw it."""
    ld, rd, rp = 20.0, 18.0, 11.0
    validate(ld, rd, rp)
    assert max_safe_clock_skew(ld, rd, rp) < 0
    worst = max(run_election(ElectionConfig(ld, rd, rp), 2, until=150.0, partitions=[(0, 60.0, 150.0)],
                             seed=s).max_overlap(150.0) for s in range(10))
    assert worst > 0


def test_beyond_the_bound_two_leaders_can_act_at_once():
    """The check above can fail: a partitioned leader on a slow clock, a standby twice as fast."""
    worst = max(run_election(ElectionConfig(), 2, until=80.0, rates=[1.0, 2.0], partitions=[(0, 30.0, 80.0)],
                             seed=s).max_overlap(80.0) for s in range(5))
    assert worst > 1.0


@settings(max_examples=25)
@given(d=durations, n=st.integers(2, 4), seed=st.integers(0, 2**16), at=st.floats(20.0, 60.0),
       lat=st.floats(0.0005, 0.05))
def test_after_a_crash_a_standby_leads_within_lease_duration_and_one_jittered_retry(d, n, seed, at, lat):
    ld, rd, rp = d
    at = at + ld
    tr = run_election(ElectionConfig(ld, rd, rp), n, until=at + 3 * ld + 10 * rp, latency=lat,
                      events=[(at, "crash", 0)], seed=seed)
    start = tr.first_start_after(at, exclude="c0")
    retry = (1 + JITTER_FACTOR) * rp
    winner = next(c for c in tr.candidates[1:] if c.led and c.led[0][0] == start)
    # from its last sight of the old leader's record: the lease, then one jittered try
    assert start - winner.took_over_after <= ld + retry + 4 * lat + 1e-9
    assert start - winner.took_over_after >= ld
    # from the crash: that last sight may itself come one jittered try after the last renewal
    assert start - at <= ld + 2 * retry + 6 * lat + 1e-9


@settings(max_examples=25)
@given(d=durations, n=st.integers(2, 4), seed=st.integers(0, 2**16), at=st.floats(20.0, 60.0),
       lat=st.floats(0.0005, 0.05))
def test_a_released_lease_is_taken_within_one_jittered_retry(d, n, seed, at, lat):
    ld, rd, rp = d
    at = at + ld
    tr = run_election(ElectionConfig(ld, rd, rp, release_on_cancel=True), n, until=at + 3 * ld + 10 * rp,
                      latency=lat, events=[(at, "cancel", 0)], seed=seed)
    released = [w.time for w in tr.writes if w.record.holder == ""]
    start = tr.first_start_after(at, exclude="c0")
    if not released:
        # the release lost a race with the leader's own renewal, still in flight when it was
        # cancelled: that renewal landed after the cancel and the release got 409 Conflict
        assert [w for w in tr.writes if w.writer == "c0" and at < w.time <= at + lat + 1e-9]
        return
    assert len(released) == 1
    assert start - released[0] <= (1 + JITTER_FACTOR) * rp + 3 * lat + 1e-9


def test_handover_times_are_what_the_bounds_say_on_average():
    """Many handovers: release ~ a residual retry (mean below one retry period with two
    standbys), crash ~ the lease duration."""
    rel, crash = [], []
    for s in range(60):
        at = 30.0 + (s % 7) * 0.3
        rel.append(run_election(ElectionConfig(release_on_cancel=True), 3, until=60.0, events=[(at, "cancel", 0)],
                                seed=s).first_start_after(at, exclude="c0") - at)
        crash.append(run_election(ElectionConfig(), 3, until=80.0, events=[(at, "crash", 0)],
                                  seed=s).first_start_after(at, exclude="c0") - at)
    assert np.mean(rel) < RP and max(rel) < (1 + JITTER_FACTOR) * RP + 0.05
    assert LD - 2 < np.mean(crash) < LD + (1 + JITTER_FACTOR) * RP


def test_deterministic_for_a_seed():
    a = run_election(ElectionConfig(), 3, until=100.0, events=[(40.0, "crash", 0)], seed=9)
    b = run_election(ElectionConfig(), 3, until=100.0, events=[(40.0, "crash", 0)], seed=9)
    c = run_election(ElectionConfig(), 3, until=100.0, events=[(40.0, "crash", 0)], seed=10)
    assert a.intervals(100.0) == b.intervals(100.0) != c.intervals(100.0)


def test_a_kill_during_the_release_and_a_second_sigterm_are_handled():
    """Found by the property test: SIGTERM, then SIGKILL while the release is in flight."""
    for second in ("crash", "cancel"):
        tr = run_election(ElectionConfig(release_on_cancel=True), 2, until=60.0, latency=0.2,
                          events=[(20.0, "cancel", 0), (20.05, second, 0)], seed=1)
        assert tr.led["c0"][0][1] == pytest.approx(20.0) and tr.led["c1"]

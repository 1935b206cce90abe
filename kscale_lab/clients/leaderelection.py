"""Leader election as client-go does it: one Lease, local clocks, three durations.

Picture a relay of night watchmen and one logbook at the gate. The watchman on duty
writes "still here, <name>" in the book every couple of seconds. The others come by
now and then (every 2 to 4.4 seconds, never in step) and read the last line. They do
not trust the time *written* in the book (the writer's watch may be wrong); each notes
on *his own* watch when he last saw the line change. Only when the line has not
changed for a whole ``leaseDuration`` on his own watch may he cross it out and write
his own name; and the book takes a new line only from someone who read the latest one
(a second writer who read an older page is refused). A watchman who cannot write his
line for ``renewDeadline`` goes home before anyone could think him gone. One who is
sent home on purpose can write "nobody" in the book (``ReleaseOnCancel``): the next
passer-by takes over at once instead of waiting out the lease.

This module is that algorithm, as ``k8s.io/client-go/tools/leaderelection`` runs it
(read, not copied):

* ``NewLeaderElector`` refuses a configuration unless ``leaseDuration > renewDeadline``
  and ``renewDeadline > JitterFactor x retryPeriod`` (``JitterFactor = 1.2``), all three
  positive (:func:`validate`).
* ``acquire``: ``tryAcquireOrRenew`` at once, then again after ``wait.Jitter(retryPeriod,
  1.2)`` = U[1, 2.2) x retryPeriod, measured after the previous try returned
  (``wait.JitterUntil(..., sliding=true)``).
* ``tryAcquireOrRenew``: the leader first updates optimistically (the fast path); anyone
  else GETs the Lease; when the record differs from the one it last saw, it remembers it
  with ``observedTime = now`` on its **local** clock. It gives up this round when the
  record names a holder, ``observedTime + leaseDurationSeconds`` is still ahead of its
  ``now`` and the holder is not itself; otherwise it UPDATEs the Lease with the
  resourceVersion it read (``resourcelock/leaselock.go``): a concurrent writer makes the
  update fail with a conflict.
* ``renew``: the leader retries every ``retryPeriod`` (``wait.Until``), each round a poll
  every ``retryPeriod`` bounded by a ``renewDeadline`` context; a round that does not
  succeed before its deadline ends the leadership (``OnStoppedLeading``: kube-scheduler and
  kube-controller-manager exit). Requests still in flight at the deadline are cancelled
  on the client, but a write the server already took still lands.
* ``release`` (``ReleaseOnCancel``, when the run context is cancelled): UPDATE the Lease to
  an empty holder with ``leaseDurationSeconds: 1``; an empty holder may be taken at once. A
  release can lose a race with the leader's own renewal still in flight when the context was
  cancelled (that renewal lands, the release carries the older resourceVersion and gets 409
  Conflict): then the standbys wait for the lease to expire, as without the release.

Defaults: 15 s / 10 s / 2 s (``component-base/config/v1alpha1/defaults.go``,
``RecommendedDefaultLeaderElectionConfiguration``).

Timing that follows, which the lab measures rather than assumes: after a crash a standby
leads within ``leaseDuration + 2.2 x retryPeriod`` of its last observation (<= 19.4 s);
after a release within one jittered retry (<= 4.4 s, about 1.6 s on average with one
standby). Clock *offsets* do not matter at all (only local durations are compared). What
does matter: a leader cut off from the API servers keeps acting for up to ``retryPeriod +
renewDeadline`` after its last successful renewal, while a standby may act ``leaseDuration``
after it saw that renewal. So one leader at a time is guaranteed only when ``leaseDuration >
renewDeadline + retryPeriod`` (15 > 12 with the defaults; client-go's validation does not ask
for it) and while the fastest clock runs at most ``leaseDuration / (renewDeadline +
retryPeriod)`` times as fast as the slowest (:func:`max_safe_clock_skew`: 1.25 with the
defaults; client-go's comment says "approximately leaseDuration / renewDeadline", 1.5, which is
looser).

Candidates are the few: SimPy processes on the caller's environment. The requests go
through a ``transport`` (the control-plane core's API servers in the hot-standby lab, a
fixed latency in the tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import simpy

from ..errors import ParameterError
from ..params import Param, ParamSet

#: client-go leaderelection.go: ``JitterFactor = 1.2``
JITTER_FACTOR = 1.2

_DEFAULTS = "component-base config/v1alpha1/defaults.go RecommendedDefaultLeaderElectionConfiguration: "

LEADER_ELECTION_PARAMS = ParamSet([
    Param("leader_elect_lease_duration", 15.0, "s", _DEFAULTS + "LeaseDuration 15 s",
          "how long a standby waits, on its own clock, after it last saw the Lease change before it may take it",
          lo=0.001, hi=86_400, flag="--leader-elect-lease-duration"),
    Param("leader_elect_renew_deadline", 10.0, "s", _DEFAULTS + "RenewDeadline 10 s",
          "how long the leader keeps retrying a renewal before it stops leading (and exits)",
          lo=0.001, hi=86_400, flag="--leader-elect-renew-deadline"),
    Param("leader_elect_retry_period", 2.0, "s", _DEFAULTS + "RetryPeriod 2 s",
          "the leader renews every retry period; standbys try every U[1, 2.2) x retry period",
          lo=0.001, hi=86_400, flag="--leader-elect-retry-period"),
    Param("clock_skew", 0.0, "1",
          "fault injection: client-go tolerates any clock offset but not any clock rate difference "
          "(leaderelection.go package comment)",
          "how much faster the standbys' clocks run than the leader's (0.1 = 10 % faster); a rate, "
          "not an offset", lo=0.0, hi=10.0),
])


def validate(lease_duration: float, renew_deadline: float, retry_period: float, clock_skew: float = 0.0,
             names: tuple[str, str, str] = ("leader_elect_lease_duration", "leader_elect_renew_deadline",
                                            "leader_elect_retry_period")) -> None:
    """Refuse what client-go's ``NewLeaderElector`` refuses, in one line naming the parameters
    and the rule: ``leaseDuration > renewDeadline > 1.2 x retryPeriod > 0``."""
    ld, rd, rp = names
    for name, v in zip(names, (lease_duration, renew_deadline, retry_period)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ParameterError(name, f"must be greater than zero (client-go NewLeaderElector); got {v!r}")
    if lease_duration <= renew_deadline:
        raise ParameterError(rd, f"must be less than {ld} (client-go NewLeaderElector: leaseDuration must be "
                                 f"greater than renewDeadline); got {rd}={renew_deadline:g} s, "
                                 f"{ld}={lease_duration:g} s")
    if renew_deadline <= JITTER_FACTOR * retry_period:
        raise ParameterError(rp, f"must be less than {rd} / {JITTER_FACTOR:g} (client-go NewLeaderElector: "
                                 f"renewDeadline must be greater than retryPeriod*JitterFactor); got "
                                 f"{rp}={retry_period:g} s, {rd}={renew_deadline:g} s")
    if not (math.isfinite(clock_skew) and clock_skew >= 0):
        raise ParameterError("clock_skew", f"must be a non-negative rate difference (0.1 = 10 % faster); "
                                           f"got {clock_skew!r}")


def max_safe_clock_skew(lease_duration: float, renew_deadline: float, retry_period: float) -> float:
    """The largest clock-rate difference (fastest / slowest - 1) below which two leaders can
    never act at once, whatever the request latencies: a leader acts at most ``retryPeriod +
    renewDeadline`` (its clock) after its last successful renewal was written; a standby
    acts no sooner than ``leaseDuration`` (its clock) after it read that renewal. Negative
    when ``leaseDuration <= renewDeadline + retryPeriod``: then not even equal clocks are safe."""
    return lease_duration / (renew_deadline + retry_period) - 1.0


def documented_clock_skew(lease_duration: float, renew_deadline: float) -> float:
    """client-go's own rule of thumb: a rate ratio of about ``leaseDuration / renewDeadline``."""
    return lease_duration / renew_deadline - 1.0


def crash_failover_bound(lease_duration: float, retry_period: float) -> float:
    """After the leader dies, a standby that saw its last renewal takes over within
    ``leaseDuration`` plus one jittered retry (plus the latency of its requests)."""
    return lease_duration + (1.0 + JITTER_FACTOR) * retry_period


def release_takeover_bound(retry_period: float) -> float:
    """After a release, a standby takes the lease at its next try: within one jittered retry
    (plus request latency)."""
    return (1.0 + JITTER_FACTOR) * retry_period


# ----------------------------------------------------------------------------------------
# The Lease (resourcelock.LeaderElectionRecord in a coordination.k8s.io Lease)
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaderElectionRecord:
    holder: str
    lease_duration_seconds: float
    acquire_time: float          # writer's local clock
    renew_time: float            # writer's local clock
    transitions: int


@dataclass
class LeaseWrite:
    time: float
    writer: str
    record: LeaderElectionRecord
    resource_version: int


class LeaseStore:
    """The Lease object as etcd holds it behind the API servers: a record and a
    resourceVersion. ``update`` is a compare-and-swap on the resourceVersion (the API
    server's optimistic concurrency: a stale writer gets 409 Conflict)."""

    def __init__(self, name: str = "lease"):
        self.name = name
        self.record: LeaderElectionRecord | None = None
        self.rv = 0
        self.writes: list[LeaseWrite] = []
        self.conflicts = 0

    def get(self):
        return (None, 0) if self.record is None else (self.record, self.rv)

    def create(self, t: float, writer: str, rec: LeaderElectionRecord) -> bool:
        if self.record is not None:
            self.conflicts += 1
            return False
        return self._put(t, writer, rec)

    def update(self, t: float, writer: str, rec: LeaderElectionRecord, rv: int) -> bool:
        if self.record is None or rv != self.rv:
            self.conflicts += 1
            return False
        return self._put(t, writer, rec)

    def _put(self, t, writer, rec) -> bool:
        self.record = rec
        self.rv += 1
        self.writes.append(LeaseWrite(t, writer, rec, self.rv))
        return True


@dataclass(frozen=True)
class Clock:
    """A process's clock: ``local = offset + rate x real``. Durations a process waits are
    local; :meth:`real` turns one into real seconds."""

    rate: float = 1.0
    offset: float = 0.0

    def now(self, t: float) -> float:
        return self.offset + self.rate * t

    def real(self, local_seconds: float) -> float:
        return local_seconds / self.rate


@dataclass(frozen=True)
class ElectionConfig:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = False

    def __post_init__(self):
        validate(self.lease_duration, self.renew_deadline, self.retry_period)

    @classmethod
    def from_params(cls, p, release_on_cancel: bool = False) -> "ElectionConfig":
        validate(p["leader_elect_lease_duration"], p["leader_elect_renew_deadline"],
                 p["leader_elect_retry_period"], p.get("clock_skew", 0.0))
        return cls(p["leader_elect_lease_duration"], p["leader_elect_renew_deadline"],
                   p["leader_elect_retry_period"], release_on_cancel)


#: a transport answers (latency in seconds, success) for one request of a kind:
#: "get", "update" or "create" (a failure: no connection, 429, a server error)
Transport = Callable[[str], "tuple[float, bool]"]


def fixed_transport(latency: float = 0.002) -> Transport:
    return lambda op: (latency, True)


class Candidate:
    """One process running ``LeaderElector.Run``: acquire, then renew until it cannot (or is
    cancelled), then release if configured. ``cancel()`` is a graceful stop (SIGTERM:
    the run context is cancelled), ``crash()`` an immediate one (SIGKILL, OOM)."""

    def __init__(self, env: simpy.Environment, name: str, store: LeaseStore, cfg: ElectionConfig,
                 transport: Transport, rng: np.random.Generator, clock: Clock = Clock(),
                 on_started_leading: Callable[["Candidate", float], None] | None = None,
                 on_stopped_leading: Callable[["Candidate", float, str], None] | None = None,
                 start_delay: float = 0.0, renew_phase: float | None = None):
        self.env = env
        self.name = name
        self.store = store
        self.cfg = cfg
        self.transport = transport
        self.rng = rng
        self.clock = clock
        self.on_started = on_started_leading
        self.on_stopped = on_stopped_leading
        self.observed: LeaderElectionRecord | None = None
        self.observed_rv = 0
        self.observed_time = -math.inf            # local clock
        self.leading = False
        self.led: list[list[float]] = []           # [start, end] of each leadership (real time)
        self.alive = True
        self.stop_reason = ""
        self.requests = {"get": 0, "update": 0, "create": 0}
        self.failed_requests = 0
        self._renew_phase = renew_phase
        self.took_over_after = math.nan
        self._cancelled = self._crashed = False
        self.proc = env.process(self._run(start_delay))

    # -- what the process knows ------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self.observed is not None and self.observed.holder == self.name

    def _lease_valid(self, now_local: float) -> bool:
        if self.observed is None:
            return False
        return self.observed_time + self.observed.lease_duration_seconds > now_local

    def _set_observed(self, rec: LeaderElectionRecord, rv: int) -> None:
        self.observed, self.observed_rv = rec, rv
        self.observed_time = self.clock.now(self.env.now)

    # -- requests --------------------------------------------------------------------
    def _send(self, op: str, rec: LeaderElectionRecord | None = None, rv: int = 0):
        """Send one request now; the returned event fires at its response with
        ``(ok, record, rv)``. A write takes effect at the server when the response is
        sent, whether or not the caller is still waiting for it."""
        env = self.env
        self.requests[op] += 1
        latency, ok = self.transport(op)
        done = env.event()

        def serve(_):
            if not ok:
                done.succeed((False, None, 0))
                return
            if op == "get":                       # (True, None, 0): NotFound
                r, v = self.store.get()
                done.succeed((True, r, v))
            elif op == "create":
                good = self.store.create(env.now, self.name, rec)
                done.succeed((good, rec, self.store.rv))
            else:
                good = self.store.update(env.now, self.name, rec, rv)
                done.succeed((good, rec, self.store.rv))

        env.timeout(max(float(latency), 0.0)).callbacks.append(serve)
        return done

    def _call(self, op, rec=None, rv=0, deadline=math.inf):
        """Wait for a request's response, or give up at ``deadline`` (a cancelled context)."""
        ev = self._send(op, rec, rv)
        if math.isfinite(deadline):
            timer = self.env.timeout(max(0.0, deadline - self.env.now))
            got = yield ev | timer
            if ev not in got:
                self.failed_requests += 1
                return (False, None, 0)
            res = got[ev]
        else:
            res = yield ev
        if not res[0]:
            self.failed_requests += 1
        return res

    def _try_acquire_or_renew(self, deadline=math.inf):
        """client-go ``tryAcquireOrRenew``; returns True on success."""
        now = self.clock.now(self.env.now)
        cfg = self.cfg
        # 1. fast path: the leader updates optimistically with what it last wrote
        if self.is_leader and self._lease_valid(now):
            rec = LeaderElectionRecord(self.name, cfg.lease_duration, self.observed.acquire_time, now,
                                       self.observed.transitions)
            ok, got, rv = yield from self._call("update", rec, self.observed_rv, deadline)
            if ok:
                self._set_observed(got, rv)
                return True
        # 2. obtain (or create) the record
        ok, got, rv = yield from self._call("get", deadline=deadline)
        if not ok:
            return False
        if got is None:                                    # NotFound: create it
            rec = LeaderElectionRecord(self.name, cfg.lease_duration, now, now, 0)
            ok, got, rv = yield from self._call("create", rec, 0, deadline)
            if ok:
                self._set_observed(got, rv)
            return ok
        # 3. a changed record restarts the local lease clock
        if got != self.observed:
            self._set_observed(got, rv)
        else:
            self.observed_rv = rv
        if got.holder and self._lease_valid(now) and not self.is_leader:
            return False
        if got.holder and not self.is_leader:
            self.took_over_after = self.observed_time    # the (local) time it last saw the old holder's record
        # 4. take or renew it
        if self.is_leader:
            rec = LeaderElectionRecord(self.name, cfg.lease_duration, got.acquire_time, now, got.transitions)
        else:
            rec = LeaderElectionRecord(self.name, cfg.lease_duration, now, now, got.transitions + 1)
        ok, got2, rv2 = yield from self._call("update", rec, rv, deadline)
        if ok:
            self._set_observed(got2, rv2)
        return ok

    def _jittered_retry(self) -> float:
        return self.clock.real(self.cfg.retry_period * (1.0 + self.rng.random() * JITTER_FACTOR))

    # -- the loop --------------------------------------------------------------------
    def _run(self, start_delay: float):
        env, cfg = self.env, self.cfg
        try:
            if start_delay > 0:
                yield env.timeout(start_delay)
            while True:                                    # acquire: wait.JitterUntil, sliding
                ok = yield from self._try_acquire_or_renew()
                if ok:
                    break
                yield env.timeout(self._jittered_retry())
            self._start_leading()
            if self._renew_phase is not None:         # a leader already in its renew loop at t=0
                yield env.timeout(self.clock.real(self._renew_phase))
            while True:                                    # renew: wait.Until(RetryPeriod)
                start = env.now
                deadline = start + self.clock.real(cfg.renew_deadline)
                k = 0
                renewed = False
                while True:                                # PollImmediateUntil(RetryPeriod, deadline)
                    renewed = yield from self._try_acquire_or_renew(deadline)
                    if renewed:
                        break
                    k += 1
                    nxt = start + k * self.clock.real(cfg.retry_period)
                    if nxt >= deadline:
                        break
                    yield env.timeout(max(0.0, nxt - env.now))
                if not renewed:
                    if env.now < deadline:
                        yield env.timeout(deadline - env.now)
                    self._stop_leading("lost")
                    if cfg.release_on_cancel:
                        yield from self._release()
                    self.alive = False
                    return
                yield env.timeout(self.clock.real(cfg.retry_period))
        except simpy.Interrupt as why:
            reason = str(why.cause)
            was = self.leading
            self._stop_leading(reason)
            if reason == "cancel" and cfg.release_on_cancel and was:   # renew() returned: release()
                try:
                    yield from self._release()
                except simpy.Interrupt:                # killed while it was releasing
                    self.stop_reason = "crash"
            self.alive = False

    def _release(self):
        """client-go ``release``: an empty holder, ``leaseDurationSeconds: 1``."""
        if not self.is_leader:
            return True
        now = self.clock.now(self.env.now)
        rec = LeaderElectionRecord("", 1.0, now, now, self.observed.transitions)
        ok, got, rv = yield from self._call("update", rec, self.observed_rv)
        if ok:
            self._set_observed(got, rv)
        return ok

    def _start_leading(self) -> None:
        self.leading = True
        self.led.append([self.env.now, math.inf])
        if self.on_started is not None:
            self.on_started(self, self.env.now)

    def _stop_leading(self, reason: str) -> None:
        self.stop_reason = reason
        if not self.leading:
            return
        self.leading = False
        self.led[-1][1] = self.env.now
        if self.on_stopped is not None:
            self.on_stopped(self, self.env.now, reason)

    # -- what the owner does to the process ------------------------------------------
    def cancel(self) -> None:
        """SIGTERM: the run context is cancelled (release follows if configured). A second
        SIGTERM changes nothing."""
        if self.alive and self.proc.is_alive and not self._cancelled:
            self._cancelled = True
            self.proc.interrupt("cancel")

    def crash(self) -> None:
        """SIGKILL / OOM: the process is gone at once, nothing (more) is released."""
        if self.alive and self.proc.is_alive and not self._crashed:
            self._crashed = True
            self.proc.interrupt("crash")


# ----------------------------------------------------------------------------------------
# A small harness: candidates on a bare SimPy clock (tests, the lab's handover samples)
# ----------------------------------------------------------------------------------------


@dataclass
class ElectionTrace:
    """Who led when (real time), every lease write, and the scripted events."""

    led: dict[str, list[list[float]]]
    writes: list[LeaseWrite]
    events: list[tuple[float, str, str]] = field(default_factory=list)
    candidates: list = field(default_factory=list)
    conflicts: int = 0

    def intervals(self, until: float) -> list[tuple[float, float, str]]:
        out = []
        for name, spans in self.led.items():
            for a, b in spans:
                out.append((a, min(b, until), name))
        return sorted(out)

    def max_overlap(self, until: float) -> float:
        """Longest time during which two candidates both believed they led (0 = never)."""
        iv = self.intervals(until)
        worst = 0.0
        for i in range(len(iv)):
            for j in range(i + 1, len(iv)):
                a0, a1, na = iv[i]
                b0, b1, nb = iv[j]
                if na == nb:
                    continue
                worst = max(worst, min(a1, b1) - max(a0, b0))
        return worst

    def first_start_after(self, t: float, exclude: str | None = None) -> float:
        starts = [a for name, spans in self.led.items() if name != exclude for a, _ in spans if a >= t]
        return min(starts) if starts else math.inf


def run_election(cfg: ElectionConfig, n: int = 3, *, until: float = 120.0, latency: float | Callable = 0.002,
                 rates=None, offsets=None, events=(), seed: int = 0, leader_first: bool = True,
                 partitions=()) -> ElectionTrace:
    """Run ``n`` candidates from t=0 on one Lease; ``events`` are ``(time, "crash"|"cancel",
    index)`` applied to whichever process holds that slot; ``partitions`` are ``(index, from,
    to)``: that candidate's requests fail during the window. ``latency`` is seconds or
    ``f(rng) -> seconds``. Candidate 0 starts first (it leads) when ``leader_first``."""
    env = simpy.Environment()
    rng = np.random.default_rng(seed)
    store = LeaseStore()
    rates = list(rates) if rates is not None else [1.0] * n
    offsets = list(offsets) if offsets is not None else [0.0] * n
    cands: list[Candidate] = []

    def transport_for(i):
        def tr(op):
            lat = latency(rng) if callable(latency) else float(latency)
            for j, a, b in partitions:
                if j == i and a <= env.now < b:
                    return lat, False
            return lat, True
        return tr

    for i in range(n):
        delay = 0.0 if (i == 0 or not leader_first) else 0.05 + 0.01 * i
        cands.append(Candidate(env, f"c{i}", store, cfg, transport_for(i), rng, Clock(rates[i], offsets[i]),
                               start_delay=delay))
    trace_events = []

    def script(t, what, i):
        yield env.timeout(t)
        trace_events.append((env.now, what, cands[i].name))
        getattr(cands[i], what)()

    for t, what, i in events:
        env.process(script(t, what, i))
    env.run(until=until)
    return ElectionTrace({c.name: c.led for c in cands}, store.writes, trace_events, cands, store.conflicts)

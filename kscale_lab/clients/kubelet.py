"""The kubelets' heartbeats, as one fleet of numpy arrays.

Every kubelet tells the control plane it is alive. How it does so is the subject
of KEP-589 (formerly KEP-0009) and of the article's section 2:

* **off** (Kubernetes <= 1.12): every ``nodeStatusUpdateFrequency`` (10 s) the kubelet
  GETs its Node (from the API server's cache) and PATCHes the Node's whole status:
  a ~15 KB object, rewritten in etcd every time.
* **article** (KEP-0009, 1.14): a tiny Lease in ``kube-node-lease`` is renewed every
  10 s (0.25 x ``nodeLeaseDurationSeconds`` = 40 s); the Node status is still computed
  every 10 s (a GET) but PATCHed only every 60 s or when it changed.
* **upstream** (1.17+ and 1.31+): Lease as above; the status is PATCHed every
  ``nodeStatusReportFrequency`` = 5 min or on a meaningful change; since PR #123977
  (1.31) the kubelet reads its Node from its own informer, not with a GET.

A kubelet's loops are *sliding*: the next run is scheduled an interval after the
previous one finished (``wait.Until`` / ``JitterUntil(..., sliding=true)``), the
Lease loop with 4 % jitter. A failed write is retried at once up to 5 times
(``nodeStatusUpdateRetry``, the lease controller's ``maxUpdateRetries``); a request
that times out (the heartbeat client's timeout is min(nodeStatusUpdateFrequency,
leaseDuration) = 10 s, ``cmd/kubelet/app/server.go``) fails after that timeout.

The fleet holds, per node and per loop, the time of the next attempt and the
attempt number; :meth:`due` returns which nodes act in a tick and :meth:`settle`
applies the API server's answers. No Python object per node.

Mirrors: ``pkg/kubelet/kubelet_node_status.go``,
``staging/src/k8s.io/component-helpers/apimachinery/lease/controller.go``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_RETRIES = 5  # nodeStatusUpdateRetry, lease controller maxUpdateRetries
LEASE_JITTER = 0.04  # JitterUntil(c.sync, c.renewInterval, 0.04, true, ...)


@dataclass
class Loop:
    """One periodic loop per node (Lease renewal, or status sync)."""

    interval: float
    jitter: float
    next_at: np.ndarray      # time of the next attempt
    attempt: np.ndarray      # attempts made in the current round (0 = fresh)

    @classmethod
    def start(cls, n: int, interval: float, jitter: float, rng: np.random.Generator) -> "Loop":
        # kubelets start at random phases over one interval
        return cls(interval, jitter, rng.random(n) * interval, np.zeros(n, dtype=np.int8))

    def due(self, t1: float) -> np.ndarray:
        """Nodes whose next attempt is before ``t1`` (overdue ones included)."""
        return np.flatnonzero(self.next_at < t1)

    def succeed(self, idx: np.ndarray, done_at: np.ndarray, rng: np.random.Generator) -> None:
        self.attempt[idx] = 0
        period = self.interval
        if self.jitter:
            period = self.interval * (1.0 + self.jitter * rng.random(idx.size))
        self.next_at[idx] = done_at + period

    def fail(self, idx: np.ndarray, failed_at: np.ndarray) -> None:
        """A failed attempt: retry at once, or give up this round after MAX_RETRIES."""
        a = self.attempt[idx] + 1
        retry = a < MAX_RETRIES
        self.attempt[idx] = np.where(retry, a, 0)
        self.next_at[idx] = np.where(retry, failed_at, failed_at + self.interval)


class KubeletFleet:
    """All kubelets' heartbeat loops for one setting of the heartbeats switch."""

    def __init__(self, n: int, setting: str, p: dict, rng: np.random.Generator):
        self.n = n
        self.setting = setting
        self.rng = rng
        status_every = p["node_status_update_frequency"]
        self.status = Loop.start(n, status_every, 0.0, rng)
        self.lease = Loop.start(n, p["node_lease_renew_interval"], LEASE_JITTER, rng) \
            if setting != "off" else None
        if setting == "off":
            self.report_every = 0.0  # every sync posts
        elif setting == "article":
            self.report_every = p["node_status_report_frequency_article"]
        else:
            self.report_every = p["node_status_report_frequency"]
        # last time each node posted its status, at a random phase relative to its first
        # sync, so that posts are spread evenly from the start (clusters are not born at once)
        syncs_per_report = max(1, int(np.ceil(self.report_every / status_every)))
        first_post = rng.integers(0, syncs_per_report, n)          # which of its syncs posts first
        self.last_report = self.status.next_at - self.report_every + first_post * status_every
        # upstream: meaningful status changes arrive as a Poisson process per node
        change_every = p["node_status_change_interval"]
        self.change_rate = 0.0 if change_every <= 0 else 1.0 / change_every
        self.pending_change = np.zeros(n, dtype=bool)
        self.gets_node = setting in ("off", "article")   # GET before computing status (until PR #123977)

    def changes(self, dt: float) -> None:
        if self.change_rate > 0 and self.setting != "off":
            # each node changes with probability rate*dt this tick: draw how many, then which
            k = self.rng.binomial(self.n, min(1.0, self.change_rate * dt))
            if k:
                self.pending_change[self.rng.integers(0, self.n, k)] = True

    def status_posts(self, idx: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Among status syncs ``idx`` at times ``t``: which PATCH the Node status."""
        if self.setting == "off":
            return np.ones(idx.size, dtype=bool)
        return (t - self.last_report[idx] >= self.report_every) | self.pending_change[idx]

"""The load balancer in front of the API servers, and the client-side alternative.

Picture a doorman who sends each arriving guest to one of three dining rooms. He only
decides when a guest *arrives*: a guest who sits down stays for the whole evening. A
Kubernetes client is such a guest: client-go opens one HTTP/2 connection (TLS) and
sends every request and every watch over it until the connection breaks. A layer-4
load balancer therefore balances **new connections**, not load.

The doorman also learns slowly. He probes each room every
``lb_health_check_interval`` seconds (``/readyz``) and believes a room is open only
after ``lb_healthy_threshold`` good answers in a row (and closed after
``lb_unhealthy_threshold`` bad ones). During a rolling upgrade the instance that just
came back is not yet in his list when the next one goes down, so its guests all go
to the rooms he still believes in: this lag, not bad luck, is how "all load landed on
one server" happens.

Policies for a new connection (``lb_policy``):

* ``round-robin``: the next healthy backend in turn;
* ``least-connections``: the healthy backend with the fewest open connections (a
  batch of arrivals fills the emptiest first, water-filling);
* ``random``: uniformly among the healthy backends;
* ``client-side``: no load balancer; each client picks one of the configured API
  server addresses at random and knows nothing of their health (the kubelet-side
  variant the article tried); a pick of a dead server fails and is retried.

Mirrors: cloud L4 load balancers' target health checks (interval, healthy and
unhealthy thresholds), HAProxy's ``balance roundrobin|leastconn|random``.
"""

from __future__ import annotations

import numpy as np

from ..params import Param, ParamSet

LB_POLICIES = ("round-robin", "least-connections", "random", "client-side")

LB_PARAMS = ParamSet([
    Param("lb_policy", "round-robin", "1", "HAProxy and most cloud L4 load balancers default to round robin",
          "how new connections are spread over the API servers", choices=LB_POLICIES, kind=str),
    Param("lb_health_check_interval", 10.0, "s",
          "assumption: cloud defaults range from 5 s (GCP) to 30 s (AWS target groups); 10 s is the shortest "
          "AWS NLB allows",
          "how often the load balancer probes each API server's /readyz", lo=0.5, hi=600,
          plausible=(5.0, 30.0), plausible_source='cloud defaults: GCP 5 s, AWS NLB 10 s at least, AWS target groups 30 s'),
    Param("lb_healthy_threshold", 3, "probes",
          "assumption: cloud defaults range from 2 (GCP) to 5 (AWS NLB); 3 is a common setting",
          "good probes in a row before a backend receives new connections", lo=1, hi=100, kind=int,
          plausible=(2, 5), plausible_source='cloud defaults: 2 (GCP) to 5 (AWS NLB)'),
    Param("lb_unhealthy_threshold", 2, "probes", "assumption: cloud defaults range from 2 to 3",
          "failed probes in a row before a backend stops receiving new connections", lo=1, hi=100, kind=int),
])


class LoadBalancer:
    """Health-checked backends and a policy for new connections. Arrays over instance slots."""

    def __init__(self, slots: int, policy: str, p, rng: np.random.Generator, healthy: np.ndarray | None = None):
        LB_PARAMS["lb_policy"].validate(policy)
        self.k = slots
        self.policy = policy
        self.rng = rng
        self.interval = float(p["lb_health_check_interval"])
        self.up_after = int(p["lb_healthy_threshold"])
        self.down_after = int(p["lb_unhealthy_threshold"])
        self.healthy = np.zeros(slots, dtype=bool) if healthy is None else healthy.copy()
        self.passes = np.where(self.healthy, self.up_after, 0).astype(np.int64)
        self.fails = np.zeros(slots, dtype=np.int64)
        self.registered = self.healthy.copy()          # targets the LB knows about
        self._rr = 0

    def probe(self, readyz: np.ndarray, registered: np.ndarray) -> np.ndarray:
        """One round of health checks; returns the slots whose health changed."""
        self.registered = registered.copy()
        ok = readyz & registered
        self.passes = np.where(ok, self.passes + 1, 0)
        self.fails = np.where(ok, 0, self.fails + 1)
        before = self.healthy.copy()
        self.healthy = np.where(ok & (self.passes >= self.up_after), True,
                                np.where(~ok & (self.fails >= self.down_after), False, self.healthy))
        self.healthy &= registered
        return np.flatnonzero(before != self.healthy)

    def pick(self, m: int, open_connections: np.ndarray) -> np.ndarray:
        """Backends for ``m`` new connections (``-1`` where no backend is known)."""
        if m == 0:
            return np.zeros(0, dtype=np.int64)
        if self.policy == "client-side":
            known = np.flatnonzero(self.registered)
            if known.size == 0:
                return np.full(m, -1, dtype=np.int64)
            return known[self.rng.integers(0, known.size, m)]
        h = np.flatnonzero(self.healthy)
        if h.size == 0:
            return np.full(m, -1, dtype=np.int64)
        if self.policy == "round-robin":
            out = h[(self._rr + np.arange(m)) % h.size]
            self._rr = (self._rr + m) % h.size
            return out
        if self.policy == "random":
            return h[self.rng.integers(0, h.size, m)]
        # least connections: water-fill the emptiest backends, then hand them out in random order
        return self.rng.permutation(water_fill(open_connections[h].astype(np.float64), m, h))


def water_fill(counts: np.ndarray, m: int, ids: np.ndarray) -> np.ndarray:
    """Backend ids for ``m`` arrivals, each sent to the backend with the fewest connections at
    that moment (ties to the lowest index), as a least-connections balancer does one by one.

    Computed by levels: the arrivals raise the emptiest backends to a common integer level
    ``L`` (the largest with ``sum(max(0, L - c)) <= m``); the few left over go one each to the
    lowest-indexed backends at that level."""
    c = np.asarray(counts, dtype=np.int64)
    if m <= 0 or c.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = int(c.min()), int(c.min()) + int(m)
    while lo < hi:                                   # largest L with fill(L) <= m
        mid = (lo + hi + 1) // 2
        if int(np.maximum(0, mid - c).sum()) <= m:
            lo = mid
        else:
            hi = mid - 1
    add = np.maximum(0, lo - c)
    rest = int(m - add.sum())
    if rest:
        at_level = np.flatnonzero(c + add == lo)[:rest]
        add[at_level] += 1
    return np.repeat(np.asarray(ids), add)

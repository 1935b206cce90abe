"""What an API server does with a request before serving it: admit it, or answer 429.

Three layers, each a small function on (instances x streams) arrays:

* **max-inflight** (every setting): ``--max-requests-inflight`` (read-only) and
  ``--max-mutating-requests-inflight`` cap the requests being served at once; above the
  cap the filter answers ``429 Too Many Requests`` with ``Retry-After: 1``. Watches are
  long-running and not counted. The fluid model applies the cap through Little's law:
  with latency ``R`` a stream of ``A`` requests/s holds ``A x R`` in flight, so the
  share over the cap is rejected (``filters/maxinflight.go``).
* **overload shedding** (the article's server side): an instance whose CPU load is above
  ``lb_429_threshold`` rejects requests with 429, a share that grows from 0 at the
  threshold to all of them at full load (the exact rule is Alibaba's and unpublished;
  this ramp is the simplest that sheds more the more it is overloaded). Node Lease
  renewals are exempt (a server that sheds load must not make healthy nodes look
  dead; upstream's APF gives them their own priority level). Above
  ``lb_close_threshold`` it also closes a share of its client connections per second.
* **probabilistic GOAWAY** (upstream, ``--goaway-chance``): each HTTP/2 request has a
  chance ``p`` of being answered with ``Connection: close``; the client's new requests
  then open a new connection through the load balancer (``filters/goaway.go``,
  PR #88567). Its effect on a client is a Poisson process of rate ``p x`` its request
  rate, which :mod:`kscale_lab.controlplane` draws per client.

API Priority and Fairness, which replaces max-inflight upstream, is the flow-control
lab's; it plugs in at the same place (a function of the arrival matrix that returns
the rejected share and the queueing wait).
"""

from __future__ import annotations

import numpy as np

from ..params import Param, ParamSet

SHEDDING_PARAMS = ParamSet([
    Param("lb_429_threshold", 0.5, "1",
          "assumption (Alibaba's value is unpublished): half the capacity, well above the share a server of a "
          "3-server control plane sized to survive one failure carries (about 1/3), and below saturation",
          "CPU load (demand / capacity, smoothed) above which an instance answers 429 (article setting)",
          lo=0.01, hi=1.0,
          plausible=(0.3, 0.8), plausible_source='from just above the 1/3 a server of three carries to close to saturation'),
    Param("lb_close_threshold", 0.8, "1",
          "assumption (Alibaba's value is unpublished): close to saturation, where queues start to grow",
          "CPU load above which an instance also closes client connections (article setting)", lo=0.01, hi=1.0,
          plausible=(0.6, 0.95), plausible_source='above the 429 threshold and below saturation'),
    Param("lb_close_share_per_s", 0.02, "1/s",
          "assumption: closing a few percent of connections per second moves load within a minute without "
          "dropping every client at once",
          "share of its connections an instance above the close threshold closes per second", lo=0, hi=1),
    Param("load_smoothing", 10.0, "s",
          "assumption: an instance judges its load over the last ~10 s (its CPU metric's window)",
          "time constant of the CPU load an instance compares with its thresholds", lo=0.1, hi=3600),
    Param("reconnect_429_count", 3, "429s",
          "assumption (Alibaba's value is unpublished): a few 429s, not one, signal an overloaded server",
          "429 answers within the window after which an article client reconnects", lo=1, hi=10_000, kind=int),
    Param("reconnect_429_window", 60.0, "s", "assumption (Alibaba's value is unpublished)",
          "window in which the 429s are counted", lo=1, hi=86_400),
    Param("reshuffle_period", 300.0, "s",
          "assumption (Alibaba's value is unpublished): the order of the reflector's own watch timeout "
          "(5-10 min), so a reshuffle costs no more than the re-watches clients make anyway; jittered +-50 %",
          "an article client closes and re-dials its connection about this often", lo=1, hi=86_400,
          plausible=(120.0, 1200.0), plausible_source='2 to 20 minutes: shorter costs a reconnect storm, longer leaves imbalance for most of an hour'),
    Param("goaway_chance", 0.001, "1",
          "kube-apiserver --goaway-chance: flag default 0, documented starting point 0.001, maximum 0.02 "
          "(server_run_options.go)",
          "probability that a request is answered with GOAWAY (upstream setting)", lo=0, hi=0.02,
          flag="--goaway-chance"),
    Param("shutdown_delay_duration", 30.0, "s",
          "kube-apiserver --shutdown-delay-duration (flag default 0): set, as the flag text advises, to "
          "cover the load balancer's detection (lb_unhealthy_threshold x lb_health_check_interval = 20 s) "
          "with margin",
          "upstream graceful shutdown: /readyz fails this long before the server stops taking requests",
          lo=0, hi=3600, flag="--shutdown-delay-duration"),
    Param("shutdown_drain_seconds", 5.0, "s",
          "assumption: in-flight non-watch requests finish within a few seconds (they time out at 60 s)",
          "time from the end of the shutdown delay to the process's exit", lo=0, hi=3600),
])


def inflight_rejections(A: np.ndarray, latency: np.ndarray, mutating: np.ndarray, long_running: np.ndarray,
                        max_mutating: float, max_readonly: float, held: np.ndarray | None = None,
                        dt: float = 1.0) -> np.ndarray:
    """Share of each (instance, stream) rejected by the max-inflight filter. A limit of 0 disables
    it (the flags' text, without API Priority and Fairness).

    Without ``held``: Little's law on the previous tick's latency (``A x latency`` in flight, the
    share over the limit rejected). With ``held`` (requests in flight counted by a component, at
    the start of the tick): the filter admits into free slots only, ``limit - held`` per class,
    so the count never exceeds the limit."""
    counted = ~long_running
    if held is None:
        held = A * latency
        mut = (held * (mutating & counted)).sum(axis=1)
        ro = (held * (~mutating & counted)).sum(axis=1)
        p_mut = 1.0 - np.minimum(1.0, max_mutating / np.maximum(mut, 1e-12))
        p_ro = 1.0 - np.minimum(1.0, max_readonly / np.maximum(ro, 1e-12))
    else:
        arriving = A * dt
        mut = (arriving * (mutating & counted)).sum(axis=1)
        ro = (arriving * (~mutating & counted)).sum(axis=1)
        free_mut = np.maximum(0.0, max_mutating - (held * (mutating & counted)).sum(axis=1))
        free_ro = np.maximum(0.0, max_readonly - (held * (~mutating & counted)).sum(axis=1))
        p_mut = 1.0 - np.minimum(1.0, free_mut / np.maximum(mut, 1e-12))
        p_ro = 1.0 - np.minimum(1.0, free_ro / np.maximum(ro, 1e-12))
    if max_mutating <= 0:
        p_mut = np.zeros_like(p_mut)
    if max_readonly <= 0:
        p_ro = np.zeros_like(p_ro)
    out = np.where(mutating[None, :], p_mut[:, None], p_ro[:, None])
    return np.where(counted[None, :], out, 0.0)


def shedding_rejections(util: np.ndarray, threshold: float, exempt: np.ndarray) -> np.ndarray:
    """The article's overload shedding: share rejected per (instance, stream) at load ``util``."""
    p = np.clip((util - threshold) / max(1.0 - threshold, 1e-9), 0.0, 1.0)
    return np.where(exempt[None, :], 0.0, p[:, None])


def combine(*shares: np.ndarray) -> np.ndarray:
    """Independent filters in a row: a request passes only if every filter admits it."""
    keep = np.ones_like(shares[0])
    for s in shares:
        keep = keep * (1.0 - s)
    return 1.0 - keep

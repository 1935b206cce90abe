"""Every client's one connection to one API server, as arrays.

client-go keeps one HTTP/2 connection per host and multiplexes every request and every
watch over it. A client's connection changes only when

* the instance goes away (the process exits or is OOM-killed: the TCP connection breaks),
* the server closes it (an overloaded instance shedding connections, as the article's
  fix does; a graceful shutdown's ``Connection: close``),
* a ``GOAWAY`` arrives (upstream ``--goaway-chance``: the client's *new* requests open a
  new connection through the load balancer; watches already open stay where they are
  until they end), or
* the client decides to reconnect (the article's client rules: after ``k`` 429s within
  ``w`` seconds, and periodically, to reshuffle).

Watches live on a connection too. A reflector's watch ends by itself after
``timeoutSeconds`` = U[1, 2) x 5 min (``reflector.go`` ``minWatchTimeout``) and is
re-opened on the client's *current* connection; a broken connection ends it at once.
A watch re-opened on an instance whose watch cache holds the client's resourceVersion
resumes; on an instance whose cache was filled after the client lost its connection,
the resourceVersion is too old and the client re-lists (``410 Gone``).

State per client (numpy arrays of length ``clients``): its class, the instance that
carries its requests (``conn``, -1 while reconnecting), the instance that holds its
watches (``watch_on``), and the times of its next timers: reconnect attempt, watch
timeout, GOAWAY, periodic reshuffle. Per instance and class the counts are kept
incrementally (``req_counts``, ``watch_counts``), so a tick's load is one small
matrix product, never a loop over clients.

Mirrors: ``staging/src/k8s.io/client-go/transport`` (connection reuse),
``tools/cache/reflector.go`` (watch timeouts, relist on 410), ``rest/request.go``
(retries of 429 with Retry-After on the same connection).
"""

from __future__ import annotations

import numpy as np

from ..params import Param, ParamSet

CONNECTION_PARAMS = ParamSet([
    Param("reconnect_delay", 1.0, "s",
          "assumption: client-go retries a failed request or dial after ~1 s (Retry-After default, "
          "its backoff's first step), jittered",
          "mean delay before a client whose connection broke dials again (uniform over [0, 2x])", lo=0.01, hi=600),
    Param("min_watch_timeout", 300.0, "s",
          "client-go reflector.go: minWatchTimeout = 5 min; timeoutSeconds = U[1, 2) x 5 min",
          "a watch ends by itself after U[1, 2) x this and is re-opened on the current connection",
          lo=3.0, hi=86_400.0),
    Param("tls_handshake_cpu", 2e-3, "s",
          "assumption: a TLS 1.2/1.3 server handshake with an RSA-2048 certificate costs ~1-2 ms of CPU, "
          "plus authentication of the client certificate",
          "API server CPU to accept one new client connection", lo=0, hi=1),
])


def reconnect_time(times_429, k: int, window: float) -> float | None:
    """The article's client rule, for one client: the 429s it received at ``times_429``
    (sorted, seconds). A window opens at the first 429 after the previous window
    closed (``window`` seconds after it opened); the client reconnects at the 429 that
    brings the count within the open window to ``k``. Returns that time, or None.

    :class:`kscale_lab.controlplane.ControlPlane` applies the same rule to all clients at
    once, one tick at a time (``win_start`` and ``win_429`` per client)."""
    start, count = -np.inf, 0
    for t in times_429:
        if t - start > window:
            start, count = float(t), 0
        count += 1
        if count >= k:
            return float(t)
    return None


class Connections:
    """Connections of ``n`` clients to ``k`` instance slots."""

    TIMERS = ("t_connect", "t_watch_end", "t_goaway", "t_reshuffle")

    def __init__(self, cls: np.ndarray, n_classes: int, k: int, p, rng: np.random.Generator, dt: float = 1.0):
        self.n = cls.size
        self.k = k
        self.n_classes = n_classes
        self.cls = cls.astype(np.int64)
        self.rng = rng
        self.conn = np.full(self.n, -1, dtype=np.int64)
        self.watch_on = np.full(self.n, -1, dtype=np.int64)
        self.t_connect = np.zeros(self.n)               # next dial (inf while connected)
        self.t_break = np.full(self.n, -np.inf)         # when its watches last broke
        self.t_watch_end = np.full(self.n, np.inf)
        self.t_goaway = np.full(self.n, np.inf)
        self.t_reshuffle = np.full(self.n, np.inf)
        self.win_start = np.zeros(self.n)
        self.win_429 = np.zeros(self.n, dtype=np.int64)
        self.req_counts = np.zeros((k, n_classes), dtype=np.int64)
        self.watch_counts = np.zeros((k, n_classes), dtype=np.int64)
        self.delay = float(p["reconnect_delay"])
        self.min_watch = float(p["min_watch_timeout"])
        # a lower bound of each timer array: a tick looks at the 20,000 timers only when one
        # of them can be due (most ticks, no reconnect, GOAWAY or reshuffle is)
        self._lb = {name: -np.inf for name in self.TIMERS}
        self.next_tick = 0

    def set_timer(self, name: str, idx: np.ndarray, times) -> None:
        """Set timer ``name`` of clients ``idx`` (inf cancels it)."""
        if idx.size == 0:
            return
        times = np.asarray(times, dtype=np.float64)
        getattr(self, name)[idx] = times
        self._lb[name] = min(self._lb[name], float(times.min()))

    def due(self, name: str, t1: float) -> np.ndarray:
        """Clients whose timer ``name`` falls before ``t1``. The caller re-arms or cancels them."""
        if self._lb[name] >= t1:
            return np.zeros(0, dtype=np.int64)
        times = getattr(self, name)
        idx = np.flatnonzero(times < t1)
        # after this tick the due ones are re-armed or cancelled by the caller (set_timer lowers
        # the bound again); with none due the exact minimum is a tighter bound
        self._lb[name] = t1 if idx.size else float(times.min())
        return idx

    # -- bookkeeping ------------------------------------------------------------------------
    def _move(self, counts: np.ndarray, idx: np.ndarray, old: np.ndarray, new: np.ndarray) -> None:
        c = self.cls[idx]
        kc = self.k * self.n_classes
        was = old >= 0
        if was.any():
            counts -= np.bincount(old[was] * self.n_classes + c[was], minlength=kc).reshape(self.k, self.n_classes)
        now = new >= 0
        if now.any():
            counts += np.bincount(new[now] * self.n_classes + c[now], minlength=kc).reshape(self.k, self.n_classes)

    def set_conn(self, idx: np.ndarray, new: np.ndarray) -> None:
        self._move(self.req_counts, idx, self.conn[idx], new)
        self.conn[idx] = new

    def set_watch(self, idx: np.ndarray, new: np.ndarray) -> None:
        self._move(self.watch_counts, idx, self.watch_on[idx], new)
        self.watch_on[idx] = new

    def watch_timeouts(self, m: int) -> np.ndarray:
        return np.floor(self.min_watch * (self.rng.random(m) + 1.0))

    # -- events -----------------------------------------------------------------------------
    def break_clients(self, idx: np.ndarray, t: float, watches: bool = True) -> None:
        """Connections ``idx`` break at ``t`` (their watches too, unless ``watches=False``):
        the clients dial again after a jittered ``reconnect_delay``."""
        if idx.size == 0:
            return
        self.set_conn(idx, np.full(idx.size, -1))
        self.set_timer("t_connect", idx, t + self.rng.random(idx.size) * 2.0 * self.delay)
        self.t_goaway[idx] = np.inf
        self.t_reshuffle[idx] = np.inf
        self.win_429[idx] = 0
        if watches:
            self.drop_watches(idx, t)

    def drop_watches(self, idx: np.ndarray, t: float) -> None:
        live = idx[self.watch_on[idx] >= 0]
        if live.size:
            self.set_watch(live, np.full(live.size, -1))
            self.t_break[live] = t
            self.t_watch_end[live] = np.inf

    def on_instance_gone(self, j: int, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Instance ``j`` exited: every connection to it and every watch it held breaks.
        Returns (clients that must dial again, connected clients whose watch must re-open)."""
        on_conn = np.flatnonzero(self.conn == j)
        self.break_clients(on_conn, t, watches=False)
        lost = np.flatnonzero(self.watch_on == j)
        self.drop_watches(lost, t)
        return on_conn, lost[self.conn[lost] >= 0]

    def connected(self, idx: np.ndarray, target: np.ndarray, t: float) -> np.ndarray:
        """Clients ``idx`` now hold a connection to ``target``; returns those among them that have
        no open watch (they open it on this connection)."""
        self.set_conn(idx, target)
        self.t_connect[idx] = np.inf
        self.win_429[idx] = 0
        self.win_start[idx] = -np.inf          # no window open: the next 429 opens one
        return idx[self.watch_on[idx] < 0]

    def open_watches(self, idx: np.ndarray, t: float) -> None:
        """(Re-)open the watches of ``idx`` on their current connection."""
        if idx.size:
            self.set_watch(idx, self.conn[idx])
            self.set_timer("t_watch_end", idx, t + self.watch_timeouts(idx.size))


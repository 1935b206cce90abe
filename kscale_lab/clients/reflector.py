"""Reflectors: how clients keep a local copy of the cluster with LIST + WATCH.

Every controller and every kubelet runs the same loop (client-go's ``Reflector``):

1. **LIST** the objects it cares about; the answer carries a resourceVersion (RV).
2. **WATCH** from that RV: the API server streams every later change that matches
   the client's selector, and the client applies it to its local store (the
   informer's cache) and remembers the event's RV.
3. A watch does not last forever. The client asks for a random timeout in
   ``[minWatchTimeout, 2 * minWatchTimeout]`` = 5-10 min (``reflector.go``) so that
   reconnections spread out; when it ends (timeout, dropped connection, API server
   restart) the client watches again **from its last RV**.
4. If the server answers **410 Gone** ("too old resource version": the RV fell off
   the watch cache's event tape) the client LISTs again (a *relist*) and watches
   from the new RV.
5. A **BOOKMARK** event carries no object, only an RV: the client just moves its
   RV forward.

Picture 10,000 kubelets, each watching only the pods of its own node. A node sees a
pod event every minute or so; meanwhile the pods' tape rolls on at hundreds of
events per second. Without bookmarks a kubelet's RV is as old as its last own pod
event: when every watch breaks at once (an API server restart), each kubelet asks
the server to re-read the tape from its old RV (the "init events") or, if the tape
no longer reaches back that far, gets 410 and relists its pods. Bookmarks keep each
RV a few seconds to a minute old, so the replays are short and the 410s rare.

This module holds two models of the same loop:

* :class:`Reflector` + :func:`simulate_exact`: exact and object-level, one Python
  object per client, driven event by event against a :class:`WatchCache`. It is
  the *reference*: property tests check that every informer's store equals the
  server's state for its selector, with no event lost, duplicated or out of order,
  through writes, disconnects, timeouts, 410s, relists, bookmarks and restarts.
* :class:`ReflectorFleet`: numpy state for many clients (10,000 kubelets and a few
  controllers): last RV, watch start and deadline per client. It replays the
  cache's event history without a Python loop over clients: per field value, the
  (value, event) pairs are sorted once and every question ("last event of node i
  before time t", "pods on node i at time t", "events on the tape after RV r") is a
  ``searchsorted``. Watch timeouts are processed in rounds (one per timeout, ~3 in
  10 minutes) and an API server restart at time T gives, per client, resume
  (replay k events) or 410 (relist N objects), with totals. Tests hold it equal to
  the exact model on small random cases.

Mirrors kubernetes/kubernetes ``staging/src/k8s.io/client-go/tools/cache/reflector.go``
(``minWatchTimeout``, ``ListAndWatch``, ``watchHandler``, the relist on expired
errors) and the cacher files named in :mod:`kscale_lab.apiserver.watchcache`.
Serves the article's section 4 ("events to re-sync after an API server restart:
3 % of before") and KEP-956 ("~40x fewer init events").

Modelling notes: LIST, WATCH set-up and event delivery take no time here (the
cluster model adds time from its cost parameters); the reflector's back-off is not
modelled; each established watch draws one timeout; a restart is "warm" when the
clients reconnect to an API server whose watch cache holds the history (an HA
peer) and "cold" when they reconnect to a freshly started cache (whose tape starts
at its own LIST: ``oldest = listRV + 1``).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, fields
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..apiserver.watchcache import (
    ADDED,
    DELETED,
    MODIFIED,
    NO_EVENT,
    UNSET,
    WATCHCACHE_PARAMS,
    EventBatch,
    ObjectSet,
    Selector,
    WatchCache,
    convert_to_watch_event,
    last_bookmark_time,
)
from ..errors import KscaleError, ParameterError
from ..params import Param, ParamSet

REFLECTOR_PARAMS = ParamSet([
    Param("min_watch_timeout", 300.0, "s",
          "kubernetes/kubernetes staging/src/k8s.io/client-go/tools/cache/reflector.go: "
          "minWatchTimeout = 5 min; timeoutSeconds = int64(minWatchTimeout.Seconds() * (rand.Float64() + 1.0))",
          "each watch times out after floor(U[1, 2) x this) seconds", lo=3.0, hi=86400.0),
    Param("controllers", 5, "clients",
          "assumption: kube-scheduler, kube-controller-manager and a few operators watch all pods",
          "clients that watch every pod (beside one kubelet per node)", lo=0, hi=10_000, kind=int),
    Param("reconnect", "warm", "1",
          "docs/upstream.md section 4 (getAllEventsSinceLocked: oldest = listRV + 1 after a relist)",
          "after an API server restart the clients reconnect to a cache that holds the "
          "history (warm: an HA peer) or to a freshly started one (cold)",
          choices=("warm", "cold"), kind=str),
])

#: every parameter used by this module (its own and the watch cache's)
PARAMS = REFLECTOR_PARAMS + WATCHCACHE_PARAMS


def draw_watch_timeouts(rng: np.random.Generator, n_clients: int, n_watches: int,
                        min_watch_timeout: float = 300.0) -> np.ndarray:
    """Watch timeouts as reflector.go draws them: whole seconds,
    ``floor(minWatchTimeout * (U[0, 1) + 1))``, shape ``(n_clients, n_watches)``."""
    REFLECTOR_PARAMS["min_watch_timeout"].validate(min_watch_timeout)
    if n_clients < 0 or n_watches < 0:
        raise ParameterError("n_clients", f"must be an integer in [0, inf]; got {n_clients}, {n_watches}")
    return np.floor(min_watch_timeout * (rng.random((n_clients, n_watches)) + 1.0))


# --------------------------------------------------------------------------------------
# Counters
# --------------------------------------------------------------------------------------


@dataclass
class ResyncTotals:
    """What (re)starting watches cost the API server.

    ``watches``: watch requests; ``resumed``: watches that replayed the tape;
    ``relists``: 410s followed by a LIST; ``events_scanned``: tape events read and
    filtered for the replays (``apiserver_init_events_total``); ``events_sent``:
    replayed events that matched; ``objects_relisted``: objects returned by the
    relists.
    """

    watches: int = 0
    resumed: int = 0
    relists: int = 0
    events_scanned: int = 0
    events_sent: int = 0
    objects_relisted: int = 0

    def __add__(self, other: "ResyncTotals") -> "ResyncTotals":
        return ResyncTotals(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def as_dict(self) -> dict:
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


# --------------------------------------------------------------------------------------
# The exact reference model
# --------------------------------------------------------------------------------------


class Reflector:
    """One client's reflector and informer store, object by object (reference model).

    ``timeouts``: the client's successive watch timeouts (one per established watch).
    ``store`` maps key -> (namespace, node, label, rv). ``rv`` is
    ``lastSyncResourceVersion``. ``delivered`` records every event applied, as
    (session, rv, key, type); a session is one LIST and the watches that follow it
    (``session_list_rv[s - 1]`` is its LIST's RV, ``session_end_rv[s - 1]`` the RV
    held when the next LIST replaced it).
    """

    def __init__(self, selector: Selector, timeouts: Sequence[float], name: str = "",
                 bookmarks: str = "upstream", params: Mapping | None = None):
        if not isinstance(selector, Selector):
            raise ParameterError("selector", f"must be a Selector; got {type(selector).__name__}")
        self.selector = selector
        self.name = name
        self.params = WATCHCACHE_PARAMS.resolve(params)
        self.bookmark_policy = WATCHCACHE_PARAMS["bookmarks"].validate(bookmarks)
        self._timeouts = [float(x) for x in timeouts]
        if any(not (x > 0 and math.isfinite(x)) for x in self._timeouts):
            raise ParameterError("timeouts", f"must be positive finite seconds; got {timeouts!r}")
        self._next_timeout = 0
        self.store: dict[int, tuple[int, int, int, int]] = {}
        self.rv = 0
        self.watching = False
        self.watch_start = math.nan
        self.deadline = math.nan
        self.bookmarks_sent = 0
        self.generation = 0
        self.session = 0
        self.delivered: list[tuple[int, int, int, int]] = []
        self.session_list_rv: list[int] = []
        self.session_end_rv: list[int] = []
        self.totals: dict[str, ResyncTotals] = {}
        self.initial_objects = 0
        self.events_live = 0
        self.bookmarks_received = 0

    # -- LIST --------------------------------------------------------------------------
    def list(self, cache: WatchCache) -> int:
        """LIST (served from the watch cache with its index): replaces the store."""
        res = cache.list(self.selector, index=True)
        objs = cache.objects(self.selector)
        assert np.array_equal(np.sort(objs.key), res.keys)
        if self.session:
            self.session_end_rv.append(self.rv)
        self.store = {int(k): (int(a), int(b), int(c), int(r))
                      for k, a, b, c, r in zip(objs.key, objs.ns, objs.node, objs.label, objs.rv)}
        self.rv = res.resource_version
        self.session += 1
        self.session_list_rv.append(self.rv)
        return res.returned

    # -- WATCH -------------------------------------------------------------------------
    def _timeout(self) -> float:
        if self._next_timeout >= len(self._timeouts):
            raise KscaleError(f"reflector {self.name!r} ran out of watch timeouts ({len(self._timeouts)})")
        t = self._timeouts[self._next_timeout]
        self._next_timeout += 1
        return t

    def watch(self, cache: WatchCache, now: float, reason: str, watch_start: float | None = None) -> ResyncTotals:
        """(Re)start the watch from ``rv``; on 410, relist first. Returns its cost."""
        tot = ResyncTotals(watches=1)
        res = cache.watch_from(self.rv, self.selector)
        if res.status == "too_large":
            raise KscaleError(f"reflector {self.name!r} is ahead of the cache ({self.rv} > {cache.current_rv})")
        if res.too_old:
            tot.relists += 1
            tot.objects_relisted += self.list(cache)
            res = cache.watch_from(self.rv, self.selector)
            assert res.status == "ok", res.message
        else:
            tot.resumed += 1
        tot.events_scanned += res.scanned
        tot.events_sent += res.sent
        for i in range(res.sent):
            self.deliver(int(res.rv[i]), int(res.key[i]), int(res.type[i]), int(res.ns[i]),
                         int(res.node[i]), int(res.label[i]))
        self.watching = True
        self.watch_start = float(now if watch_start is None else watch_start)
        self.deadline = self.watch_start + self._timeout()
        self.bookmarks_sent = 0
        self.generation += 1
        self.totals[reason] = self.totals.get(reason, ResyncTotals()) + tot
        return tot

    def list_and_watch(self, cache: WatchCache, now: float, watch_start: float | None = None):
        """The initial LIST then WATCH (``ListAndWatch``)."""
        self.initial_objects += self.list(cache)
        self.watch(cache, now, "initial", watch_start)

    def stop(self):
        """The watch ends (timeout, disconnect, server restart): no more events."""
        self.watching = False
        self.generation += 1

    def deliver(self, rv: int, key: int, wtype: int, ns: int, node: int, label: int):
        """``watchHandler``: apply one event, remember its RV."""
        if rv <= self.rv:
            raise KscaleError(f"reflector {self.name!r}: event RV {rv} not after {self.rv} (duplicate or out of order)")
        if wtype == DELETED:
            self.store.pop(key, None)
        elif wtype in (ADDED, MODIFIED):
            self.store[key] = (ns, node, label, rv)
        else:
            raise KscaleError(f"unknown watch event type {wtype}")
        self.rv = rv
        self.delivered.append((self.session, rv, key, wtype))

    def bookmark(self, rv: int):
        """A BOOKMARK: just move the RV forward."""
        if rv < self.rv:
            raise KscaleError(f"reflector {self.name!r}: bookmark RV {rv} behind {self.rv}")
        self.rv = rv
        self.bookmarks_received += 1

    def next_bookmark(self) -> float | None:
        """When the server sends this watch its next bookmark."""
        return _next_bookmark(self.watch_start, self.deadline, self.bookmarks_sent, self.bookmark_policy,
                              self.params["default_bookmark_frequency"], self.params["bookmark_before_deadline"])

    # -- checks ------------------------------------------------------------------------
    def in_sync_with(self, cache: WatchCache) -> bool:
        """Is the store exactly the cache's state for this selector?"""
        objs = cache.objects(self.selector)
        want = {int(k): (int(a), int(b), int(c)) for k, a, b, c in zip(objs.key, objs.ns, objs.node, objs.label)}
        have = {k: v[:3] for k, v in self.store.items()}
        return want == have

    def total(self, reasons: Iterable[str] | None = None) -> ResyncTotals:
        out = ResyncTotals()
        for r, t in self.totals.items():
            if reasons is None or r in reasons:
                out = out + t
        return out


def _next_bookmark(start: float, deadline: float, sent: int, policy: str, freq: float, before: float):
    """Fast path of :func:`kscale_lab.apiserver.watchcache.next_bookmark_time`."""
    if policy == "off":
        return None
    pre = deadline - before
    if policy == "article":
        return pre if sent == 0 else None
    t = start + freq * (sent + 1)
    if t < pre:
        return t
    prev = start + freq * sent if sent > 0 else -math.inf
    return pre if prev < pre else None


@dataclass
class ExactRun:
    """Result of :func:`simulate_exact`."""

    reflectors: list[Reflector]
    cache: WatchCache
    steady: ResyncTotals
    restart: ResyncTotals | None
    deliveries: int
    restart_rv_before: np.ndarray | None = None
    restart_too_old: np.ndarray | None = None


_PRIO = {"deadline": 0, "disconnect": 0, "reconnect": 0, "bookmark": 1, "restart": 2}


def simulate_exact(cache: WatchCache, events: EventBatch, reflectors: Sequence[Reflector], *,
                   start_time: float = 0.0, watch_starts: Sequence[float] | None = None,
                   until: float | None = None, restart_at: float | None = None, reconnect: str = "warm",
                   disconnects: Iterable[tuple[float, int]] = (), reconnect_delay: float = 0.0,
                   final_sync: bool = True) -> ExactRun:
    """Drive exact reflectors against ``cache`` through ``events`` (reference model).

    Each reflector LISTs at ``start_time`` and watches; its first watch is taken to
    have started at ``watch_starts[i]`` (<= start_time; default start_time). Then, in
    time order (events before timers at equal times): events are added to the cache
    and dispatched to every watching reflector whose selector they match; bookmarks
    fire as the reflector's policy says; watches end at their deadline and restart
    from the reflector's RV; ``disconnects`` (time, reflector index) drop a watch and
    reconnect ``reconnect_delay`` later; at ``restart_at`` every watch breaks and
    every reflector reconnects (to the same cache if ``reconnect="warm"``, to a
    freshly restarted one if ``"cold"``). With ``final_sync`` disconnected
    reflectors reconnect at the end, so that every store can be checked.
    """
    reconnect = REFLECTOR_PARAMS["reconnect"].validate(reconnect)
    n_ev = len(events)
    end_time = until if until is not None else (float(events.time[-1]) if n_ev else start_time)
    if restart_at is not None:
        end_time = max(end_time, restart_at)
    refl = list(reflectors)
    heap: list = []
    seq = 0

    def push(t, kind, i, gen):
        nonlocal seq
        heapq.heappush(heap, (t, _PRIO[kind], seq, kind, i, gen))
        seq += 1

    def schedule_watch(i):
        r = refl[i]
        push(r.deadline, "deadline", i, r.generation)
        nb = r.next_bookmark()
        if nb is not None:
            push(nb, "bookmark", i, r.generation)

    starts = [start_time] * len(refl) if watch_starts is None else [float(x) for x in watch_starts]
    for i, r in enumerate(refl):
        r.list_and_watch(cache, start_time, starts[i])
        schedule_watch(i)
    for t, i in disconnects:
        push(float(t), "disconnect", int(i), -1)
    if restart_at is not None:
        push(float(restart_at), "restart", -1, -1)

    steady = ResyncTotals()
    restart_tot: ResyncTotals | None = None
    rv_before = too_old = None
    deliveries = 0
    j = 0
    ev = events
    while True:
        t_ev = float(ev.time[j]) if j < n_ev else math.inf
        t_tm = heap[0][0] if heap else math.inf
        if min(t_ev, t_tm) > end_time:
            break
        if t_ev <= t_tm:
            rec = cache.add_event(int(ev.rv[j]), t_ev, int(ev.key[j]), int(ev.etype[j]), int(ev.ns[j]),
                                  int(ev.node[j]), int(ev.label[j]), int(ev.size[j]))
            j += 1
            for r in refl:
                if not r.watching:
                    continue
                s = r.selector
                cm = bool(s.matches(rec["ns"], rec["node"], rec["label"]))
                pm = bool(s.matches(rec["pns"], rec["pnode"], rec["plabel"]))
                wt = int(convert_to_watch_event(rec["etype"], rec["has_prev"], cm, pm))
                if wt == NO_EVENT:
                    continue
                if wt == DELETED:
                    r.deliver(rec["rv"], rec["key"], wt, rec["pns"], rec["pnode"], rec["plabel"])
                else:
                    r.deliver(rec["rv"], rec["key"], wt, rec["ns"], rec["node"], rec["label"])
                r.events_live += 1
                deliveries += 1
            continue
        t, _, _, kind, i, gen = heapq.heappop(heap)
        if kind == "restart":
            rv_before = np.array([r.rv for r in refl], dtype=np.int64)
            for r in refl:
                r.stop()
            if reconnect == "cold":
                cache.restart(t)
            oldest = cache.oldest_rv
            too_old = rv_before < oldest - 1
            restart_tot = ResyncTotals()
            for k, r in enumerate(refl):
                restart_tot = restart_tot + r.watch(cache, t, "restart")
                schedule_watch(k)
            continue
        r = refl[i]
        if kind == "disconnect":
            if r.watching:
                r.stop()
                if reconnect_delay > 0:
                    push(t + reconnect_delay, "reconnect", i, r.generation)
                else:
                    steady = steady + r.watch(cache, t, "disconnect")
                    schedule_watch(i)
            continue
        if gen != r.generation:
            continue  # a timer of a watch that is gone
        if kind == "reconnect":
            steady = steady + r.watch(cache, t, "disconnect")
            schedule_watch(i)
        elif kind == "deadline":
            r.stop()
            steady = steady + r.watch(cache, t, "timeout")
            schedule_watch(i)
        elif kind == "bookmark":
            if r.watching:
                r.bookmark(cache.current_rv)
                r.bookmarks_sent += 1
                nb = r.next_bookmark()
                if nb is not None:
                    push(nb, "bookmark", i, r.generation)
    if final_sync:
        for r in refl:
            if not r.watching:
                r.watch(cache, end_time, "final")
    return ExactRun(refl, cache, steady, restart_tot, deliveries, rv_before, too_old)


# --------------------------------------------------------------------------------------
# The vectorised fleet
# --------------------------------------------------------------------------------------

FIELD_ALL, FIELD_NODE, FIELD_NAMESPACE, FIELD_LABEL = 0, 1, 2, 3
FIELD_NAMES = {FIELD_ALL: "everything", FIELD_NODE: "spec.nodeName", FIELD_NAMESPACE: "metadata.namespace",
               FIELD_LABEL: "label"}
_FIELD_ATTR = {FIELD_NODE: ("node", "pnode"), FIELD_NAMESPACE: ("ns", "pns"), FIELD_LABEL: ("label", "plabel")}


@dataclass
class ClientSelectors:
    """Each client's selector as (field, value) arrays: one exact-match field, or all."""

    field: np.ndarray
    value: np.ndarray

    def __post_init__(self):
        self.field = np.ascontiguousarray(self.field, dtype=np.int8)
        self.value = np.ascontiguousarray(self.value, dtype=np.int64)
        if self.field.shape != self.value.shape or self.field.ndim != 1:
            raise ParameterError("clients", "field and value must be 1-D arrays of equal length")
        if np.any((self.field < FIELD_ALL) | (self.field > FIELD_LABEL)):
            raise ParameterError("clients", "field codes must be in [0, 3] (all, node, namespace, label)")
        if np.any((self.field != FIELD_ALL) & (self.value < UNSET)):
            raise ParameterError("clients", f"values must be >= {UNSET}")

    def __len__(self) -> int:
        return int(self.field.shape[0])

    @staticmethod
    def kubelets(n_nodes: int) -> "ClientSelectors":
        """One kubelet per node, watching ``spec.nodeName=<its node>``."""
        return ClientSelectors(np.full(n_nodes, FIELD_NODE), np.arange(n_nodes))

    @staticmethod
    def everything(n: int) -> "ClientSelectors":
        """``n`` clients watching every object (controllers)."""
        return ClientSelectors(np.full(n, FIELD_ALL), np.zeros(n))

    @staticmethod
    def concat(parts: Sequence["ClientSelectors"]) -> "ClientSelectors":
        return ClientSelectors(np.concatenate([p.field for p in parts]), np.concatenate([p.value for p in parts]))

    @staticmethod
    def from_selectors(selectors: Sequence[Selector]) -> "ClientSelectors":
        f, v = [], []
        for s in selectors:
            set_fields = [(FIELD_NODE, s.node), (FIELD_NAMESPACE, s.namespace), (FIELD_LABEL, s.label)]
            set_fields = [(a, b) for a, b in set_fields if b is not None]
            if len(set_fields) > 1:
                raise ParameterError("selectors", f"the fleet supports one field per selector; got {s}")
            a, b = set_fields[0] if set_fields else (FIELD_ALL, 0)
            f.append(a)
            v.append(b)
        return ClientSelectors(np.array(f, dtype=np.int8), np.array(v, dtype=np.int64))

    def to_selectors(self) -> list[Selector]:
        out = []
        for f, v in zip(self.field.tolist(), self.value.tolist()):
            if f == FIELD_ALL:
                out.append(Selector())
            elif f == FIELD_NODE:
                out.append(Selector(node=v))
            elif f == FIELD_NAMESPACE:
                out.append(Selector(namespace=v))
            else:
                out.append(Selector(label=v))
        return out


@dataclass
class RestartOutcome:
    """An API server restart at ``time``: what each client does and the totals.

    Per client: ``rv_before`` (its RV when the watch broke), ``too_old`` (410 ->
    relist), ``events_scanned`` (tape events re-read for its resume),
    ``objects_relisted``. ``totals`` sums them; ``by_field`` splits them by selector
    field (kubelets = spec.nodeName, controllers = everything).
    """

    time: float
    reconnect: str
    bookmarks: str
    rv_before: np.ndarray
    too_old: np.ndarray
    events_scanned: np.ndarray
    events_sent: np.ndarray
    objects_relisted: np.ndarray
    totals: ResyncTotals
    by_field: dict[str, ResyncTotals]
    cache_rv: int
    oldest_rv: int

    def frame(self):
        import pandas as pd

        rows = [{"clients": name, **t.as_dict()} for name, t in self.by_field.items()]
        rows.append({"clients": "total", **self.totals.as_dict()})
        return pd.DataFrame(rows)


@dataclass
class WatchRestarts:
    """One batch of watches (re)started by a :class:`ReflectorFleet` (``record=True``).

    ``reason`` is ``"timeout"`` or ``"restart"``; per (re)started watch: the client
    index, the time, whether it got 410 (and relisted), the tape events re-read for
    its resume, the matching ones sent, and the objects its relist returned.
    """

    reason: str
    client: np.ndarray
    time: np.ndarray
    too_old: np.ndarray
    events_scanned: np.ndarray
    events_sent: np.ndarray
    objects_relisted: np.ndarray


class ReflectorFleet:
    """Reflectors of many clients as numpy arrays, advanced through a cache's history.

    Build it right after ``cache`` was LISTed (the clients' initial LIST is at that
    moment, ``start_time``, at ``cache.current_rv``), add the events to the cache
    (bulk), then :meth:`advance` to a time (processing every watch timeout before
    it) and :meth:`restart` at a time. Client ``i``'s first watch started
    ``phase[i] * timeouts[i, 0]`` before ``start_time`` (a cluster in steady state);
    its ``k``-th watch lasts ``timeouts[i, k]``.

    Optional bookkeeping (off by default, it costs nothing when off):

    * ``record=True`` keeps, for every batch of (re)started watches, the arrays of
      :class:`WatchRestarts` in :attr:`rewatches` (when, who, 410 or resume, events
      re-read, objects relisted): the time series of a run;
    * ``trace=[i, j, ...]`` keeps the watch history of a few clients, so that
      :meth:`trace_rvs` can say what their RV was at any time (the RV timelines of a
      lab's plots).

    Sharing work between fleets (results unchanged):

    * ``listed=(objects, list_rv, tape_index)``: the clients' initial LIST, when the
      cache already holds later events (a cache filled once for several fleets);
      default: the cache as it is now;
    * ``pairs``: a dict shared by fleets whose caches received the same events after
      the same LIST (their tapes may differ in length): the per-field event index each
      fleet builds from the history is then built once.
    """

    def __init__(self, cache: WatchCache, clients: ClientSelectors, *, bookmarks: str = "upstream",
                 timeouts: np.ndarray | None = None, phase: np.ndarray | None = None, seed: int = 0,
                 start_time: float = 0.0, params: Mapping | None = None, record: bool = False,
                 trace: Sequence[int] | None = None, listed: tuple | None = None, pairs: dict | None = None):
        if not isinstance(cache, WatchCache):
            raise ParameterError("cache", f"must be a WatchCache; got {type(cache).__name__}")
        if not isinstance(clients, ClientSelectors):
            raise ParameterError("clients", f"must be ClientSelectors; got {type(clients).__name__}")
        base = {k: v for k, v in cache.params.items() if k in WATCHCACHE_PARAMS}
        p = PARAMS.resolve({**base, **dict(params or {})})
        self.params = p
        self._wc_params = {k: v for k, v in p.items() if k in WATCHCACHE_PARAMS}
        self.bookmarks = WATCHCACHE_PARAMS["bookmarks"].validate(bookmarks)
        self.cache = cache
        self.clients = clients
        n = len(clients)
        self.n = n
        self._rng = np.random.default_rng(seed)
        if timeouts is None:
            timeouts = draw_watch_timeouts(self._rng, n, 4, p["min_watch_timeout"])
        timeouts = np.asarray(timeouts, dtype=np.float64)
        if timeouts.ndim != 2 or timeouts.shape[0] != n or timeouts.shape[1] < 1 or np.any(~(timeouts > 0)):
            raise ParameterError("timeouts", f"must be a positive (clients={n}, watches>=1) array; got shape {timeouts.shape}")
        self._timeouts = timeouts
        self._own_timeouts = True
        if phase is None:
            phase = self._rng.random(n)
        phase = np.asarray(phase, dtype=np.float64)
        if phase.shape != (n,) or np.any((phase < 0) | (phase > 1)):
            raise ParameterError("phase", "must be an array of fractions in [0, 1], one per client")
        self.start_time = float(start_time)
        self.watch_start = self.start_time - phase * timeouts[:, 0]
        self.deadline = self.watch_start + timeouts[:, 0]
        self._k = np.ones(n, dtype=np.int64)
        if listed is None:
            objs, list_rv, self.e0 = cache.objects(), cache.current_rv, cache.end_index
        else:
            objs, list_rv, self.e0 = listed
            if not isinstance(objs, ObjectSet) or not 0 <= int(self.e0) <= cache.end_index:
                raise ParameterError("listed", "must be (ObjectSet, list RV, tape index <= the cache's end index)")
            self.e0 = int(self.e0)
        self.rv = np.full(n, int(list_rv), dtype=np.int64)
        self._e_done = self.e0
        self.now = self.start_time
        self._cold = False
        self._pairs_cache: dict = {} if pairs is None else pairs
        # state counts at the initial LIST, per field value (for relist sizes)
        self._count0_all = len(objs)
        self._count0 = {}
        for f, (attr, _) in _FIELD_ATTR.items():
            vals = getattr(objs, attr).astype(np.int64) + 1
            self._count0[f] = np.bincount(vals) if vals.size else np.zeros(1, dtype=np.int64)
        self.initial_objects = int(self._count_objects(np.arange(n), np.full(n, self.e0)).sum())
        self.steady = ResyncTotals()
        self.deliveries = 0
        self.record = bool(record)
        self.rewatches: list[WatchRestarts] = []
        tr = np.asarray([] if trace is None else trace, dtype=np.int64).ravel()
        if tr.size and (tr.min() < 0 or tr.max() >= n):
            raise ParameterError("trace", f"must be client indexes in [0, {n - 1}]; got {trace!r}")
        self._trace = {int(i): [(float(self.watch_start[i]), float(self.deadline[i]), int(self.rv[i]), False)]
                       for i in tr}

    # -- helpers ---------------------------------------------------------------------
    def _timeout_for(self, idx: np.ndarray) -> np.ndarray:
        k = self._k[idx]
        if k.size and k.max() >= self._timeouts.shape[1]:
            extra = int(k.max()) + 1 - self._timeouts.shape[1]
            more = draw_watch_timeouts(self._rng, self.n, max(extra, 2), self.params["min_watch_timeout"])
            self._timeouts = np.concatenate([self._timeouts, more], axis=1)
        return self._timeouts[idx, k]

    def _pairs(self, f: int):
        """(value, event) pairs of one field for events [e0, end): sorted keys, the
        event RVs, cumulative object-count deltas."""
        end = self.cache.end_index
        hit = self._pairs_cache.get((self.e0, f))
        if hit is not None and hit[0] == end:
            return hit[1]
        c, e0 = self.cache, self.e0
        E = end - e0
        M = E + 1
        et = c.history("etype", e0, end)
        hp = c.history("has_prev", e0, end)
        j = np.arange(E, dtype=np.int64)
        if f == FIELD_ALL:
            delta = (et != DELETED).astype(np.int64) - hp.astype(np.int64)
            out = {"M": M, "csum_all": np.r_[0, np.cumsum(delta)]}
        else:
            attr, pattr = _FIELD_ATTR[f]
            cur = c.history(attr, e0, end).astype(np.int64)
            prev = c.history(pattr, e0, end).astype(np.int64)
            cur_ok = et != DELETED
            same = hp & (prev == cur)
            prev_ok = hp & (~cur_ok | ~same)
            vals = np.concatenate([cur[cur_ok], prev[prev_ok]])
            js = np.concatenate([j[cur_ok], j[prev_ok]])
            deltas = np.concatenate([np.where(same[cur_ok], 0, 1), -np.ones(int(prev_ok.sum()), dtype=np.int64)])
            comb = (vals + 1) * M + js
            order = np.argsort(comb, kind="stable")
            out = {"M": M, "comb": comb[order], "csum": np.r_[0, np.cumsum(deltas[order])],
                   "vals": vals, "js": js}
        self._pairs_cache[(self.e0, f)] = (end, out)
        return out

    def _groups(self, idx: np.ndarray):
        f = self.clients.field[idx]
        for code in (FIELD_ALL, FIELD_NODE, FIELD_NAMESPACE, FIELD_LABEL):
            m = f == code
            if m.any():
                yield code, m

    def _last_match_rv(self, idx: np.ndarray, e: np.ndarray) -> np.ndarray:
        """RV of each client's last matching event among the first ``e`` events (0 if none)."""
        out = np.zeros(idx.size, dtype=np.int64)
        rv_hist = self.cache.history("rv", self.e0, self.cache.end_index)
        if rv_hist.size == 0:
            return out
        for code, m in self._groups(idx):
            ee = e[m] - self.e0
            if code == FIELD_ALL:
                has = ee > 0
                r = np.zeros(ee.size, dtype=np.int64)
                r[has] = rv_hist[ee[has] - 1]
            else:
                P = self._pairs(code)
                M = P["M"]
                v1 = self.clients.value[idx[m]] + 1
                hi = np.searchsorted(P["comb"], v1 * M + ee, side="left")
                ok = hi > 0
                prevc = P["comb"][np.maximum(hi - 1, 0)]
                ok &= (prevc // M) == v1
                r = np.where(ok, rv_hist[np.where(ok, prevc % M, 0)], 0)
            out[m] = r
        return out

    def _match_count(self, idx: np.ndarray, a: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Matching events with global index in [a, e) per client."""
        out = np.zeros(idx.size, dtype=np.int64)
        for code, m in self._groups(idx):
            aa = np.maximum(a[m], self.e0) - self.e0
            ee = e[m] - self.e0
            if code == FIELD_ALL:
                out[m] = np.maximum(ee - aa, 0)
            else:
                P = self._pairs(code)
                v1 = self.clients.value[idx[m]] + 1
                hi = np.searchsorted(P["comb"], v1 * P["M"] + ee, side="left")
                lo = np.searchsorted(P["comb"], v1 * P["M"] + aa, side="left")
                out[m] = np.maximum(hi - lo, 0)
        return out

    def _count_objects(self, idx: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Objects matching each client's selector after ``e`` events."""
        out = np.zeros(idx.size, dtype=np.int64)
        for code, m in self._groups(idx):
            ee = e[m] - self.e0
            if code == FIELD_ALL:
                if self.cache.end_index == self.e0:
                    out[m] = self._count0_all
                else:
                    out[m] = self._count0_all + self._pairs(FIELD_ALL)["csum_all"][ee]
            else:
                v1 = self.clients.value[idx[m]] + 1
                c0 = self._count0[code]
                base = np.where(v1 < c0.size, c0[np.minimum(v1, c0.size - 1)], 0)
                if self.cache.end_index == self.e0:
                    out[m] = base
                    continue
                P = self._pairs(code)
                hi = np.searchsorted(P["comb"], v1 * P["M"] + ee, side="left")
                lo = np.searchsorted(P["comb"], v1 * P["M"], side="left")
                out[m] = base + P["csum"][hi] - P["csum"][lo]
        return out

    def _deliveries(self, a: int, b: int) -> int:
        """Live (event, client) deliveries for events with global index in [a, b)."""
        if b <= a:
            return 0
        total = 0
        f = self.clients.field
        n_all = int(np.count_nonzero(f == FIELD_ALL))
        total += n_all * (b - a)
        for code in (FIELD_NODE, FIELD_NAMESPACE, FIELD_LABEL):
            m = f == code
            if not m.any():
                continue
            P = self._pairs(code)
            per_value = np.bincount(self.clients.value[m] + 1)
            sel = (P["js"] >= a - self.e0) & (P["js"] < b - self.e0)
            v1 = P["vals"][sel] + 1
            inr = v1 < per_value.size
            total += int(per_value[v1[inr]].sum())
        return total

    def client_rvs(self, idx: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Each client's RV at time ``t`` within its current watch: the latest of its
        last LIST/watch RV, its last matching event and its last bookmark."""
        idx = np.asarray(idx, dtype=np.int64)
        t = np.broadcast_to(np.asarray(t, dtype=np.float64), idx.shape)
        e = self.cache.events_until(t)
        r = np.maximum(self.rv[idx], self._last_match_rv(idx, e))
        tb = last_bookmark_time(self.watch_start[idx], self.deadline[idx], t, self.bookmarks, self._wc_params)
        has = ~np.isnan(tb)
        if has.any():
            r[has] = np.maximum(r[has], self.cache.rv_at_times(tb[has]))
        return r

    def trace_segments(self, client: int):
        """The watches of a traced client: [(start, deadline, RV at start, started after a 410)]."""
        if int(client) not in self._trace:
            raise ParameterError("client", f"is not traced; traced clients: {sorted(self._trace)}")
        return list(self._trace[int(client)])

    def trace_rvs(self, client: int, times) -> np.ndarray:
        """A traced client's RV at each of ``times`` (>= the fleet's start time, up to
        the last processed time): the latest of its watch's starting RV, its last
        matching event and its last bookmark (vectorised)."""
        seg = self.trace_segments(client)
        t = np.asarray(times, dtype=np.float64)
        if t.size and (t.min() < self.start_time or t.max() > self.now):
            raise ParameterError("times", f"must be within [{self.start_time}, {self.now}] s (processed); "
                                          f"got [{t.min()}, {t.max()}]")
        starts = np.array([s[0] for s in seg])
        j = np.maximum(np.searchsorted(starts, t, side="right") - 1, 0)
        s0 = starts[j]
        d0 = np.array([s[1] for s in seg])[j]
        r0 = np.array([s[2] for s in seg], dtype=np.int64)[j]
        idx = np.full(t.shape, int(client), dtype=np.int64)
        e = self.cache.events_until(t)
        r = np.maximum(r0, self._last_match_rv(idx, e))
        # a watch that ended at its deadline gets no bookmark after it; at exactly the
        # deadline the next watch (next segment) is in force
        tb = last_bookmark_time(s0, d0, t, self.bookmarks, self._wc_params)
        has = ~np.isnan(tb)
        if has.any():
            r[has] = np.maximum(r[has], self.cache.rv_at_times(tb[has]))
        return r

    def next_bookmark_times(self, now: float) -> np.ndarray:
        """Each client's next bookmark time after ``now`` (NaN: none in this watch)."""
        s, d = self.watch_start, self.deadline
        pre = d - self.params["bookmark_before_deadline"]
        out = np.full(self.n, np.nan)
        if self.bookmarks == "off":
            return out
        if self.bookmarks == "article":
            return np.where(pre > now, pre, np.nan)
        freq = self.params["default_bookmark_frequency"]
        k = np.floor((now - s) / freq) + 1
        nxt = s + freq * k
        return np.where(nxt < pre, nxt, np.where(pre > now, pre, np.nan))

    def _rewatch(self, idx: np.ndarray, t: np.ndarray, e: np.ndarray, rv: np.ndarray, *,
                 cold_list_rv: int | None = None, reason: str = "timeout"):
        """Watch again from ``rv`` at ``t`` (after ``e`` events): resume or 410 + relist."""
        c = self.cache
        if cold_list_rv is None:
            oldest = c.oldest_rv_at(e)
        else:
            oldest = np.full(idx.size, cold_list_rv + 1, dtype=np.int64)
        too_old = rv < oldest - 1
        ok = ~too_old
        scanned = np.zeros(idx.size, dtype=np.int64)
        sent = np.zeros(idx.size, dtype=np.int64)
        if cold_list_rv is None and ok.any():
            first = c.count_rv_le(rv[ok], e[ok])
            scanned[ok] = e[ok] - first
            sent[ok] = self._match_count(idx[ok], first, e[ok])
        objects = np.zeros(idx.size, dtype=np.int64)
        new_rv = rv.copy()
        if too_old.any():
            objects[too_old] = self._count_objects(idx[too_old], e[too_old])
            new_rv[too_old] = c.rv_at_times(t[too_old]) if cold_list_rv is None else cold_list_rv
        self.rv[idx] = new_rv
        self.watch_start[idx] = t
        self.deadline[idx] = t + self._timeout_for(idx)
        self._k[idx] += 1
        if self.record:
            self.rewatches.append(WatchRestarts(reason, idx.copy(), np.asarray(t, dtype=np.float64).copy(),
                                                too_old.copy(), scanned, sent, objects))
        if self._trace:
            for j in np.flatnonzero(np.isin(idx, list(self._trace))).tolist():
                i = int(idx[j])
                self._trace[i].append((float(t[j]), float(self.deadline[i]), int(new_rv[j]), bool(too_old[j])))
        tot = ResyncTotals(watches=int(idx.size), resumed=int(ok.sum()), relists=int(too_old.sum()),
                           events_scanned=int(scanned.sum()), events_sent=int(sent.sum()),
                           objects_relisted=int(objects.sum()))
        return tot, too_old, scanned, sent, objects

    # -- the public steps ---------------------------------------------------------------
    def advance(self, until: float) -> ResyncTotals:
        """Process every watch timeout at or before ``until``; returns their cost
        (also added to :attr:`steady`). Live deliveries go to :attr:`deliveries`."""
        until = float(until)
        if self._cold:
            raise KscaleError("the fleet cannot advance after a cold restart (the cache's history predates it)")
        if until < self.now:
            raise ParameterError("until", f"must be a time in [{self.now}, inf] s; got {until}")
        c = self.cache
        if c.history_start > self.e0:
            raise KscaleError("the cache's history was trimmed after the fleet started")
        e_until = int(c.events_until(until))
        tot = ResyncTotals()
        rounds = 0
        while True:
            idx = np.flatnonzero(self.deadline <= until)
            if idx.size == 0:
                break
            rounds += 1
            if rounds > 10_000:
                raise KscaleError("too many watch rounds; are timeouts tiny?")
            d = self.deadline[idx].copy()
            e = c.events_until(d)
            rv = self.client_rvs(idx, d)
            t_tot, *_ = self._rewatch(idx, d, e, rv)
            tot = tot + t_tot
        self.deliveries += self._deliveries(self._e_done, e_until)
        self._e_done = e_until
        self.now = until
        self.steady = self.steady + tot
        return tot

    def restart(self, at: float, reconnect: str | None = None, cold_list_rv: int | None = None) -> RestartOutcome:
        """An API server restart at ``at``: every watch breaks and every client
        watches again from its RV (after the watch timeouts before ``at``).

        ``reconnect="cold"``: the clients reconnect to a freshly started cache whose
        LIST returned ``cold_list_rv``: etcd's global revision at ``at`` (other types'
        writes included, KEP-1904); default the pods' cache RV at ``at``."""
        reconnect = REFLECTOR_PARAMS["reconnect"].validate(reconnect if reconnect is not None
                                                             else self.params["reconnect"])
        self.advance(at)
        c = self.cache
        idx = np.arange(self.n, dtype=np.int64)
        t = np.full(self.n, float(at))
        e = np.full(self.n, int(c.events_until(at)), dtype=np.int64)
        rv = self.client_rvs(idx, t)
        cold_rv = None
        if reconnect == "cold":
            here = int(c.rv_at_times(np.array([at]))[0])
            cold_rv = here if cold_list_rv is None else int(cold_list_rv)
            if cold_rv < here:
                raise ParameterError("cold_list_rv", f"must be an integer in [{here}, inf] (the cache's RV at "
                                                     f"{at} s); got {cold_list_rv}")
        oldest = int(c.oldest_rv_at(e[:1])[0]) if cold_rv is None else cold_rv + 1
        tot, too_old, scanned, sent, objects = self._rewatch(idx, t, e, rv, cold_list_rv=cold_rv,
                                                             reason="restart")
        by_field = {}
        for code, m in self._groups(idx):
            by_field[FIELD_NAMES[code]] = ResyncTotals(
                watches=int(m.sum()), resumed=int((~too_old[m]).sum()), relists=int(too_old[m].sum()),
                events_scanned=int(scanned[m].sum()), events_sent=int(sent[m].sum()),
                objects_relisted=int(objects[m].sum()))
        if reconnect == "cold":
            self._cold = True
        return RestartOutcome(time=float(at), reconnect=reconnect, bookmarks=self.bookmarks, rv_before=rv,
                              too_old=too_old, events_scanned=scanned, events_sent=sent,
                              objects_relisted=objects, totals=tot, by_field=by_field,
                              cache_rv=int(c.rv_at_times(np.array([at]))[0]), oldest_rv=oldest)


def default_clients(nodes: int, controllers: int | None = None) -> ClientSelectors:
    """One kubelet per node plus ``controllers`` clients watching every pod."""
    n_ctrl = REFLECTOR_PARAMS["controllers"].default if controllers is None else \
        REFLECTOR_PARAMS["controllers"].validate(controllers)
    return ClientSelectors.concat([ClientSelectors.kubelets(nodes), ClientSelectors.everything(n_ctrl)])

"""Consistent reads: from etcd (quorum, paged, filtered), or from the watch cache once it is fresh.

A GET or LIST without ``resourceVersion`` is a *consistent* read: it must see every write
acknowledged before it started. The obvious way is to ask etcd, with a quorum read
(:mod:`kscale_lab.etcd.range_reads`): correct, but etcd has no index by node, so "the pods
of node 42" reads, ships and decodes all 200,000 pods to keep 20. The API server already
holds every pod in its watch cache (:mod:`kscale_lab.apiserver.watchcache`), with an index
by ``spec.nodeName``, but the cache trails etcd by the time an event takes to arrive.
Answering from it at once (``resourceVersion=0``) is fast and may be stale.

The fix (article section 5; upstream KEP-2340) is a promise kept cheaply, like a bank
clerk who phones head office for the latest transaction number, then waits until her
own ledger has caught up to that number before reading your balance from it:

1. ask etcd for its current revision ``rv@t0`` with a quorum range that returns no data
   (``getCurrentResourceVersionFromStorage``);
2. wait until the cache's resourceVersion reaches ``rv@t0``
   (``waitUntilFreshAndBlock``). Events of the resource move it; for a quiet resource
   only an etcd *progress notification* does (``RequestProgress``): the article's API
   server asks for one at once; upstream's ``conditionalProgressRequester`` asks every
   ``progressRequestPeriod`` = 100 ms while any read waits (and at once when it has been
   idle longer than that);
3. answer from the cache with its indexes. Every write acknowledged before ``t0`` has a
   revision <= ``rv@t0``, and the cache applies events in order, so the answer contains
   it: the consistency model is kept (see :func:`read_after_write_probes`).

If the cache does not catch up within ``blockTimeout`` (3 s), the article's server (like
the KEP's first design) fails the read with "Too large resource version"; upstream today
falls back to etcd (kubernetes/enhancements PR #5345). Upstream still serves consistent
GETs of single objects from etcd, and by default keeps no watch cache for ``events``
(``DefaultWatchCacheSizes``), so their LISTs always go to etcd.

Mirrors kubernetes/kubernetes ``staging/src/k8s.io/apiserver/pkg/storage/cacher/``:
``cacher.go`` (``GetList``, the consistent-read delegation), ``watch_cache.go``
(``waitUntilFreshAndBlock``), ``progress/watch_progress.go``
(``conditionalProgressRequester``, ``progressRequestPeriod``); KEP-2340.

Every cost is a named parameter (:data:`READ_PARAMS`); the per-object CPU of the two
read paths is derived from KEP-2340's published scalability test, never typed in.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, fields
from typing import Mapping

import numpy as np

from ..costs import COST_PARAMS
from ..errors import ParameterError
from ..etcd.range_reads import (
    ETCD_READ_PARAMS,
    KEP2340_TEST,
    EtcdReadWork,
    ListPlan,
    plan_list,
    plan_work,
    range_work,
)
from ..params import Param, ParamSet
from .watchcache import ObjectSet, Selector, WatchCache

NS = 1e-9


def derived_storage_decode_cpu_per_object() -> float:
    """API server CPU per object decoded from etcd, beyond ``protobuf_decode_ns_per_byte``:
    KEP-2340's feature-off small-object test, (cores - baseline) / LIST rate / objects,
    minus the bytes at the default protobuf decode cost."""
    k = KEP2340_TEST
    per_list = (k["off_small_apiserver_cores"] - k["baseline_apiserver_cores"]) / k["off_small_qps"]
    bytes_part = k["objects_small"] * k["object_bytes_small"] * COST_PARAMS["protobuf_decode_ns_per_byte"].default * NS
    return (per_list - bytes_part) / k["objects_small"]


def derived_cache_filter_cpu_per_object() -> float:
    """API server CPU per object a LIST from the watch cache looks at: KEP-2340's
    feature-on small-object test, (cores - baseline) / LIST rate / objects."""
    k = KEP2340_TEST
    return (k["on_small_apiserver_cores"] - k["baseline_apiserver_cores"]) / k["on_small_qps"] / k["objects_small"]


_CACHER = "kubernetes/kubernetes staging/src/k8s.io/apiserver/pkg/storage/cacher/"

APISERVER_READ_PARAMS = ParamSet([
    Param("storage_decode_cpu_per_object", derived_storage_decode_cpu_per_object(), "s",
          "derived from KEP-2340's scalability test (300,000 x 1 KB ConfigMaps, feature off): "
          "(6.92 - 0.10) cores / 0.86 LIST/s, minus the bytes at protobuf_decode_ns_per_byte, per object",
          "API server CPU per object read from etcd beyond its bytes: decode, conversion, selector, "
          "list append, garbage collection", lo=0.0, hi=0.01),
    Param("cache_filter_cpu_per_object", derived_cache_filter_cpu_per_object(), "s",
          "derived from KEP-2340's scalability test (300,000 x 1 KB ConfigMaps, feature on): "
          "(0.63 - 0.10) cores / 1 LIST/s / 300,000 objects",
          "API server CPU per cached object a LIST looks at (the selector test on a decoded object)",
          lo=0.0, hi=0.01),
    Param("index_update_cpu_per_op", 0.5e-6, "s",
          "assumption: threadSafeMap.updateIndices computes an index value and inserts into or deletes "
          "from a Go set: well under a microsecond",
          "API server CPU per index insert or delete when a write changes an indexed value",
          lo=0.0, hi=0.01),
    Param("client_rtt", 1e-3, "s",
          "assumption: kubectl or a kubelet in the same data centre as the API servers",
          "network round trip of one HTTP request to the API server", lo=0.0, hi=10.0),
    Param("kubectl_overhead", 0.1, "s",
          "assumption: starting the kubectl binary, loading kubeconfig and the discovery cache, the TLS "
          "handshake: about a tenth of a second",
          "fixed client time of one kubectl command", lo=0.0, hi=60.0,
          plausible=(0.05, 0.3), plausible_source="kubectl's start-up, kubeconfig, discovery cache and TLS handshake: 50-300 ms on a workstation"),
    Param("table_row_bytes", 1000.0, "B",
          "assumption: a server-side printed row (a few cells) plus the node's metadata "
          "(PartialObjectMetadata: name, labels, annotations)",
          "bytes per row of 'kubectl get nodes' (Table output)", lo=1.0, hi=1e6,
          plausible=(500.0, 2000.0), plausible_source="no published figure: half to twice the assumption"),
    Param("etcd_watch_latency", 2e-3, "s",
          "assumption: etcd notifies synced watchers when it applies a write; the event then crosses one "
          "gRPC stream",
          "from an etcd commit to the event in the API server's watch cache", lo=0.0, hi=60.0,
          plausible=(0.001, 0.01), plausible_source="from an etcd apply to the event in the cache: one gRPC hop in the same data centre, 1-10 ms"),
    Param("progress_notify_latency", 0.5e-3, "s",
          "assumption: one round trip on the existing watch stream (etcd answers RequestProgress at once "
          "when its watchers are synced)",
          "from a progress request to the progress notification in the cache", lo=0.0, hi=60.0),
    Param("progress_request_period", 0.1, "s",
          _CACHER + "progress/watch_progress.go: progressRequestPeriod = 100 ms",
          "upstream: period of etcd progress requests while a consistent read waits", lo=0.001, hi=60.0),
    Param("etcd_progress_notify_bug", False, "1",
          "etcd-io/etcd#15220 (fixed in v3.4.25 / v3.5.8): a progress notification could overtake an "
          "event of the same revision; KEP-2340 requires the fix",
          "etcd may deliver a progress notification before the events it covers (fault injection)",
          kind=bool),
    Param("watch_lag", 0.0, "s",
          "fault injection: a clogged or slow etcd watch stream (KEP-2340 'What if the watch cache is "
          "stale?')",
          "extra delay of every event and progress notification on the cache's watch", lo=0.0, hi=3600.0),
    Param("block_timeout", 3.0, "s",
          _CACHER + "watch_cache.go: blockTimeout = 3 s",
          "how long a read waits for the cache before failing (article) or falling back to etcd (upstream)",
          lo=0.0, hi=600.0),
])

#: every cost of the read paths (etcd side first)
READ_PARAMS = ETCD_READ_PARAMS + APISERVER_READ_PARAMS


@dataclass(frozen=True)
class ReadCosts:
    """Resolved read costs: :data:`READ_PARAMS` plus the byte costs of ``COST_PARAMS``."""

    v: dict

    @classmethod
    def from_params(cls, params: Mapping | None = None) -> "ReadCosts":
        p = dict(params or {})
        out = READ_PARAMS.resolve({k: x for k, x in p.items() if k in READ_PARAMS})
        out.update(COST_PARAMS.resolve({k: x for k, x in p.items() if k in COST_PARAMS}))
        return cls(out)

    def __getattr__(self, name):
        try:
            return self.v[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def rv_fetch_latency(self) -> float:
        """getCurrentResourceVersionFromStorage: a quorum range that returns no data."""
        return self.etcd_range_base_latency + self.etcd_read_index_latency

    def decode_cpu(self, objects, nbytes):
        """API server CPU to decode ``objects`` objects (``nbytes`` bytes) read from etcd."""
        return objects * self.storage_decode_cpu_per_object + nbytes * self.protobuf_decode_ns_per_byte * NS

    def encode_cpu(self, nbytes, fmt: str = "json"):
        ns = self.json_encode_ns_per_byte if fmt == "json" else self.protobuf_encode_ns_per_byte
        return nbytes * ns * NS

    def client_decode(self, nbytes, fmt: str = "json"):
        ns = self.json_decode_ns_per_byte if fmt == "json" else self.protobuf_decode_ns_per_byte
        return nbytes * ns * NS


# --------------------------------------------------------------------------------------
# Freshness: when can the cache answer a read that needs rv@t0?
# --------------------------------------------------------------------------------------


@dataclass
class WriteLog:
    """Every etcd write (global revision order) and the writes of one resource type.

    ``all_rv``/``all_time``: all writes, sorted; ``rv``/``time``: the resource's writes;
    ``list_rv``: the revision the cache was built at (before the first write).
    """

    all_rv: np.ndarray
    all_time: np.ndarray
    rv: np.ndarray
    time: np.ndarray
    list_rv: int

    def __post_init__(self):
        self.all_rv = np.asarray(self.all_rv, dtype=np.int64)
        self.all_time = np.asarray(self.all_time, dtype=np.float64)
        self.rv = np.asarray(self.rv, dtype=np.int64)
        self.time = np.asarray(self.time, dtype=np.float64)
        for name in ("all_rv", "rv"):
            a = getattr(self, name)
            if a.size > 1 and np.any(np.diff(a) <= 0):
                raise ParameterError(name, "must increase strictly")
        if self.all_time.size > 1 and np.any(np.diff(self.all_time) < 0):
            raise ParameterError("all_time", "must not decrease")

    def revision_at(self, t) -> np.ndarray:
        """etcd's current revision at time(s) ``t`` (what the quorum range returns)."""
        t = np.asarray(t, dtype=np.float64)
        i = np.searchsorted(self.all_time, t, side="right")
        out = np.where(i > 0, self.all_rv[np.maximum(i - 1, 0)], self.list_rv)
        return out.astype(np.int64)


@dataclass
class Freshness:
    """How long consistent reads wait for a cache, and what they cost etcd meanwhile.

    Arrays per read: ``t0`` (arrival), ``rv`` (``rv@t0``), ``registered`` (after the
    revision fetch), ``ready`` (the cache reached ``rv``), ``wait`` = ready - registered,
    ``by_progress`` (a progress notification, not an event, made it fresh), ``timed_out``
    (the wait would exceed ``block_timeout``). ``progress_requests``: times etcd was asked.
    """

    t0: np.ndarray
    rv: np.ndarray
    registered: np.ndarray
    ready: np.ndarray
    by_progress: np.ndarray
    timed_out: np.ndarray
    progress_requests: np.ndarray
    block_timeout: float

    @property
    def wait(self) -> np.ndarray:
        return np.minimum(self.ready - self.registered, self.block_timeout)

    def __len__(self) -> int:
        return int(self.t0.size)


def event_ready_times(log: WriteLog, rv0, costs: ReadCosts) -> np.ndarray:
    """When the cache's resourceVersion reaches ``rv0`` through the resource's own events:
    the delivery of its first event with RV >= ``rv0`` (``-inf`` if the cache was built
    at or after ``rv0``; ``inf`` if no such event is in the log)."""
    rv0 = np.asarray(rv0, dtype=np.int64)
    j = np.searchsorted(log.rv, rv0, side="left")
    out = np.full(rv0.shape, np.inf)
    ok = j < log.rv.size
    out[ok] = log.time[j[ok]] + costs.etcd_watch_latency + costs.watch_lag
    out[rv0 <= log.list_rv] = -np.inf
    return out


def progress_requester(registered, event_ready, period: float, delay) -> tuple[np.ndarray, np.ndarray]:
    """Upstream's ``conditionalProgressRequester`` for one resource, exactly.

    Its timer fires every ``period`` while any read waits; a fire with nobody waiting
    leaves the timer expired, and the next read to wait then makes it fire at once. A
    fire at ``f`` makes every waiting read fresh when its notification arrives (the
    notification carries etcd's current revision, >= every waiting read's ``rv@t0``),
    unless its own events did it sooner. ``delay``: seconds from a fire to its
    notification, or a function of the fire time (see :func:`notification_times`). Reads
    whose events made them fresh before they registered never wait. Returns (ready time
    per read, fire times).
    """
    memo: dict[float, float] = {}

    def arrival(f: float) -> float:
        if f not in memo:
            memo[f] = float(delay(np.array([f]))[0]) if callable(delay) else f + float(delay)
        return memo[f]

    s = np.asarray(registered, dtype=np.float64)
    e = np.asarray(event_ready, dtype=np.float64)
    order = np.argsort(s, kind="stable")
    ready = np.empty(s.size)
    fires: list[float] = []
    heap: list[float] = []          # ready times of reads still waiting
    expired = True
    t_fire = -math.inf

    def run_timer(until: float) -> None:
        """Fire every ``period`` while a read still waits at fire time, up to ``until``."""
        nonlocal t_fire, expired
        while not expired and t_fire < until:
            while heap and heap[0] <= t_fire:
                heapq.heappop(heap)
            if heap:
                fires.append(t_fire)
                t_fire += period
            else:
                expired = True

    for i in order.tolist():
        si = s[i]
        run_timer(si)                                # the timer's fires before this read
        if e[i] <= si:                              # already fresh: no waiting read registered
            ready[i] = si
            continue
        while heap and heap[0] <= si:
            heapq.heappop(heap)
        if expired:                                  # idle requester: ask at once
            fire = si
            fires.append(si)
            t_fire, expired = si + period, False
        else:
            fire = t_fire
        ready[i] = min(e[i], arrival(fire))
        heapq.heappush(heap, ready[i])
    run_timer(math.inf)                              # fires after the last read arrived
    return ready, np.asarray(fires, dtype=np.float64)


def notification_times(log: WriteLog, fires, costs: ReadCosts) -> np.ndarray:
    """When the progress notifications requested at ``fires`` reach the cache.

    etcd answers after ``progress_notify_latency`` (+ ``watch_lag``), with its revision
    at the request. On the same watch stream it has already sent every event up to that
    revision, so the notification never arrives before them: its arrival is at least the
    delivery of the resource's last event at or below that revision. With
    ``etcd_progress_notify_bug`` (etcd-io/etcd#15220) that ordering is not kept.
    """
    f = np.asarray(fires, dtype=np.float64)
    out = f + costs.progress_notify_latency + costs.watch_lag
    if costs.etcd_progress_notify_bug or log.rv.size == 0:
        return out
    rev = log.revision_at(f)
    k = np.searchsorted(log.rv, rev, side="right")          # events with rv <= rev
    last = np.where(k > 0, log.time[np.maximum(k - 1, 0)] + costs.etcd_watch_latency + costs.watch_lag, -np.inf)
    return np.maximum(out, last)


def wait_until_fresh(t0, log: WriteLog, setting: str, costs: ReadCosts) -> Freshness:
    """Freshness of consistent reads arriving at ``t0`` (array) for one resource's cache.

    ``article``: each read that finds the cache behind asks etcd for a progress
    notification at once. ``upstream``: one :func:`progress_requester` per resource.
    (``off`` reads do not use the cache; it is accepted here to show what they would wait.)
    """
    if setting not in ("off", "article", "upstream"):
        raise ParameterError("setting", f"must be one of off, article, upstream; got {setting!r}")
    t0 = np.atleast_1d(np.asarray(t0, dtype=np.float64))
    rv0 = log.revision_at(t0)
    s = t0 + costs.rv_fetch_latency
    e = event_ready_times(log, rv0, costs)
    if setting == "upstream":
        ready, fires = progress_requester(s, e, costs.progress_request_period,
                                          lambda f: notification_times(log, f, costs))
    else:
        fresh = e <= s
        ready = np.where(fresh, s, np.minimum(e, notification_times(log, s, costs)))
        fires = s[~fresh]
    ready = np.maximum(ready, s)
    by_progress = ready < np.maximum(e, s)
    timed_out = (ready - s) > costs.block_timeout
    return Freshness(t0, rv0, s, ready, by_progress, timed_out, np.sort(fires), costs.block_timeout)


def cache_rv_at(log: WriteLog, t, progress_times, costs: ReadCosts) -> np.ndarray:
    """The cache's resourceVersion at time(s) ``t``: the last delivered event of the
    resource, or the revision carried by the last delivered progress notification."""
    t = np.asarray(t, dtype=np.float64)
    d_ev = log.time + costs.etcd_watch_latency + costs.watch_lag
    i = np.searchsorted(d_ev, t, side="right")
    out = np.where(i > 0, log.rv[np.maximum(i - 1, 0)], log.list_rv).astype(np.int64)
    p = np.sort(np.asarray(progress_times, dtype=np.float64))
    if p.size:
        arrive = notification_times(log, p, costs)
        prv = log.revision_at(p)           # etcd's revision when it answered the request
        order = np.argsort(arrive, kind="stable")
        arrive, prv = arrive[order], np.maximum.accumulate(prv[order])
        k = np.searchsorted(arrive, t, side="right")
        out = np.maximum(out, np.where(k > 0, prv[np.maximum(k - 1, 0)], 0))
    return out


# --------------------------------------------------------------------------------------
# One request: counted work, time and CPU
# --------------------------------------------------------------------------------------

#: latency components of a request, in the order they are drawn
COMPONENTS = ("rtt", "fresh", "queue", "etcd", "transfer", "decode", "filter", "encode", "client")


@dataclass
class ReadTrace:
    """One API request (or one command's worth of them): what it did and what it took.

    Time components (seconds) add up to :attr:`latency`: ``rtt`` (client round trips),
    ``fresh`` (revision fetch + waiting for the cache), ``queue`` (waiting for a busy API
    server's or etcd's CPU), ``etcd`` (range RPCs and etcd's
    serving), ``transfer`` (bytes on the wire), ``decode`` (API server decoding etcd's
    objects), ``filter`` (cache scan or index lookup), ``encode`` (the response),
    ``client`` (the client decoding it, and kubectl's own start-up).
    """

    kind: str
    source: str = "cache"          # etcd, cache, etcd (fallback), error
    status: int = 200
    http_requests: int = 0
    etcd_ranges: int = 0            # range requests that read objects
    rv_fetches: int = 0             # quorum ranges that only fetch the current revision
    quorum_reads: int = 0
    progress_requests: int = 0
    objects_fetched: int = 0        # read from etcd
    objects_decoded: int = 0        # decoded and tested against the selector
    objects_scanned: int = 0        # cached objects looked at
    objects_returned: int = 0
    bytes_fetched: float = 0.0      # etcd -> API server
    bytes_returned: float = 0.0     # API server -> client
    peak_response_bytes: float = 0.0
    index_used: str = ""
    cache_wait: float = 0.0         # apiserver_watch_cache_read_wait_seconds
    rtt: float = 0.0
    fresh: float = 0.0
    queue: float = 0.0
    etcd: float = 0.0
    transfer: float = 0.0
    decode: float = 0.0
    filter: float = 0.0
    encode: float = 0.0
    client: float = 0.0
    cpu_apiserver: float = 0.0
    cpu_etcd: float = 0.0

    @property
    def latency(self) -> float:
        return sum(getattr(self, c) for c in COMPONENTS)

    def combine(self, other: "ReadTrace", kind: str | None = None) -> "ReadTrace":
        """Two requests made one after the other (times and counts add)."""
        out = ReadTrace(kind or self.kind)
        for f in fields(ReadTrace):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name == "kind":
                continue
            if f.name == "source":
                setattr(out, f.name, a if a == b else f"{a}+{b}")
            elif f.name == "status":
                setattr(out, f.name, max(a, b))
            elif f.name == "index_used":
                setattr(out, f.name, a or b)
            elif f.name == "peak_response_bytes":
                setattr(out, f.name, max(a, b))
            else:
                setattr(out, f.name, a + b)
        return out

    def as_row(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(ReadTrace)}
        d["latency"] = self.latency
        return d


def _add_etcd(tr: ReadTrace, w: EtcdReadWork) -> None:
    tr.etcd_ranges += w.ranges
    tr.quorum_reads += w.quorum_reads
    tr.etcd += w.latency
    tr.transfer += w.transfer
    tr.cpu_etcd += w.cpu


def _respond(tr: ReadTrace, nbytes: float, costs: ReadCosts, fmt: str, http_requests: int = 1) -> None:
    tr.http_requests += http_requests
    tr.rtt += http_requests * costs.client_rtt
    tr.bytes_returned += nbytes
    enc = costs.encode_cpu(nbytes, fmt) + http_requests * costs.request_overhead
    tr.encode += enc
    tr.cpu_apiserver += enc
    tr.transfer += nbytes / costs.network_bytes_per_s
    tr.client += costs.client_decode(nbytes, fmt)


def etcd_get(kind: str, nbytes: float, costs: ReadCosts, fmt: str = "json") -> ReadTrace:
    """A consistent GET of one object from etcd: one quorum range, one decode."""
    tr = ReadTrace(kind, source="etcd")
    _add_etcd(tr, range_work([1], [nbytes], True, costs.v))
    tr.objects_fetched = tr.objects_decoded = tr.objects_returned = 1
    tr.bytes_fetched = nbytes
    tr.peak_response_bytes = nbytes
    dec = costs.decode_cpu(1, nbytes)
    tr.decode += dec
    tr.cpu_apiserver += dec
    _respond(tr, nbytes, costs, fmt)
    return tr


def _etcd_key_order(objects: ObjectSet) -> np.ndarray:
    """The objects in etcd's key order (``/registry/pods/<namespace>/<name>``), sorted once
    per object set (a LIST of the same state in another setting reads the same keys)."""
    order = getattr(objects, "_etcd_order", None)
    if order is None or order.size != len(objects):
        order = np.lexsort((objects.key, objects.ns))
        objects._etcd_order = order
    return order


def etcd_list(kind: str, objects: ObjectSet, selector: Selector, limit: int, grow: bool, costs: ReadCosts,
              fmt: str = "json", row_bytes: float | None = None) -> tuple[ReadTrace, ListPlan]:
    """A consistent LIST from etcd: keys in etcd's order (namespace, then name), pages of
    ``limit`` (the client follows continue tokens), every object decoded and filtered
    in the API server. ``row_bytes``: bytes per returned item if the response is a
    Table (``kubectl get``), else the objects themselves."""
    order = _etcd_key_order(objects)
    match = selector.matches(objects.ns[order], objects.node[order], objects.label[order])
    sizes = objects.size[order].astype(np.float64)
    plan = plan_list(match, sizes, limit, grow=grow)
    tr = ReadTrace(kind, source="etcd")
    _add_etcd(tr, plan_work(plan, costs.v))
    tr.objects_fetched = plan.objects_fetched
    tr.objects_decoded = plan.objects_evaluated
    tr.objects_returned = plan.objects_returned
    tr.bytes_fetched = plan.bytes_fetched
    tr.peak_response_bytes = plan.peak_response_bytes
    dec = costs.decode_cpu(plan.objects_evaluated, plan.bytes_evaluated)
    tr.decode += dec
    tr.cpu_apiserver += dec
    out_bytes = plan.bytes_returned if row_bytes is None else plan.objects_returned * row_bytes
    _respond(tr, out_bytes, costs, fmt, http_requests=plan.api_pages)
    return tr, plan


def cache_get(kind: str, cache: WatchCache, key: int, nbytes: float, costs: ReadCosts, fmt: str = "json") -> ReadTrace:
    """A GET served from the watch cache (a map lookup, one encode)."""
    tr = ReadTrace(kind, source="cache")
    found = cache.get(int(key)) is not None
    tr.objects_scanned = 1
    tr.objects_returned = int(found)
    tr.filter += costs.cache_filter_cpu_per_object
    tr.cpu_apiserver += costs.cache_filter_cpu_per_object
    _respond(tr, nbytes if found else 0.0, costs, fmt)
    return tr


def cache_list(kind: str, cache: WatchCache, selector: Selector, use_index: bool, costs: ReadCosts,
               fmt: str = "json", pages: int = 1, row_bytes: float | None = None) -> ReadTrace:
    """A LIST served from the watch cache: the index bucket (or every object) is looked
    at, filtered by the selector, encoded. ``pages``: HTTP requests the client makes
    (continuation pages served from the cache's snapshot cost one round trip each)."""
    res = cache.list(selector, index=use_index)
    return cache_scan(kind, res.scanned, res.returned, float(res.bytes_returned), res.index_used, costs, fmt,
                      pages, row_bytes)


def cache_scan(kind: str, scanned: int, returned: int, bytes_returned: float, index_used: str, costs: ReadCosts,
               fmt: str = "json", pages: int = 1, row_bytes: float | None = None) -> ReadTrace:
    """The cost of a LIST from the cache that looked at ``scanned`` objects and kept
    ``returned`` of them (``bytes_returned`` bytes)."""
    tr = ReadTrace(kind, source="cache", index_used=index_used)
    tr.objects_scanned = int(scanned)
    tr.objects_returned = int(returned)
    f = scanned * costs.cache_filter_cpu_per_object
    tr.filter += f
    tr.cpu_apiserver += f
    out_bytes = float(bytes_returned) if row_bytes is None else returned * row_bytes
    _respond(tr, out_bytes, costs, fmt, http_requests=max(1, int(pages)))
    return tr


def add_freshness(tr: ReadTrace, fresh: Freshness, i: int, costs: ReadCosts) -> None:
    """Charge read ``i`` of ``fresh``: the revision fetch (a quorum read) and the wait."""
    w = range_work([0], [0.0], True, costs.v)
    tr.quorum_reads += 1
    tr.rv_fetches += 1
    tr.cpu_etcd += w.cpu
    tr.cache_wait += float(fresh.wait[i])
    tr.fresh += costs.rv_fetch_latency + float(fresh.wait[i])


def charge_progress(tr: ReadTrace, n_requests: int, costs: ReadCosts) -> None:
    """etcd answers each progress request with one notification on the watch stream."""
    tr.progress_requests += int(n_requests)
    tr.cpu_etcd += n_requests * costs.etcd_read_index_cpu


# --------------------------------------------------------------------------------------
# Read-after-write: consistency kept, and the stale resourceVersion=0 read beside it
# --------------------------------------------------------------------------------------


def read_after_write_probes(log: WriteLog, n: int, delay_mean: float, setting: str, costs: ReadCosts,
                            rng: np.random.Generator):
    """Writes acknowledged, then read back: does the read see the write?

    ``n`` writes of the resource are drawn from ``log``; each is read ``Exp(delay_mean)``
    after its commit (a controller reading back what it wrote). The cache applies events
    in order, so it holds a write once the write's event has been delivered. A
    ``resourceVersion=0`` read is answered by the cache at once: it sees the write only if
    the event was already delivered. A consistent read waits until the cache's
    resourceVersion reaches ``rv@t0`` (per ``setting``'s progress policy) and is answered
    from the cache then; it sees the write unless a progress notification overtook the
    event (``etcd_progress_notify_bug``). Returns a DataFrame, one row per probe.
    """
    import pandas as pd

    if log.rv.size == 0 or n <= 0:
        return pd.DataFrame(columns=["write_rv", "write_time", "read_time", "rv0_sees", "consistent_sees",
                                     "consistent_status", "wait"])
    j = rng.integers(0, log.rv.size, size=int(n))
    t_w = log.time[j]
    t_r = t_w + rng.exponential(delay_mean, size=j.size) if delay_mean > 0 else t_w.copy()
    # the cache applies events in order: it holds write j once j's event is delivered
    delivered = t_w + costs.etcd_watch_latency + costs.watch_lag
    rv0_sees = delivered <= t_r                             # resourceVersion=0: the cache as it is now
    fr = wait_until_fresh(t_r, log, "article" if setting == "off" else setting, costs)
    served_at = fr.ready
    status = np.where(fr.timed_out, 504 if setting == "article" else 200, 200)
    fallback = fr.timed_out & (setting == "upstream")
    sees = np.where(fallback, True, delivered <= served_at)  # a fallback reads etcd itself
    if setting == "off":                                    # quorum read from etcd
        sees = np.ones(j.size, dtype=bool)
        status = np.full(j.size, 200)
    return pd.DataFrame({"write_rv": log.rv[j], "write_time": t_w, "read_time": t_r, "rv0_sees": rv0_sees,
                         "consistent_sees": np.where(status == 200, sees, False), "consistent_status": status,
                         "wait": np.where(setting == "off", 0.0, fr.wait)})

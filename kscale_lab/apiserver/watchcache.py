"""The API server's watch cache: a sliding window of recent events, indexes, bookmarks.

Picture a newsroom's ticker tape. Every write to etcd gets the next number from one
global counter, the *revision*; the API server calls it the resourceVersion (RV).
For each resource type (pods, nodes, ...) the API server keeps a tape of the most
recent events of that type, and a board with the current state of every object.

* A client that reconnects says "I have seen everything up to RV 5". If the tape
  still reaches back to RV 6, the server replays the tape from there: every event on
  the tape after RV 5 is read and checked against the client's selector (these are
  the "init events" of ``apiserver_init_events_total``), and only the matching ones
  are sent.
* If the tape has been cut (its oldest event is RV 7 and the client asks for 5) the
  server cannot know what the client missed: it answers **410 Gone, "too old
  resource version: 5 (6)"** and the client must LIST everything again.
* Revisions are global, so one type's RVs jump (pods 5, 9, 12 ... while leases take
  the numbers between). A kubelet watching only its node's pods may see no event for
  minutes; its RV stays old while the tape rolls on. A **bookmark** is a ticket
  from the server: "nothing you care about up to RV 12". It moves the client's RV
  forward for free, so its next reconnect replays a few seconds of tape instead of
  minutes, or avoids a 410.

The tape's length adapts (``resizeCacheLocked``): when the tape is full and even its
oldest event is younger than ``eventFreshDuration`` (75 s) it doubles, up to
``100 * 1024`` events; when it is full and the event a quarter back from the newest
is older than 75 s it halves, down to 100. 75 s is the bookmark period (60 s) plus
15 s: long enough that a client's last bookmark is normally still on the tape.

The board has indexes (``spec.nodeName``, namespace, a label): "the pods of node
42" reads 20 objects instead of filtering 200,000. Every write pays for it: each
index whose value changes does a delete and an add in its index sets, counted in
``index_ops``.

What this module holds, at real sizes, as numpy arrays:

* :class:`WatchCache`: the tape (rv, key, event type, index values and the previous
  values, object size, record time) with upstream's capacity rule, the ``410`` rule
  with the ``listRV + 1`` case after a relist, the state with real indexes, LIST with
  or without an index, and counts of the work done;
* bookmark timing per watch (:func:`next_bookmark_time`, :func:`last_bookmark_time`)
  in three settings: ``off``; ``article`` (Kubernetes 1.15, KEP-956 alpha: one
  bookmark 2 s before the watch's deadline); ``upstream`` (today: about every minute
  and 2 s before the deadline);
* a small seeded event source (:func:`generate_cluster_writes`): a global revision
  counter shared by pods, leases, nodes and core events, with pod churn.

Mirrors kubernetes/kubernetes ``staging/src/k8s.io/apiserver/pkg/storage/cacher/``:
``watch_cache.go`` (``resizeCacheLocked``, ``getAllEventsSinceLocked``, ``Replace``,
``waitUntilFreshAndBlock``, ``blockTimeout``), ``cache_watcher.go``
(``nextBookmarkTime``, ``convertToWatchEvent``), ``cacher.go``
(``defaultBookmarkFrequency``, ``dispatchEvents``); KEP-956 (watch bookmarks).

Serves the article's section 4 (bookmarks: "events to re-sync after an API server
restart fell to 3 %") and section 5 (reads from the cache, with indexes).

Modelling notes (deliberate simplifications, each visible in a parameter or here):
the cacher's 1-second bookmark buckets and its +-25 % timer jitter are not modelled
(bookmarks fire at their exact time); bookmarks are always delivered (upstream they
are best effort: a full watcher channel drops one); the record time of an event is
its write time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..errors import KscaleError, ParameterError
from ..params import Param, ParamSet

# --------------------------------------------------------------------------------------
# Codes
# --------------------------------------------------------------------------------------

#: watch event types (k8s.io/apimachinery/pkg/watch EventType)
ADDED, MODIFIED, DELETED, BOOKMARK = 0, 1, 2, 3
NO_EVENT = -1  # convert_to_watch_event: "this watcher is not interested"
EVENT_TYPE_NAMES = {ADDED: "ADDED", MODIFIED: "MODIFIED", DELETED: "DELETED", BOOKMARK: "BOOKMARK"}

#: resource types written by the event source (one watch cache per type)
RTYPE_POD, RTYPE_NODE, RTYPE_LEASE, RTYPE_EVENT = 0, 1, 2, 3
RTYPE_NAMES = {RTYPE_POD: "pods", RTYPE_NODE: "nodes", RTYPE_LEASE: "leases", RTYPE_EVENT: "events"}

#: attribute value meaning "not set" (an unscheduled pod's spec.nodeName, a
#: cluster-scoped object's namespace). It is an ordinary index value, as "" is upstream.
UNSET = -1

#: the indexes of the cache's store, in the order a LIST consults them (upstream
#: takes the first index a request's exact-match selector names).
INDEX_NAMES = ("spec.nodeName", "metadata.namespace", "label")
_ATTR_OF_INDEX = {"spec.nodeName": "node", "metadata.namespace": "ns", "label": "label"}

MAX_INT32 = 2**31 - 1

# --------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------

_CACHER = "kubernetes/kubernetes staging/src/k8s.io/apiserver/pkg/storage/cacher/"

WATCHCACHE_PARAMS = ParamSet([
    Param("event_fresh_duration", 75.0, "s",
          _CACHER + "watch_cache.go: eventFreshDuration = 75 s (defaultBookmarkFrequency + 15 s)",
          "how long the event tape should reach back; drives the capacity's doubling and halving",
          lo=0.001, hi=86400.0),
    Param("lower_bound_capacity", 100, "events",
          _CACHER + "watch_cache.go: defaultLowerBoundCapacity = 100",
          "smallest tape length (also the length of a new cache)", lo=1, hi=MAX_INT32, kind=int),
    Param("upper_bound_capacity", 0, "events",
          _CACHER + "watch_cache.go: defaultUpperBoundCapacity = 100 * 1024; capacityUpperBound() "
          "scales it by the next power of two of eventFreshDuration / 75 s",
          "largest tape length; 0 = upstream's capacityUpperBound(event_fresh_duration) "
          "(102,400 at 75 s)", lo=0, hi=MAX_INT32, kind=int),
    Param("default_bookmark_frequency", 60.0, "s",
          _CACHER + "cacher.go: defaultBookmarkFrequency = time.Minute",
          "period of upstream's periodic bookmarks", lo=0.001, hi=86400.0),
    Param("bookmark_before_deadline", 2.0, "s",
          _CACHER + "cache_watcher.go nextBookmarkTime: c.deadline.Add(-2 * time.Second); "
          "KEP-956 / 1.15 cacher.go: 'we return 2s before deadline'",
          "a bookmark is sent this long before a watch's deadline", lo=0.0, hi=3600.0),
    Param("block_timeout", 3.0, "s",
          _CACHER + "watch_cache.go: blockTimeout = 3 s",
          "how long a request for an RV ahead of the cache waits before 'Too large resource "
          "version' (the waiting itself is the caller's simulated time)", lo=0.0, hi=600.0),
    Param("resource_version_too_high_retry_seconds", 1, "s",
          _CACHER + "watch_cache.go: resourceVersionTooHighRetrySeconds = 1",
          "Retry-After of a 'Too large resource version' error", lo=0, hi=600, kind=int),
    Param("bookmarks", "upstream", "1",
          "off: no bookmarks (before v1.15); article: v1.15 (KEP-956 alpha), one bookmark 2 s "
          "before the deadline (1.15 cacher.go nextBookmarkTime); upstream: today's "
          "cache_watcher.go nextBookmarkTime, every defaultBookmarkFrequency and 2 s before "
          "the deadline",
          "which bookmark policy the cacher follows", choices=("off", "article", "upstream"),
          kind=str),
])

CHURN_PARAMS = ParamSet([
    Param("nodes", 10_000, "nodes", "docs/article.md: target 10k nodes", "cluster size",
          lo=1, hi=100_000, kind=int),
    Param("pods", 200_000, "pods", "docs/article.md: target 200k pods", "pods at t=0",
          lo=0, hi=5_000_000, kind=int),
    Param("namespaces", 1_000, "namespaces",
          "assumption: 1k tenant namespaces (sig-scalability thresholds.md allows 10k)",
          "pods are spread uniformly over namespaces", lo=1, hi=100_000, kind=int),
    Param("label_values", 1_000, "values",
          "assumption: an 'app' label with 1k distinct applications",
          "pods are spread uniformly over the label's values", lo=1, hi=1_000_000, kind=int),
    Param("pod_creates_per_s", 20.0, "pods/s",
          "kubernetes/community sig-scalability/slos/slos.md: steady state = churn <= 20/s "
          "(assumption: all of it pod creations)", "Poisson rate of pod creations",
          lo=0.0, hi=100_000.0),
    Param("pod_deletes_per_s", 20.0, "pods/s",
          "assumption: deletions balance creations (steady population)",
          "Poisson rate of pod deletions (victims: pods present at t=0)", lo=0.0, hi=100_000.0),
    Param("pod_scheduling_delay", 1.0, "s",
          "assumption: the kube-scheduler binds a new pod within ~1 s (article: ~10 s unoptimised)",
          "create -> bind (the MODIFIED event that sets spec.nodeName)", lo=0.0, hi=3600.0),
    Param("pod_startup_status_updates", 2, "writes",
          "assumption: kubelet writes pod status twice on start-up (ContainerCreating, Running/Ready)",
          "status writes after the bind", lo=0, hi=20, kind=int),
    Param("pod_startup_update_spacing", 5.0, "s",
          "assumption: container start-up takes a few seconds",
          "each start-up status write follows the previous one after U(0, this)", lo=0.0, hi=3600.0),
    Param("pod_termination_max", 30.0, "s",
          "k8s API: terminationGracePeriodSeconds defaults to 30 s",
          "graceful delete (MODIFIED, deletionTimestamp) -> DELETED after U(1 s, this)",
          lo=1.0, hi=3600.0),
    Param("pod_background_updates_per_hour", 1.0, "writes/pod/h",
          "assumption: a running pod's status changes (probes, restarts) about once an hour",
          "Poisson rate of status writes of running pods", lo=0.0, hi=3600.0,
          plausible=(0.25, 4.0), plausible_source="a running pod's status changes from once in four hours (quiet services) to every 15 minutes (probes flapping, restarts)"),
    Param("pod_object_size", 4096, "B",
          "assumption: a typical Pod object is a few KB (the article quotes 15 KB for a Node)",
          "mean pod object size; sizes are U(0.5, 1.5) x this", lo=1, hi=10_000_000, kind=int),
    Param("node_lease_renew_interval", 10.0, "s",
          "docs/upstream.md section 2: kubelet renews its Lease every 10 s (KEP-589)",
          "every node writes its Lease this often (other-type revisions between pod RVs)",
          lo=0.1, hi=3600.0),
    Param("node_status_update_period", 300.0, "s",
          "docs/upstream.md section 2: periodic NodeStatus every 5 min since v1.17",
          "every node writes its Node object this often", lo=1.0, hi=86400.0),
    Param("core_events_per_s", 50.0, "events/s",
          "assumption: core/v1 Event objects written by controllers and kubelets",
          "Poisson rate of writes to the events resource", lo=0.0, hi=1_000_000.0),
])

#: every parameter of this module
PARAMS = WATCHCACHE_PARAMS + CHURN_PARAMS


def capacity_upper_bound(event_fresh_duration: float) -> int:
    """Upstream's ``capacityUpperBound``: 102,400 events, times the next power of two of
    ``event_fresh_duration / 75 s`` when the freshness is raised above 75 s."""
    default_fresh = 75.0
    base = 100 * 1024
    if event_fresh_duration <= default_fresh:
        return base
    exponent = int(math.ceil(math.log2(event_fresh_duration / default_fresh)))
    max_exponent = int(math.floor(math.log2(MAX_INT32 / base)))
    return base << min(exponent, max_exponent)


def resolve_watchcache_params(params: Mapping | None = None) -> dict:
    """Validated watch cache parameters, with the upper bound filled in."""
    p = WATCHCACHE_PARAMS.resolve(params)
    if p["upper_bound_capacity"] == 0:
        p["upper_bound_capacity"] = capacity_upper_bound(p["event_fresh_duration"])
    if p["upper_bound_capacity"] < p["lower_bound_capacity"]:
        raise ParameterError("upper_bound_capacity",
                             f"must be an integer in [{p['lower_bound_capacity']}, {MAX_INT32}] "
                             f"(>= lower_bound_capacity); got {p['upper_bound_capacity']}")
    return p


# --------------------------------------------------------------------------------------
# Selectors and batches of events / objects
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    """An exact-match selector: ``spec.nodeName``, ``metadata.namespace`` and one label.

    ``None`` means "any". ``Selector()`` selects everything; ``Selector(node=42)`` is a
    kubelet's ``fieldSelector=spec.nodeName=node-42``.
    """

    namespace: int | None = None
    node: int | None = None
    label: int | None = None

    @property
    def is_everything(self) -> bool:
        return self.namespace is None and self.node is None and self.label is None

    def matches(self, ns, node, label):
        """Vectorised (or scalar) match on attribute arrays."""
        ok = np.ones(np.shape(ns), dtype=bool)
        if self.namespace is not None:
            ok &= np.asarray(ns) == self.namespace
        if self.node is not None:
            ok &= np.asarray(node) == self.node
        if self.label is not None:
            ok &= np.asarray(label) == self.label
        return ok

    def index_candidates(self) -> list[tuple[str, int]]:
        """(index name, value) pairs this selector can be served by, in upstream order."""
        out = []
        for name in INDEX_NAMES:
            v = getattr(self, "namespace" if name == "metadata.namespace" else _ATTR_OF_INDEX[name])
            if v is not None:
                out.append((name, int(v)))
        return out


EVERYTHING = Selector()

_EVENT_FIELDS = ("rv", "time", "key", "etype", "ns", "node", "label", "size")
_EVENT_DTYPES = {"rv": np.int64, "time": np.float64, "key": np.int64, "etype": np.int8,
                 "ns": np.int32, "node": np.int32, "label": np.int32, "size": np.int32}


@dataclass
class EventBatch:
    """Writes to one resource type, in RV order: numpy columns of equal length.

    ``ns``/``node``/``label`` are the object's attributes after the write (for a
    DELETED event the cache uses the stored object's attributes, as a delete carries
    the last state of the object).
    """

    rv: np.ndarray
    time: np.ndarray
    key: np.ndarray
    etype: np.ndarray
    ns: np.ndarray
    node: np.ndarray
    label: np.ndarray
    size: np.ndarray

    def __post_init__(self):
        for f in _EVENT_FIELDS:
            setattr(self, f, np.ascontiguousarray(getattr(self, f), dtype=_EVENT_DTYPES[f]))
        n = self.rv.shape[0]
        for f in _EVENT_FIELDS:
            a = getattr(self, f)
            if a.ndim != 1 or a.shape[0] != n:
                raise ParameterError("events", f"columns must be 1-D of equal length; {f} has shape {a.shape}, rv has {n}")

    def __len__(self) -> int:
        return int(self.rv.shape[0])

    def take(self, idx) -> "EventBatch":
        return EventBatch(**{f: getattr(self, f)[idx] for f in _EVENT_FIELDS})

    @staticmethod
    def concat(batches: Sequence["EventBatch"]) -> "EventBatch":
        return EventBatch(**{f: np.concatenate([getattr(b, f) for b in batches]) for f in _EVENT_FIELDS})

    @staticmethod
    def empty() -> "EventBatch":
        return EventBatch(**{f: np.zeros(0, dtype=_EVENT_DTYPES[f]) for f in _EVENT_FIELDS})


class _Index:
    """One index: value -> the set of keys with that value (client-go's ``threadSafeMap``
    indices). Built from the state as a table sorted by value; a bucket becomes a Python
    set only when a write changes it, so listing a fresh cache's 200,000 pods into
    10,000 buckets costs one sort, not 10,000 sets."""

    def __init__(self, sorted_values: np.ndarray, keys: np.ndarray):
        cuts = np.flatnonzero(np.diff(sorted_values)) + 1
        lo = np.r_[0, cuts].astype(np.int64)
        self._vals = sorted_values[lo] if sorted_values.size else np.zeros(0, dtype=sorted_values.dtype)
        self._lo = lo if sorted_values.size else np.zeros(0, dtype=np.int64)
        self._hi = np.r_[cuts, sorted_values.size].astype(np.int64) if sorted_values.size else self._lo
        self._keys = keys                      # ascending within each bucket (a stable sort of sorted keys)
        self._sets: dict[int, set[int]] = {}   # buckets changed since the build (empty ones dropped)
        self._touched: set[int] = set()        # values whose table slice is stale

    def _slice(self, value: int) -> np.ndarray | None:
        i = int(np.searchsorted(self._vals, value))
        if i < self._vals.size and self._vals[i] == value:
            return self._keys[self._lo[i]:self._hi[i]]
        return None

    def get(self, value: int) -> set[int] | None:
        """The bucket as a mutable set (None if empty)."""
        if value in self._touched:
            return self._sets.get(value)
        self._touched.add(value)
        sl = self._slice(value)
        if sl is None or sl.size == 0:
            return None
        bucket = set(sl.tolist())
        self._sets[value] = bucket
        return bucket

    def __setitem__(self, value: int, bucket: set[int]):
        self._touched.add(value)
        self._sets[value] = bucket

    def __delitem__(self, value: int):
        self._touched.add(value)
        self._sets.pop(value, None)

    def sorted_keys(self, value: int) -> np.ndarray:
        if value in self._touched:
            b = self._sets.get(value)
            return np.sort(np.fromiter(b, dtype=np.int64, count=len(b))) if b else np.zeros(0, dtype=np.int64)
        sl = self._slice(value)
        return sl.astype(np.int64, copy=True) if sl is not None else np.zeros(0, dtype=np.int64)

    def to_dict(self) -> dict[int, set[int]]:
        out = {}
        for v, lo, hi in zip(self._vals.tolist(), self._lo.tolist(), self._hi.tolist()):
            if v not in self._touched and hi > lo:
                out[v] = set(self._keys[lo:hi].tolist())
        out.update({v: set(b) for v, b in self._sets.items() if b})
        return out

    def __eq__(self, other) -> bool:
        if isinstance(other, _Index):
            other = other.to_dict()
        return self.to_dict() == other


def _distinct(keys: np.ndarray) -> bool:
    """No key twice: strictly increasing keys (a LIST's, in key order) are distinct at
    once; otherwise sort."""
    if keys.size < 2 or bool(np.all(keys[1:] > keys[:-1])):
        return True
    return np.unique(keys).size == keys.size


@dataclass
class ObjectSet:
    """Objects of one resource type (the state a LIST returns): numpy columns."""

    key: np.ndarray
    ns: np.ndarray
    node: np.ndarray
    label: np.ndarray
    size: np.ndarray
    rv: np.ndarray

    def __post_init__(self):
        self.key = np.ascontiguousarray(self.key, dtype=np.int64)
        self.ns = np.ascontiguousarray(self.ns, dtype=np.int32)
        self.node = np.ascontiguousarray(self.node, dtype=np.int32)
        self.label = np.ascontiguousarray(self.label, dtype=np.int32)
        self.size = np.ascontiguousarray(self.size, dtype=np.int32)
        self.rv = np.ascontiguousarray(self.rv, dtype=np.int64)
        n = self.key.shape[0]
        for f in ("ns", "node", "label", "size", "rv"):
            if getattr(self, f).shape != (n,):
                raise ParameterError("objects", f"columns must be 1-D of equal length; {f} differs from key")
        if n and (self.key.min() < 0 or not _distinct(self.key)):
            raise ParameterError("objects", "keys must be distinct non-negative integers")

    def __len__(self) -> int:
        return int(self.key.shape[0])

    @staticmethod
    def empty() -> "ObjectSet":
        z = np.zeros(0, dtype=np.int64)
        return ObjectSet(z, z, z, z, z, z)

    def as_dict(self) -> dict[int, tuple[int, int, int]]:
        """key -> (namespace, node, label): handy for exact comparisons in tests."""
        return {int(k): (int(a), int(b), int(c))
                for k, a, b, c in zip(self.key, self.ns, self.node, self.label)}


# --------------------------------------------------------------------------------------
# The event source: one global revision counter, several resource types
# --------------------------------------------------------------------------------------


class EtcdRevisionCounter:
    """etcd's global revision: every write to any key takes the next number."""

    def __init__(self, start: int = 0):
        if start < 0:
            raise ParameterError("start", f"must be an integer in [0, inf]; got {start}")
        self.revision = int(start)

    def allocate(self, n: int) -> np.ndarray:
        """Revisions for ``n`` consecutive writes."""
        if n < 0:
            raise ParameterError("n", f"must be an integer in [0, inf]; got {n}")
        out = np.arange(self.revision + 1, self.revision + 1 + n, dtype=np.int64)
        self.revision += n
        return out


@dataclass
class ClusterWrites:
    """Everything the event source wrote, with global revisions.

    ``initial_pods`` is the pods' state at ``list_rv`` (t = 0); ``rtype``/``rv``/``time``
    list every write of every type (so a type's RVs are visibly non-contiguous);
    ``pods`` is the pods' event stream, ready for :meth:`WatchCache.add_events`.
    """

    initial_pods: ObjectSet
    list_rv: int
    pods: EventBatch
    duration: float
    params: dict
    #: each type's write times, sorted: (rtype code, times); merged into ``rv``/``time``/
    #: ``rtype`` only when a reader asks (millions of lease writes that only take revisions)
    streams: tuple = ()

    def _merged(self):
        if not hasattr(self, "_merged_cols"):
            times = [t for _, t in self.streams]
            ranks = _merge_ranks(times)
            total = sum(t.size for t in times)
            all_t = np.empty(total)
            all_type = np.empty(total, dtype=np.int8)
            for (code, t), r in zip(self.streams, ranks):
                all_t[r] = t
                all_type[r] = code
            self._merged_cols = (np.arange(self.list_rv + 1, self.list_rv + 1 + total, dtype=np.int64),
                                 all_t, all_type)
        return self._merged_cols

    @property
    def rv(self) -> np.ndarray:
        """Every write's revision, in order (consecutive from ``list_rv + 1``)."""
        return self._merged()[0]

    @property
    def time(self) -> np.ndarray:
        """Every write's time, in revision order."""
        return self._merged()[1]

    @property
    def rtype(self) -> np.ndarray:
        """Every write's resource type (``RTYPE_*``), in revision order."""
        return self._merged()[2]

    @property
    def revisions(self) -> int:
        """Writes of every type (revisions taken after ``list_rv``)."""
        return int(sum(t.size for _, t in self.streams))

    def writes_per_type(self) -> dict[str, int]:
        counts = np.zeros(len(RTYPE_NAMES), dtype=np.int64)
        for code, t in self.streams:
            counts[code] += t.size
        return {RTYPE_NAMES[i]: int(c) for i, c in enumerate(counts)}


def _poisson_times(rng: np.random.Generator, rate: float, duration: float) -> np.ndarray:
    if rate <= 0 or duration <= 0:
        return np.zeros(0)
    n = rng.poisson(rate * duration)
    return np.sort(rng.uniform(0.0, duration, size=n))


def _periodic_times(rng: np.random.Generator, n_objects: int, period: float, duration: float):
    """Each object writes every ``period`` from a random phase: (times, object ids).

    In time order, ties in the order of the object ids: write ``j`` of every object falls
    in ``[j * period, (j + 1) * period)``, so sorting the phases once sorts every write."""
    phase = rng.uniform(0.0, period, size=n_objects)
    k = int(math.ceil(duration / period)) + 1
    by_phase = np.argsort(phase, kind="stable")
    t = (phase[by_phase][None, :] + period * np.arange(k)[:, None]).ravel()
    obj = np.tile(by_phase.astype(np.int64), k)
    keep = t < duration
    return t[keep], obj[keep]


def _merge_ranks(times: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Position of every element of each sorted array in their stable merge (ties: the
    earlier array first, then the order within an array): the same as a stable argsort
    of their concatenation, without sorting millions of elements."""
    ranks = []
    for i, t in enumerate(times):
        r = np.arange(t.size, dtype=np.int64)
        for j, u in enumerate(times):
            if j != i:
                r += np.searchsorted(u, t, side="right" if j < i else "left")
        ranks.append(r)
    return ranks


def generate_cluster_writes(seed: int, duration: float, params: Mapping | None = None) -> ClusterWrites:
    """Seeded, vectorised writes to pods, leases, nodes and events over ``duration`` s.

    Pods: ``pods`` exist at t = 0 (spread uniformly over nodes, namespaces and label
    values). New pods arrive as a Poisson process; each is written when created
    (ADDED, unscheduled), bound (MODIFIED, ``spec.nodeName`` set) and updated by its
    kubelet during start-up. Deleted pods (drawn without replacement from the pods of
    t = 0) get a graceful-delete MODIFIED then DELETED. Running pods also get rare
    background status writes. Leases, Node status and core Events only consume
    revisions, so the pods' RVs jump, as they do in a real cluster.
    """
    p = CHURN_PARAMS.resolve(params)
    if not (isinstance(duration, (int, float)) and math.isfinite(duration) and 0 <= duration <= 7 * 86400):
        raise ParameterError("duration", f"must be a number in [0, 604800] s; got {duration!r}")
    rng = np.random.default_rng(seed)
    n_nodes, n_pods = p["nodes"], p["pods"]
    size_mean = p["pod_object_size"]

    def sizes(n):
        return np.maximum(1, (size_mean * rng.uniform(0.5, 1.5, size=n))).astype(np.int32)

    # -- initial objects: pods, then nodes and leases, created with revisions 1..n -------------
    counter = EtcdRevisionCounter(0)
    pod_rv0 = counter.allocate(n_pods)
    counter.allocate(2 * n_nodes)  # Node and Lease objects
    initial = ObjectSet(
        key=np.arange(n_pods, dtype=np.int64),
        ns=rng.integers(0, p["namespaces"], size=n_pods),
        node=rng.integers(0, n_nodes, size=n_pods),
        label=rng.integers(0, p["label_values"], size=n_pods),
        size=sizes(n_pods),
        rv=pod_rv0,
    )
    list_rv = counter.revision

    cols: dict[str, list[np.ndarray]] = {f: [] for f in ("time", "key", "etype", "ns", "node", "label", "size")}

    def emit(time, key, etype, ns, node, label, size):
        n = len(time)
        cols["time"].append(np.asarray(time, dtype=np.float64))
        cols["key"].append(np.broadcast_to(np.asarray(key, dtype=np.int64), (n,)))
        cols["etype"].append(np.full(n, etype, dtype=np.int8))
        for name, v in (("ns", ns), ("node", node), ("label", label)):
            cols[name].append(np.broadcast_to(np.asarray(v, dtype=np.int32), (n,)))
        cols["size"].append(np.broadcast_to(np.asarray(size, dtype=np.int32), (n,)))

    # -- pod creations -----------------------------------------------------------------------
    tc = _poisson_times(rng, p["pod_creates_per_s"], duration)
    nc = tc.size
    new_keys = n_pods + np.arange(nc, dtype=np.int64)
    new_ns = rng.integers(0, p["namespaces"], size=nc)
    new_node = rng.integers(0, n_nodes, size=nc)
    new_label = rng.integers(0, p["label_values"], size=nc)
    new_size = sizes(nc)
    emit(tc, new_keys, ADDED, new_ns, UNSET, new_label, new_size)
    t_bind = tc + rng.uniform(0.0, 2.0 * p["pod_scheduling_delay"], size=nc)
    emit(t_bind, new_keys, MODIFIED, new_ns, new_node, new_label, new_size)
    t_prev = t_bind
    for _ in range(p["pod_startup_status_updates"]):
        t_prev = t_prev + rng.uniform(0.0, p["pod_startup_update_spacing"], size=nc) + 1e-6
        emit(t_prev, new_keys, MODIFIED, new_ns, new_node, new_label, new_size)

    # -- pod deletions (victims present at t=0, without replacement) ----------------------------
    td = _poisson_times(rng, p["pod_deletes_per_s"], duration)
    if td.size > n_pods:
        raise ParameterError("pod_deletes_per_s",
                             f"must delete at most the {n_pods} pods of t=0 in {duration} s; "
                             f"got {p['pod_deletes_per_s']} (drew {td.size} deletions)")
    victims = rng.choice(n_pods, size=td.size, replace=False) if td.size else np.zeros(0, dtype=np.int64)
    deletion_start = np.full(n_pods, np.inf)
    deletion_start[victims] = td
    vi = victims
    emit(td, vi, MODIFIED, initial.ns[vi], initial.node[vi], initial.label[vi], initial.size[vi])
    t_del = td + rng.uniform(1.0, p["pod_termination_max"], size=td.size)
    emit(t_del, vi, DELETED, initial.ns[vi], initial.node[vi], initial.label[vi], initial.size[vi])

    # -- background status writes of running pods of t=0 (thinned after their deletion) --------
    tb = _poisson_times(rng, n_pods * p["pod_background_updates_per_hour"] / 3600.0, duration)
    if n_pods and tb.size:
        who = rng.integers(0, n_pods, size=tb.size)
        keep = tb < deletion_start[who]
        tb, who = tb[keep], who[keep]
        emit(tb, who, MODIFIED, initial.ns[who], initial.node[who], initial.label[who], initial.size[who])

    pod_time = np.concatenate(cols["time"]) if cols["time"] else np.zeros(0)
    keep = pod_time < duration
    pod_cols = {f: (np.concatenate(v)[keep] if v else np.zeros(0)) for f, v in cols.items()}
    pod_time = pod_cols["time"]

    # -- other types: they only consume revisions ----------------------------------------------
    lease_t, _ = _periodic_times(rng, n_nodes, p["node_lease_renew_interval"], duration)
    node_t, _ = _periodic_times(rng, n_nodes, p["node_status_update_period"], duration)
    ev_t = _poisson_times(rng, p["core_events_per_s"], duration)

    # every write gets the next revision in time order (ties: pods, nodes, leases, events);
    # a pod write's revision is list_rv + 1 + its rank in that order
    pod_order = np.argsort(pod_time, kind="stable")
    pod_t = pod_time[pod_order]
    others = [node_t, lease_t, ev_t]
    pod_rank = np.arange(pod_t.size, dtype=np.int64)
    for u in others:
        pod_rank += np.searchsorted(u, pod_t, side="left")
    pods = EventBatch(
        rv=list_rv + 1 + pod_rank, time=pod_t,
        key=pod_cols["key"][pod_order], etype=pod_cols["etype"][pod_order],
        ns=pod_cols["ns"][pod_order], node=pod_cols["node"][pod_order],
        label=pod_cols["label"][pod_order], size=pod_cols["size"][pod_order])
    streams = ((RTYPE_POD, pod_t), (RTYPE_NODE, node_t), (RTYPE_LEASE, lease_t), (RTYPE_EVENT, ev_t))
    return ClusterWrites(initial_pods=initial, list_rv=list_rv, pods=pods, duration=float(duration), params=p,
                         streams=streams)


# --------------------------------------------------------------------------------------
# Memory: what the event source and a watch cache hold (kscale_lab.memory)
# --------------------------------------------------------------------------------------

#: bytes per event of an EventBatch (rv, time, key int64/float64; etype int8; ns, node,
#: label, size int32) and per object of an ObjectSet (key, rv int64; ns, node, label, size int32)
EVENT_BYTES = 8 + 8 + 8 + 1 + 4 * 4
OBJECT_BYTES = 8 + 8 + 4 * 4
#: bytes per row of the watch cache's tape (:class:`_Log`: the event, its previous
#: attributes, has_prev, start_after, removed_after)
TAPE_ROW_BYTES = sum(np.dtype(d).itemsize for d in
                     (np.int64, np.float64, np.int64, np.int8, np.int32, np.int32, np.int32, np.int32, np.int32,
                      np.int32, np.bool_, np.int32, np.int64, np.bool_))
#: bytes per key of the watch cache's store (exists, ns, node, label, size, object RV)
STORE_KEY_BYTES = 1 + 4 * 4 + 8


def write_counts(duration: float, params: Mapping | None = None) -> dict:
    """Upper bounds of what :func:`generate_cluster_writes` draws over ``duration``:
    pod creations and deletions, pod events, Lease/Node/Event revisions, all writes.
    Poisson counts are taken at their mean + 8 standard deviations."""
    p = CHURN_PARAMS.resolve(params)

    def pois(mean):
        return mean + 8.0 * math.sqrt(mean) + 16.0 if mean > 0 else 0.0

    T = float(duration)
    creates = pois(p["pod_creates_per_s"] * T)
    deletes = min(pois(p["pod_deletes_per_s"] * T), p["pods"])
    background = pois(p["pods"] * p["pod_background_updates_per_hour"] / 3600.0 * T)
    pod_events = creates * (2 + p["pod_startup_status_updates"]) + 2 * deletes + background
    leases = p["nodes"] * (math.ceil(T / p["node_lease_renew_interval"]) + 1)
    nodes = p["nodes"] * (math.ceil(T / p["node_status_update_period"]) + 1)
    events = pois(p["core_events_per_s"] * T)
    return {"creates": creates, "deletes": deletes, "pod_events": pod_events, "leases": leases,
            "nodes": nodes, "events": events, "writes": pod_events + leases + nodes + events,
            "pods": p["pods"]}


def writes_footprint(duration: float, params: Mapping | None = None, keep_all: bool = False):
    """What :func:`generate_cluster_writes` holds and allocates (a
    :class:`kscale_lab.memory.Footprint`): the pods of t = 0 and the pods' events (held),
    every write's revision, time and type (held only if ``keep_all``: a caller that keeps
    the whole :class:`ClusterWrites`), and, while it draws them (phase ``writes``), the
    columns it concatenates, the Lease schedule's grid and the sort of all writes."""
    from ..memory import Footprint

    c = write_counts(duration, params)
    fp = Footprint("cluster writes")
    fp.add("pods at t=0", c["pods"], OBJECT_BYTES)
    fp.add("pod events", c["pod_events"], EVENT_BYTES)
    if keep_all:
        fp.add("every write's revision, time, type", c["writes"], 17)
    # drawing: the pod columns twice (pieces, concatenation), the initial pods' int64 draws
    # and key check, every write sorted (time, type, order, revision, and the sorted copies),
    # the periodic Lease/Node grids (times, ids, mask and their kept copies)
    fp.add("drawing pod events", c["pod_events"], 2 * EVENT_BYTES, phase="writes")
    fp.add("drawing pods", c["pods"], 48, phase="writes")
    fp.add("sorting all writes", c["writes"], 42, phase="writes")
    fp.add("periodic schedules", c["leases"] + c["nodes"], 33, phase="writes")
    return fp


def _index_bucket_bytes(objects: float, values: float, big_buckets: float = 0.0) -> float:
    """Bytes of one index (``dict[value, set[key]]``) over ``objects`` keys spread over
    ``values`` values, plus, optionally, ``big_buckets`` keys that share one value (UNSET):
    the sets (sized as CPython sizes them, for a bucket a few standard deviations above
    the mean), one int object per key, the dict's entries and their int keys."""
    from ..memory import PY_DICT_ENTRY_BYTES, PY_INT_BYTES, set_bytes

    total = 0.0
    objects = max(0.0, float(objects))
    if objects > 0 and values > 0:
        buckets = min(float(values), objects)
        m = objects / buckets
        hi = m + 4.0 * math.sqrt(m) + 1.0
        total += buckets * (set_bytes(int(math.ceil(hi))) + PY_DICT_ENTRY_BYTES + PY_INT_BYTES)
        total += objects * PY_INT_BYTES
    if big_buckets > 0:
        total += set_bytes(int(math.ceil(big_buckets))) + big_buckets * PY_INT_BYTES
    return total


def cache_footprint(name: str, objects: float, keys: float, events: float,
                    indexes: Mapping[str, tuple[float, float, float]], build_phase: str = "build",
                    events_phase: str = "events"):
    """A :class:`WatchCache`'s arrays and indexes (a :class:`kscale_lab.memory.Footprint`).

    ``objects``: objects in the store at most; ``keys``: the largest key + 1 (the store's
    arrays grow to twice the keys they need, the old ones copied: up to 3x while they grow);
    ``events``: events added in one :meth:`~WatchCache.add_events` (the tape keeps them all
    until :meth:`~WatchCache.trim_history`); ``indexes``: per index, (objects spread over
    values, number of values, objects sharing one value such as UNSET). The cache is built
    at the moment ``build_phase`` and takes its events at ``events_phase``."""
    from ..memory import Footprint

    fp = Footprint(f"{name} watch cache")
    # rebuilding one index: values, keys, their sort and the list of each bucket
    fp.add(f"{name} cache index build", objects, 40, phase=build_phase)
    fp.add(f"{name} cache store", keys, 2 * STORE_KEY_BYTES, since=build_phase)
    idx = sum(_index_bucket_bytes(o, v, big) for o, v, big in indexes.values())
    fp.add_bytes(f"{name} cache indexes", idx, since=build_phase)
    if events:
        fp.add(f"{name} cache store growing", keys, STORE_KEY_BYTES, phase=events_phase)
        # add_events: the batch's sort by key, previous-event positions, previous and current
        # attributes, masks, the last event of each key, the ring's per-block arrays
        fp.add(f"{name} cache add_events temporaries", events, 130, phase=events_phase)
        fp.add(f"{name} cache tape", events, TAPE_ROW_BYTES, since=events_phase)
    return fp


# --------------------------------------------------------------------------------------
# Watch filtering (cache_watcher.go convertToWatchEvent)
# --------------------------------------------------------------------------------------


def convert_to_watch_event(etype, has_prev, cur_match, prev_match):
    """What a watcher with a selector receives for a cache event (vectorised).

    As upstream: the current object passes if the event is not a DELETE and it
    matches; the previous object passes if it existed and matched. Both -> MODIFIED;
    only the current -> ADDED (the object moved into the selector); only the
    previous -> DELETED (it moved out, or was deleted); neither -> ``NO_EVENT``.
    """
    etype = np.asarray(etype)
    cur = (etype != DELETED) & np.asarray(cur_match, dtype=bool)
    old = np.asarray(has_prev, dtype=bool) & np.asarray(prev_match, dtype=bool)
    out = np.full(np.shape(cur), NO_EVENT, dtype=np.int8)
    out[cur & ~old] = ADDED
    out[cur & old] = MODIFIED
    out[~cur & old] = DELETED
    return out


# --------------------------------------------------------------------------------------
# Bookmark timing (cache_watcher.go nextBookmarkTime; 1.15 cacher.go)
# --------------------------------------------------------------------------------------


def next_bookmark_time(watch_start: float, deadline: float, sent: int, variant: str,
                       params: Mapping | None = None) -> float | None:
    """Time of the bookmark after ``sent`` bookmarks of a watch, or ``None``.

    * ``off``: never.
    * ``article`` (v1.15): once, at ``deadline - 2 s``.
    * ``upstream``: ``min(last + defaultBookmarkFrequency, deadline - 2 s)``, i.e.
      ``watch_start + 60 s * k`` while before ``deadline - 2 s``, then ``deadline - 2 s``,
      then no more (upstream's extra bookmark one bucket later carries at most 1 s of
      progress and is not modelled).
    """
    p = WATCHCACHE_PARAMS.resolve(params)
    v = WATCHCACHE_PARAMS["bookmarks"].validate(variant)
    pre = deadline - p["bookmark_before_deadline"]
    if v == "off":
        return None
    if v == "article":
        return pre if sent == 0 else None
    freq = p["default_bookmark_frequency"]
    t = watch_start + freq * (sent + 1)
    if t < pre:
        return t
    prev = watch_start + freq * sent if sent > 0 else -math.inf
    # the deadline bookmark comes once, after the last periodic one
    return pre if prev < pre else None


def last_bookmark_time(watch_start, deadline, now, variant: str, params: Mapping | None = None):
    """Closed form of :func:`next_bookmark_time`: the latest bookmark time <= ``now``
    of each watch ``[watch_start, deadline)`` (vectorised; NaN where none)."""
    p = WATCHCACHE_PARAMS.resolve(params)
    v = WATCHCACHE_PARAMS["bookmarks"].validate(variant)
    s = np.asarray(watch_start, dtype=np.float64)
    d = np.asarray(deadline, dtype=np.float64)
    t = np.asarray(now, dtype=np.float64)
    s, d, t = np.broadcast_arrays(s, d, t)
    out = np.full(s.shape, np.nan)
    if v == "off":
        return out
    pre = d - p["bookmark_before_deadline"]
    at_pre = t >= pre
    out[at_pre] = pre[at_pre]
    if v == "upstream":
        freq = p["default_bookmark_frequency"]
        k = np.floor((t - s) / freq)
        periodic = ~at_pre & (k >= 1)
        out[periodic] = s[periodic] + freq * k[periodic]
    return out


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass
class WatchResult:
    """Outcome of starting a watch at ``resource_version``.

    ``status``: ``"ok"`` (replay ``events`` then stream), ``"too_old"`` (410 Gone: the
    client must re-list) or ``"too_large"`` (the RV is ahead of the cache: upstream
    waits up to ``block_timeout`` for it, then answers 'Too large resource version').
    ``scanned`` = events read from the tape and filtered (``apiserver_init_events_total``),
    ``sent`` = those that matched the watcher's selector.
    """

    status: str
    resource_version: int
    oldest: int
    current_rv: int
    scanned: int = 0
    sent: int = 0
    bytes_sent: int = 0
    message: str = ""
    rv: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    key: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    type: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    ns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    node: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    label: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))

    @property
    def too_old(self) -> bool:
        return self.status == "too_old"

    @property
    def code(self) -> int:
        return {"ok": 200, "too_old": 410, "too_large": 504}[self.status]


@dataclass
class ListResult:
    """A LIST served from the cache: keys (sorted, as upstream sorts by key) and counts.

    ``scanned`` = objects read (all objects for a full scan, the index bucket with an
    index), ``returned`` = objects that passed the selector.
    """

    status: str
    resource_version: int
    keys: np.ndarray
    scanned: int
    returned: int
    bytes_returned: int
    index_used: str

    @property
    def fresh(self) -> bool:
        return self.status == "ok"


# --------------------------------------------------------------------------------------
# The watch cache
# --------------------------------------------------------------------------------------


class _Log:
    """Append-only numpy columns with amortised doubling (the tape's storage)."""

    DTYPES = {"rv": np.int64, "time": np.float64, "key": np.int64, "etype": np.int8,
              "ns": np.int32, "node": np.int32, "label": np.int32,
              "pns": np.int32, "pnode": np.int32, "plabel": np.int32, "has_prev": np.bool_,
              "size": np.int32, "start_after": np.int64, "removed_after": np.bool_}

    def __init__(self, capacity: int = 1024):
        self.cols = {k: np.empty(capacity, dtype=d) for k, d in self.DTYPES.items()}
        self.n = 0  # rows stored
        self.offset = 0  # global index of row 0

    def reserve(self, extra: int):
        need = self.n + extra
        cap = next(iter(self.cols.values())).shape[0]
        if need > cap:
            new_cap = max(need, 2 * cap)
            for k, a in self.cols.items():
                b = np.empty(new_cap, dtype=a.dtype)
                b[: self.n] = a[: self.n]
                self.cols[k] = b

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name][: self.n]

    def drop_before(self, global_index: int):
        k = global_index - self.offset
        if k <= 0:
            return
        for name, a in self.cols.items():
            a[: self.n - k] = a[k: self.n]
        self.n -= k
        self.offset = global_index


class WatchCache:
    """One resource type's watch cache: the event tape, the indexed state, the 410 rule.

    Build it from a LIST (``initial`` objects at ``list_rv``), then feed it events in RV
    order with :meth:`add_events` (bulk, vectorised) or :meth:`add_event` (one). The
    tape's indexes are global and only grow, like upstream's ``startIndex`` and
    ``endIndex``; ``start_index``/``end_index`` delimit the tape, ``end_index`` counts
    every event ever added. The whole history stays in memory (the fleet model
    replays it) until :meth:`trim_history`.
    """

    def __init__(self, resource: str = "pods", initial: ObjectSet | None = None, list_rv: int = 0,
                 list_time: float = 0.0, params: Mapping | None = None):
        self.resource = str(resource)
        self.params = resolve_watchcache_params(params)
        self.lower_bound_capacity = int(self.params["lower_bound_capacity"])
        self.upper_bound_capacity = int(self.params["upper_bound_capacity"])
        self.event_fresh_duration = float(self.params["event_fresh_duration"])
        self.capacity = self.lower_bound_capacity
        self._log = _Log()
        self._start = 0
        self._end = 0
        self.removed_event_since_relist = False
        self.list_resource_version = 0
        self._current_rv = 0
        self._last_time = -math.inf
        # store
        self._nkeys = 0
        self._exists = np.zeros(0, dtype=bool)
        self._attr = {"ns": np.zeros(0, dtype=np.int32), "node": np.zeros(0, dtype=np.int32),
                      "label": np.zeros(0, dtype=np.int32)}
        self._size = np.zeros(0, dtype=np.int32)
        self._orv = np.zeros(0, dtype=np.int64)
        # the indexes (value -> set of keys), built from the state on first use and then
        # maintained write by write; None until a LIST or a lookup needs them. What they
        # cost is counted in ``index_ops`` either way (upstream maintains them eagerly).
        self._idx: dict[str, _Index] = {}
        # counters and histories
        self.events_received = 0
        self.evictions = 0
        self.index_ops = 0
        self.capacity_history: list[tuple[float, int, int]] = []
        self._replaces: list[tuple[int, float, int]] = []  # (end index, time, list rv)
        self._progress_time: list[float] = []
        self._progress_rv: list[int] = []
        self.replace(initial if initial is not None else ObjectSet.empty(), list_rv, list_time)
        self._record_capacity(list_time)

    # -- basic properties ---------------------------------------------------------------
    @property
    def current_rv(self) -> int:
        """The RV up to which the cache is propagated (``watchCache.resourceVersion``)."""
        return self._current_rv

    @property
    def start_index(self) -> int:
        return self._start

    @property
    def end_index(self) -> int:
        return self._end

    @property
    def size(self) -> int:
        """Events on the tape."""
        return self._end - self._start

    @property
    def oldest_rv(self) -> int:
        """``oldest`` of ``getAllEventsSinceLocked``: ``listRV + 1`` if nothing was
        evicted since the last relist, else the RV of the first event on the tape."""
        if self.list_resource_version > 0 and not self.removed_event_since_relist:
            return self.list_resource_version + 1
        if self.size > 0:
            return int(self._log["rv"][self._start - self._log.offset])
        raise KscaleError("watch cache isn't correctly initialized")

    @property
    def object_count(self) -> int:
        return int(self._exists.sum())

    def capacity_frame(self):
        """Capacity history as a DataFrame (time, rv, capacity)."""
        import pandas as pd

        return pd.DataFrame(self.capacity_history, columns=["time", "rv", "capacity"])

    def _record_capacity(self, time: float):
        self.capacity_history.append((float(time), int(self._current_rv), int(self.capacity)))

    # -- store helpers ---------------------------------------------------------------------
    def _ensure_keys(self, n: int):
        if n <= self._nkeys:
            return
        new = max(n, 2 * self._nkeys, 1024)
        ex = np.zeros(new, dtype=bool)
        ex[: self._nkeys] = self._exists[: self._nkeys]
        self._exists = ex
        for k, a in self._attr.items():
            b = np.full(new, UNSET, dtype=np.int32)
            b[: self._nkeys] = a[: self._nkeys]
            self._attr[k] = b
        s = np.zeros(new, dtype=np.int32)
        s[: self._nkeys] = self._size[: self._nkeys]
        self._size = s
        r = np.zeros(new, dtype=np.int64)
        r[: self._nkeys] = self._orv[: self._nkeys]
        self._orv = r
        self._nkeys = new

    @property
    def _indexes(self) -> dict[str, "_Index"]:
        """Every index, built now if it was not yet."""
        for name in INDEX_NAMES:
            self._index(name)
        return self._idx

    def _index(self, name: str) -> "_Index":
        idx = self._idx.get(name)
        if idx is None:
            keys = np.flatnonzero(self._exists)
            vals = self._attr[_ATTR_OF_INDEX[name]][keys]
            order = np.argsort(vals, kind="stable")
            idx = self._idx[name] = _Index(vals[order], keys[order])
        return idx

    def _index_add(self, name: str, value: int, key: int):
        bucket = self._idx[name].get(value)
        if bucket is None:
            self._idx[name][value] = {key}
        else:
            bucket.add(key)

    def _index_remove(self, name: str, value: int, key: int):
        bucket = self._idx[name].get(value)
        if bucket is None:
            raise KscaleError(f"index {name}: no bucket {value} holds key {key}")
        bucket.discard(key)
        if not bucket:
            del self._idx[name][value]

    # -- LIST / relist ----------------------------------------------------------------------
    def replace(self, objects: ObjectSet, list_rv: int, time: float = 0.0):
        """``Replace``: the state becomes ``objects`` at ``list_rv``; the tape is emptied
        (start = end, indexes never go back) and ``oldest`` becomes ``list_rv + 1``."""
        if not isinstance(objects, ObjectSet):
            raise ParameterError("objects", f"must be an ObjectSet; got {type(objects).__name__}")
        list_rv = int(list_rv)
        if list_rv < self._current_rv:
            raise ParameterError("list_rv", f"must be an integer in [{self._current_rv}, inf]; got {list_rv}")
        if len(objects) and objects.rv.max() > list_rv:
            raise ParameterError("objects", f"must have RVs <= list_rv {list_rv}; got max {int(objects.rv.max())}")
        nmax = int(objects.key.max()) + 1 if len(objects) else 0
        self._ensure_keys(nmax)
        self._exists[:] = False
        for k in self._attr:
            self._attr[k][:] = UNSET
        self._exists[objects.key] = True
        self._attr["ns"][objects.key] = objects.ns
        self._attr["node"][objects.key] = objects.node
        self._attr["label"][objects.key] = objects.label
        self._size[objects.key] = objects.size
        self._orv[objects.key] = objects.rv
        self._idx = {}               # each index rebuilt from the new state when first used
        self.index_ops += len(objects) * len(INDEX_NAMES)
        self._start = self._end
        self.removed_event_since_relist = False
        self.list_resource_version = list_rv
        self._current_rv = list_rv
        self._last_time = max(self._last_time, float(time))
        self._replaces.append((self._end, float(time), list_rv))

    def restart(self, time: float = 0.0):
        """A new API server process: a new cache LISTs the current state at the current
        RV; its tape is empty and its capacity back at the lower bound."""
        snap = self.objects()
        self.capacity = self.lower_bound_capacity
        self._record_capacity(time)
        self.replace(snap, self._current_rv, time)

    def objects(self, selector: Selector | None = None) -> ObjectSet:
        """The current state (optionally filtered), as an ObjectSet."""
        keys = np.flatnonzero(self._exists[: self._nkeys])
        if selector is not None and not selector.is_everything:
            m = selector.matches(self._attr["ns"][keys], self._attr["node"][keys], self._attr["label"][keys])
            keys = keys[m]
        return ObjectSet(keys, self._attr["ns"][keys], self._attr["node"][keys], self._attr["label"][keys],
                         self._size[keys], self._orv[keys])

    def get(self, key: int) -> tuple[int, int, int] | None:
        """(namespace, node, label) of one object, or None."""
        if 0 <= key < self._nkeys and self._exists[key]:
            return (int(self._attr["ns"][key]), int(self._attr["node"][key]), int(self._attr["label"][key]))
        return None

    def index_bucket(self, index_name: str, value: int) -> np.ndarray:
        """Keys in one index bucket (sorted)."""
        if index_name not in INDEX_NAMES:
            raise ParameterError("index_name", f"must be one of {', '.join(INDEX_NAMES)}; got {index_name!r}")
        return self._index(index_name).sorted_keys(int(value))

    def list(self, selector: Selector | None = None, index: bool = True, min_rv: int = 0) -> ListResult:
        """LIST from the cache (``WaitUntilFreshAndList``).

        With ``index=True`` and a selector naming an indexed field, only that index's
        bucket is read (upstream takes the first matching index); otherwise every
        object is scanned. Either way the selector filters the candidates. If
        ``min_rv`` is ahead of the cache the status is ``"too_large"`` (upstream waits
        up to ``block_timeout`` for progress first; the caller models that time).
        """
        sel = selector if selector is not None else EVERYTHING
        if min_rv > self._current_rv:
            return ListResult("too_large", self._current_rv, np.zeros(0, dtype=np.int64), 0, 0, 0, "")
        used = ""
        if index:
            cands = sel.index_candidates()
            if cands:
                used, value = cands[0]
                keys = self.index_bucket(used, value)
        if not used:
            keys = np.flatnonzero(self._exists[: self._nkeys]).astype(np.int64)
        scanned = int(keys.size)
        m = sel.matches(self._attr["ns"][keys], self._attr["node"][keys], self._attr["label"][keys])
        out = keys[m]
        return ListResult("ok", self._current_rv, out, scanned, int(out.size),
                          int(self._size[out].sum()), used)

    # -- events ----------------------------------------------------------------------------
    def progress_notify(self, rv: int, time: float | None = None):
        """``UpdateResourceVersion``: etcd says nothing of this type changed up to ``rv``."""
        rv = int(rv)
        if rv < self._current_rv:
            raise ParameterError("rv", f"must be an integer in [{self._current_rv}, inf]; got {rv}")
        t = self._last_time if time is None else float(time)
        if t < self._last_time:
            raise ParameterError("time", f"must be a number in [{self._last_time}, inf]; got {time}")
        self._current_rv = rv
        self._last_time = t
        self._progress_time.append(t)
        self._progress_rv.append(rv)

    def add_event(self, rv: int, time: float, key: int, etype: int, ns: int = UNSET, node: int = UNSET,
                  label: int = UNSET, size: int = 0) -> dict:
        """One event (the cacher's ``processEvent``). Returns the stored event,
        including the previous object's attributes (``has_prev``, ``pns``, ...)."""
        b = EventBatch(rv=[rv], time=[time], key=[key], etype=[etype], ns=[ns], node=[node],
                       label=[label], size=[size])
        self.add_events(b)
        i = self._end - 1 - self._log.offset
        return {k: self._log.cols[k][i].item() for k in
                ("rv", "time", "key", "etype", "ns", "node", "label", "pns", "pnode", "plabel", "has_prev", "size")}

    def add_events(self, events: EventBatch):
        """Events in RV order, vectorised: the same result as adding them one by one."""
        if not isinstance(events, EventBatch):
            raise ParameterError("events", f"must be an EventBatch; got {type(events).__name__}")
        n = len(events)
        if n == 0:
            return
        rv, t, key, et = events.rv, events.time, events.key, events.etype
        if rv[0] <= self._current_rv or (n > 1 and np.any(np.diff(rv) <= 0)):
            raise ParameterError("events", f"RVs must increase, starting above the cache's RV {self._current_rv}")
        if not np.all(np.isfinite(t)) or t[0] < self._last_time or (n > 1 and np.any(np.diff(t) < 0)):
            raise ParameterError("events", f"times must be finite and non-decreasing from {self._last_time}")
        if key.min() < 0:
            raise ParameterError("events", "keys must be non-negative integers")
        if np.any((et < ADDED) | (et > DELETED)):
            raise ParameterError("events", "event types must be ADDED (0), MODIFIED (1) or DELETED (2)")
        self._ensure_keys(int(key.max()) + 1)

        # previous object of each event: the previous event of the same key in this
        # batch, else the store (a DELETED leaves no object behind)
        order = np.argsort(key, kind="stable")
        ks = key[order]
        same = np.zeros(n, dtype=bool)
        same[1:] = ks[1:] == ks[:-1]
        prev_pos = np.empty(n, dtype=np.int64)  # position (in batch) of the previous event, -1 if none
        prev_pos_sorted = np.where(same, np.r_[-1, order[:-1]], -1)
        prev_pos[order] = prev_pos_sorted
        has_pp = prev_pos >= 0
        pp = np.where(has_pp, prev_pos, 0)
        pre_exists = np.where(has_pp, et[pp] != DELETED, self._exists[key])
        cur = {"ns": events.ns.copy(), "node": events.node.copy(), "label": events.label.copy()}
        pre = {a: np.where(has_pp, cur[a][pp], self._attr[a][key]) for a in ("ns", "node", "label")}
        size = events.size.copy()
        pre_size = np.where(has_pp, size[pp], self._size[key])
        # a DELETED event carries the object's last state: its previous attributes.
        # (The pre of an event that follows a DELETED reads nothing: pre_exists is False.)
        dele = et == DELETED
        if dele.any():
            for a in ("ns", "node", "label"):
                cur[a][dele] = np.where(pre_exists[dele], pre[a][dele], UNSET)
            size[dele] = np.where(pre_exists[dele], pre_size[dele], 0)
        post_exists = ~dele

        # index maintenance work (threadSafeMap.updateIndices: skip unchanged values)
        ops = 0
        for name in INDEX_NAMES:
            a = _ATTR_OF_INDEX[name]
            changed = pre_exists & post_exists & (pre[a] != cur[a])
            ops += int(np.count_nonzero(pre_exists & (~post_exists | changed)))
            ops += int(np.count_nonzero(post_exists & (~pre_exists | changed)))
        self.index_ops += ops

        # apply the net effect to the store and its indexes
        last_of_key = np.ones(n, dtype=bool)
        last_of_key[:-1] = ks[:-1] != ks[1:]
        last_pos = order[last_of_key]
        touched = key[last_pos]
        old_exists = self._exists[touched].copy()
        old_attr = {a: self._attr[a][touched].copy() for a in ("ns", "node", "label")}
        new_exists = post_exists[last_pos]
        new_attr = {a: cur[a][last_pos] for a in ("ns", "node", "label")}
        for name in [n for n in INDEX_NAMES if n in self._idx]:
            a = _ATTR_OF_INDEX[name]
            diff = old_exists & new_exists & (old_attr[a] != new_attr[a])
            rem = np.flatnonzero(old_exists & (~new_exists | diff))
            add = np.flatnonzero(new_exists & (~old_exists | diff))
            for i in rem.tolist():
                self._index_remove(name, int(old_attr[a][i]), int(touched[i]))
            for i in add.tolist():
                self._index_add(name, int(new_attr[a][i]), int(touched[i]))
        self._exists[touched] = new_exists
        for a in ("ns", "node", "label"):
            self._attr[a][touched] = np.where(new_exists, new_attr[a], UNSET)
        self._size[touched] = np.where(new_exists, size[last_pos], 0)
        self._orv[touched] = np.where(new_exists, rv[last_pos], 0)

        # append to the tape, then run upstream's resize/evict rule event by event (vectorised)
        lg = self._log
        lg.reserve(n)
        s = slice(lg.n, lg.n + n)
        lg.cols["rv"][s] = rv
        lg.cols["time"][s] = t
        lg.cols["key"][s] = key
        lg.cols["etype"][s] = et
        for a, pa in (("ns", "pns"), ("node", "pnode"), ("label", "plabel")):
            lg.cols[a][s] = cur[a]
            lg.cols[pa][s] = np.where(pre_exists, pre[a], UNSET)
        lg.cols["has_prev"][s] = pre_exists
        lg.cols["size"][s] = size
        lg.n += n
        self._advance_ring(n)
        self._current_rv = int(rv[-1])
        self._last_time = float(t[-1])
        self.events_received += n

    def _advance_ring(self, n: int):
        """Upstream's ``updateCache`` for the last ``n`` appended events.

        Per event: ``resizeCacheLocked`` (full and oldest fresher than
        eventFreshDuration -> double; full and the event ``capacity/4`` back older than
        it -> halve, dropping the oldest), then, if still full, evict the oldest.
        Vectorised between resizes: while the tape is full and no resize triggers,
        every event evicts exactly one.
        """
        lg = self._log
        off = lg.offset
        T = lg.cols["time"]
        start_after = lg.cols["start_after"]
        removed_after = lg.cols["removed_after"]
        F = self.event_fresh_duration
        lo_cap, hi_cap = self.lower_bound_capacity, self.upper_bound_capacity
        start, end, C = self._start, self._end, self.capacity
        removed = self.removed_event_since_relist
        i = 0
        block = 8192
        while i < n:
            size = end - start
            if size < C:
                k = min(C - size, n - i)
                a = end - off
                start_after[a: a + k] = start
                removed_after[a: a + k] = removed
                end += k
                i += k
                continue
            m = min(n - i, max(block, C))
            js = np.arange(end, end + m) - off  # local rows of the incoming events
            tj = T[js]
            trig = np.zeros(m, dtype=bool)
            grow = np.zeros(m, dtype=bool)
            if C < hi_cap:
                grow = (tj - T[js - C]) < F
                trig |= grow
            if C > lo_cap:
                # upstream reads cache[(end - cap/4) % cap]; with cap < 4 that slot
                # (end % cap) holds the oldest event of the full tape
                back = C // 4 or C
                trig |= (tj - T[js - back]) > F
            first = int(np.argmax(trig)) if trig.any() else m
            if first:
                a = end - off
                start_after[a: a + first] = start + 1 + np.arange(first)
                removed = True
                removed_after[a: a + first] = True
                self.evictions += first
                start += first
                end += first
                i += first
            if first == m:
                continue
            row = end - off
            time_now = float(T[row])
            if grow[first]:
                C = min(2 * C, hi_cap)
                self.capacity = C
                self.capacity_history.append((time_now, int(lg.cols["rv"][row]), C))
                start_after[row] = start
                removed_after[row] = removed
                end += 1
            else:
                newC = max(C // 2, lo_cap)
                dropped = (end - newC) - start
                start = end - newC
                C = newC
                self.capacity = C
                self.capacity_history.append((time_now, int(lg.cols["rv"][row]), C))
                start += 1  # still full: evict the oldest
                removed = True
                self.evictions += dropped + 1
                start_after[row] = start
                removed_after[row] = True
                end += 1
            i += 1
        self._start, self._end, self.capacity = start, end, C
        self.removed_event_since_relist = removed

    # -- WATCH ----------------------------------------------------------------------------
    def watch_from(self, resource_version: int, selector: Selector | None = None) -> WatchResult:
        """Start a watch at ``resource_version`` (``getAllEventsSinceLocked``).

        ``RV < oldest - 1`` -> 410 "too old resource version: RV (oldest-1)". Otherwise
        binary-search the first event with RV > the requested one and replay the tape
        from there, filtered by the selector. ``resource_version == 0`` means "from
        now, with the current state first": the state comes back as ADDED events.
        """
        sel = selector if selector is not None else EVERYTHING
        rv = int(resource_version)
        cur = self._current_rv
        if rv == 0:
            objs = self.objects(sel)
            n = len(objs)
            return WatchResult("ok", 0, self.oldest_rv, cur, scanned=n, sent=n,
                               bytes_sent=int(objs.size.sum()), rv=np.full(n, cur, dtype=np.int64),
                               key=objs.key, type=np.full(n, ADDED, dtype=np.int8), ns=objs.ns,
                               node=objs.node, label=objs.label)
        oldest = self.oldest_rv
        if rv > cur:
            return WatchResult("too_large", rv, oldest, cur,
                               message=f"Too large resource version: {rv}, current: {cur}")
        if rv < oldest - 1:
            return WatchResult("too_old", rv, oldest, cur,
                               message=f"too old resource version: {rv} ({oldest - 1})")
        lg = self._log
        a, b = self._start - lg.offset, self._end - lg.offset
        ring_rv = lg.cols["rv"][a:b]
        first = a + int(np.searchsorted(ring_rv, rv, side="right"))
        sl = slice(first, b)
        et = lg.cols["etype"][sl]
        cm = sel.matches(lg.cols["ns"][sl], lg.cols["node"][sl], lg.cols["label"][sl])
        pm = sel.matches(lg.cols["pns"][sl], lg.cols["pnode"][sl], lg.cols["plabel"][sl])
        wt = convert_to_watch_event(et, lg.cols["has_prev"][sl], cm, pm)
        keep = wt != NO_EVENT
        # a DELETED for a watcher carries the previous object's attributes
        use_prev = wt == DELETED
        ns = np.where(use_prev, lg.cols["pns"][sl], lg.cols["ns"][sl])[keep]
        node = np.where(use_prev, lg.cols["pnode"][sl], lg.cols["node"][sl])[keep]
        label = np.where(use_prev, lg.cols["plabel"][sl], lg.cols["label"][sl])[keep]
        return WatchResult("ok", rv, oldest, cur, scanned=b - first, sent=int(keep.sum()),
                           bytes_sent=int(lg.cols["size"][sl][keep].sum()),
                           rv=lg.cols["rv"][sl][keep].copy(), key=lg.cols["key"][sl][keep].copy(),
                           type=wt[keep], ns=ns, node=node, label=label)

    def is_too_old(self, resource_version: int) -> bool:
        """The 410 rule at the current moment."""
        return int(resource_version) < self.oldest_rv - 1

    def ring_events(self) -> EventBatch:
        """The events on the tape now (copies)."""
        lg = self._log
        sl = slice(self._start - lg.offset, self._end - lg.offset)
        return EventBatch(rv=lg.cols["rv"][sl].copy(), time=lg.cols["time"][sl].copy(),
                          key=lg.cols["key"][sl].copy(), etype=lg.cols["etype"][sl].copy(),
                          ns=lg.cols["ns"][sl].copy(), node=lg.cols["node"][sl].copy(),
                          label=lg.cols["label"][sl].copy(), size=lg.cols["size"][sl].copy())

    # -- history (for the vectorised fleet) -------------------------------------------------
    @property
    def history_start(self) -> int:
        """Global index of the oldest event still kept in memory."""
        return self._log.offset

    def history(self, name: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """A column of the event history between global indexes ``[start, stop)``:
        rv, time, key, etype, ns, node, label, pns, pnode, plabel, has_prev, size,
        start_after (tape start after the event), removed_after."""
        lg = self._log
        if name not in lg.cols:
            raise ParameterError("name", f"must be one of {', '.join(lg.cols)}; got {name!r}")
        a = lg.offset if start is None else int(start)
        b = self._end if stop is None else int(stop)
        if a < lg.offset or b > self._end or a > b:
            raise ParameterError("start", f"must be within [{lg.offset}, {self._end}]; got [{a}, {b})")
        return lg.cols[name][a - lg.offset: b - lg.offset]

    def trim_history(self):
        """Forget events that left the tape (keeps memory bounded in long runs)."""
        self._log.drop_before(self._start)

    def events_until(self, times) -> np.ndarray:
        """Global count of events recorded at or before each time (vectorised)."""
        lg = self._log
        return lg.offset + np.searchsorted(lg["time"], np.asarray(times, dtype=np.float64), side="right")

    def rv_at_times(self, times) -> np.ndarray:
        """The cache's RV at each time: last event, progress notification or relist at
        or before it (vectorised; what a bookmark sent at that time carries)."""
        t = np.asarray(times, dtype=np.float64)
        lg = self._log
        e = np.searchsorted(lg["time"], t, side="right")
        out = np.zeros(t.shape, dtype=np.int64)
        has = e > 0
        out[has] = lg["rv"][e[has] - 1]
        if self._replaces:
            rt = np.array([r[1] for r in self._replaces])
            rr = np.array([r[2] for r in self._replaces], dtype=np.int64)
            j = np.searchsorted(rt, t, side="right") - 1
            # before the first LIST a cache has nothing: use the first list RV
            out = np.maximum(out, np.where(j >= 0, rr[np.maximum(j, 0)], rr[0]))
        if self._progress_time:
            pt = np.asarray(self._progress_time)
            pr = np.asarray(self._progress_rv, dtype=np.int64)
            j = np.searchsorted(pt, t, side="right") - 1
            out = np.maximum(out, np.where(j >= 0, pr[np.maximum(j, 0)], 0))
        return out

    def oldest_rv_at(self, e) -> np.ndarray:
        """``oldest`` after ``e`` events (global count), vectorised, for queries made
        after the most recent relist at or before ``e``."""
        e = np.asarray(e, dtype=np.int64)
        lg = self._log
        rep_end = np.array([r[0] for r in self._replaces], dtype=np.int64)
        rep_rv = np.array([r[2] for r in self._replaces], dtype=np.int64)
        j = np.searchsorted(rep_end, e, side="right") - 1
        list_rv = rep_rv[np.maximum(j, 0)]
        r_end = rep_end[np.maximum(j, 0)]
        out = list_rv + 1
        after = e > r_end
        if after.any():
            rows = e[after] - 1 - lg.offset
            if rows.size and rows.min() < 0:
                raise ParameterError("e", "asks about events already trimmed from the history")
            removed = lg.cols["removed_after"][rows]
            first_rv = lg.cols["rv"][lg.cols["start_after"][rows] - lg.offset]
            out_after = np.where(removed | (list_rv[after] <= 0), first_rv, list_rv[after] + 1)
            out[after] = out_after
        return out

    def count_rv_le(self, rv, e) -> np.ndarray:
        """Global index of the first event with RV > ``rv`` among the first ``e``
        events (vectorised); ``e - count_rv_le`` = events a watch from ``rv`` scans."""
        lg = self._log
        rv = np.asarray(rv, dtype=np.int64)
        e = np.asarray(e, dtype=np.int64)
        pos = lg.offset + np.searchsorted(lg["rv"], rv, side="right")
        return np.minimum(pos, e)

"""Lab: List-Watch, the watch cache and bookmarks around an API server restart.

The article, section 4: every client keeps its copy of the cluster with LIST + WATCH
and remembers the resourceVersion (RV) of the last event it saw. The API server keeps,
per resource type, a bounded tape of recent events (the watch cache). A client that
reconnects sends its RV; the server replays the tape after it, or, if the tape no
longer reaches back that far, answers 410 Gone and the client relists. RVs are global
(etcd's revision), so a kubelet that watches only its node's pods sees few of them and
its RV ages while the tape rolls on. A **bookmark** ("nothing for you up to RV 12")
keeps it fresh. The article: after an API server restart the events to re-sync fell
to **3 %** of before, "tens of times faster" (Alibaba built it; Kubernetes 1.15,
KEP-956, whose proof of concept cut the events processed when watches restart by ~40x).

The scenario, in simulated time (no result is typed in):

1. every client LISTs at t = 0 (a cluster that restarted ``restart_at`` seconds ago);
   then pods churn (``pod_churn`` created and as many deleted per second, each written
   ~5 times) while leases, nodes and events take the revisions in between;
2. one kubelet per node watches its node's pods (or, with ``selective_field``, as many
   per-namespace or per-app watchers), ``controllers`` clients watch every pod; each
   watch times out after 5-10 minutes and restarts from the client's RV: the routine
   watch restarts KEP-956 measured (its "init events", ``apiserver_init_events_total``);
3. at ``restart_at`` an API server restarts and every watcher reconnects with its last
   RV: to an HA peer whose cache holds the history (``reconnect=warm``) or to a freshly
   started cache that begins at its own LIST (``cold``, KEP-1904's case).

The switch ``bookmarks``:

* ``off``: no bookmarks; a fixed tape per resource (1.15's ``--watch-cache-sizes``,
  by default the heuristic ``max(50 x nodes, 1000)`` pod events); relists served from
  the cache by a full scan (no index);
* ``article``: Kubernetes 1.15 (KEP-956 alpha; the article: "built by Alibaba"): the
  same cache, and one bookmark 2 s before each watch's deadline;
* ``upstream``: today's cacher: adaptive tape 100..102,400 events keeping ~75 s,
  a bookmark every minute and 2 s before the deadline, relists served from the cache
  with the ``spec.nodeName`` index.

Everything counted (watch requests, events re-read, 410s, objects relisted, objects
scanned) comes from :class:`kscale_lab.apiserver.watchcache.WatchCache` and the
vectorised reflectors of :class:`kscale_lab.clients.reflector.ReflectorFleet` (held
equal to exact per-object informers by property tests). Time and CPU come from named
cost parameters (:data:`PARAMS`, ``kscale-lab params bookmarks``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..apiserver.watchcache import (
    CHURN_PARAMS,
    DELETED,
    MAX_INT32,
    WATCHCACHE_PARAMS,
    WatchCache,
    cache_footprint,
    capacity_upper_bound,
    generate_cluster_writes,
    write_counts,
    writes_footprint,
)
from ..clients.reflector import (
    FIELD_ALL,
    FIELD_LABEL,
    FIELD_NAMESPACE,
    FIELD_NODE,
    REFLECTOR_PARAMS,
    ClientSelectors,
    ReflectorFleet,
)
from ..cluster import RunResult
from ..costs import COST_PARAMS
from ..errors import ParameterError
from ..memory import MEMO_OTHERS_BYTES, Footprint, Memo
from ..params import Param, ParamSet
from ..scenario import SCENARIO_PARAMS
from .base import Lab

US = 1e-6

#: the settings' watch cache, bookmark and list policies
POLICIES = {
    "off": {"bookmarks": "off", "capacity": "fixed"},
    "article": {"bookmarks": "article", "capacity": "fixed"},
    "upstream": {"bookmarks": "upstream", "capacity": "adaptive"},
}

SELECTIVE_FIELDS = {"spec.nodeName": FIELD_NODE, "metadata.namespace": FIELD_NAMESPACE, "label": FIELD_LABEL}

BOOKMARK_LAB_PARAMS = ParamSet([
    Param("restart_at", 600.0, "s",
          "assumption: the API server restarts 10 minutes after every client's last LIST (e.g. a previous "
          "restart); a longer uptime lets a rarely-served watcher's RV grow older",
          "time of the API server restart, counted from the clients' LIST at t = 0", lo=10.0, hi=3600.0,
          plausible=(300.0, 1800.0), plausible_source="an API server restarts from 5 to 30 minutes after the clients' last LIST (upgrades and crashes come at any time)"),
    Param("reconnect", "warm", "1",
          "KEP-1904 (efficient watch resumption): a freshly started watch cache begins at its own LIST, so "
          "clients reconnecting to it 'almost always have a resource version that is out of the history "
          "window'; an HA peer's cache holds the history",
          "after the restart the watchers reconnect to an HA peer's cache (warm) or to a freshly started "
          "cache (cold)", choices=("warm", "cold"), kind=str),
    Param("watch_cache_size", 0, "events",
          "kube-apiserver 1.15 --watch-cache-sizes; default from pkg/kubeapiserver/options + "
          "pkg/registry/cachesize heuristics: pods = max(50 x clusterSize, 1000), clusterSize = "
          "--target-ram-mb / 60, which kube-up sets to 60 x nodes (cluster/gce configure-helper.sh)",
          "fixed tape length of the pods' watch cache in the off and article settings; 0 = the 1.15 "
          "heuristic max(50 x nodes, 1000) (500,000 at 10k nodes); 1000 = a cluster without --target-ram-mb",
          lo=0, hi=MAX_INT32, kind=int, flag="--watch-cache-sizes"),
    Param("selective_field", "spec.nodeName", "1",
          "kubelet: fieldSelector spec.nodeName=<node> (pkg/kubelet/config/apiserver.go); the namespace and "
          "label variants are assumptions (per-tenant operators, per-app sidecars)",
          "what the selective watchers (one per node) select on: their node (kubelets), one namespace out of "
          "`namespaces`, or one value of an app label out of `label_values`",
          choices=tuple(SELECTIVE_FIELDS), kind=str),
    Param("list_uses_index", False, "1",
          "1.15 cacher lists filter every object of the type; the watch cache's indexes for LIST (pods "
          "spec.nodeName) came with PR #85445/#87939 (SelectorIndex, alpha 1.18). The upstream setting uses it",
          "a relist served from the watch cache reads only the selector's index bucket (else it scans every "
          "pod)", kind=bool),
    Param("selector_filter_cpu", 0.3 * US, "s",
          "assumption: the cacher checks an event or a stored object against a field/label selector with "
          "precomputed fields and labels, a few hundred ns in Go",
          "API server CPU to check one event (init event) or one object (LIST scan) against a selector",
          lo=0.0, hi=1e-3),
    Param("relist_etcd_share", 0.0, "1",
          "1.15 reflectors relist with resourceVersion=0 (served by the watch cache); 1.17.0 relisted with "
          "the last RV and paging, which went to etcd (kubernetes#86483), fixed by PR #86430 (unpaged relist "
          "from the cache). 1 = every relist misses the cache",
          "share of relists served by etcd instead of the watch cache", lo=0.0, hi=1.0),
    Param("etcd_read_ns_per_byte", 10.0, "ns/B",
          "assumption: etcd serves a range read (bbolt cursor + MVCC + gRPC) at ~100 MB/s per core",
          "etcd CPU per byte of a LIST it serves (a relist that misses the cache, a cold cache's own LIST)",
          lo=0.0, hi=10_000.0),
])

_COSTS_USED = ("apiservers", "apiserver_cores", "request_overhead", "watch_send_ns_per_byte",
               "protobuf_decode_ns_per_byte")
_SCENARIO_USED = ("nodes", "pods", "seed", "pod_churn", "pod_bytes")
_CHURN_SKIPPED = ("nodes", "pods", "pod_creates_per_s", "pod_deletes_per_s", "pod_object_size")
_WATCHCACHE_USED = ("event_fresh_duration", "lower_bound_capacity", "upper_bound_capacity",
                    "default_bookmark_frequency", "bookmark_before_deadline")

#: every parameter of the lab: its own, then the scenario's, the watch cache's, the
#: reflectors', the event source's and the shared cost model's
PARAMS = (BOOKMARK_LAB_PARAMS
          + ParamSet([SCENARIO_PARAMS[n] for n in _SCENARIO_USED])
          + ParamSet([WATCHCACHE_PARAMS[n] for n in _WATCHCACHE_USED])
          + ParamSet([REFLECTOR_PARAMS[n] for n in ("min_watch_timeout", "controllers")])
          + ParamSet([p for p in CHURN_PARAMS if p.name not in _CHURN_SKIPPED])
          + ParamSet([COST_PARAMS[n] for n in _COSTS_USED]))

#: the article's cluster churns 20 pods/s at 10k nodes; a smaller cluster churns in proportion
CHURN_PER_NODE = SCENARIO_PARAMS["pod_churn"].default / SCENARIO_PARAMS["nodes"].default

#: series resolution (s)
BIN = 10.0
TRACE_STEP = 2.0


def heuristic_watch_cache_size(nodes: int) -> int:
    """1.15's pods watch cache size with kube-up's ``--target-ram-mb = 60 x nodes``:
    ``max(50 x clusterSize, 1000)`` with ``clusterSize = target_ram_mb / 60``."""
    return max(50 * int(nodes), 1000)


# --------------------------------------------------------------------------------------
# Memo: the same writes serve several settings and reruns
# --------------------------------------------------------------------------------------

@dataclass
class _Writes:
    initial: Any
    list_rv: int
    pods: Any
    per_type: dict
    revisions: int
    last_rv: int           # etcd's global revision at the end (every type)
    # shared by every run on these writes (the results do not change): the pods' cache
    # filled with them, per watch-cache parameters (settings with the same tape share it),
    # and the reflector fleets' per-field index of the same history
    caches: Any = None
    pairs: dict = None

    def filled_cache(self, wc: Mapping) -> "WatchCache":
        def make():
            cache = WatchCache("pods", self.initial, self.list_rv, params=wc)
            cache.add_events(self.pods)
            return cache
        if self.caches is None:
            self.caches = Memo(2)
        return self.caches.get_or(_frozen(wc), make)


_WRITES = Memo(2)


def _frozen(d: Mapping) -> tuple:
    return tuple(sorted((k, v) for k, v in d.items()))


def _writes(seed: int, duration: float, churn: dict) -> _Writes:
    def make():
        w = generate_cluster_writes(seed, duration, churn)
        last = int(w.list_rv) + w.revisions   # the merged write log is not needed here
        return _Writes(w.initial_pods, w.list_rv, w.pods, w.writes_per_type(), last - int(w.list_rv), last,
                       pairs={})
    held = writes_footprint(duration, churn).held_bytes
    return _WRITES.get_or((seed, duration, _frozen(churn)), make, held)




# --------------------------------------------------------------------------------------
# The lab
# --------------------------------------------------------------------------------------


@dataclass
class Work:
    """What a batch of (re)started watches cost: counts, API server CPU, etcd."""

    watches: int = 0
    resumed: int = 0
    relists: int = 0
    init_events: int = 0
    events_sent: int = 0
    objects_relisted: int = 0
    objects_scanned: int = 0
    etcd_objects_read: float = 0.0
    etcd_bytes_read: float = 0.0
    apiserver_cpu_seconds: float = 0.0
    etcd_cpu_seconds: float = 0.0

    @property
    def resync_items(self) -> int:
        """Events re-read plus objects relisted: everything a client re-syncs."""
        return self.init_events + self.objects_relisted

    def as_dict(self, prefix: str) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["resync_items"] = self.resync_items
        d["resumed_share"] = self.resumed / self.watches if self.watches else float("nan")
        return {f"{prefix}_{k}": v for k, v in d.items()}


class BookmarksLab(Lab):
    name = "bookmarks"
    title = "List-Watch: the watch cache and bookmarks around an API server restart"
    switch = "bookmarks"
    notebook = "labs/03_bookmarks.ipynb"
    article_section = "4"
    params = PARAMS
    setting_defaults = {"upstream": {"list_uses_index": True}}

    def resolve(self, setting: str, overrides: Mapping[str, Any] | None = None) -> dict:
        p = super().resolve(setting, overrides)
        given = {self.params[k].name for k in (overrides or {})}
        if "nodes" in given and "pod_churn" not in given:
            p["pod_churn"] = CHURN_PER_NODE * p["nodes"]
        p.pop("objects", None)
        return p

    # -- the model ---------------------------------------------------------------------
    def watch_cache_params(self, setting: str, p: Mapping[str, Any]) -> dict:
        """The pods' watch cache of a setting: 1.15's fixed tape or today's adaptive one."""
        wc = {k: p[k] for k in ("event_fresh_duration", "default_bookmark_frequency", "bookmark_before_deadline")}
        if POLICIES[setting]["capacity"] == "fixed":
            size = p["watch_cache_size"] or heuristic_watch_cache_size(p["nodes"])
            wc.update(lower_bound_capacity=size, upper_bound_capacity=size)
        else:
            upper = p["upper_bound_capacity"] or capacity_upper_bound(p["event_fresh_duration"])
            if upper < p["lower_bound_capacity"]:
                raise ParameterError("upper_bound_capacity",
                                     f"must be an integer in [{p['lower_bound_capacity']}, {MAX_INT32}] "
                                     f"(>= lower_bound_capacity); got {upper}")
            wc.update(lower_bound_capacity=p["lower_bound_capacity"], upper_bound_capacity=upper)
        return wc

    def memory_footprint(self, setting: str, p: Mapping[str, Any]) -> Footprint:
        """The writes until the restart (memoised), the pods' watch cache (store, indexes,
        the whole tape), the reflector fleet (per client, per watch restart, the per-field
        event pairs it searches) and the result's arrays."""
        T = float(p["restart_at"])
        churn = self.churn(p)
        c = write_counts(T, churn)
        n, ctl = int(p["nodes"]), int(p["controllers"])
        clients = n + ctl
        fp = Footprint(f"bookmarks, {n:,} nodes, {p['pods']:,} pods, restart at {T:g} s")
        fp.extend(writes_footprint(T, churn))
        fp.add_bytes("earlier runs' writes kept for reuse", MEMO_OTHERS_BYTES)
        objects = p["pods"] + c["creates"]
        values = {"spec.nodeName": n, "metadata.namespace": p["namespaces"], "label": p["label_values"]}
        fp.extend(cache_footprint("pods", objects, objects, c["pod_events"], {
            "spec.nodeName": (objects, values["spec.nodeName"], c["creates"]),
            "metadata.namespace": (objects, values["metadata.namespace"], 0),
            "label": (objects, values["label"], 0)}))
        watches = clients * (math.ceil(T / p["min_watch_timeout"]) + 2)
        # per client: selector (9 B), watch start, deadline, watch count, RV (8 B each), and its
        # watch timeouts (drawn 4 at a time, then 2 more columns as needed: concatenated)
        fp.add("reflector fleet", clients, 9 + 4 * 8, since="fleet")
        fp.add("watch timeouts", clients * (math.ceil(T / p["min_watch_timeout"]) + 6), 2 * 8, since="fleet")
        fp.add("watch restarts recorded", watches, 41, since="fleet")
        # the selective field's (value, event) pairs: values, event indexes, sorted keys, sums
        # (<= 2 per event, 8 B each), and the controllers' running object count
        fp.add("reflector event pairs", c["pod_events"], 4 * 2 * 8 + 8, since="fleet")
        fp.add("reflector event pairs build", c["pod_events"], 80, phase="fleet")
        fp.add("one rewatch's temporaries", clients, 200, phase="fleet")
        # the result: object counts per event, RV ages, steady batches concatenated, series
        fp.add("result arrays", c["pod_events"], 8 + 4 * 8, phase="result")
        fp.add("result per client", clients, 8 * 8, phase="result")
        fp.add("result watch restarts", watches, 41 + 40, phase="result")
        return fp

    def churn(self, p: Mapping[str, Any]) -> dict:
        c = {k: p[k] for k in CHURN_PARAMS.defaults() if k in p and k not in _CHURN_SKIPPED}
        c.update(nodes=p["nodes"], pods=p["pods"], pod_creates_per_s=p["pod_churn"],
                 pod_deletes_per_s=p["pod_churn"], pod_object_size=int(round(p["pod_bytes"])))
        return c

    def clients(self, p: Mapping[str, Any]) -> ClientSelectors:
        """One selective watcher per node, then the controllers (watching every pod)."""
        n = p["nodes"]
        field = p["selective_field"]
        values = {"spec.nodeName": n, "metadata.namespace": p["namespaces"], "label": p["label_values"]}[field]
        sel = ClientSelectors(np.full(n, SELECTIVE_FIELDS[field]), np.arange(n) % values)
        return ClientSelectors.concat([sel, ClientSelectors.everything(p["controllers"])])

    def run(self, setting: str, overrides: Mapping[str, Any] | None = None) -> RunResult:
        p = self.resolve(setting, overrides)
        if p["reconnect"] == "warm" and p["apiservers"] < 2:
            raise ParameterError("reconnect", "must be cold with a single API server (warm needs an HA peer "
                                              "whose cache holds the history); got 'warm' with apiservers=1")
        T = float(p["restart_at"])
        churn = self.churn(p)
        wc = self.watch_cache_params(setting, p)
        try:
            w = _writes(p["seed"], T, churn)
        except ParameterError as err:
            if err.name != "pod_deletes_per_s":
                raise
            raise ParameterError("pod_churn", f"must delete at most the {p['pods']:,} pods of t=0 before the "
                                              f"restart at {T:g} s; got {p['pod_churn']:g} pods/s") from None
        # the clients LIST a freshly filled cache at t = 0, then the writes arrive (the cache
        # with every write is built once per tape and shared: the fleets only read it)
        cache = w.filled_cache(wc)
        clients = self.clients(p)
        n_sel = p["nodes"]
        trace = sorted({0, n_sel // 3, (2 * n_sel) // 3}) + ([n_sel] if p["controllers"] else [])
        fleet = ReflectorFleet(cache, clients, bookmarks=POLICIES[setting]["bookmarks"], seed=p["seed"],
                               params={**wc, "min_watch_timeout": p["min_watch_timeout"]}, record=True,
                               trace=trace, listed=(w.initial, w.list_rv, 0), pairs=w.pairs)
        fleet.advance(T)
        # a freshly started cache LISTs at etcd's global revision (leases, nodes, events included)
        out = fleet.restart(T, p["reconnect"], cold_list_rv=max(w.last_rv, cache.current_rv))
        return _Result(self, setting, p, w, cache, clients, fleet, out, trace).build()

    # -- claims --------------------------------------------------------------------------
    def claims(self, results: Mapping[str, RunResult] | None = None, overrides: Mapping[str, Any] | None = None,
               only=None) -> dict:
        ov = dict(overrides or {})
        results = {} if ov else dict(results or {})
        for s in self.settings:
            if s not in results:
                results[s] = self.run(s, ov)
        sm = {s: results[s].summary for s in self.settings}

        def ratio(a, b):
            return a / b if b else float("nan")

        return {
            "resync_watch_restarts_article": ratio(sm["article"]["timeouts_init_events"],
                                                   sm["off"]["timeouts_init_events"]),
            "resync_restart_article": ratio(sm["article"]["restart_init_events"], sm["off"]["restart_init_events"]),
            "resync_restart_upstream": ratio(sm["upstream"]["restart_init_events"],
                                             sm["off"]["restart_init_events"]),
            "relisted_restart_off": 1.0 - sm["off"]["restart_resumed_share"],
            "resumed_restart_upstream": sm["upstream"]["restart_resumed_share"],
        }

    # -- sweeps for the notebook ---------------------------------------------------------------
    def sweep(self, param: str, values, settings=None, overrides: Mapping[str, Any] | None = None):
        """Run every setting for each value of ``param``; one row per (setting, value)
        with the restart's and the watch timeouts' totals."""
        import pandas as pd

        self.params[param]  # unknown names are errors
        rows = []
        for v in values:
            for s in settings or self.settings:
                sm = self.run(s, dict(overrides or {}, **{param: v})).summary
                rows.append({"setting": s, param: v, **{k: sm[k] for k in SWEEP_COLUMNS}})
        return pd.DataFrame(rows)


SWEEP_COLUMNS = ("restart_init_events", "restart_relists", "restart_objects_relisted", "restart_resync_items",
                 "restart_apiserver_cpu_seconds", "restart_resync_seconds", "restart_resumed_share",
                 "timeouts_init_events", "timeouts_relists", "timeouts_objects_relisted",
                 "selective_rv_age_p50_s", "watch_cache_span_s", "watch_cache_capacity")


class _Result:
    """Turns a fleet's counts into costs, a series, events and a summary."""

    def __init__(self, lab, setting, p, writes, cache, clients, fleet, out, trace):
        self.lab, self.setting, self.p, self.w, self.cache = lab, setting, p, writes, cache
        self.clients, self.fleet, self.out, self.trace = clients, fleet, out, trace
        self.T = float(p["restart_at"])
        h = cache.history_start
        self.h_rv = cache.history("rv", h, cache.end_index)
        self.h_time = cache.history("time", h, cache.end_index)
        et = cache.history("etype", h, cache.end_index)
        hp = cache.history("has_prev", h, cache.end_index)
        self.obj_csum = len(writes.initial) + np.r_[0, np.cumsum((et != DELETED).astype(np.int64)
                                                                 - hp.astype(np.int64))]
        self.send_cpu = p["watch_send_ns_per_byte"] * 1e-9 * p["pod_bytes"]
        self.filter_cpu = p["selector_filter_cpu"]

    # -- costs -----------------------------------------------------------------------------
    def objects_at(self, times) -> np.ndarray:
        e = self.cache.events_until(np.asarray(times, dtype=np.float64)) - self.cache.history_start
        return self.obj_csum[e]

    def work(self, too_old, scanned, sent, objects, times, cold: bool = False) -> Work:
        p = self.p
        n_list = int(np.count_nonzero(too_old))
        all_objs = self.objects_at(times[too_old]) if n_list else np.zeros(0)
        obj_scanned = int(objects.sum()) if p["list_uses_index"] else int(all_objs.sum())
        share = p["relist_etcd_share"]
        etcd_objs = share * float(all_objs.sum())          # etcd cannot filter by field: it reads every pod
        cache_scanned = (1 - share) * obj_scanned
        if cold:                                            # the new cache's own LIST of every pod
            etcd_objs += float(self.cache.object_count)
        etcd_bytes = etcd_objs * p["pod_bytes"]
        cpu = (too_old.size + n_list) * p["request_overhead"] \
            + int(scanned.sum()) * self.filter_cpu + int(sent.sum()) * self.send_cpu \
            + int(objects.sum()) * self.send_cpu + cache_scanned * self.filter_cpu \
            + etcd_bytes * p["protobuf_decode_ns_per_byte"] * 1e-9 + etcd_objs * self.filter_cpu
        return Work(watches=int(too_old.size), resumed=int(too_old.size - n_list), relists=n_list,
                    init_events=int(scanned.sum()), events_sent=int(sent.sum()),
                    objects_relisted=int(objects.sum()), objects_scanned=int(round(cache_scanned)),
                    etcd_objects_read=etcd_objs, etcd_bytes_read=etcd_bytes, apiserver_cpu_seconds=cpu,
                    etcd_cpu_seconds=etcd_bytes * p["etcd_read_ns_per_byte"] * 1e-9)

    # -- RV ages -------------------------------------------------------------------------------
    def rv_time(self, rv) -> np.ndarray:
        """Time of the last pod event at or before each RV (the list time before any)."""
        i = np.searchsorted(self.h_rv, np.asarray(rv, dtype=np.int64), side="right") - 1
        return np.where(i >= 0, self.h_time[np.maximum(i, 0)], self.fleet.start_time)

    def tape_reach(self, times) -> np.ndarray:
        """How far back (s) the tape serves a watch at each time: the age of RV oldest-1."""
        t = np.asarray(times, dtype=np.float64)
        oldest = self.cache.oldest_rv_at(self.cache.events_until(t))
        return t - self.rv_time(oldest - 1)

    # -- output --------------------------------------------------------------------------------
    def build(self) -> RunResult:
        import pandas as pd

        p, fleet, out, T = self.p, self.fleet, self.out, self.T
        steady_batches = [b for b in fleet.rewatches if b.reason == "timeout"]
        cat = (lambda f: np.concatenate([getattr(b, f) for b in steady_batches])) if steady_batches else \
            (lambda f: np.zeros(0, dtype=np.float64 if f == "time" else np.int64))
        s_t, s_old = cat("time"), cat("too_old").astype(bool)
        s_scan, s_sent, s_obj = cat("events_scanned"), cat("events_sent"), cat("objects_relisted")
        steady = self.work(s_old, s_scan, s_sent, s_obj, s_t)
        restart = self.work(out.too_old, out.events_scanned, out.events_sent, out.objects_relisted,
                            np.full(out.too_old.size, T), cold=p["reconnect"] == "cold")
        up = p["apiservers"] - 1 if p["reconnect"] == "warm" else p["apiservers"]
        capacity = up * p["apiserver_cores"]

        # --- series: per BIN seconds ------------------------------------------------------
        edges = np.arange(0.0, T + BIN, BIN)
        edges[-1] = max(edges[-1], T)
        k = np.clip(np.searchsorted(edges, s_t, side="right") - 1, 0, edges.size - 2)
        nb = edges.size - 1

        def per_bin(x):
            return np.bincount(k, weights=np.asarray(x, dtype=np.float64), minlength=nb)[:nb]

        objs_all = self.objects_at(s_t)
        scan_objs = np.where(s_old, s_obj if p["list_uses_index"] else objs_all, 0)
        cpu_each = (1 + s_old) * p["request_overhead"] + s_scan * self.filter_cpu + (s_sent + s_obj) * self.send_cpu \
            + scan_objs * self.filter_cpu * (1 - p["relist_etcd_share"])
        mid = edges[:-1]
        cap_hist = np.array([(t, c) for t, _, c in self.cache.capacity_history])
        ci = np.searchsorted(cap_hist[:, 0], mid + BIN, side="right") - 1
        series = pd.DataFrame({
            "time": mid,
            "watch_restarts": per_bin(np.ones_like(s_t)).astype(int),
            "relists": per_bin(s_old).astype(int),
            "apiserver_init_events": per_bin(s_scan).astype(np.int64),
            "objects_relisted": per_bin(s_obj).astype(np.int64),
            "apiserver_resync_cpu_cores": per_bin(cpu_each) / np.diff(edges),
            "watch_cache_capacity": cap_hist[np.maximum(ci, 0), 1].astype(int),
            "watch_cache_span_s": self.tape_reach(np.minimum(mid + BIN, T)),
        })

        # --- RV timelines of the traced clients ------------------------------------------------
        grid = np.arange(0.0, T, TRACE_STEP)
        traces = {"time": np.r_[grid, T], "tape_reach_s": self.tape_reach(np.r_[grid, T])}
        names = []
        for i in self.trace:
            name = self.client_name(i)
            rv = np.r_[fleet.trace_rvs(i, grid), out.rv_before[i]]
            traces[f"rv_age_s[{name}]"] = traces["time"] - self.rv_time(rv)
            names.append(name)
        self.traces = pd.DataFrame(traces)

        # --- events ---------------------------------------------------------------------------------
        ev = [{"time": float(t), "event": "watch cache capacity", "client": "", "detail": f"{int(c):,} events"}
              for t, _, c in self.cache.capacity_history[1:] if t <= T]
        for i in self.trace:
            for (t0, d, rv, old) in fleet.trace_segments(i)[1:]:
                if t0 > T:
                    continue
                kind = "restart" if t0 == T else "watch timeout"
                ev.append({"time": t0, "event": f"{kind}: {'410 Gone, relist' if old else 'resume'}",
                           "client": self.client_name(i), "detail": f"next deadline {d:.0f} s"})
        ev.append({"time": T, "event": f"API server restart ({p['reconnect']} reconnect)", "client": "all",
                   "detail": f"{restart.resumed:,} resumed, {restart.relists:,} relisted, "
                             f"{restart.init_events:,} init events"})
        events = pd.DataFrame(ev, columns=["time", "event", "client", "detail"]).sort_values("time", kind="stable")

        # --- summary ---------------------------------------------------------------------------------
        sel = self.clients.field != FIELD_ALL
        age = T - self.rv_time(out.rv_before[sel])
        n_sel = int(sel.sum())
        # live deliveries over [0, T] to the selective watchers (controllers get every event)
        live_sel = fleet.deliveries - (self.clients.field.size - n_sel) * len(self.w.pods)
        matching = live_sel / n_sel / (T / 60.0) if n_sel else float("nan")
        caps = [c for t, _, c in self.cache.capacity_history if t <= T]
        sm = {
            "pod_events_per_s": len(self.w.pods) / T if T else float("nan"),
            "etcd_revisions_per_s": self.w.revisions / T if T else float("nan"),
            "selective_watchers": n_sel,
            "controllers": int(np.count_nonzero(~sel)),
            "selective_events_per_watcher_per_min": matching,
            "watch_cache_capacity": int(caps[-1]),
            "watch_cache_capacity_max": int(max(caps)),
            "watch_cache_span_s": float(self.tape_reach(np.array([T]))[0]),
            "selective_rv_age_p50_s": float(np.percentile(age, 50)) if n_sel else float("nan"),
            "selective_rv_age_p90_s": float(np.percentile(age, 90)) if n_sel else float("nan"),
            "selective_rv_age_max_s": float(age.max()) if n_sel else float("nan"),
            **restart.as_dict("restart"),
            "restart_relists_selective": int(np.count_nonzero(out.too_old & sel)),
            "restart_relists_controllers": int(np.count_nonzero(out.too_old & ~sel)),
            "restart_resync_seconds": restart.apiserver_cpu_seconds / capacity,
            "apiserver_resync_capacity_cores": capacity,
            **steady.as_dict("timeouts"),
            "timeouts_apiserver_cpu_cores_mean": steady.apiserver_cpu_seconds / T,
            "params": p,
        }
        self.summary = sm
        res = RunResult(self.setting, series, events, sm)
        res.traces = self.traces
        res.trace_names = names
        res.outcome = out
        return res

    def client_name(self, i: int) -> str:
        f = int(self.clients.field[i])
        v = int(self.clients.value[i])
        if f == FIELD_ALL:
            return f"controller-{i - int(np.count_nonzero(self.clients.field != FIELD_ALL))}"
        return {FIELD_NODE: f"kubelet node-{v}", FIELD_NAMESPACE: f"watcher ns-{v}",
                FIELD_LABEL: f"watcher app-{v}"}[f]


LAB = BookmarksLab()


def resync_ratio(results: Mapping[str, RunResult], metric: str = "restart_init_events",
                 setting: str = "upstream", baseline: str = "off") -> float:
    """``metric`` of ``setting`` over that of ``baseline`` (e.g. events to re-sync with
    bookmarks / without)."""
    a = results[setting].summary[metric]
    b = results[baseline].summary[metric]
    return a / b if b else math.nan

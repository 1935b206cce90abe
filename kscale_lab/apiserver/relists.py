"""Re-LISTs after a restart: from the watch cache, from etcd, or 429 until the cache is ready.

Picture a library that burned down and reopens. Before the shelves are restocked (the
**watch caches**, filled by LISTing every resource from etcd) the doors are already
open. Ten thousand readers come back at once, each asking for "the books on shelf 42"
(a kubelet re-listing the pods of its node). With the shelves empty, the 2019 library
sends every request to the warehouse (etcd): a LIST with a field selector and
``limit=500`` becomes a **paged quorum read of every pod** in the cluster, 400 round
trips of 500 pods, of which the reader keeps 20. The warehouse's CPU, the road between
warehouse and library (the network), and the librarians' CPU and memory fill up; the
restocking itself (the cache's own LIST) waits behind the readers; a library that runs
out of memory closes again (OOM kill), and its readers come back once more.

What this module does, per tick and per API server instance, for the clients whose
watch cannot resume (the core hands them over through ``Component.relist``):

* each client class's re-list has a **cost profile** computed once with the real paging
  loop (:func:`kscale_lab.etcd.range_reads.plan_list`, limit 500 as client-go's pager
  sends it, pages not grown as in 2019's store) and etcd's range costs
  (:func:`~kscale_lab.etcd.range_reads.range_work`): served from the cache (encode and send
  what it returns) or from etcd (etcd CPU per range, the bytes of every fetched object
  over the network, API server CPU to receive, decode and filter each one, then encode
  what it keeps);
* where it is served depends on the setting and on whether the instance's caches are
  filled: ``fallthrough`` (2019: to etcd), ``reject`` (the article: 429 with Retry-After
  until the cache is ready), ``kep4568`` (upstream: selective LISTs get 429, unselective
  ones with a limit go to etcd);
* it is admitted like any LIST: by ``--max-requests-inflight`` (it holds a read-only slot
  until it finishes), or by API Priority and Fairness (ten seats per LIST; the component
  offers them to :class:`~kscale_lab.apiserver.apf.APF`);
* admitted re-lists use four shared **fluid FIFO resources** (one backlog each, drained
  at its capacity): the instance's CPU (the core's queue), the instance's network in
  (from etcd) and out (to its clients, watch events included), and etcd (its CPU over
  all members); each holds its memory until it is done (a release schedule);
* a client that gets 429, or whose LIST outlives ``--request-timeout`` (the server goes
  on working for it: no context cancellation, section 6), retries after client-go's
  reflector backoff (800 ms doubling to 30 s, jittered);
* the caches fill through the same resources (:class:`RelistFlood` schedules each
  instance's fill when it starts listening), so a flood that reaches etcd first delays
  the very fill that would end it.

Utilisation of each resource is recorded per tick: which one binds is read off the
records, not assumed. etcd's memory (its base plus the range responses in flight and
queued) is counted against ``etcd_memory_limit_bytes``; an etcd member that exceeds it
is not crashed here (the few etcd members are not part of the core's lifecycle), the
run reports the excess.

Simplified, and said so: a class's re-list is one unit (all its informers' LISTs together, their
seats added); a WATCH on an unfilled cache neither hangs (before KEP-4568) nor gets 429 (after):
the core re-opens watches at once; the shared resources are FIFO fluid queues, so a LIST's
duration is the wait its work finds plus its own time (processor sharing would let small LISTs
pass big ones); etcd serves every member's share of the reads as one pool of cores.

Mirrors: ``staging/src/k8s.io/apiserver/pkg/storage/cacher/cacher.go`` (RV=0 LISTs
delegated to etcd while not ready, before KEP-4568; ``ResilientWatchCacheInitialization``
after), ``storage/etcd3/store.go`` ``GetList`` (paging), client-go ``tools/pager``
(limit 500) and ``tools/cache/reflector.go`` (backoff), KEP-4568.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..costs import NS
from ..errors import ParameterError
from ..etcd.range_reads import KEP2340_TEST, _costs, plan_list, range_work
from ..controlplane import Component
from ..params import Param, ParamSet
from .instances import READY, STARTING

GIB = 1024**3
MODES = ("fallthrough", "reject", "kep4568")


def derived_apiserver_etcd_list_cpu_per_object(decode_ns_per_byte: float = 5.0) -> float:
    """API server CPU per object of a LIST served from etcd, beyond decoding its bytes:
    KEP-2340's feature-off test (300,000 x 1 KB ConfigMaps, a selector matching none),
    (API server cores - baseline) / LIST rate / objects, minus 1 KB at ``decode_ns_per_byte``."""
    k = KEP2340_TEST
    per_list = (k["off_small_apiserver_cores"] - k["baseline_apiserver_cores"]) / k["off_small_qps"]
    per_obj = per_list / k["objects_small"]
    return per_obj - k["object_bytes_small"] * decode_ns_per_byte * NS


RELIST_PARAMS = ParamSet([
    Param("list_page_size", 500, "objects",
          "client-go tools/pager: defaultPageSize = 500 (reflectors LIST with limit=500)",
          "limit of a reflector's LIST; honoured when etcd serves it (the watch cache ignores it)",
          lo=1, hi=100_000, kind=int),
    Param("apiserver_etcd_list_cpu_per_object", derived_apiserver_etcd_list_cpu_per_object(), "s",
          "derived from KEP-2340's scalability test, feature off (300,000 x 1 KB ConfigMaps, 0.86 LIST/s, "
          "6.92 API server cores, baseline 0.10), minus 1 KB at protobuf_decode_ns_per_byte",
          "API server CPU per object it receives from etcd for a LIST (gRPC, transform, decode, selector), "
          "beyond decoding the object's bytes", lo=0, hi=0.01),
    Param("apiserver_network_bytes_per_s", 1.25e9, "B/s",
          "assumption: a 10 Gbit/s NIC on each control-plane machine, full duplex",
          "network capacity of one API server instance in each direction (from etcd; to its clients)",
          lo=1e6, hi=1e12,
          plausible=(1250000000.0, 3125000000.0), plausible_source="10 to 25 Gbit/s NICs on control-plane machines"),
    Param("etcd_network_bytes_per_s", 1.25e9, "B/s", "assumption: a 10 Gbit/s NIC per etcd member",
          "network capacity out of one etcd member", lo=1e6, hi=1e12),
    Param("etcd_write_cpu", 1e-4, "s",
          "assumption: a small write costs etcd ~0.1 ms of CPU over the cluster (gRPC, raft append and "
          "replication, WAL, bbolt batch)",
          "etcd CPU per write (Lease renewals, status patches, pod churn)", lo=0, hi=0.1),
    Param("etcd_memory_limit_bytes", 32 * GIB, "B",
          "assumption: etcd's hardware guide sizes large clusters at 32-64 GB of memory; half of it for the "
          "process when it shares the machine",
          "memory one etcd member may use (reported, not enforced)", lo=GIB // 4, hi=4096 * GIB, kind=int),
    Param("list_retry_initial", 0.8, "s",
          "client-go reflector.go: NewExponentialBackoffManager(800 ms, 30 s, 2 min, 2.0, jitter 1.0)",
          "a reflector's first wait after a failed LIST (doubles each time, jittered up to 2x)", lo=0.01, hi=600),
    Param("list_retry_max", 30.0, "s", "client-go reflector.go: the backoff's cap of 30 s",
          "longest wait between a reflector's LIST attempts", lo=0.01, hi=3600),
    Param("request_timeout", 60.0, "s", "kube-apiserver --request-timeout default 1 m",
          "a non-long-running request is answered 504 after this; the client retries, the server's work "
          "goes on (no context cancellation)", lo=1, hi=3600, flag="--request-timeout"),
    Param("watch_cache_init_post_start_hook", False, "1",
          "KEP-4568: feature gate WatchCacheInitializationPostStartHook, beta and off by default",
          "upstream setting: /readyz waits until the watch caches of built-in resources are filled",
          kind=bool),
])

MAX_ATTEMPTS = 8          # backoff levels tracked (the 8th and later wait the cap)


@dataclass
class RelistProfile:
    """What one client class's re-list costs (all its LISTs together)."""

    lists: int
    selective: bool             # has a field or label selector (KEP-4568: 429 while not ready)
    seats: float                # APF seats of all its LISTs together
    cache_cpu: float            # from the cache: API server core-seconds
    cache_bytes: float          # ... bytes to the client
    cache_memory: float         # ... bytes held while in flight
    etcd_cpu: float             # from etcd: etcd core-seconds (all members)
    etcd_latency: float         # ... its ranges one after another (s)
    etcd_bytes: float           # ... bytes etcd -> API server
    etcd_apiserver_cpu: float   # ... API server core-seconds (receive, decode, filter, encode)
    etcd_out_bytes: float       # ... bytes to the client
    etcd_memory: float          # ... bytes held while in flight (a page and what it keeps)
    etcd_ranges: int
    etcd_peak_page_bytes: float


def _unselective(n: float, size: float, page: int, p) -> tuple:
    """Closed form of an unselective LIST with ``limit=page`` followed page by page: every page is
    a request of its own, one range each."""
    if n <= 0:
        return 0, 0.0, 0.0, 0.0, 0.0, 0.0
    pages = int(math.ceil(n / page))
    sizes = np.full(pages, float(page))
    sizes[-1] = n - page * (pages - 1)
    w = range_work(sizes, sizes * size, True, p)
    return pages, w.cpu, w.latency, n * size, n, min(n, page) * size


def relist_profiles(work, p: Mapping, costs) -> list[RelistProfile]:
    """Cost profiles per client class. The kubelet's LIST of its node's pods runs the real paging
    loop over the cluster's pods (its 20 pods spread over 200,000 keys); the others are
    unselective LISTs of what they watch, page by page."""
    page = int(p["list_page_size"])
    factor = float(work.object_memory_factor)
    dec = float(costs.protobuf_decode_ns_per_byte) * NS
    enc = float(costs.protobuf_encode_ns_per_byte + costs.watch_send_ns_per_byte) * NS
    per_obj = float(p["apiserver_etcd_list_cpu_per_object"])
    ovh = float(costs.request_overhead)
    n_nodes = max(int(p["nodes"]), 1)
    pods = int(p["pods"])
    pod_bytes = float(p["pod_bytes"])
    stored_seats = lambda stored, selector, cache: _seats(stored, page, selector, cache, p)  # noqa: E731
    out = []
    for cls in work.classes:
        cache_cpu = ovh + cls.relist_bytes * enc
        cache = dict(cache_cpu=cache_cpu, cache_bytes=cls.relist_bytes, cache_memory=2.0 * cls.relist_bytes)
        if cls.relist_objects <= 0 or cls.watches <= 0:
            out.append(RelistProfile(0, False, 0.0, **cache, etcd_cpu=0.0, etcd_latency=0.0, etcd_bytes=0.0,
                                     etcd_apiserver_cpu=0.0, etcd_out_bytes=0.0, etcd_memory=0.0, etcd_ranges=0,
                                     etcd_peak_page_bytes=0.0))
            continue
        if cls.name == "kubelet":
            mine = max(1, int(round(pods / n_nodes)))
            match = np.zeros(max(pods, 1), dtype=bool)
            match[np.linspace(0, max(pods, 1) - 1, mine).astype(np.int64)] = True
            plan = plan_list(match, np.full(match.size, pod_bytes), page, grow=False)
            w = range_work(plan.fetched, plan.fetched_bytes, True, p)
            node = float(cls.relist_bytes - plan.bytes_returned)          # its Node, read by name
            cpu = (ovh * 2 + plan.objects_fetched * per_obj + plan.bytes_fetched * dec
                   + plan.bytes_returned * enc + max(node, 0.0) * (dec + enc))
            out.append(RelistProfile(
                lists=2, selective=True, seats=stored_seats(pods, True, True) + 1,
                **cache, etcd_cpu=w.cpu, etcd_latency=w.latency, etcd_bytes=plan.bytes_fetched + max(node, 0.0),
                etcd_apiserver_cpu=cpu, etcd_out_bytes=cls.relist_bytes,
                etcd_memory=plan.peak_response_bytes * (1.0 + factor) + cls.relist_bytes * (1.0 + factor),
                etcd_ranges=plan.etcd_ranges + 1, etcd_peak_page_bytes=plan.peak_response_bytes))
            continue
        if cls.name == "kube-proxy":
            services = float(p["services"])
            eps = max(float(cls.relist_objects) - services, 0.0)
            eps_bytes = (cls.relist_bytes - services * 1000.0) / max(eps, 1.0)
            parts = [(services, 1000.0), (eps, eps_bytes)]
            lists, selective = 2, True              # EndpointSlices: a label selector (service-proxy-name)
        else:
            lists = max(1, int(cls.watches))
            size = cls.relist_bytes / max(cls.relist_objects, 1.0)
            parts = [(cls.relist_objects / lists, size)] * lists
            selective = False
        pages = ecpu = elat = ebytes = fetched = 0.0
        peak = 0.0
        for n, size in parts:
            a, b, c, d, e, f = _unselective(n, size, page, p)
            pages += a
            ecpu += b
            elat = max(elat, c)                     # informers list in parallel
            ebytes += d
            fetched += e
            peak = max(peak, f)
        cpu = pages * ovh + fetched * per_obj + ebytes * dec + ebytes * enc
        seats = sum(stored_seats(n, False, True) for n, _ in parts)
        out.append(RelistProfile(
            lists=lists, selective=selective, seats=float(seats), **cache, etcd_cpu=ecpu, etcd_latency=elat,
            etcd_bytes=ebytes, etcd_apiserver_cpu=cpu, etcd_out_bytes=ebytes,
            etcd_memory=lists * peak * (2.0 + factor), etcd_ranges=int(pages), etcd_peak_page_bytes=peak))
    return out


def _seats(stored, page, selector, cache, p) -> float:
    from .apf import list_seats

    return float(list_seats(float(stored), page, selector, cache,
                            objects_per_seat=float(p.get("apf_objects_per_seat", 100.0)),
                            max_seats=int(p.get("apf_max_seats", 10))))


def cache_fill_work(work, p: Mapping, costs) -> dict:
    """What filling one instance's watch caches costs: every object ranged from etcd (unpaged in
    2019: one range per resource), sent to the API server, received and decoded. The largest
    resource (pods) is filled by one goroutine: its share bounds the fill time."""
    c = _costs(p)
    objects, nbytes = float(work.cache_objects), float(work.cache_bytes)
    per_obj = float(p["apiserver_etcd_list_cpu_per_object"])
    dec = float(costs.protobuf_decode_ns_per_byte) * NS
    etcd_cpu = objects * c["etcd_range_cpu_per_object"] + nbytes * c["protobuf_encode_ns_per_byte"] * NS
    api_cpu = objects * per_obj + nbytes * dec
    pods = float(p["pods"])
    largest = min(1.0, pods / max(objects, 1.0))
    return {"etcd_cpu": etcd_cpu, "bytes": nbytes, "apiserver_cpu": api_cpu,
            "sequential": largest * (etcd_cpu + api_cpu) + largest * nbytes / c["network_bytes_per_s"],
            "parallelism": float(p["watch_cache_init_parallelism"])}


class RelistFlood(Component):
    """The re-list and cache-fill model (a :class:`~kscale_lab.controlplane.Component`).

    ``mode``: ``fallthrough``, ``reject`` or ``kep4568`` (see the module docstring);
    ``apf``: the :class:`~kscale_lab.apiserver.apf.APF` component when API Priority and
    Fairness admits requests (then pass it *after* this one), else None (max-inflight)."""

    name = "relists"

    def __init__(self, p: Mapping, mode: str, apf=None):
        if mode not in MODES:
            raise ParameterError("mode", f"must be one of {', '.join(MODES)}; got {mode!r}")
        self.p = p
        self.mode = mode
        self.apf = apf
        self.replaces_max_inflight = apf is None      # max-inflight counts re-lists too

    # -- setup ---------------------------------------------------------------------------------
    def register(self, work) -> None:
        """Before the control plane is built: register the re-lists with APF."""
        if self.apf is None:
            return
        for c, cls in enumerate(work.classes):
            if cls.watches > 0 and cls.relist_objects > 0:
                self.apf.add_part(f"relist/{cls.name}", c, ("list", "pods", "*" if cls.name != "kubelet" else ""),
                                  1.0)

    def attach(self, cp) -> None:
        p, w = self.p, cp.w
        self.cp = cp
        self.prof = relist_profiles(w, p, cp.costs)
        if self.apf is not None:
            self.apf.attach(cp)            # its parts must exist before ours are looked up
        C, K = w.n_classes, cp.k
        self.C, self.K = C, K
        if self.apf is not None:
            for c, pr in enumerate(self.prof):
                name = f"relist/{w.classes[c].name}"
                if name in getattr(self.apf, "_extra_index", {}):
                    self.apf.parts[self.apf._extra_index[name]].seats = max(pr.seats, 1.0)
                    self.apf.fluid.seats[self.apf._extra_index[name]] = max(pr.seats, 1.0)
        self._apf_names = []
        if self.apf is not None:
            self._apf_names = [(c, f"relist/{cl.name}") for c, cl in enumerate(w.classes)
                               if f"relist/{cl.name}" in self.apf._extra_index]
        f = lambda name: np.array([getattr(pr, name) for pr in self.prof], dtype=float)  # noqa: E731
        self.selective = np.array([pr.selective for pr in self.prof])
        self.has = f("lists") > 0
        self.c_cpu, self.c_bytes, self.c_mem = f("cache_cpu"), f("cache_bytes"), f("cache_memory")
        self.e_cpu, self.e_lat, self.e_bytes = f("etcd_cpu"), f("etcd_latency"), f("etcd_bytes")
        self.e_api, self.e_out, self.e_mem = f("etcd_apiserver_cpu"), f("etcd_out_bytes"), f("etcd_memory")
        self.e_page = f("etcd_peak_page_bytes")
        self.lists = f("lists")
        c = _costs(p)
        self.stream_bw = c["network_bytes_per_s"]
        self.nic = float(p["apiserver_network_bytes_per_s"])
        self.etcd_cores = float(c["etcd_cores"]) * float(c["etcd_members"])
        self.etcd_net = float(p["etcd_network_bytes_per_s"]) * float(c["etcd_members"])
        self.timeout = float(p["request_timeout"])
        self.retry0, self.retry_max = float(p["list_retry_initial"]), float(p["list_retry_max"])
        self.max_ro = float(cp.costs.max_requests_inflight)
        self.max_mut = float(cp.costs.max_mutating_requests_inflight)
        dt = cp.dt
        self.H = cp.steps + int(math.ceil(3600.0 / dt)) + 2
        self.due = np.zeros((self.H, K, C, MAX_ATTEMPTS))         # re-lists due at tick, by attempt
        self.rel_mem = np.zeros((self.H, K))                       # memory released at tick
        self.rel_slots = np.zeros((self.H, K))                     # read-only slots released at tick
        self.rel_etcd_mem = np.zeros(self.H)
        self.mem = np.zeros(K)
        self.slots = np.zeros(K)
        self.pending = np.zeros(K)                                 # re-lists waiting for their turn
        self.etcd_mem_inflight = 0.0
        # shared fluid resources
        self.b_in = np.zeros(K)
        self.b_out = np.zeros(K)
        self.b_etcd = 0.0
        self.etcd_base_cpu = float(w.writes_per_s) * float(p["etcd_write_cpu"])
        self.etcd_base_memory = 2.0 * float(w.cache_bytes)
        self.watch_bytes = np.array([cl.watch_bytes_per_s for cl in w.classes])
        self.resp_bytes = np.where(w.is_list, (w.stream_memory - w.request_memory) / 2.0, 0.0)
        # cache fill
        self.fill = cache_fill_work(w, p, cp.costs)
        self.filled_for = np.full(K, -1, dtype=np.int64)          # generation whose fill is scheduled
        self.gen = np.zeros(K, dtype=np.int64)
        self._last_state = cp.inst.state.copy()
        cp.init_cpu_per_s = 0.0
        self.hook = bool(p.get("watch_cache_init_post_start_hook", False)) and self.mode == "kep4568"
        # this tick
        self.inflight = False
        self.quiet = True
        self._zeros_kca = np.zeros((K, C, MAX_ATTEMPTS))
        self._zeros_kc = np.zeros((K, C))
        self._ones_kc = np.ones((K, C))
        self._ones_k = np.ones(K)
        self._admit_share = self._ones_k
        self._counted = ~cp.long_running
        self._mut_counted = (cp.mutating & self._counted).astype(float)
        self._ro_counted = (~cp.mutating & self._counted).astype(float)
        self.offer_n = np.zeros((K, C, MAX_ATTEMPTS))
        self.extra = np.zeros(K)
        self.lat_add = np.zeros((K, len(w.stream_names)))
        self._lat_zero = True
        self._mut_f = w.mutating.astype(float)
        self._list_f = w.is_list.astype(float)
        self.core_ro_share = np.zeros(K)
        # records
        steps = cp.steps
        self.rec = {name: np.zeros((steps, K)) for name in (
            "relists_started", "relists_from_etcd", "relists_rejected", "relists_timed_out", "relists_waiting",
            "relist_memory", "net_in_util", "net_out_util", "net_in_wait_s", "net_out_wait_s", "cache_ready")}
        self.rec_etcd = {name: np.zeros(steps) for name in ("etcd_cpu_util", "etcd_cpu_wait_s", "etcd_net_util",
                                                             "etcd_memory_bytes", "etcd_bytes_read_per_s")}
        self.rec_done_class = np.zeros((steps, C))
        self.done_total = np.zeros(C)
        self.started_total = np.zeros(C)
        self.rejected_total = np.zeros(C)
        self.timed_out_total = np.zeros(C)
        self.etcd_bytes_total = 0.0
        self.completed_at = np.full(C, np.nan)

    # -- hand-over from the core -------------------------------------------------------------
    def relist(self, cp, idx, target, t):
        cls = cp.cn.cls[idx]
        take = self.has[cls]
        if take.any():
            row = (cp._i + 1) % self.H
            np.add.at(self.due, (row, target[take], cls[take], 0), 1.0)
            np.add.at(self.pending, target[take], 1.0)
        return take

    # -- the tick ------------------------------------------------------------------------------
    def _schedule_retry(self, i: int, counts: np.ndarray, attempt: int, extra_wait: float = 0.0) -> None:
        """``counts`` (K x C) clients retry at backoff level ``attempt``: after d = min(cap,
        initial x 2^attempt) (+ ``extra_wait``), spread evenly over [d, 2d) (jitter 1.0)."""
        base = min(self.retry_max, self.retry0 * 2.0 ** attempt)
        dt = self.cp.dt
        a0 = max(1, int(round((base + extra_wait) / dt)))
        span = max(1, int(round(base / dt)))
        nxt = min(attempt + 1, MAX_ATTEMPTS - 1)
        rows = (i + a0 + np.arange(span)) % self.H
        self.due[rows, :, :, nxt] += counts[None] / span
        self.pending += counts.sum(axis=1)

    def before_tick(self, cp, t0, t1):
        inst = cp.inst
        i = cp._i
        # instances that stopped lose what they held and what waited on them
        gone = (self._last_state != inst.state) & ~inst.serving
        for j in np.flatnonzero(gone):
            self.due[:, j] = 0.0
            self.pending[j] = 0.0
            self.rel_mem[:, j] = 0.0
            self.rel_slots[:, j] = 0.0
            self.mem[j] = self.slots[j] = 0.0
            self.b_in[j] = self.b_out[j] = 0.0
        # a starting instance fills its caches once it listens: schedule the fill on the shared
        # resources (its end moves if etcd or the network are busy)
        starting = inst.state == STARTING
        fresh = starting & (self._last_state != STARTING)
        for j in np.flatnonzero(fresh):
            inst.fill_caches_at(j, np.inf)
            if not inst.ready_before_cache or self.hook:
                inst.ready_at[j] = np.inf
            self.gen[j] += 1
        for j in np.flatnonzero(inst.serving & (inst.accept_at <= t0) & (self.filled_for != self.gen)
                                & ~np.isfinite(inst.cache_at)):
            self._schedule_fill(int(j), t0)
        if self.hook:
            # KEP-4568 post-start hook: /readyz only once the caches are filled
            for j in np.flatnonzero((inst.state == STARTING) & np.isfinite(inst.cache_at)):
                inst.ready_at[j] = inst.cache_at[j]
        self._last_state = inst.state.copy()

    def _schedule_fill(self, j: int, t: float) -> None:
        fw = self.fill
        self.filled_for[j] = self.gen[j]
        self.b_etcd += fw["etcd_cpu"]
        self.b_in[j] += fw["bytes"]
        self.extra[j] += fw["apiserver_cpu"]
        waits = max(self.b_etcd / self.etcd_cores, self.b_in[j] / self.nic,
                    (self.cp.inst.backlog[j] + fw["apiserver_cpu"] / fw["parallelism"]) / self.cp.inst.cores[j])
        done = t + max(fw["sequential"], waits)
        self.cp.inst.fill_caches_at(j, done)
        if not self.cp.inst.ready_before_cache:
            self.cp.inst.ready_at[j] = done

    def admission(self, cp, A, t0):
        i, K, C = cp._i, self.K, self.C
        row = i % self.H
        inst = cp.inst
        # releases of what finished
        if self.inflight:
            self.mem = np.maximum(self.mem - self.rel_mem[row], 0.0)
            self.slots = np.maximum(self.slots - self.rel_slots[row], 0.0)
            self.etcd_mem_inflight = max(self.etcd_mem_inflight - self.rel_etcd_mem[row], 0.0)
            self.rel_mem[row] = self.rel_slots[row] = 0.0
            self.rel_etcd_mem[row] = 0.0
            self.inflight = bool(self.mem.any() or self.slots.any())
        due = self.due[row]
        self._source_etcd = ~inst.cache_ready(t0)                  # K
        if due.any():
            due = due.copy()
            self.due[row] = 0.0
            self.pending = np.maximum(self.pending - due.sum(axis=(1, 2)), 0.0)
            serving = inst.serving
            due[~serving] = 0.0
            rejected = np.zeros((K, C, MAX_ATTEMPTS))
            # while the cache fills: fall through to etcd, or 429
            notready = serving & self._source_etcd
            if self.mode == "reject":
                rejected[notready] += due[notready]
                due[notready] = 0.0
            elif self.mode == "kep4568":
                sel = notready[:, None] & self.selective[None, :]
                rejected[sel] += due[sel]
                due[sel] = 0.0
            self.offer_n, self.rule_rejected, self.quiet = due, rejected, False
        else:
            self.offer_n, self.rule_rejected, self.quiet = self._zeros_kca, self._zeros_kca, True
        offered = self.offer_n.sum(axis=2) if not self.quiet else self._zeros_kc   # K x C
        if self.apf is not None:
            # how long one of them would take if dispatched now (the queues as they are)
            svc = self._durations(self._zeros_kc, t0, commit=False) if not self.quiet else self._ones_kc
            for c, name in self._apf_names:
                self.apf.offer(name, offered[:, c], svc[:, c])
            return None
        # max-inflight for everything: the core's streams (Little's law) and the re-lists (slots).
        # When a component owns the request path, its counts are what holds slots as the tick
        # starts (orphaned goroutines included); this tick's arrivals add theirs by Little's law,
        # each for at most the tick
        owned = cp.owned_in_flight
        held = A * cp.lat if owned is None else owned + A * np.minimum(cp.lat, cp.dt)
        mut = held @ self._mut_counted
        ro = held @ self._ro_counted
        want = ro + offered.sum(axis=1)
        free = self.max_ro - self.slots
        if (want <= free).all() and (mut <= self.max_mut).all():
            self._admit_share = self._ones_k
            return None
        p_mut = 1.0 - np.minimum(1.0, self.max_mut / np.maximum(mut, 1e-12))
        p_ro = np.where(want > free, 1.0 - np.maximum(free, 0.0) / np.maximum(want, 1e-12), 0.0)
        p_ro = np.clip(p_ro, 0.0, 1.0)
        out = np.where(cp.mutating[None, :], p_mut[:, None], p_ro[:, None])
        self._admit_share = 1.0 - p_ro
        return np.where(self._counted[None, :], out, 0.0)

    def _durations(self, n: np.ndarray, t: float, commit: bool) -> np.ndarray:
        """Seconds a re-list started now takes (K x C), for ``n`` re-lists per (instance, class);
        with ``commit`` their work is added to the shared resources."""
        inst = self.cp.inst
        etcd = self._source_etcd[:, None]
        cpu = np.where(etcd, self.e_api[None, :], self.c_cpu[None, :])
        out_b = np.where(etcd, self.e_out[None, :], self.c_bytes[None, :])
        in_b = np.where(etcd, self.e_bytes[None, :], 0.0)
        ecpu = np.where(etcd, self.e_cpu[None, :], 0.0)
        add_cpu = (n * cpu).sum(axis=1)
        add_in = (n * in_b).sum(axis=1)
        add_out = (n * out_b).sum(axis=1)
        add_etcd = float((n * ecpu).sum())
        w_cpu0 = inst.backlog / inst.cores
        w_cpu1 = (inst.backlog + self.extra + add_cpu) / inst.cores
        w_in0, w_in1 = self.b_in / self.nic, (self.b_in + add_in) / self.nic
        w_out0, w_out1 = self.b_out / self.nic, (self.b_out + add_out) / self.nic
        w_e0, w_e1 = self.b_etcd / self.etcd_cores, (self.b_etcd + add_etcd) / self.etcd_cores
        wait = np.maximum.reduce([0.5 * (w_cpu0 + w_cpu1), 0.5 * (w_in0 + w_in1), 0.5 * (w_out0 + w_out1),
                                  np.full(self.K, 0.5 * (w_e0 + w_e1))])
        own = (cpu + np.where(etcd, self.e_lat[None, :], 0.0) + (in_b + out_b) / self.stream_bw)
        dur = own + wait[:, None]
        if commit:
            self.extra = self.extra + add_cpu
            self.b_in += add_in
            self.b_out += add_out
            self.b_etcd += add_etcd
        return dur

    def extra_cpu(self, cp, adm, t0):
        i, dt, K, C = cp._i, cp.dt, self.K, self.C
        offered = self.offer_n                                     # K x C x attempts
        rej = self.rule_rejected
        tot = offered.sum(axis=2) if not self.quiet else self._zeros_kc
        if self.apf is not None:
            started = np.zeros((K, C))
            apf_rej = np.zeros((K, C))
            for c, name in self._apf_names:
                d, r, _ = self.apf.outcome(name)
                started[:, c], apf_rej[:, c] = d, r
            busy = started.any() or apf_rej.any() or rej.any()
            if busy:
                # which backoff level the started and rejected ones were at (this tick's mix; a
                # re-list dispatched from APF's queue counts as a first attempt)
                frac = np.divide(offered, tot[:, :, None], out=np.zeros_like(offered), where=tot[:, :, None] > 0)
                frac[..., 0] = np.where(tot > 0, frac[..., 0], 1.0)
                rej = rej + apf_rej[:, :, None] * frac
                attempt_of_started = frac
        else:
            busy = tot.any() or rej.any()
            if busy:
                share = self._admit_share[:, None]
                started = tot * share
                rej = rej + offered * (1.0 - share)[:, :, None]
                attempt_of_started = np.divide(offered, tot[:, :, None], out=np.zeros_like(offered),
                                               where=tot[:, :, None] > 0)
            else:
                started = tot
        cpu_rej = 0.0
        if busy:
            levels = np.flatnonzero(rej.reshape(-1, MAX_ATTEMPTS).any(axis=0))
            for a in levels:
                self._schedule_retry(i, rej[..., a], int(a))
            n_rej = rej.sum(axis=2)
            cpu_rej = n_rej.sum(axis=1) * cp.w.reject_cpu
            self.rejected_total += n_rej.sum(axis=0)
            self.rec["relists_rejected"][i] = n_rej.sum(axis=1)
        if busy and started.any():
            # start the admitted re-lists
            dur = self._durations(started, t0, commit=True)
            etcd = self._source_etcd[:, None]
            mem = np.where(etcd, self.e_mem[None, :], self.c_mem[None, :]) * started
            rows = (i + 1 + np.ceil(np.minimum(dur, 3600.0) / dt).astype(np.int64)) % self.H
            kk = np.repeat(np.arange(K)[:, None], C, axis=1)
            np.add.at(self.rel_mem, (rows, kk), mem)
            self.mem += mem.sum(axis=1)
            self.inflight = True
            if self.apf is None:
                np.add.at(self.rel_slots, (rows, kk), started * self.lists[None, :])
                self.slots += (started * self.lists[None, :]).sum(axis=1)
            em = (started * np.where(etcd, self.e_page[None, :] * 2.0 * self.lists[None, :], 0.0))
            if em.any():
                np.add.at(self.rel_etcd_mem, rows.ravel(), em.ravel())
                self.etcd_mem_inflight += float(em.sum())
            # a LIST that outlives --request-timeout: the client gets 504 and lists again later,
            # the server finishes the first one anyway
            late = dur > self.timeout
            ok = started
            if late.any():
                again = np.where(late, started, 0.0)
                for a in range(MAX_ATTEMPTS):
                    part = again * attempt_of_started[..., a]
                    if part.any():
                        self._schedule_retry(i, part, a, extra_wait=self.timeout)
                self.timed_out_total += again.sum(axis=0)
                self.rec["relists_timed_out"][i] = again.sum(axis=1)
                ok = np.where(late, 0.0, started)
            self.done_total += ok.sum(axis=0)
            self.rec_done_class[i] = ok.sum(axis=0)
            self.etcd_bytes_total += float((started * np.where(etcd, self.e_bytes[None, :], 0.0)).sum())
            self.rec["relists_from_etcd"][i] = np.where(self._source_etcd, started.sum(axis=1), 0.0)
            self.started_total += started.sum(axis=0)
            self.rec["relists_started"][i] = started.sum(axis=1)
        # regular traffic on the links: watch events and LIST responses to the clients
        self.b_out += (cp.cn.watch_counts @ self.watch_bytes) * dt + (adm @ self.resp_bytes) * dt
        self.b_etcd += self.etcd_base_cpu * dt
        # drain the shared resources
        cap_in, cap_out = self.nic * dt, self.nic * dt
        used_in = np.minimum(self.b_in, cap_in)
        used_out = np.minimum(self.b_out, cap_out)
        self.b_in -= used_in
        self.b_out -= used_out
        used_e = min(self.b_etcd, self.etcd_cores * dt)
        self.b_etcd -= used_e
        # etcd's network out carries what the API servers read from it
        rec, re = self.rec, self.rec_etcd
        rec["net_in_util"][i] = used_in / cap_in
        rec["net_out_util"][i] = used_out / cap_out
        rec["net_in_wait_s"][i] = self.b_in / self.nic
        rec["net_out_wait_s"][i] = self.b_out / self.nic
        rec["relists_waiting"][i] = self.pending
        rec["relist_memory"][i] = self.mem
        rec["cache_ready"][i] = ~self._source_etcd
        re["etcd_cpu_util"][i] = used_e / max(self.etcd_cores * dt, 1e-12)
        re["etcd_cpu_wait_s"][i] = self.b_etcd / self.etcd_cores
        re["etcd_net_util"][i] = float(used_in.sum()) / max(self.etcd_net * dt, 1e-12)
        re["etcd_memory_bytes"][i] = self.etcd_base_memory + self.etcd_mem_inflight
        re["etcd_bytes_read_per_s"][i] = float(used_in.sum()) / dt
        out = self.extra + cpu_rej if self.extra.any() or busy else None
        if self.extra.any():
            self.extra = np.zeros(K)
        # latency: writes wait for etcd's CPU; LIST responses for the way out
        if self.b_etcd > 0 or self.b_out.any():
            self.lat_add = (self._mut_f[None, :] * (self.b_etcd / self.etcd_cores)
                            + self._list_f[None, :] * (self.b_out / self.nic)[:, None])
            self._lat_zero = False
        elif not self._lat_zero:
            self.lat_add = np.zeros_like(self.lat_add)
            self._lat_zero = True
        return out

    def latency(self, cp, adm, t0):
        return None if self._lat_zero else self.lat_add

    def memory(self, cp, adm, t0):
        return self.mem

    def summary(self, cp) -> dict:
        n = cp._i
        return {
            "relists_started_total": float(self.started_total.sum()),
            "relists_rejected_total": float(self.rejected_total.sum()),
            "relists_timed_out_total": float(self.timed_out_total.sum()),
            "relists_done_total": float(self.done_total.sum()),
            "etcd_bytes_read_total": self.etcd_bytes_total,
            "etcd_memory_peak_share": float(self.rec_etcd["etcd_memory_bytes"][:n].max()
                                            / float(self.p["etcd_memory_limit_bytes"])) if n else 0.0,
        }

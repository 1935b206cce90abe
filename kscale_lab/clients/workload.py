"""Who talks to the API servers at 10,000 nodes, and what each client costs them.

Picture the API servers' switchboard. Ten thousand kubelets each renew a Lease every
10 s and read a few objects; ten thousand kube-proxies say almost nothing but listen
to every EndpointSlice change (a *watch*: the server pushes each change down each
kube-proxy's connection); a handful of controllers and the scheduler send most of the
other requests and watch nearly everything. Which API server does the work depends on
which one holds the client's connection: a request is served where it arrives, and a
watch event is encoded and written by the server that holds the watch.

This module turns the scenario into a small table, **client classes x request
streams**: per class, how many clients, the request rate of each stream per client,
the watch load per client (watches held, event bytes per second pushed to it), and
what a re-list costs when its watch cannot resume. The many clients then only need
their class and their connection (:mod:`kscale_lab.clients.connections`); an API
server's load is ``clients per class on it @ per-class rates``: a (servers x classes)
by (classes x streams) product, not a loop over 20,000 clients.

Costs come from :mod:`kscale_lab.costs` (decode, encode, patch, per-byte watch send),
with one change from the heartbeat lab: the watch fan-out of a write is *not* charged
to the server that received the write but to each server in proportion to the
watchers it holds (every server's watch cache sees every event; each sends it only to
its own watchers). That is what makes connection imbalance a CPU imbalance.

Mirrors: kube-proxy watches Services and EndpointSlices (``pkg/proxy/config``), the
kubelet's Lease controller and status loop (see :mod:`kscale_lab.clients.kubelet`),
the scheduler's binding (``pkg/scheduler/schedule_one.go``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..costs import NS, Costs
from ..params import Param, ParamSet

WORKLOAD_PARAMS = ParamSet([
    Param("kube_proxy", True, "1", "kube-proxy runs on every node (a DaemonSet in kube-system)",
          "every node also runs a kube-proxy that watches Services and EndpointSlices", kind=bool),
    Param("endpointslice_updates_per_pod", 1.0, "updates",
          "assumption: a pod behind a Service changes its EndpointSlice when it becomes ready and when it "
          "terminates (2); about half the pods are behind a Service (so 1 per pod lifecycle on average)",
          "EndpointSlice writes per pod created and deleted", lo=0, hi=100),
    Param("endpointslice_bytes", 3000.0, "B",
          "assumption: an EndpointSlice holds up to 100 endpoints of ~100-200 B; most Services are small, "
          "so slices average ~20-30 endpoints",
          "mean size of an EndpointSlice", lo=100, hi=1_500_000,
          plausible=(1000.0, 10000.0), plausible_source='slices of ~10 to ~100 endpoints'),
    Param("services", 5000, "services",
          "assumption: half the sig-scalability threshold of 10,000 Services per cluster "
          "(kubernetes/community sig-scalability/configs-and-limits/thresholds.md)",
          "Services in the cluster (kube-proxy lists them and their EndpointSlices on a re-list)",
          lo=0, hi=100_000, kind=int),
    Param("kubelet_watches", 4, "watches",
          "assumption: a kubelet watches its Node, its pods, and (aggregated) the ConfigMaps and Secrets its "
          "pods use",
          "watches one kubelet holds", lo=1, hi=1000, kind=int),
    Param("kubelet_get_rate", 0.02, "requests/s",
          "assumption: a kubelet reads a Secret, ConfigMap or its pods now and then (one read per 50 s)",
          "GETs per kubelet per second beside its heartbeat", lo=0, hi=100),
    Param("controllers_other", 20, "clients",
          "assumption: besides kube-controller-manager and kube-scheduler, ~20 operators and add-ons "
          "(ingress, DNS, monitoring, CI) talk to a large cluster",
          "other controller-like clients; the background requests are spread over them", lo=0, hi=10_000,
          kind=int),
    Param("controller_watches", 20, "watches",
          "assumption: a controller watches ~20 resource types", "watches one controller holds", lo=1, hi=10_000,
          kind=int),
    Param("cluster_list_rate", 0.02, "LISTs/s",
          "assumption: dashboards, users and add-ons list all pods about once a minute in a 10k-node cluster",
          "cluster-scope LISTs of all pods (served from the watch cache), all clients together", lo=0, hi=100),
    Param("watch_memory_bytes", 64_000.0, "B",
          "assumption: a cacheWatcher holds two goroutines (8 KB stacks) and a buffered channel of events "
          "(staging/src/k8s.io/apiserver/pkg/storage/cacher/cache_watcher.go)",
          "API server memory per open watch", lo=0, hi=10**9,
          plausible=(16000.0, 256000.0), plausible_source='two goroutine stacks (16 KB) up to a full buffered channel of events'),
    Param("request_memory_bytes", 100_000.0, "B",
          "assumption: a goroutine stack (8 KB), the decoded request, the response buffer and TLS/HTTP2 "
          "buffers of a small request",
          "API server memory per request in flight (beside the response body)", lo=0, hi=10**10),
    Param("event_ingest_cpu", 5e-6, "s",
          "assumption: besides decoding it, the cacher spends a few microseconds per event (versioning, "
          "the ring buffer, matching it against its watchers' selectors)",
          "CPU every API server spends on one event from etcd, beside decoding its bytes", lo=0, hi=0.1),
    Param("events_per_pod", 6.0, "events",
          "assumption: a pod's life records about six Events (Scheduled, Pulling, Pulled, Created, Started, "
          "Killing), as the etcd-storage lab assumes",
          "Events written per pod lifecycle (by the kubelets)", lo=0, hi=1000),
    Param("event_bytes", 1000.0, "B", "assumption: an Event is 0.7-1.2 KB in protobuf (as the etcd-storage lab)",
          "size of an Event object", lo=10, hi=1_500_000),
    Param("object_memory_factor", 3.0, "1",
          "assumption: a decoded Go object takes 2-4x its protobuf bytes (maps, strings, pointers)",
          "watch-cache memory per byte of stored object", lo=0.5, hi=20,
          plausible=(2.0, 4.0), plausible_source='decoded Go objects of Kubernetes types take 2-4x their protobuf bytes'),
])


#: request streams: name -> (mutating, long-running-exempt from overload shedding)
STREAMS = ("lease", "node_status", "kubelet_get", "pod_status", "controller_write", "controller_read",
           "pod_bind", "list_pods_all", "event_write")
S = {name: i for i, name in enumerate(STREAMS)}
MUTATING = np.array([True, True, False, True, True, False, True, False, True])
#: the requests a server that sheds load must still serve to keep nodes alive (APF puts node
#: leases in its own level; Alibaba's shedding would not drop them either)
EXEMPT_FROM_SHEDDING = np.array([True, False, False, False, False, False, False, False, False])
#: LIST-like streams whose response holds memory in proportion to its size
IS_LIST = np.array([False, False, False, False, False, False, False, True, False])
#: what each write stream stores in etcd (the etcd-storage lab's kinds)
STREAM_KIND = {"lease": "lease", "node_status": "node", "pod_status": "pod", "controller_write": "other",
               "pod_bind": "pod", "event_write": "event"}


@dataclass
class ClientClass:
    name: str
    user_agent: str
    count: int
    rates: np.ndarray               # requests/s per client, per stream
    watches: int                    # watches held per client
    watch_bytes_per_s: float        # event bytes pushed to one client per second (all its watches)
    relist_objects: float           # objects returned when its watch cannot resume (410)
    relist_bytes: float             # bytes of that re-list
    heavy: bool = False             # a controller (few clients, large load each)


@dataclass
class Workload:
    """Client classes x request streams, with the per-request and per-byte costs.

    Labs extend it, never fork it: :meth:`add_stream` adds a request stream (a column of every
    class's rates), :meth:`add_class` a client class (a DaemonSet, say)."""

    classes: list[ClientClass]
    stream_cpu: np.ndarray          # core-seconds per request, per stream (fan-out excluded)
    stream_extra_latency: np.ndarray  # non-CPU latency per stream (etcd for writes), s
    stream_memory: np.ndarray       # bytes held while a request of the stream is in flight
    watch_send_cpu_per_byte: float  # core-seconds per event byte per watcher
    ingest_cpu_per_s: float         # every server's watch cache decodes every event: cores
    write_bytes_per_s: float        # all writes, value bytes per second (etcd's input)
    writes_per_s: float
    cache_objects: float            # objects in the watch caches
    cache_bytes: float              # their bytes (protobuf)
    reject_cpu: float
    request_memory: float
    watch_memory: float
    object_memory_factor: float
    meta: dict = field(default_factory=dict)
    stream_names: list = field(default_factory=lambda: list(STREAMS))
    mutating: np.ndarray = field(default_factory=lambda: MUTATING.copy())
    exempt: np.ndarray = field(default_factory=lambda: EXEMPT_FROM_SHEDDING.copy())
    is_list: np.ndarray = field(default_factory=lambda: IS_LIST.copy())
    long_running: np.ndarray = field(default_factory=lambda: np.zeros(len(STREAMS), dtype=bool))

    # -- extension ---------------------------------------------------------------------
    def add_stream(self, name: str, cpu: float, extra_latency: float = 0.0, memory: float | None = None,
                   mutating: bool = False, exempt: bool = False, is_list: bool = False,
                   long_running: bool = False) -> int:
        """Add a request stream (every class sends it at rate 0 until told); returns its index."""
        if name in self.stream_names:
            raise ValueError(f"stream {name!r} exists")
        self.stream_names.append(name)
        self.stream_cpu = np.append(self.stream_cpu, cpu)
        self.stream_extra_latency = np.append(self.stream_extra_latency, extra_latency)
        self.stream_memory = np.append(self.stream_memory, self.request_memory if memory is None else memory)
        self.mutating = np.append(self.mutating, mutating)
        self.exempt = np.append(self.exempt, exempt)
        self.is_list = np.append(self.is_list, is_list)
        self.long_running = np.append(self.long_running, long_running)
        for c in self.classes:
            c.rates = np.append(c.rates, 0.0)
        return len(self.stream_names) - 1

    def add_class(self, cls: ClientClass) -> int:
        """Add a client class (its ``rates`` over the current streams); returns its index."""
        if cls.rates.size != len(self.stream_names):
            raise ValueError(f"class {cls.name!r} has {cls.rates.size} rates for {len(self.stream_names)} streams")
        self.classes.append(cls)
        return len(self.classes) - 1

    def stream(self, name: str) -> int:
        return self.stream_names.index(name)

    # -- tables -----------------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def index(self, name: str) -> int:
        return self.names.index(name)

    @property
    def counts(self) -> np.ndarray:
        return np.array([c.count for c in self.classes], dtype=np.int64)

    @property
    def rates(self) -> np.ndarray:
        """(classes x streams) requests per second per client."""
        return np.array([c.rates for c in self.classes])

    @property
    def watch_cpu(self) -> np.ndarray:
        """Core-seconds per second to push one client's watch events (per class)."""
        return np.array([c.watch_bytes_per_s for c in self.classes]) * self.watch_send_cpu_per_byte

    @property
    def watches(self) -> np.ndarray:
        return np.array([c.watches for c in self.classes], dtype=float)

    @property
    def request_rate(self) -> np.ndarray:
        """Requests per second per client, all streams (per class)."""
        return self.rates.sum(axis=1)

    def relist_cpu(self, costs: Costs) -> np.ndarray:
        """CPU of one re-list from the watch cache, per class: encode and write every object."""
        b = np.array([c.relist_bytes for c in self.classes])
        return costs.request_overhead + b * (costs.protobuf_encode_ns_per_byte + costs.watch_send_ns_per_byte) * NS

    def relist_bytes(self) -> np.ndarray:
        return np.array([c.relist_bytes for c in self.classes])

    def total_demand_cores(self) -> float:
        """The steady CPU demand of the whole workload on all servers together (cores)."""
        req = float((self.counts[:, None] * self.rates * self.stream_cpu[None, :]).sum())
        watch = float((self.counts * self.watch_cpu).sum())
        return req + watch

    def client_class_array(self) -> np.ndarray:
        """One class index per client, classes in order (kubelets first)."""
        return np.repeat(np.arange(self.n_classes), self.counts)


def heartbeat_request_rates(heartbeats: str, p: Mapping) -> tuple[float, float, float]:
    """(Lease PUTs, Node status PATCHes, Node GETs) per kubelet per second for a setting of the
    heartbeats switch: the heartbeat lab's rates (:func:`kscale_lab.labs.heartbeats.heartbeat_rates`)."""
    from ..labs.heartbeats import HEARTBEAT_PARAMS, heartbeat_rates

    q = HEARTBEAT_PARAMS.resolve({k: p[k] for k in HEARTBEAT_PARAMS.defaults() if k in p})
    return heartbeat_rates(heartbeats, q)


def build_workload(p: Mapping, costs: Costs, heartbeats: str = "upstream") -> Workload:
    """The workload of a cluster described by ``p`` (scenario + workload + cost parameters)."""
    from ..labs.heartbeats import HEARTBEAT_PARAMS

    hb = HEARTBEAT_PARAMS.resolve({k: p[k] for k in HEARTBEAT_PARAMS.defaults() if k in p})
    n = int(p["nodes"])
    pods = int(p["pods"])
    churn = float(p["pod_churn"])
    pod_bytes = float(p["pod_bytes"])
    nb, lb = hb["node_object_bytes"], hb["lease_object_bytes"]
    lease_r, post_r, get_r = heartbeat_request_rates(heartbeats, p)
    c = costs
    n_streams = len(STREAMS)

    # --- cluster writes: what etcd and every watch cache see -----------------------------
    pod_writes = churn * 7.0                       # cluster.POD_WRITES_PER_LIFECYCLE
    eps_writes = churn * float(p["endpointslice_updates_per_pod"])
    other_writes = float(p["other_requests"]) * c.background_write_share
    event_writes = churn * float(p["events_per_pod"])
    lease_writes = n * lease_r
    node_writes = n * post_r
    writes = pod_writes + eps_writes + other_writes + lease_writes + node_writes + event_writes
    write_bytes = (pod_writes * pod_bytes + eps_writes * p["endpointslice_bytes"] + other_writes
                   * p["other_request_bytes"] + lease_writes * lb + node_writes * nb + event_writes * p["event_bytes"])

    # --- per-stream costs (no fan-out: see the module docstring) --------------------------
    def put_cpu(b):
        return c.request_overhead + b * (2 * c.protobuf_decode_ns_per_byte + c.protobuf_encode_ns_per_byte) * NS

    def patch_cpu(b):
        return c.request_overhead + b * (c.protobuf_decode_ns_per_byte + c.json_encode_ns_per_byte
                                         + c.smp_ns_per_byte + c.json_decode_ns_per_byte
                                         + c.protobuf_encode_ns_per_byte) * NS

    def get_cpu(b):
        return c.get_from_cache(b)

    list_bytes = pods * pod_bytes
    cpu = np.zeros(n_streams)
    cpu[S["lease"]] = put_cpu(lb)
    cpu[S["node_status"]] = patch_cpu(nb) + (get_cpu(nb) if heartbeats == "off" else 0.0)
    cpu[S["kubelet_get"]] = get_cpu(p["other_request_bytes"])
    cpu[S["pod_status"]] = patch_cpu(pod_bytes)
    cpu[S["controller_write"]] = put_cpu(p["other_request_bytes"])
    cpu[S["controller_read"]] = get_cpu(p["other_request_bytes"])
    cpu[S["pod_bind"]] = put_cpu(pod_bytes)
    cpu[S["list_pods_all"]] = c.request_overhead + list_bytes * (c.protobuf_encode_ns_per_byte
                                                                 + c.json_encode_ns_per_byte) * NS
    cpu[S["event_write"]] = put_cpu(p["event_bytes"])
    extra = np.where(MUTATING, c.etcd_put_latency, 0.0)
    mem = np.full(n_streams, float(p["request_memory_bytes"]))
    mem[S["list_pods_all"]] += 2.0 * list_bytes    # objects copied out of the cache + the encoded body

    # --- classes ---------------------------------------------------------------------------
    classes: list[ClientClass] = []
    r = np.zeros(n_streams)
    r[S["lease"]] = lease_r
    r[S["node_status"]] = post_r
    r[S["kubelet_get"]] = float(p["kubelet_get_rate"]) + (get_r if heartbeats != "off" else 0.0)
    r[S["pod_status"]] = churn * 3.0 / max(n, 1)   # three status updates per pod lifecycle
    r[S["event_write"]] = event_writes / max(n, 1)
    kubelet_bytes = churn * 7.0 / max(n, 1) * pod_bytes + post_r * nb
    classes.append(ClientClass("kubelet", "kubelet/v1.x (linux/amd64)", n, r, int(p["kubelet_watches"]),
                               kubelet_bytes, pods / max(n, 1) + 1, pods / max(n, 1) * pod_bytes + nb))
    if p["kube_proxy"]:
        eps = float(p["services"]) * 1.2
        proxy_bytes = eps_writes * p["endpointslice_bytes"]
        classes.append(ClientClass("kube-proxy", "kube-proxy/v1.x (linux/amd64)", n, np.zeros(n_streams), 2,
                                   proxy_bytes, float(p["services"]) + eps,
                                   float(p["services"]) * 1000.0 + eps * p["endpointslice_bytes"]))
    n_ctrl = 2 + int(p["controllers_other"])
    reads = float(p["other_requests"]) * (1 - c.background_write_share)
    objects = float(p["objects"])
    all_bytes = (n * (nb + lb) + pods * pod_bytes + (objects - 2 * n - pods) * p["other_object_bytes"])
    # kube-controller-manager: the pod, ReplicaSet and Endpoint writes of churn, a share of the rest
    r = np.zeros(n_streams)
    r[S["controller_write"]] = churn * 2.0 + eps_writes + other_writes / n_ctrl
    r[S["controller_read"]] = reads / n_ctrl
    classes.append(ClientClass("kube-controller-manager", "kube-controller-manager/v1.x", 1, r,
                               int(p["controller_watches"]), write_bytes, objects, all_bytes, heavy=True))
    r = np.zeros(n_streams)
    r[S["pod_bind"]] = churn
    r[S["controller_read"]] = reads / n_ctrl
    sched_bytes = pod_writes * pod_bytes + node_writes * nb
    classes.append(ClientClass("kube-scheduler", "kube-scheduler/v1.x", 1, r, 4, sched_bytes,
                               pods + n, pods * pod_bytes + n * nb, heavy=True))
    if p["controllers_other"] > 0:
        k = int(p["controllers_other"])
        r = np.zeros(n_streams)
        r[S["controller_write"]] = other_writes / n_ctrl
        r[S["controller_read"]] = reads / n_ctrl
        r[S["list_pods_all"]] = float(p["cluster_list_rate"]) / k
        classes.append(ClientClass("other-controllers", "operator/v0.x", k, r, int(p["controller_watches"]),
                                   0.25 * write_bytes, 0.25 * objects, 0.25 * all_bytes, heavy=True))
    ingest = write_bytes * c.protobuf_decode_ns_per_byte * NS + writes * float(p["event_ingest_cpu"])
    return Workload(classes, cpu, extra, mem, c.watch_send_ns_per_byte * NS, ingest, write_bytes, writes,
                    objects, all_bytes, c.reject_overhead, float(p["request_memory_bytes"]),
                    float(p["watch_memory_bytes"]), float(p["object_memory_factor"]),
                    meta={"heartbeats": heartbeats,
                          "kind_bytes": {"lease": lb, "node": nb, "pod": pod_bytes, "event": float(p["event_bytes"]),
                                         "other": float(p["other_request_bytes"])}})

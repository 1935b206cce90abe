"""A controller's start: its informers LIST every object they watch and decode them.

Picture a new shift manager who, before giving a single order, must read every file in
the archive: at 10,000 nodes kube-controller-manager's informers hold about a million
objects (every Pod, Node, Lease, ReplicaSet, Service, ConfigMap, ... and, for the garbage
collector, the metadata of everything else). client-go's start (``SharedInformerFactory.
Start`` then ``WaitForCacheSync``) is, per resource type, one reflector that LISTs, decodes
the response, and feeds each object through its DeltaFIFO into the indexer and the event
handlers, one object after another. The types run side by side; a controller works only
when the informers it needs have synced, so the start takes as long as the longest type
(the Pods), unless the process's cores or its client rate limit are the tighter bound.

Where the LIST is served from matters:

* ``watch-cache``: client-go's first LIST asks ``resourceVersion=0`` "to allow it to be
  served from the watch cache" (``reflector.go`` ``relistResourceVersion``): one request per
  type; the API server looks at every cached object (``cache_filter_cpu_per_object``),
  encodes the list and sends it;
* ``etcd``: a consistent LIST (``resourceVersion=""``: what a reflector sends when its
  resourceVersion is unavailable, served by etcd while consistent reads from the cache are
  off, lab 4) is paged (client-go's pager, 500 objects a page), every page a quorum range
  read, decoded by the API server (``storage_decode_cpu_per_object``), and every page
  waits for the client's rate limiter (``--kube-api-qps`` / ``--kube-api-burst``).

This module counts that work (objects, bytes, pages, core-seconds, memory) from the
scenario's counts and sizes and turns it into time with the shared read costs of
:mod:`kscale_lab.apiserver.consistent_read` and :mod:`kscale_lab.etcd.range_reads`
(derived from KEP-2340's published test, never typed in) plus the client-side costs below.

Serves the article's section 8: "A controller at 10k nodes holds close to 1M objects;
fetching and deserialising them on restart took minutes."
Mirrors: ``client-go/tools/cache/reflector.go`` (``list``), ``tools/pager/pager.go``
(``defaultPageSize = 500``), ``shared_informer.go`` (``WaitForCacheSync``),
``cmd/kube-controller-manager/app/controllermanager.go`` (informers created inside the
leader callback: a cold standby), ``cmd/kube-scheduler/app/server.go`` (informers synced
before the leader election: a warm standby).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..apiserver.consistent_read import READ_PARAMS, ReadCosts
from ..etcd.range_reads import range_work
from ..params import Param, ParamSet

INFORMER_PARAMS = ParamSet([
    Param("informer_object_cpu", 20e-6, "s",
          "assumption: beyond decoding its bytes, each listed object is allocated as a typed Go object, queued "
          "in the DeltaFIFO, inserted into the indexer (namespace and other indexes) and handed to every "
          "controller's event handler (about ten for a Pod in kube-controller-manager), each a workqueue add: "
          "a few tens of microseconds",
          "client CPU per listed object beyond decoding its bytes (DeltaFIFO, indexer, event handlers)",
          lo=0.0, hi=0.01,
          plausible=(5e-6, 100e-6), plausible_source="a Go allocation, a DeltaFIFO push and pop, an indexer insert and a handful of event handlers cost microseconds each"),
    Param("informer_list_source", "watch-cache", "1",
          "client-go reflector.go relistResourceVersion: the first LIST asks resourceVersion=0 'to allow it to "
          "be served from the watch cache'; 'etcd' is the path of a consistent LIST while cached reads are off "
          "(lab 4) or of a resource without a watch cache",
          "where the informers' LISTs are served from", choices=("watch-cache", "etcd"), kind=str),
    Param("informer_page_size", 500, "objects", "client-go tools/pager/pager.go: defaultPageSize = 500",
          "objects per page of a paged (etcd) LIST", lo=1, hi=100_000, kind=int),
    Param("controller_cores", 8.0, "cores",
          "assumption: kube-controller-manager and kube-scheduler share a 32-core master with kube-apiserver "
          "and etcd; their informers' decoding gets a quarter of it",
          "CPU cores a controller process can use to decode and index what it lists", lo=0.1, hi=1024,
          plausible=(2.0, 32.0), plausible_source="from a small share of the master to all of it"),
    Param("kcm_resource_types", 40, "types",
          "assumption: kube-controller-manager's typed informers and the garbage collector's metadata "
          "informers cover every built-in resource type (about 40-60 in a cluster without many CRDs)",
          "resource types kube-controller-manager lists (the objects that are not Pods, Nodes or Leases "
          "are spread evenly over them)", lo=1, hi=10_000, kind=int,
          plausible=(20, 80), plausible_source="built-in types alone, up to built-in types plus a few dozen CRDs"),
    Param("controller_start_seconds", 2.0, "s",
          "assumption: binary start, configuration, TLS client setup and API discovery before the first LIST",
          "from process start (or, cold, from winning the lease) until the informers start listing",
          lo=0.0, hi=3600,
          plausible=(0.5, 10.0), plausible_source="a Go binary starts in well under a second; discovery and TLS add some"),
    Param("first_work_item_seconds", 0.1, "s",
          "assumption: once the caches are synced the controllers' workers start and pop their first item "
          "within a fraction of a second",
          "from 'ready to work' to the first work item processed", lo=0.0, hi=600,
          plausible=(0.01, 1.0), plausible_source="goroutines start in microseconds; a controller's first sync may wait for a slow request"),
])


@dataclass(frozen=True)
class ResourceList:
    """One resource type an informer lists: how many objects, of which mean size."""

    name: str
    objects: int
    object_bytes: float

    @property
    def nbytes(self) -> float:
        return self.objects * self.object_bytes


def controller_manager_resources(p: Mapping) -> list[ResourceList]:
    """What kube-controller-manager lists: every object of the scenario (Pods, Nodes, the node
    Leases and the rest spread over ``kcm_resource_types - 3`` other types)."""
    n, pods = int(p["nodes"]), int(p["pods"])
    rest = max(int(p["objects"]) - 2 * n - pods, 0)
    k = max(int(p["kcm_resource_types"]) - 3, 1)
    out = [ResourceList("pods", pods, float(p["pod_bytes"])),
           ResourceList("nodes", n, float(p["node_object_bytes"])),
           ResourceList("leases", n, float(p["lease_object_bytes"]))]
    each, extra = divmod(rest, k)
    for i in range(k):
        c = each + (1 if i < extra else 0)
        if c:
            out.append(ResourceList(f"other-{i}", c, float(p["other_object_bytes"])))
    return out


def scheduler_resources(p: Mapping) -> list[ResourceList]:
    """What kube-scheduler lists that matters at this scale: Pods and Nodes (its other informers,
    PVs, PVCs, StorageClasses, CSINodes, Namespaces, are small)."""
    return [ResourceList("pods", int(p["pods"]), float(p["pod_bytes"])),
            ResourceList("nodes", int(p["nodes"]), float(p["node_object_bytes"]))]


@dataclass
class WarmUp:
    """What one controller's start costs and takes.

    ``seconds``: from the first LIST to all informers synced; ``by_type``: per type;
    ``bound``: which bound set it (``longest type``, ``client cores`` or ``rate limit``);
    ``apiserver_cpu``/``etcd_cpu``: core-seconds on the serving API server / etcd;
    ``requests``: LIST requests (pages); ``bytes``: bytes sent to the controller;
    ``apiserver_memory``: bytes the API server holds while the responses are built and sent;
    ``client_memory``: the decoded caches the controller then holds.
    """

    source: str
    objects: int
    bytes: float
    requests: int
    seconds: float
    by_type: dict
    bound: str
    apiserver_cpu: float
    etcd_cpu: float
    apiserver_hold_seconds: float
    apiserver_memory: float
    client_cpu: float
    client_memory: float
    parts: dict = field(default_factory=dict)


def warm_up(resources: list[ResourceList], p: Mapping, *, source: str | None = None, qps: float = math.inf,
            burst: float = 0.0, queue_wait: float = 0.0) -> WarmUp:
    """Cost and duration of listing ``resources`` (all types at once, one reflector each).

    Per type, sequentially: the API server's work (and etcd's, paged), the bytes on the
    wire, the client decoding them and indexing every object; the types overlap, bounded by
    ``controller_cores`` and, for paged LISTs, by the client's token bucket (``qps``,
    ``burst``). ``queue_wait``: the serving API server's CPU queue when the LISTs arrive."""
    c = ReadCosts.from_params({k: v for k, v in p.items() if k in READ_PARAMS or k in _COST_KEYS})
    src = source or p["informer_list_source"]
    page = int(p["informer_page_size"])
    obj_cpu = float(p["informer_object_cpu"])
    factor = float(p.get("object_memory_factor", 3.0))
    net = c.network_bytes_per_s
    by_type, client_total, api_total, etcd_total, requests = {}, 0.0, 0.0, 0.0, 0
    hold, server_times = 0.0, {}
    sums = {"apiserver": 0.0, "etcd": 0.0, "transfer": 0.0, "client": 0.0}
    for r in resources:
        if r.objects <= 0:
            continue
        b = r.nbytes
        client = c.client_decode(b, "protobuf") + r.objects * obj_cpu
        if src == "watch-cache":
            pages = 1
            api = c.request_overhead + r.objects * c.cache_filter_cpu_per_object + c.encode_cpu(b, "protobuf")
            etcd_time, etcd_cpu, etcd_wire = 0.0, 0.0, 0.0
            rtt = c.client_rtt
        else:
            pages = int(math.ceil(r.objects / page))
            fetched = np.full(pages, page, dtype=np.float64)
            fetched[-1] = r.objects - page * (pages - 1)
            w = range_work(fetched, fetched * r.object_bytes, True, c.v)
            api = (pages * c.request_overhead + c.decode_cpu(r.objects, b) + c.encode_cpu(b, "protobuf"))
            etcd_time, etcd_cpu, etcd_wire = w.latency, w.cpu, w.transfer
            rtt = pages * c.client_rtt
        wire = b / net + etcd_wire
        server = api + etcd_time
        d = server + wire + client + rtt
        by_type[r.name] = d
        server_times[r.name] = server + wire
        client_total += client
        api_total += api
        etcd_total += etcd_cpu
        requests += pages
        sums["apiserver"] += api
        sums["etcd"] += etcd_time
        sums["transfer"] += wire
        sums["client"] += client
    longest = max(by_type.values()) if by_type else 0.0
    cores = client_total / float(p["controller_cores"])
    limited = max(0.0, requests - burst) / qps if (src == "etcd" and math.isfinite(qps) and qps > 0) else 0.0
    bounds = {"longest type": longest, "client cores": cores, "rate limit": limited}
    bound = max(bounds, key=bounds.get)
    seconds = queue_wait + bounds[bound]
    nbytes = float(sum(r.nbytes for r in resources))
    hold = queue_wait + (max(server_times.values()) if server_times else 0.0)
    # the API server holds each response while it builds and writes it: the objects copied out
    # of the cache (or decoded from etcd) and the encoded body, about twice its bytes
    api_mem = 2.0 * (nbytes if src == "watch-cache" else sum(min(r.objects, page) * r.object_bytes
                                                             for r in resources))
    return WarmUp(src, int(sum(r.objects for r in resources)), nbytes, requests, seconds, by_type, bound,
                  api_total, etcd_total, hold, api_mem, client_total, nbytes * factor,
                  {**sums, **{f"bound: {k}": v for k, v in bounds.items()}})


_COST_KEYS = {"request_overhead", "protobuf_decode_ns_per_byte", "protobuf_encode_ns_per_byte",
              "json_decode_ns_per_byte", "json_encode_ns_per_byte"}

"""The cost model: what each unit of counted work costs in simulated time.

The mechanisms count real work: bytes an API server decodes and encodes, watchers an
event is sent to, revisions etcd appends, pages bbolt writes. This module turns those
counts into CPU seconds and latency. Every parameter has a unit, a default and a
source; where no published figure exists the source says ``assumption:`` and gives
the reasoning, so that a reader can disagree and change it (``kscale-lab run
heartbeats --set json_decode_ns_per_byte=80``).

The API server's CPU cost of a request is modelled from what it does to the object's
bytes (kube-apiserver's request path, ``staging/src/k8s.io/apiserver/pkg/endpoints/
handlers/``):

* every request pays a fixed ``request_overhead`` (TLS, authn/authz, filters, admission,
  audit);
* a GET from the watch cache encodes the object once;
* a PUT (Lease renewal, protobuf) decodes the body, encodes it for etcd;
* a PATCH of Node status (kubelet's strategic merge patch, JSON) reads the stored object,
  converts it to JSON, applies the patch, decodes the result, encodes it for etcd;
* every write comes back through the watch cache (decode once) and is sent to each
  watcher that selects it (encode + write per watcher: before Kubernetes 1.17's
  serialisation cache, once per watcher).
"""

from __future__ import annotations

from dataclasses import dataclass

from .params import Param, ParamSet

NS = 1e-9
MS = 1e-3

COST_PARAMS = ParamSet([
    # --- API server capacity -------------------------------------------------------
    Param("apiservers", 3, "instances", "article section 3: the 3-API-server test",
          "number of kube-apiserver instances", lo=1, hi=64, kind=int),
    Param("apiserver_cores", 32.0, "cores",
          "kubernetes/cluster/gce/config-common.sh get-master-size: 32 vCPU masters above 500 nodes "
          "(64 above 3000; etcd shares that machine)",
          "CPU cores available to one kube-apiserver", lo=0.1, hi=1024),
    Param("max_mutating_requests_inflight", 200, "requests",
          "kube-apiserver --max-mutating-requests-inflight default (docs/upstream.md section 3)",
          "mutating requests one API server runs at once; more are rejected with 429", lo=1, hi=100_000,
          kind=int, flag="--max-mutating-requests-inflight"),
    Param("max_requests_inflight", 400, "requests",
          "kube-apiserver --max-requests-inflight default (docs/upstream.md section 3)",
          "read-only requests one API server runs at once", lo=1, hi=100_000, kind=int,
          flag="--max-requests-inflight"),
    # --- API server CPU per request -------------------------------------------------
    Param("request_overhead", 0.25 * MS, "s",
          "assumption: TLS, authn/authz, filter chain, admission and audit of a small request "
          "take a few hundred microseconds of CPU in Go",
          "CPU per request independent of the object's size", lo=0, hi=1,
          plausible=(0.1 * MS, 1.0 * MS), plausible_source="Go API servers spend 0.1-1 ms of CPU on TLS, authn/authz, admission and audit of a small request (the filter chain's share in published profiles varies with webhooks and audit level)"),
    Param("reject_overhead", 0.05 * MS, "s",
          "assumption: a 429 still costs TLS, authentication and the filter chain up to the limit check",
          "CPU to reject one request with 429", lo=0, hi=1),
    Param("json_decode_ns_per_byte", 40.0, "ns/B",
          "assumption: Go decodes typed Kubernetes JSON at ~25 MB/s per core (reflection-based; "
          "protobuf is 5-10x faster, kubernetes/kubernetes PR #25738)",
          "CPU to decode one byte of JSON into a typed object", lo=0, hi=10_000,
          plausible=(20.0, 100.0), plausible_source="Go's encoding/json decodes typed structs at 10-50 MB/s per core depending on the struct (25 MB/s assumed)"),
    Param("json_encode_ns_per_byte", 15.0, "ns/B", "assumption: JSON encoding is ~2-3x cheaper than decoding",
          "CPU to encode one byte of JSON", lo=0, hi=10_000),
    Param("smp_ns_per_byte", 60.0, "ns/B",
          "assumption: a strategic merge patch decodes both documents to maps, merges lists by key and "
          "re-encodes: more than a JSON decode",
          "CPU per byte of the patched object to apply a strategic merge patch", lo=0, hi=10_000,
          plausible=(30.0, 120.0), plausible_source="no published figure: half to twice the assumption"),
    Param("protobuf_decode_ns_per_byte", 5.0, "ns/B",
          "assumption: protobuf decoding runs at ~200 MB/s per core",
          "CPU to decode one byte of protobuf", lo=0, hi=10_000,
          plausible=(2.5, 10.0), plausible_source="Go protobuf (gogo, generated code) decodes Kubernetes objects at 100-400 MB/s per core"),
    Param("protobuf_encode_ns_per_byte", 3.0, "ns/B", "assumption: protobuf encoding runs at ~300 MB/s per core",
          "CPU to encode one byte of protobuf", lo=0, hi=10_000),
    Param("watch_send_ns_per_byte", 25.0, "ns/B",
          "calibrated on kubernetes/kubernetes#58050: 8 PATCH/s of a ~60 KB Endpoints object to 5,000 "
          "kube-proxy watchers took ~60 cores of a 64-core master (60 / (8 x 5000 x 60 KB) = 25 ns/B)",
          "CPU to encode and write one byte of an event to one watcher", lo=0, hi=10_000),
    # --- watchers -----------------------------------------------------------------
    Param("node_watchers", 10, "watchers",
          "assumption: kube-scheduler, kube-controller-manager and a few add-ons watch all Nodes "
          "(each kubelet watches only its own Node)",
          "clients that receive every Node update (plus the node's own kubelet)", lo=0, hi=1_000_000, kind=int),
    Param("lease_watchers", 1, "watchers", "kube-controller-manager's node lifecycle controller watches Leases",
          "clients that receive every node Lease update", lo=0, hi=1_000_000, kind=int),
    Param("pod_watchers", 3, "watchers", "kube-scheduler, kube-controller-manager, and the pod's kubelet",
          "clients that receive a Pod update", lo=0, hi=1_000_000, kind=int),
    Param("other_watchers", 2, "watchers", "assumption: a background object has a couple of interested controllers",
          "clients that receive a background write", lo=0, hi=1_000_000, kind=int),
    Param("background_write_share", 0.2, "1", "assumption: reads dominate a control plane's requests",
          "share of background requests that are writes", lo=0, hi=1,
          plausible=(0.1, 0.4), plausible_source="controllers mostly read from their informers: between one write in ten and two in five of the other requests"),
    # --- etcd ------------------------------------------------------------------------
    Param("etcd_put_latency", 3 * MS, "s",
          "data/etcd_real: put p50 0.8-1.4 ms, p99 2-5 ms on this machine's fast disk; cloud SSD fsync "
          "adds 1-10 ms, so 3 ms is a middle value",
          "latency of one etcd write (raft + WAL fsync + bbolt batch)", lo=0, hi=60),
    Param("etcd_wal_entry_overhead", 130.0, "B",
          "data/etcd_real section 3: (WAL bytes - value bytes) / puts = 122-136 B at 10k nodes",
          "WAL bytes per write beyond the value (key, raft entry framing, HardState)", lo=0, hi=100_000),
    Param("mvcc_record_overhead", 100.0, "B",
          "derived: bbolt leaf element 16 B + revision key 17 B + mvccpb.KeyValue fields (key ~40 B, "
          "revisions, version, lease) ~70 B",
          "bytes per stored revision beyond the value", lo=0, hi=100_000),
    Param("bbolt_page_size", 4096, "B", "bbolt: the OS page size (docs/upstream.md section 1)",
          "bbolt page size", lo=512, hi=65_536, kind=int),
    Param("bbolt_fill_percent", 0.9, "1",
          "etcd server/storage/backend/batch_tx.go: UnsafeSeqPut sets bucket.FillPercent = 0.9 for the "
          "append-only revision keys",
          "how full bbolt packs leaf pages of small values", lo=0.1, hi=1.0),
    Param("quota_backend_bytes", 2 * 1024**3, "B",
          "etcd --quota-backend-bytes default 2 GiB; 8 GiB suggested maximum (etcd.io docs, dev-guide/limit)",
          "db size at which etcd raises the NOSPACE alarm and refuses writes", lo=1024**2, hi=1024**4,
          kind=int, flag="--quota-backend-bytes"),
    Param("etcd_compaction_interval", 300.0, "s",
          "kube-apiserver --etcd-compaction-interval default 5m",
          "how often the API server compacts etcd's MVCC history", lo=0, hi=24 * 3600,
          flag="--etcd-compaction-interval"),
])


@dataclass(frozen=True)
class Costs:
    """Resolved cost parameters with helpers that turn counted work into seconds."""

    v: dict

    @classmethod
    def from_params(cls, values: dict | None = None) -> "Costs":
        return cls(COST_PARAMS.resolve(values))

    def __getattr__(self, name):
        try:
            return self.v[name]
        except KeyError:
            raise AttributeError(name) from None

    # --- API server CPU per request kind -------------------------------------------
    def watch_fanout(self, obj_bytes, watchers):
        """CPU to deliver one event of ``obj_bytes`` to ``watchers`` watchers."""
        return watchers * obj_bytes * self.watch_send_ns_per_byte * NS

    def cache_event(self, obj_bytes):
        """CPU for the watch cache to decode a write's event coming back from etcd."""
        return obj_bytes * self.protobuf_decode_ns_per_byte * NS

    def get_from_cache(self, obj_bytes):
        """GET served by the watch cache (resourceVersion=0): encode the object once."""
        return self.request_overhead + obj_bytes * (self.protobuf_encode_ns_per_byte
                                                    + self.watch_send_ns_per_byte) * NS

    def put_protobuf(self, obj_bytes, watchers):
        """PUT/UPDATE with a protobuf body (kubelet's Lease renewal)."""
        work = obj_bytes * (self.protobuf_decode_ns_per_byte        # request body
                            + self.protobuf_decode_ns_per_byte      # current object (update precondition)
                            + self.protobuf_encode_ns_per_byte) * NS  # to etcd
        return self.request_overhead + work + self.cache_event(obj_bytes) + self.watch_fanout(obj_bytes, watchers)

    def patch_json_smp(self, obj_bytes, watchers):
        """PATCH with a JSON strategic merge patch (kubelet's Node status update)."""
        work = obj_bytes * (self.protobuf_decode_ns_per_byte        # current object from storage
                            + self.json_encode_ns_per_byte          # to JSON for the patch
                            + self.smp_ns_per_byte                  # apply the patch
                            + self.json_decode_ns_per_byte          # patched JSON back to an object
                            + self.protobuf_encode_ns_per_byte) * NS  # to etcd
        return self.request_overhead + work + self.cache_event(obj_bytes) + self.watch_fanout(obj_bytes, watchers)

    def generic_write(self, obj_bytes, watchers):
        """A create/update of a background object (protobuf)."""
        return self.put_protobuf(obj_bytes, watchers)

    # --- etcd / bbolt ------------------------------------------------------------------
    def wal_bytes(self, value_bytes):
        return value_bytes + self.etcd_wal_entry_overhead

    def page_bytes(self, value_bytes):
        """Bytes of bbolt pages one stored revision occupies.

        etcd appends revisions in key order, so bbolt keeps cutting the rightmost leaf
        (``node.go`` ``splitIndex``): a piece takes elements until the next would pass
        ``page_size * bbolt_fill_percent`` (16 B page header included), but never fewer
        than ``MinKeysPerPage`` = 2; a piece spans ``ceil((16 + k * element) / page)`` pages.
        So a 15 KB Node takes 4 pages (2 per 8-page run), a 2.5 KB Pod a whole page (2 per
        2-page run), a 350 B Lease 1/8 of a page. Works on numpy arrays.
        """
        import numpy as np

        page = float(self.bbolt_page_size)
        element = np.asarray(value_bytes, dtype=np.float64) + self.mvcc_record_overhead
        threshold = float(int(page * self.bbolt_fill_percent) - 16)
        k = np.maximum(2.0, np.floor(threshold / element))
        return np.ceil((16.0 + k * element) / page) * page / k

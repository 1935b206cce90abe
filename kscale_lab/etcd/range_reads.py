"""etcd's side of a consistent read: quorum reads, paged ranges, every object decoded.

Picture a card catalogue in one long drawer, sorted by call number
(``/registry/pods/<namespace>/<name>``). A reader wants "every book on shelf 42" (the pods
with ``spec.nodeName=node-42``). The drawer has no index by shelf, so the librarian
brings the cards out a handful at a time (a *page*: ``limit`` keys per etcd range
request) and the reader reads every card, keeping the ones for shelf 42, until either
the reader's basket holds ``limit`` matching cards or the drawer is empty. For one node's
20 pods among 200,000, the basket never fills: the whole drawer comes out, 500 cards a
trip, **400 trips**. Before each trip the librarian phones the other librarians to make
sure she still holds the newest catalogue: a *linearizable* (quorum) read. etcd does
that with a ReadIndex round to a quorum of its members, so every consistent read costs
the whole etcd cluster something, and the cost does not shrink when you add members.

What is counted here, at real sizes, with numpy: for one LIST (and the continue tokens a
client like ``kubectl --chunk-size`` follows), the etcd range requests it takes, and per
range the objects fetched, the objects the API server decoded and tested against the
selector, the objects it kept and their bytes. Time and CPU come from named costs
(:data:`ETCD_READ_PARAMS`, plus ``protobuf_encode_ns_per_byte`` of
:data:`kscale_lab.costs.COST_PARAMS` for the bytes etcd marshals).

The loop mirrors kubernetes/kubernetes ``staging/src/k8s.io/apiserver/pkg/storage/etcd3/
store.go`` ``GetList``: take items from each etcd response until the bucket holds
``limit`` objects; if the bucket is full and items remain, stop and hand the client a
continue token after the last key processed; if it is not full and etcd has more, fetch
the next page. Today's store doubles the page each time a selector dropped objects, up
to ``maxLimit = 10000`` ("Double page size to reduce total number of calls to etcd");
the store of 2019 kept the page size (``grow=False``). etcd's linearizable range is
``etcdserver/v3_server.go`` ``linearizableReadNotify`` (ReadIndex).

Serves the article's section 5: "pods of one node = fetch all pods and filter ... the API
server pages its etcd reads, many round trips; every read is a quorum read".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..errors import ParameterError
from ..params import Param, ParamSet

#: store.go: the page never grows beyond this when a selector drops objects
MAX_LIMIT = 10_000

# --------------------------------------------------------------------------------------
# Published measurements the read costs are derived from (no figure typed in: the
# parameters below are computed from these tables)
# --------------------------------------------------------------------------------------

#: KEP-2340 (kubernetes/enhancements keps/sig-api-machinery/2340-Consistent-reads-from-cache),
#: "Comparing resource usage and latency": 1 LIST/s with a selector matching no object,
#: 50th percentiles. "small" = 300,000 ConfigMaps of 1 KB, "large" = 300 of 1 MB.
KEP2340_TEST = {
    "objects_small": 300_000,
    "object_bytes_small": 1024.0,
    "objects_large": 300,
    "object_bytes_large": 1024.0**2,
    "baseline_apiserver_cores": 0.10,
    "baseline_etcd_cores": 0.18,
    "off_small_qps": 0.86,            # "Handled List requests" with the feature off
    "off_small_apiserver_cores": 6.92,
    "off_small_etcd_cores": 3.57,
    "off_small_latency_s": 10.49383,
    "on_small_qps": 1.0,
    "on_small_apiserver_cores": 0.63,
    "on_small_latency_s": 0.49932,
    "off_large_qps": 1.0,
    "off_large_apiserver_cores": 3.13,
    "off_large_latency_s": 1.43849,
    "on_large_latency_s": 0.025,
}

#: etcd documentation, op-guide/performance ("etcd can read"): one client, one connection,
#: 8 B keys and 256 B values, average latency per request.
ETCD_DOCS_READS = {"linearizable_latency_s": 0.7e-3, "serializable_latency_s": 0.3e-3}

#: the protobuf byte costs the derivations subtract (kscale_lab.costs defaults)
_PB_ENCODE_NS = 3.0
_PB_DECODE_NS = 5.0


def derived_etcd_range_cpu_per_object() -> float:
    """etcd CPU per object of a range, beyond marshalling its bytes: KEP-2340's feature-off
    small-object test, (etcd cores - baseline) / LIST rate / objects, minus the bytes at
    ``protobuf_encode_ns_per_byte``."""
    k = KEP2340_TEST
    per_list = (k["off_small_etcd_cores"] - k["baseline_etcd_cores"]) / k["off_small_qps"]
    bytes_part = k["objects_small"] * k["object_bytes_small"] * _PB_ENCODE_NS * 1e-9
    return (per_list - bytes_part) / k["objects_small"]


ETCD_READ_PARAMS = ParamSet([
    Param("etcd_range_base_latency", ETCD_DOCS_READS["serializable_latency_s"], "s",
          "etcd docs op-guide/performance: serializable read, 1 client, average 0.3 ms",
          "latency of one range RPC that needs no quorum (network round trip + etcd's handling)",
          lo=0.0, hi=1.0),
    Param("etcd_read_index_latency",
          ETCD_DOCS_READS["linearizable_latency_s"] - ETCD_DOCS_READS["serializable_latency_s"], "s",
          "derived: etcd docs op-guide/performance, linearizable 0.7 ms - serializable 0.3 ms average "
          "(the ReadIndex round to a quorum)",
          "extra latency of a linearizable (quorum) read", lo=0.0, hi=1.0),
    Param("etcd_read_index_cpu", 30e-6, "s",
          "assumption: a ReadIndex round is a heartbeat message and its reply handled by every member "
          "(gRPC + raft step, tens of microseconds each)",
          "etcd CPU per member per quorum read", lo=0.0, hi=0.1),
    Param("etcd_members", 3, "members", "assumption: the usual 3-member etcd cluster",
          "etcd cluster size; a quorum read involves every member", lo=1, hi=9, kind=int),
    Param("etcd_range_cpu_per_object", derived_etcd_range_cpu_per_object(), "s",
          "derived from KEP-2340's scalability test (300,000 x 1 KB ConfigMaps, feature off): "
          "(3.57 - 0.18) etcd cores / 0.86 LIST/s, minus the bytes at protobuf_encode_ns_per_byte, "
          "per object; checks against blog.palark.com's etcd log (7,130 pods, 13.3 MB in 131 ms)",
          "etcd CPU per object of a range beyond its bytes (index walk, bbolt read, KeyValue "
          "allocation)", lo=0.0, hi=0.01),
    Param("network_bytes_per_s", 1.25e9, "B/s",
          "assumption: 10 Gbit/s between etcd, the API servers and their clients",
          "bandwidth of one response stream", lo=1e6, hi=1e12),
    Param("etcd_cores", 16.0, "cores",
          "assumption: etcd shares a 32-core master with kube-apiserver (costs.apiserver_cores' "
          "source); KEP-2340's test saw etcd use 16 cores at its 90th percentile",
          "CPU cores etcd can use (the kubelet LIST storm queues on them)", lo=0.1, hi=1024),
])


def _costs(params: Mapping | None) -> dict:
    from ..costs import COST_PARAMS

    p = dict(params or {})
    known = {k: v for k, v in p.items() if k in ETCD_READ_PARAMS}
    out = ETCD_READ_PARAMS.resolve(known)
    out["protobuf_encode_ns_per_byte"] = p.get("protobuf_encode_ns_per_byte",
                                               COST_PARAMS["protobuf_encode_ns_per_byte"].default)
    return out


# --------------------------------------------------------------------------------------
# The paging loop (store.go GetList, and the client following continue tokens)
# --------------------------------------------------------------------------------------


@dataclass
class ListPlan:
    """Every etcd range request one LIST made, in order, with counted work per range.

    ``fetched``/``fetched_bytes``: objects etcd returned; ``evaluated``/``evaluated_bytes``:
    objects the API server decoded and tested (``apiserver_storage_list_evaluated_objects_total``;
    fewer than fetched when the bucket filled mid-page); ``returned``/``returned_bytes``:
    objects that matched; ``api_page``: the HTTP request (continue token) each range
    served.
    """

    fetched: np.ndarray
    fetched_bytes: np.ndarray
    evaluated: np.ndarray
    evaluated_bytes: np.ndarray
    returned: np.ndarray
    returned_bytes: np.ndarray
    api_page: np.ndarray
    limit: int
    grow: bool

    @property
    def etcd_ranges(self) -> int:
        return int(self.fetched.size)

    @property
    def api_pages(self) -> int:
        return int(self.api_page.max()) + 1 if self.api_page.size else 0

    @property
    def objects_fetched(self) -> int:
        return int(self.fetched.sum())

    @property
    def objects_evaluated(self) -> int:
        return int(self.evaluated.sum())

    @property
    def objects_returned(self) -> int:
        return int(self.returned.sum())

    @property
    def bytes_fetched(self) -> float:
        return float(self.fetched_bytes.sum())

    @property
    def bytes_evaluated(self) -> float:
        return float(self.evaluated_bytes.sum())

    @property
    def bytes_returned(self) -> float:
        return float(self.returned_bytes.sum())

    @property
    def peak_response_bytes(self) -> float:
        """The largest single etcd response: what the API server holds at once."""
        return float(self.fetched_bytes.max()) if self.fetched_bytes.size else 0.0


def plan_list(match, sizes, limit: int, grow: bool = True, max_limit: int = MAX_LIMIT,
              follow_continue: bool = True) -> ListPlan:
    """The etcd range requests of one LIST over keys in key order.

    ``match``: bool per key (does the object pass the selector?); ``sizes``: bytes per
    key; ``limit``: the request's limit (0 = no paging: one range for everything);
    ``grow``: double the page after a page that did not fill the bucket, up to
    ``max_limit`` (today's store.go; ``False`` for Kubernetes <= 1.19's store);
    ``follow_continue``: the client follows continue tokens until the list is complete
    (``kubectl``'s ``--chunk-size`` loop, ``FollowContinue``).
    """
    match = np.asarray(match, dtype=bool)
    sizes = np.asarray(sizes, dtype=np.float64)
    if match.ndim != 1 or sizes.shape != match.shape:
        raise ParameterError("sizes", f"must be 1-D and as long as match ({match.size}); got {sizes.shape}")
    if not isinstance(limit, (int, np.integer)) or limit < 0:
        raise ParameterError("limit", f"must be an integer in [0, inf]; got {limit!r}")
    if max_limit < 1:
        raise ParameterError("max_limit", f"must be an integer in [1, inf]; got {max_limit!r}")
    n = match.size
    cm = np.concatenate(([0], np.cumsum(match, dtype=np.int64)))
    cb = np.concatenate(([0.0], np.cumsum(sizes)))
    paging = limit > 0
    rows: list[tuple] = []
    pos, page = 0, 0
    while True:                                   # one HTTP request (or continue token)
        cur, taken, more = int(limit), 0, False
        while True:                               # one etcd range request
            k = min(cur, n - pos) if paging else n - pos
            end = pos + k
            more = end < n                        # etcd's RangeResponse.More
            done = k
            if paging:
                need = limit - taken
                if cm[end] - cm[pos] >= need:     # the bucket fills inside this page
                    j = int(np.searchsorted(cm, cm[pos] + need, side="left"))  # prefix length
                    done = j - pos
                    if j < end:
                        more = True               # "if paging && len >= limit { hasMore = true; break }"
            got = int(cm[pos + done] - cm[pos])
            rows.append((k, cb[end] - cb[pos], done, cb[pos + done] - cb[pos], got,
                         _matched_bytes(match, sizes, pos, pos + done, got), page))
            taken += got
            pos += done
            if not more or not paging or taken >= limit:
                break
            if grow and cur < max_limit:
                cur = min(2 * cur, max_limit)
        page += 1
        if not (more and paging and follow_continue):
            break
    a = np.array(rows, dtype=np.float64).reshape(-1, 7)
    return ListPlan(fetched=a[:, 0].astype(np.int64), fetched_bytes=a[:, 1], evaluated=a[:, 2].astype(np.int64),
                    evaluated_bytes=a[:, 3], returned=a[:, 4].astype(np.int64), returned_bytes=a[:, 5],
                    api_page=a[:, 6].astype(np.int64), limit=int(limit), grow=bool(grow))


def _matched_bytes(match, sizes, a, b, got) -> float:
    if got == 0:
        return 0.0
    sl = slice(a, b)
    return float(sizes[sl][match[sl]].sum())


def round_trips(n_objects: int, limit: int, grow: bool, max_limit: int = MAX_LIMIT) -> int:
    """etcd range requests of an unselective-enough LIST whose bucket never fills (a
    selector matching fewer than ``limit`` of ``n_objects``): closed form of
    :func:`plan_list` for that case."""
    if limit <= 0 or n_objects <= 0:
        return 1
    left, cur, trips = n_objects, limit, 0
    while left > 0:
        left -= cur
        trips += 1
        if grow and cur < max_limit:
            cur = min(2 * cur, max_limit)
    return trips


# --------------------------------------------------------------------------------------
# What the ranges cost
# --------------------------------------------------------------------------------------


@dataclass
class EtcdReadWork:
    """Time and CPU of a sequence of etcd range requests made one after another."""

    ranges: int
    quorum_reads: int
    latency: float          # etcd's share of the caller's wait (s): RPCs + serving
    transfer: float         # bytes on the wire to the API server (s)
    cpu: float              # etcd CPU, all members (core-seconds)
    member_messages: int    # ReadIndex messages to the other members

    def __add__(self, other: "EtcdReadWork") -> "EtcdReadWork":
        return EtcdReadWork(self.ranges + other.ranges, self.quorum_reads + other.quorum_reads,
                            self.latency + other.latency, self.transfer + other.transfer,
                            self.cpu + other.cpu, self.member_messages + other.member_messages)


def range_work(fetched, fetched_bytes, linearizable: bool = True, params: Mapping | None = None) -> EtcdReadWork:
    """Cost of range requests (arrays: objects and bytes per range), served one after another.

    Per range: ``etcd_range_base_latency``, plus ``etcd_read_index_latency`` if it is a
    quorum read, plus etcd's CPU for its objects and bytes (the range is served by one
    goroutine, so its CPU is also its time), plus the transfer at ``network_bytes_per_s``.
    A quorum read also costs ``etcd_read_index_cpu`` on every member.
    """
    c = _costs(params)
    f = np.atleast_1d(np.asarray(fetched, dtype=np.float64))
    b = np.atleast_1d(np.asarray(fetched_bytes, dtype=np.float64))
    r = f.size
    serve = float((f * c["etcd_range_cpu_per_object"] + b * c["protobuf_encode_ns_per_byte"] * 1e-9).sum())
    q = r if linearizable else 0
    latency = r * c["etcd_range_base_latency"] + q * c["etcd_read_index_latency"] + serve
    cpu = serve + q * c["etcd_members"] * c["etcd_read_index_cpu"]
    return EtcdReadWork(ranges=r, quorum_reads=q, latency=latency, transfer=float(b.sum()) / c["network_bytes_per_s"],
                        cpu=cpu, member_messages=q * (c["etcd_members"] - 1))


def plan_work(plan: ListPlan, params: Mapping | None = None) -> EtcdReadWork:
    """etcd's cost of a :class:`ListPlan` (every range is a quorum read: the API server's
    etcd client reads linearizably, continue pages included)."""
    return range_work(plan.fetched, plan.fetched_bytes, True, params)

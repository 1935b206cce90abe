"""The scheduler's view of the cluster: nodes as numpy arrays, pods as compact records.

Picture the scheduler's cache as a spreadsheet with one row per node: how much CPU,
memory and how many pod slots the node offers (*allocatable*), how much of each the
pods already placed there ask for (*requested*), its labels, its taints. Placing a pod
("binding") adds the pod's requests to one row; deleting a pod subtracts them. Nothing
else changes when a pod is placed, and that single fact is what every shortcut in this
package (equivalence classes, opportunistic batching) relies on: after a bind only the
bound node's row is different.

Mirrors kube-scheduler's ``NodeInfo`` snapshot (``pkg/scheduler/framework/types.go``:
``Allocatable``, ``Requested``, ``Node().Labels``, ``Node().Spec.Taints``) and the parts
of a ``v1.PodSpec`` the default plugins read (resource requests, ``nodeSelector``,
required node affinity, tolerations, inter-pod anti-affinity). Serves the article's
section 9 (scheduler at 10k nodes; claim 8: ~10 s scheduling latency unoptimised).

Units: CPU in millicores, memory in MiB (whole MiB keep upstream's integer score
arithmetic exact), pods as a count. Labels are small integer codes per label key
(``LABEL_KEYS``); taints are bits of a mask (``TAINT_BITS``); a pod tolerates a taint
when the same bit is set in its tolerations mask. ``node.spec.unschedulable`` (cordon)
is folded in as the taint bit ``node.kubernetes.io/unschedulable``, as upstream's
NodeUnschedulable plugin treats it.

Every bind/unbind appends the node index to a *dirty log*; caches keyed by pod class
replay that log to refresh only the nodes that changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np

from ..errors import ParameterError

#: label keys, in column order of :attr:`NodeState.labels`
LABEL_KEYS: tuple[str, ...] = (
    "topology.kubernetes.io/zone",
    "node.kubernetes.io/instance-type",
    "disktype",
    "pool",
)
LABEL_ZONE, LABEL_INSTANCE_TYPE, LABEL_DISKTYPE, LABEL_POOL = range(4)

#: NoSchedule taints, one bit each
TAINT_BITS: tuple[str, ...] = (
    "node.kubernetes.io/unschedulable",
    "dedicated=gpu",
    "dedicated=infra",
    "node.kubernetes.io/disk-pressure",
)
TAINT_UNSCHEDULABLE, TAINT_GPU, TAINT_INFRA, TAINT_DISK_PRESSURE = (1 << i for i in range(4))

#: instance types: (name, cores, memory GiB); allocatable = capacity minus reservations
INSTANCE_TYPES: tuple[tuple[str, int, int], ...] = (
    ("8c32g", 8, 32),
    ("16c64g", 16, 64),
    ("32c128g", 32, 128),
    ("64c256g", 64, 256),
)


class PodSpec(NamedTuple):
    """What a pod's placement depends on, as a hashable record.

    ``node_selector``: ((label_key, value_code), ...), all must match.
    ``required_affinity``: ((label_key, allowed_values_bitmask), ...): each term is
    ``key In (values)`` of ``requiredDuringSchedulingIgnoredDuringExecution``.
    ``tolerations``: bitmask over :data:`TAINT_BITS`.
    ``anti_affinity_group``: -1 for none; otherwise pods of the same group repel each
    other on one node (required anti-affinity, topologyKey ``kubernetes.io/hostname``).
    ``topology_spread`` / ``dra_claims``: flags that make a pod unbatchable upstream.
    """

    cpu_m: int
    mem_mib: int
    node_selector: tuple = ()
    required_affinity: tuple = ()
    tolerations: int = 0
    anti_affinity_group: int = -1
    topology_spread: bool = False
    dra_claims: bool = False

    @property
    def has_anti_affinity(self) -> bool:
        return self.anti_affinity_group >= 0

    def validate(self, n_groups: int | None = None) -> "PodSpec":
        if not isinstance(self.cpu_m, (int, np.integer)) or not 1 <= self.cpu_m <= 1_000_000:
            raise ParameterError("cpu_m", f"must be an integer in [1, 1_000_000] millicores; got {self.cpu_m!r}")
        if not isinstance(self.mem_mib, (int, np.integer)) or not 1 <= self.mem_mib <= 16_000_000:
            raise ParameterError("mem_mib", f"must be an integer in [1, 16_000_000] MiB; got {self.mem_mib!r}")
        for term in self.node_selector:
            if len(term) != 2 or not 0 <= term[0] < len(LABEL_KEYS):
                raise ParameterError("node_selector", f"must be (label_key, value) pairs with key in [0, {len(LABEL_KEYS) - 1}]; got {term!r}")
        for term in self.required_affinity:
            if len(term) != 2 or not 0 <= term[0] < len(LABEL_KEYS) or term[1] <= 0:
                raise ParameterError("required_affinity", f"must be (label_key, nonzero values mask) pairs; got {term!r}")
        if not 0 <= self.tolerations < (1 << len(TAINT_BITS)):
            raise ParameterError("tolerations", f"must be a bitmask in [0, {(1 << len(TAINT_BITS)) - 1}]; got {self.tolerations!r}")
        hi = (n_groups - 1) if n_groups is not None else 1_000
        if not -1 <= self.anti_affinity_group <= hi:
            raise ParameterError("anti_affinity_group", f"must be an integer in [-1, {hi}]; got {self.anti_affinity_group!r}")
        return self


@dataclass
class NodeState:
    """Per-node arrays (length ``n``) plus the dirty log of changed nodes."""

    alloc_cpu: np.ndarray  # int64 millicores
    alloc_mem: np.ndarray  # int64 MiB
    alloc_pods: np.ndarray  # int64
    req_cpu: np.ndarray
    req_mem: np.ndarray
    req_pods: np.ndarray
    labels: np.ndarray  # int16 (n, len(LABEL_KEYS))
    taints: np.ndarray  # int64 bitmask
    anti_count: np.ndarray  # int32 (n_groups, n): pods of each anti-affinity group on the node
    dirty: list = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.alloc_cpu.shape[0])

    @property
    def zone(self) -> np.ndarray:
        return self.labels[:, LABEL_ZONE]

    @property
    def n_groups(self) -> int:
        return int(self.anti_count.shape[0])

    def copy(self) -> "NodeState":
        return NodeState(
            *(getattr(self, f).copy() for f in (
                "alloc_cpu", "alloc_mem", "alloc_pods", "req_cpu", "req_mem", "req_pods",
                "labels", "taints", "anti_count")),
            dirty=list(self.dirty),
        )

    # -- the only two mutations -------------------------------------------------
    def bind(self, node: int, pod: PodSpec) -> None:
        """Add ``pod``'s requests to ``node`` (the scheduler's *assume* + bind)."""
        self.req_cpu[node] += pod.cpu_m
        self.req_mem[node] += pod.mem_mib
        self.req_pods[node] += 1
        if pod.anti_affinity_group >= 0:
            self.anti_count[pod.anti_affinity_group, node] += 1
        self.dirty.append(node)

    def unbind(self, node: int, pod: PodSpec) -> None:
        """Remove a pod that was bound to ``node`` (pod deleted)."""
        self.req_cpu[node] -= pod.cpu_m
        self.req_mem[node] -= pod.mem_mib
        self.req_pods[node] -= 1
        if pod.anti_affinity_group >= 0:
            self.anti_count[pod.anti_affinity_group, node] -= 1
        self.dirty.append(node)

    def utilisation(self) -> np.ndarray:
        """Requested CPU as a fraction of allocatable, per node."""
        return self.req_cpu / np.maximum(self.alloc_cpu, 1)

    def overcommitted(self) -> np.ndarray:
        """Indices of nodes whose requests exceed allocatable (should always be empty)."""
        bad = (self.req_cpu > self.alloc_cpu) | (self.req_mem > self.alloc_mem) | (self.req_pods > self.alloc_pods)
        return np.flatnonzero(bad)


def make_nodes(
    n_nodes: int,
    rng: np.random.Generator,
    *,
    n_zones: int = 3,
    instance_mix: Sequence[float] = (0.1, 0.3, 0.45, 0.15),
    max_pods: int = 110,
    system_reserved_cpu_m: int = 500,
    system_reserved_mem_mib: int = 2048,
    initial_utilisation: float = 0.3,
    ssd_share: float = 0.5,
    n_pools: int = 4,
    gpu_tainted_share: float = 0.02,
    cordoned_share: float = 0.005,
    n_groups: int = 8,
) -> NodeState:
    """A cluster of ``n_nodes`` nodes with mixed instance types, zones and taints.

    ``initial_utilisation`` fills each node with already-running pods whose CPU and
    memory requests are a random fraction (uniform in [0.5, 1.5] x the value) of
    allocatable, and whose count is proportional, so scores differ between nodes as they
    do in a real cluster (an empty, uniform cluster makes every node tie).
    """
    if not isinstance(n_nodes, (int, np.integer)) or not 1 <= n_nodes <= 100_000:
        raise ParameterError("nodes", f"must be an integer in [1, 100_000]; got {n_nodes!r}")
    if not 1 <= n_zones <= 16:
        raise ParameterError("zones", f"must be an integer in [1, 16]; got {n_zones!r}")
    if not 0.0 <= initial_utilisation <= 0.6:
        raise ParameterError("initial_utilisation", f"must be a number in [0, 0.6]; got {initial_utilisation!r}")
    mix = np.asarray(instance_mix, dtype=float)
    if mix.shape != (len(INSTANCE_TYPES),) or (mix < 0).any() or mix.sum() <= 0:
        raise ParameterError("instance_mix", f"must be {len(INSTANCE_TYPES)} non-negative weights; got {instance_mix!r}")
    n = int(n_nodes)
    itype = rng.choice(len(INSTANCE_TYPES), size=n, p=mix / mix.sum())
    cores = np.array([t[1] for t in INSTANCE_TYPES], dtype=np.int64)[itype]
    gib = np.array([t[2] for t in INSTANCE_TYPES], dtype=np.int64)[itype]
    alloc_cpu = cores * 1000 - system_reserved_cpu_m
    alloc_mem = gib * 1024 - system_reserved_mem_mib
    alloc_pods = np.full(n, max_pods, dtype=np.int64)
    frac = initial_utilisation * rng.uniform(0.5, 1.5, size=n)
    frac_mem = np.clip(frac * rng.uniform(0.7, 1.3, size=n), 0, 0.95)
    req_cpu = (alloc_cpu * frac).astype(np.int64)
    req_mem = (alloc_mem * frac_mem).astype(np.int64)
    req_pods = np.minimum((frac * 30).astype(np.int64), max_pods - 1)
    labels = np.zeros((n, len(LABEL_KEYS)), dtype=np.int16)
    labels[:, LABEL_ZONE] = rng.integers(0, n_zones, size=n)
    labels[:, LABEL_INSTANCE_TYPE] = itype
    labels[:, LABEL_DISKTYPE] = (rng.random(n) < ssd_share).astype(np.int16)
    labels[:, LABEL_POOL] = rng.integers(0, n_pools, size=n)
    taints = np.zeros(n, dtype=np.int64)
    taints[rng.random(n) < gpu_tainted_share] |= TAINT_GPU
    taints[rng.random(n) < cordoned_share] |= TAINT_UNSCHEDULABLE
    return NodeState(
        alloc_cpu=alloc_cpu, alloc_mem=alloc_mem, alloc_pods=alloc_pods,
        req_cpu=req_cpu, req_mem=req_mem, req_pods=req_pods,
        labels=labels, taints=taints,
        anti_count=np.zeros((n_groups, n), dtype=np.int32),
    )


def nodes_from_arrays(
    alloc_cpu, alloc_mem, alloc_pods, req_cpu=None, req_mem=None, req_pods=None,
    labels=None, taints=None, n_groups: int = 8,
) -> NodeState:
    """Build a :class:`NodeState` from plain sequences (tests, small examples)."""
    a_cpu = np.asarray(alloc_cpu, dtype=np.int64)
    n = a_cpu.shape[0]
    z = lambda v: np.zeros(n, dtype=np.int64) if v is None else np.asarray(v, dtype=np.int64)  # noqa: E731
    lab = np.zeros((n, len(LABEL_KEYS)), dtype=np.int16) if labels is None else np.asarray(labels, dtype=np.int16)
    return NodeState(
        alloc_cpu=a_cpu, alloc_mem=np.asarray(alloc_mem, dtype=np.int64), alloc_pods=np.asarray(alloc_pods, dtype=np.int64),
        req_cpu=z(req_cpu), req_mem=z(req_mem), req_pods=z(req_pods), labels=lab, taints=z(taints),
        anti_count=np.zeros((n_groups, n), dtype=np.int32),
    )

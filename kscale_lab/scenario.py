"""One cluster scenario and nine switches, one per optimisation in the article.

A :class:`Scenario` says how big the cluster is and what it does: nodes, pods,
objects, the background workload, how long to simulate, which faults to inject
and the random seed. Its defaults are the article's target for one cluster:
**10,000 nodes, 200,000 pods, 1,000,000 objects**.

:class:`Switches` holds one setting per optimisation. Every switch has

* ``off``: the cluster as it was before the optimisation (Kubernetes ~1.12, etcd 3.3);
* ``article``: as Alibaba did it (2019);
* ``upstream``: how Kubernetes/etcd do it today, where that differs.

A lab is a scenario that stresses one mechanism and toggles its switch; the
capstone turns all nine on at once.

Memory: a run that would not fit is refused with an estimate before it starts,
instead of letting the kernel kill the notebook. Each lab itemises what its run holds
(:meth:`kscale_lab.labs.base.Lab.memory_footprint`, :mod:`kscale_lab.memory`); the limit
defaults to 1 GiB (mybinder.org gives 1-2 GB) and is raised with the environment variable
``KSCALE_LAB_MEMORY_LIMIT_GIB``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from .errors import ParameterError
from .memory import check as check_memory  # noqa: F401  (re-exported)
from .memory import memory_limit_bytes  # noqa: F401  (re-exported)
from .params import Param, ParamSet

SETTINGS = ("off", "article", "upstream")


@dataclass(frozen=True)
class SwitchSpec:
    name: str
    title: str
    article_section: str
    settings: tuple[str, ...]
    doc: dict  # setting -> one line


SWITCH_SPECS: tuple[SwitchSpec, ...] = (
    SwitchSpec(
        "freelist", "etcd storage: bbolt free-page allocator", "1",
        SETTINGS,
        {"off": "array freelist (linear first-fit scan), one etcd",
         "article": "segregated hashmap freelist (bbolt PR #141); optionally one etcd per resource type",
         "upstream": "etcd 3.5+ defaults: map freelist, 8 GiB suggested maximum"},
    ),
    SwitchSpec(
        "heartbeats", "node heartbeats: Node status vs Lease", "2",
        SETTINGS,
        {"off": "kubelet writes its whole Node status every 10 s",
         "article": "Lease renewed every 10 s; Node status every 60 s (KEP-0009, Kubernetes 1.14)",
         "upstream": "Lease (40 s) renewed every 10 s; Node status every 5 min or on change (KEP-589, 1.17+)"},
    ),
    SwitchSpec(
        "apiserver_lb", "API server load balancing", "3",
        SETTINGS,
        {"off": "clients keep one connection to one API server until it breaks",
         "article": "429 above a load threshold, close connections above a higher one; clients reconnect after "
                    "repeated 429s and periodically; maxSurge=3 upgrades",
         "upstream": "API Priority and Fairness, --goaway-chance, shutdown 429 + Connection: close"},
    ),
    SwitchSpec(
        "bookmarks", "List-Watch: watch bookmarks", "4",
        SETTINGS,
        {"off": "no bookmarks: a selective watcher's resourceVersion goes stale",
         "article": "bookmarks as in Kubernetes 1.15 (KEP-956)",
         "upstream": "today's cacher: adaptive capacity, bookmarks every ~1 min and 2 s before the deadline"},
    ),
    SwitchSpec(
        "cached_reads", "consistent reads from the watch cache, with indexes", "5",
        SETTINGS,
        {"off": "consistent GET/LIST served by etcd (quorum read, paged, filtered in the API server)",
         "article": "wait until the cache reaches etcd's current revision, serve from indexed cache",
         "upstream": "KEP-2340: progress requests every 100 ms, LISTs from cache, GETs from etcd, fallback"},
    ),
    SwitchSpec(
        "context_cancel", "context-aware request handling", "6",
        SETTINGS,
        {"off": "work continues after the client gave up; retries pile up",
         "article": "request context propagated: downstream work stops when the client is gone",
         "upstream": "request deadline plumbed from --request-timeout / ?timeout= (PR #96061)"},
    ),
    SwitchSpec(
        "flow_control", "preventing request floods", "7",
        SETTINGS,
        {"off": "only --max-requests-inflight / --max-mutating-requests-inflight",
         "article": "LISTs get 429 until the watch cache is ready; per-User-Agent rate limits",
         "upstream": "KEP-4568 resilient watch cache initialisation + API Priority and Fairness"},
    ),
    SwitchSpec(
        "hot_standby", "controller failover: hot standby", "8",
        SETTINGS,
        {"off": "standby starts its informers after winning the lease; lease expires on failover",
         "article": "standby pre-warms informers; leader releases its lease on upgrade",
         "upstream": "client-go ReleaseOnCancel; kube-scheduler warm, kube-controller-manager cold"},
    ),
    SwitchSpec(
        "scheduler", "scheduler: equivalence classes and relaxed search", "9",
        SETTINGS,
        {"off": "every pod evaluates every node",
         "article": "equivalence classes + stop after enough feasible nodes from a random start",
         "upstream": "percentageOfNodesToScore (adaptive), round-robin start; opportunistic batching (KEP-5598)"},
    ),
)
SWITCH_NAMES = tuple(s.name for s in SWITCH_SPECS)
_SPEC_BY_NAME = {s.name: s for s in SWITCH_SPECS}


def switch_spec(name: str) -> SwitchSpec:
    key = name.replace("-", "_")
    if key not in _SPEC_BY_NAME:
        raise ParameterError(name, f"is not a switch; switches: {', '.join(SWITCH_NAMES)}")
    return _SPEC_BY_NAME[key]


@dataclass(frozen=True)
class Switches:
    """One setting per optimisation. ``Switches.all("article")`` turns everything on."""

    freelist: str = "off"
    heartbeats: str = "off"
    apiserver_lb: str = "off"
    bookmarks: str = "off"
    cached_reads: str = "off"
    context_cancel: str = "off"
    flow_control: str = "off"
    hot_standby: str = "off"
    scheduler: str = "off"

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            spec = _SPEC_BY_NAME[f.name]
            if v not in spec.settings:
                raise ParameterError(f.name, f"must be one of {', '.join(spec.settings)}; got {v!r}")

    @classmethod
    def all(cls, setting: str) -> "Switches":
        return cls(**{name: setting for name in SWITCH_NAMES})

    def with_(self, **changes: str) -> "Switches":
        changes = {k.replace("-", "_"): v for k, v in changes.items()}
        for k in changes:
            switch_spec(k)
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ---------------------------------------------------------------------------
# The scenario
# ---------------------------------------------------------------------------

SCENARIO_PARAMS = ParamSet([
    Param("nodes", 10_000, "nodes", "article: target of 10k nodes per cluster",
          "number of nodes (kubelets)", lo=1, hi=100_000, kind=int),
    Param("pods", 200_000, "pods", "article: 200k pods at 10k nodes",
          "number of pods in the cluster (20 per node if you set only nodes)", lo=0, hi=2_000_000, kind=int),
    Param("objects", 1_000_000, "objects", "article: 1M objects at 10k nodes",
          "all objects stored in etcd, pods, nodes and leases included (100 per node if you set only nodes)", lo=1, hi=20_000_000, kind=int),
    Param("duration", 600.0, "s", "assumption: 10 simulated minutes cover two compaction windows",
          "simulated time", lo=1, hi=24 * 3600),
    Param("tick", 1.0, "s", "assumption: 1 s resolves 10 s heartbeats and 5 s node monitoring",
          "time step of the vectorised fleet (kubelets, background load)", lo=0.05, hi=10),
    Param("seed", 0, "1", "any", "random seed: a run is deterministic for a seed", lo=0, hi=2**32 - 1, kind=int),
    Param("pod_churn", 20.0, "pods/s", "kubernetes/community sig-scalability/slos/slos.md: steady state = churn <= 20/s",
          "pods created (and as many deleted) per second", lo=0, hi=10_000),
    Param("other_requests", 500.0, "requests/s",
          "assumption: controllers, users and add-ons at 10k nodes; the SLO's steady state has no published QPS",
          "background API requests per second that are neither heartbeats nor pod churn", lo=0, hi=1_000_000,
          plausible=(250.0, 1000.0), plausible_source="no published figure: half to twice the assumption (the SLO's steady state has no published QPS)"),
    Param("other_request_bytes", 2048.0, "B",
          "assumption: a typical small object (ConfigMap, Endpoints slice, Pod) is 1-4 KB in protobuf",
          "mean object size of a background request", lo=0, hi=10_000_000,
          plausible=(1024.0, 4096.0), plausible_source="the source's own range: a small object is 1-4 KB in protobuf"),
    Param("pod_bytes", 2500.0, "B", "assumption: a Pod without managedFields is ~2-3 KB in protobuf",
          "mean size of a Pod object in etcd", lo=100, hi=1_500_000,
          plausible=(2000.0, 4000.0), plausible_source="a 2019 Pod (no managedFields) is 2-3 KB in protobuf; up to ~4 KB with long env and volume lists"),
    Param("other_object_bytes", 1024.0, "B",
          "assumption: ConfigMaps, Secrets, Services, Endpoints, ReplicaSets, Events average ~1 KB",
          "mean size of the objects that are neither pods, nodes nor leases", lo=10, hi=1_500_000,
          plausible=(512.0, 2048.0), plausible_source="no published figure: half to twice the assumption"),
    Param("cpu_hog", 0.0, "cores", "fault injection: something else (e.g. a LIST storm) takes API server CPU",
          "extra CPU demand, spread over the API servers, during the fault window", lo=0, hi=10_000),
    Param("cpu_hog_at", 300.0, "s", "fault injection", "start of the CPU hog", lo=0, hi=24 * 3600),
    Param("cpu_hog_for", 60.0, "s", "fault injection", "length of the CPU hog", lo=0, hi=24 * 3600),
])


# The article's cluster: 200k pods and 1M objects at 10k nodes.
PODS_PER_NODE = 20
OBJECTS_PER_NODE = 100


def scale_with_nodes(values: dict, given: set) -> dict:
    """A user who sets ``nodes`` but not ``pods``/``objects`` gets a cluster of that size
    with the article's proportions (20 pods and 100 objects per node), not 10k nodes'
    pods on 1k nodes. What the user set is never changed."""
    out = dict(values)
    if "nodes" in given:
        if "pods" not in given:
            out["pods"] = int(out["nodes"] * PODS_PER_NODE)
        if "objects" not in given:
            out["objects"] = max(int(out["nodes"] * OBJECTS_PER_NODE), 2 * out["nodes"] + out["pods"])
    return out


@dataclass(frozen=True)
class Scenario:
    """The cluster and its workload. Build it with :meth:`from_params` to validate."""

    nodes: int = 10_000
    pods: int = 200_000
    objects: int = 1_000_000
    duration: float = 600.0
    tick: float = 1.0
    seed: int = 0
    pod_churn: float = 20.0
    other_requests: float = 500.0
    other_request_bytes: float = 2048.0
    pod_bytes: float = 2500.0
    other_object_bytes: float = 1024.0
    cpu_hog: float = 0.0
    cpu_hog_at: float = 300.0
    cpu_hog_for: float = 60.0
    switches: Switches = field(default_factory=Switches)

    @classmethod
    def from_params(cls, values: Mapping[str, Any] | None = None, switches: Switches | None = None) -> "Scenario":
        """Validate ``values`` (unknown scenario names are errors) and build."""
        v = SCENARIO_PARAMS.resolve(values)
        sc = cls(**v, switches=switches or Switches())
        sc.check()
        return sc

    def check(self) -> None:
        """Cross-parameter checks, each naming the parameter at fault."""
        if self.objects < 2 * self.nodes + self.pods:
            raise ParameterError(
                "objects",
                f"must be at least 2*nodes + pods = {2 * self.nodes + self.pods:,} (every node has a Node and a "
                f"Lease, every pod is an object); got {self.objects:,}",
            )
        if self.tick > self.duration:
            raise ParameterError("tick", f"must not exceed duration ({self.duration:g} s); got {self.tick:g}")
        steps = self.duration / self.tick
        if steps > 2_000_000:
            raise ParameterError(
                "tick", f"gives {steps:,.0f} steps for duration {self.duration:g} s; at most 2,000,000 "
                f"(raise tick or shorten duration)")

    def expected_writes(self) -> int:
        """Writes to etcd over the run, at most: one Lease and some Node status per node per
        10 s, pod churn at ~7 writes per pod lifecycle, background writes."""
        return int(self.nodes * self.duration / 10.0 * 1.2 + self.pod_churn * 7 * self.duration
                   + self.other_requests * self.duration)

    def replace(self, **changes) -> "Scenario":
        sc = replace(self, **changes)
        sc.check()
        return sc

    def params(self) -> dict:
        return {p.name: getattr(self, p.name) for p in SCENARIO_PARAMS}

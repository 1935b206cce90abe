"""The scheduling queue in modelled time: where ~10 s of scheduling latency comes from.

Think of kube-scheduler as a single checkout counter. Pods join the queue when they
are created (a steady trickle of churn, then a Deployment scale-up that adds thousands
at once); the counter serves one pod per *scheduling cycle*; the cycle takes as long as
the work it does: filter plugins on each node evaluated, score plugins on each node
scored, a fixed per-cycle overhead. Binding is asynchronous (upstream binds in a
goroutine after *assume*), so it delays the pod but not the counter. When a burst
arrives faster than the counter serves, the queue grows, and a pod's latency is
mostly the time spent waiting behind the pods in front of it: at 10,000 nodes, a
cycle that evaluates every node is slow enough that a few thousand queued pods wait
seconds. That is the article's claim 8 (unoptimised: ~10 s scheduling latency at
10k nodes); equivalence classes and relaxed search shorten the cycle.

Nothing here runs a process per pod. The loop steps through cycles; each cycle calls
:class:`kscale_lab.scheduler.search.Scheduler` (real filters and scores over numpy node
arrays) and converts the *counted* work into seconds with the cost parameters in
:data:`PARAMS`, each with a unit and a source. The latency targets (the article's
~10 s; scheduler_perf's throughput thresholds) are not in the code: they are what the
lab compares its output against.

The two ideas of the article are parameters, ``equivalence_classes`` and
``relaxed_search``, whose defaults depend on the setting (:data:`SETTING_DEFAULTS`:
both on in ``"article"``, relaxed search on in ``"upstream"``) and which a caller can
switch one by one. ``node_cost_factor`` multiplies every per-node cost: 1 is today's
kube-scheduler; :func:`calibrate_node_cost_factor` solves it for a published
measurement (2018's scheduler_perf, 18.6 ms per pod at 5,000 nodes: about 8).
:func:`time_series` turns the per-pod frame into what a dashboard scrapes each second.

Metric names follow kube-scheduler (``pkg/scheduler/metrics/metrics.go``):
``scheduler_pod_scheduling_sli_duration_seconds`` (queue entry to bind; its older name
``scheduler_pod_scheduling_duration_seconds``), ``scheduler_scheduling_attempt_duration_seconds``
(one attempt: algorithm + binding), ``scheduler_schedule_attempts_total{result}``.

Unschedulable pods go back to the queue after a backoff (``podInitialBackoffSeconds``
doubling up to ``podMaxBackoffSeconds``) and are given up after ``max_attempts`` (a
simplification: upstream keeps them pending and requeues them on cluster events).
"""

from __future__ import annotations

import heapq
import time
from array import array
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..errors import ParameterError
from ..params import Param, ParamSet
from .cluster_state import (
    LABEL_DISKTYPE, LABEL_KEYS, LABEL_ZONE, TAINT_GPU, NodeState, PodSpec, make_nodes,
)
from .plugins import FILTER_PLUGINS
from .search import MODE_DEFAULTS, MODES, Decision, Scheduler

_KEP = "kubernetes/enhancements keps/sig-scheduling/5598-opportunistic-batching"
_SO = "kubernetes/kubernetes pkg/scheduler/schedule_one.go"

PARAMS = ParamSet([
    # ---------------------------------------------------------------- scenario
    Param("nodes", 10_000, "1", "docs/article.md: target 10k nodes",
          "cluster size (the kit's range, as kscale_lab.scenario; memory is checked by estimate, "
          "KSCALE_LAB_MEMORY_LIMIT_GIB)", 1, 100_000, kind=int),
    Param("seed", 0, "1", "convention", "seed for numpy.random.default_rng", 0, 2**31 - 1, kind=int),
    Param("initial_utilisation", 0.3, "1",
          "assumption: a production cluster is partly full before the burst; scores then differ between nodes",
          "mean requested/allocatable of already-running pods", 0.0, 0.6,
          plausible=(0.15, 0.5), plausible_source="a production cluster is a sixth to a half full before a scale-up"),
    Param("churn_rate", 20.0, "pods/s",
          "kubernetes/community sig-scalability/slos/slos.md: steady state is churn <= 20/s (docs/upstream.md)",
          "arrival rate of pods from the steady churn", 0.0, 1_000.0),
    Param("churn_duration_s", 60.0, "s", "assumption: a window long enough to contain the burst",
          "length of the churn arrival window", 0.0, 3_600.0),
    Param("churn_templates", 8, "1", "assumption: a handful of Deployments account for most churn",
          "distinct pod templates in the churn", 1, 200, kind=int),
    Param("pod_lifetime_s", 300.0, "s", "assumption: short-lived batch-like churn pods",
          "mean lifetime of churn pods (exponential); burst pods are never deleted", 1.0, 1e6),
    Param("burst_pods", 3_000, "pods", "assumption: a scale-up of a few thousand replicas (article section 9)",
          "pods created by the burst", 0, 500_000, kind=int,
          plausible=(1_500, 6_000), plausible_source="the article gives no burst size: a scale-up of a few thousand replicas, half to twice 3,000"),
    Param("burst_at_s", 10.0, "s", "assumption", "time the burst starts", 0.0, 3_600.0),
    Param("burst_creation_rate", 1_000.0, "pods/s",
          "assumption: the ReplicaSet controller's client QPS raised for a 10k-node cluster "
          "(kube-controller-manager --kube-api-qps default is 20 [memory])",
          "rate at which the burst's pods are created; 0 creates them all at once", 0.0, 1e6,
          plausible=(500.0, 2_000.0), plausible_source="no published figure: half to twice the assumption (the ReplicaSet controller's raised client QPS)"),
    Param("burst_deployments", 1, "1", "assumption", "the burst is this many Deployments created back to back, "
          "each with its own template", 1, 1_000, kind=int),
    Param("burst_cpu_m", 500, "millicores", "assumption: a typical small service replica", "cpu request of burst pods",
          1, 64_000, kind=int),
    Param("burst_mem_mib", 1_024, "MiB", "assumption", "memory request of burst pods", 1, 256_000, kind=int),
    Param("burst_affinity_share", 0.1, "1",
          "assumption: some workloads spread replicas with required pod anti-affinity (hostname)",
          "share of burst pods with required inter-pod anti-affinity (mixed into the burst)", 0.0, 1.0),
    # ---------------------------------------------------------------- mechanisms (per setting, see SETTING_DEFAULTS)
    Param("equivalence_classes", False, "1",
          "article section 9 (equivalence classes); kube-scheduler's eCache, feature gate EnableEquivalenceClassCache "
          "(kubernetes/kubernetes PRs #36238, #65714), removed after issue #71013. Default per setting: on in 'article'",
          "evaluate filters and scores once per pod class, then only on the nodes changed since (cached reads cost "
          "equivalence_read_cost_s)", kind=bool, flag="--feature-gates=EnableEquivalenceClassCache"),
    Param("equivalence_cache_scores", True, "1",
          "article section 9: 'evaluate predicates/priorities once per class' (scores cached too); "
          "kube-scheduler's eCache (pkg/scheduler/core/equivalence, 1.8-1.12) cached predicate results only, "
          "so ecache_effect (issue #63784's experiment) sets it false",
          "with equivalence classes, cache the scores as well as the filter results (false: every feasible "
          "node is scored afresh, as upstream's eCache did)", kind=bool),
    Param("relaxed_search", False, "1",
          "article section 9 (relaxed randomisation); upstream percentageOfNodesToScore (pkg/scheduler/schedule_one.go "
          "numFeasibleNodesToFind). Default per setting: on in 'article' and 'upstream'",
          "stop after enough feasible nodes (random start in off/article, round-robin in upstream); false in "
          "'upstream' means percentageOfNodesToScore: 100", kind=bool, flag="percentageOfNodesToScore"),
    # ---------------------------------------------------------------- scheduler config
    Param("percentage_of_nodes_to_score", 0, "%", _SO + " numFeasibleNodesToFind; 0 = adaptive default",
          "upstream percentageOfNodesToScore", 0, 100, kind=int, flag="percentageOfNodesToScore"),
    Param("article_nodes_to_find", 0, "nodes",
          "assumption: the article gives no number; 0 reuses upstream's adaptive count so settings differ only in mechanism",
          "feasible nodes after which the article's relaxed search stops", 0, 100_000, kind=int),
    Param("opportunistic_batching", True, "1", _KEP + "; pkg/features/kube_features.go: OpportunisticBatching beta, default true, v1.35",
          "KEP-5598 batching in the upstream setting", kind=bool, flag="--feature-gates=OpportunisticBatching"),
    Param("batching_rescore", False, "1", "kubernetes/kubernetes PR #140289 (v1.37): re-score the last node if still feasible",
          "batch also when several pods fit one node", kind=bool),
    Param("pod_topology_spread_defaults", False, "1",
          _KEP + ": pods under default topology spread constraints are unsignable; upstream's batching perf test "
          "disables them (test/integration/scheduler_perf/batching/scheduler-config-no-topology.yaml)",
          "system-default PodTopologySpread applies (makes every pod unbatchable)", kind=bool),
    # ---------------------------------------------------------------- cost model
    Param("node_cost_factor", 1.0, "1",
          "1 = the plugin costs below (today's kube-scheduler). kube-scheduler 1.9-1.11 (2018) cost ~7x more per node: "
          "scheduler_perf measured 18.6 ms/pod at 5,000 nodes with every node evaluated (kubernetes/kubernetes PR "
          "#65714, comment of 2018-07-25), 100+ pods/s at 3,000 nodes (issue #63784); see "
          "kscale_lab.scheduler.sim.calibrate_node_cost_factor",
          "multiplies every per-node cost (filters, scores, cached reads): the speed of the scheduler's code per node",
          0.1, 100.0),
    Param("filter_cost_s", 0.3e-6, "s/(node*plugin)",
          "assumption: one Filter call on a cached NodeInfo = interface dispatch, a few field reads with cache "
          "misses on 10k NodeInfos, a Status; 0.1-0.5 us in Go",
          "single-core time of one cheap filter plugin on one node", 0.0, 1e-3,
          plausible=(0.1e-6, 0.5e-6), plausible_source="the source's own range: 0.1-0.5 us per cheap Filter call in Go"),
    Param("interpod_filter_cost_s", 3e-6, "s/node",
          "assumption: InterPodAffinity walks the pods with affinity terms and topology maps; ~10x a cheap filter "
          "(issue #71013: the only plugin where caching paid off)",
          "single-core time of the InterPodAffinity filter on one node", 0.0, 1e-3,
          plausible=(1.5e-6, 6e-6), plausible_source="no published figure: half to twice the assumption"),
    Param("score_cost_s", 0.4e-6, "s/(node*plugin)",
          "assumption: Score call + weight + NodePluginScores bookkeeping, a bit more than a filter",
          "single-core time of one score plugin on one node", 0.0, 1e-3,
          plausible=(0.2e-6, 0.8e-6), plausible_source="no published figure: half to twice the assumption"),
    Param("other_filter_plugins", 4, "plugins",
          "pkg/scheduler/apis/config/v1/default_plugins.go lists 15 Filter plugins; 4 are modelled, most of the "
          "rest PreFilter-Skip for pods without volumes/ports/spread (assumption: ~4 still run per node)",
          "unmodelled default filter plugins that still run on each node", 0, 20, kind=int),
    Param("other_score_plugins", 2, "plugins",
          "default_plugins.go: 7 Score plugins; 2 modelled; PreScore-Skip drops most others for pods without "
          "preferences (assumption: ~2 still run)",
          "unmodelled default score plugins that still run on each scored node", 0, 20, kind=int),
    Param("parallelism", 16, "goroutines", "kubernetes/kubernetes pkg/scheduler/framework/parallelize/parallelism.go "
          "DefaultParallelism = 16", "filter/score worker goroutines", 1, 256, kind=int, flag="parallelism"),
    Param("parallel_efficiency", 0.5, "1",
          "assumption: 16 goroutines on an 8+ core control-plane node, with chunking and memory stalls",
          "effective speedup = parallelism x efficiency (never more than the nodes processed)", 0.01, 1.0,
          plausible=(0.25, 1.0), plausible_source="16 goroutines on an 8+ core node: from a quarter of ideal (memory stalls, chunking) to ideal"),
    Param("cycle_overhead_s", 0.5e-3, "s",
          "assumption: queue pop, snapshot update, PreFilter/PreScore, assume, reserve, metrics per cycle; chosen "
          "so that 5,000 nodes give the order of scheduler_perf SchedulingBasic/5000Nodes (threshold 680 pods/s)",
          "fixed cost of one scheduling cycle", 0.0, 1.0,
          plausible=(0.25e-3, 1e-3), plausible_source="no published figure: half to twice the assumption"),
    Param("bind_latency_s", 5e-3, "s", "assumption: one API call to create the Binding (async to the cycle)",
          "time from the end of the cycle to the pod being bound", 0.0, 10.0),
    Param("equivalence_lookup_cost_s", 5e-6, "s/pod",
          "assumption: hashing the pod's equivalence key and taking the cache lock (issue #71013: lock contention)",
          "per-cycle cost of finding the pod's class (article setting)", 0.0, 1e-2),
    Param("equivalence_read_cost_s", 0.4e-6, "s/(node*plugin)",
          "assumption from kubernetes/kubernetes issue #63784 (eCache on: 60+ pods/s, off: 100+ pods/s at 3,000 "
          "nodes; 'predicates do not cost much more than ecache.Get') and #71013 (three-level cache under locks): "
          "one cached per-node, per-plugin read costs a bit more than running a cheap filter",
          "cost of reading one cached per-node, per-plugin result (article setting)", 0.0, 1e-3,
          plausible=(0.2e-6, 0.8e-6), plausible_source="no published figure: half to twice the assumption: a Go map lookup under a read lock, 0.1-1 us (issue #71013 reports contention)"),
    Param("pod_initial_backoff_s", 1.0, "s", "kubernetes/kubernetes pkg/scheduler/internal/queue/scheduling_queue.go DefaultPodInitialBackoffDuration = 1s",
          "first retry delay of an unschedulable pod", 0.0, 60.0, flag="podInitialBackoffSeconds"),
    Param("pod_max_backoff_s", 10.0, "s", "kubernetes/kubernetes pkg/scheduler/internal/queue/scheduling_queue.go DefaultPodMaxBackoffDuration = 10s",
          "maximum retry delay", 0.0, 600.0, flag="podMaxBackoffSeconds"),
    Param("max_attempts", 5, "1", "assumption: simplification, see module docstring",
          "attempts after which an unschedulable pod is left pending", 1, 100, kind=int),
])

#: named scenarios: overrides of PARAMS defaults
SCENARIOS: dict[str, dict] = {
    "burst": {},
    "churn": {"burst_pods": 0},
    "scale-200k": {"burst_pods": 200_000, "burst_deployments": 20, "burst_creation_rate": 0.0,
                   "burst_affinity_share": 0.05, "churn_duration_s": 30.0},
}

SETTINGS = MODES

#: parameters whose default depends on the setting (applied only where the caller did not set them)
SETTING_DEFAULTS: dict[str, dict[str, Any]] = {
    m: {k: v for k, v in MODE_DEFAULTS[m].items() if v != PARAMS[k].default} for m in MODES
}


# --------------------------------------------------------------------------- workload
class Workload:
    """Pods to schedule, sorted by arrival: a template index per pod plus the templates."""

    def __init__(self, arrival: np.ndarray, template: np.ndarray, lifetime: np.ndarray, burst: np.ndarray,
                 templates: list[PodSpec], template_names: list[str]):
        self.arrival = arrival
        self.template = template
        self.lifetime = lifetime
        self.burst = burst
        self.templates = templates
        self.template_names = template_names

    def __len__(self) -> int:
        return int(self.arrival.shape[0])


def make_workload(p: Mapping[str, Any], rng: np.random.Generator, n_zones: int = 3, n_groups: int = 8) -> Workload:
    """Steady churn (Poisson arrivals from a few templates) plus a Deployment burst."""
    templates: list[PodSpec] = []
    names: list[str] = []
    cpu_choices = np.array([100, 250, 500, 1000, 2000])
    mem_choices = np.array([128, 256, 512, 1024, 4096])
    for i in range(p["churn_templates"]):
        cpu = int(rng.choice(cpu_choices))
        mem = int(rng.choice(mem_choices))
        u = rng.random()
        if u < 0.2:
            spec = PodSpec(cpu, mem, node_selector=((LABEL_DISKTYPE, 1),))
        elif u < 0.35:
            zones = int(rng.integers(1, 1 << n_zones)) or 1
            spec = PodSpec(cpu, mem, required_affinity=((LABEL_ZONE, zones),))
        elif u < 0.45:
            spec = PodSpec(cpu, mem, tolerations=TAINT_GPU)
        else:
            spec = PodSpec(cpu, mem)
        templates.append(spec)
        names.append(f"churn-{i}")
    n_churn = int(rng.poisson(p["churn_rate"] * p["churn_duration_s"])) if p["churn_rate"] > 0 else 0
    c_arr = np.sort(rng.uniform(0.0, p["churn_duration_s"], n_churn))
    weights = 1.0 / np.arange(1, p["churn_templates"] + 1)  # Zipf-like popularity
    c_tmpl = rng.choice(p["churn_templates"], size=n_churn, p=weights / weights.sum())
    c_life = rng.exponential(p["pod_lifetime_s"], n_churn)

    nb = p["burst_pods"]
    b_arr = np.zeros(0)
    b_tmpl = np.zeros(0, dtype=np.int64)
    if nb > 0:
        rate = p["burst_creation_rate"]
        b_arr = p["burst_at_s"] + (np.arange(nb) / rate if rate > 0 else np.zeros(nb))
        nd = p["burst_deployments"]
        dep = (np.arange(nb) * nd) // nb  # deployments created back to back
        base = len(templates)
        for d in range(nd):
            cpu = p["burst_cpu_m"] if d == 0 else int(p["burst_cpu_m"] * (0.5 + rng.random()))
            mem = p["burst_mem_mib"] if d == 0 else int(p["burst_mem_mib"] * (0.5 + rng.random()))
            templates.append(PodSpec(max(cpu, 1), max(mem, 1)))
            names.append(f"burst-{d}")
            templates.append(PodSpec(max(cpu, 1), max(mem, 1), anti_affinity_group=d % n_groups))
            names.append(f"burst-{d}-anti-affinity")
        anti = rng.random(nb) < p["burst_affinity_share"]
        b_tmpl = base + 2 * dep + anti.astype(np.int64)
    for spec in templates:
        spec.validate(n_groups)
    arrival = np.concatenate([c_arr, b_arr])
    template = np.concatenate([c_tmpl, b_tmpl]).astype(np.int64)
    lifetime = np.concatenate([c_life, np.full(b_arr.shape[0], np.inf)])
    burst = np.concatenate([np.zeros(n_churn, dtype=bool), np.ones(b_arr.shape[0], dtype=bool)])
    order = np.argsort(arrival, kind="stable")
    return Workload(arrival[order], template[order], lifetime[order], burst[order], templates, names)


# --------------------------------------------------------------------------- cost
class CostModel:
    """Seconds of one scheduling cycle, from the work a :class:`Decision` counted.

    ``cycle = cycle_overhead + [lookup] + filter work / speedup + score work / speedup
    + cached reads / speedup``, where work is nodes x plugins x per-plugin cost (times
    ``node_cost_factor``) and the speedup of the ``parallelism`` goroutines (x
    ``parallel_efficiency``) never exceeds the number of nodes handled. The eCache
    lookup and reads are charged only when equivalence classes are on.
    """

    def __init__(self, p: Mapping[str, Any], mode: str, equivalence_classes: bool | None = None):
        self.mode = mode
        eq = MODE_DEFAULTS[mode]["equivalence_classes"] if equivalence_classes is None else equivalence_classes
        f = p.get("node_cost_factor", 1.0)
        self.c_f = p["filter_cost_s"] * f
        self.c_ip = p["interpod_filter_cost_s"] * f
        self.c_s = p["score_cost_s"] * f
        self.n_other_f = p["other_filter_plugins"]
        self.n_score = 2 + p["other_score_plugins"]
        self.speedup = max(1.0, p["parallelism"] * p["parallel_efficiency"])
        self.overhead = p["cycle_overhead_s"]
        self.lookup = p["equivalence_lookup_cost_s"] if eq else 0.0
        self.c_read = p["equivalence_read_cost_s"] * f
        self.cycle = self._make_cycle()

    def _make_cycle(self):
        c_f, c_ip, c_s, c_read = self.c_f, self.c_ip, self.c_s, self.c_read
        n_other_f, n_score, speedup = self.n_other_f, self.n_score, self.speedup
        base = self.overhead + self.lookup
        read_f = 3 + n_other_f

        def cycle(d) -> float:
            """Seconds of the cycle that produced Decision ``d`` (fields by position: see Decision)."""
            items = d[1]
            work = (d[2] + d[3] + d[4] + d[6] * n_other_f) * c_f + d[5] * c_ip
            t = base + (work if items <= 1 else work / (speedup if items >= speedup else items))
            sc = d[7]
            if sc:
                work = sc * n_score * c_s
                t += work if sc <= 1 else work / (speedup if sc >= speedup else sc)
            reads = d[8]
            if reads:
                work = (reads * read_f + d[9] * n_score) * c_read
                t += work if reads <= 1 else work / (speedup if reads >= speedup else reads)
            return t

        return cycle


# --------------------------------------------------------------------------- memory
def footprint(p: Mapping[str, Any], setting: str):
    """What a run holds at its peak (a :class:`kscale_lab.memory.Footprint`), from the
    resolved parameters ``p``: the nodes (twice: a prepared cluster and its copy), the
    pods and their per-pod lists, one record per scheduling attempt (at most
    ``max_attempts`` per pod), one table per pod class over every node (filter codes,
    scores, the feasible index, score buckets, prefix counts), the per-pod frame and the
    per-second series."""
    from ..memory import PY_FLOAT_BYTES, PY_INT_BYTES, PY_LIST_SLOT_BYTES, Footprint

    n = int(p["nodes"])
    churn_mean = p["churn_rate"] * p["churn_duration_s"]
    churn = churn_mean + 8.0 * np.sqrt(churn_mean) + 16.0 if churn_mean > 0 else 0.0
    pods = churn + int(p["burst_pods"])
    attempts = pods * int(p["max_attempts"])
    classes = min(int(p["churn_templates"]), churn) + (2 * int(p["burst_deployments"]) if p["burst_pods"] else 0)
    classes = min(classes, pods)
    nf = len(Decision._fields)
    fp = Footprint(f"scheduler, {n:,} nodes, {int(pods):,} pods, {int(classes):,} pod classes")
    # nodes: 6 int64 resources, labels (int16), taints, anti-affinity counts (8 groups, int32)
    node_bytes = 6 * 8 + 2 * len(LABEL_KEYS) + 8 + 8 * 4
    fp.add("nodes (prepared and copied)", n, 2 * node_bytes)
    fp.add("drawing nodes", n, 12 * 8, phase="prepare")
    fp.add("pods (arrival, template, lifetime)", pods, 25)
    fp.add("drawing pods", pods, 10 * 8, phase="prepare")
    # the loop's per-pod lists: arrival and lifetime floats, template ints, pod specs
    fp.add("per-pod lists", pods, 4 * PY_LIST_SLOT_BYTES + 2 * PY_FLOAT_BYTES + PY_INT_BYTES, since="schedule")
    fp.add("attempt records", attempts, 8 * (3 + nf), since="schedule")
    # queues: deletions (time, node, pod), retries, failed counts; the dirty log (node per bind)
    fp.add("queues", pods, 250, since="schedule")
    fp.add("dirty log", attempts + pods, PY_LIST_SLOT_BYTES + PY_INT_BYTES, since="schedule")
    # per class and node: code int8, score int64, feasible bool, score-where-feasible int64,
    # the feasible index (array q), and either the score buckets and positions (exhaustive
    # search: node ids and small positions in lists) or two prefix-count lists (ring scans):
    # two list slots and at most two int objects either way
    per_node = 1 + 8 + 1 + 8 + 8 + 2 * (PY_LIST_SLOT_BYTES + PY_INT_BYTES)
    fp.add("pod class tables", classes * n, per_node, since="schedule")
    fp.add("one class table's build", n, 12 * 8, phase="schedule")
    fp.add("a batch's sorted nodes", n, 200, phase="schedule")
    fp.add("random draws", 1 << 16, PY_LIST_SLOT_BYTES + PY_FLOAT_BYTES, since="schedule")
    # the per-pod frame: ~36 columns, built from per-attempt sums, copied into the DataFrame
    fp.add("per-pod frame", pods, 36 * 8, since="frame")
    fp.add("per-pod frame build", pods, 36 * 8 + 8 * 8, phase="frame")
    fp.add("per-attempt sums", attempts, 5 * 8, phase="frame")
    fp.add("nodes frame", n, 7 * 8 * 2, since="frame")
    # the series: bins of series_bin_s up to the last bind; a cycle costs at most every node
    # through every plugin without parallelism
    f = p["node_cost_factor"]
    n_f = 3 + p["other_filter_plugins"]
    n_s = 2 + p["other_score_plugins"]
    cycle = (p["cycle_overhead_s"] + p["equivalence_lookup_cost_s"]
             + n * f * (n_f * p["filter_cost_s"] + p["interpod_filter_cost_s"] + n_s * p["score_cost_s"]
                        + (n_f + n_s) * p["equivalence_read_cost_s"]))
    last_arrival = max(p["churn_duration_s"], p["burst_at_s"] + (p["burst_pods"] / p["burst_creation_rate"]
                                                                  if p["burst_creation_rate"] > 0 else 0.0))
    end = last_arrival + attempts * cycle + p["max_attempts"] * p["pod_max_backoff_s"] + p["bind_latency_s"] \
        + (p["pod_lifetime_s"] if churn else 0.0)
    bins = end / p.get("series_bin_s", 1.0) + 2
    fp.add("per-second series", bins, 14 * 8 * 2, phase="series")
    fp.add("series per-pod temporaries", pods, 12 * 8, phase="series")
    return fp


# --------------------------------------------------------------------------- simulation
def resolve(params: Mapping[str, Any] | None = None, scenario: str | Mapping[str, Any] = "burst",
            setting: str | None = None) -> dict:
    """Defaults, then the setting's own defaults (:data:`SETTING_DEFAULTS`), then the
    scenario's overrides, then ``params``; validated, never changed."""
    if isinstance(scenario, str):
        if scenario not in SCENARIOS:
            raise ParameterError("scenario", f"must be one of {', '.join(repr(s) for s in SCENARIOS)}; got {scenario!r}")
        base = dict(SCENARIOS[scenario])
    else:
        base = dict(scenario)
    if setting is not None:
        base = {**SETTING_DEFAULTS[check_setting(setting)], **base}
    base.update(params or {})
    return PARAMS.resolve(base)


def check_setting(setting: str) -> str:
    if setting not in MODES:
        raise ParameterError("setting", f"must be one of {', '.join(repr(m) for m in MODES)}; got {setting!r}")
    return setting


def prepare(params: Mapping[str, Any] | None = None, scenario: str | Mapping[str, Any] = "burst"
            ) -> tuple[NodeState, Workload]:
    """The cluster and the workload a run with these parameters starts from (the same
    for every setting: they depend on the seed, the size and the workload only)."""
    p = resolve(params, scenario)
    state = make_nodes(p["nodes"], np.random.default_rng(p["seed"]), initial_utilisation=p["initial_utilisation"])
    return state, make_workload(p, np.random.default_rng([p["seed"], 1]))


def simulate(setting: str, params: Mapping[str, Any] | None = None, scenario: str | Mapping[str, Any] = "burst",
             state: NodeState | None = None, workload: Workload | None = None) -> tuple[dict, dict[str, pd.DataFrame]]:
    """Run the scheduling queue for one setting; return ``(metrics, frames)``.

    ``frames["pods"]`` has one row per pod, ``frames["nodes"]`` one row per node at the
    end. ``state``/``workload`` may be given to reuse a prepared cluster (copied, never
    modified). ``params`` may switch ``equivalence_classes`` and ``relaxed_search`` one
    by one; where it does not, the setting decides (:data:`SETTING_DEFAULTS`).
    """
    check_setting(setting)
    p = resolve(params, scenario, setting)
    wall0 = time.perf_counter()
    if state is None:
        state = make_nodes(p["nodes"], np.random.default_rng(p["seed"]), initial_utilisation=p["initial_utilisation"])
    else:
        state = state.copy()
    if workload is None:
        workload = make_workload(p, np.random.default_rng([p["seed"], 1]))
    sched = Scheduler(
        state, setting, p["seed"] + 7,
        percentage_of_nodes_to_score=p["percentage_of_nodes_to_score"],
        article_nodes_to_find=p["article_nodes_to_find"],
        equivalence_classes=p["equivalence_classes"],
        equivalence_cache_scores=p["equivalence_cache_scores"],
        relaxed_search=p["relaxed_search"],
        opportunistic_batching=p["opportunistic_batching"],
        batching_rescore=p["batching_rescore"],
        topology_spread_defaults=p["pod_topology_spread_defaults"],
    )
    cost = CostModel(p, setting, p["equivalence_classes"])
    n_other_f = p["other_filter_plugins"]
    bind_latency = p["bind_latency_s"]
    b0, bmax, max_att = p["pod_initial_backoff_s"], p["pod_max_backoff_s"], p["max_attempts"]

    P = len(workload)
    arrival = workload.arrival.tolist()
    tmpl_of = workload.template.tolist()
    life = workload.lifetime.tolist()
    specs = workload.templates
    pod_specs = [specs[t] for t in tmpl_of]
    schedule_one = sched.schedule_one
    cycle_of = cost.cycle
    heappush, heappop = heapq.heappush, heapq.heappop
    inf = float("inf")

    # one record per attempt: (pod, start, cycle seconds, Decision), in flat typed buffers
    # (8 B per number: a list of 200k+ Decision tuples and their int objects took ~4x more)
    rec_pod = array("q")
    rec_start = array("d")
    rec_cycle = array("d")
    rec_dec = array("q")
    failed: dict[int, int] = {}  # attempts so far of pods that failed at least once
    retry: list = []  # (ready time, pod)
    deletions: list = []  # (time, node, pod)
    t_free = 0.0
    i = 0
    n_sched = n_unsched = 0
    unbind = state.unbind
    while i < P or retry:
        if retry and (i >= P or retry[0][0] < arrival[i]):
            ready, k = heappop(retry)
        else:
            k = i
            ready = arrival[i]
            i += 1
        start = t_free if t_free > ready else ready
        while deletions and deletions[0][0] <= start:
            _, n, q = heappop(deletions)
            unbind(n, pod_specs[q])
        d = schedule_one(pod_specs[k], start)
        c = cycle_of(d)
        t_free = start + c
        rec_pod.append(k)
        rec_start.append(start)
        rec_cycle.append(c)
        rec_dec.extend(d)
        if d[0] >= 0:
            n_sched += 1
            if life[k] != inf:
                heappush(deletions, (t_free + bind_latency + life[k], d[0], k))
        else:
            n_unsched += 1
            a = failed.get(k, 0) + 1
            failed[k] = a
            if a < max_att:
                heappush(retry, (t_free + min(bmax, b0 * (2 ** (a - 1))), k))

    pods = _pod_frame(workload, rec_pod, rec_start, rec_cycle, rec_dec, n_other_f, bind_latency)
    util = state.utilisation()
    nodes = pd.DataFrame({
        "node": np.arange(state.n),
        "cpu_allocatable_m": state.alloc_cpu, "cpu_requested_m": state.req_cpu,
        "mem_allocatable_mib": state.alloc_mem, "mem_requested_mib": state.req_mem,
        "pods": state.req_pods, "cpu_utilisation": util,
    })
    metrics = summarise(pods, util, setting, p)
    metrics["scheduler_schedule_attempts_total{result=scheduled}"] = n_sched
    metrics["scheduler_schedule_attempts_total{result=unschedulable}"] = n_unsched
    metrics["pod_classes"] = len({specs[t] for t in set(tmpl_of)})
    metrics["wall_time_s"] = time.perf_counter() - wall0
    return metrics, {"pods": pods, "nodes": nodes}


def _pod_frame(workload: Workload, rec_pod, rec_start, rec_cycle, rec_dec, n_other_f: int,
               bind_latency: float) -> pd.DataFrame:
    """One row per pod from the attempt records (attempts are in time order)."""
    P = len(workload)
    R = len(rec_pod)
    kk = np.asarray(rec_pod, dtype=np.int64)
    st_a = np.asarray(rec_start, dtype=float)
    cy_a = np.asarray(rec_cycle, dtype=float)
    nf = len(Decision._fields)
    table = (np.frombuffer(rec_dec, dtype=np.int64, count=R * nf).reshape(R, nf) if R
             else np.zeros((0, nf), dtype=np.int64))
    col = {name: table[:, j] for j, name in enumerate(Decision._fields)}
    evals = table[:, 2:2 + len(FILTER_PLUGINS)]
    single = R == P and (R == 0 or bool((kk == np.arange(P)).all()))  # one attempt per pod, in pod order
    if single:
        def per_pod_sum(x):
            return np.asarray(x)

        def per_pod_last(x, fill):
            return np.asarray(x)

        attempts = np.ones(P, dtype=np.int64)
        start_first = st_a
        tried = np.ones(P, dtype=bool)
    else:
        last = np.full(P, -1, dtype=np.int64)
        np.maximum.at(last, kk, np.arange(R))
        first = np.full(P, R, dtype=np.int64)
        np.minimum.at(first, kk, np.arange(R))
        tried = last >= 0
        attempts = np.bincount(kk, minlength=P)

        def per_pod_sum(x):
            return np.bincount(kk, weights=x, minlength=P)

        def per_pod_last(x, fill):
            x = np.asarray(x)
            out = np.full(P, fill, dtype=x.dtype if x.size else float)
            out[tried] = x[last[tried]]
            return out

        start_first = np.full(P, np.nan)
        start_first[tried] = st_a[first[tried]]
    node_of = per_pod_last(col["node"], -1)
    cycle_last = per_pod_last(cy_a, np.nan)
    bound = node_of >= 0
    bind_a = np.where(bound, per_pod_last(st_a, np.nan) + cycle_last + bind_latency, np.nan)
    arr = workload.arrival
    lat = bind_a - arr
    other = per_pod_sum(col["other_filter_nodes"])
    f_evals = per_pod_sum(evals.sum(axis=1)) + other * n_other_f
    chosen = per_pod_last(col["chosen_score"], -1)
    best = per_pod_last(col["best_score"], -1)
    new_cls = per_pod_sum(col["new_class"]) > 0
    names = list(workload.template_names)
    anti = np.array([sp.anti_affinity_group >= 0 for sp in workload.templates], dtype=bool)
    return pd.DataFrame({
        "pod": np.arange(P),
        "template": pd.Categorical.from_codes(workload.template, categories=names),
        "burst": workload.burst,
        "anti_affinity": anti[workload.template] if P else np.zeros(0, dtype=bool),
        "arrival_s": arr,
        "start_s": start_first,
        "end_s": per_pod_last(st_a, np.nan) + cycle_last,
        "bind_s": bind_a,
        "latency_s": lat,
        "queue_wait_s": _no_noise(lat - per_pod_sum(cy_a) - bind_latency),
        "cycle_s": cycle_last,
        "attempt_duration_s": cycle_last + np.where(bound, bind_latency, 0.0),
        "attempts": attempts,
        "node": node_of,
        "nodes_evaluated": per_pod_sum(col["processed"]).astype(np.int64),
        "filter_evaluations": f_evals.astype(np.int64),
        **{f"evals_{name}": per_pod_sum(evals[:, j]).astype(np.int64) for j, name in enumerate(FILTER_PLUGINS)},
        "nodes_scored": per_pod_sum(col["scored"]).astype(np.int64),
        "cache_reads": per_pod_sum(col["cache_filter_reads"]).astype(np.int64),
        "chosen_score": chosen,
        "best_score": best,
        "score_gap": np.where(bound, best - chosen, np.nan),
        "batched": per_pod_last(col["batched"], 0).astype(bool),
        "new_class": new_cls,
    })


def _no_noise(x: np.ndarray) -> np.ndarray:
    """Zero where a difference of sums of seconds is only rounding (|x| < 1 ns)."""
    return np.where(np.abs(x) < 1e-9, 0.0, x)


def _q(x: np.ndarray, q: float) -> float:
    x = x[~np.isnan(x)]
    return float(np.quantile(x, q)) if x.size else float("nan")


def summarise(pods: pd.DataFrame, util: np.ndarray, setting: str, p: Mapping[str, Any]) -> dict:
    """Summary metrics of one run (upstream metric names where they exist)."""
    ok = pods["node"].to_numpy() >= 0
    lat = pods["latency_s"].to_numpy()
    burst = pods["burst"].to_numpy()
    m: dict[str, Any] = {"setting": setting, "nodes": int(p["nodes"]), "pods": int(len(pods)),
                         "scheduled": int(ok.sum()), "unscheduled": int((~ok).sum())}
    for tag, mask in (("", np.ones_like(ok)), ("burst_", burst)):
        m[f"{tag}scheduler_pod_scheduling_sli_duration_seconds_p50"] = _q(lat[mask], 0.5)
        m[f"{tag}scheduler_pod_scheduling_sli_duration_seconds_p99"] = _q(lat[mask], 0.99)
    m["scheduler_pod_scheduling_duration_seconds_p50"] = m["scheduler_pod_scheduling_sli_duration_seconds_p50"]
    m["scheduler_pod_scheduling_duration_seconds_p99"] = m["scheduler_pod_scheduling_sli_duration_seconds_p99"]
    att = pods["attempt_duration_s"].to_numpy()
    m["scheduler_scheduling_attempt_duration_seconds_p50"] = _q(att, 0.5)
    m["scheduler_scheduling_attempt_duration_seconds_p99"] = _q(att, 0.99)
    wait = pods["queue_wait_s"].to_numpy()
    m["queue_wait_seconds_p50"] = _q(wait[ok], 0.5)
    m["queue_wait_seconds_p99"] = _q(wait[ok], 0.99)
    cyc = pods["cycle_s"].to_numpy()
    m["mean_cycle_s"] = float(np.nanmean(cyc)) if len(cyc) else float("nan")
    m["capacity_pods_per_s"] = 1.0 / m["mean_cycle_s"] if m["mean_cycle_s"] > 0 else float("inf")
    bt = pods["bind_s"].to_numpy()
    arr = pods["arrival_s"].to_numpy()
    if ok.any():
        m["throughput_pods_per_s"] = float(ok.sum() / max(np.nanmax(bt) - arr.min(), 1e-9))
    else:
        m["throughput_pods_per_s"] = 0.0
    bok = ok & burst
    if bok.any():
        m["burst_throughput_pods_per_s"] = float(bok.sum() / max(np.nanmax(bt[bok]) - arr[burst].min(), 1e-9))
    else:
        m["burst_throughput_pods_per_s"] = float("nan")
    m["nodes_evaluated_per_pod"] = float(pods["nodes_evaluated"].mean()) if len(pods) else 0.0
    m["filter_evaluations_per_pod"] = float(pods["filter_evaluations"].mean()) if len(pods) else 0.0
    m["nodes_scored_per_pod"] = float(pods["nodes_scored"].mean()) if len(pods) else 0.0
    m["cache_reads_per_pod"] = float(pods["cache_reads"].mean()) if len(pods) else 0.0
    m["batched_share"] = float(pods["batched"].mean()) if len(pods) else 0.0
    gap = pods["score_gap"].to_numpy()
    chosen = pods["chosen_score"].to_numpy()
    best = pods["best_score"].to_numpy()
    m["score_gap_mean"] = float(np.nanmean(gap)) if ok.any() else float("nan")
    m["best_score_share"] = float(np.mean(gap[ok] == 0)) if ok.any() else float("nan")
    m["score_ratio_mean"] = float(np.mean(chosen[ok] / np.maximum(best[ok], 1))) if ok.any() else float("nan")
    m["node_cpu_utilisation_mean"] = float(util.mean())
    m["node_cpu_utilisation_cv"] = float(util.std() / util.mean()) if util.mean() > 0 else 0.0
    m["node_cpu_utilisation_spread"] = float(util.max() - util.min())
    return m


def time_series(pods: pd.DataFrame, bin_s: float = 1.0, end_s: float | None = None) -> pd.DataFrame:
    """The run as a dashboard would scrape it: one row per ``bin_s`` seconds.

    Pods are counted where they are bound (their latency is observed then, as the
    histogram ``scheduler_pod_scheduling_sli_duration_seconds`` observes it): bound per
    second, latency p50/p99, queue wait, nodes evaluated and cached reads per pod,
    score gap; ``scheduler_pending_pods`` is arrived minus bound (or given up) at the
    end of the bin.
    """
    if not bin_s > 0:
        raise ParameterError("bin_s", f"must be a number in (0, inf] s; got {bin_s!r}")
    arr = pods["arrival_s"].to_numpy()
    bt = pods["bind_s"].to_numpy()
    done = np.where(np.isnan(bt), pods["end_s"].to_numpy(), bt)
    last = float(np.nanmax(done)) if len(pods) else 0.0
    end = max(last, float(arr.max()) if len(arr) else 0.0) if end_s is None else end_s
    nb = max(1, int(np.ceil(end / bin_s + 1e-9)))
    edges = np.arange(nb + 1) * bin_s
    ok = ~np.isnan(bt)
    b_idx = np.minimum((bt[ok] / bin_s).astype(np.int64), nb - 1)
    bound = np.bincount(b_idx, minlength=nb)
    arrived = np.bincount(np.minimum((arr / bin_s).astype(np.int64), nb - 1), minlength=nb)
    finished = np.bincount(np.minimum((np.nan_to_num(done, nan=end) / bin_s).astype(np.int64), nb - 1), minlength=nb)
    lat = pods["latency_s"].to_numpy()[ok]
    wait = pods["queue_wait_s"].to_numpy()[ok]
    order = np.argsort(b_idx, kind="stable")
    cuts = np.searchsorted(b_idx[order], np.arange(nb + 1))
    lat_s, wait_s = lat[order], wait[order]
    p50 = np.full(nb, np.nan)
    p99 = np.full(nb, np.nan)
    wmax = np.full(nb, np.nan)
    for j in np.flatnonzero(bound):
        seg = lat_s[cuts[j]:cuts[j + 1]]
        p50[j], p99[j] = np.quantile(seg, (0.5, 0.99))
        wmax[j] = wait_s[cuts[j]:cuts[j + 1]].max()

    def per_bound(col):
        x = pods[col].to_numpy()[ok].astype(float)
        s = np.bincount(b_idx, weights=x, minlength=nb)
        return np.divide(s, bound, out=np.full(nb, np.nan), where=bound > 0)

    return pd.DataFrame({
        "time": edges[:-1],
        "pods_arrived_per_s": arrived / bin_s,
        "pods_bound_per_s": bound / bin_s,
        "scheduler_pending_pods": np.cumsum(arrived) - np.cumsum(finished),
        "scheduler_pod_scheduling_sli_duration_seconds_p50": p50,
        "scheduler_pod_scheduling_sli_duration_seconds_p99": p99,
        "queue_wait_seconds_max": wmax,
        "nodes_evaluated_per_pod": per_bound("nodes_evaluated"),
        "cache_reads_per_pod": per_bound("cache_reads"),
        "nodes_scored_per_pod": per_bound("nodes_scored"),
        "score_gap_mean": per_bound("score_gap"),
        "batched_share": per_bound("batched"),
    })


def run(scenario: str | Mapping[str, Any] = "burst", setting: str = "upstream",
        params: Mapping[str, Any] | None = None) -> tuple[dict, dict[str, pd.DataFrame]]:
    """Lab entry point: ``run(scenario, setting, params) -> (metrics, frames)``."""
    return simulate(setting, params, scenario)


def compare(scenario: str | Mapping[str, Any] = "burst", params: Mapping[str, Any] | None = None,
            settings=MODES) -> pd.DataFrame:
    """One row of summary metrics per setting, same cluster and workload for all."""
    state, wl = prepare(params, scenario)
    rows = [simulate(s, params, scenario, state=state, workload=wl)[0] for s in settings]
    return pd.DataFrame(rows).set_index("setting")


def cycle_seconds(setting: str, nodes: int, params: Mapping[str, Any] | None = None) -> float:
    """Mean modelled cycle of the default burst's pods on ``nodes`` nodes (a short run)."""
    m, _ = simulate(setting, {"burst_pods": 300, "churn_rate": 0.0, "burst_affinity_share": 0.0,
                              **(params or {}), "nodes": int(nodes)})
    return m["mean_cycle_s"]


def calibrate_node_cost_factor(target_cycle_s: float = 18.6e-3, nodes: int = 5_000,
                               params: Mapping[str, Any] | None = None) -> float:
    """The ``node_cost_factor`` at which the ``off`` setting's cycle at ``nodes`` nodes
    takes ``target_cycle_s``: the per-node speed of an older kube-scheduler.

    The default target is scheduler_perf at 5,000 nodes in July 2018 (every node
    evaluated, eCache off): 18.6 ms per pod (kubernetes/kubernetes PR #65714). The
    cycle is linear in the factor, so two short runs solve it exactly.
    """
    if not target_cycle_s > 0:
        raise ParameterError("target_cycle_s", f"must be a number in (0, inf] s; got {target_cycle_s!r}")
    c1 = cycle_seconds("off", nodes, {**(params or {}), "node_cost_factor": 1.0})
    c2 = cycle_seconds("off", nodes, {**(params or {}), "node_cost_factor": 2.0})
    per_factor = c2 - c1
    if per_factor <= 0:
        raise ParameterError("nodes", f"gives no per-node cost to calibrate; got {nodes!r}")
    return (target_cycle_s - (c1 - per_factor)) / per_factor

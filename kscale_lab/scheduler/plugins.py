"""Filter and score plugins, evaluated over arrays of nodes.

A scheduling cycle asks two questions of every candidate node. *Filter*: can this pod
run here at all? Each filter plugin answers yes/no, in a fixed order, and the first
"no" ends the node's evaluation (``RunFilterPlugins`` returns at the first rejection),
so later plugins see fewer nodes. *Score*: among the nodes that passed, how good is
each? Every score plugin gives 0..100 (``MaxNodeScore``), multiplied by its weight, and
the weighted sum ranks the nodes.

The plugins and formulas mirror upstream kube-scheduler (read, not copied):

* ``TaintToleration`` (+ ``NodeUnschedulable`` folded in as a taint) -
  ``pkg/scheduler/framework/plugins/tainttoleration``: every NoSchedule taint must be
  tolerated.
* ``NodeAffinity`` - ``plugins/nodeaffinity``: ``nodeSelector`` labels must match and
  every required ``key In (values)`` term must hold.
* ``NodeResourcesFit`` (filter) - ``plugins/noderesources/fit.go``: the pod's request
  must fit in ``allocatable - requested`` for cpu, memory, and one more pod slot.
* ``InterPodAffinity`` (filter) - ``plugins/interpodaffinity``: required anti-affinity
  with topologyKey hostname; runs only for pods that have such a term (PreFilter
  returns Skip otherwise).
* ``NodeResourcesFit`` score with the default ``LeastAllocated`` strategy (weight 1,
  resources cpu:1 memory:1) - ``noderesources/least_allocated.go``: per resource
  ``(allocatable - requested) * 100 / allocatable`` in integer arithmetic (0 when
  requested > allocatable), weighted integer mean; requested includes the incoming pod.
* ``NodeResourcesBalancedAllocation`` (weight 1) - ``noderesources/balanced_allocation.go``:
  fractions ``requested/allocatable`` capped at 1, ``std = |f_cpu - f_mem| / 2`` for two
  resources, score ``int((1 - std) * 100)``.

Weights are the defaults of ``pkg/scheduler/apis/config/v1/default_plugins.go``
(TaintToleration 3, NodeAffinity 2, NodeResourcesFit 1, PodTopologySpread 2,
InterPodAffinity 2, NodeResourcesBalancedAllocation 1, ImageLocality 1). The pods here
carry no *preferred* terms, so the other score plugins give every node the same score;
they cost time (see ``sim.PARAMS``) but cannot change the ranking, and are left out of
the sum.

Each function exists twice: vectorised over node indices (the fast path) and for one
node with plain Python integers (incremental updates). Tests hold them equal to each
other and to the per-node reference in :mod:`kscale_lab.scheduler.reference`.
"""

from __future__ import annotations

import numpy as np

from .cluster_state import NodeState, PodSpec

#: filter plugins in upstream's default order (only the ones modelled here)
FILTER_PLUGINS: tuple[str, ...] = ("TaintToleration", "NodeAffinity", "NodeResourcesFit", "InterPodAffinity")
TAINT, AFFINITY, FIT, INTERPOD = range(4)
#: filter code of a node that passed every filter
PASS = len(FILTER_PLUGINS)

#: score plugins and their default weights
SCORE_PLUGINS: tuple[tuple[str, int], ...] = (("NodeResourcesFit", 1), ("NodeResourcesBalancedAllocation", 1))
MAX_NODE_SCORE = 100
#: highest possible weighted total
MAX_TOTAL_SCORE = MAX_NODE_SCORE * sum(w for _, w in SCORE_PLUGINS)
_W_LA = SCORE_PLUGINS[0][1]
_W_BA = SCORE_PLUGINS[1][1]


# --------------------------------------------------------------------------- vector
def _sel(a: np.ndarray, idx):
    return a if idx is None else a[idx]


def taint_toleration_filter(state: NodeState, pod: PodSpec, idx=None) -> np.ndarray:
    """True where every taint of the node is tolerated by the pod."""
    return (_sel(state.taints, idx) & ~np.int64(pod.tolerations)) == 0


def node_affinity_filter(state: NodeState, pod: PodSpec, idx=None) -> np.ndarray:
    """True where ``nodeSelector`` and every required ``key In values`` term match."""
    lab = _sel(state.labels, idx)
    ok = np.ones(lab.shape[0], dtype=bool)
    for key, value in pod.node_selector:
        ok &= lab[:, key] == value
    for key, mask in pod.required_affinity:
        ok &= ((np.int64(mask) >> lab[:, key].astype(np.int64)) & 1) == 1
    return ok


def node_resources_fit_filter(state: NodeState, pod: PodSpec, idx=None) -> np.ndarray:
    """True where the pod's cpu, memory and one pod slot fit in what is left."""
    return (
        (pod.cpu_m <= _sel(state.alloc_cpu, idx) - _sel(state.req_cpu, idx))
        & (pod.mem_mib <= _sel(state.alloc_mem, idx) - _sel(state.req_mem, idx))
        & (_sel(state.req_pods, idx) + 1 <= _sel(state.alloc_pods, idx))
    )


def inter_pod_affinity_filter(state: NodeState, pod: PodSpec, idx=None) -> np.ndarray:
    """True where no pod of the pod's anti-affinity group runs on the node."""
    if pod.anti_affinity_group < 0:
        return np.ones(_sel(state.req_pods, idx).shape[0], dtype=bool)
    return _sel(state.anti_count[pod.anti_affinity_group], idx) == 0


_FILTERS = (taint_toleration_filter, node_affinity_filter, node_resources_fit_filter, inter_pod_affinity_filter)


def filter_codes(state: NodeState, pod: PodSpec, idx=None) -> np.ndarray:
    """Per node, the index of the first filter plugin that rejects it, or ``PASS``."""
    code = np.where(inter_pod_affinity_filter(state, pod, idx), PASS, INTERPOD).astype(np.int8)
    code[~node_resources_fit_filter(state, pod, idx)] = FIT
    code[~node_affinity_filter(state, pod, idx)] = AFFINITY
    code[~taint_toleration_filter(state, pod, idx)] = TAINT
    return code


def least_allocated_score(state: NodeState, pod: PodSpec, idx=None) -> np.ndarray:
    """Upstream LeastAllocated score (0..100), requested including the pod."""
    out = np.zeros_like(_sel(state.req_cpu, idx))
    for alloc, req, want in ((state.alloc_cpu, state.req_cpu, pod.cpu_m), (state.alloc_mem, state.req_mem, pod.mem_mib)):
        a = _sel(alloc, idx)
        r = _sel(req, idx) + want
        safe = np.maximum(a, 1)
        s = ((a - r) * MAX_NODE_SCORE) // safe
        out += np.where((r > a) | (a == 0), 0, s)
    return out // 2  # two resources of weight 1: (cpu*1 + mem*1) / (1+1)


def balanced_allocation_score(state: NodeState, pod: PodSpec, idx=None) -> np.ndarray:
    """Upstream BalancedAllocation score (0..100): 1 - std of the two fractions."""
    a_cpu = _sel(state.alloc_cpu, idx)
    a_mem = _sel(state.alloc_mem, idx)
    f_cpu = np.minimum((_sel(state.req_cpu, idx) + pod.cpu_m) / np.maximum(a_cpu, 1), 1.0)
    f_mem = np.minimum((_sel(state.req_mem, idx) + pod.mem_mib) / np.maximum(a_mem, 1), 1.0)
    std = np.abs((f_cpu - f_mem) / 2)
    return ((1 - std) * MAX_NODE_SCORE).astype(np.int64)


def score_nodes(state: NodeState, pod: PodSpec, idx=None) -> np.ndarray:
    """Weighted total of the modelled score plugins, per node (0..MAX_TOTAL_SCORE)."""
    return _W_LA * least_allocated_score(state, pod, idx) + _W_BA * balanced_allocation_score(state, pod, idx)


# --------------------------------------------------------------------------- scalar
def filter_code_one(state: NodeState, pod: PodSpec, n: int) -> int:
    """:func:`filter_codes` for one node, with Python integers."""
    if state.taints.item(n) & ~pod.tolerations:
        return TAINT
    if pod.node_selector or pod.required_affinity:
        lab = state.labels[n]
        for key, value in pod.node_selector:
            if lab.item(key) != value:
                return AFFINITY
        for key, mask in pod.required_affinity:
            if not (mask >> lab.item(key)) & 1:
                return AFFINITY
    if (pod.cpu_m > state.alloc_cpu.item(n) - state.req_cpu.item(n)
            or pod.mem_mib > state.alloc_mem.item(n) - state.req_mem.item(n)
            or state.req_pods.item(n) >= state.alloc_pods.item(n)):
        return FIT
    if pod.anti_affinity_group >= 0 and state.anti_count.item(pod.anti_affinity_group, n) > 0:
        return INTERPOD
    return PASS


def score_one(state: NodeState, pod: PodSpec, n: int) -> int:
    """:func:`score_nodes` for one node, with Python numbers."""
    a_cpu = state.alloc_cpu.item(n)
    a_mem = state.alloc_mem.item(n)
    r_cpu = state.req_cpu.item(n) + pod.cpu_m
    r_mem = state.req_mem.item(n) + pod.mem_mib
    return _weighted_score(a_cpu, a_mem, r_cpu, r_mem, r_cpu > a_cpu, r_mem > a_mem)


def _weighted_score(a_cpu: int, a_mem: int, r_cpu: int, r_mem: int, over_cpu: bool, over_mem: bool) -> int:
    """LeastAllocated and BalancedAllocation for one node with Python numbers, weighted."""
    la_cpu = 0 if a_cpu == 0 or over_cpu else ((a_cpu - r_cpu) * MAX_NODE_SCORE) // a_cpu
    la_mem = 0 if a_mem == 0 or over_mem else ((a_mem - r_mem) * MAX_NODE_SCORE) // a_mem
    f_cpu = r_cpu / (a_cpu if a_cpu > 1 else 1)
    f_mem = r_mem / (a_mem if a_mem > 1 else 1)
    if f_cpu > 1.0:
        f_cpu = 1.0
    if f_mem > 1.0:
        f_mem = 1.0
    ba = int((1 - abs((f_cpu - f_mem) / 2)) * MAX_NODE_SCORE)
    return _W_LA * ((la_cpu + la_mem) // 2) + _W_BA * ba


def reach_counts_from_codes(codes: np.ndarray, has_interpod: bool) -> np.ndarray:
    """Nodes evaluated by each filter plugin, given the first-failure codes.

    A node is evaluated by plugin ``k`` iff it passed plugins ``0..k-1``, i.e. its code
    is ``>= k``. InterPodAffinity is skipped (0 evaluations) for pods without a term.
    Returns an int64 array of length ``len(FILTER_PLUGINS) + 1``; the last entry is the
    number of feasible nodes.
    """
    hist = np.bincount(codes, minlength=PASS + 1)
    reach = np.cumsum(hist[::-1])[::-1].astype(np.int64)
    if not has_interpod:
        reach[INTERPOD] = 0
    return reach


# --------------------------------------------------------------------------- fused
def evaluate(state: NodeState, pod: PodSpec, idx) -> tuple[np.ndarray, np.ndarray]:
    """First-failure codes and weighted scores of the nodes ``idx`` in one pass.

    Same results as :func:`filter_codes` and :func:`score_nodes`; gathers each node
    array once (the incremental refresh of equivalence classes calls this on small
    index arrays, where the number of numpy calls is the cost).
    """
    a_cpu = state.alloc_cpu[idx]
    a_mem = state.alloc_mem[idx]
    r_cpu = state.req_cpu[idx] + pod.cpu_m
    r_mem = state.req_mem[idx] + pod.mem_mib
    over_cpu = r_cpu > a_cpu
    over_mem = r_mem > a_mem
    code = np.full(a_cpu.shape[0], PASS, dtype=np.int8)
    if pod.anti_affinity_group >= 0:
        code[state.anti_count[pod.anti_affinity_group][idx] > 0] = INTERPOD
    code[over_cpu | over_mem | (state.req_pods[idx] >= state.alloc_pods[idx])] = FIT
    if pod.node_selector or pod.required_affinity:
        code[~node_affinity_filter(state, pod, idx)] = AFFINITY
    code[(state.taints[idx] & ~np.int64(pod.tolerations)) != 0] = TAINT
    sa_cpu = np.maximum(a_cpu, 1)
    sa_mem = np.maximum(a_mem, 1)
    la = (np.where(over_cpu, 0, ((a_cpu - r_cpu) * MAX_NODE_SCORE) // sa_cpu)
          + np.where(over_mem, 0, ((a_mem - r_mem) * MAX_NODE_SCORE) // sa_mem)) // 2
    std = np.abs((np.minimum(r_cpu / sa_cpu, 1.0) - np.minimum(r_mem / sa_mem, 1.0)) / 2)
    ba = ((1 - std) * MAX_NODE_SCORE).astype(np.int64)
    return code, _W_LA * la + _W_BA * ba


def evaluate_one(state: NodeState, pod: PodSpec, n: int) -> tuple[int, int]:
    """:func:`evaluate` for one node: ``(filter code, weighted score)``, reading each array once."""
    a_cpu = state.alloc_cpu.item(n)
    a_mem = state.alloc_mem.item(n)
    r_cpu = state.req_cpu.item(n) + pod.cpu_m
    r_mem = state.req_mem.item(n) + pod.mem_mib
    over_cpu = r_cpu > a_cpu
    over_mem = r_mem > a_mem
    if state.taints.item(n) & ~pod.tolerations:
        code = TAINT
    elif (pod.node_selector or pod.required_affinity) and filter_code_one(state, pod, n) == AFFINITY:
        code = AFFINITY
    elif over_cpu or over_mem or state.req_pods.item(n) >= state.alloc_pods.item(n):
        code = FIT
    elif pod.anti_affinity_group >= 0 and state.anti_count.item(pod.anti_affinity_group, n) > 0:
        code = INTERPOD
    else:
        code = PASS
    return code, _weighted_score(a_cpu, a_mem, r_cpu, r_mem, over_cpu, over_mem)

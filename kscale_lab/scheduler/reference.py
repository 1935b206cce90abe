"""Reference model: one pod, one node at a time, in plain Python.

This is the scheduler as a first reading of upstream's ``schedule_one.go`` would
write it: for each node, run each filter plugin in order and stop at the first "no";
score the survivors; pick the best. It is slow (a Python loop per node) and exists
only so that property tests can hold the fast, cached, vectorised paths in
:mod:`kscale_lab.scheduler.search` and :mod:`kscale_lab.scheduler.equivalence`
against something obviously right. It shares no code with them.
"""

from __future__ import annotations

from .cluster_state import NodeState, PodSpec

FILTER_ORDER = ("TaintToleration", "NodeAffinity", "NodeResourcesFit", "InterPodAffinity")


def passes(state: NodeState, pod: PodSpec, n: int, plugin: str) -> bool:
    if plugin == "TaintToleration":
        taints = int(state.taints[n])
        return all(not (taints >> b) & 1 or (pod.tolerations >> b) & 1 for b in range(63))
    if plugin == "NodeAffinity":
        labels = [int(v) for v in state.labels[n]]
        if any(labels[k] != v for k, v in pod.node_selector):
            return False
        return all(any(labels[k] == v for v in range(64) if (mask >> v) & 1) for k, mask in pod.required_affinity)
    if plugin == "NodeResourcesFit":
        free_cpu = int(state.alloc_cpu[n]) - int(state.req_cpu[n])
        free_mem = int(state.alloc_mem[n]) - int(state.req_mem[n])
        free_pods = int(state.alloc_pods[n]) - int(state.req_pods[n])
        return pod.cpu_m <= free_cpu and pod.mem_mib <= free_mem and free_pods >= 1
    if plugin == "InterPodAffinity":
        g = pod.anti_affinity_group
        return g < 0 or int(state.anti_count[g][n]) == 0
    raise KeyError(plugin)


def first_failure(state: NodeState, pod: PodSpec, n: int) -> int:
    """Index in FILTER_ORDER of the first rejecting plugin, or len(FILTER_ORDER)."""
    for i, plugin in enumerate(FILTER_ORDER):
        if not passes(state, pod, n, plugin):
            return i
    return len(FILTER_ORDER)


def feasible(state: NodeState, pod: PodSpec, n: int) -> bool:
    return first_failure(state, pod, n) == len(FILTER_ORDER)


def score(state: NodeState, pod: PodSpec, n: int) -> int:
    """LeastAllocated (cpu, memory weights 1) + BalancedAllocation, as upstream."""
    allocs = (int(state.alloc_cpu[n]), int(state.alloc_mem[n]))
    reqs = (int(state.req_cpu[n]) + pod.cpu_m, int(state.req_mem[n]) + pod.mem_mib)
    least = []
    for a, r in zip(allocs, reqs):
        least.append(0 if a == 0 or r > a else ((a - r) * 100) // a)
    la = sum(least) // len(least)
    fr = [min(r / a, 1.0) if a else 0.0 for a, r in zip(allocs, reqs)]
    std = abs((fr[0] - fr[1]) / 2)
    ba = int((1 - std) * 100)
    return la + ba


def evaluate_all(state: NodeState, pod: PodSpec) -> tuple[list[int], list[int]]:
    """First-failure code and score of every node."""
    codes = [first_failure(state, pod, n) for n in range(state.n)]
    scores = [score(state, pod, n) for n in range(state.n)]
    return codes, scores


def best_nodes(state: NodeState, pod: PodSpec, candidates=None) -> tuple[int, list[int]]:
    """Highest score among feasible candidates (all nodes by default) and the tied nodes."""
    cand = range(state.n) if candidates is None else candidates
    best, tied = -1, []
    for n in cand:
        if not feasible(state, pod, n):
            continue
        s = score(state, pod, n)
        if s > best:
            best, tied = s, [n]
        elif s == best:
            tied.append(n)
    return best, tied


def circular_first_feasible(state: NodeState, pod: PodSpec, start: int, k: int) -> tuple[list[int], int]:
    """Scan from ``start`` round the ring; stop after ``k`` feasible nodes.

    Returns (feasible nodes found, number of nodes processed) as upstream's
    ``findNodesThatPassFilters`` run sequentially would.
    """
    found, processed = [], 0
    for i in range(state.n):
        n = (start + i) % state.n
        processed += 1
        if feasible(state, pod, n):
            found.append(n)
            if len(found) == k:
                break
    return found, processed

"""How many nodes a scheduling cycle looks at: three search strategies.

At 10,000 nodes, checking every node for every pod is the dominant cost of a
scheduling cycle. Three answers, one per setting of the lab:

``"off"``
    Every pod runs every filter on every node and scores every feasible node; the
    best score wins (ties broken at random). Exact, and O(nodes) per pod.

``"article"`` (Alibaba, 2019, section 9)
    *Equivalence classes*: pending pods are grouped by what their placement depends
    on (:func:`kscale_lab.scheduler.equivalence.equivalence_key`); filters and scores
    are computed once per class and, after each bind, re-run only on the node that
    changed. *Relaxed randomisation*: start at a random node and stop after enough
    feasible nodes, trading exactness for speed.

``"upstream"`` (kube-scheduler today)
    ``percentageOfNodesToScore``: filtering stops once
    :func:`num_feasible_nodes_to_find` feasible nodes are found, starting where the
    previous cycle stopped (``nextStartNodeIndex``, round robin, not random); only
    those are scored; highest score wins, random tie-break. Plus KEP-5598
    *opportunistic batching* (beta in v1.35): a pod whose *signature* equals the
    previous pod's reuses the previous cycle's sorted node list and is tried on the
    next node in it, when the node just used can no longer take another such pod
    (1-pod-per-node). Pods with inter-pod (anti-)affinity, topology spread
    constraints or DRA claims have no signature and are never batched. The v1.37
    extension (kubernetes/kubernetes PR #140289) that re-scores the last node when it
    is still feasible is available as ``batching_rescore=True``.

Upstream sources read (not copied): ``pkg/scheduler/schedule_one.go``
(``schedulePod``, ``findNodesThatFitPod``, ``findNodesThatPassFilters``,
``numFeasibleNodesToFind``, ``evaluateNominatedNode``),
``pkg/scheduler/framework/runtime/batch.go`` (``GetNodeHint``,
``StoreScheduleResults``, ``batchStateCompatible``, ``maxBatchAge = 500ms``),
``keps/sig-scheduling/5598-opportunistic-batching``.

Counting is exact: a :class:`Decision` reports, for the pod, how many nodes each
filter plugin evaluated, how many nodes were scored and how many cached results were
read. Upstream filters in 16 goroutines and may overshoot ``numToFind`` slightly; the
counts here are those of the sequential order. To be fast at 200k pods x 10k nodes,
every strategy reads per-class tables (:mod:`kscale_lab.scheduler.equivalence`) that
return exactly what a fresh evaluation would; that device is not counted as work
except in the ``"article"`` setting, where it *is* the mechanism.
"""

from __future__ import annotations

import bisect
from typing import NamedTuple

import numpy as np

from ..errors import ParameterError
from .cluster_state import NodeState, PodSpec
from .equivalence import ClassTable, EquivalenceCache
from .plugins import FILTER_PLUGINS, INTERPOD, PASS

MODES: tuple[str, ...] = ("off", "article", "upstream")

#: upstream constants (pkg/scheduler/schedule_one.go)
MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5
#: KEP-5598 batch state lifetime (pkg/scheduler/framework/runtime/batch.go maxBatchAge)
MAX_BATCH_AGE_S = 0.5

_EMPTY = np.zeros(0, dtype=np.int64)
#: filter evaluations of one node, by its first-failure code
_PRE = tuple(tuple(1 if k <= c else 0 for k in range(PASS + 1)) for c in range(PASS + 1))


def _nz(a: np.ndarray) -> np.ndarray:
    return a.nonzero()[0]


def num_feasible_nodes_to_find(num_all_nodes: int, percentage_of_nodes_to_score: int = 0) -> int:
    """Feasible nodes after which filtering stops, as kube-scheduler computes it.

    Fewer than 100 nodes: all of them. Otherwise the configured percentage, or, when it
    is 0 (the default), ``50 - N/125`` percent in integer arithmetic with a floor of 5;
    then ``N * pct / 100``, floored at 100 nodes. Examples: 1,000 -> 420; 5,000 -> 500;
    5,625 -> 281; 10,000 -> 500.
    """
    if isinstance(num_all_nodes, bool) or not isinstance(num_all_nodes, (int, np.integer)) or num_all_nodes < 0:
        raise ParameterError("num_all_nodes", f"must be an integer in [0, inf]; got {num_all_nodes!r}")
    if (isinstance(percentage_of_nodes_to_score, bool) or not isinstance(percentage_of_nodes_to_score, (int, np.integer))
            or not 0 <= percentage_of_nodes_to_score <= 100):
        raise ParameterError("percentage_of_nodes_to_score",
                             f"must be an integer in [0, 100]; got {percentage_of_nodes_to_score!r}")
    n = int(num_all_nodes)
    if n < MIN_FEASIBLE_NODES_TO_FIND:
        return n
    pct = int(percentage_of_nodes_to_score)
    if pct == 0:
        pct = 50 - n // 125
        if pct < MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND:
            pct = MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND
    num = n * pct // 100
    if num < MIN_FEASIBLE_NODES_TO_FIND:
        return MIN_FEASIBLE_NODES_TO_FIND
    return num


class Decision(NamedTuple):
    """The outcome and the exact work of one scheduling cycle.

    ``processed`` is the number of nodes the filter plugins ran on: every node for
    ``"off"``; the ring positions scanned for ``"upstream"`` (upstream's
    ``EvaluatedNodes``; 1 for a pod placed on a batching hint); for ``"article"`` the
    nodes re-evaluated because they changed since the class last looked (all nodes
    for the first pod of a class). ``filter_evals[k]`` counts the nodes plugin ``k``
    ran on (a node stops at its first rejecting plugin; InterPodAffinity runs only for
    pods with a term); ``other_filter_nodes`` is how many nodes reached the unmodelled
    default filter plugins (those that passed NodeResourcesFit).
    """

    node: int  #: chosen node, -1 when no node is feasible
    processed: int  #: nodes run through the filters (see above)
    filter_evals: tuple  #: nodes evaluated by each of FILTER_PLUGINS
    other_filter_nodes: int  #: nodes reaching the unmodelled default filter plugins
    scored: int  #: nodes run through the score plugins
    cache_filter_reads: int  #: ring positions whose cached filter result was read (article)
    cache_score_reads: int  #: feasible nodes whose cached score was read (article)
    chosen_score: int  #: weighted score of the chosen node (-1 if none)
    best_score: int  #: best score over all feasible nodes at that moment (-1 if none)
    batched: bool  #: placed on an opportunistic-batching hint
    new_class: bool  #: first pod of its equivalence class (article)
    start: int  #: node index the search started from (-1 when not a ring scan)


class _Batch:
    """KEP-5598 batch state: the previous cycle's scored nodes, best first.

    Sorting is deferred until a compatible pod actually asks for a hint, so cycles
    whose batch is never used pay nothing for it (the cost model charges upstream's
    sort through the per-cycle overhead either way).
    """

    __slots__ = ("signature", "keys", "nodes", "head", "created", "_start", "_window", "_chosen", "_found", "_n")

    def __init__(self, signature, start, window, chosen_pos, found, n_nodes, created):
        self.signature = signature
        self._start = start
        self._window = window  # a copy: the scores as they were in that cycle
        self._chosen = chosen_pos
        self._found = found
        self._n = n_nodes
        self.keys = None
        self.nodes = None
        self.head = 0
        self.created = created

    def __len__(self):
        return (self._found - 1 if self.nodes is None else len(self.nodes)) - self.head

    def materialise(self, rng: np.random.Generator) -> None:
        if self.nodes is None:
            w = self._window
            w[self._chosen] = -1
            pos = _nz(w >= 0)
            sc = w[pos]
            idx = (pos + self._start) % self._n
            rnd = rng.random(idx.shape[0])
            order = np.lexsort((rnd, -sc))
            self.nodes = idx[order].tolist()
            self.keys = list(zip((-sc[order]).tolist(), rnd[order].tolist()))
            self._window = None


class Scheduler:
    """A scheduler over one :class:`NodeState`, for one search strategy.

    ``schedule_one(pod, now)`` runs one scheduling cycle for ``pod`` at modelled time
    ``now`` (seconds; only opportunistic batching's 500 ms batch age reads it), binds
    the pod to the chosen node (upstream's *assume*) and returns a :class:`Decision`.
    """

    def __init__(
        self,
        state: NodeState,
        mode: str = "upstream",
        seed: int = 0,
        *,
        percentage_of_nodes_to_score: int = 0,
        article_nodes_to_find: int = 0,
        opportunistic_batching: bool = True,
        batching_rescore: bool = False,
        topology_spread_defaults: bool = False,
        max_batch_age_s: float = MAX_BATCH_AGE_S,
    ):
        if mode not in MODES:
            raise ParameterError("setting", f"must be one of {', '.join(repr(m) for m in MODES)}; got {mode!r}")
        if not isinstance(article_nodes_to_find, (int, np.integer)) or article_nodes_to_find < 0:
            raise ParameterError("article_nodes_to_find", f"must be an integer in [0, inf]; got {article_nodes_to_find!r}")
        self.state = state
        self.mode = mode
        self.n = state.n
        self.rng = np.random.default_rng(seed)
        self._u = self.rng.random(1 << 16)
        self._ui = 0
        self.num_to_find = num_feasible_nodes_to_find(self.n, percentage_of_nodes_to_score)
        self.article_k = (min(int(article_nodes_to_find), self.n) if article_nodes_to_find
                          else num_feasible_nodes_to_find(self.n, 0))
        self.batching = bool(opportunistic_batching)
        self.rescore = bool(batching_rescore)
        self.topology_spread_defaults = bool(topology_spread_defaults)
        self.max_batch_age_s = float(max_batch_age_s)
        self.cache = EquivalenceCache(state, with_buckets=(mode == "off"))
        self._is_upstream = mode == "upstream"
        self.next_start = 0
        self.cycle = 0
        self._batch: _Batch | None = None
        self._last = (-1, -1, False)  # (cycle, chosen node, succeeded)
        self.batched_pods = 0

    # -- helpers -------------------------------------------------------------
    def _rand(self) -> float:
        i = self._ui
        if i == self._u.shape[0]:
            self._u = self.rng.random(1 << 16)
            i = 0
        self._ui = i + 1
        return float(self._u[i])

    def signature(self, pod: PodSpec):
        """KEP-5598 pod scheduling signature, or None when the pod is unbatchable."""
        if pod.anti_affinity_group >= 0 or pod.topology_spread or pod.dra_claims or self.topology_spread_defaults:
            return None
        return pod

    def _scan_pick(self, t: ClassTable, start: int, k: int):
        """Go round the ring from ``start`` until ``k`` feasible nodes are found; pick the best.

        Returns ``(node, processed, found, window, j)``: the chosen node (-1 if none is
        feasible), the ring positions run through the filters, the feasible nodes found,
        the scores-or--1 of the processed positions, and the chosen position in it.
        """
        n = self.n
        nf = t.reach[PASS]
        if nf == 0:
            return -1, n, 0, None, -1
        whole_ring = k > nf  # fewer feasible nodes than wanted: the scan goes all the way round
        if whole_ring:
            k = nf
        w = n if whole_ring else min(n, (k * n) // nf + (k >> 3) + 32)
        seff = t.seff
        while True:
            end = start + w
            window = seff[start:end] if end <= n else np.concatenate((seff[start:], seff[:end - n]))
            pos = _nz(window >= 0)
            if pos.shape[0] >= k or w >= n:
                break
            w = min(n, 2 * w)
        processed = n if whole_ring else pos.item(k - 1) + 1
        window = window[:processed]
        if k == 1:
            j = pos.item(0)
        else:
            ties = _nz(window == window.max())
            nt = ties.shape[0]
            j = ties.item(int(self._rand() * nt)) if nt > 1 else ties.item(0)
        node = start + j
        if node >= n:
            node -= n
        return node, processed, k, window, j

    def _range_reach(self, t: ClassTable, start: int, processed: int, found: int) -> list[int]:
        """Nodes evaluated per filter plugin over ``processed`` ring positions."""
        n = self.n
        end = start + processed
        seg = t.code[start:end] if end <= n else np.concatenate((t.code[start:], t.code[:end - n]))
        h = np.bincount(seg, minlength=PASS + 1).tolist()
        for k in range(PASS - 1, -1, -1):
            h[k] += h[k + 1]
        return h

    @staticmethod
    def _evals(reach, has_interpod: bool) -> tuple:
        return (reach[0], reach[1], reach[2], reach[3] if has_interpod else 0)

    # -- one cycle -----------------------------------------------------------
    def schedule_one(self, pod: PodSpec, now: float = 0.0, bind: bool = True) -> Decision:
        self.cycle += 1
        d = self._upstream(pod, now) if self._is_upstream else self._exhaustive_or_article(pod)
        if bind and d.node >= 0:
            self.state.bind(d.node, pod)
        return d

    def _exhaustive_or_article(self, pod: PodSpec) -> Decision:
        return self._off(pod) if self.mode == "off" else self._article(pod)

    def _off(self, pod: PodSpec) -> Decision:
        created = pod not in self.cache.tables
        t = self.cache.table(pod)
        reach = t.reach
        m = t.max_score
        if m < 0:
            return Decision(-1, self.n, self._evals(reach, t.has_interpod), reach[INTERPOD], 0, 0, 0, -1, -1,
                            False, created, 0)
        b = t.buckets[m]
        node = b[int(self._rand() * len(b))] if len(b) > 1 else b[0]
        return Decision(node, self.n, self._evals(reach, t.has_interpod), reach[INTERPOD], reach[PASS], 0, 0,
                        m, m, False, created, 0)

    def _article(self, pod: PodSpec) -> Decision:
        t, created, dirty, reach, scored = self.cache.lookup(pod)
        start = int(self._rand() * self.n)
        node, processed, found, _, _ = self._scan_pick(t, start, self.article_k)
        evals = self._evals(reach, t.has_interpod)
        if node < 0:
            return Decision(-1, dirty, evals, reach[INTERPOD], scored, processed, 0, -1, -1, False, created, start)
        return Decision(node, dirty, evals, reach[INTERPOD], scored, processed, found,
                        t.score.item(node), t.max_score, False, created, start)

    def _upstream(self, pod: PodSpec, now: float) -> Decision:
        # The class table is current for this pod, so reading it *is* running the
        # filters (or scores) on one node; those reads are counted as evaluations.
        t = self.cache.table(pod)
        sig = self.signature(pod) if self.batching else None
        pre = None  # filter evaluations spent on batching checks and hints
        pre_scored = 0
        hint = -1
        b = self._batch
        if b is not None:
            last_cycle, last_node, ok = self._last
            if (sig is not None and len(b) > 0 and last_cycle == self.cycle - 1 and ok and sig == b.signature
                    and now - b.created <= self.max_batch_age_s):
                c = t.code.item(last_node)  # RunFilterPlugins on the node used last cycle
                pre = _PRE[c]
                if c == PASS and not self.rescore:
                    b = self._batch = None  # node not full: its stored score would be stale
                else:
                    b.materialise(self.rng)
                    if c == PASS:  # v1.37: re-score it and put it back in the sorted list
                        pre_scored = 1
                        key = (-t.score.item(last_node), self._rand())
                        i = bisect.bisect_left(b.keys, key, lo=b.head)
                        b.keys.insert(i, key)
                        b.nodes.insert(i, last_node)
                    hint = b.nodes[b.head]
                    b.head += 1
            else:
                b = self._batch = None
        if hint >= 0:
            c = t.code.item(hint)  # evaluateNominatedNode: the filters on the hinted node only
            pre = [a + b for a, b in zip(pre, _PRE[c])]
            if c == PASS:
                self._last = (self.cycle, hint, True)
                self.batched_pods += 1
                return Decision(hint, 1, self._evals(pre, t.has_interpod), pre[INTERPOD], pre_scored, 0, 0,
                                t.score.item(hint), t.max_score, True, False, -1)
        start = self.next_start
        node, processed, found, window, j = self._scan_pick(t, start, self.num_to_find)
        self.next_start = (start + processed) % self.n
        if processed == found:
            r = processed
            reach = (r + pre[0], r + pre[1], r + pre[2], r + pre[3], r + pre[4]) if pre is not None else (r,) * 5
        else:
            reach = self._range_reach(t, start, processed, found)
            if pre is not None:
                reach = [a + p for a, p in zip(reach, pre)]
        if hint >= 0:
            processed += 1
        evals = (reach[0], reach[1], reach[2], reach[3] if t.has_interpod else 0)
        if node < 0:
            self._batch = None
            self._last = (self.cycle, -1, False)
            return Decision(-1, processed, evals, reach[INTERPOD], pre_scored, 0, 0, -1, -1, False, False, start)
        self._last = (self.cycle, node, True)
        if found == 1:  # "When only one node after predicate, just use it" (no scoring)
            scored = pre_scored
            self._batch = None
        else:
            scored = found + pre_scored
            self._batch = _Batch(sig, start, window.copy(), j, found, self.n, now) if sig is not None else None
        return Decision(node, processed, evals, reach[INTERPOD], scored, 0, 0, t.score.item(node), t.max_score,
                        False, False, start)


def schedule_pods(
    state: NodeState,
    pods,
    mode: str = "upstream",
    seed: int = 0,
    cycle_time_s: float = 0.0,
    **options,
) -> tuple[np.ndarray, list[Decision]]:
    """Schedule ``pods`` (a sequence of :class:`PodSpec`) one after another on ``state``.

    No queueing and no time model: the ``i``-th pod is scheduled at ``i * cycle_time_s``
    seconds (only batching's 500 ms batch age reads time). Returns the chosen node per
    pod (-1 when unschedulable) and the list of :class:`Decision`.
    """
    s = Scheduler(state, mode, seed, **options)
    decisions = [s.schedule_one(p, i * cycle_time_s) for i, p in enumerate(pods)]
    return np.array([d.node for d in decisions], dtype=np.int64), decisions


__all__ = [
    "MODES", "FILTER_PLUGINS", "Decision", "Scheduler", "num_feasible_nodes_to_find", "schedule_pods",
    "MIN_FEASIBLE_NODES_TO_FIND", "MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND", "MAX_BATCH_AGE_S",
]

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

The article's two ideas can also be switched one by one (``equivalence_classes``,
``relaxed_search`` in :class:`Scheduler`): equivalence classes with an exhaustive
search is kube-scheduler's own eCache of 2017-2018 (every node still visited, as
cached reads), relaxed search without classes is the article's randomised early stop
on fresh evaluations.

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
except when equivalence classes are on, where it *is* the mechanism. Two more devices
keep a cycle cheap and are exact too: a sorted index of each class's feasible nodes
(the k-th feasible node after the start by bisection) and prefix counts of the nodes
each class's taint and affinity filters reject (static: binding never changes them).
"""

from __future__ import annotations

import bisect
from bisect import bisect_left
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


def _add(a, b) -> tuple:
    """Element-wise sum of two per-plugin count vectors (length PASS+1)."""
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4])


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

    ``processed`` is the number of nodes the filter plugins ran on afresh: every node
    for an exhaustive search; the ring positions scanned for a relaxed one (upstream's
    ``EvaluatedNodes``; 1 for a pod placed on a batching hint); with equivalence
    classes, the nodes re-evaluated because they changed since the class last looked
    (all nodes for the first pod of a class), the positions visited being counted as
    cached reads instead. ``evals_*`` count the nodes each filter plugin ran on (a node
    stops at its first rejecting plugin; InterPodAffinity runs only for pods with a
    term); ``other_filter_nodes`` is how many nodes reached the unmodelled default
    filter plugins (those that passed NodeResourcesFit). The record is flat (no nested
    tuple) so that 200k of them turn into arrays in one call.
    """

    node: int  #: chosen node, -1 when no node is feasible
    processed: int  #: nodes run through the filters (see above)
    evals_taint_toleration: int  #: nodes evaluated by TaintToleration
    evals_node_affinity: int  #: nodes evaluated by NodeAffinity
    evals_node_resources_fit: int  #: nodes evaluated by NodeResourcesFit
    evals_inter_pod_affinity: int  #: nodes evaluated by InterPodAffinity
    other_filter_nodes: int  #: nodes reaching the unmodelled default filter plugins
    scored: int  #: nodes run through the score plugins
    cache_filter_reads: int  #: ring positions whose cached filter result was read (equivalence classes)
    cache_score_reads: int  #: feasible nodes whose cached score was read (equivalence classes)
    chosen_score: int  #: weighted score of the chosen node (-1 if none)
    best_score: int  #: best score over all feasible nodes at that moment (-1 if none)
    batched: bool  #: placed on an opportunistic-batching hint
    new_class: bool  #: first pod of its equivalence class
    start: int  #: node index the search started from (-1 when not a ring scan)

    @property
    def filter_evals(self) -> tuple:
        """Nodes evaluated by each of FILTER_PLUGINS, in order."""
        return self[2:6]


def _scores_before(start: int, window: np.ndarray, chosen: int, cursor: int, log: list, n: int) -> dict:
    """Window position -> stored score, for the nodes in the dirty log after ``cursor``
    (the chosen node excepted): read before a refresh overwrites them."""
    saved = {}
    size = window.shape[0]
    for q in log[cursor:]:
        off = q - start
        if off < 0:
            off += n
        if off < size and off != chosen and off not in saved:
            saved[off] = window.item(off)
    return saved


def _decision(*fields) -> Decision:
    """A :class:`Decision` built without the namedtuple's Python-level ``__new__`` (hot path)."""
    return _tuple_new(Decision, fields)


_tuple_new = tuple.__new__


class _Batch:
    """KEP-5598 batch state: the previous cycle's scored nodes, best first.

    Sorting is deferred until a compatible pod actually asks for a hint, so cycles
    whose batch is never used pay nothing for it (the cost model charges upstream's
    sort through the per-cycle overhead either way). The scores are kept as a *view*
    of the class table: nothing refreshes that table before the next cycle of the same
    signature, which materialises the list before its own refresh.
    """

    __slots__ = ("signature", "keys", "nodes", "head", "created", "cursor", "_start", "_window", "_chosen", "_found",
                 "_n")

    def __init__(self, signature, start, window, chosen_pos, found, n_nodes, created, cursor):
        self.signature = signature
        self.cursor = cursor  # length of the dirty log when the scores were read
        self._start = start
        self._window = window  # a view: the scores as they were in that cycle
        self._chosen = chosen_pos
        self._found = found
        self._n = n_nodes
        self.keys = None
        self.nodes = None
        self.head = 0
        self.created = created

    def __len__(self):
        return (self._found - 1 if self.nodes is None else len(self.nodes)) - self.head

    def scores_before(self, log: list) -> dict:
        """Stored scores of the nodes changed since (other than the one just bound):
        read them before the class table is refreshed over them."""
        return _scores_before(self._start, self._window, self._chosen, self.cursor, log, self._n)

    def materialise(self, rng: np.random.Generator, saved: dict | None = None) -> None:
        if self.nodes is None:
            w = self._window.copy()
            if saved:
                for off, v in saved.items():
                    w[off] = v
            w[self._chosen] = -1
            pos = _nz(w >= 0)
            sc = w[pos]
            idx = (pos + self._start) % self._n
            rnd = rng.random(idx.shape[0])
            order = np.lexsort((rnd, -sc))
            self.nodes = idx[order].tolist()
            self.keys = list(zip((-sc[order]).tolist(), rnd[order].tolist()))
            self._window = None


#: which mechanisms each setting turns on, unless the caller says otherwise
MODE_DEFAULTS: dict[str, dict[str, bool]] = {
    "off": {"equivalence_classes": False, "relaxed_search": False},
    "article": {"equivalence_classes": True, "relaxed_search": True},
    "upstream": {"equivalence_classes": False, "relaxed_search": True},
}


class Scheduler:
    """A scheduler over one :class:`NodeState`, for one search strategy.

    ``schedule_one(pod, now)`` runs one scheduling cycle for ``pod`` at modelled time
    ``now`` (seconds; only opportunistic batching's 500 ms batch age reads it), binds
    the pod to the chosen node (upstream's *assume*) and returns a :class:`Decision`.

    ``mode`` sets the defaults (:data:`MODE_DEFAULTS`) and the flavour of the search;
    the two ideas of the article can also be switched one by one:

    * ``equivalence_classes``: filters and scores come from the pod's class table,
      re-evaluated only on the nodes changed since the class last looked; the cost
      model charges those fresh evaluations plus one cached read per node visited
      (the article's classes); with ``equivalence_cache_scores=False`` only the filter
      results are cached and every feasible node is scored afresh, as kube-scheduler
      1.8-1.12's eCache did (``pkg/scheduler/core/equivalence``: predicates only);
    * ``relaxed_search``: stop after enough feasible nodes. In ``"off"``/``"article"``
      the scan starts at a random node and stops after ``article_nodes_to_find``
      (0: upstream's adaptive count); in ``"upstream"`` it starts at
      ``nextStartNodeIndex`` and stops after :func:`num_feasible_nodes_to_find`;
      ``relaxed_search=False`` there means ``percentageOfNodesToScore: 100``.

    Opportunistic batching (KEP-5598) exists only in ``"upstream"``.
    """

    def __init__(
        self,
        state: NodeState,
        mode: str = "upstream",
        seed: int = 0,
        *,
        percentage_of_nodes_to_score: int = 0,
        article_nodes_to_find: int = 0,
        equivalence_classes: bool | None = None,
        equivalence_cache_scores: bool = True,
        relaxed_search: bool | None = None,
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
        self._u: list = []
        d = MODE_DEFAULTS[mode]
        self.equivalence_classes = d["equivalence_classes"] if equivalence_classes is None else bool(equivalence_classes)
        self.relaxed_search = d["relaxed_search"] if relaxed_search is None else bool(relaxed_search)
        self.cache_scores = bool(equivalence_cache_scores)
        num_feasible_nodes_to_find(self.n, percentage_of_nodes_to_score)  # validates the percentage
        pct = int(percentage_of_nodes_to_score)
        if not self.relaxed_search and pct not in (0, 100):
            raise ParameterError("relaxed_search", f"false means every node is scored (percentageOfNodesToScore "
                                                   f"100); it contradicts percentage_of_nodes_to_score={pct}")
        self.num_to_find = (num_feasible_nodes_to_find(self.n, percentage_of_nodes_to_score) if self.relaxed_search
                            else self.n)
        self.article_k = (min(int(article_nodes_to_find), self.n) if article_nodes_to_find
                          else num_feasible_nodes_to_find(self.n, 0))
        self.batching = bool(opportunistic_batching) and mode == "upstream"
        self.rescore = bool(batching_rescore)
        self.topology_spread_defaults = bool(topology_spread_defaults)
        self.max_batch_age_s = float(max_batch_age_s)
        self.round_robin = mode == "upstream"
        exhaustive = not self.relaxed_search and not self.round_robin
        self.cache = EquivalenceCache(state, with_buckets=exhaustive)
        self._k = self.num_to_find if self.round_robin else self.article_k
        # the unbound function, not a bound method: a bound method kept on self is a reference
        # cycle, and a finished run's class tables (MBs per class) would wait for the garbage collector
        self._cycle = type(self)._exhaustive if exhaustive else type(self)._relaxed
        self.next_start = 0
        self.cycle = 0
        self._batch: _Batch | None = None
        self._last = (-1, -1, False)  # (cycle, chosen node, succeeded)
        self.batched_pods = 0

    # -- helpers -------------------------------------------------------------
    def _rand(self) -> float:
        """A uniform draw in [0, 1) from this scheduler's generator (drawn in blocks)."""
        u = self._u
        if not u:
            u = self._u = self.rng.random(1 << 16).tolist()[::-1]
        return u.pop()

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
        fl = t.fidx
        nf = len(fl)
        if nf == 0:
            return -1, n, 0, None, -1
        if k > nf:  # fewer feasible nodes than wanted: the scan goes all the way round
            k = nf
            processed = n
        else:
            i = bisect_left(fl, start) + k - 1
            processed = (fl[i] if i < nf else fl[i - nf] + n) - start + 1
        end = start + processed
        seff = t.seff
        window = seff[start:end] if end <= n else np.concatenate((seff[start:], seff[:end - n]))
        if k == 1:
            j = processed - 1 if processed < n else (fl[0] - start) % n
        else:
            ties = (window == window.item(window.argmax())).nonzero()[0]
            nt = ties.shape[0]
            j = ties.item(int(self._rand() * nt)) if nt > 1 else ties.item(0)
        node = start + j
        if node >= n:
            node -= n
        return node, processed, k, window, j

    def _range_reach(self, t: ClassTable, start: int, processed: int, found: int) -> tuple:
        """Nodes that reached each filter plugin over ``processed`` ring positions from
        ``start`` (length PASS+1: the last entry counts the ``found`` feasible ones).

        Rejections by TaintToleration and NodeAffinity come from the class's static
        prefix counts; InterPodAffinity rejections are counted only for pods with a term;
        NodeResourcesFit rejections are the rest.
        """
        c0, c1 = t.static_counts()
        n = self.n
        end = start + processed
        if end <= n:
            h0 = c0[end] - c0[start]
            h1 = c1[end] - c1[start]
        else:
            end -= n
            h0 = c0[n] - c0[start] + c0[end]
            h1 = c1[n] - c1[start] + c1[end]
        h3 = 0
        if t.has_interpod:
            seg = t.code[start:start + processed] if start + processed <= n else \
                np.concatenate((t.code[start:], t.code[:start + processed - n]))
            h3 = int(np.count_nonzero(seg == INTERPOD))
        return (processed, processed - h0, processed - h0 - h1, found + h3, found)

    # -- one cycle -----------------------------------------------------------
    def schedule_one(self, pod: PodSpec, now: float = 0.0, bind: bool = True) -> Decision:
        self.cycle += 1
        d = self._cycle(self, pod, now)
        if bind and d.node >= 0:
            self.state.bind(d.node, pod)
        return d

    def _exhaustive(self, pod: PodSpec, now: float) -> Decision:
        """Every node: the best score wins (random tie-break among the best)."""
        n = self.n
        if self.equivalence_classes:
            t, created, processed, reach, scored = self.cache.lookup(pod)
            reads, score_reads = n, t.reach[PASS]
            if not self.cache_scores:  # predicates cached, every feasible node scored afresh
                scored, score_reads = t.reach[PASS], 0
        else:
            t = self.cache.get(pod)
            created = t is None
            t = self.cache.table(pod)
            reach = t.reach
            processed, scored, reads, score_reads = n, reach[PASS], 0, 0
        e3 = reach[3] if t.has_interpod else 0
        m = t.max_score
        if m < 0:
            return _decision(-1, processed, reach[0], reach[1], reach[2], e3, reach[INTERPOD], scored, reads, 0,
                            -1, -1, False, created, 0)
        b = t.buckets[m]
        node = b[int(self._rand() * len(b))] if len(b) > 1 else b[0]
        return _decision(node, processed, reach[0], reach[1], reach[2], e3, reach[INTERPOD], scored, reads,
                        score_reads, m, m, False, created, 0)

    def _relaxed(self, pod: PodSpec, now: float) -> Decision:
        """Stop after enough feasible nodes (random or round-robin start); batching upstream."""
        eq = self.equivalence_classes
        # KEP-5598: the previous cycle's list is either pending (a tuple: signature, start,
        # scores, chosen position, feasible found, created, dirty-log length) or materialised
        b = self._batch
        saved = None
        sig = self.signature(pod) if self.batching else None
        if b is not None:
            last_cycle, _, ok = self._last
            if type(b) is tuple:
                usable = (ok and last_cycle == self.cycle - 1 and sig is not None
                          and now - b[5] <= self.max_batch_age_s and sig == b[0])
                if usable:
                    log = self.state.dirty
                    if len(log) - b[6] > 1:  # pods deleted since: keep the stored scores
                        saved = _scores_before(b[1], b[2], b[3], b[6], log, self.n)
            else:
                usable = (ok and last_cycle == self.cycle - 1 and sig is not None and len(b) > 0
                          and now - b.created <= self.max_batch_age_s and sig == b.signature)
            if not usable:
                b = self._batch = None
        if eq:
            t, created, dirty, fresh, fresh_scored = self.cache.lookup(pod)
        else:
            # The class table is current for this pod, so reading it *is* running the
            # filters (or scores) on one node; those reads are counted as evaluations.
            t = self.cache.get(pod)
            if t is None:
                t = self.cache.lookup(pod, False)[0]
            elif t.cursor != len(self.state.dirty):
                t.refresh(self.state, False)
            created = False
        use_batch = False
        pre = None  # filter evaluations spent on batching checks and hints
        if b is not None:
            last_code = t.code.item(self._last[1])  # RunFilterPlugins on the node used last cycle
            pre = _PRE[last_code]
            if last_code == PASS and not self.rescore:
                self._batch = None  # node not full: its stored score would be stale
            else:
                if type(b) is tuple:
                    b = self._batch = _Batch(b[0], b[1], b[2], b[3], b[4], self.n, b[5], b[6])
                b.materialise(self.rng, saved)
                use_batch = True
        pre_scored = 0
        hint = -1
        if use_batch:
            b = self._batch
            if last_code == PASS:  # v1.37: re-score the last node and put it back in the sorted list
                pre_scored = 1
                last_node = self._last[1]
                key = (-t.score.item(last_node), self._rand())
                i = bisect.bisect_left(b.keys, key, lo=b.head)
                b.keys.insert(i, key)
                b.nodes.insert(i, last_node)
            hint = b.nodes[b.head]
            b.head += 1
            c = t.code.item(hint)  # evaluateNominatedNode: the filters on the hinted node only
            pre = _add(pre, _PRE[c])
            if c == PASS:
                self._last = (self.cycle, hint, True)
                self.batched_pods += 1
                if eq:
                    reach = _add(fresh, pre)
                    return _decision(hint, dirty + 1, reach[0], reach[1], reach[2],
                                    reach[3] if t.has_interpod else 0, reach[INTERPOD], fresh_scored + pre_scored,
                                    0, 0, t.score.item(hint), t.max_score, True, created, -1)
                return _decision(hint, 1, pre[0], pre[1], pre[2], pre[3] if t.has_interpod else 0, pre[INTERPOD],
                                pre_scored, 0, 0, t.score.item(hint), t.max_score, True, False, -1)
        n = self.n
        start = self.next_start if self.round_robin else int(self._rand() * n)
        node, processed, found, window, j = self._scan_pick(t, start, self._k)
        if self.round_robin:
            self.next_start = (start + processed) % n
        if eq:
            reach = fresh if pre is None else _add(fresh, pre)
            fresh_nodes = dirty + (hint >= 0)
            scored = fresh_scored + pre_scored
            reads, score_reads = processed, found
            if not self.cache_scores:  # predicates cached, the feasible nodes found scored afresh
                scored, score_reads = (found if found > 1 else 0) + pre_scored, 0
        else:
            if processed == found:
                reach = (processed,) * (PASS + 1)
            else:
                reach = self._range_reach(t, start, processed, found)
            if pre is not None:
                reach = _add(reach, pre)
            fresh_nodes = processed + (hint >= 0)
            # "When only one node after predicate, just use it": no scoring
            scored = (found if found > 1 else 0) + pre_scored
            reads = score_reads = 0
        e3 = reach[3] if t.has_interpod else 0
        if node < 0:
            self._batch = None
            self._last = (self.cycle, -1, False)
            return _decision(-1, fresh_nodes, reach[0], reach[1], reach[2], e3, reach[INTERPOD], scored, reads, 0,
                            -1, -1, False, created, start)
        self._last = (self.cycle, node, True)
        if self.batching:
            self._batch = ((sig, start, window, j, found, now, len(self.state.dirty))
                           if sig is not None and found > 1 else None)
        return _decision(node, fresh_nodes, reach[0], reach[1], reach[2], e3, reach[INTERPOD], scored, reads,
                        score_reads, t.score.item(node), t.max_score, False, created, start)


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

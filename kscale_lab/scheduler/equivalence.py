"""Equivalence classes: evaluate once per kind of pod, then only what changed.

A scale-up creates thousands of pods from one template: same requests, same node
selector, same tolerations. For the filters and scores these pods are *the same
question*, so the answer for every node can be computed once for the whole class and
kept. When a pod is bound, exactly one node's row changes (see
:mod:`kscale_lab.scheduler.cluster_state`), so the class's answers stay correct if that
one node is re-evaluated. This module keeps, per class, the first-failure filter code
and the score of every node, plus running counts (feasible nodes per plugin, a
histogram of feasible scores, optionally score buckets for O(1) best-node picks), and
refreshes them by replaying the cluster's dirty log since the class last looked.

The article (section 9, "equivalence classes") groups the pending queue this way and
evaluates predicates and priorities once per class. Upstream tried the same idea as
the *equivalence cache* (alpha feature gate ``EnableEquivalenceClassCache``, 2016-2018,
kubernetes/kubernetes PRs #30844, #36238, #65714) and removed it (issue #71013):
lookups in a three-level cache guarded by locks were slower than simply running the
cheap predicates, and it only paid off for pods with inter-pod (anti-)affinity. The
cost of a lookup is therefore a parameter of the time model (``sim.PARAMS``), not
assumed free. Its modern successor is KEP-5598 opportunistic batching (see
:mod:`kscale_lab.scheduler.search`).

The same tables also serve, uncounted, as the implementation device that makes the
"off" and "upstream" settings fast: they return exactly what a full evaluation would,
which the property tests check against :mod:`kscale_lab.scheduler.reference`.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, insort

import numpy as np

from .cluster_state import NodeState, PodSpec
from .plugins import MAX_TOTAL_SCORE, PASS, evaluate, evaluate_one, filter_codes, score_nodes

#: replay one node at a time (plain Python) up to this many dirty log entries
SCALAR_REPLAY_MAX = 12
_NO_COUNTS = (0,) * (PASS + 1)
#: plugins reached by one node, by its first-failure code
_ONE = tuple(tuple(1 if k <= c else 0 for k in range(PASS + 1)) for c in range(PASS + 1))


def equivalence_key(pod: PodSpec) -> PodSpec:
    """The key pods are grouped by: every field the filters and scores read.

    Two pods with equal keys get identical filter codes and scores on every node.
    """
    return pod


class ClassTable:
    """Cached filter codes and scores of one pod class over all nodes."""

    __slots__ = ("cid", "pod", "code", "score", "feas", "seff", "reach", "hist", "max_score", "cursor",
                 "buckets", "pos", "has_interpod", "_static", "fidx")

    def __init__(self, cid: int, pod: PodSpec, state: NodeState, with_buckets: bool = False):
        self.cid = cid
        self.pod = pod
        self.has_interpod = pod.anti_affinity_group >= 0
        code = filter_codes(state, pod)
        self.code = code
        self.score = score_nodes(state, pod).astype(np.int64)
        self.feas = code == PASS
        #: score where feasible, -1 elsewhere: one array answers both questions of a scan
        self.seff = np.where(self.feas, self.score, -1)
        hist = np.bincount(code, minlength=PASS + 1)
        #: reach[k] = nodes whose code >= k (they reach plugin k); reach[PASS] = feasible
        self.reach = np.cumsum(hist[::-1])[::-1].astype(np.int64).tolist()
        #: feasible nodes per score (a list: updated one node at a time)
        self.hist = np.bincount(self.score[self.feas], minlength=MAX_TOTAL_SCORE + 1).tolist()
        self.max_score = -1
        self._fix_max(MAX_TOTAL_SCORE)
        self.cursor = len(state.dirty)
        #: the feasible nodes, sorted: the k-th feasible node after any start by bisection
        self.fidx = array("q", np.flatnonzero(self.feas).tolist())
        self.buckets = None
        self.pos = None
        self._static = None
        if with_buckets:
            self._build_buckets()

    # -- buckets: nodes grouped by score, for O(1) random pick among the best ----
    def _build_buckets(self) -> None:
        ids = np.flatnonzero(self.feas)
        sc = self.score[ids]
        order = np.argsort(sc, kind="stable")
        ids, sc = ids[order], sc[order]
        edges = np.searchsorted(sc, np.arange(MAX_TOTAL_SCORE + 2))
        self.buckets = [ids[edges[s]:edges[s + 1]].tolist() for s in range(MAX_TOTAL_SCORE + 1)]
        pos = np.full(self.code.shape[0], -1, dtype=np.int64)
        pos[ids] = np.arange(ids.size) - edges[sc]
        self.pos = pos.tolist()

    def _bucket_remove(self, n: int, s: int) -> None:
        b = self.buckets[s]
        i = self.pos[n]
        last = b[-1]
        b[i] = last
        self.pos[last] = i
        b.pop()
        self.pos[n] = -1

    def _bucket_add(self, n: int, s: int) -> None:
        b = self.buckets[s]
        self.pos[n] = len(b)
        b.append(n)

    # -- refresh ---------------------------------------------------------------
    def _fix_max(self, m: int | None = None) -> None:
        """Highest score with a feasible node, searching down from ``m`` (default: the current)."""
        m = self.max_score if m is None else m
        hist = self.hist
        while m >= 0 and hist[m] == 0:
            m -= 1
        self.max_score = m

    def _update_one(self, n: int, c: int, s: int) -> None:
        c0 = self.code.item(n)
        s0 = self.score.item(n)
        f0 = c0 == PASS
        f = c == PASS
        if c != c0:
            self.code[n] = c
            if f != f0:
                self.feas[n] = f
                if f:
                    insort(self.fidx, n)
                else:
                    del self.fidx[bisect_left(self.fidx, n)]
            reach = self.reach
            if c > c0:
                for k in range(c0 + 1, c + 1):
                    reach[k] += 1
            else:
                for k in range(c + 1, c0 + 1):
                    reach[k] -= 1
        if s != s0:
            self.score[n] = s
        if (f0 or f) and (f0 != f or s0 != s):
            self.seff[n] = s if f else -1
            if f0:
                self.hist[s0] -= 1
                if self.buckets is not None:
                    self._bucket_remove(n, s0)
            if f:
                self.hist[s] += 1
                if self.buckets is not None:
                    self._bucket_add(n, s)
                if s > self.max_score:
                    self.max_score = s
            if f0 and self.hist[s0] == 0 and s0 == self.max_score:
                self._fix_max()

    def refresh(self, state: NodeState, count: bool = True) -> tuple[int, list[int], int]:
        """Re-evaluate the nodes changed since this class last looked.

        Returns ``(dirty_nodes, reach, scored)``: how many distinct nodes were
        re-evaluated, how many of them reached each filter plugin (length PASS+1,
        raw: InterPodAffinity counted even for pods without a term), and how many
        were feasible and hence re-scored. This is the real incremental work of the
        article's equivalence classes.
        """
        log = state.dirty
        end = len(log)
        if self.cursor == end:
            return 0, [0] * (PASS + 1), 0
        pod = self.pod
        if end - self.cursor <= SCALAR_REPLAY_MAX:
            nodes = set(log[self.cursor:end]) if end - self.cursor > 1 else (log[self.cursor],)
            self.cursor = end
            if not count:
                for n in nodes:
                    c, s = evaluate_one(state, pod, n)
                    self._update_one(n, c, s)
                return len(nodes), _NO_COUNTS, 0
            if len(nodes) == 1:
                (n,) = nodes
                c, s = evaluate_one(state, pod, n)
                self._update_one(n, c, s)
                return 1, _ONE[c], int(c == PASS)
            reach = [0] * (PASS + 1)
            scored = 0
            for n in nodes:
                c, s = evaluate_one(state, pod, n)
                self._update_one(n, c, s)
                for k in range(c + 1):
                    reach[k] += 1
                scored += c == PASS
            return len(nodes), reach, scored
        nodes = np.unique(np.asarray(log[self.cursor:end], dtype=np.int64))
        self.cursor = end
        c_new, s_new = evaluate(state, pod, nodes)
        c_old = self.code[nodes]
        s_old = self.score[nodes]
        f_old = c_old == PASS
        f_new = c_new == PASS
        # reach counts: replace the old codes' contribution by the new ones
        h_old = np.bincount(c_old, minlength=PASS + 1)
        h_new = np.bincount(c_new, minlength=PASS + 1)
        r_old = np.cumsum(h_old[::-1])[::-1]
        r_new = np.cumsum(h_new[::-1])[::-1]
        self.reach = (np.asarray(self.reach) + r_new - r_old).tolist()
        changed = (f_old != f_new) | (s_old != s_new)
        fidx = self.fidx
        for n, fn in zip(nodes[f_old != f_new].tolist(), f_new[f_old != f_new].tolist()):
            if fn:
                insort(fidx, n)
            else:
                del fidx[bisect_left(fidx, n)]
        hist = self.hist
        for v in s_old[f_old].tolist():
            hist[v] -= 1
        top = self.max_score
        for v in s_new[f_new].tolist():
            hist[v] += 1
            if v > top:
                top = v
        if self.buckets is not None:
            for n, fo, so, fn, sn in zip(nodes[changed].tolist(), f_old[changed].tolist(), s_old[changed].tolist(),
                                         f_new[changed].tolist(), s_new[changed].tolist()):
                if fo:
                    self._bucket_remove(n, so)
                if fn:
                    self._bucket_add(n, sn)
        self.code[nodes] = c_new
        self.feas[nodes] = f_new
        self.score[nodes] = s_new
        self.seff[nodes] = np.where(f_new, s_new, -1)
        self._fix_max(top)
        return int(nodes.size), r_new.astype(np.int64).tolist(), int(f_new.sum())

    def static_counts(self) -> tuple[list[int], list[int]]:
        """Prefix counts of the nodes rejected by TaintToleration and by NodeAffinity.

        Those two plugins read only a node's taints and labels, which binding pods
        never changes (the dirty log records binds only), so a class's codes 0 and 1
        never change after the table is built: ``c0[i]`` and ``c1[i]`` count them over
        the first ``i`` nodes, for O(1) per-plugin counts over any ring segment.
        """
        if self._static is None:
            z = np.zeros(1, dtype=np.int64)
            c0 = np.concatenate((z, np.cumsum(self.code == 0))).tolist()
            c1 = np.concatenate((z, np.cumsum(self.code == 1))).tolist()
            self._static = (c0, c1)
        return self._static

    @property
    def n_feasible(self) -> int:
        return self.reach[PASS]


class EquivalenceCache:
    """Class tables keyed by :func:`equivalence_key`, refreshed from the dirty log."""

    def __init__(self, state: NodeState, with_buckets: bool = False):
        self.state = state
        self.with_buckets = with_buckets
        self.tables: dict = {}
        self._last = (None, None)  # (pod object, its table): replicas share one template object

    def __len__(self) -> int:
        return len(self.tables)

    def get(self, pod: PodSpec) -> ClassTable | None:
        """The table of ``pod``'s class as it stands (not refreshed), or None."""
        last_pod, last_table = self._last
        if pod is last_pod:
            return last_table
        t = self.tables.get(equivalence_key(pod))
        if t is not None:
            self._last = (pod, t)
        return t

    def lookup(self, pod: PodSpec, count: bool = True) -> tuple[ClassTable, bool, int, list[int], int]:
        """The up-to-date table for ``pod``'s class.

        Returns ``(table, created, dirty_nodes, reach, scored)``. A new class evaluates
        every node (``dirty_nodes == n``); a known class re-evaluates only the nodes
        changed since its last lookup.
        """
        t = self.get(pod)
        if t is None:
            t = ClassTable(len(self.tables), pod, self.state, self.with_buckets)
            self.tables[equivalence_key(pod)] = t
            self._last = (pod, t)
            return t, True, self.state.n, list(t.reach), t.reach[PASS]
        d, reach, scored = t.refresh(self.state, count)
        return t, False, d, reach, scored

    def table(self, pod: PodSpec) -> ClassTable:
        """The up-to-date table for ``pod``'s class, without counting the work."""
        t = self.get(pod)
        if t is None:
            return self.lookup(pod)[0]
        if t.cursor != len(self.state.dirty):
            t.refresh(self.state, False)
        return t

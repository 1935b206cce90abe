"""Checks for the etcd storage lab's exercises.

1. ``allocate(freemaps, n)``: the segregated hashmap's allocation (bbolt
   ``internal/freelist/hashmap.go``), on ``freemaps`` only (run length -> set of starts);
2. ``free_page(forward, backward, page)``: merging a freed page with its neighbours
   (``mergeWithExistingSpan``);
3. a number from the model: the largest db size at which the array freelist still keeps up
   with the stress test after a compaction.
"""

from __future__ import annotations

import copy

import numpy as np

from . import call_student, verdict

EX1 = "Exercise 1 (hashmap allocate)"
EX2 = "Exercise 2 (merge on free)"
EX3 = "Exercise 3 (where does the array freelist give up?)"


def _random_spans(rng: np.random.Generator, k: int) -> list[tuple[int, int]]:
    """Non-touching free spans (start, size) from page 2 on."""
    spans, page = [], 2
    for _ in range(k):
        page += int(rng.integers(1, 6))            # an in-use gap of at least one page
        size = int(rng.choice([1, 1, 2, 3, 4, 8, 8, 16]))
        spans.append((page, size))
        page += size
    return spans


def _freemaps(spans) -> dict:
    fm: dict[int, set[int]] = {}
    for s, z in spans:
        fm.setdefault(z, set()).add(s)
    return fm


def _as_set(fm) -> set[tuple[int, int]]:
    return {(s, z) for z, starts in fm.items() for s in starts}


def check_allocate(fn) -> "Verdict":
    """``fn(freemaps, n)`` -> start page or 0; must update ``freemaps`` in place."""
    rng = np.random.default_rng(11)
    cases = [([(10, 4), (20, 2), (30, 8)], 2), ([(10, 4), (20, 2), (30, 8)], 3), ([(10, 4)], 5), ([], 1)]
    for _ in range(40):
        spans = _random_spans(rng, int(rng.integers(0, 12)))
        cases.append((spans, int(rng.choice([1, 1, 2, 3, 4, 5, 8, 9, 20]))))
    for spans, n in cases:
        fm = _freemaps(spans)
        before = _as_set(fm)
        got, bad = call_student(EX1, fn, fm, n)
        if bad:
            return bad
        fits = [(s, z) for s, z in spans if z >= n]
        try:
            start = int(got)
        except (TypeError, ValueError):
            return verdict(EX1, "not yet right", f"allocate must return a page id (int); got {got!r}.")
        if not fits:
            if start != 0:
                return verdict(EX1, "not yet right", f"No free run of {n} pages in {sorted(spans)}: return 0.")
            if _as_set(fm) != before:
                return verdict(EX1, "not yet right", "When nothing fits, freemaps must stay unchanged.")
            continue
        chosen = [(s, z) for s, z in spans if s == start]
        if not chosen or chosen[0][1] < n:
            return verdict(EX1, "not yet right",
                           f"Asked for {n} pages of {sorted(spans)}, you returned {start}: not the start of a "
                           f"free run of at least {n} pages.")
        s, z = chosen[0]
        if any(zz == n for _, zz in spans) and z != n:
            return verdict(EX1, "not yet right",
                           f"freemaps[{n}] has a run of exactly {n} pages: take it (the O(1) path) instead of "
                           f"splitting the {z}-page run at {s}.")
        want = (before - {(s, z)}) | ({(s + n, z - n)} if z > n else set())
        if any(len(v) == 0 for v in fm.values()):
            return verdict(EX1, "not yet right", "Delete a size class whose set becomes empty (bbolt does).")
        if _as_set(fm) != want:
            return verdict(EX1, "not yet right",
                           f"After taking {n} pages at {s} from the {z}-page run, freemaps should hold "
                           f"{sorted(want)}; it holds {sorted(_as_set(fm))}.")
    return verdict(EX1, "done", f"Your allocate agrees with bbolt's hashmap rules on {len(cases)} free lists.")


def check_free_page(fn) -> "Verdict":
    """``fn(forward, backward, page)``: make ``page`` free, merging with the spans that end
    at ``page - 1`` and start at ``page + 1``; ``forward[start] = size``,
    ``backward[end] = size`` (end = start + size - 1)."""
    rng = np.random.default_rng(5)
    cases = [([(10, 2), (13, 3)], 12), ([(10, 2)], 12), ([(10, 2)], 9), ([], 7)]
    for _ in range(40):
        spans = _random_spans(rng, int(rng.integers(1, 10)))
        free = {p for s, z in spans for p in range(s, s + z)}
        hi = max(s + z for s, z in spans) + 3
        candidates = [p for p in range(2, hi) if p not in free]
        cases.append((spans, int(rng.choice(candidates))))
    for spans, page in cases:
        fwd = {s: z for s, z in spans}
        bwd = {s + z - 1: z for s, z in spans}
        f0, b0 = copy.deepcopy(fwd), copy.deepcopy(bwd)
        if fn is None:
            return verdict(EX2, "not done yet", "Define the function first.")
        try:
            fn(fwd, bwd, page)  # works in place: returns nothing
        except NotImplementedError:
            return verdict(EX2, "not done yet", "Replace the stub with your code.")
        except Exception as err:  # the reader's bug, in one line
            return verdict(EX2, "not yet right", f"Your code raised {type(err).__name__}: {err}")
        if fwd == f0 and bwd == b0:
            return verdict(EX2, "not done yet", "Your function leaves forward and backward unchanged: write its body.")
        # the reference: the union of the free pages, as maximal runs
        free = sorted({p for s, z in spans for p in range(s, s + z)} | {page})
        runs, start = [], free[0]
        for a, b in zip(free, free[1:] + [None]):
            if b != a + 1:
                runs.append((start, a - start + 1))
                start = b
        want_f = {s: z for s, z in runs}
        want_b = {s + z - 1: z for s, z in runs}
        if fwd != want_f or bwd != want_b:
            return verdict(EX2, "not yet right",
                           f"Freeing page {page} next to {sorted(spans)} should leave spans {sorted(runs)} "
                           f"(forward {want_f}); you have forward {fwd}, backward {bwd}.")
    return verdict(EX2, "done", f"Your merge keeps forward/backward maps exact on {len(cases)} frees, "
                                "both neighbours included.")


def check_array_limit(answer) -> "Verdict":
    """``answer``: the largest db size (bytes) at which the array freelist still commits the
    stress test's writes after a compaction that freed half the file (not saturated).
    Checked by running the model at the answer and 20 % above it."""
    from ..labs.etcd_storage import LAB

    if answer is None:
        return verdict(EX3, "not done yet", "Set db_limit to your answer (bytes).")
    try:
        a = float(answer)
    except (TypeError, ValueError):
        return verdict(EX3, "not yet right", f"db_limit must be a number of bytes; got {answer!r}.")
    if not a > 0:
        return verdict(EX3, "not yet right", f"db_limit must be > 0 bytes; got {answer!r}.")
    r = LAB.sweep("article", sizes=[a, a * 1.2], freelists=("array",), load="stress")
    ok, above = bool(r.saturated.iloc[0]), bool(r.saturated.iloc[1])
    if ok:
        return verdict(EX3, "not yet right", f"At {a / 1e9:.3g} GB the array's commits already fall behind: "
                                             f"look lower.")
    if not above:
        return verdict(EX3, "not yet right", f"At {a * 1.2 / 1e9:.3g} GB (20 % more) they still keep up: look higher.")
    return verdict(EX3, "done", f"Up to about {a / 1e9:.3g} GB the array keeps up with "
                                f"{LAB.params['stress_put_rate'].default:,.0f} puts/s; beyond it every commit is a "
                                f"full batch and puts time out.")

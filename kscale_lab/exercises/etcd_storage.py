"""Checks for the etcd storage lab's exercises.

1. ``allocate(freemaps, n)``: the segregated hashmap's allocation (bbolt
   ``internal/freelist/hashmap.go``), on ``freemaps`` only (run length -> set of starts);
2. ``free_page(forward, backward, page)``: merging a freed page with its neighbours
   (``mergeWithExistingSpan``);
3. ``db_limit(put_rate)``: the derivation of the largest db size at which the array freelist
   still keeps up with the stress test after a compaction, evaluated at several put rates
   against the model (within 10 %). The checker never prints the model's size nor says
   which way an answer is off.
"""

from __future__ import annotations

import copy

import numpy as np

from . import Hints, call_quiet, call_student, verdict

EX1 = "Exercise 1 (hashmap allocate)"
EX2 = "Exercise 2 (merge on free)"
EX3 = "Exercise 3 (where does the array freelist give up?)"

hint = Hints({
    1: ["Look in freemaps[n] first: a run of exactly n pages is the O(1) path.",
        "Otherwise take any run longer than n: its first n pages are yours, and what is left is a free run of "
        "its own length, under that length's set.",
        "pop a start from freemaps[size]; del freemaps[size] if the set is now empty; "
        "freemaps.setdefault(size - n, set()).add(start + n); return start (0 when nothing fits)."],
    2: ["A freed page can touch a run that ends just before it and a run that starts just after it.",
        "backward[page - 1] is the size of the run ending at page - 1; forward[page + 1] the size of the run "
        "starting at page + 1. Remove both, then add the merged run to both maps.",
        "start, size = page, 1; if page - 1 in backward: b = backward.pop(page - 1); del forward[page - b]; "
        "start -= b; size += b. Then the same forward; finally forward[start] = size; "
        "backward[start + size - 1] = size."],
    3: ["A commit carries the puts that arrived during the last interval and the last commit: "
        "n = rate x (T + C). What happens when n reaches the batch limit of 10,000 puts?",
        "For the array freelist a full batch's commit time C grows linearly with the free pages. "
        "lab.sweep(..., load='stress') gives capacity = limit / C for a full batch: two db sizes give the line.",
        "It keeps up while rate x (T + C_full(L)) < limit. Solve C_full(L) = limit / rate - T for the free pages "
        "L, then db = L x bbolt_page_size / free_fraction."],
}, {1: EX1, 2: EX2, 3: EX3})


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


#: put rates (puts/s) at which exercise 3's derivation is evaluated: the stress test's, and two others
LIMIT_RATES = (2550.0, 1500.0, 4000.0)


def array_limit(put_rate: float, tol: float = 1e-3) -> float:
    """The model's largest db size (bytes, ``free_fraction`` of it free) at which the array
    freelist keeps up with ``put_rate`` puts/s of the stress test: found by bisection on
    :meth:`~kscale_lab.labs.etcd_storage.EtcdStorageLab.sweep`'s ``saturated``."""
    from ..labs.etcd_storage import LAB

    o = {"stress_put_rate": float(put_rate)}

    def sat(db):
        return bool(LAB.sweep("article", o, sizes=[db], freelists=("array",), load="stress").saturated.iloc[0])

    lo, hi = 1e7, 2e12
    if sat(lo) or not sat(hi):
        return float("nan")
    while hi / lo > 1 + tol:
        mid = (lo * hi) ** 0.5
        lo, hi = (lo, mid) if sat(mid) else (mid, hi)
    return lo


def check_array_limit(fn, rates=LIMIT_RATES, tolerance: float = 0.10) -> "Verdict":
    """``fn(put_rate)`` -> the largest db size (bytes, half of it free after a compaction)
    at which the array freelist keeps up with ``put_rate`` puts/s of the stress test's
    1-64 KiB values. Compared with the model at each of ``rates``, within ``tolerance``."""
    if fn is None or not callable(fn):
        return verdict(EX3, "not done yet" if fn is None else "not yet right",
                       "Define db_limit(put_rate)." if fn is None else
                       f"db_limit must be a function of the put rate; got {type(fn).__name__}.")
    for rate in rates:
        got, bad = call_quiet(EX3, fn, rate)
        if bad:
            return bad
        if not got > 0:
            return verdict(EX3, "not yet right", f"db_limit({rate:,.0f}) must be a size in bytes > 0; got {got!r}.")
        want = array_limit(rate)
        if not abs(got - want) <= tolerance * want:
            return verdict(EX3, "not yet right",
                           f"At {rate:,.0f} puts/s your db_limit gives {got / 1e9:.3g} GB; the model's array "
                           f"freelist does not stop keeping up within {tolerance:.0%} of that size. Check the "
                           f"derivation (hint(3) gives a start).")
    return verdict(EX3, "done", f"Your derivation finds where the array freelist gives up within {tolerance:.0%} at "
                                f"{len(rates)} put rates: a full batch's commit outgrows the time to fill it.")

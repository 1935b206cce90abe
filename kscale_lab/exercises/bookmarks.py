"""Checks for the bookmarks lab's exercises.

* :func:`check_watch_decision`: the watch cache's 410 rule, against
  :meth:`kscale_lab.apiserver.watchcache.WatchCache.watch_from` on random caches
  (relists, evictions and resizes included) and at the boundary RVs;
* :func:`check_bookmark_handler`: a reflector's ``watchHandler`` for ADDED,
  MODIFIED, DELETED and BOOKMARK events, against the reference
  :class:`kscale_lab.clients.reflector.Reflector` on event streams replayed from a
  real watch cache, with bookmarks at random moments.
"""

from __future__ import annotations

import numpy as np

from . import Hints, call_student, verdict

EX1 = "Exercise 1 (the 410 decision)"
EX2 = "Exercise 2 (a bookmark in the reflector)"

hint = Hints({
    1: ["The cache must prove the client missed nothing: it can if the client's RV is at most one before the "
        "oldest event it still holds.",
        "oldest = list_rv + 1 when nothing was evicted since the cache's last LIST (and list_rv > 0); otherwise "
        "the RV of the first event on the tape.",
        "oldest = list_rv + 1 if (list_rv > 0 and not removed_since_relist) else first_buffered_rv; "
        "return '410' if client_rv < oldest - 1 else 'replay'."],
    2: ["Every event, a bookmark included, moves the reflector's RV forward; only some change the store.",
        "ADDED and MODIFIED store obj under key, DELETED removes key (it may be gone already), a BOOKMARK "
        "leaves the store alone.",
        "if kind == 'DELETED': store.pop(key, None) elif kind in ('ADDED', 'MODIFIED'): store[key] = obj; "
        "return event_rv"],
}, {1: EX1, 2: EX2})

_TYPE_NAMES = {0: "ADDED", 1: "MODIFIED", 2: "DELETED", 3: "BOOKMARK"}


def _random_cache(rng: np.random.Generator):
    from ..apiserver.watchcache import ADDED, DELETED, MODIFIED, EventBatch, WatchCache

    cap = int(rng.choice([2, 3, 4, 8]))
    cache = WatchCache(list_rv=int(rng.integers(1, 50)),
                       params={"lower_bound_capacity": cap, "upper_bound_capacity": 4 * cap,
                               "event_fresh_duration": float(rng.choice([1.0, 5.0, 50.0]))})
    exists, rv, now = set(), cache.current_rv, 0.0
    for _ in range(int(rng.integers(0, 40))):
        if rng.random() < 0.05:   # a relist: the tape starts again after the list RV
            rv += int(rng.integers(1, 4))
            cache.replace(cache.objects(), rv, now)
            continue
        k = int(rng.integers(0, 8))
        et = ADDED if k not in exists else (DELETED if rng.random() < 0.3 else MODIFIED)
        (exists.discard if et == DELETED else exists.add)(k)
        rv += int(rng.integers(1, 4))
        now += float(rng.exponential(1.0))
        cache.add_events(EventBatch(rv=[rv], time=[now], key=[k], etype=[et], ns=[0], node=[0], label=[0],
                                    size=[1]))
    return cache


def check_watch_decision(fn) -> "Verdict":
    """``fn(client_rv, list_rv, removed_since_relist, first_buffered_rv)`` -> ``"410"``
    or ``"replay"``. ``first_buffered_rv`` is None when the tape is empty."""
    rng = np.random.default_rng(11)
    cases = 0
    for _ in range(300):
        cache = _random_cache(rng)
        lg_first = None
        if cache.size:
            lg_first = int(cache.ring_events().rv[0])
        oldest = cache.oldest_rv
        probes = {oldest - 2, oldest - 1, oldest, max(1, oldest - 10), cache.current_rv,
                  int(rng.integers(1, cache.current_rv + 1))}
        for rv in sorted(p for p in probes if 1 <= p <= cache.current_rv):
            want = "410" if cache.watch_from(rv).status == "too_old" else "replay"
            got, bad = call_student(EX1, fn, rv, cache.list_resource_version, cache.removed_event_since_relist,
                                    lg_first)
            if bad:
                return bad
            cases += 1
            if str(got) != want:
                return verdict(EX1, "not yet right",
                               f"A client at RV {rv}, cache listed at RV {cache.list_resource_version}, "
                               f"{'an event was' if cache.removed_event_since_relist else 'no event was'} evicted "
                               f"since, first event on the tape RV {lg_first}: the cache answers {want!r}, "
                               f"your function {got!r}.")
    return verdict(EX1, "done", f"Your rule agrees with the watch cache on {cases} watches, boundaries included.")


def _stream(rng: np.random.Generator):
    """(events for one watcher, with bookmarks) replayed from a real watch cache."""
    from ..apiserver.watchcache import Selector, WatchCache, generate_cluster_writes

    w = generate_cluster_writes(int(rng.integers(0, 10_000)), 120.0,
                                {"nodes": 4, "pods": 40, "namespaces": 3, "label_values": 3,
                                 "pod_creates_per_s": 0.3, "pod_deletes_per_s": 0.2,
                                 "pod_background_updates_per_hour": 60.0, "core_events_per_s": 0.5})
    cache = WatchCache(initial=w.initial_pods, list_rv=w.list_rv, params={"lower_bound_capacity": 10_000,
                                                                         "upper_bound_capacity": 10_000})
    sel = Selector(node=int(rng.integers(-1, 4)))
    start = cache.objects(sel)
    store = {int(k): (int(a), int(b), int(c)) for k, a, b, c in zip(start.key, start.ns, start.node, start.label)}
    cache.add_events(w.pods)
    res = cache.watch_from(w.list_rv, sel)
    events = [(_TYPE_NAMES[int(t)], int(r), int(k), (int(a), int(b), int(c)))
              for t, r, k, a, b, c in zip(res.type, res.rv, res.key, res.ns, res.node, res.label)]
    # bookmarks: "nothing for you up to RV x", x = the cache's RV at a random moment
    times = np.sort(rng.uniform(0.0, 120.0, size=int(rng.integers(1, 8))))
    marks = cache.rv_at_times(times)
    out, j = [], 0
    for ev in events:
        while j < len(marks) and marks[j] < ev[1]:
            if not out or out[-1][1] < marks[j]:
                out.append(("BOOKMARK", int(marks[j]), None, None))
            j += 1
        out.append(ev)
    for m in marks[j:]:
        if not out or out[-1][1] < m:
            out.append(("BOOKMARK", int(m), None, None))
    return store, int(w.list_rv), sel, out


def check_bookmark_handler(fn) -> "Verdict":
    """``fn(store, rv, event)`` -> the new RV; ``store`` (key -> (namespace, node,
    label)) is updated in place; ``event = (type, rv, key, obj)`` with type one of
    ADDED, MODIFIED, DELETED, BOOKMARK (key and obj are None for a bookmark)."""
    from ..apiserver.watchcache import ADDED, DELETED, MODIFIED
    from ..clients.reflector import Reflector

    codes = {"ADDED": ADDED, "MODIFIED": MODIFIED, "DELETED": DELETED}
    rng = np.random.default_rng(5)
    n_events = n_marks = 0
    for _ in range(6):
        store0, rv0, sel, stream = _stream(rng)
        ref = Reflector(sel, [600.0])
        ref.store = {k: v + (0,) for k, v in store0.items()}
        ref.rv = rv0
        mine, rv = {k: v for k, v in store0.items()}, rv0
        for ev in stream:
            kind, erv, key, obj = ev
            if kind == "BOOKMARK":
                ref.bookmark(erv)
                n_marks += 1
            else:
                ref.deliver(erv, key, codes[kind], *obj)
                n_events += 1
            before = dict(mine)
            got, bad = call_student(EX2, fn, mine, rv, ev)
            if bad:
                return bad
            try:
                rv = int(got)
            except (TypeError, ValueError):
                return verdict(EX2, "not yet right", f"Return the new RV (an int); got {got!r}.")
            have = {k: tuple(v) for k, v in mine.items()}
            want = {k: v[:3] for k, v in ref.store.items()}
            if kind == "BOOKMARK" and have != before:
                return verdict(EX2, "not yet right", f"A BOOKMARK at RV {erv} changed the store: a bookmark "
                                                     f"carries no object, only a resourceVersion.")
            if rv != ref.rv:
                return verdict(EX2, "not yet right", f"After {kind} at RV {erv} the reflector's RV is {ref.rv}; "
                                                     f"yours is {rv}.")
            if have != want:
                diff = sorted(set(have) ^ set(want)) or sorted(k for k in have if have[k] != want.get(k))
                return verdict(EX2, "not yet right", f"After {kind} at RV {erv} the store differs (key "
                                                     f"{diff[0] if diff else '?'}).")
    return verdict(EX2, "done", f"Your handler keeps store and RV exact through {n_events} events and "
                                f"{n_marks} bookmarks.")

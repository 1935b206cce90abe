"""The MVCC store against a plain-Python reference ledger."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kscale_lab.costs import Costs
from kscale_lab.etcd.mvcc import KV_OVERHEAD, MVCCStore

N_KEYS = 6


def make(quota=1024**4, sizes=None):
    costs = Costs.from_params({"quota_backend_bytes": quota})
    sizes = np.full(N_KEYS, 1000.0) if sizes is None else sizes
    return MVCCStore(sizes, 30.0, costs), costs


ops = st.lists(st.one_of(
    st.tuples(st.just("put"), st.lists(st.tuples(st.integers(0, N_KEYS - 1), st.integers(10, 20_000)),
                                       min_size=1, max_size=8)),
    st.tuples(st.just("compact"), st.integers(0, 60)),
), max_size=25)


class Ledger:
    """Reference: a list of (rev, key, pages) lines; compaction as etcd defines it."""

    def __init__(self, costs, sizes):
        self.costs = costs
        self.lines = [(i + 1, i, float(costs.page_bytes(s))) for i, s in enumerate(sizes)]
        self.rev = len(sizes)
        self.compacted = 0

    def put(self, key, size):
        self.rev += 1
        self.lines.append((self.rev, key, float(self.costs.page_bytes(size))))

    def compact(self, rev):
        if rev <= self.compacted:
            return
        newest = {}
        for r, k, _ in self.lines:
            if r <= rev:
                newest[k] = max(newest.get(k, 0), r)
        self.lines = [(r, k, p) for r, k, p in self.lines if r > rev or newest[k] == r]
        self.compacted = rev

    def in_use(self):
        return sum(p for _, _, p in self.lines)


@given(ops)
def test_store_matches_reference_ledger(ops):
    store, costs = make()
    ref = Ledger(costs, np.full(N_KEYS, 1000.0))
    high = store.db_total
    for op, arg in ops:
        if op == "put":
            keys = np.array([k for k, _ in arg])
            sizes = np.array([float(s) for _, s in arg])
            res = store.put(keys, sizes)
            assert res.accepted.all()
            for k, s in arg:
                ref.put(k, s)
        else:
            target = min(arg + N_KEYS, store.current_rev)
            store.compact(target)
            ref.compact(target)
        assert store.current_rev == ref.rev
        assert store.db_in_use == pytest.approx(ref.in_use())
        assert store.revisions_kept == len(ref.lines)
        assert store.db_total >= store.db_in_use - 1e-6
        assert store.db_total >= high - 1e-6      # the file never shrinks without defrag
        high = store.db_total


@given(st.lists(st.integers(100, 400_000), min_size=1, max_size=60), st.integers(1024**2, 8 * 1024**2))
def test_quota_is_never_exceeded_and_nospace_sticks(sizes, quota):
    store, costs = make(quota=quota, sizes=np.full(N_KEYS, 100.0))
    keys = np.arange(len(sizes)) % N_KEYS
    res = store.put(keys, np.array(sizes, dtype=float))
    k = int(res.accepted.sum())
    assert res.accepted[:k].all() and not res.accepted[k:].any()      # refusals are a suffix
    assert store.db_total < quota                                     # what was admitted fits
    if k < len(sizes):
        assert store.nospace and res.alarm_raised
        again = store.put(np.array([0]), np.array([10.0]))
        assert not again.accepted.any()                               # the alarm refuses everything
        store.compact()
        store.defragment()
        store.disarm()
        if store.db_total + KV_OVERHEAD + 30 + 10 < quota:
            assert store.put(np.array([0]), np.array([10.0])).accepted.all()


def test_large_values_take_whole_pages_small_ones_share():
    _, costs = make()
    assert costs.page_bytes(15_000.0) == 4 * 4096            # data/etcd_real: 60k x 15 KB -> ~1 GB
    assert costs.page_bytes(2_500.0) == 4096                 # two 2.6 KB elements do not fit in 90 % of a page
    assert costs.page_bytes(350.0) == 4096 / 8               # eight Leases share a page


def test_page_accounting_agrees_with_the_bbolt_page_model():
    from kscale_lab.etcd.bbolt import packed_page_bytes

    _, costs = make()
    for v in (100.0, 350.0, 1024.0, 2500.0, 3000.0, 15_000.0, 100_000.0):
        assert costs.page_bytes(v) == pytest.approx(packed_page_bytes(v, 47.0), rel=0.01)


def test_compaction_frees_history_but_not_the_file():
    store, _ = make()
    for _ in range(10):
        store.put(np.arange(N_KEYS), np.full(N_KEYS, 5000.0))
    before_total, before_use = store.db_total, store.db_in_use
    removed = store.compact()
    assert removed == 10 * N_KEYS       # 10 older copies of each key (initial + 9 rewrites) go
    assert store.db_in_use < before_use and store.db_total == before_total
    store.defragment()
    assert store.db_total == store.db_in_use

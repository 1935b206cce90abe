"""etcd's MVCC store: every write is a new revision, history stays until compaction.

Think of etcd as a ledger rather than a whiteboard. Writing a key does not erase
the old value: it appends a new line, numbered by a global counter, the
*revision*. The API server uses that number as every object's resourceVersion.
Old lines stay in the ledger (in bbolt's pages on disk) until someone *compacts*
the ledger up to a revision: then, for every key, only its newest line at or
below that revision survives. kube-apiserver compacts every
``--etcd-compaction-interval`` (5 min).

So a 15 KB Node object rewritten every 10 s by 10,000 kubelets leaves 30 copies of
each Node in the ledger between two compactions: about 4.5 GB, far over the 2 GiB
default quota. That is the heartbeat problem of KEP-589 ("we were hitting etcd
limits for its database size") and of the article, section 2.

What this module keeps, at real sizes, as numpy arrays:

* the revision log (revision -> key id, value bytes, page bytes) since the last
  compaction, and each key's latest revision;
* WAL bytes (value + ``etcd_wal_entry_overhead`` per write), the etcd metric
  ``etcd_disk_wal_write_bytes_total`` without 3.4's double count;
* the db size: bytes of bbolt pages in use (``etcd_mvcc_db_total_size_in_use_in_bytes``)
  and the file size (``etcd_mvcc_db_total_size_in_bytes``), which is the high-water
  mark of pages in use: compaction frees pages for reuse but never shrinks the file
  (only defragmentation does);
* the quota: etcd's ``backendQuota.Available`` admits a write only while
  ``file size + cost < --quota-backend-bytes`` (server/etcdserver/quota.go: it is the
  *file* size, not the size in use); the first refusal raises the ``NOSPACE`` alarm,
  after which every write is refused until an operator defragments and disarms it.

Mirrors: etcd ``server/storage/mvcc/kvstore.go`` (revisions, compaction),
``server/etcdserver/quota.go`` (quota), ``server/storage/backend`` (db size metrics).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..costs import Costs
from ..errors import ParameterError

# etcd quota.go: kvOverhead = 256 bytes added to key+value for a put's cost
KV_OVERHEAD = 256


class _Growable:
    """An append-only numpy column with amortised doubling."""

    def __init__(self, dtype, capacity=1024):
        self.a = np.empty(capacity, dtype=dtype)
        self.n = 0

    def extend(self, values):
        need = self.n + values.size
        if need > self.a.size:
            new = np.empty(max(need, 2 * self.a.size), dtype=self.a.dtype)
            new[: self.n] = self.a[: self.n]
            self.a = new
        self.a[self.n:need] = values
        self.n = need

    def view(self):
        return self.a[: self.n]

    def keep(self, mask):
        kept = self.a[: self.n][mask]
        self.a[: kept.size] = kept
        self.n = kept.size


@dataclass
class PutResult:
    accepted: np.ndarray       # bool per write
    revisions: np.ndarray      # revision per accepted write (0 where refused)
    alarm_raised: bool         # this batch raised NOSPACE


class MVCCStore:
    """A keyspace of ``n_keys`` keys with an MVCC revision log.

    ``key_sizes`` are the initial value sizes (revision 1..n_keys, one write per
    key, as if the cluster had been created and then compacted).
    """

    def __init__(self, key_sizes: np.ndarray, key_bytes: np.ndarray | float, costs: Costs,
                 expected_writes: int = 0, initial_pages: np.ndarray | None = None):
        self.costs = costs
        key_sizes = np.asarray(key_sizes, dtype=np.float64)
        n = key_sizes.size
        self.n_keys = n
        self.key_bytes = np.broadcast_to(np.asarray(key_bytes, dtype=np.float64), (n,))
        self.key_rev = np.arange(1, n + 1, dtype=np.int64)
        self.key_size = key_sizes.copy()
        # Each key's initial revision (1..n) is kept implicitly: a flag and its page bytes.
        # The explicit log holds the revisions written since, until compaction removes them.
        self._initial_alive = np.ones(n, dtype=bool)
        # page bytes of each initial revision; a caller that built key_sizes from a few sizes
        # may pass them (costs.page_bytes of each size, repeated): the same numbers, faster
        if initial_pages is None:
            self._initial_pages = costs.page_bytes(key_sizes)
        else:
            self._initial_pages = np.asarray(initial_pages, dtype=np.float64)
            if self._initial_pages.shape != (n,):
                raise ParameterError("initial_pages", f"must hold one value per key ({n}); got {self._initial_pages.shape}")
        cap = max(1024, int(expected_writes))
        self._log_key = _Growable(np.int32, capacity=cap)
        self._log_pages = _Growable(np.float64, capacity=cap)
        self._log_rev = _Growable(np.int64, capacity=cap)
        self.current_rev = n
        self.compact_rev = 0
        self.db_in_use = float(self._initial_pages.sum())
        self.db_total = self.db_in_use
        self.wal_bytes_total = 0.0
        self.value_bytes_total = 0.0
        self.puts_total = 0
        self.refused_total = 0
        self.nospace = False
        self.nospace_at: float | None = None

    # -- memory ---------------------------------------------------------------------
    @staticmethod
    def footprint(n_keys: int, log_entries: int, compacted: int = 0, log_since: str = "run",
                  compaction_phase: str = "compaction"):
        """The store's arrays (a :class:`kscale_lab.memory.Footprint`).

        Per key (held): latest revision, size, key bytes, initial pages (8 B each) and the
        initial-revision flag: 33 B. While it is built (phase ``build``):
        the caller's size array (8 B) and the page model's temporaries (measured: 32 B per
        key at their peak, its result included): 40 B per key (measured, 3.6M keys: 69 B per
        key at the peak, held and build together). The revision log: key int32 +
        pages float64 + revision int64 = 20 B per entry; it is reserved at the most the run
        can write and resident as it is written, up to ``log_entries``, the most entries it
        holds at once (compaction moves the kept ones to its front), from the moment
        ``log_since`` on. A compaction's temporaries (moment ``compaction_phase``): 11 B per log entry
        (three masks, the kept copy of one column) and 32 B per entry at or below the
        compacted revision (``compacted``: their indexes, keys, the sort that finds each
        key's newest). Measured (1M keys, 2M entries, 1M compacted): 23 B per log entry.
        """
        from ..memory import Footprint

        fp = Footprint("etcd MVCC store")
        fp.add("etcd keys", n_keys, 33)
        fp.add("etcd keyspace build", n_keys, 40, phase="build")
        fp.add("etcd revision log", log_entries, 20, since=log_since)
        fp.add("etcd compaction temporaries", log_entries, 11, phase=compaction_phase)
        fp.add("etcd compaction sort", compacted, 32, phase=compaction_phase)
        return fp

    @staticmethod
    def log_bounds(writes: float, written_keys: float, duration: float, interval: float) -> tuple[int, int]:
        """(most entries the log holds at once, most entries one compaction compacts) for a run
        of ``duration`` that writes at most ``writes`` revisions to at most ``written_keys``
        keys, compacted every ``interval`` (0: never) to the revision of one interval before,
        as kube-apiserver's compactor does. Before a compaction at ``t`` the log holds the
        writes since ``t - 2 interval`` and one survivor per key written before; it compacts
        those up to ``t - interval``."""
        if interval <= 0 or interval >= duration:
            return int(writes), 0
        held = min(writes, writes * 2.0 * interval / duration + written_keys)
        old = min(writes, writes * interval / duration + written_keys)
        return int(held), int(old)

    # -- writes ---------------------------------------------------------------------
    def put(self, keys: np.ndarray, sizes: np.ndarray, now: float = 0.0,
            pages: np.ndarray | None = None) -> PutResult:
        """Apply writes in order; refuse those the quota does not admit.

        ``pages`` (bytes of bbolt pages per write) may be passed when the caller
        already knows them; by default they come from the cost model."""
        keys = np.asarray(keys, dtype=np.int64)
        sizes = np.asarray(sizes, dtype=np.float64)
        m = keys.size
        accepted = np.zeros(m, dtype=bool)
        revs = np.zeros(m, dtype=np.int64)
        if m == 0:
            return PutResult(accepted, revs, False)
        raised = False
        if self.nospace:
            self.refused_total += m
            return PutResult(accepted, revs, False)
        if pages is None:
            pages = self.costs.page_bytes(sizes)
        # File growth if these pages were appended one by one (free pages are reused first).
        in_use_after = self.db_in_use + np.cumsum(pages)
        total_after = np.maximum(self.db_total, in_use_after)
        cost = KV_OVERHEAD + self.key_bytes[keys] + sizes
        quota = self.costs.quota_backend_bytes
        if total_after[-1] + cost.max() < quota:      # the file size only grows: all fit
            ok = np.ones(m, dtype=bool)
        else:
            total_before = np.concatenate(([self.db_total], total_after[:-1]))
            ok = total_before + cost < quota
        if not ok.all():
            first_bad = int(np.argmin(ok))
            ok[first_bad:] = False
            self.nospace = True
            self.nospace_at = now
            raised = True
        k = int(ok.sum())
        accepted[:k] = True
        if k:
            new_revs = np.arange(self.current_rev + 1, self.current_rev + 1 + k, dtype=np.int64)
            revs[:k] = new_revs
            kk = keys[:k]
            self._log_key.extend(kk)
            self._log_pages.extend(pages[:k])
            self._log_rev.extend(new_revs)
            # latest write per key wins (keys may repeat within a batch: later index wins)
            self.key_rev[kk] = new_revs
            self.key_size[kk] = sizes[:k]
            self.current_rev += k
            self.db_in_use = float(in_use_after[k - 1])
            self.db_total = float(total_after[k - 1])
            value = float(sizes[:k].sum())
            self.wal_bytes_total += value + k * self.costs.etcd_wal_entry_overhead
            self.value_bytes_total += value
            self.puts_total += k
        self.refused_total += m - k
        return PutResult(accepted, revs, raised)

    # -- compaction -----------------------------------------------------------------
    def compact(self, rev: int | None = None) -> int:
        """Compact history up to ``rev`` (default: current). Returns revisions removed.

        For every key, revisions <= ``rev`` are dropped except the key's newest one
        at or below ``rev`` (etcd keeps it so a read at ``rev`` still sees the key).
        """
        rev = self.current_rev if rev is None else int(rev)
        if rev <= self.compact_rev:
            return 0
        log_rev = self._log_rev.view()
        log_key = self._log_key.view()
        old_idx = np.flatnonzero(log_rev <= rev)
        removed = 0
        freed = 0.0
        keep = np.ones(log_rev.size, dtype=bool)
        if old_idx.size:
            keys_old = log_key[old_idx]
            # newest old revision per key survives: its last position among the old ones
            # (keys are 0..n_keys-1: a table per key instead of sorting half a million)
            last = np.full(self.n_keys, -1, dtype=np.int64)
            np.maximum.at(last, keys_old, np.arange(keys_old.size, dtype=np.int64))
            rewritten = np.flatnonzero(last >= 0)          # the keys written at or below `rev`
            survivors = old_idx[last[rewritten]]
            keep[old_idx] = False
            keep[survivors] = True
            freed += float(self._log_pages.view()[~keep].sum())
            removed += int((~keep).sum())
            # a key rewritten at or below `rev` loses its initial revision too
            alive = rewritten[self._initial_alive[rewritten]]
            freed += float(self._initial_pages[alive].sum())
            removed += int(alive.size)
            self._initial_alive[alive] = False
            self._log_key.keep(keep)
            self._log_pages.keep(keep)
            self._log_rev.keep(keep)
        self.db_in_use -= freed
        self.compact_rev = rev
        return removed

    def defragment(self) -> None:
        """Rewrite the file without free pages: file size drops to the size in use."""
        self.db_total = self.db_in_use

    def disarm(self) -> None:
        """Operator clears the NOSPACE alarm (after compacting and defragmenting)."""
        self.nospace = False

    # -- views ------------------------------------------------------------------------
    @property
    def revisions_kept(self) -> int:
        """Revisions stored (initial ones still alive + the explicit log)."""
        return int(self._initial_alive.sum()) + self._log_rev.n

    @property
    def history_revisions(self) -> int:
        """Revisions kept that are not the latest of their key (what compaction can free)."""
        return self.revisions_kept - self.n_keys

    def log_keys(self) -> np.ndarray:
        return self._log_key.view()

    def log_revisions(self) -> np.ndarray:
        return self._log_rev.view()

    def metrics(self) -> dict:
        """Current values under etcd's metric names."""
        return {
            "etcd_mvcc_db_total_size_in_bytes": self.db_total,
            "etcd_mvcc_db_total_size_in_use_in_bytes": self.db_in_use,
            "etcd_debugging_mvcc_current_revision": self.current_rev,
            "etcd_debugging_mvcc_compact_revision": self.compact_rev,
            "etcd_mvcc_put_total": self.puts_total,
            "etcd_disk_wal_write_bytes_total": self.wal_bytes_total,
            "etcd_server_quota_backend_bytes": self.costs.quota_backend_bytes,
        }

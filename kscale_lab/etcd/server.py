"""etcd behind the API servers, as one component of the shared cluster (the capstone's zoom).

Picture a warehouse that keeps every version of every box until the nightly clear-out.
Every write the API servers admit (Leases, Node status, pods, Events, everything else)
lands here as a new revision; its bbolt pages come from the free pages the last
compaction left, or, when there are none, the file grows. Every
``--etcd-compaction-interval`` the API server compacts to the revision it saw one
interval earlier (``storage/etcd3/compact.go``), so up to two intervals of history sit
in etcd; the pages they held become free pages. Above ``--quota-backend-bytes`` (the
*file* size, as ``quota.go`` checks it) etcd raises the NOSPACE alarm and refuses every
write until an operator defragments and disarms it.

Each commit must find runs of free pages for what it writes: with the **array**
freelist a linear scan of every free page id (and a shift of the array), with the
**segregated hashmap** one lookup. Commit time, and the wait of the puts queued behind
the batch lock, come from the same counted-work law the etcd-storage lab measures on
the real freelists (:func:`kscale_lab.etcd.bbolt.work_law`, :func:`~kscale_lab.etcd.bbolt.open_loop`)
at this tick's free pages and write rate. That latency is what the API servers' writes
wait for (the control-plane core's ``latency`` hook): a slow etcd makes slow writes,
more requests in flight, more memory.

This zoom is coarser than the etcd-storage lab's (bytes of history per tick instead of
an MVCC revision per write; the write mix's law computed once per run); a test holds
its put latency and history against the lab's at the same db size and write rate.
"""

from __future__ import annotations

import math

import numpy as np

from ..controlplane import Component
from ..params import Param, ParamSet
from . import bbolt as B

GIB = 1024**3

ETCD_SERVER_PARAMS = ParamSet([
    Param("etcd_db_bytes", 40 * 10**9, "B",
          "scenario: a long-lived 10k-node cluster's etcd, tens of GB after months of churn (article section 1: "
          "2 GB to 100 GB; the CNCF write-up saw bbolt's spill blow up above ~40 GB)",
          "size of etcd's db file when the run starts", lo=0, hi=500 * GIB, kind=int),
    Param("etcd_free_fraction", 0.5, "1",
          "as the etcd-storage lab's free_fraction: a db that carried as much history as data looks like "
          "this after a compaction (etcd-real section 4 built its dbs by deleting a random half)",
          "share of the db file's pages free at the start", lo=0.0, hi=0.99),
    Param("etcd_quota_bytes", 100 * GIB, "B",
          "article section 1: Alibaba's etcd held 100 GB; the capstone's operator raised "
          "--quota-backend-bytes accordingly (etcd's default is 2 GiB, 8 GiB suggested)",
          "db size at which etcd raises NOSPACE (the capstone's --quota-backend-bytes)", lo=1024**2,
          hi=1024**4, kind=int, flag="--quota-backend-bytes"),
])


class EtcdServer(Component):
    """Fluid MVCC history and bbolt free pages, fed by the control plane's admitted writes."""

    name = "etcd"

    def __init__(self, p, freelist_type: str, stream_kinds: dict, kind_bytes: dict):
        """``stream_kinds``: request stream name -> write kind (``lease``, ``node``, ``pod``,
        ``event``, ``other``); ``kind_bytes``: kind -> value bytes of one write."""
        self.p = p
        self.freelist = freelist_type
        self.stream_kinds = stream_kinds
        self.kind_bytes = kind_bytes
        self.page = float(p["bbolt_page_size"])
        self.quota = float(p["etcd_quota_bytes"])
        self.interval = float(p["etcd_compaction_interval"])
        self.nospace = False
        self.nospace_at = math.nan

    def attach(self, cp) -> None:
        from ..labs.etcd_storage import KEY_BYTES, _law, _law_key, _Mix

        w, c, p = cp.w, cp.costs, self.p
        S = len(w.stream_names)
        self.mut = np.zeros(S, dtype=bool)
        self.page_bytes = np.zeros(S)
        elems, rates = {}, {}
        steady = (w.counts[:, None] * w.rates).sum(axis=0)            # requests/s per stream
        for name, kind in self.stream_kinds.items():
            if name not in w.stream_names:
                continue
            s = w.stream(name)
            vb = float(self.kind_bytes[kind])
            self.mut[s] = True
            self.page_bytes[s] = float(c.page_bytes(vb))
            rates[kind] = rates.get(kind, 0.0) + float(steady[s])
            elems[kind] = int(B.element_bytes(vb, KEY_BYTES[kind], p["kv_framing_bytes"]))
        rates = {k: v for k, v in rates.items() if v > 0}
        self.law = _law(_Mix(rates, {k: elems[k] for k in rates}), self.freelist, _law_key(p))
        # the db at the start: the cluster's objects (as the watch caches hold them), filler up to
        # the db's live share, the rest free pages
        D = float(p["etcd_db_bytes"])
        live = max(float(w.cache_bytes) * 1.3, (1.0 - float(p["etcd_free_fraction"])) * D)
        self.file = max(D, live)
        self.free = self.file - live
        self.live = live
        steps = cp.steps
        self.hist = np.zeros(steps + 1)            # page bytes written per tick (history until compacted)
        self._compacted_to = 0                     # ticks [0, compacted_to) are compacted
        self._mark = None
        self._next_compact = self.interval if self.interval > 0 else math.inf
        self.rec = {k: np.zeros(steps) for k in ("db", "free", "history", "put_s", "commit_s", "puts", "nospace")}
        self._lat = float(p["put_base_latency"])
        self._memo: dict = {}
        self._behind = False
        self._base = float(c.etcd_put_latency)    # what the core's streams already carry for a write
        self.defrag_at = math.inf

    # -- the latency table: open_loop over free pages, for a grid of write rates --------------------
    def put_latency(self, free_pages: float, rate: float) -> tuple[float, float]:
        """(mean put latency, commit seconds) at ``free_pages`` and ``rate`` puts/s (memoised on a
        1 % grid of both: the fixed point is smooth in them)."""
        if rate <= 0:
            return float(self.p["put_base_latency"]), 0.0
        key = (round(math.log(max(free_pages, 1.0)) * 100), round(math.log(rate) * 100))
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self._put_latency(free_pages, rate)
        return hit

    def _put_latency(self, free_pages: float, rate: float) -> tuple[float, float]:
        ol = B.open_loop(self.law, np.array([free_pages]), float(rate), self.p, iterations=30)
        C = float(ol["commit_s"][0])
        if bool(ol["saturated"][0]):
            return math.inf, C
        T = float(self.p["backend_batch_interval"])
        # a put arriving at random waits for the commit in progress: E[wait] = C^2 / (2 (T + C))
        return float(self.p["put_base_latency"]) + C * C / (2.0 * (T + C)), C

    def before_tick(self, cp, t0: float, t1: float) -> None:
        i = cp._i
        if t0 >= self._next_compact:
            if self._mark is not None:
                freed = float(self.hist[self._compacted_to:self._mark].sum())
                self.free += freed
                self._compacted_to = self._mark
                cp.events.event(t0, "etcd compaction", freed_bytes=freed)
            self._mark = i
            self._next_compact += self.interval
        if t0 >= self.defrag_at:
            self.file = self.live + float(self.hist[self._compacted_to:i].sum())
            self.free = 0.0
            self.nospace = False
            self.defrag_at = math.inf
            cp.events.event(t0, "etcd defragment + alarm disarm")

    def admission(self, cp, A, t0):
        if not self.nospace:
            return None
        # etcdserver: mvcc: database space exceeded -- every write fails
        return np.broadcast_to(self.mut.astype(float), A.shape)

    def latency(self, cp, adm, t0):
        i, dt = cp._i, cp.dt
        writes = adm[:, self.mut].sum() * dt if not self.nospace else 0.0
        need = float((adm.sum(axis=0) * self.page_bytes).sum()) * dt if not self.nospace else 0.0
        take = min(need, self.free)
        self.free -= take
        self.file += need - take
        self.hist[i] = need
        history = float(self.hist[self._compacted_to:i + 1].sum())
        if not self.nospace and self.file > self.quota:
            self.nospace = True
            self.nospace_at = t0
            cp.events.event(t0, "NOSPACE alarm", db_bytes=self.file, quota=self.quota)
        lat, C = self.put_latency(self.free / self.page, writes / dt)
        behind = not math.isfinite(lat) or lat > 1.0
        if behind and not self._behind:
            cp.events.event(t0, "etcd commits fall behind", put_latency_s=lat, commit_s=C, free_pages=self.free / self.page)
        elif self._behind and not behind:
            cp.events.event(t0, "etcd commits keep up again", put_latency_s=lat)
        self._behind = behind
        self._lat = lat
        r = self.rec
        r["db"][i], r["free"][i], r["history"][i] = self.file, self.free, history
        r["put_s"][i], r["commit_s"][i], r["puts"][i], r["nospace"][i] = lat, C, writes / dt, self.nospace
        extra = max(0.0, (lat if math.isfinite(lat) else 60.0) - self._base)
        # a request path that computes its own latencies (the context-cancel component) takes it too,
        # from the next tick on
        for comp in cp.components:
            c = getattr(comp, "c", None)
            if c is not None and hasattr(c, "etcd_extra"):
                c.etcd_extra = extra
        return np.where(self.mut, extra, 0.0)[None, :]

    def summary(self, cp) -> dict:
        n = cp._i
        r = {k: v[:n] for k, v in self.rec.items()}
        put = r["put_s"][r["puts"] > 0]
        return {
            "etcd_mvcc_db_total_size_in_bytes_max": float(r["db"].max()) if n else float("nan"),
            "etcd_put_latency_mean_max_s": float(put.max()) if put.size else float("nan"),
            "etcd_disk_backend_commit_duration_seconds_max": float(r["commit_s"].max()) if n else float("nan"),
            "etcd_mvcc_history_bytes_max": float(r["history"].max()) if n else float("nan"),
            "etcd_nospace_at_s": self.nospace_at,
            "etcd_mvcc_put_per_s": float(r["puts"].mean()) if n else float("nan"),
        }

    def frame(self, cp):
        import pandas as pd

        n = cp._i
        return pd.DataFrame({"time": cp.rec_t[:n], **{f"etcd_{k}": v[:n] for k, v in self.rec.items()}})

"""Lab: etcd storage at 10,000 nodes (bbolt's free-page allocator, MVCC history).

The article, section 1: etcd's storage was limited to the recommended 2 GB not by
disk but by bbolt's free-page allocator. To write a node of ``n`` pages bbolt needs
``n`` *contiguous* free pages; the old freelist found them by a linear scan of a
sorted array of every free page id, then shifted the rest of the array down. After
a compaction freed millions of pages, every commit paid for that: the CNCF write-up
saw bbolt's ``spill`` go from ~1 ms to ~8 s above 40 GB and puts time out. Alibaba's
segregated hashmap (bbolt PR #141, etcd 3.4; etcd's default since 3.5) finds a run
of ``n`` pages in O(1) and merges a freed page with its neighbours in O(1): "100 GB
as quickly as 2 GB". Before it, their earlier step was to give each resource type
its own etcd (kube-apiserver ``--etcd-servers-overrides``).

What this lab computes, from the mechanisms in :mod:`kscale_lab.etcd.bbolt` and
:mod:`kscale_lab.etcd.freelist`, never from typed-in results:

* the cluster's write stream (kubelet heartbeats as in the heartbeat lab, pod churn,
  Events, background writes) and what it leaves in etcd: MVCC history per compaction
  window, db file vs size in use vs ``--quota-backend-bytes``, the NOSPACE alarm,
  free pages after each compaction (``run``: :class:`~kscale_lab.etcd.mvcc.MVCCStore`
  per second, commit time from the counted work law, put latency from the commit lock);
* put latency and throughput against db size, 1 to 100 GB, array vs hashmap
  (``sweep``, in milliseconds), and etcd-real section 4's benchmark (``section4``);
* the exact page model on the same stream (``exact``): every leaf and page run, real
  freelists, for up to a few thousand nodes: the free-page runs a compaction leaves.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Mapping

import numpy as np

from ..cluster import POD_WRITES_PER_LIFECYCLE, RunResult
from ..costs import COST_PARAMS, Costs
from ..errors import ParameterError
from ..etcd import bbolt as B
from ..etcd import freelist as F
from ..etcd.mvcc import MVCCStore
from ..params import Param, ParamSet
from ..memory import Footprint
from ..scenario import SCENARIO_PARAMS, Scenario
from .base import Lab
from .heartbeats import HEARTBEAT_PARAMS, heartbeat_rates

GIB = 1024**3
GB = 1e9

STORAGE_PARAMS = ParamSet([
    Param("backend_bbolt_freelist_type", "array", "1",
          "etcd 3.4: --experimental-backend-bbolt-freelist-type, default array; etcd 3.5+: "
          "--backend-bbolt-freelist-type, default map (etcd CHANGELOG-3.5; docs/upstream.md section 1). "
          "Settings: off array, article and upstream map",
          "bbolt freelist: 'array' (sorted ids, first-fit scan) or 'map' (segregated hashmap)",
          choices=("array", "map"), kind=str, flag="--backend-bbolt-freelist-type"),
    Param("etcd_servers_overrides", "none", "1",
          "article section 1, step v2: a separate etcd per resource type; kube-apiserver "
          "--etcd-servers-overrides routes a resource's keys to its own etcd (e.g. /events)",
          "'none': one etcd; 'events': Events in their own etcd; 'per-resource': nodes+leases, pods, events "
          "and the rest each in their own etcd", choices=("none", "events", "per-resource"), kind=str,
          flag="--etcd-servers-overrides"),
    Param("db_size_bytes", 2_000_000_000, "B",
          "article section 1: the recommended 2 GB of the time (the sweep covers 1-100 GB)",
          "size of the etcd db file the write stream lands on (at least the cluster's objects)",
          lo=0, hi=200 * GIB, kind=int),
    Param("free_fraction", 0.5, "1",
          "data/etcd_real section 4 built its dbs by deleting a random half of the values and compacting; "
          "assumption: a db that carried as much history as data looks like that after a compaction",
          "share of the db file's pages that are free at the start (after the last compaction)", lo=0.0, hi=0.99,
          plausible=(0.25, 0.75), plausible_source="a compaction frees what history the db carried: from a quarter (little history) to three quarters (history three times the live data)"),
    Param("heartbeat_stream", "article", "1",
          "the heartbeat lab's settings: off = Node status every 10 s; article = Lease 10 s + status 60 s "
          "(KEP-0009, what the article's clusters ran); upstream = Lease + status every 5 min (KEP-589)",
          "which heartbeat writes feed etcd", choices=("off", "article", "upstream"), kind=str),
    Param("events_per_pod", 6.0, "events",
          "assumption: a pod's life records about six Events (Scheduled, Pulling, Pulled, Created, Started, "
          "Killing)",
          "Events written per pod lifecycle", lo=0, hi=1000,
          plausible=(3.0, 12.0), plausible_source="no published figure: half to twice the assumption"),
    Param("event_bytes", 1000.0, "B", "assumption: an Event is 0.7-1.2 KB in protobuf",
          "size of an Event object", lo=10, hi=1_500_000,
          plausible=(500.0, 2000.0), plausible_source="no published figure: half to twice the assumption"),
    Param("event_ttl", 3600.0, "s", "kube-apiserver --event-ttl default 1h",
          "how long an Event lives (its etcd lease expires, the key is deleted)", lo=60, hi=30 * 86_400,
          flag="--event-ttl"),
    Param("stress_put_rate", 2550.0, "puts/s",
          "measured: data/etcd_real section 4, empty db: etcd took 2,490-2,600 puts/s of 1-64 KiB values "
          "from 8 clients; the CNCF stress test 'keeps injecting data' at about the rate etcd takes",
          "open-loop rate of the stress test (values of 1-64 KiB) for the 40 GB spill claim", lo=1, hi=10**6),
    Param("defrag_at", 0.0, "s", "operator action (etcdctl defrag, then alarm disarm)",
          "defragment the db and disarm the NOSPACE alarm at this time; 0 = never", lo=0, hi=86_400),
])

_HB_KEEP = ("node_object_bytes", "lease_object_bytes", "node_status_update_frequency", "node_lease_renew_interval",
            "node_status_report_frequency_article", "node_status_report_frequency", "node_status_change_interval")
_FREELIST_COSTS = ParamSet([p for p in F.PARAMS if p.name != "page_size"])  # page size: bbolt_page_size

LAB_PARAMS = (STORAGE_PARAMS + B.PARAMS + _FREELIST_COSTS
              + ParamSet([p for p in HEARTBEAT_PARAMS if p.name in _HB_KEEP]) + SCENARIO_PARAMS + COST_PARAMS)

#: write-stream kinds: (key bytes, how its keys are written)
KINDS = ("lease", "node", "pod", "event", "other")
KEY_BYTES = {"node": 29.0, "lease": 44.0, "pod": 48.0, "event": 70.0, "other": 50.0}
GROUPS = {
    "none": {"etcd": KINDS},
    "events": {"etcd": ("lease", "node", "pod", "other"), "etcd-events": ("event",)},
    "per-resource": {"etcd-nodes": ("lease", "node"), "etcd-pods": ("pod",), "etcd-events": ("event",),
                     "etcd-rest": ("other",)},
}
FILL_VALUE = 1_000_000.0   # the filler objects that make up a db bigger than the cluster's objects


class EtcdStorageLab(Lab):
    name = "etcd-storage"
    title = "etcd storage: bbolt's free-page allocator and MVCC history at 10k nodes"
    switch = "freelist"
    notebook = "labs/02_etcd_storage.ipynb"
    article_section = "1"
    params = LAB_PARAMS
    # 16 simulated minutes: the API server's compactor runs at 5, 10 and 15 min (the first only
    # records the revision to compact to at the next)
    setting_defaults = {
        "off": {"backend_bbolt_freelist_type": "array", "quota_backend_bytes": 2 * GIB, "duration": 960.0},
        "article": {"backend_bbolt_freelist_type": "map", "quota_backend_bytes": 100 * GIB, "duration": 960.0},
        "upstream": {"backend_bbolt_freelist_type": "map", "quota_backend_bytes": 8 * GIB, "duration": 960.0},
    }

    # ---- the write stream ------------------------------------------------------------------
    def stream(self, p: Mapping[str, Any]) -> dict:
        """Per kind: ``(writes/s, bytes per write, number of keys, bytes per stored object)``
        of the cluster's write stream."""
        n = int(p["nodes"])
        lease_r, post_r, _ = heartbeat_rates(p["heartbeat_stream"], p)
        c = Costs.from_params({k: p[k] for k in COST_PARAMS.defaults()})
        n_other = max(int(p["objects"]) - 2 * n - int(p["pods"]), 1)
        ev_rate = p["pod_churn"] * p["events_per_pod"]
        return {
            "lease": (n * lease_r, float(p["lease_object_bytes"]), n, float(p["lease_object_bytes"])),
            "node": (n * post_r, float(p["node_object_bytes"]), n, float(p["node_object_bytes"])),
            "pod": (p["pod_churn"] * POD_WRITES_PER_LIFECYCLE, float(p["pod_bytes"]), max(int(p["pods"]), 1),
                    float(p["pod_bytes"])),
            "event": (ev_rate, float(p["event_bytes"]), int(round(ev_rate * p["event_ttl"])), float(p["event_bytes"])),
            "other": (p["other_requests"] * c.background_write_share, float(p["other_request_bytes"]), n_other,
                      float(p["other_object_bytes"])),
        }

    def groups(self, p: Mapping[str, Any]) -> dict:
        return GROUPS[p["etcd_servers_overrides"]]

    def memory_footprint(self, setting: str, p: Mapping[str, Any]) -> Footprint:
        """Per etcd: its MVCC store (keys of its kinds, new Event keys, filler objects;
        the revision log at the most the run writes), the per-second rows and series."""
        sc = Scenario.from_params({k: p[k] for k in SCENARIO_PARAMS.defaults()})
        st = self.stream(p)
        groups = self.groups(p)
        c = Costs.from_params({k: p[k] for k in COST_PARAMS.defaults()})
        dt, duration = sc.tick, sc.duration
        steps = int(round(duration / dt))
        ev_new = _new_event_keys(st, duration)
        fill_keys = _filler_keys(st, c, p) + len(groups)
        fp = Footprint(f"etcd-storage, {sc.nodes:,} nodes, {len(groups)} etcd, {duration:g} s")
        for g, kinds in groups.items():
            keys = sum(st[k][2] + (ev_new if k == "event" else 0) for k in kinds) + fill_keys
            writes = _max_writes(st, kinds, steps, dt)
            # at or below a compaction's revision: one interval's writes and, at most, one
            # survivor per key written before it
            written_keys = sum(min(st[k][2] + (ev_new if k == "event" else 0), _max_writes(st, (k,), steps, dt))
                               for k in kinds)
            held, old = MVCCStore.log_bounds(writes, written_keys, duration, c.etcd_compaction_interval)
            pre = f"{g}: " if len(groups) > 1 else ""
            fp.extend(MVCCStore.footprint(keys, held, old, log_since="run"), prefix=pre)
            fp.add(f"{pre}per-second rows and work law", steps, 8 * (len(_SERIES) + 48), since="run")
        fp.add("series DataFrame", steps, 8 * 40, phase="series")
        return fp

    # ---- the event-level run -----------------------------------------------------------------
    def run(self, setting: str, overrides: Mapping[str, Any] | None = None) -> RunResult:
        """The cluster's write stream into etcd for ``duration``, one row per ``tick``.

        MVCC history, db size vs quota and NOSPACE come from an
        :class:`~kscale_lab.etcd.mvcc.MVCCStore` per etcd; each second's commit time and put
        latency from the freelist work law at that second's free pages and write rate
        (:func:`kscale_lab.etcd.bbolt.open_loop`)."""
        p = self.resolve(setting, overrides)
        sc = Scenario.from_params({k: p[k] for k in SCENARIO_PARAMS.defaults()})
        st = self.stream(p)
        groups = self.groups(p)
        c = B.packed_costs(Costs.from_params({k: p[k] for k in COST_PARAMS.defaults()}))
        rng = np.random.default_rng(sc.seed)
        dt, duration = sc.tick, sc.duration
        steps = int(round(duration / dt))
        ev_new = _new_event_keys(st, duration)
        page = int(p["bbolt_page_size"])
        # initial live bytes per kind, and the db file: live + filler + free pages
        live_kind = {k: st[k][2] * float(c.page_bytes(st[k][3])) for k in KINDS}
        live_total = sum(live_kind.values())
        D, h = float(p["db_size_bytes"]), float(p["free_fraction"])
        live = max(live_total, (1.0 - h) * D)
        free = max(0.0, D - live)
        filler = live - live_total
        etcds = {}
        for g, kinds in groups.items():
            share = sum(live_kind[k] for k in kinds) / live_total if live_total else 1.0 / len(groups)
            etcds[g] = _GroupStore(g, kinds, st, c, rng, filler * share, free * share, ev_new, steps, dt)
        rows = {g: {m: np.zeros(steps) for m in _SERIES} for g in groups}
        events = []
        interval = c.etcd_compaction_interval
        next_comp = interval if interval > 0 else math.inf
        marks = {g: None for g in groups}
        defrag_at = float(p["defrag_at"]) or math.inf
        for i in range(steps):
            t = i * dt
            if t >= defrag_at:
                for g, e in etcds.items():
                    e.store.defragment()
                    e.store.disarm()
                events.append({"time": t, "event": "defragment"})
                defrag_at = math.inf
            if t >= next_comp:
                for g, e in etcds.items():
                    if marks[g] is not None:
                        hist = e.history_bytes()
                        removed = e.store.compact(marks[g])
                        events.append({"time": t, "event": "compaction", "etcd": g, "revision": marks[g],
                                       "removed": removed, "history_bytes_before": hist})
                    marks[g] = e.store.current_rev
                next_comp += interval
            for g, e in etcds.items():
                w = e.tick(t, dt)
                if w.alarm_raised:
                    events.append({"time": t, "event": "NOSPACE alarm", "etcd": g,
                                   "db_bytes": e.store.db_total, "quota": c.quota_backend_bytes})
                r = rows[g]
                m = e.store
                r["puts"][i] = w.accepted.sum()
                r["refused"][i] = (~w.accepted).sum()
                r["db"][i] = m.db_total
                r["db_use"][i] = m.db_in_use
                r["history"][i] = e.history_bytes()
                r["wal"][i] = m.wal_bytes_total
                r["nospace"][i] = m.nospace
        # commit time and latency from the work law at each second's free pages and rate
        t = np.arange(steps) * dt
        series = {"time": t}
        per_group = {}
        for g, e in etcds.items():
            r = rows[g]
            L = np.maximum(r["db"] - r["db_use"], 0.0) / page
            rate = r["puts"] / dt
            law = _law(e.mix(), p["backend_bbolt_freelist_type"], _law_key(p))
            ol = B.open_loop(law, L, np.maximum(rate, 1e-9), p)
            per_group[g] = (r, L, rate, ol)
        first = next(iter(per_group))
        tot = lambda key: sum(per_group[g][0][key] for g in per_group)  # noqa: E731
        series["etcd_mvcc_db_total_size_in_bytes"] = tot("db")
        series["etcd_mvcc_db_total_size_in_use_in_bytes"] = tot("db_use")
        series["etcd_mvcc_history_bytes"] = tot("history")
        series["bbolt_free_pages"] = sum(per_group[g][1] for g in per_group)
        series["etcd_server_quota_backend_bytes"] = np.full(steps, float(c.quota_backend_bytes))
        series["etcd_nospace"] = np.max([per_group[g][0]["nospace"] for g in per_group], axis=0)
        series["etcd_mvcc_put_per_s"] = tot("puts") / dt
        series["etcd_refused_per_s"] = tot("refused") / dt
        wal = tot("wal")
        series["etcd_disk_wal_write_bytes_per_s"] = np.diff(np.concatenate(([0.0], wal))) / dt
        series["etcd_disk_backend_commit_duration_seconds"] = np.max(
            [per_group[g][3]["commit_s"] for g in per_group], axis=0)
        series["etcd_debugging_disk_backend_commit_spill_duration_seconds"] = np.max(
            [per_group[g][3]["spill_s"] for g in per_group], axis=0)
        p50 = np.max([per_group[g][3]["put_p50_s"] for g in per_group], axis=0)
        p99 = np.max([per_group[g][3]["put_p99_s"] for g in per_group], axis=0)
        quiet = series["etcd_mvcc_put_per_s"] == 0
        series["put_latency_p50_s"] = np.where(quiet, np.nan, p50)
        series["put_latency_p99_s"] = np.where(quiet, np.nan, p99)
        if len(groups) > 1:
            for g in per_group:
                series[f"db_bytes[{g}]"] = per_group[g][0]["db"]
        import pandas as pd

        df = pd.DataFrame(series)
        ev = pd.DataFrame(events) if events else pd.DataFrame(columns=["time", "event"])
        summary = self._summary(df, ev, etcds, per_group, c, p, dt)
        summary["params"] = p
        return RunResult(setting, df, ev, summary)

    def _summary(self, df, ev, etcds, per_group, c, p, dt) -> dict:
        acc = df["etcd_mvcc_put_per_s"].to_numpy()
        T = float(p["backend_batch_interval"])
        q = {}
        for name, qq in (("put_latency_p50_s", 0.5), ("put_latency_p99_s", 0.99)):
            vals = [_mixture_quantile(qq, per_group[g][3]["commit_s"], per_group[g][2], T, p)
                    for g in per_group]
            vals = [v for v in vals if not np.isnan(v)]  # an etcd that took no puts has no latency
            q[name] = max(vals) if vals else float("nan")
        nospace = ev.loc[ev["event"] == "NOSPACE alarm", "time"] if len(ev) else []
        hist = _window_growth(df["etcd_mvcc_history_bytes"].to_numpy(), c.etcd_compaction_interval, dt)
        ok = df["etcd_nospace"] == 0
        minutes = max(float(ok.sum()) * dt / 60.0, 1e-9)
        return {
            "etcd_mvcc_db_total_size_in_bytes_max": float(df["etcd_mvcc_db_total_size_in_bytes"].max()),
            "etcd_mvcc_db_total_size_in_use_in_bytes_max": float(df["etcd_mvcc_db_total_size_in_use_in_bytes"].max()),
            "etcd_mvcc_history_bytes_max": float(df["etcd_mvcc_history_bytes"].max()),
            "history_bytes_per_compaction_window": float(np.max(hist)) if len(hist) else float("nan"),
            "bbolt_free_pages_max": float(df["bbolt_free_pages"].max()),
            "etcd_server_quota_backend_bytes": float(c.quota_backend_bytes),
            "etcd_nospace_at_s": float(nospace.iloc[0]) if len(nospace) else float("nan"),
            "etcd_refused_writes": int(sum(e.store.refused_total for e in etcds.values())),
            "etcd_mvcc_put_per_s": float(acc.mean()),
            "etcd_disk_wal_write_bytes_per_min": float(df.loc[ok, "etcd_disk_wal_write_bytes_per_s"].sum()) * dt
            / minutes,
            "etcd_disk_backend_commit_duration_seconds_max": float(
                df["etcd_disk_backend_commit_duration_seconds"].max()),
            "etcd_debugging_disk_backend_commit_spill_duration_seconds_max": float(
                df["etcd_debugging_disk_backend_commit_spill_duration_seconds"].max()),
            **q,
            "etcds": len(etcds),
        }

    # ---- the sweeps ----------------------------------------------------------------------------
    def sweep(self, setting: str = "article", overrides: Mapping[str, Any] | None = None, sizes=None,
              freelists=("array", "map"), load: str = "cluster"):
        """Put latency and throughput against db size, for each freelist.

        ``sizes``: db file sizes in bytes (default 1-100 GB, 15 points); free pages are
        ``free_fraction`` of each. ``load="cluster"``: the cluster's write stream (one etcd,
        open loop at its rate); ``"stress"``: ``stress_put_rate`` puts/s of 1-64 KiB values
        (open loop); ``"section4"``: etcd-real section 4's 8 closed-loop clients."""
        import pandas as pd

        p = self.resolve(setting, overrides)
        sizes = np.geomspace(1 * GB, 100 * GB, 15) if sizes is None else np.asarray(sizes, dtype=np.float64)
        if (sizes <= 0).any():
            raise ParameterError("sizes", "must all be > 0 bytes")
        L = p["free_fraction"] * sizes / p["bbolt_page_size"]
        rows = []
        for fl in freelists:
            if fl not in ("array", "map"):
                raise ParameterError("freelists", f"must hold 'array' or 'map'; got {fl!r}")
            if load == "cluster":
                st = self.stream(p)
                mix = _mix({k: st[k] for k in KINDS}, p)
                r = B.open_loop(_law(mix, fl, _law_key(p)), L, mix.rate, p)
            elif load == "stress":
                r = B.open_loop(_stress_law(fl, _law_key(p)), L, float(p["stress_put_rate"]), p)
            elif load == "section4":
                r = B.closed_loop(_stress_law(fl, _law_key(p)), L, p)
            else:
                raise ParameterError("load", f"must be 'cluster', 'stress' or 'section4'; got {load!r}")
            for i in range(sizes.size):
                rows.append({"freelist": fl, "db_bytes": sizes[i], "free_pages": L[i],
                             "puts_per_commit": float(r["puts_per_commit"][i]),
                             "commit_s": float(r["commit_s"][i]), "spill_s": float(r["spill_s"][i]),
                             "put_p50_s": float(r["put_p50_s"][i]), "put_p99_s": float(r["put_p99_s"][i]),
                             "throughput": float(r["throughput"][i]),
                             "capacity": float(r["capacity"][i]) if "capacity" in r else float("nan"),
                             "saturated": bool(r.get("saturated", np.zeros(sizes.size, bool))[i])})
        return pd.DataFrame(rows)

    def spill_after_compaction(self, db_bytes: float = 40 * GB, setting: str = "article",
                               overrides: Mapping[str, Any] | None = None) -> dict:
        """The CNCF stress test: spill per commit before and after a compaction of a db of
        ``db_bytes``, for both freelists. Before: the free list holds only the pages that
        copy-on-write frees each commit; after: ``free_fraction`` of the file."""
        p = self.resolve(setting, overrides)
        after = p["free_fraction"] * db_bytes / p["bbolt_page_size"]
        out = {}
        for fl in ("array", "map"):
            law = _stress_law(fl, _law_key(p))
            before = law.a["pages_freed"] * 2  # two transactions' worth of copy-on-write pages
            r = B.open_loop(law, [before, after], float(p["stress_put_rate"]), p)
            out[fl] = {"free_pages": [float(before), float(after)], "spill_s": r["spill_s"].tolist(),
                       "commit_s": r["commit_s"].tolist(), "saturated": r["saturated"].tolist(),
                       "puts_per_commit": r["puts_per_commit"].tolist()}
        return out

    def free_run_histogram(self, setting: str = "article", overrides: Mapping[str, Any] | None = None,
                           max_pages: int = 2**18, seed: int = 0):
        """Free spans by run length in the db the sweep assumes (``db_size_bytes`` with
        ``free_fraction`` free, laid out as etcd-real section 4 built it): ``(lengths, counts)``.
        The layout's runs are independent, so a sample of ``max_pages`` free pages is drawn and
        the counts scaled to the db's free pages."""
        p = self.resolve(setting, overrides)
        free = int(p["free_fraction"] * p["db_size_bytes"] / p["bbolt_page_size"])
        if free <= 0:
            return np.zeros(0, np.int64), np.zeros(0)
        sample = min(free, int(max_pages))
        n_keys = max(1, round(sample / 1_020_000 * 240_000))
        _, sizes, _ = F.etcd_value_layout(n_keys, seed=seed)
        lengths, counts = np.unique(sizes, return_counts=True)
        return lengths, counts * (free / max(int(sizes.sum()), 1))

    # ---- the exact tier ----------------------------------------------------------------------------
    def exact(self, setting: str, overrides: Mapping[str, Any] | None = None, duration: float | None = None):
        """The exact page model (:func:`kscale_lab.etcd.bbolt.simulate`) on this lab's stream:
        every leaf and page run through a real freelist. Starts from the cluster's objects
        laid out compactly (a freshly defragmented db); meant for up to a few thousand nodes."""
        p = self.resolve(setting, overrides)
        sc = Scenario.from_params({k: p[k] for k in SCENARIO_PARAMS.defaults()})
        dur = float(duration if duration is not None else sc.duration)
        st = self.stream(p)
        c = Costs.from_params({k: p[k] for k in COST_PARAMS.defaults()})
        rng = np.random.default_rng(sc.seed)
        times, keys, sizes, key_sizes, key_bytes = _stream_arrays(st, dur, rng)
        (Footprint(f"etcd-storage exact page model, {sc.nodes:,} nodes")
         .add("keys and pages", key_sizes.size, 80).add("puts", times.size, 120).check())
        be = B.EtcdBackend(key_sizes, key_bytes, c, p["backend_bbolt_freelist_type"], p,
                           expected_writes=times.size)
        return B.simulate(be, times, keys, sizes, dur, c.etcd_compaction_interval,
                          defrag_at=float(p["defrag_at"]) or None, params=p)

    def predict_real(self, result, freelist_type: str = "map", seed: int = 0) -> dict:
        """The exact page model's prediction for a real :func:`~kscale_lab.etcd.realetcd.run_heartbeats`
        run: the same numbers of Node and Lease puts, of the same sizes, at the rate the real etcd
        took them, on a db holding the registered keys. Returns predicted and measured WAL bytes
        and db growth (what ``data/etcd_real`` section 3 measured)."""
        from ..etcd.realetcd import lease_object_json

        n = int(result.nodes)
        lease_len = len(lease_object_json("node-00000", 0.0))
        node_len = (result.value_bytes - result.lease_puts * lease_len) / max(result.node_puts, 1)
        has_lease = result.lease_puts > 0
        key_sizes = np.concatenate([np.full(n, node_len)] + ([np.full(n, float(lease_len))] if has_lease else []))
        key_bytes = np.concatenate([np.full(n, 28.0)] + ([np.full(n, 43.0)] if has_lease else []))
        rng = np.random.default_rng(seed)
        # the kubelets' schedule: each node at a random phase; puts spread over the real wall time
        def sched(count, period):
            ph = rng.uniform(0, period, size=n)
            per = int(math.ceil(count / n)) + 1
            t = (ph[:, None] + period * np.arange(per)[None, :]).ravel()
            who = np.repeat(np.arange(n), per)
            o = np.argsort(t, kind="stable")[:count]
            return t[o], who[o]
        tn, wn = sched(result.node_puts, 1.0)
        parts_t, parts_k = [tn], [wn]
        if has_lease:
            tl, wl = sched(result.lease_puts, 1.0 / max(result.lease_puts / max(result.node_puts, 1), 1e-9))
            parts_t.append(tl)
            parts_k.append(n + wl)
        t = np.concatenate(parts_t)
        k = np.concatenate(parts_k)
        o = np.argsort(t, kind="stable")
        k = k[o]
        times = np.linspace(0.0, float(result.wall_seconds), k.size, endpoint=False)
        sizes = key_sizes[k]
        c = Costs.from_params({})
        be = B.EtcdBackend(key_sizes, key_bytes, c, freelist_type, expected_writes=k.size)
        db0 = be.file_bytes
        res = B.simulate(be, times, k, sizes, float(result.wall_seconds) + 1.0, compaction_interval=0)
        return {
            "puts": int(k.size),
            "wal_bytes_model": float(be.mvcc.wal_bytes_total),
            "wal_bytes_real": float(result.wal_bytes),
            "db_growth_model": float(be.file_bytes - db0),
            "db_growth_real": float(result.db_growth_bytes),
            "commits_model": int(res.summary["commits"]),
            "commits_real": int(result.backend_commits),
        }

    # ---- claims ---------------------------------------------------------------------------------------
    def claims(self, results: Mapping[str, RunResult] | None = None, overrides: Mapping[str, Any] | None = None,
               only=None) -> dict:
        ov = dict(overrides or {})
        want = lambda *ids: self.wanted(only, *ids)  # noqa: E731
        out = {}
        if want("map_p99_growth_2_to_100gb", "array_p99_growth_2_to_100gb"):
            # a put benchmark as the CNCF write-up ran it: clients in a closed loop, so the p99 put
            # waits for a whole commit and the ratio moves with the counted work of each commit
            sw = self.sweep("article", ov, sizes=[2 * GB, 100 * GB], load="section4")
            arr = sw[sw.freelist == "array"].put_p99_s.to_numpy()
            mp = sw[sw.freelist == "map"].put_p99_s.to_numpy()
            out["map_p99_growth_2_to_100gb"] = mp[1] / mp[0]
            out["array_p99_growth_2_to_100gb"] = arr[1] / arr[0]
        if want("array_spill_after_compaction_40gb_s", "array_spill_growth_40gb", "map_spill_after_compaction_40gb_s"):
            spill = self.spill_after_compaction(40 * GB, overrides=ov)
            out["array_spill_after_compaction_40gb_s"] = spill["array"]["spill_s"][1]
            out["array_spill_growth_40gb"] = spill["array"]["spill_s"][1] / spill["array"]["spill_s"][0]
            out["map_spill_after_compaction_40gb_s"] = spill["map"]["spill_s"][1]
        if want("section4_p99_array_over_map_8gb", "section4_throughput_array_over_map_8gb"):
            free = float(self.resolve("article", ov)["free_fraction"])   # the benchmark had 1.02M free pages
            s4 = self.sweep("article", ov, sizes=[1_020_000 * 4096 / free], load="section4")
            s4a = s4[s4.freelist == "array"].iloc[0]
            s4m = s4[s4.freelist == "map"].iloc[0]
            out["section4_p99_array_over_map_8gb"] = s4a.put_p99_s / s4m.put_p99_s
            out["section4_throughput_array_over_map_8gb"] = s4a.throughput / s4m.throughput
        window = {"duration": 660.0, "quota_backend_bytes": 1024**4, "db_size_bytes": 0}
        if want("history_per_window_node_status_10k_gb"):
            off = self.run("article", dict(ov, **window, heartbeat_stream="off"))
            out["history_per_window_node_status_10k_gb"] = off.summary["history_bytes_per_compaction_window"] / GB
        if want("history_per_window_lease_10k_gb"):
            lease = self.run("article", dict(ov, **window, heartbeat_stream="article"))
            out["history_per_window_lease_10k_gb"] = lease.summary["history_bytes_per_compaction_window"] / GB
        if want("map_release_over_array_small_db"):
            rel = self.release_cost_small_db(overrides=ov)
            out["map_release_over_array_small_db"] = rel["map"] / rel["array"]
        return out

    def release_cost_small_db(self, db_bytes: float = 1 * GB, batch_pages: int | None = None, seed: int = 0,
                              overrides: Mapping[str, Any] | None = None) -> dict:
        """bbolt issue #239 on a small db: the freelist time of releasing one compaction batch
        of Node-status history (``batch_pages``, default: what one 1,000-revision batch of
        15 KB Nodes frees) into a free list of ``db_bytes / 2`` free pages, per freelist."""
        p = self.resolve("article", overrides)
        page = int(p["bbolt_page_size"])
        if batch_pages is None:
            elem = int(B.element_bytes(p["node_object_bytes"], KEY_BYTES["node"], p["kv_framing_bytes"]))
            per_leaf = int(B.node_pages(B.PAGE_HEADER_SIZE + 2 * elem, page))
            batch_pages = 1000 // 2 * per_leaf
        L = int(db_bytes * 0.5 / page)
        out = {}
        for fl in ("array", "map"):
            starts, sizes, hw = F.fragmented_spans(L, 4.0, seed)
            pf = F.PageFile((F.ArrayFreelist if fl == "array" else F.HashmapFreelist).from_spans(starts, sizes), hw)
            # a batch of history leaves, allocated earlier at the end of the file, now freed and released
            runs = [pf.allocate(3, 8) for _ in range(batch_pages // 8)]
            pf.commit(3)
            for s in runs:
                pf.free(4, s, 8)
            pf.freelist.reset_work()
            pf.freelist.release(5)
            out[fl] = float(F.freelist_seconds(pf.freelist.work, B._fl(B._p(p))))
        out["free_pages"] = L
        out["released_pages"] = batch_pages
        return out


# --------------------------------------------------------------------------------------------
# helpers: one etcd's store and stream
# --------------------------------------------------------------------------------------------
_SERIES = ("puts", "refused", "db", "db_use", "history", "wal", "nospace")


class _Mix:
    """A write stream's composition: rate and element sizes per kind."""

    def __init__(self, rates: dict, elems: dict):
        self.rates = rates
        self.elems = elems
        self.rate = float(sum(rates.values()))

    def key(self) -> tuple:
        return tuple((k, round(self.rates[k], 3), int(self.elems[k])) for k in sorted(self.rates))


def _mix(st: dict, p: Mapping) -> _Mix:
    rates = {k: float(v[0]) for k, v in st.items() if v[0] > 0}  # v: (rate, write bytes, keys, object bytes)
    elems = {k: int(B.element_bytes(st[k][1], KEY_BYTES[k], p["kv_framing_bytes"])) for k in rates}
    return _Mix(rates, elems)


def _law_key(p: Mapping) -> tuple:
    return (float(p["backend_batch_interval"]), int(p["bbolt_page_size"]), float(p["bbolt_fill_percent"]),
            int(p["kv_framing_bytes"]), int(p["root_pages_per_commit"]), int(p["seed"]))


def _law(mix: _Mix, freelist: str, law_key: tuple) -> B.WorkLaw:
    return _law_cached(mix.key(), freelist, law_key)


@functools.lru_cache(maxsize=64)
def _law_cached(mix_key: tuple, freelist: str, law_key: tuple) -> B.WorkLaw:
    T, page, fill, framing, root, seed = law_key
    params = {"backend_batch_interval": T, "bbolt_page_size": page, "bbolt_fill_percent": fill,
              "kv_framing_bytes": framing, "root_pages_per_commit": root}
    kinds = [k for k, _, _ in mix_key]
    rates = np.array([r for _, r, _ in mix_key])
    elems = np.array([e for _, _, e in mix_key], dtype=np.int64)
    rate = rates.sum()
    n = max(1, int(round(rate * T)))
    rng = np.random.default_rng([seed, 7])
    trace_elems = [elems[rng.choice(len(kinds), size=n, p=rates / rate)] for _ in range(16)]
    trace = B.allocation_trace(trace_elems, params)
    return B.work_law(trace, "array" if freelist == "array" else "hashmap", n, seed=seed)


def _stress_law(freelist: str, law_key: tuple) -> B.WorkLaw:
    return _stress_law_cached(freelist, law_key)


@functools.lru_cache(maxsize=16)
def _stress_law_cached(freelist: str, law_key: tuple) -> B.WorkLaw:
    T, page, fill, framing, root, seed = law_key
    params = {"backend_batch_interval": T, "bbolt_page_size": page, "bbolt_fill_percent": fill,
              "kv_framing_bytes": framing, "root_pages_per_commit": root}
    n = 320  # etcd-real section 4: measured puts/s x (interval + commit time)
    trace = B.allocation_trace(B.section4_trace(n, 12, seed + 2, params), params)
    return B.work_law(trace, "array" if freelist == "array" else "hashmap", n, seed=seed)


class _GroupStore:
    """One etcd: an MVCCStore over its kinds' keys (+ filler objects), fed per tick."""

    def __init__(self, name, kinds, st, costs, rng, filler_bytes, free_bytes, ev_new, steps, dt=1.0):
        self.name = name
        self.kinds = kinds
        self.st = st
        self.rng = rng
        self.costs = costs
        sizes, kbytes, pages, self.offset = [], [], [], {}
        # the keys come in blocks of one size: their page bytes are computed once per block
        page_of = lambda v: float(costs.page_bytes(float(v)))  # noqa: E731
        off = 0
        for k in kinds:
            rate, vb, n, ob = st[k]
            n_keys = n + (ev_new if k == "event" else 0)
            self.offset[k] = off
            sizes.append(np.full(n_keys, ob if k != "event" else 0.0))
            pages.append(np.full(n_keys, page_of(ob if k != "event" else 0.0)))
            if k == "event":
                sizes[-1][:n] = ob
                pages[-1][:n] = page_of(ob)
            kbytes.append(np.full(n_keys, KEY_BYTES[k]))
            off += n_keys
        n_fill = int(math.ceil(filler_bytes / FILL_VALUE)) if filler_bytes > 0 else 0
        if n_fill:
            sizes.append(np.full(n_fill, filler_bytes / n_fill))
            pages.append(np.full(n_fill, page_of(filler_bytes / n_fill)))
            kbytes.append(np.full(n_fill, 60.0))
        sizes = np.concatenate(sizes) if sizes else np.zeros(0)
        pages = np.concatenate(pages) if pages else np.zeros(0)
        kbytes = np.concatenate(kbytes) if kbytes else np.zeros(0)
        # the log is reserved at the most the run writes (resident only once written)
        self.store = MVCCStore(sizes, kbytes, costs, expected_writes=_max_writes(st, kinds, steps, dt),
                               initial_pages=pages)
        if "event" in kinds:
            # events created but not yet written have no object yet: they hold no pages
            e0 = self.offset["event"] + st["event"][2]
            self.store.db_in_use -= float(costs.page_bytes(0.0)) * ev_new
            self.store.db_total = self.store.db_in_use
            self._ev_live_lo = self.offset["event"]       # oldest live event key
            self._ev_next = e0                           # next new event key
            self._ev_end = e0 + ev_new
        self.store.db_total += free_bytes
        self.live_bytes = float(self.store.db_in_use)
        self._page = {k: float(costs.page_bytes(st[k][1])) for k in kinds}
        self._page0 = float(costs.page_bytes(0.0))
        self._ev_backlog = 0.0

    def mix(self) -> _Mix:
        return _mix({k: self.st[k] for k in self.kinds}, {"kv_framing_bytes": B.PARAMS["kv_framing_bytes"].default})

    def history_bytes(self) -> float:
        return max(0.0, float(self.store.db_in_use) - self.live_bytes)

    def tick(self, t: float, dt: float):
        keys, sizes = [], []
        rng = self.rng
        for k in self.kinds:
            rate, vb, n, _ = self.st[k]
            if rate <= 0:
                continue
            m = int(rng.poisson(rate * dt))
            if k == "event":
                # m new Events on fresh keys; as many expire (lease revoked: a tombstone each)
                m = min(m, self._ev_end - self._ev_next)
                expire = np.arange(self._ev_live_lo, self._ev_live_lo + m)
                new = np.arange(self._ev_next, self._ev_next + m)
                self._ev_live_lo += m
                self._ev_next += m
                keys += [expire, new]
                sizes += [np.zeros(m), np.full(m, vb)]
                continue
            keys.append(self.offset[k] + rng.integers(0, n, size=m))
            sizes.append(np.full(m, vb))
        if not keys:
            return self.store.put(np.zeros(0, np.int64), np.zeros(0), now=t)
        kk = np.concatenate(keys)
        ss = np.concatenate(sizes)
        order = rng.permutation(kk.size)
        res = self.store.put(kk[order], ss[order], now=t)
        # live bytes change only by Events: a new one adds its pages, an expired one leaves a tombstone
        if "event" in self.kinds:
            acc = res.accepted
            ev = (kk[order] >= self.offset["event"]) & (kk[order] < self._ev_end)
            new = ev & (ss[order] > 0) & acc
            dead = ev & (ss[order] == 0) & acc
            self.live_bytes += new.sum() * self._page["event"] - dead.sum() * (self._page["event"] - self._page0)
        return res


def _window_growth(history: np.ndarray, interval: float, dt: float) -> list[float]:
    """History written in each full compaction window: from just after one compactor tick
    to just before the next (the compactor acts at the start of its tick)."""
    if interval <= 0:
        return []
    per = int(round(interval / dt))
    out = []
    for start in range(0, history.size - per + 1, per):
        out.append(float(history[start + per - 1] - history[start]))
    return out


def _new_event_keys(st: dict, duration: float) -> int:
    """Keys reserved for the Events created during the run."""
    return int(math.ceil(st["event"][0] * duration * 1.2)) + 16


def _max_writes(st: dict, kinds, steps: int, dt: float) -> int:
    """The most writes an etcd of ``kinds`` takes in ``steps`` ticks: Poisson counts per
    tick (bounded at +8 sigma), two per Event (the new key, the expired one's tombstone)."""
    total = 0.0
    for k in kinds:
        mean = float(st[k][0]) * dt * steps
        if mean > 0:
            total += (mean + 8.0 * math.sqrt(mean) + 16.0) * (2 if k == "event" else 1)
    return int(total) + 1024


def _filler_keys(st: dict, c, p: Mapping) -> int:
    """Filler objects that make the db file ``db_size_bytes`` (as :meth:`EtcdStorageLab.run`)."""
    live_total = sum(st[k][2] * float(c.page_bytes(st[k][3])) for k in KINDS)
    live = max(live_total, (1.0 - float(p["free_fraction"])) * float(p["db_size_bytes"]))
    filler = live - live_total
    return int(math.ceil(filler / FILL_VALUE)) if filler > 0 else 0


def _mixture_quantile(q: float, commit_s: np.ndarray, rate: np.ndarray, T: float, p: Mapping) -> float:
    """Quantile of put latency over a run: per second a mixture of 'no wait' and 'wait
    uniform in (0, C)' with weight C / (T + C), weighted by that second's puts."""
    base = float(p["put_base_latency"])
    C = np.asarray(commit_s, dtype=np.float64)
    w = np.asarray(rate, dtype=np.float64)
    if w.sum() <= 0:
        return float("nan")
    if not np.isfinite(C).all():
        return float("inf")
    tail = lambda x: float((w * np.maximum(0.0, C - x) / (T + C)).sum() / w.sum())  # noqa: E731
    if tail(0.0) <= 1 - q:
        return base
    lo, hi = 0.0, float(C.max())
    for _ in range(60):
        mid = (lo + hi) / 2
        if tail(mid) > 1 - q:
            lo = mid
        else:
            hi = mid
    return base + hi


def _stream_arrays(st: dict, duration: float, rng: np.random.Generator):
    """The stream as time-ordered puts for the exact tier: ``(times, keys, sizes, initial
    key sizes, key bytes)``; Events are new keys, each expiring one as a tombstone."""
    offsets, key_sizes, key_bytes = {}, [], []
    off = 0
    ev_rate, ev_vb, ev_live, _ = st["event"]
    ev_new = int(math.ceil(ev_rate * duration * 1.2)) + 16
    for k in KINDS:
        rate, vb, n, ob = st[k]
        extra = ev_new if k == "event" else 0
        offsets[k] = off
        ks = np.full(n + extra, ob)
        if k == "event":
            ks[n:] = 0.0
        key_sizes.append(ks)
        key_bytes.append(np.full(n + extra, KEY_BYTES[k]))
        off += n + extra
    times, keys, sizes = [], [], []
    for k in KINDS:
        rate, vb, n, _ = st[k]
        if rate <= 0:
            continue
        m = int(rng.poisson(rate * duration))
        tt = np.sort(rng.uniform(0.0, duration, size=m))
        if k == "event":
            m = min(m, ev_new, ev_live) if ev_live else min(m, ev_new)
            tt = tt[:m]
            times += [tt, tt]
            keys += [offsets[k] + n + np.arange(m), offsets[k] + np.arange(m)]
            sizes += [np.full(m, vb), np.zeros(m)]
            continue
        times.append(tt)
        keys.append(offsets[k] + rng.integers(0, n, size=m))
        sizes.append(np.full(m, vb))
    times = np.concatenate(times)
    order = np.argsort(times, kind="stable")
    return (times[order], np.concatenate(keys)[order], np.concatenate(sizes)[order],
            np.concatenate(key_sizes), np.concatenate(key_bytes))


LAB = EtcdStorageLab()

"""The cluster model: components wired together for one scenario.

One :class:`Cluster` holds the control plane's few servers and the many nodes:

* ``apiservers``: :class:`~kscale_lab.apiserver.server.APIServer` instances; each
  kubelet keeps one connection to one of them (``conn``), as client-go does;
* ``etcd``: an :class:`~kscale_lab.etcd.mvcc.MVCCStore` over a keyspace laid out
  as upstream names it (``/registry/minions/``, ``/registry/leases/kube-node-lease/``,
  ``/registry/pods/``, everything else);
* ``fleet``: the kubelets' heartbeat loops (:mod:`kscale_lab.clients.kubelet`);
* ``nlc``: the node lifecycle controller (:mod:`kscale_lab.clients.nodelifecycle`);
* a background workload (pod churn, other requests) and an optional CPU hog fault;
* the API server's etcd compactor (every ``--etcd-compaction-interval`` it compacts
  to the revision it saw one interval earlier, as ``storage/etcd3/compact.go`` does).

SimPy runs four processes: the tick (fleet + API servers + etcd), the node
monitor (every ``--node-monitor-period``), the compactor and, when asked, the
fault. Every tick records one row of metrics; :meth:`run` returns a
:class:`RunResult` with the series, the events and a summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .apiserver.server import APIServerPool
from .clients.kubelet import KubeletFleet
from .clients.nodelifecycle import NodeLifecycleController
from .costs import Costs
from .engine import Engine
from .etcd.mvcc import MVCCStore
from .scenario import Scenario

POD_WRITES_PER_LIFECYCLE = 7  # create, bind, 3 status updates, graceful delete (update + delete)

# kinds of identified requests
LEASE, STATUS_POST, STATUS_GET = 0, 1, 2


@dataclass
class RunResult:
    setting: str
    series: "object"             # pandas DataFrame, one row per tick
    events: "object"             # pandas DataFrame of one-off events
    summary: dict = field(default_factory=dict)


class Cluster:
    """A cluster for one scenario and one heartbeat setting."""

    def __init__(self, scenario: Scenario, params: dict, setting: str):
        self.sc = scenario
        self.p = params
        self.setting = setting
        self.costs = Costs.from_params({k: v for k, v in params.items() if k in _cost_names()})
        self.engine = Engine(scenario.seed, scenario.tick)
        rng = self.engine.rng
        n = scenario.nodes
        self.n = n
        c = self.costs
        # --- API servers, and which one each kubelet talks to -------------------------
        self.apiservers = APIServerPool(c.apiservers, c.apiserver_cores, c.max_mutating_requests_inflight,
                                        c.max_requests_inflight, c.reject_overhead)
        self.conn = rng.integers(0, self.apiservers.k, size=n)
        # --- etcd keyspace --------------------------------------------------------------
        p = params
        n_pods = scenario.pods
        n_other = scenario.objects - 2 * n - n_pods
        self.k_node, self.k_lease, self.k_pod, self.k_other = 0, n, 2 * n, 2 * n + n_pods
        sizes = np.concatenate([
            np.full(n, p["node_object_bytes"]),
            np.full(n, p["lease_object_bytes"]),
            np.full(n_pods, scenario.pod_bytes),
            np.full(n_other, scenario.other_object_bytes),
        ])
        key_bytes = np.concatenate([
            np.full(n, 29.0),   # /registry/minions/node-012345
            np.full(n, 44.0),   # /registry/leases/kube-node-lease/node-012345
            np.full(n_pods, 48.0),
            np.full(n_other, 50.0),
        ])
        self.n_pods, self.n_other = n_pods, n_other
        # bytes of bbolt pages one revision of each kind of object occupies
        self.pages_node, self.pages_lease, self.pages_pod, self.pages_other = (
            float(c.page_bytes(b)) for b in (p["node_object_bytes"], p["lease_object_bytes"], scenario.pod_bytes,
                                              scenario.other_request_bytes))
        # the log is reserved at the most the run can store (pages are resident only once written)
        self.etcd = MVCCStore(sizes, key_bytes, c, expected_writes=max_stored_writes(scenario, params, setting))
        # --- kubelets and the node lifecycle controller -----------------------------------
        self.fleet = KubeletFleet(n, setting, p, rng)
        self.nlc = NodeLifecycleController(n, p["node_monitor_grace_period"])
        # --- per-request costs -------------------------------------------------------------
        nb, lb = p["node_object_bytes"], p["lease_object_bytes"]
        self.cpu_lease = c.put_protobuf(lb, c.lease_watchers)
        self.cpu_get_node = c.get_from_cache(nb)
        self.cpu_patch_node = c.patch_json_smp(nb, c.node_watchers + 1)
        cpu_post = self.cpu_patch_node + (self.cpu_get_node if self.fleet.gets_node else 0.0)
        self.cpu_by_kind = np.array([self.cpu_lease, cpu_post, self.cpu_get_node])   # LEASE, STATUS_POST, STATUS_GET
        self.timeout = min(p["node_status_update_frequency"], p["node_lease_renew_interval"] * 4)
        # background: pod churn writes + other requests (reads and writes)
        dt = scenario.tick
        self.bg_pod_writes = scenario.pod_churn * POD_WRITES_PER_LIFECYCLE * dt
        self.bg_other_writes = scenario.other_requests * c.background_write_share * dt
        self.bg_other_reads = scenario.other_requests * (1 - c.background_write_share) * dt
        w_pod = c.generic_write(scenario.pod_bytes, c.pod_watchers)
        w_other = c.generic_write(scenario.other_request_bytes, c.other_watchers)
        r_other = c.get_from_cache(scenario.other_request_bytes)
        total_bg = self.bg_pod_writes + self.bg_other_writes + self.bg_other_reads
        self.bg_cpu_per_req = 0.0 if total_bg == 0 else (
            self.bg_pod_writes * w_pod + self.bg_other_writes * w_other + self.bg_other_reads * r_other) / total_bg
        # --- accounting -------------------------------------------------------------------------
        self.cpu_heartbeat = 0.0
        self.cpu_background = 0.0
        self.cpu_hog = 0.0
        self.hb_latencies: list[np.ndarray] = []
        self.rejected_total = 0
        self.hb_requests = 0
        self.hb_failures = 0
        self.notready_now = 0
        self.notready_series: list[tuple[float, int]] = []
        self._compact_mark: int | None = None
        self._last_rev = self.etcd.current_rev
        self._last_wal = 0.0
        self._last_value = 0.0
        self.engine.rec.event(0.0, "start", db_bytes=self.etcd.db_total)

    # ------------------------------------------------------------------------------------------
    def _hog(self, t: float) -> float:
        sc = self.sc
        if sc.cpu_hog > 0 and sc.cpu_hog_at <= t < sc.cpu_hog_at + sc.cpu_hog_for:
            return sc.cpu_hog * sc.tick / self.apiservers.k
        return 0.0

    def tick(self, t0: float) -> None:
        dt = self.sc.tick
        t1 = t0 + dt
        rng = self.engine.rng
        fleet, c = self.fleet, self.costs
        fleet.changes(dt)
        # ---- identified requests due in this tick ----------------------------------------------
        parts_node, parts_kind, parts_at = [], [], []
        if fleet.lease is not None:
            idx = fleet.lease.due(t1)
            parts_node.append(idx)
            parts_kind.append(np.full(idx.size, LEASE, dtype=np.int8))
            parts_at.append(np.maximum(fleet.lease.next_at[idx], t0))
        idx = fleet.status.due(t1)
        at = np.maximum(fleet.status.next_at[idx], t0)
        post = fleet.status_posts(idx, at)
        if fleet.gets_node:
            kinds = np.where(post, STATUS_POST, STATUS_GET).astype(np.int8)
            parts_node.append(idx)
            parts_kind.append(kinds)
            parts_at.append(at)
        else:
            # no GET (informer cache): a sync that does not post makes no request at all
            quiet = idx[~post]
            fleet.status.succeed(quiet, at[~post], rng)
            parts_node.append(idx[post])
            parts_kind.append(np.full(int(post.sum()), STATUS_POST, dtype=np.int8))
            parts_at.append(at[post])
        node = np.concatenate(parts_node)
        kind = np.concatenate(parts_kind)
        arrive = np.concatenate(parts_at)
        cpu = self.cpu_by_kind[kind]
        mutating = kind != STATUS_GET
        extra = np.where(mutating, c.etcd_put_latency, 0.0)
        # ---- serve them, API server by API server ------------------------------------------------
        n_api = self.apiservers.k
        hog = self._hog(t0)
        out = self.apiservers.step(dt, self.conn[node], arrive - t0, cpu, mutating, extra, rng,
                                   bg_mut=(self.bg_pod_writes + self.bg_other_writes) / n_api,
                                   bg_ro=self.bg_other_reads / n_api, bg_cpu_per_req=self.bg_cpu_per_req,
                                   bg_extra_latency=c.etcd_put_latency, hog_cpu=hog)
        admitted, latency = out.admitted, out.latency
        cpu_used = float(out.cpu_used.sum())
        inflight = float(out.inflight.sum())
        self.rejected_total += int(out.rejected.sum())
        hb_work = float(np.where(admitted, cpu, c.reject_overhead).sum())
        bg_work = (self.bg_pod_writes + self.bg_other_writes + self.bg_other_reads) * self.bg_cpu_per_req
        self.cpu_heartbeat += hb_work
        self.cpu_background += bg_work
        self.cpu_hog += hog * n_api
        # ---- writes reach etcd in commit order ---------------------------------------------------
        done_at = arrive + np.where(admitted, latency, 0.0)
        writes = np.flatnonzero(admitted & mutating)
        wkeys = np.where(kind[writes] == LEASE, self.k_lease + node[writes], self.k_node + node[writes])
        is_lease = kind[writes] == LEASE
        wsize = np.where(is_lease, self.p["lease_object_bytes"], self.p["node_object_bytes"])
        wpages = np.where(is_lease, self.pages_lease, self.pages_node)
        n_bg_pod = rng.poisson(self.bg_pod_writes) if self.n_pods else 0
        n_bg_other = rng.poisson(self.bg_other_writes) if self.n_other else 0
        bg_keys = np.concatenate([self.k_pod + rng.integers(0, max(self.n_pods, 1), n_bg_pod),
                                  self.k_other + rng.integers(0, max(self.n_other, 1), n_bg_other)])
        bg_size = np.concatenate([np.full(n_bg_pod, self.sc.pod_bytes), np.full(n_bg_other,
                                                                                self.sc.other_request_bytes)])
        bg_at = t0 + rng.random(bg_keys.size) * dt
        all_keys = np.concatenate([wkeys, bg_keys])
        all_size = np.concatenate([wsize, bg_size])
        all_pages = np.concatenate([wpages, np.full(n_bg_pod, self.pages_pod), np.full(n_bg_other, self.pages_other)])
        all_at = np.concatenate([done_at[writes], bg_at])
        order = np.argsort(all_at)
        res = self.etcd.put(all_keys[order], all_size[order], now=t0, pages=all_pages[order])
        if res.alarm_raised:
            self.engine.rec.event(t0, "NOSPACE alarm", db_bytes=self.etcd.db_total,
                                  quota=c.quota_backend_bytes)
        stored = np.zeros(all_keys.size, dtype=bool)
        stored[order] = res.accepted
        committed = np.zeros(node.size, dtype=bool)
        committed[writes] = stored[: writes.size]
        # ---- what the kubelets see -------------------------------------------------------------
        ok_server = admitted & (committed | ~mutating)
        timed_out = ok_server & (latency > self.timeout)
        success = ok_server & ~timed_out
        failed = ~success
        fail_at = np.where(timed_out, arrive + self.timeout, done_at)
        for k, loop in ((LEASE, fleet.lease), (STATUS_POST, fleet.status), (STATUS_GET, fleet.status)):
            if loop is None:
                continue
            m = kind == k
            s, f = m & success, m & failed
            if s.any():
                loop.succeed(node[s], done_at[s], rng)
            if f.any():
                loop.fail(node[f], fail_at[f])
        posted = (kind == STATUS_POST) & success
        fleet.last_report[node[posted]] = arrive[posted]
        fleet.pending_change[node[posted]] = False
        # the node lifecycle controller sees every committed heartbeat, timed out or not
        health = committed if self.setting != "off" else committed & (kind == STATUS_POST)
        self.nlc.observe(node[health], done_at[health])
        # ---- metrics -------------------------------------------------------------------------------
        lat = latency[admitted & mutating]
        self.hb_latencies.append(lat)
        self.hb_requests += int(mutating.sum())
        self.hb_failures += int((failed & mutating).sum())
        q = _p50_p99(lat)
        m = self.etcd.metrics()
        rev, wal, val = m["etcd_debugging_mvcc_current_revision"], m["etcd_disk_wal_write_bytes_total"], \
            self.etcd.value_bytes_total
        self.engine.rec.sample(
            t0,
            apiserver_cpu_cores=cpu_used / dt,
            apiserver_cpu_heartbeat_cores=hb_work / dt,
            apiserver_cpu_demand_cores=(hb_work + bg_work + hog * n_api) / dt,
            apiserver_request_duration_seconds_p50=q[0],
            apiserver_request_duration_seconds_p99=q[1],
            apiserver_current_inflight_requests=inflight,
            apiserver_rejected_requests=int((~admitted).sum()),
            heartbeat_writes=int(mutating.sum()),
            heartbeat_failures=int((failed & mutating).sum()),
            etcd_write_bytes_per_s=(val - self._last_value) / dt,
            etcd_wal_bytes_per_s=(wal - self._last_wal) / dt,
            etcd_disk_wal_write_bytes_total=wal,
            etcd_revisions_per_s=(rev - self._last_rev) / dt,
            etcd_mvcc_db_total_size_in_bytes=m["etcd_mvcc_db_total_size_in_bytes"],
            etcd_mvcc_db_total_size_in_use_in_bytes=m["etcd_mvcc_db_total_size_in_use_in_bytes"],
            etcd_server_quota_backend_bytes=m["etcd_server_quota_backend_bytes"],
            etcd_nospace=int(self.etcd.nospace),
            node_collector_unhealthy_nodes_in_zone=self.notready_now,
        )
        self._last_rev, self._last_wal, self._last_value = rev, wal, val

    def monitor(self, t: float) -> None:
        self.notready_now = self.nlc.monitor(t)
        self.notready_series.append((t, self.notready_now))

    def compact(self, t: float) -> None:
        if self._compact_mark is not None:
            removed = self.etcd.compact(self._compact_mark)
            self.engine.rec.event(t, "compaction", revision=self._compact_mark, removed=removed,
                                  db_in_use=self.etcd.db_in_use)
        self._compact_mark = self.etcd.current_rev

    # ------------------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        e, sc, p = self.engine, self.sc, self.p
        e.every(sc.tick, self.tick)
        e.every(p["node_monitor_period"], self.monitor, offset=p["node_monitor_period"])
        if self.costs.etcd_compaction_interval > 0:
            e.every(self.costs.etcd_compaction_interval, self.compact)
        e.run(sc.duration - sc.tick)
        result = RunResult(self.setting, e.rec.frame(), e.rec.events_frame(), self.summary())
        e.close()   # the processes hold this cluster: break the cycle so its arrays are freed at once
        return result

    def summary(self) -> dict:
        sc, c = self.sc, self.costs
        series = self.engine.rec.frame()
        lat = np.concatenate(self.hb_latencies) if self.hb_latencies else np.array([])
        # (percentiles of the same values; overwrite_input spares a copy of the tape)
        total_cpu = self.cpu_heartbeat + self.cpu_background + self.cpu_hog
        nr = np.array([v for _, v in self.notready_series]) if self.notready_series else np.array([0])
        nr_t = np.array([t for t, _ in self.notready_series]) if self.notready_series else np.array([0.0])
        first_nr = float(nr_t[np.argmax(nr > 0)]) if (nr > 0).any() else float("nan")
        ev = self.engine.rec.events_frame()
        nospace = ev.loc[ev["event"] == "NOSPACE alarm", "time"] if len(ev) else []
        capacity = float(self.apiservers.cores.sum())
        # write rates while etcd accepted writes (after a NOSPACE alarm it accepts none)
        accepting = series["etcd_nospace"] == 0
        acc_min = max(float(accepting.sum()) * sc.tick / 60.0, 1e-9)
        return {
            "etcd_write_bytes_per_min": float(series.loc[accepting, "etcd_write_bytes_per_s"].sum()) * sc.tick / acc_min,
            "etcd_wal_bytes_per_min": float(series.loc[accepting, "etcd_wal_bytes_per_s"].sum()) * sc.tick / acc_min,
            "etcd_revisions_per_s": (self.etcd.current_rev - self.etcd.n_keys) / sc.duration,
            "etcd_db_size_max_bytes": float(series["etcd_mvcc_db_total_size_in_bytes"].max()),
            "etcd_quota_backend_bytes": float(c.quota_backend_bytes),
            "etcd_nospace_at_s": float(nospace.iloc[0]) if len(nospace) else float("nan"),
            "etcd_refused_writes": int(self.etcd.refused_total),
            "apiserver_cpu_cores_mean": total_cpu / sc.duration,
            "apiserver_cpu_utilisation": total_cpu / sc.duration / capacity,
            # share of the CPU demand spent on heartbeats while etcd accepted writes (a NOSPACE
            # alarm turns every heartbeat into a retry storm, which is another story)
            "apiserver_cpu_heartbeat_share": _share(series.loc[accepting, "apiserver_cpu_heartbeat_cores"].sum(),
                                                    series.loc[accepting, "apiserver_cpu_demand_cores"].sum()),
            "heartbeat_latency_p50_s": float(np.percentile(lat, 50, overwrite_input=True)) if lat.size else float("nan"),
            "heartbeat_latency_p99_s": float(np.percentile(lat, 99, overwrite_input=True)) if lat.size else float("nan"),
            "heartbeat_writes_per_s": self.hb_requests / sc.duration,
            "heartbeat_failed_share": self.hb_failures / self.hb_requests if self.hb_requests else 0.0,
            "apiserver_rejected_requests": int(self.rejected_total),
            "nodes_notready_max": int(nr.max()),
            "nodes_ever_notready": int(self.nlc.ever_notready.sum()),
            "first_notready_at_s": first_nr,
        }


# ------------------------------------------------------------------------------------------------
# Memory: what a run holds, from the mechanism's bounds (kscale_lab.memory)
# ------------------------------------------------------------------------------------------------

def _loop_intervals(setting: str, p: dict) -> list[float]:
    """The kubelet loops that write: the status loop, and the Lease loop unless ``off``."""
    loops = [float(p["node_status_update_frequency"])]
    if setting != "off":
        loops.append(float(p["node_lease_renew_interval"]))
    return loops


def _steps(sc: Scenario) -> int:
    return int(np.ceil(sc.duration / sc.tick)) + 1


def _poisson_bound(mean: float) -> float:
    """A count that a Poisson total of this mean does not exceed in practice (+8 sigma)."""
    return mean + 8.0 * float(np.sqrt(mean)) + 16.0 if mean > 0 else 0.0


def max_heartbeat_attempts(sc: Scenario, p: dict, setting: str) -> int:
    """At most this many heartbeat requests are sent in a run (and kept in the latency tape).

    A loop acts at most once a tick (:meth:`~kscale_lab.clients.kubelet.Loop.due`); a round
    is at most ``MAX_RETRIES`` attempts one tick apart, then the loop waits its interval:
    so at most ``MAX_RETRIES / ((MAX_RETRIES - 1) * tick + interval)`` attempts per second
    when every attempt fails (a NOSPACE alarm, 429s), ``1 / interval`` when none does."""
    from .clients.kubelet import MAX_RETRIES

    total = 0.0
    for interval in _loop_intervals(setting, p):
        rate = max(1.0 / interval, MAX_RETRIES / ((MAX_RETRIES - 1) * sc.tick + interval))
        rate = min(rate, 1.0 / sc.tick)
        total += sc.nodes * (sc.duration * rate + MAX_RETRIES + 1)
    return int(total)


def max_stored_writes(sc: Scenario, p: dict, setting: str, background: bool = True) -> int:
    """At most this many revisions a run writes to etcd.

    A heartbeat that etcd stored is followed by its loop's next attempt no sooner than
    ``min(interval, request timeout)`` later (a success waits the interval, a timed-out
    write waits its timeout; only refused writes are retried at once, and those are not
    stored); background writes are Poisson counts per tick."""
    c = Costs.from_params({k: v for k, v in p.items() if k in _cost_names()})
    timeout = min(p["node_status_update_frequency"], p["node_lease_renew_interval"] * 4)
    hb = sum(sc.nodes * (sc.duration / max(sc.tick, min(i, timeout)) + 2) for i in _loop_intervals(setting, p))
    steps = _steps(sc)
    bg = (sc.pod_churn * POD_WRITES_PER_LIFECYCLE + sc.other_requests * c.background_write_share) * sc.tick * steps
    return int(hb + (_poisson_bound(bg) if background else 0.0)) + 1024


def footprint(sc: Scenario, p: dict, setting: str):
    """The heartbeat cluster's arrays at their peak (:class:`kscale_lab.memory.Footprint`)."""
    from .memory import Footprint

    n = sc.nodes
    steps = _steps(sc)
    c = Costs.from_params({k: v for k, v in p.items() if k in _cost_names()})
    stored = max_stored_writes(sc, p, setting)
    attempts = max_heartbeat_attempts(sc, p, setting)
    loops = len(_loop_intervals(setting, p))
    # heartbeats write one key per loop and node, background writes one key each at most
    hb_keys = n * loops
    bg_writes = stored - max_stored_writes(sc, p, setting, background=False)
    held, old = MVCCStore.log_bounds(stored, hb_keys + bg_writes, sc.duration, c.etcd_compaction_interval)
    fp = Footprint(f"heartbeats, {n:,} nodes, {sc.objects:,} objects, {sc.duration:g} s")
    fp.extend(MVCCStore.footprint(sc.objects, held, old, log_since="tick"))
    # per node: loops (next attempt 8 B + attempt 1 B), last report, pending change, the API
    # server it talks to, the node lifecycle controller's probe/ready/ever-NotReady
    fp.add("kubelets", n, 9 * loops + 8 + 1 + 8 + 8 + 1 + 1, since="tick")
    # heartbeats the node lifecycle controller has not looked at yet (node id + time)
    fp.add("heartbeats not yet monitored", n * loops * max(1.0, p["node_monitor_period"] / sc.tick), 16,
           since="tick")
    # one tick's requests: node, kind, arrival, cpu, flags, latencies, API server temporaries
    fp.add("one tick's requests", n * loops, 200, phase="tick")
    # every admitted heartbeat write's latency (float64), for the summary's percentiles
    fp.add("heartbeat latency tape", attempts, 8, since="tick")
    # one recorded row per tick: a dict of ~20 floats, then the DataFrame (twice in summary)
    fp.add("per-tick metrics", steps, 2_400, since="tick")
    fp.add("latency tape concatenated", attempts, 8, phase="summary")
    fp.add("per-tick DataFrame", steps, 400, phase="summary")
    return fp


def _share(part: float, whole: float) -> float:
    return float(part / whole) if whole > 0 else float("nan")


def _p50_p99(x: np.ndarray) -> tuple[float, float]:
    """Median and 99th percentile (nearest rank), one partition instead of a full quantile."""
    n = x.size
    if n == 0:
        return float("nan"), float("nan")
    k50, k99 = (n - 1) // 2, min(n - 1, int(np.ceil(0.99 * n)) - 1)
    part = np.partition(x, (k50, k99))
    return float(part[k50]), float(part[k99])


_COST_NAMES: set | None = None


def _cost_names() -> set:
    global _COST_NAMES
    if _COST_NAMES is None:
        from .costs import COST_PARAMS

        _COST_NAMES = {p.name for p in COST_PARAMS}
    return _COST_NAMES

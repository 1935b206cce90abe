"""Lab: node heartbeats at 10,000 nodes (Node status vs Lease).

The article, section 2: every kubelet used to rewrite its whole Node object
(~15 KB: dozens of images, volumes) every 10 s. etcd keeps every revision until
compaction, so at 10k nodes that is ~1 GB of transaction log per minute, and
(de)serialising Node objects took more than 80 % of the API server's CPU. The fix
(KEP-0009, on by default in 1.14) is a tiny Lease per node renewed every 10 s,
with the Node status posted only every 60 s; upstream today posts it every 5 min
(KEP-589, 1.17) and no longer GETs the Node every 10 s (PR #123977, 1.31).

What this lab computes, all from the mechanisms and the cost model:

* ``run(setting)``: the event-level model (SimPy + numpy fleet, see
  :mod:`kscale_lab.cluster`) over ``duration``: etcd write/WAL bytes, revisions,
  db size against ``--quota-backend-bytes`` and the NOSPACE alarm, API server CPU and
  its heartbeat share, heartbeat latency, nodes wrongly marked NotReady;
* ``steady_state(setting, nodes)``: the same quantities in closed form from rates
  (instant, for sweeps and sliders; tests hold it against ``run``);
* ``max_nodes(setting)``: the largest cluster whose etcd stays under its quota
  through a compaction cycle and whose API servers keep up: the article's "from
  ~1,000 to several thousand nodes" as an emergent number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


from ..cluster import POD_WRITES_PER_LIFECYCLE, Cluster, RunResult
from ..cluster import footprint as cluster_footprint
from ..costs import COST_PARAMS, Costs
from ..params import Param, ParamSet
from ..scenario import SCENARIO_PARAMS, Scenario
from .base import Lab

GIB = 1024**3

HEARTBEAT_PARAMS = ParamSet([
    Param("quota_backend_bytes", 8 * GIB, "B",
          "etcd docs (dev-guide/limit): 2 GiB default, 8 GiB suggested maximum. A 10k-node cluster's objects "
          "alone take ~1.7 GB, so this lab starts from the 8 GiB an operator of a large cluster would set; "
          "the scale-limit claims use the 2 GiB default of 2018-2019",
          "db size at which etcd raises the NOSPACE alarm and refuses writes", lo=1024**2, hi=1024**4,
          kind=int, flag="--quota-backend-bytes"),
    Param("node_object_bytes", 15_000.0, "B",
          "article section 2 (~15 KB: dozens of images, volumes); KEP-589: 'over 15 KB'",
          "size of a Node object", lo=100, hi=1_500_000),
    Param("lease_object_bytes", 350.0, "B", "data/etcd_real: a real Lease is ~350 B",
          "size of a node Lease object", lo=50, hi=100_000),
    Param("node_status_update_frequency", 10.0, "s",
          "kubelet nodeStatusUpdateFrequency default (kubelet-config.v1beta1)",
          "how often the kubelet computes (and, without Lease, posts) its Node status", lo=1, hi=3600,
          flag="nodeStatusUpdateFrequency"),
    Param("node_lease_renew_interval", 10.0, "s",
          "pkg/kubelet/kubelet.go: renew interval = nodeLeaseRenewIntervalFraction (0.25) x "
          "nodeLeaseDurationSeconds (40 s)",
          "how often the kubelet renews its Lease", lo=1, hi=3600),
    Param("node_status_report_frequency_article", 60.0, "s",
          "article section 2 / KEP-0009 (Kubernetes 1.13-1.16): Node status every 1 min",
          "how often the kubelet posts an unchanged Node status, article setting", lo=1, hi=86_400),
    Param("node_status_report_frequency", 300.0, "s",
          "kubelet nodeStatusReportFrequency default 5 m since 1.17 (KEP-589)",
          "how often the kubelet posts an unchanged Node status, upstream setting", lo=1, hi=86_400,
          flag="nodeStatusReportFrequency"),
    Param("node_status_change_interval", 3600.0, "s",
          "assumption: a node's status changes meaningfully (new images, conditions) about once an hour; "
          "0 = never",
          "mean time between meaningful Node status changes (posted at once with Lease)", lo=0, hi=10**7),
    Param("node_monitor_period", 5.0, "s", "kube-controller-manager --node-monitor-period default",
          "how often the node lifecycle controller checks node health", lo=0.1, hi=600,
          flag="--node-monitor-period"),
    Param("node_monitor_grace_period", 40.0, "s",
          "kube-controller-manager --node-monitor-grace-period: 40 s until 1.31; 50 s since 1.32 "
          "(PR #126287), used by the upstream setting unless you set it",
          "time without a heartbeat before a node is marked NotReady (Ready=Unknown)", lo=1, hi=3600,
          flag="--node-monitor-grace-period"),
])


@dataclass
class SteadyState:
    """Closed-form rates for one setting at one cluster size."""

    setting: str
    nodes: int
    writes_per_s: float              # heartbeat writes (Lease + Node)
    value_bytes_per_s: float         # heartbeat value bytes into etcd
    wal_bytes_per_s: float           # all writes, WAL bytes
    page_bytes_per_s: float          # all writes, bbolt page bytes
    base_db_bytes: float             # db size of the objects themselves
    peak_db_bytes: float             # base + two compaction windows of history
    heartbeat_cpu_cores: float
    background_cpu_cores: float
    capacity_cores: float

    @property
    def heartbeat_cpu_share(self) -> float:
        tot = self.heartbeat_cpu_cores + self.background_cpu_cores
        return self.heartbeat_cpu_cores / tot if tot else float("nan")

    @property
    def utilisation(self) -> float:
        return (self.heartbeat_cpu_cores + self.background_cpu_cores) / self.capacity_cores


class HeartbeatsLab(Lab):
    name = "heartbeats"
    title = "Node heartbeats: Node status vs Lease at 10k nodes"
    switch = "heartbeats"
    notebook = "labs/01_heartbeats.ipynb"
    article_section = "2"
    params = HEARTBEAT_PARAMS + SCENARIO_PARAMS + COST_PARAMS
    setting_defaults = {"upstream": {"node_monitor_grace_period": 50.0}}

    def scenario(self, p: Mapping[str, Any]) -> Scenario:
        return Scenario.from_params({k: p[k] for k in SCENARIO_PARAMS.defaults()})

    def memory_footprint(self, setting: str, p: Mapping[str, Any]):
        """The event-level cluster's arrays: etcd's keys and revision log, the kubelets,
        the latency tape (:func:`kscale_lab.cluster.footprint`)."""
        return cluster_footprint(self.scenario(p), dict(p), setting)

    def run(self, setting: str, overrides: Mapping[str, Any] | None = None) -> RunResult:
        p = self.resolve(setting, overrides)
        sc = self.scenario(p)
        result = Cluster(sc, p, setting).run()
        # the largest cluster these parameters carry (closed form, pods and objects scaled along):
        # one number per run, so that a sweep can plot it against any parameter
        result.summary["max_nodes"] = self.max_nodes(setting, p)[0]
        result.summary["params"] = p
        return result

    # --- closed form -------------------------------------------------------------------------------
    def steady_state(self, setting: str, overrides: Mapping[str, Any] | None = None,
                     nodes: int | None = None) -> SteadyState:
        p = self.resolve(setting, overrides)
        if nodes is not None:
            p = dict(p, nodes=int(nodes), pods=int(p["pods"] * nodes / p["nodes"]),
                     objects=int(p["objects"] * nodes / p["nodes"]))
        return _steady(setting, p)

    def max_nodes(self, setting: str, overrides: Mapping[str, Any] | None = None,
                  hi: int = 200_000) -> tuple[int, str]:
        """Largest node count (pods and objects scaled along) that the control plane
        carries: peak db size under the quota and API server CPU under capacity.
        Returns (nodes, binding limit)."""
        p0 = self.resolve(setting, overrides)

        def fits(n):
            s = _steady(setting, dict(p0, nodes=n, pods=int(p0["pods"] * n / p0["nodes"]),
                                      objects=int(p0["objects"] * n / p0["nodes"])))
            return s.peak_db_bytes < s_quota(p0), s.utilisation < 1.0

        lo, top = 1, hi
        if all(fits(top)):
            return top, "none up to the search bound"
        while top - lo > 1:
            mid = (lo + top) // 2
            if all(fits(mid)):
                lo = mid
            else:
                top = mid
        etcd_ok, cpu_ok = fits(top)
        return lo, ("etcd quota" if not etcd_ok else "API server CPU")

    def onset_sweep(self, values, param: str = "apiserver_cores", settings=None,
                    overrides: Mapping[str, Any] | None = None, duration: float = 300.0):
        """Nodes wrongly marked NotReady as ``param`` varies: where does it start?

        Runs the event-level model for each value and setting (quota raised so that
        only the API servers are tested). Returns a DataFrame with one row per run.
        """
        import pandas as pd

        rows = []
        for s in settings or self.settings:
            for v in values:
                o = dict(overrides or {})
                o.setdefault("quota_backend_bytes", 1024**4)
                o.setdefault("duration", duration)
                o[param] = v
                sm = self.run(s, o).summary
                rows.append({"setting": s, param: v,
                             "nodes_ever_notready": sm["nodes_ever_notready"],
                             "nodes_notready_max": sm["nodes_notready_max"],
                             "apiserver_cpu_utilisation": sm["apiserver_cpu_utilisation"],
                             "heartbeat_latency_p99_s": sm["heartbeat_latency_p99_s"],
                             "heartbeat_failed_share": sm["heartbeat_failed_share"]})
        return pd.DataFrame(rows)

    # --- claims ---------------------------------------------------------------------------------------
    def claims(self, results: Mapping[str, RunResult] | None = None, overrides: Mapping[str, Any] | None = None,
               only=None) -> dict:
        ov = dict(overrides or {})
        results = {} if ov else dict(results or {})
        out = {}
        if self.wanted(only, "txlog_per_min_off", "cpu_share_off", "lease_txlog_reduction_10k"):
            if "off" not in results:
                results["off"] = self.run("off", ov)
            off = results["off"].summary
            out["txlog_per_min_off"] = off["etcd_wal_bytes_per_min"] / 1e9
            out["cpu_share_off"] = off["apiserver_cpu_heartbeat_share"]
        if self.wanted(only, "lease_txlog_reduction_10k"):
            if "article" not in results:
                results["article"] = self.run("article", ov)
            art = results["article"].summary
            out["lease_txlog_reduction_10k"] = off["etcd_wal_bytes_per_min"] / art["etcd_wal_bytes_per_min"]
        then = dict(ov, quota_backend_bytes=2 * GIB)   # etcd's default quota when the article was written
        if self.wanted(only, "max_nodes_off"):
            out["max_nodes_off"] = self.max_nodes("off", then)[0]
        if self.wanted(only, "max_nodes_article"):
            out["max_nodes_article"] = self.max_nodes("article", then)[0]
        if self.wanted(only, "etcd_size_reduction_5k"):
            out["etcd_size_reduction_5k"] = (self.steady_state("off", ov, nodes=5000).peak_db_bytes
                                             / self.steady_state("article", ov, nodes=5000).peak_db_bytes)
        return out


def s_quota(p: Mapping[str, Any]) -> float:
    return float(p["quota_backend_bytes"])


def heartbeat_rates(setting: str, p: Mapping[str, Any]):
    """Per node: (lease writes/s, node posts/s, node GETs/s)."""
    status_every = p["node_status_update_frequency"]
    change = 0.0 if p["node_status_change_interval"] <= 0 else 1.0 / p["node_status_change_interval"]
    if setting == "off":
        return 0.0, 1.0 / status_every, 1.0 / status_every
    lease = 1.0 / (p["node_lease_renew_interval"] * 1.02)  # JitterUntil adds 0-4 %, 2 % on average
    report = p["node_status_report_frequency_article"] if setting == "article" else p["node_status_report_frequency"]
    # a post happens at the first sync after the report period, or after a change
    posts = min(1.0 / status_every, 1.0 / (report + status_every / 2) + change)
    gets = 1.0 / status_every if setting == "article" else 0.0
    return lease, posts, gets


def _steady(setting: str, p: Mapping[str, Any]) -> SteadyState:
    c = Costs.from_params({k: v for k, v in p.items() if k in COST_PARAMS})
    n = p["nodes"]
    lease_r, post_r, get_r = heartbeat_rates(setting, p)
    nb, lb = p["node_object_bytes"], p["lease_object_bytes"]
    hb_writes = n * (lease_r + post_r)
    hb_value = n * (lease_r * lb + post_r * nb)
    pod_w = p["pod_churn"] * POD_WRITES_PER_LIFECYCLE
    other_w = p["other_requests"] * c.background_write_share
    other_r = p["other_requests"] * (1 - c.background_write_share)
    wal = hb_value + hb_writes * c.etcd_wal_entry_overhead + \
        pod_w * c.wal_bytes(p["pod_bytes"]) + other_w * c.wal_bytes(p["other_request_bytes"])
    pages = n * (lease_r * float(c.page_bytes(lb)) + post_r * float(c.page_bytes(nb))) + \
        pod_w * float(c.page_bytes(p["pod_bytes"])) + other_w * float(c.page_bytes(p["other_request_bytes"]))
    n_other = p["objects"] - 2 * n - p["pods"]
    base = n * (float(c.page_bytes(nb)) + float(c.page_bytes(lb))) + p["pods"] * float(c.page_bytes(p["pod_bytes"])) \
        + n_other * float(c.page_bytes(p["other_object_bytes"]))
    window = 2 * c.etcd_compaction_interval if c.etcd_compaction_interval > 0 else p["duration"]
    window = min(window, p["duration"])
    peak = base + pages * window
    get_cost = c.get_from_cache(nb) if setting != "upstream" else 0.0
    post_cost = c.patch_json_smp(nb, c.node_watchers + 1) + (c.get_from_cache(nb) if setting == "off" else 0.0)
    hb_cpu = n * (lease_r * c.put_protobuf(lb, c.lease_watchers) + post_r * post_cost
                  + (get_r - (post_r if setting == "off" else 0.0)) * get_cost)
    bg_cpu = pod_w * c.generic_write(p["pod_bytes"], c.pod_watchers) + \
        other_w * c.generic_write(p["other_request_bytes"], c.other_watchers) + \
        other_r * c.get_from_cache(p["other_request_bytes"])
    return SteadyState(setting, n, hb_writes, hb_value, wal, pages, base, peak, hb_cpu, bg_cpu,
                       c.apiservers * c.apiserver_cores)


LAB = HeartbeatsLab()

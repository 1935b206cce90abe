"""Lab: the scheduler at 10,000 nodes (equivalence classes and relaxed search).

The article, section 9 and summary claim 8: unoptimised, pod scheduling latency at
10k nodes reached **~10 s**, with low throughput. Two ideas fixed it: *equivalence
classes* (a scale-up creates thousands of identical pods; evaluate filters and
scores once per class and then only on the nodes that changed) and *relaxed
randomisation* (stop after enough feasible nodes, from a random start, instead of
evaluating all of them). Upstream kept the second as ``percentageOfNodesToScore``
(adaptive, round-robin start; :func:`num_feasible_nodes_to_find`), removed its own
equivalence cache in 2018 (issue #71013: slower than the predicates it cached, for
common pods) and brought the idea back in v1.35 as opportunistic batching (KEP-5598).

What this lab computes, all from :mod:`kscale_lab.scheduler` (real filters and scores
over numpy node arrays, the work counted, time from named per-node costs):

* ``run(setting, overrides)``: the scheduling queue under steady churn and a
  Deployment burst: per pod (``result.pods``), per second (``result.series``: pods
  bound per second, latency p50/p99, pending pods, nodes evaluated per pod, score
  gap), events (burst, queue peak, drained) and a summary under kube-scheduler's
  metric names. ``equivalence_classes`` and ``relaxed_search`` switch the two ideas
  one by one; where the user leaves them, the setting decides.
* ``alone_and_together``, ``compare``, ``size_sweep``, ``ecache_effect``,
  ``burst_for_latency``: the tables and sweeps the notebook shows;
* ``claims()``: the article's ~10 s, upstream's nodes-to-score figures, the eCache
  slowdown of #63784/#71013, the price in exactness; computed, never typed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..cluster import RunResult
from ..errors import ParameterError
from ..params import Param, ParamSet
from ..scheduler import sim
from ..scheduler.search import num_feasible_nodes_to_find
from .base import Lab

LAB_PARAMS = ParamSet([
    Param("scenario", "burst", "1", "kscale_lab.scheduler.sim.SCENARIOS",
          "workload preset the other parameters start from: 'burst' (churn + a Deployment scale-up), 'churn' "
          "(steady churn only), 'scale-200k' (200k pods on the cluster at once)", choices=tuple(sim.SCENARIOS),
          kind=str),
    Param("series_bin_s", 1.0, "s", "assumption: one scrape per second resolves a burst of a few seconds",
          "width of the time bins of result.series", 0.01, 60.0),
])

#: what "each optimisation alone and together" compares: (label, setting, overrides)
VARIANTS: tuple[tuple[str, str, dict], ...] = (
    ("neither (off)", "off", {}),
    ("equivalence classes only", "article", {"relaxed_search": False}),
    ("relaxed search only", "article", {"equivalence_classes": False}),
    ("both (article)", "article", {}),
    ("upstream today", "upstream", {}),
)

#: the columns of the comparison tables: summary key -> short label
TABLE_COLUMNS = {
    "scheduler_pod_scheduling_sli_duration_seconds_p50": "latency p50 (s)",
    "scheduler_pod_scheduling_sli_duration_seconds_p99": "latency p99 (s)",
    "capacity_pods_per_s": "pods/s (capacity)",
    "nodes_evaluated_per_pod": "nodes evaluated/pod",
    "cache_reads_per_pod": "cached reads/pod",
    "best_score_share": "best node chosen",
    "score_gap_mean": "score gap",
}


@dataclass
class SchedulerRunResult(RunResult):
    """A :class:`~kscale_lab.cluster.RunResult` plus the per-pod and per-node frames."""

    pods: pd.DataFrame = field(default_factory=pd.DataFrame)
    nodes: pd.DataFrame = field(default_factory=pd.DataFrame)


class SchedulerLab(Lab):
    name = "scheduler"
    title = "Scheduler at 10k nodes: equivalence classes and relaxed search"
    switch = "scheduler"
    notebook = "labs/05_scheduler.ipynb"
    article_section = "9"
    params = LAB_PARAMS + sim.PARAMS
    setting_defaults = {s: d for s, d in sim.SETTING_DEFAULTS.items() if d}

    # -- parameters ------------------------------------------------------------------------------------
    def resolve(self, setting: str, overrides: Mapping[str, Any] | None = None) -> dict:
        """Effective parameters for ``setting``: defaults, the setting's own defaults
        (equivalence classes, relaxed search), the scenario preset, then the user's
        overrides (validated; never changed). Nodes do not scale pods here: the
        workload is the churn and the burst, in pods."""
        self.check_setting(setting)
        user = {self.params[k].name: v for k, v in dict(overrides or {}).items()}
        lab = LAB_PARAMS.resolve({k: v for k, v in user.items() if k in LAB_PARAMS})
        p = sim.resolve({k: v for k, v in user.items() if k not in LAB_PARAMS}, lab["scenario"], setting)
        return {**lab, **p}

    def memory_footprint(self, setting: str, p: Mapping[str, Any]):
        """The scheduling queue's arrays (:func:`kscale_lab.scheduler.sim.footprint`)."""
        return sim.footprint(p, setting)

    @staticmethod
    def _sim_params(p: Mapping[str, Any]) -> dict:
        return {k: v for k, v in p.items() if k in sim.PARAMS}

    # -- one run ---------------------------------------------------------------------------------------
    def run(self, setting: str, overrides: Mapping[str, Any] | None = None, *, prepared=None) -> SchedulerRunResult:
        """Run the scheduling queue for ``setting``. ``prepared`` (from :meth:`prepare`)
        reuses a cluster and workload built for the same size and seed."""
        p = self.resolve(setting, overrides)
        q = self._sim_params(p)
        state, workload = prepared if prepared is not None else (None, None)
        metrics, frames = sim.simulate(setting, q, p["scenario"], state=state, workload=workload)
        pods = frames["pods"]
        series = sim.time_series(pods, p["series_bin_s"])
        summary = {k: v for k, v in metrics.items() if k != "setting"}
        summary["params"] = p
        return SchedulerRunResult(setting, series, _events(pods, series, p), summary, pods, frames["nodes"])

    def prepare(self, overrides: Mapping[str, Any] | None = None):
        """(cluster, workload) for these overrides: reuse them across settings."""
        p = self.resolve("off", overrides)
        return sim.prepare(self._sim_params(p), p["scenario"])

    # -- tables ----------------------------------------------------------------------------------------
    def compare(self, overrides: Mapping[str, Any] | None = None, settings=None) -> pd.DataFrame:
        """One row of summary metrics per setting, on the same cluster and workload."""
        prepared = self.prepare(overrides)
        rows = {s: self.run(s, overrides, prepared=prepared).summary for s in (settings or self.settings)}
        return pd.DataFrame({s: {k: v for k, v in m.items() if k != "params"} for s, m in rows.items()}).T

    def alone_and_together(self, overrides: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Each of the article's two ideas alone, both, and upstream, on one cluster."""
        prepared = self.prepare(overrides)
        rows = {}
        for label, setting, extra in VARIANTS:
            sm = self.run(setting, {**dict(overrides or {}), **extra}, prepared=prepared).summary
            rows[label] = {v: sm[k] for k, v in TABLE_COLUMNS.items()}
        return pd.DataFrame(rows).T

    def size_sweep(self, nodes=(1_000, 2_000, 5_000, 10_000, 15_000, 20_000), settings=None,
                   overrides: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Latency, throughput and nodes evaluated against cluster size, per setting."""
        rows = []
        for n in nodes:
            o = {**dict(overrides or {}), "nodes": int(n)}
            prepared = self.prepare(o)
            for s in settings or self.settings:
                sm = self.run(s, o, prepared=prepared).summary
                rows.append({"setting": s, "nodes": int(n), **{k: sm[k] for k in (
                    "scheduler_pod_scheduling_sli_duration_seconds_p50",
                    "scheduler_pod_scheduling_sli_duration_seconds_p99", "capacity_pods_per_s",
                    "burst_throughput_pods_per_s", "nodes_evaluated_per_pod", "cache_reads_per_pod",
                    "best_score_share")}})
        return pd.DataFrame(rows)

    def ecache_effect(self, nodes: int = 3_000, pods: int = 3_000, node_cost_factor: float | None = None,
                      overrides: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Issue #63784's experiment: ``pods`` identical pods on ``nodes`` nodes, every
        node evaluated (as before percentageOfNodesToScore), the equivalence cache off
        and on; once for pods without inter-pod affinity, once for pods with required
        anti-affinity. The cache is upstream's eCache: predicate results cached, every
        feasible node scored afresh (``equivalence_cache_scores=False`` unless
        ``overrides`` says otherwise). ``node_cost_factor`` None = calibrated to 2018's
        scheduler_perf."""
        f = calibrated_node_cost_factor(overrides) if node_cost_factor is None else float(node_cost_factor)
        rows = []
        for kind, share in (("common pods", 0.0), ("pods with anti-affinity", 1.0)):
            o = {"equivalence_cache_scores": False, **dict(overrides or {}), "nodes": int(nodes),
                 "burst_pods": int(pods), "churn_rate": 0.0, "burst_affinity_share": share, "node_cost_factor": f}
            prepared = self.prepare(o)
            r = {}
            for eq in (False, True):
                sm = self.run("off", {**o, "equivalence_classes": eq}, prepared=prepared).summary
                r[eq] = sm
            rows.append({"pods": kind, "eCache off: pods/s": r[False]["capacity_pods_per_s"],
                         "eCache on: pods/s": r[True]["capacity_pods_per_s"],
                         "cycle on/off": r[True]["mean_cycle_s"] / r[False]["mean_cycle_s"],
                         "fresh evaluations/pod (on)": r[True]["nodes_evaluated_per_pod"],
                         "cached reads/pod (on)": r[True]["cache_reads_per_pod"]})
        return pd.DataFrame(rows).set_index("pods")

    def burst_for_latency(self, target_s: float = 10.0, setting: str = "off",
                          overrides: Mapping[str, Any] | None = None, hi: int = 50_000) -> int:
        """Smallest burst (pods) whose all-pods p99 scheduling latency reaches ``target_s``
        (bisection on ``burst_pods``; the latency grows with the burst)."""
        if not target_s > 0:
            raise ParameterError("target_s", f"must be a number in (0, inf] s; got {target_s!r}")

        def p99(b: int) -> float:
            return self.run(setting, {**dict(overrides or {}), "burst_pods": int(b)}).summary[
                "scheduler_pod_scheduling_sli_duration_seconds_p99"]

        lo, top = 0, 250
        while p99(top) < target_s:
            lo, top = top, top * 2
            if top > hi:
                raise ParameterError("target_s", f"is not reached with a burst of {hi:,} pods; got {target_s:g} s")
        while top - lo > max(10, lo // 100):
            mid = (lo + top) // 2
            if p99(mid) >= target_s:
                top = mid
            else:
                lo = mid
        return top

    # -- claims ----------------------------------------------------------------------------------------
    def claims(self, results: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None,
               only=None) -> dict:
        ov = dict(overrides or {})
        results = {} if ov else dict(results or {})
        want = lambda *ids: self.wanted(only, *ids)  # noqa: E731
        out = {}
        need = [s for s, c in (("off", "latency_p99_off_10k"), ("article", "relaxed_best_node_share_10k"))
                if want(c) and s not in results]
        if need:
            prepared = self.prepare(ov)
            for s in need:
                results[s] = self.run(s, ov, prepared=prepared)
        if want("latency_p99_off_10k"):
            out["latency_p99_off_10k"] = results["off"].summary["scheduler_pod_scheduling_sli_duration_seconds_p99"]
        if want("relaxed_best_node_share_10k"):
            out["relaxed_best_node_share_10k"] = results["article"].summary["best_score_share"]
        out["nodes_to_score_10k"] = num_feasible_nodes_to_find(10_000, int(ov.get("percentage_of_nodes_to_score", 0)))
        out["nodes_to_score_5k"] = num_feasible_nodes_to_find(5_000, int(ov.get("percentage_of_nodes_to_score", 0)))
        if want("ecache_cycle_ratio_common_pods", "ecache_cycle_ratio_anti_affinity_pods"):
            ec = self.ecache_effect(overrides=ov)
            out["ecache_cycle_ratio_common_pods"] = float(ec.loc["common pods", "cycle on/off"])
            out["ecache_cycle_ratio_anti_affinity_pods"] = float(ec.loc["pods with anti-affinity", "cycle on/off"])
        if want("off_pods_per_s_3k_2018"):
            costs = cost_overrides(ov)
            f = calibrated_node_cost_factor(costs)
            out["off_pods_per_s_3k_2018"] = 1.0 / sim.cycle_seconds("off", 3_000, {**costs, "node_cost_factor": f})
        return out


_CALIBRATED: dict = {}
_NAMES = [p.name for p in sim.PARAMS]
#: the time model's parameters (sim.PARAMS from node_cost_factor on): what a calibration may vary
COST_MODEL_PARAMS = frozenset(_NAMES[_NAMES.index("node_cost_factor"):])


def cost_overrides(overrides: Mapping[str, Any] | None) -> dict:
    """The time model's part of ``overrides`` (no workload, size or mechanism switches)."""
    return {k: v for k, v in dict(overrides or {}).items() if k in COST_MODEL_PARAMS and k != "node_cost_factor"}


def calibrated_node_cost_factor(overrides: Mapping[str, Any] | None = None) -> float:
    """``node_cost_factor`` of kube-scheduler in 2018 (scheduler_perf, 5,000 nodes:
    18.6 ms per pod, PR #65714) with the other costs at their defaults, or as in
    ``overrides``; computed once per process and overrides."""
    ov = cost_overrides(overrides)
    key = tuple(sorted(ov.items()))
    if key not in _CALIBRATED:
        _CALIBRATED[key] = sim.calibrate_node_cost_factor(params=ov)
    return _CALIBRATED[key]


def nodes_to_score(num_all_nodes, percentage_of_nodes_to_score: int = 0):
    """Upstream's numFeasibleNodesToFind for one cluster size or an array of them."""
    if np.ndim(num_all_nodes) == 0:
        return num_feasible_nodes_to_find(int(num_all_nodes), percentage_of_nodes_to_score)
    return np.array([num_feasible_nodes_to_find(int(n), percentage_of_nodes_to_score)
                     for n in np.asarray(num_all_nodes).ravel()])


def _events(pods: pd.DataFrame, series: pd.DataFrame, p: Mapping[str, Any]) -> pd.DataFrame:
    """One-off moments of the run: the burst, the longest queue, the queue drained."""
    rows = []
    burst = pods["burst"].to_numpy()
    if burst.any():
        arr = pods.loc[burst, "arrival_s"]
        rows.append({"time": float(arr.min()), "event": "burst starts",
                     "detail": f"{int(burst.sum()):,} pods of {p['burst_deployments']} Deployment(s)"})
        rows.append({"time": float(arr.max()), "event": "burst created", "detail": "last pod of the burst created"})
        bt = pods.loc[burst, "bind_s"]
        if bt.notna().any():
            rows.append({"time": float(bt.max()), "event": "burst bound",
                         "detail": "last pod of the burst bound"})
    if len(series):
        i = int(np.argmax(series["scheduler_pending_pods"].to_numpy()))
        rows.append({"time": float(series["time"].iloc[i]), "event": "longest queue",
                     "detail": f"{int(series['scheduler_pending_pods'].iloc[i]):,} pods pending"})
    given_up = pods["node"].to_numpy() < 0
    if given_up.any():
        rows.append({"time": float(np.nanmin(pods.loc[given_up, "end_s"])), "event": "pod left pending",
                     "detail": f"{int(given_up.sum()):,} pods unschedulable after {p['max_attempts']} attempts"})
    df = pd.DataFrame(rows, columns=["time", "event", "detail"])
    return df.sort_values("time", kind="stable").reset_index(drop=True)


__all__ = ["LAB", "SchedulerLab", "SchedulerRunResult", "VARIANTS", "calibrated_node_cost_factor", "nodes_to_score"]

LAB = SchedulerLab()

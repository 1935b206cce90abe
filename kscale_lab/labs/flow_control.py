"""Lab: preventing request floods at 10,000 nodes (the article's section 7).

Two incidents on the shared control-plane core (:mod:`kscale_lab.controlplane`): 3 API
servers, 10k kubelets and 10k kube-proxies with one connection each, the controllers.

* **The restart avalanche** (``restart_at``): every API server restarts (or, with
  ``restart_mode=rolling``, one after the other). Each must fill its watch caches from
  etcd; every client reconnects and, its watch being too old for the new cache, re-LISTs.
  Before KEP-4568 an instance says ready before its caches are filled and sends the LISTs
  that arrive meanwhile to etcd: for a kubelet, a paged quorum read of all 200,000 pods to
  keep 20 (:mod:`kscale_lab.apiserver.relists`). etcd, the network between etcd and the
  API servers, and the API servers' CPU and memory fill up; an instance over its memory
  limit is OOM-killed and restarted, its clients come back.
* **The buggy DaemonSet** (``ds_start``): one pod per node LISTs all pods every
  ``ds_list_period`` (:mod:`kscale_lab.clients.daemonset`).

Three settings of the ``flow_control`` switch:

* ``off``: only ``--max-requests-inflight`` / ``--max-mutating-requests-inflight``;
* ``article``: LISTs get 429 until the watch cache is ready (then they are served from it);
  a per-User-Agent rate limit the operator configures ``operator_reaction_s`` after the
  DaemonSet starts (:mod:`kscale_lab.apiserver.ua_limit`);
* ``upstream``: KEP-4568 (selective LISTs 429 while a cache fills, unselective ones with a
  limit go to etcd; the optional post-start hook) and API Priority and Fairness
  (:mod:`kscale_lab.apiserver.apf`), which keys the DaemonSet's flow on its ServiceAccount.

What the lab computes: per instance over time CPU, memory against its limit, 429s,
crashes; etcd bytes read per second; relists and where they were served; lease renewals
and nodes wrongly NotReady (:mod:`kscale_lab.clients.lease_health`); per incident the
crashes, the time until every instance is ready and every client has re-listed, and the
resource that binds during the recovery. Nothing is typed in: whether the restart becomes
a crash loop comes from the LISTs' counted bytes, pages and objects against the named
capacities.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np

from ..apiserver.apf import APF, APF_PARAMS, APF_SCENARIO_PARAMS, BOOTSTRAP_FLOW_SCHEMAS, BOOTSTRAP_LEVELS
from ..apiserver.instances import READY
from ..apiserver.relists import RELIST_PARAMS, RelistFlood
from ..apiserver.ua_limit import UA_LIMIT_PARAMS, UserAgentLimit
from ..clients.daemonset import DAEMONSET_PARAMS, DS_USER_AGENT, DaemonSetStart, add_buggy_daemonset
from ..clients.lease_health import LeaseHealth
from ..clients.workload import build_workload
from ..controlplane import CONTROLPLANE_PARAMS, Behaviour, ControlPlane, ControlPlaneResult
from ..costs import COST_PARAMS, Costs
from ..errors import ParameterError
from ..etcd.range_reads import ETCD_READ_PARAMS
from ..params import Param, ParamSet
from ..scenario import SCENARIO_PARAMS, Scenario
from .base import Lab
from .heartbeats import HEARTBEAT_PARAMS

INCIDENTS = ("restart", "daemonset", "both")
RESOURCES = ("apiserver CPU", "apiserver memory", "network etcd->apiserver", "network apiserver->clients",
             "etcd CPU", "APF seats")

FLOW_LAB_PARAMS = ParamSet([
    Param("incident", "both", "1", "issue: the restart avalanche and the buggy DaemonSet, in one run or alone",
          "which incidents the run holds", choices=INCIDENTS, kind=str),
    Param("restart_at", 300.0, "s", "scenario: five quiet minutes, then every API server restarts",
          "when the API servers restart", lo=0, hi=86_400),
    Param("restart_mode", "all", "1",
          "article section 7: 'API server restart/upgrade: every client reconnects and re-lists at once'",
          "all API servers at once, or a rolling upgrade one at a time", choices=("all", "rolling"), kind=str),
    Param("heartbeats_setting", "article", "1", "the article's cluster already used Lease heartbeats (section 2)",
          "how the kubelets heartbeat (a setting of the heartbeats switch)", choices=("off", "article", "upstream"),
          kind=str),
    Param("apf_shares", "", "1",
          "bootstrap/default.go suggested levels (brief mechanisms.md section 3)",
          "nominalConcurrencyShares to change, as 'level=shares,...' (e.g. 'workload-low=5'); empty: the "
          "suggested configuration", kind=str),
    Param("apf_hand_size", 0, "queues", "bootstrap/default.go: handSize 6 (4 for leader-election)",
          "handSize of every queuing priority level (0: the suggested values)", lo=0, hi=64, kind=int),
])

_OVERRIDE = {
    "duration": (1800.0, "issue: 30 simulated minutes hold the restart, the DaemonSet and their aftermath"),
    "tick": (2.0, "assumption: 2 s resolves 10 s lease renewals, 5 s node monitoring and the 15 s APF queue wait, "
                  "and keeps a 30-minute run within a second"),
    "lb_policy": ("client-side",
                  "assumption: the article's failure needs clients that reach an API server as soon as it listens "
                  "(clients configured with the servers' addresses, as the article's section 3 tried, or the "
                  "in-cluster 'kubernetes' Service, whose endpoints have no readiness check); a /readyz-checked "
                  "load balancer slower than the cache fill keeps every LIST away from an empty cache: try it"),
}


#: plausible ranges this lab's claims need for core assumptions that carry none yet
_PLAUSIBLE = {
    "apiserver_memory_limit_bytes": ((32 * 1024**3, 96 * 1024**3),
                                     "a quarter to three quarters of a 120 GB control-plane machine"),
}


def _params() -> ParamSet:
    def patched(ps):
        out = []
        for q in ps:
            if q.name in _OVERRIDE:
                d, src = _OVERRIDE[q.name]
                q = dataclasses.replace(q, default=d, source=src)
            if q.name in _PLAUSIBLE:
                (lo, hi), why = _PLAUSIBLE[q.name]
                q = dataclasses.replace(q, plausible=(lo, hi), plausible_source=why)
            out.append(q)
        return ParamSet(out)

    hb = ParamSet([q for q in HEARTBEAT_PARAMS if q.name in (
        "node_object_bytes", "lease_object_bytes", "node_status_update_frequency", "node_lease_renew_interval",
        "node_status_report_frequency_article", "node_status_report_frequency", "node_status_change_interval",
        "node_monitor_period", "node_monitor_grace_period")])
    return (FLOW_LAB_PARAMS + DAEMONSET_PARAMS + UA_LIMIT_PARAMS + RELIST_PARAMS + APF_PARAMS + APF_SCENARIO_PARAMS
            + patched(CONTROLPLANE_PARAMS) + ETCD_READ_PARAMS + hb + patched(SCENARIO_PARAMS) + COST_PARAMS)


def apf_levels(p: Mapping[str, Any]) -> list:
    """The priority levels with the user's ``apf_shares`` and ``apf_hand_size`` applied."""
    levels = {lv.name: lv for lv in BOOTSTRAP_LEVELS}
    text = str(p.get("apf_shares", "")).strip()
    if text:
        for item in text.split(","):
            if "=" not in item:
                raise ParameterError("apf_shares", f"must be 'level=shares,...'; got {item.strip()!r}")
            name, val = (x.strip() for x in item.split("=", 1))
            if name not in levels:
                raise ParameterError("apf_shares", f"names an unknown priority level {name!r}; levels: "
                                                   f"{', '.join(levels)}")
            try:
                n = int(val)
            except ValueError:
                raise ParameterError("apf_shares", f"shares of {name!r} must be an integer >= 0; got {val!r}") from None
            if n < 0:
                raise ParameterError("apf_shares", f"shares of {name!r} must be an integer >= 0; got {n}")
            levels[name] = dataclasses.replace(levels[name], nominal_concurrency_shares=n)
    if sum(lv.nominal_concurrency_shares for lv in levels.values() if not lv.exempt) <= 0:
        raise ParameterError("apf_shares", "must leave the limited priority levels' shares a positive sum; got 0")
    hand = int(p.get("apf_hand_size", 0))
    if hand:
        for name, lv in list(levels.items()):
            if lv.exempt or lv.queues == 0:
                continue
            if hand > lv.queues:
                raise ParameterError("apf_hand_size", f"must be at most the queues of every queuing level "
                                                      f"({name} has {lv.queues}); got {hand}")
            levels[name] = dataclasses.replace(lv, hand_size=hand)
    out = list(levels.values())
    for lv in out:
        lv.validate()
    return out


def components(setting: str, p: Mapping[str, Any], work, ds_start: float | None):
    """The flow-control mechanisms of ``setting`` as control-plane components, for this lab and the
    capstone: the buggy DaemonSet (if ``ds_start`` is a time), re-lists served from the cache, etcd
    or 429 (:class:`~kscale_lab.apiserver.relists.RelistFlood`), the article's User-Agent limit,
    upstream's API Priority and Fairness. Returns (components, parts by name, whether ``/readyz``
    says yes before the watch caches are filled). Adds classes and streams to ``work``: call it
    before the :class:`ControlPlane` is built."""
    comps, parts = [], {}
    start = math.inf if ds_start is None else float(ds_start)
    if ds_start is not None:
        ds_c, ds_s = add_buggy_daemonset(work, p)
        comps.append(DaemonSetStart(ds_c, ds_s, start, p["ds_list_period"]))
        parts["ds"] = comps[0]
    if setting == "off":
        flood = RelistFlood(p, "fallthrough")
        comps.append(flood)
        ready_before_cache = True
    elif setting == "article":
        flood = RelistFlood(p, "reject")
        ua = UserAgentLimit(p, DS_USER_AGENT, start + float(p["operator_reaction_s"]))
        comps += [flood, ua]
        parts["ua"] = ua
        ready_before_cache = True
    else:
        apf = APF(p, apf_levels(p), BOOTSTRAP_FLOW_SCHEMAS)
        flood = RelistFlood(p, "kep4568", apf)
        flood.register(work)
        comps += [flood, apf]
        parts["apf"] = apf
        ready_before_cache = not bool(p["watch_cache_init_post_start_hook"])
    parts["flood"] = flood
    return comps, parts, ready_before_cache


@dataclasses.dataclass
class FlowControlResult(ControlPlaneResult):
    cp: Any = None
    parts: dict = dataclasses.field(default_factory=dict)


class FlowControlLab(Lab):
    name = "flow-control"
    title = "Preventing request floods: the restart avalanche and the buggy DaemonSet"
    switch = "flow_control"
    notebook = "labs/07_flow_control.ipynb"
    article_section = "7"
    params = _params()

    # -- input ---------------------------------------------------------------------------------
    def check(self, p: Mapping[str, Any]) -> None:
        apf_levels(p)
        if p["tick"] > p["apf_request_wait_limit"]:
            raise ParameterError("tick", f"must not exceed apf_request_wait_limit ({p['apf_request_wait_limit']:g} s); "
                                         f"got {p['tick']:g}")

    def memory_footprint(self, setting: str, p: Mapping[str, Any]):
        """What a run holds: the control-plane core's arrays (:func:`kscale_lab.controlplane.footprint`,
        with the DaemonSet's pods among the clients), the re-list model's schedules (due re-lists per
        tick, instance, class and backoff level; memory, slot and etcd-memory releases) over the run
        plus an hour, the lease loop's per-node arrays, APF's queues and release schedule (per tick,
        instance and request kind) and its per-tick level records, and the kubelet LIST's paging plan
        over every pod (built once while the control plane is set up)."""
        from ..controlplane import footprint

        n = int(p["nodes"])
        has_ds = p["incident"] in ("daemonset", "both")
        clients = n * (2 if p["kube_proxy"] else 1) + 2 + int(p["controllers_other"]) + \
            ((int(p["ds_pods"]) or n) if has_ds else 0)
        slots = int(p["apiservers"])
        steps = int(round(p["duration"] / p["tick"])) + 2
        horizon = steps + int(3600 / p["tick"]) + 2
        classes, streams, levels, parts = 6, 10, 8, 32
        fp = footprint(f"flow-control, {n:,} nodes", clients, slots, steps, streams)
        fp.add("re-lists due per tick (instance x class x backoff level)", horizon * slots * classes * 8, 8)
        fp.add("re-list memory, slot and etcd releases", horizon * (2 * slots + 1), 8)
        fp.add("re-list records", steps * slots * 11 + steps * (classes + 5), 8)
        fp.add("lease loop and node health", n, 4 * 8)
        fp.add("kubelet LIST paging plan over every pod", int(p["pods"]), 6 * 8, phase="setup")
        if setting == "upstream":
            wait_slots = int(math.ceil(p["apf_request_wait_limit"] / p["tick"]))
            fp.add("APF queues by age", slots * parts * wait_slots, 8)
            fp.add("APF release schedule", (horizon + wait_slots + 4) * slots * parts, 8)
            fp.add("APF per-tick records", steps * (2 * slots * levels + 2 * classes + levels), 8)
        return fp

    # -- the model -------------------------------------------------------------------------------
    def build(self, setting: str, p: Mapping[str, Any]):
        costs = Costs.from_params({k: v for k, v in p.items() if k in COST_PARAMS})
        work = build_workload(p, costs, p["heartbeats_setting"])
        has_ds = p["incident"] in ("daemonset", "both")
        comps, parts, ready_before_cache = components(setting, p, work, float(p["ds_start"]) if has_ds else None)
        health = LeaseHealth(p)
        comps.append(health)
        parts.update(health=health, work=work)
        cp = ControlPlane(p, work, Behaviour(ready_before_cache=ready_before_cache), tick=p["tick"],
                          duration=p["duration"], seed=p["seed"], components=comps)
        if p["incident"] in ("restart", "both") and p["restart_at"] < p["duration"]:
            if p["restart_mode"] == "all":
                cp.restart(p["restart_at"], int(p["apiservers"]))
            else:
                cp.rollout(p["restart_at"], name="restart")
        return cp, parts

    def run(self, setting: str, overrides: Mapping[str, Any] | None = None) -> FlowControlResult:
        p = self.resolve(setting, overrides)
        self.check(p)
        self.scenario(p)
        cp, parts = self.build(setting, p)
        base = cp.run()
        res = FlowControlResult(base.series, base.instances, base.events, base.summary, setting, cp, parts)
        res.summary.update(incident_summary(res, p))
        res.summary["params"] = p
        return res

    def scenario(self, p: Mapping[str, Any]) -> Scenario:
        return Scenario.from_params({k: p[k] for k in SCENARIO_PARAMS.defaults()})

    # -- claims ---------------------------------------------------------------------------------
    #: the runs each claim needs: (setting, forced overrides)
    CLAIM_RUNS = {
        "restart_crashes_off": ("off", {"incident": "restart"}),
        "restart_recovery_off_s": ("off", {"incident": "restart"}),
        "restart_recovery_article_s": ("article", {"incident": "restart"}),
        "restart_network_binds_article": ("article", {"incident": "restart"}),
        "restart_recovery_upstream_s": ("upstream", {"incident": "restart"}),
        "ds_crashes_off": ("off", {"incident": "daemonset"}),
        "ds_crashes_after_operator_article": ("article", {"incident": "daemonset"}),
        "ds_crashes_before_operator_article": ("article", {"incident": "daemonset"}),
        "ds_crashes_upstream": ("upstream", {"incident": "daemonset"}),
        "ds_lease_success_upstream": ("upstream", {"incident": "daemonset"}),
        "ds_nodes_notready_upstream": ("upstream", {"incident": "daemonset"}),
    }

    def claims(self, results: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None,
               only=None) -> dict:
        """The lab's figures for ``data/claims/flow-control.csv``."""
        summary = self.summaries(None, overrides)

        want = [c for c in self.CLAIM_RUNS if only is None or c in set(only)]
        pick = {
            "restart_crashes_off": "restart_crashes",
            "restart_recovery_off_s": "restart_recovery_s",
            "restart_recovery_article_s": "restart_recovery_s",
            "restart_network_binds_article": "restart_network_out_vs_others",
            "restart_recovery_upstream_s": "restart_recovery_s",
            "ds_crashes_off": "ds_crashes",
            "ds_crashes_after_operator_article": "ds_crashes_after_operator",
            "ds_crashes_before_operator_article": "ds_crashes_before_operator",
            "ds_crashes_upstream": "ds_crashes",
            "ds_lease_success_upstream": "ds_lease_success_share",
            "ds_nodes_notready_upstream": "ds_nodes_notready_max",
        }
        return {cid: float(summary(*self.CLAIM_RUNS[cid])[pick[cid]]) for cid in want}


# --------------------------------------------------------------------------------------
# What a run shows, per incident
# --------------------------------------------------------------------------------------


def incident_summary(res: FlowControlResult, p: Mapping[str, Any]) -> dict:
    cp, parts = res.cp, res.parts
    flood, health = parts["flood"], parts["health"]
    n = cp._i
    t = cp.rec_t[:n]
    dt = cp.dt
    ev = res.events
    kills = ev.loc[ev["event"] == "OOMKilled", "time"].to_numpy() if len(ev) else np.zeros(0)
    out: dict = {}
    has_restart = p["incident"] in ("restart", "both") and p["restart_at"] < p["duration"]
    has_ds = p["incident"] in ("daemonset", "both") and p["ds_start"] < p["duration"]
    r0 = float(p["restart_at"]) if has_restart else math.nan
    d0 = float(p["ds_start"]) if has_ds else math.nan
    end = float(p["duration"])
    r1 = d0 if (has_restart and has_ds and d0 > r0) else end
    state = cp.rec["state"][:n]
    ready_all = ((state == READY) & (flood.rec["cache_ready"][:n] > 0)).all(axis=1)
    pending = flood.rec["relists_waiting"][:n].sum(axis=1)
    inflight = flood.rec["relist_memory"][:n].sum(axis=1)
    disconnected = res.series["clients_disconnected"].to_numpy()[:n]
    calm = ready_all & (pending < 0.5) & (inflight < 1.0) & (disconnected == 0)
    util = resource_utilisation(res)
    if has_restart:
        m = (t >= r0) & (t < r1)
        out["restart_crashes"] = int(((kills >= r0) & (kills < r1)).sum())
        rec = recovery_time(t[m], calm[m], r0)
        out["restart_recovery_s"] = rec
        w = m & (t < (r0 + rec if math.isfinite(rec) else r1))
        means = {name: float(np.mean(u[w])) if w.any() else 0.0 for name, u in util.items()}
        parts["restart_utilisation"] = means
        for name, v in means.items():
            out["restart_utilisation_" + name.replace(" ", "_").replace("->", "_to_")] = v
        bind = max(means, key=means.get)
        out["restart_binding_resource"] = bind
        others = max(v for k, v in means.items() if k != "network apiserver->clients")
        out["restart_network_out_vs_others"] = means["network apiserver->clients"] / max(others, 1e-9)
        out["restart_etcd_bytes_read_peak_per_s"] = float(flood.rec_etcd["etcd_bytes_read_per_s"][:n][m].max()) \
            if m.any() else 0.0
        out["restart_relists_from_etcd"] = float(flood.rec["relists_from_etcd"][:n][m].sum())
        out["restart_nodes_notready_max"] = int(health.rec_notready[:n][m].max()) if m.any() else 0
        out["restart_lease_success_share"] = _share(health.rec_ok[:n][m], health.rec_fail[:n][m])
        out["restart_list_timeouts"] = float(flood.rec["relists_timed_out"][:n][m].sum())
    if has_ds:
        m = (t >= d0) & (t < end)
        op = d0 + float(p["operator_reaction_s"])
        out["ds_crashes"] = int(((kills >= d0) & (kills < end)).sum())
        out["ds_crashes_before_operator"] = int(((kills >= d0) & (kills < op)).sum())
        # after the limit had a backoff's time (5 min) to bring the crashed instances back
        out["ds_crashes_after_operator"] = int((kills >= op + float(p["crashloop_backoff_max"])).sum())
        out["ds_nodes_notready_max"] = int(health.rec_notready[:n][m].max()) if m.any() else 0
        out["ds_lease_success_share"] = _share(health.rec_ok[:n][m], health.rec_fail[:n][m])
        ds_c = cp.w.index("buggy-daemonset")
        s = cp.w.stream("ds_list_pods")
        sent = cp.rec["connections"]  # noqa: F841  (kept for readers: connections per instance)
        adm = cp.count_samples[:n, :, s].sum(axis=1)
        out["ds_lists_served_per_s"] = float(adm[m].sum() / max(m.sum() * dt, dt))
        out["ds_lists_offered_per_s"] = float(cp.w.classes[ds_c].count / p["ds_list_period"])
    out["apiserver_memory_peak_share"] = float(np.nanmax(cp.rec["memory_bytes"][:n]) / cp.inst.limit)
    out["etcd_bytes_read_per_s_peak"] = float(flood.rec_etcd["etcd_bytes_read_per_s"][:n].max())
    return out


def recovery_time(t: np.ndarray, calm: np.ndarray, t0: float) -> float:
    """Seconds from ``t0`` to the first tick from which ``calm`` holds to the end of the window."""
    if t.size == 0 or not calm[-1]:
        return math.inf
    bad = np.flatnonzero(~calm)
    first = 0 if bad.size == 0 else bad[-1] + 1
    return float(t[first] - t0)


def resource_utilisation(res: FlowControlResult) -> dict:
    """Per tick, the busiest instance's use of each resource (demand over capacity, capped at 1
    for the links and etcd's CPU, whose excess waits; memory as a share of the limit)."""
    cp, flood = res.cp, res.parts["flood"]
    n = cp._i
    cpu = np.nan_to_num(cp.rec["cpu_util"][:n]).max(axis=1)
    mem = (cp.rec["memory_bytes"][:n] / cp.inst.limit).max(axis=1)
    out = {
        "apiserver CPU": cpu,
        "apiserver memory": mem,
        "network etcd->apiserver": flood.rec["net_in_util"][:n].max(axis=1),
        "network apiserver->clients": flood.rec["net_out_util"][:n].max(axis=1),
        "etcd CPU": flood.rec_etcd["etcd_cpu_util"][:n],
    }
    apf = res.parts.get("apf")
    if apf is not None:
        limited = ~apf.fluid.exempt
        seats = apf.rec_seats[:n][:, :, limited] / np.maximum(apf.rec_limit[:n][:, :, limited], 1.0)
        out["APF seats"] = np.minimum(seats.max(axis=(1, 2)), 1.0)
    return out


def _share(ok: np.ndarray, fail: np.ndarray) -> float:
    tot = float(ok.sum() + fail.sum())
    return float(ok.sum()) / tot if tot > 0 else math.nan


LAB = FlowControlLab()

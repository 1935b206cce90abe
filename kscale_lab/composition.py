"""One cluster, nine switches: the components of every lab on one control plane and one clock.

Each lab zooms in on one mechanism. This module composes them on shared state, the
control-plane core of :mod:`kscale_lab.controlplane`, so that one mechanism's trouble
becomes another's load. The couplings, and how coarse each one is:

* **freelist -> every write's latency.** :class:`~kscale_lab.etcd.server.EtcdServer` takes the
  writes the API servers admit each tick, keeps etcd's history, free pages, file size and
  quota, and returns the put latency of the freelist at this tick's free pages and write rate
  (the etcd-storage lab's counted-work law). Slow commits make slow writes, more requests in
  flight, more memory. NOSPACE refuses every write.
* **heartbeats -> API server CPU, etcd's history, node health.** The kubelets' request rates
  come from the heartbeat lab (:func:`kscale_lab.labs.heartbeats.heartbeat_rates`);
  :class:`~kscale_lab.clients.nodehealth.NodeHealth` marks NotReady the nodes whose
  heartbeats the control plane failed (a 429, no connection, a timeout, NOSPACE).
* **apiserver_lb -> where everything lands.** The core's connections, load balancer and the
  lab's :class:`~kscale_lab.controlplane.Behaviour` for the setting.
* **bookmarks -> the cost of a restart.** When an API server goes away its watchers re-open
  their watches elsewhere; each resumed watch replays the events it missed, and some relist.
  The per-watcher CPU and relist share come from the bookmarks lab's restart at this cluster's
  size (coarser: one figure per class, not per client).
* **cached_reads -> reads and re-lists.** :class:`~kscale_lab.apiserver.probes.ReadProbes` plays
  ``describe node`` / ``get nodes`` at the cached-reads lab's cost; a kubelet's re-list is served
  by the watch cache or, with the switch off, by etcd at that lab's per-LIST cost.
* **scheduler -> pod startup.** :class:`~kscale_lab.scheduler.scaleup.ScaleUp` takes each pod's
  scheduling decision from the scheduler lab's simulation and sends creations and bindings
  through the control plane; pod startup = scheduling + the bind's latency + the kubelet.
* **hot_standby -> controller downtime, and LISTs.** The hot-standby lab's component
  (:class:`~kscale_lab.clients.controllers.ControllerFailover`) runs kube-controller-manager and
  kube-scheduler replicas on the same control plane: their Lease renewals are writes with the core's
  latency, a cold leader's informers list ~1M objects through the API servers (from the watch cache
  or, with cached reads off, from etcd). While no scheduler leads, the scale-up's pods wait
  (:class:`SchedulerGaps`; coarser: every later decision moves by the gap).
* **flow_control -> what a restart and a buggy client cost.** The flow-control lab's components
  (:func:`kscale_lab.labs.flow_control.components`): re-lists served from the cache, from etcd (before
  KEP-4568, while a cache fills) or answered 429, the buggy DaemonSet's LIST storm, the article's
  User-Agent limit, upstream's API Priority and Fairness. They take over the core's re-lists
  (coarser than the cached-reads coupling above: their costs come from the range-read model).
* **context_cancel -> goroutines and memory.** The context-cancellation lab's request path
  (:class:`~kscale_lab.apiserver.requests.RequestPathComponent`) owns the requests in flight: a slow
  webhook keeps them, abandoned or not, per the setting; their memory joins the instance's.

Known gap between the zooms (tests hold what agrees; this one is open): with the buggy DaemonSet,
the flow-control lab's ``article`` setting has 15 OOM kills before the operator sets the
User-Agent limit while the capstone's has none (the article's 429 shedding of lab 6 also sheds the
DaemonSet's LISTs, a real coupling). Under API Priority and Fairness both have none: every arrival
of the tick, the request path's retries included, goes through APF (they once bypassed it, and
~17 OOM kills came from retried LISTs nobody queued).

What is simplified is said where it is done; :func:`build` returns the control plane and the
parts, so a test can hold each part against its lab.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .apiserver.probes import ReadProbes
from .clients.nodehealth import NodeHealth
from .clients.workload import STREAM_KIND, build_workload
from .controlplane import Component, ControlPlane
from .costs import COST_PARAMS, Costs
from .etcd.server import EtcdServer
from .scheduler.scaleup import ScaleUp

#: switches whose mechanism the composition carries (the others are reported as not composed)
COMPOSED = ("freelist", "heartbeats", "apiserver_lb", "bookmarks", "cached_reads", "scheduler", "hot_standby",
            "flow_control", "context_cancel")


def composed() -> tuple[str, ...]:
    """The switches whose mechanism the composition carries (all nine)."""
    return COMPOSED


#: the labs' own timeline parameters, which the capstone's timeline replaces
LAB_TIMELINE = {"hot-standby": ("upgrade_at", "crash_at", "crash_components", "heartbeats_setting",
                                "handover_samples"),
                "flow-control": ("incident", "restart_at", "restart_mode", "heartbeats_setting", "ds_start"),
                "context-cancel": ("incident", "incident_at", "incident_for")}


def lab_params():
    """The parameters of the hot-standby, flow-control and context-cancel labs the capstone takes
    (their mechanisms' parameters; not their timelines)."""
    from .labs.context_cancel import LAB as CC
    from .labs.flow_control import LAB as FC
    from .labs.hot_standby import LAB as HS
    from .params import ParamSet

    out = ParamSet([])
    for lab in (HS, FC, CC):       # imported, not looked up: the registry may be being built
        out = out + ParamSet([q for q in lab.params if q.name not in LAB_TIMELINE[lab.name]])
    return out


def hot_standby_params():
    return lab_params()


class SchedulerGaps(Component):
    """Hands the scheduler's leader gaps (hot standby) to the scale-up: while no scheduler leads,
    no pod is scheduled."""

    name = "scheduler_gaps"

    def __init__(self, failover, scaleup):
        self.failover, self.scaleup = failover, scaleup

    def before_tick(self, cp, t0: float, t1: float) -> None:
        from .clients.controllers import SCHED

        f = self.failover
        gaps = [(g.stopped_at, g.first_work_at) for g in f.gaps if g.component == SCHED]
        gaps += [(g.stopped_at, math.inf) for g in f._open_gap.values() if g is not None and g.component == SCHED]
        if gaps != self.scaleup.gaps:
            self.scaleup.gaps = gaps
            self.scaleup._decided = None


@dataclass
class Parts:
    cp: ControlPlane
    etcd: EtcdServer
    nodes: NodeHealth
    probes: ReadProbes | None
    scaleup: ScaleUp | None
    extra: dict = field(default_factory=dict)


@functools.lru_cache(maxsize=32)
def lab_summary(lab: str, setting: str, overrides: tuple) -> dict:
    """A lab's summary for (setting, overrides), memoised: the capstone consults the same lab runs
    again and again (a dashboard toggle changes one switch; the ablation repeats the rest)."""
    from .labs.base import get_lab

    sm = get_lab(lab).run(setting, dict(overrides)).summary
    return {k: v for k, v in sm.items() if k != "params"}


def bookmark_costs(setting: str, p: Mapping[str, Any]) -> tuple[float, float]:
    """(API server CPU per resumed watch, share of watchers that relist) at a restart, from the
    bookmarks lab at this cluster's size and churn."""
    o = {"nodes": int(p["nodes"]), "pods": int(p["pods"]), "pod_churn": float(p["pod_churn"]),
         "restart_at": float(max(60.0, min(p.get("apiserver_upgrade_at", 600.0), 1800.0))), "seed": int(p["seed"])}
    sm = lab_summary("bookmarks", setting, tuple(sorted(o.items())))
    watches = max(sm["restart_watches"], 1)
    return sm["restart_apiserver_cpu_seconds"] / watches, sm["restart_relists"] / watches


def kubelet_relist_cpu_from_etcd(p: Mapping[str, Any], read_overrides: Mapping[str, Any]) -> float:
    """CPU of one kubelet's consistent LIST of its pods served by etcd (every pod decoded and
    filtered), from the cached-reads lab's storm."""
    sm = lab_summary("cached-reads", "off", tuple(sorted(read_overrides.items())))
    return sm["kubelet_list_apiserver_cpu_core_seconds"] / max(sm["kubelet_list_requests"], 1)


def build(switches: Mapping[str, str], p: Mapping[str, Any], *, incidents: Mapping[str, Any]) -> Parts:
    """The composed cluster for ``switches`` (name -> setting), parameters ``p`` and the incident
    timeline ``incidents`` (see :mod:`kscale_lab.labs.capstone`)."""
    from .labs.apiserver_lb import LAB as LB

    p = dict(p)
    costs = Costs.from_params({k: v for k, v in p.items() if k in COST_PARAMS})
    hb = switches["heartbeats"]
    work = build_workload(p, costs, hb)
    # apiserver_lb: the lab's behaviour for its setting (maxSurge: the article upgrades with 3)
    lb = switches["apiserver_lb"]
    q = dict(p)
    if lb == "article" and "max_surge" not in p.get("_given", ()):
        q["max_surge"] = 3
    behaviour = LB.behaviour(lb, q)
    # etcd with the freelist of the setting
    etcd = EtcdServer(p, "array" if switches["freelist"] == "off" else "map", STREAM_KIND, work.meta["kind_bytes"])
    # node health: the heartbeat the node lifecycle controller watches
    stream = "node_status" if hb == "off" else "lease"
    interval = p["node_status_update_frequency"] if hb == "off" else p["node_lease_renew_interval"]
    grace = 50.0 if (hb == "upstream" and "node_monitor_grace_period" not in p.get("_given", ())) \
        else p["node_monitor_grace_period"]
    nodes = NodeHealth(int(p["nodes"]), stream, interval, grace, seed=int(p["seed"]))
    comps = [etcd, nodes]
    read_over = {"nodes": int(p["nodes"]), "pods": int(p["pods"]), "seed": int(p["seed"])}
    probes = None
    if incidents.get("probes", False):
        probes = ReadProbes(switches["cached_reads"], read_over, p["probe_period"])
        comps.append(probes)
    scaleup = None
    if incidents.get("scaleup_at", np.inf) < p["duration"]:
        scaleup = ScaleUp(incidents["scaleup_at"], int(p["scaleup_pods"]), switches["scheduler"], int(p["nodes"]), p,
                          seed=int(p["seed"]))
        comps.append(scaleup)
    extra = {}
    # hot standby: kube-controller-manager and kube-scheduler replicas, their leases and warm-ups
    from .labs.hot_standby import LAB as HS, make_component

    q = HS.resolve(switches["hot_standby"])
    q.update({k: p[k] for k in q if k in p})
    if "informer_list_source" not in p.get("_given", ()):
        q["informer_list_source"] = "etcd" if switches["cached_reads"] == "off" else "watch-cache"
    failover = make_component(switches["hot_standby"], q, work, costs)
    comps.append(failover)
    extra["hot_standby"] = failover
    if scaleup is not None:
        comps.append(SchedulerGaps(failover, scaleup))
    # flow control: re-lists from cache, etcd or 429, the buggy DaemonSet, the User-Agent limit, APF
    from .labs.flow_control import components as flow_components

    ds_at = incidents.get("daemonset_at", math.inf)
    fc, fc_parts, ready_before_cache = flow_components(switches["flow_control"], p, work,
                                                       ds_at if math.isfinite(ds_at) else None)
    comps.extend(fc)
    extra["flow_control"] = fc_parts
    behaviour = dataclasses.replace(behaviour, ready_before_cache=ready_before_cache)
    # context cancellation: the request path (webhooks, etcd, retries, goroutines) owns requests in flight
    from .apiserver.requests import RequestPathComponent

    w_at = incidents.get("webhook_at", math.inf)
    rp = dict(p, incident="webhook" if math.isfinite(w_at) else "none",
              incident_at=w_at if math.isfinite(w_at) else 0.0, incident_for=incidents.get("webhook_for", 0.0))
    path = RequestPathComponent(rp, switches["context_cancel"])
    comps.append(path)
    extra["context_cancel"] = path
    cp = ControlPlane(p, work, behaviour, tick=p["tick"], duration=p["duration"], seed=p["seed"],
                      components=comps)
    from .clients.controllers import KCM

    if incidents.get("kcm_upgrade_at", math.inf) < p["duration"]:
        failover.rollout(incidents["kcm_upgrade_at"], float(q["upgrade_restart_seconds"]), float(q["rollout_step_pause"]),
                         name="controller upgrade")
    if incidents.get("kcm_crash_at", math.inf) < p["duration"]:
        failover.crash(incidents["kcm_crash_at"], [KCM], float(q["crashloop_backoff_initial"]), name="controller crash")
    # bookmarks: what a resumed watch costs and who relists (kubelets are the selective watchers)
    cpu_per_watch, relist = bookmark_costs(switches["bookmarks"], p)
    k = work.index("kubelet")
    cp.resume_cpu[k] = cpu_per_watch
    cp.relist_share[k] = relist
    # cached reads off: a kubelet's relist is a consistent LIST from etcd
    if switches["cached_reads"] == "off":
        cp.relist_cpu[k] = kubelet_relist_cpu_from_etcd(p, read_over)
    return Parts(cp, etcd, nodes, probes, scaleup, extra)

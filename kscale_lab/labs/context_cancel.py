"""Lab: context-aware request handling, or the goroutines and memory that outlive their clients.

The article, section 6: serving a request may call out (etcd, admission webhooks, the API
server itself). "If the client has given up but the server keeps working for it,
goroutines and resources pile up; and clients, being level-triggered, retry at once, so the
pile grows until the API server OOMs and crashes." Fix: propagate the request's context and
stop downstream work when the client is gone (admission and webhooks became context-aware
in Kubernetes 1.16). Upstream later plumbed the request's deadline from ``?timeout=`` /
``--request-timeout`` through admission and storage (PR #96061/#96901).

Everything runs on the shared control-plane core (:mod:`kscale_lab.controlplane`), 3 API
servers and 20,000 clients at 10k nodes, with the request path as a component
(:class:`~kscale_lab.apiserver.requests.RequestPathComponent`): per instance and stream,
the requests in flight as fluid cohorts, each holding a goroutine and its memory until it
ends, the clients' timeouts and retries. An incident (a slow admission webhook, a slow
etcd, or both) lasts ``incident_for`` seconds from ``incident_at``. What the lab computes,
per tick and instance: request goroutines, their memory against the limit, clients
waiting, answers that reached a waiting client (goodput), CPU spent on requests whose client
had already left (wasted), retries, 429s, crashes; and, for the incident's steady part, the
goroutines beside Little's law's arrival rate x client timeout.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from ..apiserver.requests import (
    REQUEST_PARAMS, SERIES, Incident, RequestPathComponent,
)
from ..clients.workload import build_workload
from ..controlplane import CONTROLPLANE_PARAMS, Behaviour, ControlPlane, ControlPlaneResult
from ..costs import COST_PARAMS, Costs
from ..errors import ParameterError
from ..params import ParamSet
from ..scenario import SCENARIO_PARAMS, Scenario
from .base import Lab
from .heartbeats import HEARTBEAT_PARAMS

_DURATION = dataclasses.replace(SCENARIO_PARAMS["duration"], default=1800.0,
                                source="issue: 30 simulated minutes hold the incident and the recovery after it")
_MAX_RO = dataclasses.replace(
    COST_PARAMS["max_requests_inflight"], default=3000, lo=0,
    source="kubernetes cluster/gce/gci/configure-helper.sh: clusters above 3000 nodes run "
           "--max-requests-inflight=3000 (kubernetes/kubernetes PR #62650); upstream's flag default is 400; 0 disables "
           "the limit (without API Priority and Fairness)")
_MAX_MUT = dataclasses.replace(
    COST_PARAMS["max_mutating_requests_inflight"], default=1000, lo=0,
    source="kubernetes cluster/gce/gci/configure-helper.sh: clusters above 3000 nodes run "
           "--max-mutating-requests-inflight=1000 (PR #62650); upstream's flag default is 200; 0 disables the limit")
_HEARTBEATS = ParamSet([q for q in HEARTBEAT_PARAMS if q.name in (
    "node_object_bytes", "lease_object_bytes", "node_status_update_frequency", "node_lease_renew_interval",
    "node_status_report_frequency_article", "node_status_report_frequency", "node_status_change_interval")])


_REQUEST_MEMORY = dataclasses.replace(
    CONTROLPLANE_PARAMS["request_memory_bytes"], plausible=(50_000.0, 500_000.0),
    plausible_source="a goroutine's stack, the decoded object, the AdmissionReview and the HTTP/2 and TLS buffers: "
                     "tens to hundreds of KB")


def _params() -> ParamSet:
    scen = ParamSet([_DURATION if q.name == "duration" else q for q in SCENARIO_PARAMS])
    costs = ParamSet([{"max_requests_inflight": _MAX_RO, "max_mutating_requests_inflight": _MAX_MUT}.get(q.name, q)
                      for q in COST_PARAMS])
    core = ParamSet([_REQUEST_MEMORY if q.name == "request_memory_bytes" else q for q in CONTROLPLANE_PARAMS])
    return REQUEST_PARAMS + core + _HEARTBEATS + scen + costs


class ContextCancelLab(Lab):
    name = "context-cancel"
    title = "Context-aware request handling: goroutines and memory that outlive their clients"
    switch = "context_cancel"
    notebook = "labs/08_context_cancel.ipynb"
    article_section = "6"
    params = _params()
    # upstream's webhooks are admissionregistration.k8s.io/v1: timeoutSeconds 10, failurePolicy Fail
    setting_defaults = {"upstream": {"webhook_timeout_seconds": 10.0, "webhook_failure_policy": "Fail"}}

    def check(self, p: Mapping[str, Any]) -> None:
        from ..clients.workload import STREAMS
        from ..apiserver.requests import stream_mask

        stream_mask(p["webhook_streams"], STREAMS, "webhook_streams")
        stream_mask(p["loopback_streams"], STREAMS, "loopback_streams")

    def memory_footprint(self, setting: str, p: Mapping[str, Any]):
        """What a run holds: the control-plane core's arrays (:func:`kscale_lab.controlplane.footprint`)
        and the cohorts' (per tick, instance and stream: the event calendar (4), the client ends by
        outcome (4) and by attempt (2 per attempt), the retry calendar (one per attempt), the lost;
        the records: arrivals by attempt, the 429 share, admitted, goroutines, loopback goroutines,
        clients waiting, ends by outcome), and the series reduced from them after the run."""
        from ..controlplane import footprint

        clients = int(p["nodes"]) * (2 if p["kube_proxy"] else 1) + 2 + int(p["controllers_other"])
        slots = int(p["apiservers"])
        steps = int(round(p["duration"] / p["tick"])) + 2
        streams = 8
        attempts = int(p["max_retries"]) + 1 if p["client_retry"] != "none" else 1
        fp = footprint(f"context-cancel, {int(p['nodes']):,} nodes", clients, slots, steps, streams)
        cells = (steps + 2) * slots * streams
        fp.add("cohort calendars (events, ends by outcome and attempt, retries, lost)", cells,
               (4 + 4 + 2 * attempts + attempts + 1) * 8)
        fp.add("cohort records (arrivals by attempt, 429 share, admitted, goroutines, waiting, ends)", cells,
               (attempts + 5 + 4) * 8)
        fp.add("series reduced from the records", steps * slots, (len(SERIES) + 16) * 8, since="result")
        return fp

    def scenario(self, p: Mapping[str, Any]) -> Scenario:
        return Scenario.from_params({k: p[k] for k in SCENARIO_PARAMS.defaults()})

    def run(self, setting: str, overrides: Mapping[str, Any] | None = None) -> ControlPlaneResult:
        p = self.resolve(setting, overrides)
        self.check(p)
        self.scenario(p)
        core = dict(p)
        for k in ("max_requests_inflight", "max_mutating_requests_inflight"):
            if p[k] == 0:          # the flag's 0 disables the limit: the core's largest value never binds
                core[k] = int(COST_PARAMS[k].hi)
        costs = Costs.from_params({k: v for k, v in core.items() if k in COST_PARAMS})
        work = build_workload(core, costs, "article")
        comp = RequestPathComponent(core, setting)
        cp = ControlPlane(core, work, Behaviour(), tick=p["tick"], duration=p["duration"], seed=p["seed"],
                          components=[comp])
        res = cp.run()
        res.setting = setting
        _attach_series(res, cp, comp)
        res.summary.update(incident_summary(res, cp, comp, p))
        res.summary["params"] = p
        return res

    # -- claims ---------------------------------------------------------------------------
    #: the runs each claim needs: (setting, forced overrides)
    NO_LIMIT = {"max_requests_inflight": 0, "max_mutating_requests_inflight": 0}
    CLAIM_RUNS = {
        "goroutines_over_little_off": ("off", {}),
        "crashes_off": ("off", {}),
        "little_ratio_article": ("article", {}),
        "goodput_gain_article": ("article", {}),
        "goodput_gain_upstream": ("upstream", {}),
        "request_memory_off_over_article_nolimit": ("off", NO_LIMIT),
    }

    def claims(self, results: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None,
               only=None) -> dict:
        """The lab's figures for ``data/claims/context-cancel.csv``. ``overrides`` apply to every run
        (the claims' band); ``only`` limits the claims computed."""
        summary = self.summaries(results, overrides)

        def ratio(a, b):
            return a / b if b else float("nan")

        out = {}
        for cid in [c for c in self.CLAIM_RUNS if only is None or c in set(only)]:
            setting, forced = self.CLAIM_RUNS[cid]
            sm = summary(setting, forced)
            if cid == "goroutines_over_little_off":
                out[cid] = ratio(sm["affected_goroutines_steady"], sm["little_product"])
            elif cid == "crashes_off":
                out[cid] = float(sm["apiserver_crashes"])
            elif cid == "little_ratio_article":
                out[cid] = ratio(sm["affected_goroutines_steady"], sm["little_product"])
            elif cid in ("goodput_gain_article", "goodput_gain_upstream"):
                out[cid] = ratio(sm["goodput_during_per_s"], summary("off")["goodput_during_per_s"])
            elif cid == "request_memory_off_over_article_nolimit":
                out[cid] = ratio(sm["request_memory_peak_bytes"],
                                 summary("article", forced)["request_memory_peak_bytes"])
        return out


def _attach_series(res: ControlPlaneResult, cp: ControlPlane, comp: RequestPathComponent) -> None:
    """Per instance: the component's series beside the core's; cluster-wide: their sums, per second."""
    n = len(res.series)
    rec = comp.series(n)
    for name in SERIES:
        res.instances[name] = rec[name].reshape(-1)
    dt = cp.dt
    s = res.series
    s["apiserver_request_goroutines"] = rec["goroutines"].sum(axis=1)
    s["request_memory_bytes"] = rec["request_memory_bytes"].sum(axis=1)
    s["memory_share_max"] = np.max(cp.rec["memory_bytes"][:n], axis=1) / cp.inst.limit
    s["clients_waiting"] = rec["waiting"].sum(axis=1)
    s["goodput_per_s"] = rec["answered"].sum(axis=1) / dt
    s["admitted_per_s"] = rec["admitted"].sum(axis=1) / dt
    s["retries_per_s"] = rec["retries"].sum(axis=1) / dt
    s["rejected_per_s"] = rec["rejected"].sum(axis=1) / dt
    s["wasted_cpu_cores"] = rec["wasted_cpu"].sum(axis=1) / dt
    for o in ("failed", "timed_out", "cancelled", "lost"):
        s[f"{o}_per_s"] = rec[o].sum(axis=1) / dt


def incident_summary(res: ControlPlaneResult, cp: ControlPlane, comp: RequestPathComponent, p) -> dict:
    """Goroutines, memory, goodput and waste before, during and after the incident; Little's law
    on the incident's steady half."""
    s = res.series
    t = s["time"].to_numpy()
    inc = Incident.from_params(p)
    dt = cp.dt
    before = t < inc.at if inc.kind != "none" else np.ones(t.size, dtype=bool)
    during = (t >= inc.at) & (t < inc.end)
    steady = (t >= inc.at + 0.5 * inc.length) & (t < inc.end)
    after = t >= inc.end + 120.0
    g = s["apiserver_request_goroutines"].to_numpy()
    gp = s["goodput_per_s"].to_numpy()
    waste = s["wasted_cpu_cores"].to_numpy()
    n = t.size
    # Little's law on the streams the incident slows: goroutines vs arrival rate x client timeout
    st = comp.st
    affected = st.hooked.copy() if inc.kind in ("webhook", "both") else np.zeros_like(st.hooked)
    if inc.kind in ("etcd", "both"):
        affected |= st.mutating
    alive = comp.rec_alive[:n][:, :, affected].sum(axis=(1, 2))
    lam = comp.rec_adm[:n][:, :, affected].sum(axis=(1, 2)) / dt
    tau = float(np.mean(st.tau[affected])) if affected.any() else float("nan")
    s["affected_goroutines"] = alive
    s["little_product"] = lam * tau if affected.any() else np.zeros(n)
    out = {
        "goroutines_before": _mean(g[before]),
        "goroutines_peak": float(np.max(g)) if n else float("nan"),
        "goroutines_after": _mean(g[after]),
        "affected_goroutines_steady": _mean(alive[steady]),
        "affected_arrivals_per_s_steady": _mean(lam[steady]),
        "client_timeout_affected_s": tau,
        "little_product": _mean(lam[steady]) * tau,
        "goodput_before_per_s": _mean(gp[before]),
        "goodput_during_per_s": _mean(gp[during]),
        "goodput_share_during": _mean(gp[during]) / max(_mean(gp[before]), 1e-9),
        "wasted_cpu_cores_during": _mean(waste[during]),
        "memory_before_share": _mean(s["memory_share_max"].to_numpy()[before]),
        "memory_after_share": _mean(s["memory_share_max"].to_numpy()[after]),
        "request_memory_peak_bytes": float(np.max(s["request_memory_bytes"])) if n else 0.0,
        "retries_during_per_s": _mean(s["retries_per_s"].to_numpy()[during]),
        "rejected_during_per_s": _mean(s["rejected_per_s"].to_numpy()[during]),
    }
    return out


def _mean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")



LAB = ContextCancelLab()

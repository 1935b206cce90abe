"""Lab: balancing load across API servers at 10,000 nodes.

The article, section 3: an HA control plane runs several API servers, yet "after an
upgrade all load landed on **one** server, its CPU far above the other two". A load
balancer in front (server side or client side) did not fix it, because clients reuse
one TLS connection for every request and watch and only switch servers when it breaks.
Alibaba's fix has three parts: the server distrusts clients (429 above a load
threshold, close connections above a higher one); the client reconnects after
frequent 429s and periodically (reshuffle); operations upgrade with **maxSurge=3**.
Upstream Kubernetes solved it differently: ``--goaway-chance``, graceful shutdown
(``--shutdown-delay-duration``, ``--shutdown-send-retry-after``), and the inflight
limits (API Priority and Fairness, in the flow-control lab).

Everything here runs on the shared control-plane core (:mod:`kscale_lab.controlplane`):
3 API servers, 10k kubelets and 10k kube-proxies with one connection each, the
controllers and the scheduler, a health-checked load balancer, over 30 simulated
minutes with a rolling upgrade at ``rollout_at`` and a restart of two servers at
``restart_at`` (the article's monitoring figure). What the lab computes:

* per instance over time: connections, watch clients, CPU, memory, 429s, closed
  connections, GOAWAYs, crashes (``run(...).instances``);
* after each disruption: the imbalance (max / mean over the ready instances) of
  connections and of CPU demand, and the time until both are within 10 % of the mean
  for 30 s (``*_rebalance_s``; ``inf`` if not within the run);
* the claims: the imbalance after an upgrade without the fix (and that it does not
  heal), the article's fix after two restarts, maxSurge=3's upgrade, upstream's GOAWAY,
  and what happens to an unbalanced instance with fewer cores.

Nothing here is typed in: the imbalance comes from the load balancer's health-check lag
against the rollout's pace, from connection reuse and from each client class's load.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np

from ..clients.workload import build_workload
from ..controlplane import CONTROLPLANE_PARAMS, Behaviour, ControlPlane, ControlPlaneResult
from ..costs import COST_PARAMS, Costs
from ..errors import ParameterError
from ..params import Param, ParamSet
from ..scenario import SCENARIO_PARAMS, Scenario
from .base import Lab
from .heartbeats import HEARTBEAT_PARAMS

REBALANCED = 1.10      # "within 10 % of the mean" (the issue's criterion)
HOLD_S = 30.0          # ... and staying there this long

LB_LAB_PARAMS = ParamSet([
    Param("rollout_at", 300.0, "s", "scenario: a rolling upgrade of every API server after 5 quiet minutes",
          "when the rolling upgrade starts (a time beyond the run: no upgrade)", lo=0, hi=86_400),
    Param("restart_at", 1200.0, "s", "scenario: the article's monitoring figure shows two servers restarted",
          "when instances are restarted (a time beyond the run: no restart)", lo=0, hi=86_400),
    Param("restart_count", 2, "instances", "article section 3: 'after two servers were restarted'",
          "how many API servers are restarted at restart_at", lo=0, hi=64, kind=int),
    Param("restart_gap", 0.0, "s", "assumption: restarted together (a node maintenance, a config push)",
          "seconds between the restarts of those instances", lo=0, hi=3600),
    Param("heartbeats_setting", "article", "1",
          "the article's cluster already used Lease heartbeats (section 2)",
          "how the kubelets heartbeat (a setting of the heartbeats switch)", choices=("off", "article", "upstream"),
          kind=str),
])

_DURATION = dataclasses.replace(SCENARIO_PARAMS["duration"], default=1800.0,
                                source="issue: 30 simulated minutes hold an upgrade, two restarts and their recovery")


def _params() -> ParamSet:
    scen = ParamSet([_DURATION if q.name == "duration" else q for q in SCENARIO_PARAMS])
    hb = ParamSet([q for q in HEARTBEAT_PARAMS if q.name in ("node_object_bytes", "lease_object_bytes",
                                                            "node_status_update_frequency",
                                                            "node_lease_renew_interval",
                                                            "node_status_report_frequency_article",
                                                            "node_status_report_frequency",
                                                            "node_status_change_interval")])
    from ..apiserver.apf import APF_PARAMS, APF_SCENARIO_PARAMS

    return LB_LAB_PARAMS + CONTROLPLANE_PARAMS + APF_PARAMS + APF_SCENARIO_PARAMS + hb + scen + COST_PARAMS


class APIServerLBLab(Lab):
    name = "apiserver-lb"
    title = "API server load balancing: 429, reconnect, reshuffle, maxSurge, GOAWAY"
    switch = "apiserver_lb"
    notebook = "labs/06_apiserver_lb.ipynb"
    article_section = "3"
    params = _params()
    setting_defaults = {"article": {"max_surge": 3}}

    # -- the model -----------------------------------------------------------------------
    def behaviour(self, setting: str, p: Mapping[str, Any]) -> Behaviour:
        if setting == "off":
            return Behaviour(max_surge=int(p["max_surge"]))
        if setting == "article":
            return Behaviour(shed_429=True, close_connections=True, reconnect_on_429=True, reshuffle=True,
                             max_surge=int(p["max_surge"]))
        return Behaviour(goaway_chance=float(p["goaway_chance"]), graceful_shutdown=True,
                         max_surge=int(p["max_surge"]))

    def check(self, p: Mapping[str, Any]) -> None:
        """Cross-parameter rules, each naming the parameter at fault."""
        if p["lb_close_threshold"] < p["lb_429_threshold"]:
            raise ParameterError("lb_close_threshold", f"must be at least lb_429_threshold "
                                                       f"({p['lb_429_threshold']:g}); got {p['lb_close_threshold']:g}")
        if p["max_surge"] > p["apiservers"]:
            raise ParameterError("max_surge", f"must be at most apiservers ({p['apiservers']}); got {p['max_surge']}")
        if p["restart_count"] > p["apiservers"]:
            raise ParameterError("restart_count", f"must be at most apiservers ({p['apiservers']}); "
                                                  f"got {p['restart_count']}")

    def memory_footprint(self, setting: str, p: Mapping[str, Any]):
        """What a run holds: the control-plane core's arrays (:func:`kscale_lab.controlplane.footprint`)."""
        from ..controlplane import footprint

        slots = int(p["apiservers"]) + int(p["max_surge"])
        return footprint(f"apiserver-lb, {int(p['nodes']):,} nodes", self._clients(p), slots,
                         int(round(p["duration"] / p["tick"])) + 2, self._streams)

    _streams = 9

    @staticmethod
    def _clients(p: Mapping[str, Any]) -> int:
        return int(p["nodes"]) * (2 if p["kube_proxy"] else 1) + 2 + int(p["controllers_other"])

    def scenario(self, p: Mapping[str, Any]) -> Scenario:
        return Scenario.from_params({k: p[k] for k in SCENARIO_PARAMS.defaults()})

    def run(self, setting: str, overrides: Mapping[str, Any] | None = None) -> ControlPlaneResult:
        p = self.resolve(setting, overrides)
        self.check(p)
        self.scenario(p)   # validates the scenario (objects >= 2 nodes + pods, ...)
        costs = Costs.from_params({k: v for k, v in p.items() if k in COST_PARAMS})
        work = build_workload(p, costs, p["heartbeats_setting"])
        comps = []
        if setting == "upstream":      # upstream's overload protection is API Priority and Fairness
            from ..apiserver.apf import APF, BOOTSTRAP_FLOW_SCHEMAS
            from .flow_control import apf_levels

            comps.append(APF(p, apf_levels(p), BOOTSTRAP_FLOW_SCHEMAS))
        cp = ControlPlane(p, work, self.behaviour(setting, p), tick=p["tick"], duration=p["duration"],
                          seed=p["seed"], components=comps)
        if p["rollout_at"] < p["duration"]:
            cp.rollout(p["rollout_at"])
        if p["restart_count"] > 0 and p["restart_at"] < p["duration"]:
            cp.restart(p["restart_at"], p["restart_count"], p["restart_gap"])
        res = cp.run()
        res.setting = setting
        res.summary.update(disruption_summary(res, p))
        res.summary["total_demand_cores"] = work.total_demand_cores()
        per_class = work.counts * (work.rates @ work.stream_cpu + work.watch_cpu)
        res.summary["cpu_share_by_client"] = {c.name: float(v / per_class.sum())
                                              for c, v in zip(work.classes, per_class)}
        res.summary["params"] = p
        return res

    # -- claims ---------------------------------------------------------------------------
    #: the runs each claim needs: (setting, forced overrides)
    CLAIM_RUNS = {
        "upgrade_cpu_imbalance_off": ("off", {}),
        "upgrade_not_healed_off": ("off", {}),
        "upgrade_cpu_imbalance_least_connections": ("off", {"lb_policy": "least-connections"}),
        "upgrade_cpu_imbalance_client_side": ("off", {"lb_policy": "client-side"}),
        "upgrade_cpu_imbalance_surge3": ("article", {}),
        "restart_rebalance_article_s": ("article", {}),
        "restart_cpu_imbalance_end_upstream": ("upstream", {}),
        "goaway_reconnect_cpu_share_upstream": ("upstream", {}),
        "overload_crashes_off": ("off", {"apiserver_cores": 12.0}),
        "overload_crashes_article": ("article", {"apiserver_cores": 12.0}),
    }

    def claims(self, results: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None,
               only=None) -> dict:
        """The lab's figures for ``data/claims/apiserver-lb.csv``. ``overrides`` apply to every
        run (the claims' band); ``only`` limits the claims computed."""
        summary = self.summaries(results, overrides)

        want = [c for c in self.CLAIM_RUNS if only is None or c in set(only)]
        out = {}
        for cid in want:
            sm = summary(*self.CLAIM_RUNS[cid])
            out[cid] = {
                "upgrade_cpu_imbalance_off": lambda: sm["upgrade_cpu_imbalance"],
                "upgrade_not_healed_off": lambda: sm["upgrade_cpu_imbalance_final"],
                "upgrade_cpu_imbalance_least_connections": lambda: sm["upgrade_cpu_imbalance"],
                "upgrade_cpu_imbalance_client_side": lambda: sm["upgrade_cpu_imbalance"],
                "upgrade_cpu_imbalance_surge3": lambda: sm["upgrade_cpu_imbalance"],
                "restart_rebalance_article_s": lambda: sm["restart_rebalance_s"],
                "restart_cpu_imbalance_end_upstream": lambda: sm["restart_cpu_imbalance_final"],
                "goaway_reconnect_cpu_share_upstream": lambda: (sm["goaways_total"] * sm["params"]["tls_handshake_cpu"]
                                                                / sm["params"]["duration"] / sm["total_demand_cores"]),
                "overload_crashes_off": lambda: sm["apiserver_crashes"],
                "overload_crashes_article": lambda: sm["apiserver_crashes"],
            }[cid]()
        return out


def disruption_summary(res: ControlPlaneResult, p: Mapping[str, Any]) -> dict:
    """Imbalance after each disruption and the time to re-balance."""
    ev, s = res.events, res.series
    t = s["time"].to_numpy()
    conn = s["connection_imbalance"].to_numpy()
    busiest = _busiest_share(res)
    cpu = s["cpu_imbalance"].to_numpy()
    out = {}
    windows = []
    for name in ("upgrade", "restart"):
        began = ev.loc[ev["event"] == f"{name} begins", "time"]
        ended = ev.loc[ev["event"] == f"{name} ends", "time"]
        if len(began) and len(ended):
            windows.append((name, float(began.iloc[0]), float(ended.iloc[0])))
    windows.sort(key=lambda w: w[1])
    for n, (name, t_begin, t_end) in enumerate(windows):
        t_next = windows[n + 1][1] if n + 1 < len(windows) else float(p["duration"])
        look = (t >= t_end) & (t < min(t_end + 60.0, t_next))
        final = (t >= max(t_end, t_next - 60.0)) & (t < t_next)
        out[f"{name}_connection_imbalance"] = _mean(conn[look])
        out[f"{name}_busiest_share"] = _mean(busiest[look])
        out[f"{name}_cpu_imbalance"] = _mean(cpu[look])
        out[f"{name}_connection_imbalance_final"] = _mean(conn[final])
        out[f"{name}_cpu_imbalance_final"] = _mean(cpu[final])
        out[f"{name}_rebalance_s"] = rebalance_time(t, np.maximum(conn, cpu), t_end, t_next)
        out[f"{name}_ended_at_s"] = t_end
    return out


def rebalance_time(t: np.ndarray, imb: np.ndarray, t_end: float, t_next: float, within: float = REBALANCED,
                   hold: float = HOLD_S) -> float:
    """Seconds from ``t_end`` until ``imb`` <= ``within`` and stays there for ``hold`` seconds
    (before ``t_next``); ``inf`` if that does not happen."""
    m = (t >= t_end) & (t < t_next)
    tt, ok = t[m], np.nan_to_num(imb[m], nan=np.inf) <= within
    if tt.size == 0:
        return math.inf
    dt = float(tt[1] - tt[0]) if tt.size > 1 else 1.0
    need = max(1, int(round(hold / dt)))
    run = 0
    for k, good in enumerate(ok):
        run = run + 1 if good else 0
        if run >= need:
            return float(tt[k - need + 1] - t_end)
    return math.inf


def _busiest_share(res: ControlPlaneResult) -> np.ndarray:
    """Per tick: the share of connected clients on the busiest instance."""
    inst = res.instances
    n = len(res.series)
    conns = inst["connections"].to_numpy().reshape(n, -1)
    tot = conns.sum(axis=1)
    return np.where(tot > 0, conns.max(axis=1) / np.maximum(tot, 1), np.nan)


def guess_report(guess: Mapping[str, Any], result: ControlPlaneResult) -> str:
    """"You guessed X, the model says Y" for the notebook's predictions."""
    sm = result.summary
    heaviest = max(sm["cpu_share_by_client"].items(), key=lambda kv: kv[1])
    model = {
        "busiest_share_after_upgrade": (sm.get("upgrade_busiest_share"), "{:.0%}"),
        "busiest_share_after_restarts": (sm.get("restart_busiest_share"), "{:.0%}"),
        "heaviest_clients": (f"{heaviest[0]} ({heaviest[1]:.0%} of the CPU)", "{}"),
    }
    lines = []
    for key, (value, form) in model.items():
        g = (guess or {}).get(key)
        said = "you did not guess" if g is None else "you guessed " + (form.format(g) if not isinstance(g, str)
                                                                        else g)
        lines.append(f"{key}: {said}; the model says {form.format(value)}")
    return "\n".join(lines)


def _mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


LAB = APIServerLBLab()

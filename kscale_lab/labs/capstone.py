"""Capstone: one cluster, nine switches, a big-sale day at 10k nodes, scored with Kubernetes' SLOs.

Every lab zooms in on one mechanism; the capstone runs them **together on shared state**
(:mod:`kscale_lab.composition`) for 30 simulated minutes at 10k nodes, 200k pods and 1M
objects, on a long-lived cluster whose etcd starts from a large, fragmented db, with a
scripted timeline of incidents (every time is a parameter):

* ``scaleup_at``: a 3,000-replica Deployment scale-up (scheduler);
* ``apiserver_upgrade_at``: a rolling upgrade of the API servers (load balancing, bookmarks,
  cached reads; flow control once composed);
* the buggy DaemonSet, the slow admission webhook and the controller-manager upgrade and
  crash, carried by the flow-control, context-cancellation and hot-standby components when
  they are composed (:func:`kscale_lab.composition.composed`);
* ``describe node`` and ``get nodes`` probes throughout (cached reads).

The scorecard speaks the sig-scalability SLOs (:data:`SLOS`): API call latency p99 (mutating
<= 1 s, single-object reads <= 1 s, LISTs <= 30 s), pod startup latency p99 <= 5 s; beside
them nodes falsely NotReady, API server OOM kills and etcd NOSPACE. Rows: every switch
``off``, ``article``, ``upstream``, and the ablation: ``article`` with one switch turned off,
for each of the nine. For each row: which SLO breaks, when, and the chain of events that led
there (from the run's own event log). Nothing is typed in: the rows are runs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np

from .. import cache, composition
from ..apiserver.probes import PROBE_PARAMS
from ..controlplane import CONTROLPLANE_PARAMS
from ..costs import COST_PARAMS
from ..errors import ParameterError
from ..etcd.server import ETCD_SERVER_PARAMS
from ..params import Param, ParamSet
from ..scenario import SCENARIO_PARAMS, SWITCH_NAMES, Scenario
from ..scheduler.scaleup import SCALEUP_PARAMS
from .base import Lab
from .heartbeats import HEARTBEAT_PARAMS

FOLLOW = "follow"

TIMELINE_PARAMS = ParamSet([
    Param("scaleup_at", 120.0, "s", "scenario: the sale starts; a big Deployment scales up",
          "when the scale-up starts (beyond the run: none)", lo=0, hi=86_400),
    Param("scaleup_pods", 3000, "pods", "scheduler lab: a 3,000-replica Deployment (its default burst)",
          "pods the scale-up creates", lo=0, hi=200_000, kind=int),
    Param("apiserver_upgrade_at", 300.0, "s", "scenario: the API servers are upgraded during the day",
          "when the rolling upgrade of the API servers starts (beyond the run: none)", lo=0, hi=86_400),
    Param("daemonset_at", 600.0, "s", "scenario: a buggy DaemonSet rolls out (flow-control lab)",
          "when the buggy DaemonSet starts listing all pods (needs the flow-control component)", lo=0, hi=86_400),
    Param("webhook_at", 900.0, "s", "scenario: an admission webhook slows down (context-cancel lab)",
          "when the admission webhook becomes slow (needs the context-cancel component)", lo=0, hi=86_400),
    Param("webhook_for", 180.0, "s", "scenario", "how long the webhook stays slow", lo=0, hi=86_400),
    Param("kcm_upgrade_at", 1200.0, "s", "scenario: kube-controller-manager is upgraded (hot-standby lab)",
          "when kube-controller-manager is upgraded (needs the hot-standby component)", lo=0, hi=86_400),
    Param("kcm_crash_at", 1500.0, "s", "scenario: later the new leader crashes (hot-standby lab)",
          "when the leading kube-controller-manager crashes (needs the hot-standby component)", lo=0, hi=86_400),
])

INCIDENTS = ("scaleup", "apiserver_upgrade", "daemonset", "webhook", "kcm_upgrade", "kcm_crash", "probes")

TIMELINE_PARAMS = TIMELINE_PARAMS + ParamSet([
    Param("incidents", ",".join(INCIDENTS), "1", "issue #13: the scripted day",
          f"which incidents happen, comma-separated, from: {', '.join(INCIDENTS)} (or 'none')", kind=str),
])

SWITCH_PARAMS = ParamSet([
    Param(name, FOLLOW, "1", "the capstone's switches: 'follow' takes the run's setting",
          f"setting of the {name} switch in this run ('follow': the run's setting for every switch)",
          choices=(FOLLOW, "off", "article", "upstream"), kind=str)
    for name in SWITCH_NAMES
])

_DURATION = dataclasses.replace(SCENARIO_PARAMS["duration"], default=1800.0,
                                source="issue #13: 30 simulated minutes hold the timeline of incidents")


def _params() -> ParamSet:
    from ..etcd import bbolt as B
    from .etcd_storage import _FREELIST_COSTS

    scen = ParamSet([_DURATION if q.name == "duration" else q for q in SCENARIO_PARAMS])
    hb = ParamSet([q for q in HEARTBEAT_PARAMS if q.name != "quota_backend_bytes"])
    return (TIMELINE_PARAMS + SWITCH_PARAMS + ETCD_SERVER_PARAMS + SCALEUP_PARAMS + PROBE_PARAMS
            + CONTROLPLANE_PARAMS + hb + B.PARAMS + _FREELIST_COSTS + composition.lab_params() + scen
            + COST_PARAMS)


@dataclasses.dataclass(frozen=True)
class SLO:
    name: str
    sli: str            # summary key
    limit: float
    unit: str
    source: str

    def broken(self, value: float) -> bool:
        """Broken when the SLI is above its limit or infinite; a SLI that was not measured (nan: no
        scale-up in the run, say) breaks nothing."""
        if isinstance(value, float) and math.isnan(value):
            return False
        return not (isinstance(value, (int, float)) and value <= self.limit)


SLOS = (
    SLO("API call latency, mutating (p99 <= 1 s)", "sli_mutating_latency_p99_s", 1.0, "s",
        "kubernetes/community sig-scalability/slos/api_call_latency.md"),
    SLO("API call latency, single-object reads (p99 <= 1 s)", "sli_read_latency_p99_s", 1.0, "s",
        "kubernetes/community sig-scalability/slos/api_call_latency.md"),
    SLO("API call latency, LISTs (p99 <= 30 s)", "sli_list_latency_p99_s", 30.0, "s",
        "kubernetes/community sig-scalability/slos/api_call_latency.md (cluster scope)"),
    SLO("pod startup latency (p99 <= 5 s)", "pod_startup_latency_p99_s", 5.0, "s",
        "kubernetes/community sig-scalability/slos/pod_startup_latency.md"),
    SLO("nodes falsely NotReady (none)", "nodes_ever_notready", 0.0, "nodes",
        "every kubelet is alive: a NotReady node is the control plane's failure"),
    SLO("API server OOM kills (none)", "apiserver_crashes", 0.0, "crashes", "an API server that crashes is unavailable"),
    SLO("etcd NOSPACE (never)", "etcd_nospace", 0.0, "1", "etcd refuses every write once the alarm is raised"),
    SLO("controllers without a leader (<= 40 s per failover)", "controller_max_gap_s", 40.0, "s",
        "assumption: a gap longer than --node-monitor-grace-period (40 s) lets node health go unwatched"),
)


#: peak RSS per node measured for the consulted labs (issue #17's table at 100k nodes), used only
#: where a lab has no estimate of its own
_MEASURED_PER_NODE = {"bookmarks": 11_400, "cached-reads": 16_600, "scheduler": 2_000}


class CapstoneLab(Lab):
    name = "capstone"
    title = "Capstone: nine switches on one 10k-node cluster, scored with Kubernetes' SLOs"
    switch = ""                  # no single switch: a capstone setting sets every switch (SWITCH_PARAMS)
    notebook = "labs/10_capstone.ipynb"
    article_section = "summary"
    params = _params()
    _cards: dict = {}

    @property
    def settings(self) -> tuple[str, ...]:
        return ("off", "article", "upstream")

    def check_setting(self, setting: str) -> str:
        if setting not in self.settings:
            raise ParameterError("setting", f"must be one of off, article, upstream (every switch); got {setting!r}")
        return setting

    # -- the run -------------------------------------------------------------------------------
    def switches_for(self, setting: str, p: Mapping[str, Any]) -> dict:
        return {s: (setting if p[s] == FOLLOW else p[s]) for s in SWITCH_NAMES}

    def incidents(self, p: Mapping[str, Any]) -> dict:
        """The incidents that happen and their times. An incident's time must lie within the run."""
        raw = str(p["incidents"]).strip()
        chosen = [] if raw in ("", "none") else [x.strip() for x in raw.split(",") if x.strip()]
        for x in chosen:
            if x not in INCIDENTS:
                raise ParameterError("incidents", f"has an unknown incident {x!r}; known: {', '.join(INCIDENTS)}")
        T = float(p["duration"])
        out = {"probes": "probes" in chosen}
        for x in INCIDENTS:
            if x == "probes":
                continue
            at = float(p[f"{x}_at"])
            given = p.get("_given", ())
            if x in chosen and at >= T and f"{x}_at" not in given and "incidents" not in given:
                out[f"{x}_at"] = math.inf       # a default time beyond a shortened run: skipped, not refused
                out.setdefault("skipped", []).append(x)
                continue
            if x in chosen:
                if at >= T:
                    raise ParameterError(f"{x}_at", f"must lie within the run [0, {T:g}) s (or leave {x!r} out of "
                                                    f"incidents); got {at:g}")
                out[f"{x}_at"] = at
            else:
                out[f"{x}_at"] = math.inf
        out["webhook_for"] = float(p["webhook_for"])
        return out

    def memory_footprint(self, setting: str, p: Mapping[str, Any]):
        """What the composed run holds: the core's arrays with the capstone's streams, the node
        health arrays, and the labs it consults. Those run one after another before the core;
        the cached-reads lab keeps its cluster state memoised, so it stays held while the core
        runs; the largest of the others' peaks counts once."""
        from ..controlplane import footprint
        from .apiserver_lb import LAB as LB
        from .base import get_lab

        steps = int(round(p["duration"] / p["tick"])) + 2
        fp = footprint(f"capstone, {int(p['nodes']):,} nodes", LB._clients(p), int(p["apiservers"]) + 3, steps, 9)
        fp.add("node health (phase, probe, order, flags)", int(p["nodes"]), 6 * 8)
        fp.add("etcd and node-health records", steps, 9 * 8)
        o = {"nodes": int(p["nodes"]), "pods": int(p["pods"])}
        peaks = []
        for name in ("bookmarks", "cached-reads", "scheduler"):
            lab = get_lab(name)
            q = lab.resolve(lab.settings[0], {k: v for k, v in o.items() if k in lab.params})
            sub = lab.memory_footprint(lab.settings[0], q)
            if name == "cached-reads":
                fp.add_bytes("cached-reads state (memoised)", sub.held_bytes)
            peaks.append((sub.arrays_bytes, name))
        worst, name = max(peaks)
        fp.add_bytes(f"{name} (the largest consulted lab, while it runs)", worst, phase="labs")
        return fp

    def run(self, setting: str, overrides: Mapping[str, Any] | None = None):
        """One composed run (~5 s at 10k nodes), kept in :mod:`kscale_lab.cache` under its
        setting, resolved parameters and the code's digest."""
        return cache.cached(self.cache_key(setting, overrides), lambda: self._run(setting, overrides))

    def cache_key(self, setting: str, overrides: Mapping[str, Any] | None = None) -> str:
        p = self.resolve(setting, overrides)
        given = sorted(self.params[k].name for k in (overrides or {}))
        return cache.key("capstone", setting, sorted((k, repr(v)) for k, v in p.items()), given)

    def _run(self, setting: str, overrides: Mapping[str, Any] | None = None):
        p = self.resolve(setting, overrides)
        p["_given"] = tuple(self.params[k].name for k in (overrides or {}))
        Scenario.from_params({k: p[k] for k in SCENARIO_PARAMS.defaults()})
        switches = self.switches_for(setting, p)
        inc = self.incidents(p)
        parts = composition.build(switches, p, incidents=inc)
        cp = parts.cp
        if inc["apiserver_upgrade_at"] < p["duration"]:
            cp.rollout(inc["apiserver_upgrade_at"], name="upgrade")
        res = cp.run()
        res.setting = setting
        sm = res.summary
        from .apiserver_lb import disruption_summary

        sm.update({f"apiserver_{k}": v for k, v in disruption_summary(res, p).items()})
        sm.update(slis(cp, parts))
        fo = parts.extra["hot_standby"].failovers(float(p["duration"]))
        sm["controller_max_gap_s"] = float(fo["interruption_s"].max()) if len(fo) else 0.0
        sm["controller_gap_total_s"] = float(fo["interruption_s"].replace(math.inf, p["duration"]).sum()) if len(fo) else 0.0
        res.failovers = fo
        sm["switches"] = switches
        sm["composed"] = composition.composed()
        sm["slo_breaks"] = [s.name for s in SLOS if s.broken(sm.get(s.sli, math.nan))]
        sm["slos_broken"] = len(sm["slo_breaks"])
        sm["first_breaks"] = first_breaks(cp, parts)
        sm["chain"] = chain_of_causes(res.events, sm["first_breaks"], inc)
        p.pop("_given", None)
        sm["params"] = p
        res.etcd = parts.etcd.frame(cp)
        res.timeline = sli_timeline(cp, parts)
        return res

    # -- the scorecard ---------------------------------------------------------------------------
    def rows(self) -> list[tuple[str, str, dict]]:
        """(row label, setting, switch overrides) of the scorecard."""
        out = [("all off", "off", {}), ("all article", "article", {}), ("all upstream", "upstream", {})]
        out += [(f"article, {s} off", "article", {s: "off"}) for s in SWITCH_NAMES]
        return out

    def scorecard(self, overrides: Mapping[str, Any] | None = None, workers: int | None = None, progress=None):
        """One row per scorecard run: SLIs, which SLOs break, when and through which events.
        The runs go to parallel processes (``workers``; default: the machine's cores)."""
        import pandas as pd

        base = {k: v for k, v in dict(overrides or {}).items() if self.params[k].name not in SWITCH_NAMES}
        key = tuple(sorted((self.params[k].name, str(v)) for k, v in base.items()))
        if key not in self._cards:          # the same scorecard twice in a process (notebook, claims)
            jobs = [(label, setting, {**base, **sw}) for label, setting, sw in self.rows()]
            # the rows not yet on disk run in parallel processes; the others are read here
            todo = [j for j in jobs if not cache.has(self.cache_key(j[1], j[2]))]
            done = dict(zip([j[0] for j in todo], _parallel_map(_score_row, todo, workers=workers,
                                                               desc="capstone scorecard", progress=progress))) if todo else {}
            results = [done[j[0]] if j[0] in done else _score_row(j) for j in jobs]
            self._cards[key] = pd.DataFrame(results).set_index("row")
        return self._cards[key].copy()

    def report_sections(self, results) -> list:
        """For ``kscale-lab report``: the scorecard (every row, the ablation included)."""
        card = self.scorecard(progress=False)
        cols = ["slos_broken", "breaks", "first_break", "chain"]
        return [("Scorecard: the SLOs per row (all off / article / upstream, and each switch off alone)",
                 card[cols].reset_index())]

    def claims(self, results: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None,
               only=None) -> dict:
        card = self.scorecard(overrides)
        extra = extra_breaks(card)
        out = {
            "slos_broken_all_article": float(card.loc["all article", "slos_broken"]),
            "slos_broken_all_off": float(card.loc["all off", "slos_broken"]),
            "scheduling_latency_p99_all_off_s": float(card.loc["all off", "scheduling_latency_p99_s"]),
            "pod_startup_within_slo_all_off": float(card.loc["all off", "pods_started_within_5s_share"]),
            "worst_single_switch_slos_broken": float(max(extra.values())) if extra else 0.0,
            "single_switches_that_break_an_slo": float(sum(v > 0 for v in extra.values())),
        }
        return {k: v for k, v in out.items() if only is None or k in set(only)}


SLI_KEYS = ("sli_mutating_latency_p99_s", "sli_read_latency_p99_s", "sli_list_latency_p99_s",
            "pod_startup_latency_p99_s", "pods_started_within_5s_share", "scheduling_latency_p99_s",
            "nodes_ever_notready", "apiserver_crashes", "etcd_nospace", "controller_max_gap_s", "etcd_put_latency_mean_max_s", "cpu_util_peak", "memory_peak_share")


def _score_row(job):
    label, setting, over = job
    res = LAB.run(setting, over)
    sm = res.summary
    row = {"row": label, **{k: sm.get(k, math.nan) for k in SLI_KEYS}, "slos_broken": sm["slos_broken"],
           "breaks": "; ".join(sm["slo_breaks"]) or "none",
           "first_break": _first(sm["first_breaks"]), "chain": " -> ".join(sm["chain"])}
    return row


def _parallel_map(fn, jobs, workers=None, desc="", progress=None) -> list:
    """``fn`` over ``jobs`` in worker processes (one per core), in order, with a progress bar."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    workers = workers or min(len(jobs), os.cpu_count() or 1)
    from ..progress import bar as progress_bar

    bar = progress_bar(total=len(jobs), desc=desc, unit="run", leave=False,
                       show=None if progress is None else bool(progress))
    out = [None] * len(jobs)
    try:
        if workers <= 1:
            for k, j in enumerate(jobs):
                out[k] = fn(j)
                bar.update(1)
        else:
            with ProcessPoolExecutor(workers) as ex:
                futs = {ex.submit(fn, j): k for k, j in enumerate(jobs)}
                from concurrent.futures import as_completed

                for f in as_completed(futs):
                    out[futs[f]] = f.result()
                    bar.update(1)
    finally:
        bar.close()
    return out


def _first(fb: dict) -> str:
    if not fb:
        return ""
    name, t = min(fb.items(), key=lambda kv: kv[1])
    return f"{name} at {t / 60:.1f} min"


def _streams(cp, pred) -> list[int]:
    return [i for i, n in enumerate(cp.w.stream_names) if pred(n, i)]


def slis(cp, parts) -> dict:
    """The scorecard's SLIs from one composed run."""
    w = cp.w
    mut = _streams(cp, lambda n, i: bool(w.mutating[i]))
    reads = _streams(cp, lambda n, i: not w.mutating[i] and not w.is_list[i] and not w.long_running[i])
    lists = _streams(cp, lambda n, i: bool(w.is_list[i]))
    out = {"sli_mutating_latency_p99_s": cp.request_latency_quantile(0.99, mut),
           "sli_read_latency_p99_s": cp.request_latency_quantile(0.99, reads)}
    lst = [cp.request_latency_quantile(0.99, lists)] if lists else []
    if parts.probes is not None:
        for k in parts.probes.samples:
            x = parts.probes.latencies(k)
            if x.size:
                lst.append(float(np.sort(x)[min(x.size - 1, int(np.ceil(0.99 * x.size)) - 1)]))
    out["sli_list_latency_p99_s"] = max(lst) if lst else math.nan
    out["etcd_nospace"] = float(parts.etcd.nospace or math.isfinite(parts.etcd.nospace_at))
    if parts.scaleup is None:
        out["pod_startup_latency_p99_s"] = math.nan
    return out


def sli_timeline(cp, parts):
    """Per tick: the SLIs' instantaneous values (for the timeline figure)."""
    import pandas as pd

    n = cp._i
    w = cp.w
    mut = [i for i in range(len(w.stream_names)) if w.mutating[i]]
    lat, cnt = cp.lat_samples[:n][:, :, mut], cp.count_samples[:n][:, :, mut]
    tot = cnt.sum(axis=(1, 2))
    mean_mut = np.where(tot > 0, (lat * cnt).sum(axis=(1, 2)) / np.maximum(tot, 1e-12), np.nan)
    worst_mut = np.where(cnt > 0, lat, -np.inf).max(axis=(1, 2))
    df = pd.DataFrame({"time": cp.rec_t[:n], "mutating_latency_mean_s": mean_mut,
                       "mutating_latency_worst_s": np.where(np.isfinite(worst_mut), worst_mut, np.nan),
                       "nodes_notready": parts.nodes.notready[:n],
                       "etcd_put_latency_s": parts.etcd.rec["put_s"][:n],
                       "etcd_db_bytes": parts.etcd.rec["db"][:n],
                       "cpu_util_max": np.nanmax(np.nan_to_num(cp.rec["cpu_util"][:n], nan=0.0), axis=1),
                       "memory_share_max": cp.rec["memory_bytes"][:n].max(axis=1) / cp.inst.limit,
                       "ready_instances": (cp.rec["state"][:n] == 2).sum(axis=1)})
    return df


def first_breaks(cp, parts) -> dict:
    """For each SLO that breaks: the first time its SLI crosses the limit."""
    tl = sli_timeline(cp, parts)
    t = tl["time"].to_numpy()
    out = {}

    def first(mask, name):
        if mask.any():
            out[name] = float(t[np.argmax(mask)])

    first(tl["mutating_latency_worst_s"].to_numpy() > 1.0, SLOS[0].name)
    first(tl["nodes_notready"].to_numpy() > 0, SLOS[4].name)
    first(parts.etcd.rec["nospace"][: cp._i] > 0, SLOS[6].name)
    ev = cp.events.events_frame() if hasattr(cp.events, "events_frame") else None
    if ev is not None and len(ev):
        oom = ev.loc[ev["event"] == "OOMKilled", "time"]
        if len(oom):
            out[SLOS[5].name] = float(oom.iloc[0])
    if parts.scaleup is not None:
        lat = parts.scaleup.startup_latency()
        late = np.flatnonzero(~np.isfinite(lat) | (lat > 5.0))
        if late.size:
            out[SLOS[3].name] = float(parts.scaleup.arrival[late].min())
    if parts.probes is not None:
        for k in parts.probes.samples:
            bad = [ts for ts, x in parts.probes.samples[k] if x > 30.0]
            if bad:
                out[SLOS[2].name] = min(out.get(SLOS[2].name, math.inf), bad[0])
    return out


NOTABLE = ("begins", "OOMKilled", "NOSPACE alarm", "stopped", "terminating", "draining", "lb unhealthy",
           "etcd defragment", "etcd commits fall behind", "nodes NotReady", "DaemonSet", "daemonset",
           "User-Agent", "webhook", "scale-up begins", "controller", "leader")


def chain_of_causes(events, breaks: dict, incidents: Mapping[str, float]) -> list[str]:
    """The events from the incident before the first SLO break up to it, in order (the run's own
    log: which incident started it, what the components did, what broke)."""
    if not breaks or events is None or not len(events):
        return []
    name, t_break = min(breaks.items(), key=lambda kv: kv[1])
    starts = [(v, k[: -3]) for k, v in incidents.items() if k.endswith("_at") and v <= t_break]
    t_from = max(starts)[0] if starts else 0.0
    ev = events[(events["time"] >= t_from - 1e-9) & (events["time"] <= t_break + 1e-9)]
    chain = []
    for _, r in ev.iterrows():
        if any(tag in str(r["event"]) for tag in NOTABLE):
            who = f" {r['instance']}" if "instance" in r and isinstance(r.get("instance"), str) else ""
            item = f"{r['event']}{who} ({r['time'] / 60:.1f} min)"
            if not chain or chain[-1] != item:
                chain.append(item)
    chain = chain[:8]
    chain.append(f"{name} breaks ({t_break / 60:.1f} min)")
    return chain


LAB = CapstoneLab()


def extra_breaks(card) -> dict:
    """Per switch: the SLOs its ablation row ("article, X off") breaks that the all-article row keeps."""
    base = set(str(card.loc["all article", "breaks"]).split("; ")) - {"none"}
    out = {}
    for row in card.index:
        if row.startswith("article, "):
            got = set(str(card.loc[row, "breaks"]).split("; ")) - {"none"}
            out[row.split(", ")[1].replace(" off", "")] = len(got - base)
    return out


def guess_report(guess: Mapping[str, Any], card) -> str:
    """"You guessed X, the model says Y" for the capstone's predictions (``card``: the scorecard)."""
    abl = card[card.index.str.startswith("article, ")]
    worst_n = int(abl["slos_broken"].max()) if len(abl) else 0
    worst = [r.split(", ")[1].replace(" off", "") for r in abl.index[abl["slos_broken"] == worst_n]] if worst_n else []
    first = card.loc["all off", "first_break"] if "all off" in card.index else ""
    model = {"worst_single_switch": (", ".join(worst) + f" ({worst_n} SLO(s))") if worst else "none breaks an SLO",
             "first_slo_broken_all_off": first or "none"}
    lines = []
    for k, v in model.items():
        g = (guess or {}).get(k)
        lines.append(f"{k}: {'you did not guess' if g is None else 'you guessed ' + str(g)}; the model says {v}")
    return "\n".join(lines)

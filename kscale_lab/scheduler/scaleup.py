"""A Deployment scale-up on the shared control plane: scheduling, binding, pod startup.

The scheduler lab zooms in on the scheduling queue (:mod:`kscale_lab.scheduler.sim`: real
filters and scores over 10k nodes, time from counted work). Here the same simulation
gives, for the capstone's burst, each pod's creation and its scheduling decision; the
control plane then carries what the burst asks of it:

* the ReplicaSet controller creates the pods (writes from kube-controller-manager's
  connection, at the burst's creation rate);
* the scheduler binds each pod (a write from kube-scheduler's connection) once it is
  scheduled, and waits for that write: its latency is the core's ``pod_bind`` latency
  on the scheduler's API server at that moment;
* the kubelet then starts the pod (``kubelet_pod_start_seconds``) and reports its status.

Pod startup latency (the sig-scalability SLI: creation to running, image pulls excluded)
is scheduling latency + bind latency + the kubelet's start. While no scheduler leads
(the hot-standby lab's failover), pods wait: a leader gap delays every decision that
falls in it by the rest of the gap.
"""

from __future__ import annotations

import functools

import numpy as np

from ..controlplane import Component
from ..params import Param, ParamSet

SCALEUP_PARAMS = ParamSet([
    Param("kubelet_pod_start_seconds", 1.0, "s",
          "assumption: the kubelet's sync loop notices the bound pod, sets up the sandbox and starts a small "
          "container (image already present, as the SLO excludes pulling) in about a second",
          "time from a pod's binding to its containers running", lo=0, hi=600),
])


def _quantile(x: np.ndarray, q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``x`` where nan means "never": inf if the quantile falls
    among them."""
    if x.size == 0:
        return float("nan")
    s = np.sort(np.where(np.isfinite(x), x, np.inf))
    return float(s[min(x.size - 1, int(np.ceil(q * x.size)) - 1)])


@functools.lru_cache(maxsize=16)
def _burst(setting: str, nodes: int, pods: int, seed: int):
    """The scheduler lab's simulation of the burst: per pod arrival, decision, latency (memoised)."""
    from ..labs.scheduler import LAB

    res = LAB.run(setting, {"nodes": nodes, "burst_pods": pods, "seed": seed})
    burst = res.pods[res.pods["burst"]] if "burst" in res.pods else res.pods
    summary = {k: v for k, v in res.summary.items() if k != "params"}
    return (burst["arrival_s"].to_numpy(), burst["end_s"].to_numpy(), burst["latency_s"].to_numpy(), summary)


class ScaleUp(Component):
    name = "scale_up"

    def __init__(self, at: float, pods: int, setting: str, nodes: int, p, seed: int = 0):
        self.at = float(at)
        self.n_pods = int(pods)
        self.setting = setting
        self.nodes = int(nodes)
        self.p = p
        self.seed = seed
        self.gaps: list[tuple[float, float]] = []       # scheduler leader gaps (from hot standby)

    def attach(self, cp) -> None:
        arrival, decided, latency, summary = _burst(self.setting, self.nodes, self.n_pods, int(self.seed))
        t0 = float(arrival.min()) if arrival.size else 0.0
        self.arrival = arrival - t0 + self.at
        self.decided = decided - t0 + self.at
        self.sched_latency = latency
        self.sched_summary = summary
        w = cp.w
        self.s_create = w.stream("controller_write")
        self.s_bind = w.stream("pod_bind")
        self.s_status = w.stream("pod_status")
        self.i_kcm = int(np.flatnonzero(cp.cn.cls == w.index("kube-controller-manager"))[0])
        self.i_sched = int(np.flatnonzero(cp.cn.cls == w.index("kube-scheduler"))[0])
        self.i_kubelet = w.index("kubelet")
        steps = cp.steps
        dt = cp.dt
        self.creates = np.bincount(np.clip((self.arrival / dt).astype(int), 0, steps - 1), minlength=steps)
        self.bind_at = np.full(self.arrival.size, np.nan)
        self.bind_latency = np.full(self.arrival.size, np.nan)
        self._bound = np.zeros(self.arrival.size, dtype=bool)
        self._decided = None        # decision times, recomputed when a leader gap is added
        self._n_gaps = 0
        self._announced = False

    def _decisions(self) -> np.ndarray:
        """Decision times after leader gaps: the queue stops during a gap and resumes after it,
        so every decision from the gap's start on moves by the gap's length (a coarse view:
        the scheduler lab's queue would absorb part of it in idle time)."""
        d = self.decided.copy()
        for a, b in sorted(self.gaps):
            d = np.where(d >= a, d + (b - a), d)
        return d

    def arrivals(self, cp, t0: float):
        i, dt = cp._i, cp.dt
        if i >= self.creates.size:
            return None
        if self._decided is None or len(self.gaps) != self._n_gaps:
            self._decided, self._n_gaps = self._decisions(), len(self.gaps)
        due = ~self._bound & (self._decided < t0 + dt)
        n_bind = int(due.sum())
        n_create = int(self.creates[i])
        if n_create and not self._announced:
            self._announced = True
            cp.events.event(t0, "scale-up begins", pods=int(self.arrival.size))
        if n_bind == 0 and n_create == 0:
            self._due = None
            return None
        x = np.zeros((cp.k, len(cp.w.stream_names)))
        jk, js = cp.cn.conn[self.i_kcm], cp.cn.conn[self.i_sched]
        if jk >= 0:
            x[jk, self.s_create] += n_create / dt
        if js >= 0:
            x[js, self.s_bind] += n_bind / dt
        kub = cp.cn.req_counts[:, self.i_kubelet].astype(float)
        if kub.sum() > 0:
            x[:, self.s_status] += 3.0 * n_bind / dt * kub / kub.sum()
        self._due = (np.flatnonzero(due), js)
        return x

    def after_tick(self, cp, t0: float, t1: float) -> None:
        due = getattr(self, "_due", None)
        if not due:
            return
        idx, js = due
        if js < 0 or cp.rej[js, self.s_bind] >= 1.0:
            return                                   # no connection or every write refused: retry next tick
        self._bound[idx] = True
        lat = float(cp.lat[js, self.s_bind])
        self.bind_at[idx] = t0 + lat
        self.bind_latency[idx] = lat

    def startup_latency(self) -> np.ndarray:
        """Per pod of the burst: creation to running (nan for pods not started within the run)."""
        start = self.bind_at + float(self.p["kubelet_pod_start_seconds"])
        return start - self.arrival

    def summary(self, cp) -> dict:
        lat = self.startup_latency()
        ok = np.isfinite(lat)
        # a pod not started by the end of the run counts as infinitely late (the SLI's p99 is then inf
        # when more than 1 % of the pods are not started)
        return {
            "pod_startup_latency_p50_s": _quantile(lat, 0.50),
            "pod_startup_latency_p99_s": _quantile(lat, 0.99),
            "pods_started_within_5s_share": float((ok & (lat <= 5.0)).mean()) if lat.size else float("nan"),
            "pods_not_started": int((~ok).sum()),
            "scheduling_latency_p99_s": float(self.sched_summary.get(
                "burst_scheduler_pod_scheduling_sli_duration_seconds_p99", float("nan"))),
        }

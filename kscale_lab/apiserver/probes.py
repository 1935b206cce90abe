"""``kubectl describe node`` and ``kubectl get nodes`` probes on the shared control plane.

The cached-reads lab zooms in on one consistent read: served by etcd (quorum reads,
paged, every pod decoded to find one node's) or by the watch cache after it caught up
with etcd's revision (:mod:`kscale_lab.apiserver.consistent_read`). This component asks
that lab what one probe costs for the cached-reads setting (its latency unloaded, its
API server CPU) and plays the probes on the capstone's control plane: every
``probe_period`` a user's kubectl sends both through the load balancer to an API server;
the probe waits for that server's CPU queue as well, and its CPU joins the server's load.
The latencies are the samples of the LIST SLI (cluster scope: <= 30 s).
"""

from __future__ import annotations

import numpy as np

from ..controlplane import Component
from ..params import Param, ParamSet

PROBE_PARAMS = ParamSet([
    Param("probe_period", 30.0, "s", "scenario: an SRE's dashboard refreshes describe node and get nodes",
          "seconds between two probes (each a describe node and a get nodes)", lo=1, hi=3600),
])


def _quantile(x: np.ndarray, q: float) -> float:
    """Nearest-rank quantile; a probe that found no server (inf) counts as the slowest."""
    if x.size == 0:
        return float("nan")
    s = np.sort(x)
    return float(s[min(x.size - 1, int(np.ceil(q * x.size)) - 1)])


class ReadProbes(Component):
    name = "read_probes"

    def __init__(self, setting: str, overrides: dict, period: float):
        self.setting = setting
        self.overrides = dict(overrides)
        self.period = float(period)

    def attach(self, cp) -> None:
        from ..composition import lab_summary

        sm = lab_summary("cached-reads", self.setting, tuple(sorted(self.overrides.items())))
        self.cost = {"describe_node": (sm["describe_node_seconds"], sm["describe_node_apiserver_cpu_seconds"]),
                     "get_nodes": (sm["get_nodes_seconds"], sm["get_nodes_apiserver_cpu_seconds"])}
        self.samples: dict[str, list] = {k: [] for k in self.cost}
        self._next = self.period
        self._rr = 0

    def before_tick(self, cp, t0: float, t1: float) -> None:
        if t0 < self._next:
            return
        self._next += self.period
        ready = np.flatnonzero(cp.inst.readyz)
        if ready.size == 0:
            for k in self.samples:
                self.samples[k].append((t0, np.inf))
            return
        j = int(ready[self._rr % ready.size])
        self._rr += 1
        wait = float(cp.inst.backlog[j] / cp.inst.cores[j])
        for k, (lat, cpu) in self.cost.items():
            cp._extra_cpu[j] += cpu
            self.samples[k].append((t0, lat + wait))

    def latencies(self, kind: str) -> np.ndarray:
        return np.array([x for _, x in self.samples[kind]])

    def summary(self, cp) -> dict:
        out = {}
        for k in self.cost:
            x = self.latencies(k)
            out[f"{k}_p99_s"] = _quantile(x, 0.99)
            out[f"{k}_unloaded_s"] = float(self.cost[k][0])
        return out

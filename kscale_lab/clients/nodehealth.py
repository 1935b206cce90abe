"""Node health on the shared control plane: heartbeats that reach etcd, or do not.

Every kubelet heartbeats through *its* connection: a Lease renewal every 10 s (or,
without Lease, a Node status PATCH every 10 s). A heartbeat succeeds when the kubelet is
connected, its API server admits the request (not a 429, no NOSPACE in etcd), and it
answers within the kubelet's 10 s timeout; a refused one is retried at once, up to 5
times (``nodeStatusUpdateRetry``). The node lifecycle controller
(:class:`~kscale_lab.clients.nodelifecycle.NodeLifecycleController`) marks a node NotReady
when it has seen no heartbeat for ``--node-monitor-grace-period``. Every kubelet here is
alive, so every NotReady node is *wrongly* NotReady: the control plane failed it.

One component, per node arrays: kubelets are the first ``nodes`` clients of the core's
:class:`~kscale_lab.clients.connections.Connections`, so a node's instance is
``conn[node]``; each tick only the tenth of the nodes whose heartbeat is due is looked at.
"""

from __future__ import annotations

import numpy as np

from ..clients.kubelet import MAX_RETRIES
from ..controlplane import Component
from .nodelifecycle import NodeLifecycleController


class NodeHealth(Component):
    name = "node_health"

    def __init__(self, nodes: int, heartbeat_stream: str, interval: float, grace: float, timeout: float = 10.0,
                 monitor_period: float = 5.0, seed: int = 0):
        self.n = int(nodes)
        self.stream_name = heartbeat_stream
        self.interval = float(interval)
        self.grace = float(grace)
        self.timeout = float(timeout)
        self.monitor_period = float(monitor_period)
        self.rng = np.random.default_rng([seed, 41])
        self.phase = self.rng.random(self.n) * self.interval

    def attach(self, cp) -> None:
        self.s = cp.w.stream(self.stream_name)
        self.nlc = NodeLifecycleController(self.n, self.grace)
        steps = cp.steps
        self.notready = np.zeros(steps)
        self.failed = np.zeros(steps)
        self._next_monitor = self.monitor_period
        # nodes in order of their heartbeat phase: a tick takes a contiguous slice
        self.order = np.argsort(self.phase, kind="stable")
        self.sorted_phase = self.phase[self.order]

    def _due(self, t0: float, t1: float) -> np.ndarray:
        a, b = t0 % self.interval, t1 % self.interval
        lo = np.searchsorted(self.sorted_phase, a, "left")
        hi = np.searchsorted(self.sorted_phase, b, "left")
        if b > a or (t1 - t0) >= self.interval:
            return self.order[lo:hi] if b > a else self.order
        return np.concatenate((self.order[lo:], self.order[:hi]))

    def after_tick(self, cp, t0: float, t1: float) -> None:
        i = cp._i
        due = self._due(t0, t1)
        if due.size:
            inst = cp.cn.conn[due]
            up = inst >= 0
            ok = np.zeros(due.size, dtype=bool)
            if up.any():
                j = inst[up]
                rej = cp.rej[j, self.s]
                slow = cp.lat[j, self.s] > self.timeout
                p_fail = np.where(slow, 1.0, rej ** MAX_RETRIES)
                ok[up] = (self.rng.random(j.size) >= p_fail) & cp.inst.serving[j]
            done = due[ok]
            if done.size:
                lat = cp.lat[cp.cn.conn[done], self.s]
                self.nlc.observe(done, t0 + lat)
            self.failed[i] = due.size - done.size
        if t1 > self._next_monitor:
            before = self.notready[i - 1] if i else 0
            self.notready[i] = self.nlc.monitor(self._next_monitor)
            if self.notready[i] > 0 and before == 0:
                cp.events.event(self._next_monitor, "nodes NotReady", nodes=int(self.notready[i]))
            self._next_monitor += self.monitor_period
        elif i:
            self.notready[i] = self.notready[i - 1]

    def summary(self, cp) -> dict:
        n = cp._i
        return {"nodes_notready_max": int(self.notready[:n].max()) if n else 0,
                "nodes_ever_notready": int(self.nlc.ever_notready.sum()),
                "heartbeats_failed": int(self.failed[:n].sum())}

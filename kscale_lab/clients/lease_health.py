"""Are the nodes alive? Each kubelet's Lease renewals, judged as the node lifecycle controller does.

The control plane's lease stream is a rate per instance; whether one node's renewal
succeeds depends on the instance its kubelet is connected to. This component keeps,
per node, the last successful renewal: every ``node_lease_renew_interval`` (10 s, at
the node's own phase) the kubelet renews, retrying at once up to 5 times
(``maxUpdateRetries``, ``staging/src/k8s.io/component-helpers/apimachinery/lease``). A
try fails when the kubelet has no connection, when its instance answers the lease
stream with 429 (the share the admission filters rejected this tick), or when the
lease's latency on that instance exceeds the heartbeat client's timeout (10 s): so a
renewal succeeds with probability ``1 - rejected^5`` on an instance that answers in
time. Every ``node_monitor_period`` the node lifecycle controller marks NotReady the
nodes whose last renewal is older than ``node_monitor_grace_period``
(``monitorNodeHealth``, as :class:`kscale_lab.clients.nodelifecycle.NodeLifecycleController`
does with its ``probeTimestamp``). Every kubelet is alive, so every NotReady node is
wrongly NotReady.

Simplified, and said so: a renewal is visible at once (not after its latency); phases are
fixed (no 4 % jitter); the controller's own connection is not modelled (it sees what the
API servers stored).
"""

from __future__ import annotations

import numpy as np

from ..controlplane import Component

MAX_TRIES = 5  # lease controller maxUpdateRetries


class LeaseHealth(Component):
    name = "lease-health"

    def __init__(self, p, kubelet_class: str = "kubelet"):
        self.renew = float(p["node_lease_renew_interval"])
        self.grace = float(p["node_monitor_grace_period"])
        self.period = float(p["node_monitor_period"])
        self.timeout = min(float(p["node_status_update_frequency"]), 40.0)
        self.kubelet_class = kubelet_class

    def attach(self, cp) -> None:
        w = cp.w
        self.c = w.index(self.kubelet_class)
        self.clients = np.flatnonzero(cp.cn.cls == self.c)
        n = self.clients.size
        self.n = n
        self.s = w.stream("lease")
        # node i renews in the ticks congruent to its phase modulo the renew interval
        self.cycle = max(1, int(round(self.renew / cp.dt)))
        phase = cp.rng.integers(0, self.cycle, n)
        self.groups = [np.flatnonzero(phase == g) for g in range(self.cycle)]
        self.last_ok = np.zeros(n)
        self.ever = np.zeros(n, dtype=bool)
        self.next_monitor = self.period
        self.notready = 0
        steps = cp.steps
        self.rec_notready = np.zeros(steps)
        self.rec_ok = np.zeros(steps)
        self.rec_fail = np.zeros(steps)
        self.ok_total = 0
        self.fail_total = 0

    def after_tick(self, cp, t0, t1):
        i = cp._i
        idx = self.groups[i % self.cycle]
        if idx.size:
            k = cp.cn.conn[self.clients[idx]]
            on = k >= 0
            kk = np.where(on, k, 0)
            rej = cp.rej[kk, self.s]
            p_ok = np.where(on & cp.inst.serving[kk] & (cp.lat[kk, self.s] < self.timeout), 1.0 - rej ** MAX_TRIES,
                            0.0)
            ok = cp.rng.random(idx.size) < p_ok
            self.last_ok[idx[ok]] = t0
            good = int(ok.sum())
            self.ok_total += good
            self.fail_total += idx.size - good
            self.rec_ok[i] = good
            self.rec_fail[i] = idx.size - good
        while self.next_monitor <= t1:
            late = (self.next_monitor - self.last_ok) > self.grace
            self.notready = int(late.sum())
            if self.notready:
                self.ever |= late
            self.next_monitor += self.period
        self.rec_notready[i] = self.notready

    def summary(self, cp) -> dict:
        n = cp._i
        return {
            "nodes_ever_notready": int(self.ever.sum()),
            "nodes_notready_max": int(self.rec_notready[:n].max()) if n else 0,
            "lease_renewal_success_share": self.ok_total / max(self.ok_total + self.fail_total, 1),
        }

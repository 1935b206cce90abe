"""The node lifecycle controller: who is alive, judged from heartbeats.

kube-controller-manager's node lifecycle controller keeps, per node, a
``probeTimestamp``: the last time (on its own clock) it saw the node's Lease
``renewTime`` advance or its Ready condition's heartbeat change. Every
``--node-monitor-period`` (5 s) it looks at all nodes; a node whose probe is older
than ``--node-monitor-grace-period`` (40 s until 1.31, 50 s since 1.32, PR
#126287) gets Ready=Unknown and the ``node.kubernetes.io/unreachable:NoExecute``
taint; its pods are evicted after their 300 s toleration.

Here every kubelet is alive, so every NotReady node is *wrongly* NotReady: its
heartbeats were delayed or refused by an overloaded control plane. The controller
is one SimPy process; the nodes are arrays.

Mirrors: ``pkg/controller/nodelifecycle/node_lifecycle_controller.go``
(``monitorNodeHealth``, ``tryUpdateNodeHealth``).
"""

from __future__ import annotations

import numpy as np


class NodeLifecycleController:
    def __init__(self, n: int, grace_period: float, start: float = 0.0):
        self.grace = float(grace_period)
        self.probe = np.full(n, start, dtype=np.float64)   # last observed heartbeat
        self.ready = np.ones(n, dtype=bool)
        self.transitions_to_notready = 0
        self.ever_notready = np.zeros(n, dtype=bool)
        self._pending_idx: list[np.ndarray] = []
        self._pending_when: list[np.ndarray] = []

    def observe(self, idx: np.ndarray, when: np.ndarray) -> None:
        """Heartbeats of nodes ``idx`` that commit at times ``when`` (possibly later
        than now: the controller only sees them once they have happened)."""
        if idx.size:
            self._pending_idx.append(np.asarray(idx))
            self._pending_when.append(np.broadcast_to(np.asarray(when, dtype=np.float64), idx.shape))

    def _apply(self, now: float) -> None:
        if not self._pending_idx:
            return
        idx = np.concatenate(self._pending_idx)
        when = np.concatenate(self._pending_when)
        seen = when <= now
        np.maximum.at(self.probe, idx[seen], when[seen])
        self._pending_idx = [idx[~seen]] if (~seen).any() else []
        self._pending_when = [when[~seen]] if (~seen).any() else []

    def monitor(self, now: float) -> int:
        """monitorNodeHealth: returns how many nodes are NotReady now."""
        self._apply(now)
        healthy = (now - self.probe) <= self.grace
        newly = self.ready & ~healthy
        self.transitions_to_notready += int(newly.sum())
        self.ever_notready |= newly
        self.ready = healthy
        return int((~healthy).sum())

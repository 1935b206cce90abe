"""A buggy DaemonSet: one pod per node that LISTs every pod in the cluster, in a loop.

Picture ten thousand new employees, one per desk, each told to read the whole company
directory every minute. Each request is an ordinary LIST; the bug is that there is one
per node. The article's case 2: "a DaemonSet bug multiplies by the node count; tens of
thousands of nodes kept listing pods and crashed the API server".

The DaemonSet is a client class added with :meth:`Workload.add_class`
(:mod:`kscale_lab.clients.workload`): ``ds_pods`` clients (one per node by default),
its own User-Agent (what the article's operators limited) and its own ServiceAccount
(what API Priority and Fairness keys its flow on: every pod of a DaemonSet shares the
ServiceAccount, so the whole DaemonSet is *one* flow of the ``service-accounts``
FlowSchema, priority level ``workload-low``). Its stream ``ds_list_pods`` is a
cluster-scope LIST of pods with ``resourceVersion=0``, served from the watch cache:
the API server copies every pod out of its cache and encodes the response (the core's
``list_pods_all`` cost) and holds it in memory until it is written. The stream's rate
is zero until ``ds_start``, then one LIST per pod per ``ds_list_period``.
"""

from __future__ import annotations

import numpy as np

from ..controlplane import Component
from ..params import Param, ParamSet
from .workload import ClientClass, Workload

DS_USER_AGENT = "node-agent/0.1 (linux/amd64) buggy"
DS_USER = "system:serviceaccount:monitoring:node-agent"

DAEMONSET_PARAMS = ParamSet([
    Param("ds_start", 900.0, "s", "scenario: the bad version is rolled out after the cluster settled",
          "when the buggy DaemonSet starts listing (a time beyond the run: never)", lo=0, hi=86_400),
    Param("ds_list_period", 300.0, "s",
          "assumption: the agent re-lists on a 5-minute resync loop instead of watching",
          "seconds between two LISTs of one DaemonSet pod", lo=1, hi=86_400,
          plausible=(60.0, 1800.0), plausible_source="a tight loop to a half-hourly resync"),
    Param("ds_pods", 0, "pods", "a DaemonSet runs one pod per node (0 = the number of nodes)",
          "pods of the buggy DaemonSet (0: one per node)", lo=0, hi=1_000_000, kind=int),
])


def add_buggy_daemonset(work: Workload, p) -> tuple[int, int]:
    """Add the DaemonSet's stream and class to ``work``; returns (class index, stream index)."""
    ls = work.stream("list_pods_all")
    s = work.add_stream("ds_list_pods", cpu=float(work.stream_cpu[ls]),
                        memory=float(work.stream_memory[ls]), is_list=True)
    n = int(p["ds_pods"]) or int(p["nodes"])
    c = work.add_class(ClientClass("buggy-daemonset", DS_USER_AGENT, n, np.zeros(len(work.stream_names)), 0, 0.0,
                                   0.0, 0.0, user=DS_USER,
                                   groups=("system:serviceaccounts", "system:serviceaccounts:monitoring",
                                           "system:authenticated")))
    return c, s


class DaemonSetStart(Component):
    """Switches the DaemonSet's LIST loop on at ``ds_start``."""

    name = "daemonset"

    def __init__(self, cls: int, stream: int, start: float, period: float):
        self.cls, self.stream = cls, stream
        self.start, self.period = float(start), float(period)
        self.on = False

    def before_tick(self, cp, t0, t1):
        if not self.on and t0 >= self.start:
            self.on = True
            cp.set_rate(self.cls, self.stream, 1.0 / self.period)
            cp.events.event(t0, "buggy DaemonSet starts", pods=int(cp.w.classes[self.cls].count))

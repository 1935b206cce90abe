"""The article's per-User-Agent rate limit, configured by an operator at runtime.

Picture a doorman who is told, ten minutes into a stampede, "turn away anyone whose
badge says *node-agent/0.1*, beyond one a second". Alibaba's API servers had such a
switch (article section 7): rate limits keyed on the request's ``User-Agent`` header,
changed at runtime from the monitoring dashboards, so a misbehaving client can be
throttled without a restart. The limit only helps once someone sets it: the operator
must spot the agent and react (``operator_reaction_s``), and the API servers must stay
alive that long.

Each API server keeps its own token bucket per limited User-Agent (``ua_limit_qps``
tokens per second, ``ua_limit_burst`` at most); a request that finds the bucket empty
gets 429 at the cost of a rejection. In the fluid model a User-Agent's requests are the
streams only its client class sends (the buggy DaemonSet's own LIST stream), so the
limit is a share of those streams per instance and tick.

Upstream never took this: proposals to match FlowSchemas on the User-Agent or to add a
token bucket per agent were closed without merge (kubernetes/kubernetes PRs #115992,
#116322, #132331): the header is chosen by the client, so a buggy or hostile client can
change it, and fairness must key on the authenticated identity. API Priority and
Fairness isolates the same DaemonSet by its ServiceAccount without anyone acting
(:mod:`kscale_lab.apiserver.apf`).
"""

from __future__ import annotations

import numpy as np

from ..controlplane import Component
from ..params import Param, ParamSet

UA_LIMIT_PARAMS = ParamSet([
    Param("operator_reaction_s", 300.0, "s",
          "assumption: an on-call engineer sees the alert, finds the agent on the dashboard and sets the limit "
          "in about five minutes",
          "time from the buggy DaemonSet's start until the operator configures its User-Agent limit (article "
          "setting)", lo=0, hi=86_400,
          plausible=(60.0, 1800.0), plausible_source="an alert seen at once to a half-hour investigation"),
    Param("ua_limit_qps", 1.0, "requests/s",
          "assumption: a limit that lets a broken agent through at a trickle (Alibaba's values are unpublished)",
          "requests per second one API server lets through for the limited User-Agent", lo=0, hi=1e6,
          plausible=(0.1, 10.0), plausible_source="a trickle to a generous limit for one agent"),
    Param("ua_limit_burst", 5.0, "requests", "assumption: a small burst above the rate",
          "token bucket size of the User-Agent limit", lo=0, hi=1e6),
])


class UserAgentLimit(Component):
    """Token buckets per (instance, limited User-Agent) from ``at`` on."""

    name = "ua-limit"

    def __init__(self, p, user_agent: str, at: float):
        self.user_agent = user_agent
        self.at = float(at)
        self.qps = float(p["ua_limit_qps"])
        self.burst = float(p["ua_limit_burst"])
        self.rejected_total = 0.0
        self.configured = False

    def attach(self, cp) -> None:
        w = cp.w
        mine = np.array([c.user_agent == self.user_agent for c in w.classes])
        rates = w.rates
        others = rates[~mine].sum(axis=0) if (~mine).any() else np.zeros(rates.shape[1])
        # the streams only this User-Agent sends (the limit is applied to them)
        self.cls = np.flatnonzero(mine)
        self.streams = np.array([s for s in range(rates.shape[1]) if others[s] == 0
                                 and w.stream_names[s] not in ("lease",)], dtype=np.int64)
        self.tokens = np.full(cp.k, self.burst)
        self.rec = np.zeros(cp.steps)

    def admission(self, cp, A, t0):
        if t0 < self.at or self.cls.size == 0 or self.streams.size == 0:
            return None
        if not self.configured:
            self.configured = True
            cp.events.event(t0, "User-Agent limit configured", user_agent=self.user_agent, qps=self.qps)
        dt = cp.dt
        want = (cp.cn.req_counts[:, self.cls] @ cp.rates[np.ix_(self.cls, self.streams)]) * dt   # K x S'
        tot = want.sum(axis=1)
        self.tokens = np.minimum(self.tokens + self.qps * dt, max(self.burst, self.qps * dt))
        let = np.minimum(tot, self.tokens)
        self.tokens -= let
        share = np.divide(tot - let, tot, out=np.zeros_like(tot), where=tot > 1e-12)
        out = np.zeros_like(A)
        out[:, self.streams] = share[:, None]
        self.rejected_total += float((tot - let).sum())
        if cp._i < self.rec.size:
            self.rec[cp._i] = float((tot - let).sum()) / dt
        return out

    def summary(self, cp) -> dict:
        return {"ua_limit_rejected_total": self.rejected_total}

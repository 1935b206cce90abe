"""kube-apiserver as a CPU-bound server with bounded concurrency.

Picture a kitchen with ``cores`` cooks and a ticket rail that holds at most
``--max-mutating-requests-inflight`` tickets. Orders (requests) arrive all the
time; each needs some minutes of a cook (CPU seconds, from the cost model: mostly
decoding and encoding the object's bytes). While the cooks keep up, an order
waits only for its own cooking and the trip to etcd. When orders arrive faster
than the cooks can cook, a backlog builds, every order waits behind it, and once
the rail is full new orders are turned away at the door: **429 Too Many Requests**.

The model is a fluid queue per API server, advanced one tick at a time:

* ``backlog`` is CPU work admitted but not yet done (core-seconds); within a tick,
  the request that arrives at offset ``u`` waits
  ``max(0, backlog + work_arrived_before_it - cores * u) / cores`` (Lindley's
  recursion on work, computed with a cumulative sum for all requests at once);
* a request's latency is that wait + its own CPU time (one goroutine runs on one
  core) + etcd's write latency for writes;
* the inflight limit is applied through Little's law: with latency ``R``, at most
  ``limit / R`` requests per second can be in flight, the rest are rejected with 429
  (at a small CPU cost each), at random among the tick's arrivals;
* a client whose request takes longer than its timeout gives up, but the server
  still finishes the work and the write still lands (no context cancellation before
  Kubernetes 1.16/1.21: see the context-cancel lab).

The many requests that matter individually (a node's heartbeat) are arrays; the
rest of the traffic is a count and its total CPU, spread evenly over the tick.

Mirrors: ``staging/src/k8s.io/apiserver/pkg/server/filters/maxinflight.go`` (the
limit and the 429), ``.../endpoints/handlers/`` (the request path).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TickOutcome:
    admitted: np.ndarray        # bool per identified request
    latency: np.ndarray         # seconds from arrival to response (nan where rejected)
    cpu_used: np.ndarray        # core-seconds consumed this tick, per instance
    cpu_demand: np.ndarray      # core-seconds of work that arrived this tick, per instance
    rejected: np.ndarray        # identified requests rejected (429), per instance
    backlog: np.ndarray         # core-seconds of work left after the tick, per instance
    inflight: np.ndarray        # requests in flight at the end of the tick (Little's law), per instance


class APIServerPool:
    """``k`` kube-apiserver instances, advanced together one tick at a time.

    Per-instance state is a small array (backlog, last latency, cores); the
    requests of a tick are arrays tagged with the instance they went to, so all
    instances are served with one pass of numpy operations.
    """

    def __init__(self, k: int, cores: float, max_mutating_inflight: int, max_readonly_inflight: int,
                 reject_cpu: float):
        self.k = k
        self.names = [f"apiserver-{i}" for i in range(k)]
        self.cores = np.full(k, float(cores))
        self.max_mut = float(max_mutating_inflight)
        self.max_ro = float(max_readonly_inflight)
        self.reject_cpu = float(reject_cpu)
        self.backlog = np.zeros(k)
        self.last_latency = np.zeros(k)
        self.cpu_total = np.zeros(k)

    def step(self, dt: float, inst: np.ndarray, offsets: np.ndarray, cpu: np.ndarray, mutating: np.ndarray,
             extra_latency: np.ndarray, rng: np.random.Generator,
             bg_mut: np.ndarray | float = 0.0, bg_ro: np.ndarray | float = 0.0, bg_cpu_per_req: float = 0.0,
             bg_extra_latency: float = 0.0, hog_cpu: np.ndarray | float = 0.0) -> TickOutcome:
        """Serve one tick of arrivals.

        ``inst``: instance of each identified request; ``offsets``: its arrival offset
        within the tick; ``cpu``: its CPU seconds; ``mutating``: bool;
        ``extra_latency``: non-CPU latency (etcd) added to its response time.
        Background requests (``bg_mut``, ``bg_ro``: counts per instance) have a mean
        CPU cost and arrive uniformly over the tick; ``hog_cpu``: core-seconds of
        other work per instance this tick.
        """
        k, n = self.k, offsets.size
        zeros = np.zeros(k)
        bg_mut, bg_ro, hog = zeros + bg_mut, zeros + bg_ro, zeros + hog_cpu   # scalars or per-instance
        # --- admission: the inflight limit through Little's law on last tick's latency --------
        r = np.maximum(self.last_latency, 1e-4)
        n_mut = np.bincount(inst, weights=mutating, minlength=k) + bg_mut
        n_all = np.bincount(inst, minlength=k).astype(float)
        n_ro = n_all - (n_mut - bg_mut) + bg_ro
        lim_mut = self.max_mut * dt / r
        lim_ro = self.max_ro * dt / r
        p_mut = np.where(n_mut <= lim_mut, 1.0, lim_mut / np.maximum(n_mut, 1e-12))
        p_ro = np.where(n_ro <= lim_ro, 1.0, lim_ro / np.maximum(n_ro, 1e-12))
        if (p_mut < 1.0).any() or (p_ro < 1.0).any():
            admitted = rng.random(n) < np.where(mutating, p_mut[inst], p_ro[inst])
        else:
            admitted = np.ones(n, dtype=bool)
        bg_adm = bg_mut * p_mut + bg_ro * p_ro
        bg_rej = bg_mut + bg_ro - bg_adm
        rejected = np.bincount(inst, weights=~admitted, minlength=k)
        # --- work and waiting (Lindley on work, segmented by instance) ------------------------
        id_work = np.where(admitted, cpu, self.reject_cpu)
        bg_work = bg_adm * bg_cpu_per_req + bg_rej * self.reject_cpu + hog
        # Work arriving before a request within the tick: the tick's arrivals are spread
        # evenly over it (kubelets run at random phases), so by offset u a share u/dt of
        # the instance's work has arrived; the cores have served cores * u of it.
        id_total = np.bincount(inst, weights=id_work, minlength=k)
        cores = self.cores[inst]
        arrived = (id_total + bg_work)[inst] * offsets / dt
        wait = np.maximum(0.0, self.backlog[inst] + arrived - cores * offsets) / cores
        latency = np.where(admitted, wait + cpu + extra_latency, np.nan)
        demand = id_total + bg_work
        total = self.backlog + demand
        used = np.minimum(total, self.cores * dt)
        self.backlog = total - used
        self.cpu_total += used
        arrivals = n_all + bg_mut + bg_ro
        mean_cpu = demand / np.maximum(arrivals, 1.0)
        mean_extra = np.where(n_all > 0,
                              np.bincount(inst, weights=extra_latency, minlength=k) / np.maximum(n_all, 1),
                              bg_extra_latency)
        self.last_latency = self.backlog / self.cores + mean_cpu + mean_extra
        inflight = arrivals / dt * self.last_latency
        return TickOutcome(admitted, latency, used, demand, rejected, self.backlog.copy(), inflight)

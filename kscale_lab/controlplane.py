"""The control-plane core: API server instances, a load balancer and 20,000 connected clients.

This is the shared model the load-balancing, flow-control, context-cancellation and
hot-standby labs and the capstone stand on (``design.md``, "the control-plane core").

* **The few** are SimPy processes and small arrays over instance *slots*
  (:class:`~kscale_lab.apiserver.instances.InstanceSet`): API servers that start, fill
  their watch caches, become ready, serve with CPU and memory, are OOM-killed and
  restarted, are upgraded one at a time or with ``maxSurge``; the load balancer's
  health checks (:class:`~kscale_lab.apiserver.loadbalancer.LoadBalancer`); the rollout
  and restart scripts.
* **The many** are arrays (:class:`~kscale_lab.clients.connections.Connections`): each
  kubelet, kube-proxy and controller holds one connection to one instance and its
  watches on one instance; timers per client (re-dial, watch timeout, GOAWAY,
  reshuffle) are compared with the clock once per tick, never a process per client.
* **The load** is a small table (:mod:`kscale_lab.clients.workload`): per client class,
  requests per second per stream and watch bytes per second. An instance's arrivals are
  ``clients per class on it @ rates``; its CPU is a fluid queue (admitted work into a
  backlog the cores drain, as in :class:`~kscale_lab.apiserver.server.APIServerPool`);
  its memory is counted from what it holds (caches, watches, requests in flight by
  Little's law, re-lists being sent, events not yet written).

Behaviour switches (:class:`Behaviour`) say which mechanisms act: the article's overload
shedding (429 above a threshold, connection closing above a higher one), its clients'
rules (reconnect after repeated 429s, periodic reshuffle), upstream's ``--goaway-chance``
and graceful shutdown, the rollout's ``maxSurge``. A lab maps its switch settings to a
:class:`Behaviour`; later labs add theirs here (APF, 429 until the cache is ready,
context cancellation, leader election).

Simplified, and said so: a client's watches move together (one bundle per client); a
watcher that falls behind keeps its events buffered (upstream closes it after a blocking
timeout and its client re-watches on the same connection, so its load stays where it
is); latency is the fluid queue's wait plus a request's own CPU and etcd time, per tick
(the p99 is over ticks and instances weighted by requests, not over single requests).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .apiserver.admission import SHEDDING_PARAMS, combine, inflight_rejections, shedding_rejections
from .apiserver.instances import (
    ABSENT, DOWN, INSTANCE_PARAMS, READY, STARTING, STATE_NAMES, TERMINATING, InstanceSet, cache_init_seconds,
)
from .apiserver.loadbalancer import LB_PARAMS, LoadBalancer
from .clients.connections import CONNECTION_PARAMS, Connections
from .clients.workload import WORKLOAD_PARAMS, Workload
from .costs import Costs
from .engine import Engine
from .errors import ParameterError
from .params import Param, ParamSet

ROLLOUT_PARAMS = ParamSet([
    Param("max_surge", 0, "instances",
          "Deployment rollingUpdate.maxSurge; 0 = one instance at a time (maxUnavailable 1), as a control plane "
          "of static pods is upgraded; the article upgrades with maxSurge=3 (its setting's default)",
          "new API server instances started before old ones stop during an upgrade", lo=0, hi=64, kind=int),
    Param("upgrade_restart_seconds", 20.0, "s",
          "assumption: pulling the new image and starting the container on the same machine",
          "time from an instance's stop to its new version's process start (one-at-a-time upgrades)",
          lo=0, hi=3600),
    Param("rollout_step_pause", 10.0, "s",
          "assumption: the rollout waits a little after the new instance reports ready (minReadySeconds-like)",
          "wait after an upgraded instance is ready before the next step", lo=0, hi=3600,
          plausible=(0.0, 60.0), plausible_source='from no wait to a minute after readiness (minReadySeconds-like settings of rollouts)'),
    Param("restart_seconds", 10.0, "s", "assumption: a plain restart (no new image) takes a few seconds",
          "time from an instance's stop to its process start when it is restarted", lo=0, hi=3600),
])

CONTROLPLANE_PARAMS = (INSTANCE_PARAMS + LB_PARAMS + CONNECTION_PARAMS + SHEDDING_PARAMS + ROLLOUT_PARAMS
                       + WORKLOAD_PARAMS)


@dataclass(frozen=True)
class Behaviour:
    """Which load-balancing and overload mechanisms act (see :mod:`kscale_lab.apiserver.admission`)."""

    shed_429: bool = False          # article: 429 above lb_429_threshold
    close_connections: bool = False  # article: close connections above lb_close_threshold
    reconnect_on_429: bool = False  # article client: reconnect after k 429s within w seconds
    reshuffle: bool = False         # article client: reconnect every reshuffle_period
    goaway_chance: float = 0.0      # upstream --goaway-chance
    graceful_shutdown: bool = False  # upstream --shutdown-delay-duration + --shutdown-send-retry-after
    max_surge: int = 0              # rollouts: new instances started before old ones stop
    ready_before_cache: bool = False  # before KEP-4568: /readyz says yes before the watch caches are filled


@dataclass
class ControlPlaneResult:
    series: "object"        # pandas DataFrame: one row per tick, cluster-wide metrics
    instances: "object"     # pandas DataFrame: one row per tick and instance slot
    events: "object"        # pandas DataFrame of one-off events
    summary: dict = field(default_factory=dict)
    setting: str = ""


class Component:
    """A mechanism that acts on the control plane each tick. Labs add theirs (API Priority and
    Fairness, 429 until the cache is ready, context cancellation, leader election) by
    subclassing this and passing it to :class:`ControlPlane`; every hook is optional.

    Order within a tick: ``before_tick`` (events, client actions) -> the core's load
    (+ ``arrivals``: requests per second added to the clients' own, instances x streams: a burst,
    a storm, retries) -> ``in_flight`` (requests holding a max-inflight slot, if the component
    counts them itself) -> ``admission`` (each returns the (instances x streams) share it
    rejects, combined with the others) -> ``extra_cpu`` -> the fluid CPU queue -> ``latency``
    (added non-CPU latency, instances x streams) -> ``memory`` (bytes per instance beside the
    core's) -> the OOM check -> ``after_tick`` (feedback). ``summary`` adds metrics to the run's
    summary.

    A component whose ``in_flight`` returns counts owns the request path: the max-inflight
    filter admits into its free slots instead of applying Little's law (arrivals x latency),
    and the core no longer adds the memory of requests in flight (the component's ``memory``
    returns it). The core keeps this tick's counts in ``cp.owned_in_flight`` (None when it
    applies Little's law itself): a component that limits or counts requests in flight beside
    the core's (a max-inflight filter of its own, a correction of the core's memory) reads them
    there, so two components never count the same requests twice.

    ``relist`` is offered the clients that must re-list (their watch cannot resume) before the
    core serves them from the instance's cache: a component that models LISTs itself (from
    etcd while a cache fills, 429 until it is ready, through API Priority and Fairness) returns
    the mask of the clients it takes. A component with ``replaces_max_inflight = True`` does the
    inflight limiting itself (API Priority and Fairness does, upstream): the core then skips its
    max-inflight filter."""

    name = "component"
    replaces_max_inflight = False

    def attach(self, cp: "ControlPlane") -> None:
        pass

    def before_tick(self, cp: "ControlPlane", t0: float, t1: float) -> None:
        pass

    def arrivals(self, cp: "ControlPlane", t0: float) -> np.ndarray | None:
        """Extra requests per second (instances x streams) this tick: a burst, a storm, retries."""
        return None

    def in_flight(self, cp: "ControlPlane", A: np.ndarray, t0: float) -> np.ndarray | None:
        """Requests holding a max-inflight slot (instances x streams), if this component counts them;
        ``A`` is the tick's arrivals, every component's included."""
        return None

    def relist(self, cp: "ControlPlane", idx: np.ndarray, target: np.ndarray, t: float) -> np.ndarray | None:
        return None

    def admission(self, cp: "ControlPlane", A: np.ndarray, t0: float) -> np.ndarray | None:
        return None

    def extra_cpu(self, cp: "ControlPlane", adm: np.ndarray, t0: float) -> np.ndarray | None:
        return None

    def latency(self, cp: "ControlPlane", adm: np.ndarray, t0: float) -> np.ndarray | None:
        return None

    def memory(self, cp: "ControlPlane", adm: np.ndarray, t0: float) -> np.ndarray | None:
        return None

    def after_tick(self, cp: "ControlPlane", t0: float, t1: float) -> None:
        pass

    def summary(self, cp: "ControlPlane") -> dict:
        return {}


class ControlPlane:
    """API servers + load balancer + clients, advanced on one clock."""

    def __init__(self, p: dict, workload: Workload, behaviour: Behaviour, *, tick: float = 1.0,
                 duration: float = 1800.0, seed: int = 0, apiservers: int | None = None,
                 components: "list[Component] | None" = None):
        self.p = p
        self.w = workload
        self.b = behaviour
        self.costs = Costs.from_params({k: v for k, v in p.items() if k in _cost_names()})
        c = self.costs
        self.n_api = int(apiservers if apiservers is not None else c.apiservers)
        if behaviour.max_surge > self.n_api:
            raise ParameterError("max_surge", f"must be at most the number of API servers ({self.n_api}); "
                                              f"got {behaviour.max_surge}")
        self.k = self.n_api + behaviour.max_surge
        self.dt = float(tick)
        self.duration = float(duration)
        self.engine = Engine(seed, tick)
        rng = self.engine.rng
        self.rng = rng
        self.inst = InstanceSet(self.k, c.apiserver_cores, p, self.n_api)
        self.inst.ready_before_cache = bool(behaviour.ready_before_cache)
        self.init_seconds = cache_init_seconds(workload.cache_objects, workload.cache_bytes, p)
        self.inst.cache_since[: self.n_api] = -1e9
        self.lb = LoadBalancer(self.k, p["lb_policy"], p, rng, healthy=self.inst.readyz.copy())
        cls = workload.client_class_array()
        self.cn = Connections(cls, workload.n_classes, self.k, p, rng, dt=self.dt)
        # per class / stream tables
        self.rates = workload.rates                     # C x S
        self.rate_T = self.rates.T.copy()
        self.watch_cpu = workload.watch_cpu             # C
        self.watches = workload.watches                 # C
        self.req_rate = workload.request_rate           # C
        self.relist_cpu = workload.relist_cpu(c)        # C
        self.relist_bytes = workload.relist_bytes()     # C
        self.relist_share = np.zeros(workload.n_classes)  # share of resumes that fail anyway (bookmarks' job)
        self.resume_cpu = np.zeros(workload.n_classes)    # CPU to replay the events a resumed watch missed
        self.cpu_s = workload.stream_cpu
        self.extra_s = workload.stream_extra_latency
        self.mem_s = workload.stream_memory
        self.long_running = workload.long_running
        self.mutating = workload.mutating
        self.exempt = workload.exempt
        self.is_list = workload.is_list
        S = self.cpu_s.size
        self.lat = np.tile(self.cpu_s + self.extra_s, (self.k, 1))
        self.mem_per_byte_cache = workload.object_memory_factor
        self._zeros_ks = np.zeros((self.k, self.cpu_s.size))
        limits = [x for x in (self.costs.max_mutating_requests_inflight, self.costs.max_requests_inflight) if x > 0]
        self._inflight_floor = 0.999 * min(limits) if limits else np.inf   # a limit of 0 disables it
        mut, ro = self.costs.max_mutating_requests_inflight, self.costs.max_requests_inflight
        self._mut_floor = 0.999 * mut if mut > 0 else np.inf
        self._ro_floor = 0.999 * ro if ro > 0 else np.inf
        self._mut_counted = (workload.mutating & ~workload.long_running).astype(float)
        self._ro_counted = (~workload.mutating & ~workload.long_running).astype(float)
        self._service = self.cpu_s + self.extra_s
        self._smooth = min(1.0, self.dt / float(p["load_smoothing"]))
        self._bytes_per_cpu = 1.0 / max(workload.watch_send_cpu_per_byte, 1e-30)
        self._cache_mem = workload.cache_bytes * workload.object_memory_factor
        self._watch_mem = self.watches * workload.watch_memory
        # CPU of filling the watch caches, spread over the fill (a component that models the fill
        # itself sets this to 0)
        self.init_cpu_per_s = (workload.cache_bytes * self.costs.protobuf_decode_ns_per_byte * 1e-9
                                / max(self.init_seconds, 1e-9))
        # goaway: a Poisson process per client of rate chance x (requests + watch re-opens) / s
        watch_reopen = self.watches / (1.5 * self.cn.min_watch)
        self.goaway_rate = behaviour.goaway_chance * (self.req_rate + watch_reopen)
        # one-off work and memory that outlive a tick
        steps = int(round(self.duration / self.dt)) + 2
        self.steps = steps
        self._i = 0
        horizon = steps + int(3600 / self.dt) + 2
        self._release = np.zeros((horizon, self.k))      # re-list memory released at tick i
        self._relist_mem = np.zeros(self.k)
        self._extra_cpu = np.zeros(self.k)               # core-seconds added to the next tick
        # recording
        shape = (steps, self.k)
        self.rec = {name: np.zeros(shape) for name in (
            "connections", "watch_clients", "cpu_util", "demand_util", "memory_bytes", "rejected_per_s",
            "closed", "goaways", "connects", "relists", "latency_mean_s", "state")}
        self.rec_t = np.zeros(steps)
        self.lat_samples = np.zeros((steps, self.k, S))
        self.count_samples = np.zeros((steps, self.k, S))
        self.events = self.engine.rec
        self._drained = np.zeros(self.k, dtype=bool)
        self._pending_restart: dict[int, float | None] = {}
        self._connected_clients = 0
        self.owned_in_flight = None                      # requests in flight a component counts (this tick)
        for name in ("_relists_total", "_goaways_total", "_reshuffles_total", "_reconnect429_total",
                     "_closed_total", "_rejected_total", "_requests_total"):
            setattr(self, name, 0)
        # initial connections: every client dials at t=0 through the load balancer
        self.components = list(components or [])
        self._own_inflight = any(comp.replaces_max_inflight for comp in self.components)
        for comp in self.components:
            comp.attach(self)
        everyone = np.arange(self.cn.n)
        self.cn.set_timer("t_connect", everyone, rng.random(self.cn.n) * self.dt * 0.999)
        self._connect_due(0.0, self.dt, initial=True)

    # ------------------------------------------------------------------------------------
    # a component changes what one client class sends (a controller that becomes leader)
    # ------------------------------------------------------------------------------------
    def set_class_load(self, c: int, rates: np.ndarray | None = None, watch_bytes_per_s: float | None = None,
                       watches: float | None = None, relist_bytes: float | None = None) -> None:
        """Change client class ``c``'s load from now on: its request rates per stream (per
        client), the watch bytes pushed to each of its clients, the watches each holds, and
        the bytes of its re-list. Every table derived from them is updated."""
        cls = self.w.classes[c]
        if rates is not None:
            self.rates[c] = rates
            self.rate_T[:, c] = rates
            self.req_rate[c] = float(np.sum(rates))
            cls.rates = np.array(rates, dtype=float)
            watch_reopen = self.watches[c] / (1.5 * self.cn.min_watch)
            self.goaway_rate[c] = self.b.goaway_chance * (self.req_rate[c] + watch_reopen)
        if watch_bytes_per_s is not None:
            cls.watch_bytes_per_s = float(watch_bytes_per_s)
            self.watch_cpu[c] = cls.watch_bytes_per_s * self.w.watch_send_cpu_per_byte
        if watches is not None:
            cls.watches = watches
            self.watches[c] = float(watches)
            self._watch_mem[c] = self.watches[c] * self.w.watch_memory
        if relist_bytes is not None:
            cls.relist_bytes = float(relist_bytes)
            self.relist_bytes[c] = cls.relist_bytes
            self.relist_cpu[c] = self.w.relist_cpu(self.costs)[c]

    # ------------------------------------------------------------------------------------
    # lifecycle
    # ------------------------------------------------------------------------------------
    def stop_instance(self, j: int, t: float, restart_after: float | None) -> None:
        """Stop instance ``j`` at ``t`` (gracefully if the behaviour says so); restart it after
        ``restart_after`` seconds (None: it is removed)."""
        st = self.inst.state[j]
        if st not in (READY, STARTING):
            return
        if self.b.graceful_shutdown and st == READY:
            self.inst.terminate(j, t, self.p["shutdown_delay_duration"], self.p["shutdown_drain_seconds"])
            self.inst.restart_at[j] = np.inf
            self._pending_restart[j] = restart_after
            self._drained[j] = False
            self.events.event(t, "terminating", instance=self.inst.names[j])
            return
        self._exit(j, t, restart_after, "stopped")

    def _exit(self, j: int, t: float, restart_after: float | None, why: str) -> None:
        self.inst.stop(j, t, restart_after)
        if restart_after is None:
            self.inst.state[j] = ABSENT
        broken, orphans = self.cn.on_instance_gone(j, t)
        self._reopen_watches(orphans, t)
        self.events.event(t, why, instance=self.inst.names[j], clients=int(broken.size))

    def start_instance(self, j: int, t: float) -> None:
        self.inst.start(j, t, self.init_seconds)
        self.inst.restarts[j] += 1
        self.events.event(t, "starting", instance=self.inst.names[j])

    def _lifecycle(self, t0: float, t1: float) -> None:
        inst = self.inst
        for j in inst.become_ready(t1):
            self.events.event(float(inst.ready_at[j]), "ready", instance=inst.names[j])
        for j in inst.due_restarts(t1):
            self.start_instance(int(j), t0)
        if (inst.state == TERMINATING).any():
            for j in np.flatnonzero((inst.state == TERMINATING) & (inst.drain_at < t1) & ~self._drained):
                # --shutdown-send-retry-after: 429 + Connection: close; watches end with the shutdown
                on = np.flatnonzero(self.cn.conn == j)
                self.cn.break_clients(on, t0)
                lost = np.flatnonzero(self.cn.watch_on == j)
                self.cn.drop_watches(lost, t0)
                self._reopen_watches(lost[self.cn.conn[lost] >= 0], t0)
                self._drained[j] = True
                self.events.event(t0, "draining", instance=inst.names[j], clients=int(on.size))
            for j in np.flatnonzero((inst.state == TERMINATING) & (inst.exit_at < t1)):
                self._exit(int(j), t0, self._pending_restart.pop(int(j), None), "stopped")

    def set_rate(self, cls: int, stream: int, value: float) -> None:
        """Change one class's request rate of one stream (requests/s per client) from now on: a
        component that switches a client class on or off (a buggy DaemonSet starting)."""
        self.rates[cls, stream] = float(value)
        self.rate_T[stream, cls] = float(value)
        self.req_rate = self.rates.sum(axis=1)

    def health_check(self, t: float) -> None:
        registered = self.inst.state != ABSENT
        for j in self.lb.probe(self.inst.readyz, registered):
            self.events.event(t, "lb healthy" if self.lb.healthy[j] else "lb unhealthy",
                              instance=self.inst.names[j])

    # ------------------------------------------------------------------------------------
    # clients
    # ------------------------------------------------------------------------------------
    def _open_conns(self) -> np.ndarray:
        return self.cn.req_counts.sum(axis=1)

    def _connect_due(self, t0: float, t1: float, initial: bool = False) -> None:
        cn = self.cn
        due = cn.due("t_connect", t1)
        if due.size == 0:
            return
        if not self.inst.accepting(t0).any():
            # no instance takes a connection (all restarting): every dial fails, try again later
            cn.set_timer("t_connect", due, t1 + self.rng.random(due.size) * 2.0 * cn.delay)
            return
        due = due[np.argsort(cn.t_connect[due], kind="stable")]
        picks = self.lb.pick(due.size, self._open_conns())
        acc = self.inst.accepting(t0)
        ok = (picks >= 0)
        ok[ok] = acc[picks[ok]]
        good, target = due[ok], picks[ok]
        bad = due[~ok]
        if bad.size:
            cn.set_timer("t_connect", bad, t1 + self.rng.random(bad.size) * 2.0 * cn.delay)
        if good.size == 0:
            return
        need_watch = cn.connected(good, target, t0)
        per = np.bincount(target, minlength=self.k)
        if not initial:      # the run starts from a cluster whose clients are already connected
            self._extra_cpu += per * float(self.p["tls_handshake_cpu"])
        self._connected_clients += good.size
        self.rec["connects"][self._i] += per
        if self.b.reshuffle:
            cn.set_timer("t_reshuffle", good, t0 + self.p["reshuffle_period"] * (0.5 + self.rng.random(good.size)))
        if self.b.goaway_chance > 0:
            self._draw_goaway(good, t0)
        self._reopen_watches(need_watch, t0, initial=initial)

    def _draw_goaway(self, idx: np.ndarray, t: float) -> None:
        r = self.goaway_rate[self.cn.cls[idx]]
        times = np.where(r > 0, t + self.rng.exponential(1.0, idx.size) / np.maximum(r, 1e-300), np.inf)
        self.cn.set_timer("t_goaway", idx, times)

    def _reopen_watches(self, idx: np.ndarray, t: float, initial: bool = False) -> None:
        """Open the watches of connected clients ``idx`` on their connection; a client whose
        resourceVersion is older than that instance's cache re-lists."""
        if idx.size == 0:
            return
        cn = self.cn
        target = cn.conn[idx]
        cn.open_watches(idx, t)
        if initial:
            return
        stale = self.inst.cache_since[target] > cn.t_break[idx]
        if self.relist_share.any():
            stale |= self.rng.random(idx.size) < self.relist_share[cn.cls[idx]]
        if self.resume_cpu.any():
            resumed = ~stale & np.isfinite(cn.t_break[idx])
            self._extra_cpu += np.bincount(target[resumed], weights=self.resume_cpu[cn.cls[idx[resumed]]],
                                           minlength=self.k)
        if stale.any():
            idx, target = idx[stale], target[stale]
            for comp in self.components:
                taken = comp.relist(self, idx, target, t)
                if taken is not None and taken.any():
                    idx, target = idx[~taken], target[~taken]
            if idx.size:
                self._relist(idx, target, t)

    def _relist(self, idx: np.ndarray, target: np.ndarray, t: float) -> None:
        """Clients ``idx`` re-list from their instance's cache: its CPU now, its response held in
        memory until it is sent."""
        c = self.cn.cls[idx]
        cpu = np.bincount(target, weights=self.relist_cpu[c], minlength=self.k)
        nbytes = np.bincount(target, weights=self.relist_bytes[c], minlength=self.k)
        self._extra_cpu += cpu
        held = 2.0 * nbytes
        self._relist_mem += held
        # held while it waits for and gets the CPU, then while it is written to the wire
        from .etcd.range_reads import _costs

        net = _costs(self.p)["network_bytes_per_s"]
        wait = self.inst.backlog / self.inst.cores
        per = np.divide(cpu, np.maximum(np.bincount(target, minlength=self.k), 1))
        dur = wait + per + nbytes / net / np.maximum(np.bincount(target, minlength=self.k), 1)
        rows = self._i + 1 + np.ceil(dur / self.dt).astype(int)
        rows = np.minimum(rows, self._release.shape[0] - 1)
        self._release[rows, np.arange(self.k)] += held
        self.rec["relists"][self._i] += np.bincount(target, minlength=self.k)
        self._relists_total += idx.size

    def _client_timers(self, t0: float, t1: float) -> None:
        cn, i = self.cn, self._i
        self._connect_due(t0, t1)
        # watches that time out re-open on the current connection (after a GOAWAY: elsewhere)
        due = cn.due("t_watch_end", t1)
        if due.size:
            live = due[cn.conn[due] >= 0]
            cn.open_watches(live, t0)
        if self.b.goaway_chance > 0:
            due = cn.due("t_goaway", t1)
            due = due[cn.conn[due] >= 0]
            if due.size:
                picks = self.lb.pick(due.size, self._open_conns())
                acc = self.inst.accepting(t0)
                ok = picks >= 0
                ok[ok] = acc[picks[ok]]
                moved = due[ok]
                cn.set_conn(moved, picks[ok])
                per = np.bincount(picks[ok], minlength=self.k)
                self._extra_cpu += per * float(self.p["tls_handshake_cpu"])
                self.rec["goaways"][i] += per
                self._goaways_total += due.size
                self._draw_goaway(due, t0)
        if self.b.reshuffle:
            due = cn.due("t_reshuffle", t1)
            due = due[cn.conn[due] >= 0]
            if due.size:
                cn.break_clients(due, t0)
                self._reshuffles_total += due.size

    def _feedback_429(self, rej: np.ndarray, t0: float) -> None:
        """Article clients count the 429s they receive; k within w seconds: reconnect."""
        cn = self.cn
        lam = rej @ self.rate_T * self.dt              # K x C expected 429s per client this tick
        hot = np.flatnonzero(lam.max(axis=1) > 1e-9)
        if hot.size == 0:
            return
        on = np.flatnonzero(np.isin(cn.conn, hot))
        if on.size == 0:
            return
        got = self.rng.poisson(lam[cn.conn[on], cn.cls[on]])
        hit = got > 0
        if not hit.any():
            return
        on, got = on[hit], got[hit]
        old = t0 - cn.win_start[on] > self.p["reconnect_429_window"]
        cn.win_start[on] = np.where(old, t0, cn.win_start[on])
        cn.win_429[on] = np.where(old, 0, cn.win_429[on]) + got
        leave = on[cn.win_429[on] >= self.p["reconnect_429_count"]]
        if leave.size:
            cn.break_clients(leave, t0)
            self._reconnect429_total += leave.size

    def _close_connections(self, t0: float) -> None:
        inst, cn = self.inst, self.cn
        over = np.flatnonzero((inst.util > self.p["lb_close_threshold"]) & (inst.state == READY))
        share = float(self.p["lb_close_share_per_s"]) * self.dt
        for j in over:
            on = np.flatnonzero(cn.conn == j)
            close = on[self.rng.random(on.size) < share]
            if close.size:
                cn.break_clients(close, t0)
                self.rec["closed"][self._i, j] += close.size
                self._closed_total += close.size

    # ------------------------------------------------------------------------------------
    # the tick
    # ------------------------------------------------------------------------------------
    def tick(self, t0: float) -> None:
        dt, i = self.dt, self._i
        if i >= self.steps:
            return
        t1 = t0 + dt
        inst, cn, w = self.inst, self.cn, self.w
        cn.next_tick = i + 1
        self._lifecycle(t0, t1)
        self._client_timers(t0, t1)
        comps = self.components
        for comp in comps:
            comp.before_tick(self, t0, t1)
        serving = inst.serving
        # --- load ---------------------------------------------------------------------------
        A = cn.req_counts @ self.rates                      # K x S requests per second
        for comp in comps:
            x = comp.arrivals(self, t0)
            if x is not None:
                A = A + x
        fan_cpu = (cn.watch_counts @ self.watch_cpu) * dt   # K core-seconds of watch fan-out
        owned = None                                         # requests in flight counted by a component
        for comp in comps:
            x = comp.in_flight(self, A, t0)
            if x is not None:
                owned = x
        self.owned_in_flight = owned
        if self._own_inflight:                               # API Priority and Fairness limits instead
            need = False
        elif owned is None:                                  # requests in flight by Little's law
            need = (A * self.lat).sum(axis=1).max() > self._inflight_floor
        else:                                                # ... or as counted, plus this tick's arrivals
            x = owned + A * dt
            need = bool(((x @ self._mut_counted).max() > self._mut_floor) or ((x @ self._ro_counted).max()
                                                                               > self._ro_floor))
        if need:
            rej = inflight_rejections(A, self.lat, self.mutating, self.long_running,
                                      self.costs.max_mutating_requests_inflight, self.costs.max_requests_inflight,
                                      held=owned, dt=dt)
        else:
            rej = self._zeros_ks
        if self.b.shed_429 and inst.util.max() > self.p["lb_429_threshold"]:
            rej = combine(rej, shedding_rejections(inst.util, self.p["lb_429_threshold"], self.exempt))
        for comp in comps:
            r = comp.admission(self, A, t0)
            if r is not None:
                rej = combine(rej, r)
        self.rej = rej
        adm = A - A * rej if rej is not self._zeros_ks else A
        rejected = A.sum(axis=1) - adm.sum(axis=1)
        self._rejected_total += float(rejected.sum()) * dt
        self._requests_total += float(A.sum()) * dt
        demand = (adm @ self.cpu_s + rejected * w.reject_cpu + w.ingest_cpu_per_s) * dt + fan_cpu + self._extra_cpu
        for comp in comps:
            x = comp.extra_cpu(self, adm, t0)
            if x is not None:
                demand = demand + x
        filling = serving & (inst.accept_at <= t0) & (inst.cache_at > t0)
        if filling.any() and self.init_cpu_per_s:
            demand = demand + np.where(filling, self.init_cpu_per_s * dt, 0.0)
        demand = np.where(serving, demand, 0.0)
        self._extra_cpu = np.zeros(self.k)
        cap = inst.cores * dt
        util_now = demand / cap
        inst.util = np.where(serving, inst.util + self._smooth * (util_now - inst.util), 0.0)
        # --- the fluid queue ----------------------------------------------------------------
        total = inst.backlog + demand
        used = np.minimum(total, cap)
        inst.backlog = total - used
        wait = inst.backlog / inst.cores
        self.lat = wait[:, None] + self._service[None, :]
        for comp in comps:
            x = comp.latency(self, adm, t0)
            if x is not None:
                self.lat = self.lat + x
        # --- memory --------------------------------------------------------------------------
        rel = self._release[i]
        if rel.any():
            self._relist_mem = np.maximum(self._relist_mem - rel, 0.0)
        pending_events = inst.backlog * np.divide(fan_cpu, np.maximum(demand, 1e-12)) * self._bytes_per_cpu
        in_flight = adm * self.lat
        mem = (inst.base_memory + inst.cache_fill(t0) * self._cache_mem + (cn.watch_counts @ self._watch_mem)
               + (in_flight @ self.mem_s if owned is None else 0.0) + self._relist_mem + pending_events)
        for comp in comps:
            x = comp.memory(self, adm, t0)
            if x is not None:
                mem = mem + x
        inst.memory = np.where(serving, mem, 0.0)
        # --- record ---------------------------------------------------------------------------
        rec = self.rec
        self.rec_t[i] = t0
        rec["connections"][i] = cn.req_counts.sum(axis=1)
        rec["watch_clients"][i] = cn.watch_counts.sum(axis=1)
        rec["cpu_util"][i] = np.where(serving, used / cap, np.nan)
        rec["demand_util"][i] = np.where(serving, util_now, np.nan)
        rec["memory_bytes"][i] = inst.memory
        rec["rejected_per_s"][i] = rejected
        n_adm = adm.sum(axis=1)
        rec["latency_mean_s"][i] = np.where(n_adm > 0, in_flight.sum(axis=1) / np.maximum(n_adm, 1e-12), np.nan)
        rec["state"][i] = inst.state
        self.lat_samples[i] = self.lat
        self.count_samples[i] = adm * dt
        # --- out of memory: the kubelet restarts it after CrashLoopBackOff ---------------------
        over = serving & (inst.memory > inst.limit)
        if over.any():
            for j in np.flatnonzero(over):
                mem_at = float(inst.memory[j])
                delay = inst.crash(int(j), t0)
                broken, orphans = cn.on_instance_gone(int(j), t0)
                self._reopen_watches(orphans, t0)
                self.events.event(t0, "OOMKilled", instance=inst.names[j], memory_bytes=mem_at,
                                  clients=int(broken.size), restart_in_s=delay)
        # --- the article's feedback: clients that see 429s, servers that close connections ----
        if self.b.reconnect_on_429 and rej is not self._zeros_ks:
            self._feedback_429(rej, t0)
        if self.b.close_connections and inst.util.max() > self.p["lb_close_threshold"]:
            self._close_connections(t0)
        for comp in comps:
            comp.after_tick(self, t0, t1)
        self._i += 1

    # ------------------------------------------------------------------------------------
    # scripts: rollouts and restarts
    # ------------------------------------------------------------------------------------
    def _running(self) -> list[int]:
        return [int(j) for j in np.flatnonzero((self.inst.state == READY) | (self.inst.state == STARTING))]

    def rollout(self, at: float, name: str = "upgrade"):
        """A rolling upgrade of every running instance at ``at`` (one at a time, or with maxSurge)."""
        env = self.engine.env
        p = self.p

        def proc():
            yield env.timeout(at)
            self.events.event(env.now, f"{name} begins", max_surge=self.b.max_surge)
            if self.b.max_surge == 0:
                for j in self._running():
                    self.stop_instance(j, env.now, p["upgrade_restart_seconds"])
                    while self.inst.state[j] != READY:
                        yield env.timeout(self.dt)
                    yield env.timeout(p["rollout_step_pause"])
            else:
                old = self._running()
                while old:
                    batch, old = old[: self.b.max_surge], old[self.b.max_surge:]
                    free = [int(j) for j in np.flatnonzero(self.inst.state == ABSENT)][: len(batch)]
                    for j in free:
                        self.start_instance(j, env.now)
                    # a surge rollout stops old instances only once the load balancer sees the new ones
                    # healthy (readiness gates on the load balancer's target health, as cloud load
                    # balancer controllers offer): otherwise clients would have nowhere to go
                    while not all(self.inst.state[j] == READY and self.lb.healthy[j] for j in free):
                        yield env.timeout(self.dt)
                    yield env.timeout(p["rollout_step_pause"])
                    for j in batch:
                        self.stop_instance(j, env.now, None)
            self.events.event(env.now, f"{name} ends")

        return self.engine._start(proc())

    def restart(self, at: float, count: int, gap: float = 0.0, name: str = "restart"):
        """Restart ``count`` running instances at ``at`` (``gap`` seconds apart)."""
        env = self.engine.env

        def proc():
            yield env.timeout(at)
            targets = self._running()[:count]
            self.events.event(env.now, f"{name} begins", instances=len(targets))
            for n, j in enumerate(targets):
                if n and gap:
                    yield env.timeout(gap)
                self.stop_instance(j, env.now, self.p["restart_seconds"])
            while not all(self.inst.state[j] == READY for j in targets):
                yield env.timeout(self.dt)
            self.events.event(env.now, f"{name} ends")

        return self.engine._start(proc())

    # ------------------------------------------------------------------------------------
    def run(self) -> ControlPlaneResult:
        e = self.engine
        e.every(self.p["lb_health_check_interval"], self.health_check, offset=self.p["lb_health_check_interval"])
        e.every(self.dt, self.tick)
        e.run(self.duration - self.dt)
        res = self.result()
        e.close()
        return res

    def result(self) -> ControlPlaneResult:
        import pandas as pd

        n = self._i
        t = self.rec_t[:n]
        rows = {"time": np.repeat(t, self.k), "instance": np.tile(np.array(self.inst.names), n)}
        for name, arr in self.rec.items():
            rows[name] = arr[:n].reshape(-1)
        inst = pd.DataFrame(rows)
        inst["state"] = inst["state"].astype(int).map(STATE_NAMES)
        conns = self.rec["connections"][:n]
        util = self.rec["cpu_util"][:n]
        series = pd.DataFrame({
            "time": t,
            "connection_imbalance": imbalance(conns, self.rec["state"][:n]),
            "cpu_imbalance": imbalance(np.nan_to_num(self.rec["demand_util"][:n]), self.rec["state"][:n]),
            "apiserver_cpu_util_max": np.nanmax(np.where(np.isnan(util), -np.inf, util), axis=1),
            "apiserver_rejected_requests_per_s": self.rec["rejected_per_s"][:n].sum(axis=1),
            "clients_disconnected": self.cn.n - conns.sum(axis=1),
            "ready_instances": (self.rec["state"][:n] == READY).sum(axis=1),
        })
        events = self.engine.rec.events_frame()
        return ControlPlaneResult(series, inst, events, self.summary(series, events))

    def request_latency_quantile(self, q: float, streams=None, t_from: float = 0.0) -> float:
        n = self._i
        lat = self.lat_samples[:n]
        cnt = self.count_samples[:n]
        mask = self.rec_t[:n] >= t_from
        lat, cnt = lat[mask], cnt[mask]
        if streams is not None:
            lat, cnt = lat[:, :, streams], cnt[:, :, streams]
        return weighted_quantile(lat.reshape(-1), cnt.reshape(-1), q)

    def summary(self, series, events) -> dict:
        ev = events
        crashes = int((ev["event"] == "OOMKilled").sum()) if len(ev) else 0
        return {
            "apiserver_crashes": crashes,
            "request_latency_p99_s": self.request_latency_quantile(0.99),
            "apiserver_rejected_requests_total": self._rejected_total,
            "rejected_share": self._rejected_total / max(self._requests_total, 1e-9),
            "reconnects_total": int(self._connected_clients - self.cn.n),
            "relists_total": int(self._relists_total),
            "goaways_total": int(self._goaways_total),
            "reshuffles_total": int(self._reshuffles_total),
            "reconnects_after_429_total": int(self._reconnect429_total),
            "connections_closed_total": int(self._closed_total),
            "memory_peak_share": float(np.nanmax(self.rec["memory_bytes"][: self._i]) / self.inst.limit),
            "cpu_util_peak": float(np.nanmax(np.nan_to_num(self.rec["cpu_util"][: self._i]))),
            "watch_cache_init_s": float(self.init_seconds),
            **{k: v for comp in self.components for k, v in comp.summary(self).items()},
        }


def footprint(what: str, clients: int, slots: int, steps: int, streams: int):
    """What a :class:`ControlPlane` run holds (a :class:`~kscale_lab.memory.Footprint`): per
    client its class, connection, watch instance and six timers (10 x 8 B) and the tick's
    temporaries over clients (masks, due lists, picks: 14 x 8 B, from tracemalloc's peak at
    2k and 60k nodes: 187 B per client in all); the arrays of the previous run, which glibc's
    malloc keeps after its dynamic mmap threshold has risen (a run after a run: the resident
    set grew 360 B per client where the traced peak grew 187); per tick and slot the 12
    records and the latency and request samples per stream; the re-list release schedule
    (the run plus an hour); the result frames (per tick and slot, 16 columns) built at the end,
    with pandas' copies while they are built."""
    from .memory import Footprint

    fp = Footprint(what)
    fp.add("client arrays (class, connection, watch, timers)", clients, 10 * 8)
    fp.add("tick temporaries over clients", clients, 14 * 8)
    fp.add("an earlier run's client arrays, kept by malloc", clients, 24 * 8)
    fp.add("per-instance records", steps * slots, 12 * 8)
    fp.add("latency and request samples", steps * slots * streams, 2 * 8)
    fp.add("re-list release schedule", steps + 3600, slots * 8)
    fp.add("result frames", steps * slots, 16 * 8, since="result")
    fp.add("frames being built (copies)", steps * slots, 32 * 8, phase="result")
    return fp


def imbalance(values: np.ndarray, state: np.ndarray) -> np.ndarray:
    """max / mean over the ready instances, per tick (nan when none is ready)."""
    import warnings

    ready = state == READY
    v = np.where(ready, values, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # ticks with no ready instance: nan, said below
        mean = np.nanmean(np.where(ready, values, np.nan), axis=1) if ready.any() else np.full(len(values), np.nan)
        mx = np.nanmax(np.where(ready, v, -np.inf), axis=1)
        out = mx / mean
    out[~ready.any(axis=1)] = np.nan
    return out


def weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    m = w > 0
    if not m.any():
        return float("nan")
    x, w = x[m], w[m]
    order = np.argsort(x, kind="stable")
    cw = np.cumsum(w[order])
    k = np.searchsorted(cw, q * cw[-1])
    return float(x[order][min(k, x.size - 1)])


_COST_NAMES: set | None = None


def _cost_names() -> set:
    global _COST_NAMES
    if _COST_NAMES is None:
        from .costs import COST_PARAMS

        _COST_NAMES = {p.name for p in COST_PARAMS}
    return _COST_NAMES

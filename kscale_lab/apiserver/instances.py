"""kube-apiserver instances that start, become ready, serve, run out of memory, and restart.

Picture three (or, during a surge upgrade, six) kitchens behind one door. A kitchen
that opens must first stock its pantry: an API server's **watch caches** are filled by
LISTing every resource from etcd (counted objects x decode cost), and only then does
``/readyz`` say yes (``WatchCacheInitializationPostStartHook``; before KEP-4568 it said
yes earlier, see the flow-control lab). While it cooks it uses two resources:

* **CPU**, a fluid queue per instance (the same Lindley recursion on work as
  :class:`kscale_lab.apiserver.server.APIServerPool`): admitted work is added to a
  backlog the cores drain; a request waits ``backlog / cores``;
* **memory**, against a limit: the process and its watch caches, every open watch,
  every request in flight (Little's law: arrivals x latency) with its response body,
  every re-list being sent, and the watch events waiting to be written to slow
  watchers. Above the limit the instance is **OOM-killed**; the kubelet restarts it
  after a CrashLoopBackOff delay (10 s, doubling to 5 min) and it must fill its caches
  again.

An instance goes through ``ABSENT -> STARTING -> READY -> (TERMINATING) -> DOWN`` and
back to ``STARTING`` on a restart. Before KEP-4568's post-start hook an instance said
ready as soon as it served, *before* its caches were filled (``ready_before_cache``):
then it is READY from ``accept_at`` while ``cache_at`` (when its caches are filled) is
still ahead, and requests that need the cache meet an empty one (the flow-control lab). Stops come in two kinds: immediate (the process
exits, every connection breaks) and graceful, as upstream does it today:
``--shutdown-delay-duration`` (``/readyz`` fails first so the load balancer can drain),
then ``--shutdown-send-retry-after`` (new requests get 429 + ``Connection: close``),
then exit.

Mirrors: ``staging/src/k8s.io/apiserver/pkg/server/genericapiserver.go`` (the shutdown
sequence), ``pkg/storage/cacher/cacher.go`` (cache initialisation), the kubelet's
CrashLoopBackOff (``pkg/kubelet/kuberuntime``: 10 s doubling, capped at 5 min).
"""

from __future__ import annotations

import numpy as np

from ..costs import NS
from ..params import Param, ParamSet

GIB = 1024**3

ABSENT, STARTING, READY, TERMINATING, DOWN = 0, 1, 2, 3, 4
STATE_NAMES = {ABSENT: "absent", STARTING: "starting", READY: "ready", TERMINATING: "terminating", DOWN: "down"}

INSTANCE_PARAMS = ParamSet([
    Param("apiserver_memory_limit_bytes", 64 * GIB, "B",
          "assumption: a 32-core control-plane machine has ~120 GB (GCE n1-standard-32); the API server's "
          "container limit is set to about half, as etcd shares the machine",
          "memory one kube-apiserver may use before it is OOM-killed", lo=GIB // 4, hi=4096 * GIB, kind=int),
    Param("apiserver_base_memory_bytes", 2 * GIB, "B",
          "assumption: the binary, its informers, caches of small resources and Go's heap headroom",
          "memory of an idle kube-apiserver beside its watch caches, watches and requests", lo=0,
          hi=1024 * GIB, kind=int),
    Param("apiserver_start_seconds", 15.0, "s",
          "assumption: container start, TLS setup, post-start hooks before the caches are filled",
          "time from process start until it accepts connections", lo=0, hi=3600),
    Param("watch_cache_init_parallelism", 8.0, "resources",
          "assumption: each resource's cacher LISTs from etcd in its own goroutine; the large ones (pods, "
          "events, nodes) dominate, so about this many run at once",
          "watch caches that initialise concurrently", lo=1, hi=1000),
    Param("crashloop_backoff_initial", 10.0, "s",
          "kubelet CrashLoopBackOff: 10 s after the first crash (pkg/kubelet/kuberuntime, backOffPeriod)",
          "delay before the first restart after a crash", lo=0, hi=3600),
    Param("crashloop_backoff_max", 300.0, "s", "kubelet CrashLoopBackOff: doubling, capped at 5 min (MaxContainerBackOff)",
          "longest delay between restarts after repeated crashes", lo=0, hi=86_400),
])


def cache_init_seconds(objects: float, nbytes: float, p, parallelism: float | None = None) -> float:
    """Time to fill an instance's watch caches from etcd: every object is ranged from etcd
    (``etcd_range_cpu_per_object`` + its bytes marshalled), sent over the network and
    decoded by the API server; ``watch_cache_init_parallelism`` resources load at once."""
    from ..etcd.range_reads import _costs

    c = _costs(p)
    par = float(parallelism if parallelism is not None else p["watch_cache_init_parallelism"])
    etcd = objects * c["etcd_range_cpu_per_object"] + nbytes * c["protobuf_encode_ns_per_byte"] * NS
    decode = nbytes * float(p["protobuf_decode_ns_per_byte"]) * NS
    wire = nbytes / c["network_bytes_per_s"]
    return (etcd + decode) / par + wire


class InstanceSet:
    """``slots`` API server instances: lifecycle, CPU backlog and memory, as small arrays."""

    def __init__(self, slots: int, cores: float, p, running: int):
        self.k = slots
        self.names = [f"apiserver-{i}" for i in range(slots)]
        self.cores = np.full(slots, float(cores))
        self.state = np.full(slots, ABSENT, dtype=np.int8)
        self.state[:running] = READY
        self.ready_at = np.zeros(slots)
        self.cache_at = np.full(slots, -1e9)           # when the watch caches are (were) filled
        self.ready_before_cache = False                # /readyz says yes before the caches are filled
        self.cache_since = np.full(slots, -1e9)        # the watch caches hold history since this time
        self.accept_at = np.zeros(slots)               # STARTING: accepts connections from this time
        self.restart_at = np.full(slots, np.inf)
        self.drain_at = np.full(slots, np.inf)         # TERMINATING: send 429 + Connection: close from here
        self.exit_at = np.full(slots, np.inf)
        self.crashes = np.zeros(slots, dtype=np.int64)
        self.restarts = np.zeros(slots, dtype=np.int64)
        self.generation = np.zeros(slots, dtype=np.int64)
        self.backlog = np.zeros(slots)
        self.util = np.zeros(slots)                    # smoothed CPU demand / capacity
        self.memory = np.zeros(slots)
        self.limit = float(p["apiserver_memory_limit_bytes"])
        self.base_memory = float(p["apiserver_base_memory_bytes"])
        self.start_seconds = float(p["apiserver_start_seconds"])
        self.backoff0 = float(p["crashloop_backoff_initial"])
        self.backoff_max = float(p["crashloop_backoff_max"])

    # -- what a state allows ----------------------------------------------------------
    @property
    def serving(self) -> np.ndarray:
        """Processes that run (and burn CPU): starting, ready or terminating."""
        return (self.state == STARTING) | (self.state == READY) | (self.state == TERMINATING)

    def accepting(self, t: float) -> np.ndarray:
        """Instances a new TCP connection succeeds to: ready ones, and starting ones whose
        process listens already (a client that bypasses the load balancer may reach them)."""
        return (self.state == READY) | ((self.state == STARTING) & (self.accept_at <= t))

    @property
    def readyz(self) -> np.ndarray:
        """What ``/readyz`` answers: ready, caches filled, not shutting down."""
        return self.state == READY

    def cache_fill(self, t: float) -> np.ndarray:
        """Share of the watch caches filled (1 once filled)."""
        out = np.where(self.serving, 1.0, 0.0)
        filling = ((self.state == STARTING) | (self.state == READY)) & (self.cache_at > t)
        if filling.any():
            span = np.maximum(self.cache_at - self.accept_at, 1e-9)
            out = np.where(filling, np.clip((t - self.accept_at) / span, 0.0, 1.0), out)
        return out

    def cache_ready(self, t: float) -> np.ndarray:
        """Instances that run and whose watch caches are filled at ``t``."""
        return self.serving & (self.cache_at <= t)

    # -- transitions --------------------------------------------------------------------
    def start(self, j: int, t: float, init_seconds: float) -> None:
        """Start the process at ``t``: it accepts connections after ``apiserver_start_seconds``
        and is ready once its caches are filled (or at once, with ``ready_before_cache``)."""
        self.state[j] = STARTING
        self.accept_at[j] = t + self.start_seconds
        self.cache_at[j] = t + self.start_seconds + init_seconds
        self.ready_at[j] = self.accept_at[j] if self.ready_before_cache else self.cache_at[j]
        self.restart_at[j] = np.inf
        self.drain_at[j] = self.exit_at[j] = np.inf
        self.backlog[j] = 0.0
        self.util[j] = 0.0

    def become_ready(self, t: float) -> np.ndarray:
        """Instances whose caches finished filling by ``t``; they become ready."""
        due = np.flatnonzero((self.state == STARTING) & (self.ready_at <= t))
        if due.size:
            self.state[due] = READY
            self.cache_since[due] = self.cache_at[due]
        return due

    def fill_caches_at(self, j: int, t: float) -> None:
        """(Re)schedule when instance ``j``'s watch caches are filled (``inf``: not yet known), for a
        component that models the fill itself. An instance that said ready before its caches were
        filled holds history from the fill on, so a watch broken before it cannot resume there."""
        self.cache_at[j] = t
        if self.state[j] == READY:
            self.cache_since[j] = t

    def stop(self, j: int, t: float, restart_after: float | None) -> None:
        """The process exits at ``t`` (after a graceful shutdown, or at once)."""
        self.state[j] = DOWN
        self.backlog[j] = 0.0
        self.util[j] = 0.0
        self.memory[j] = 0.0
        self.drain_at[j] = self.exit_at[j] = np.inf
        self.cache_since[j] = -1e9
        self.cache_at[j] = np.inf
        self.restart_at[j] = np.inf if restart_after is None else t + restart_after

    def terminate(self, j: int, t: float, shutdown_delay: float, drain_seconds: float) -> None:
        """Graceful shutdown: ``/readyz`` fails now, 429 + Connection: close after the delay, exit
        once in-flight requests drained."""
        self.state[j] = TERMINATING
        self.drain_at[j] = t + shutdown_delay
        self.exit_at[j] = t + shutdown_delay + drain_seconds

    def crash(self, j: int, t: float) -> float:
        """OOM kill at ``t``; returns the CrashLoopBackOff delay before the restart."""
        self.crashes[j] += 1
        delay = min(self.backoff_max, self.backoff0 * 2.0 ** (int(self.crashes[j]) - 1))
        self.stop(j, t, delay)
        return delay

    def due_restarts(self, t: float) -> np.ndarray:
        return np.flatnonzero((self.state == DOWN) & (self.restart_at <= t))

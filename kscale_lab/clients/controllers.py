"""kube-controller-manager and kube-scheduler with standbys, on the control-plane core.

Picture two night shifts at a plant, each with one foreman on duty and two in the break
room. Who is on duty is written in a logbook at the gate (a Lease in ``kube-system``,
:mod:`kscale_lab.clients.leaderelection`). A foreman who has just walked in must first
read every file in the archive before he can give an order (his informers' LIST,
:mod:`kscale_lab.clients.informers`): at 10,000 nodes that is about a million objects for
kube-controller-manager. A **cold** standby reads the archive only once he is on duty
(upstream kube-controller-manager builds its controllers and informers inside the leader
callback); a **warm** standby has read it already and follows every change (kube-scheduler
syncs its informers before it enters the election; Alibaba made kube-controller-manager do
the same). A foreman sent home on purpose may cross his name out of the logbook
(``ReleaseOnCancel``) so the next one need not wait for the lease to run out.

Each replica is one client of the core (:class:`kscale_lab.controlplane.ControlPlane`): its
connection to one API server, its own client class whose load follows its role:

* leader at work: the component's requests (the workload's kube-controller-manager or
  kube-scheduler rates, plus the catch-up after a gap), its watches, a Lease renewal every
  retry period;
* warm standby: the same watches (the informers follow every change: the price of a warm
  standby, with its memory), a Lease GET every 2-4.4 s;
* cold standby: only the Lease GETs;
* starting or warming: the LIST of every object it watches, on the API server it is
  connected to (CPU and memory there, etcd's too when the LISTs go to etcd).

Every Lease request is a request of a stream the lab adds to the core (``leader_election_get``,
``leader_election_update``) and takes that stream's latency on the replica's API server at
that moment (the core's queue wait, service time and etcd time); it fails while the replica
has no connection or when admission rejects it.

The work that waits while no leader works is counted, as upstream's metrics would show it:
ReplicaSets with changes not reconciled (``workqueue_depth{name="replicaset"}``), the pods
they should have created, pods waiting to be scheduled (``scheduler_pending_pods``), and
nodes whose health nobody checked within ``--node-monitor-period``. A new leader works its
backlog off as fast as its client's token bucket (``--kube-api-qps``/``--kube-api-burst``;
kube-scheduler's ``clientConnection.qps``/``burst``) and the scheduler's own pace allow.

Simplified, and said so: a warm-up's duration is computed when it starts, from the serving
API server's queue at that moment (the LIST's own CPU is then added to that server but does
not lengthen the warm-up it belongs to); a replica lists from the API server its connection
holds and is not interrupted if that server goes away; the backlog is a fluid count per tick
(one tick behind the exact handover times); while kube-controller-manager does not work the
pods it should create are not created (the kubelets' status updates continue).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..controlplane import Component
from ..params import Param, ParamSet
from .informers import ResourceList, WarmUp, warm_up
from .leaderelection import JITTER_FACTOR, Candidate, Clock, ElectionConfig, LeaseStore, LeaderElectionRecord
from .workload import ClientClass, Workload

CONTROLLER_PARAMS = ParamSet([
    Param("controller_replicas", 3, "replicas",
          "kubeadm HA: one kube-controller-manager and one kube-scheduler static pod on each of 3 control-plane "
          "nodes (the article's 3 masters)",
          "replicas of each controller component (one leads, the others stand by)", lo=1, hi=9, kind=int),
    Param("kcm_kube_api_qps", 100.0, "requests/s",
          "assumption: large clusters raise kube-controller-manager's --kube-api-qps from its default of 20, "
          "which cannot carry 20 pods/s of creates and deletes; each controller's client has its own token "
          "bucket (the ReplicaSet controller's carries the pod creates and deletes)",
          "requests per second one kube-controller-manager client may send (its token bucket's rate)",
          lo=0.1, hi=100_000, flag="--kube-api-qps",
          plausible=(40.0, 400.0), plausible_source="enough for 20 pods/s of creates and deletes, up to what large clusters set"),
    Param("kcm_kube_api_burst", 100, "requests",
          "assumption: raised with --kube-api-qps (default 30)", "the token bucket's size", lo=1, hi=1_000_000,
          kind=int, flag="--kube-api-burst"),
    Param("scheduler_qps", 50.0, "requests/s", "KubeSchedulerConfiguration clientConnection.qps default 50",
          "requests per second kube-scheduler's client may send", lo=0.1, hi=100_000, flag="clientConnection.qps"),
    Param("scheduler_burst", 100, "requests", "KubeSchedulerConfiguration clientConnection.burst default 100",
          "kube-scheduler's token bucket size", lo=1, hi=1_000_000, kind=int, flag="clientConnection.burst"),
    Param("scheduler_pods_per_s", 100.0, "pods/s",
          "assumption: kube-scheduler places on the order of a hundred pods per second at 5-10k nodes "
          "(sig-scalability's scheduler throughput tests report tens to a few hundred)",
          "pods kube-scheduler can schedule per second when it has a backlog", lo=0.1, hi=100_000,
          plausible=(30.0, 300.0), plausible_source="sig-scalability's scheduler throughput at 5k nodes: tens to a few hundred pods/s"),
    Param("pods_per_replicaset_change", 5.0, "pods",
          "assumption: a Deployment scale or rollout step changes a few pods of one ReplicaSet",
          "pods created (and as many deleted) per ReplicaSet change", lo=1, hi=100_000,
          plausible=(1.0, 20.0), plausible_source="one pod per scale step, up to a large rollout step"),
    Param("kcm_release_on_exit", False, "1",
          "KEP-5366 graceful leader transition: kube-controller-manager's feature gate "
          "ControllerManagerReleaseLeaderElectionLockOnExit (alpha, default off, v1.36; kubernetes/website "
          "PR #54706); PR #126640, which did the same in 2024, was closed",
          "upstream setting only: kube-controller-manager releases its Lease when it is stopped", kind=bool,
          flag="--feature-gates=ControllerManagerReleaseLeaderElectionLockOnExit=true"),
])

KCM, SCHED = "kube-controller-manager", "kube-scheduler"
SHORT = {KCM: "kcm", SCHED: "scheduler"}

#: replica roles (what the core sees of it)
DOWN, STARTING, WARMING, STANDBY, LEADER_WARMING, LEADING = range(6)
ROLE_NAMES = {DOWN: "down", STARTING: "starting", WARMING: "warming", STANDBY: "standby",
              LEADER_WARMING: "leader (warming)", LEADING: "leading"}


@dataclass
class ControllerSpec:
    name: str                      # kube-controller-manager / kube-scheduler
    warm: bool                     # informers synced before the election
    release: bool                  # ReleaseOnCancel
    resources: list[ResourceList]
    qps: float
    burst: float

    @property
    def short(self) -> str:
        return SHORT[self.name]


def add_standby_classes(w: Workload, replicas: int, lease_bytes: float, costs) -> dict:
    """Add the leader-election streams and one client class per extra replica (the
    workload's own kube-controller-manager / kube-scheduler class is replica 0). Returns
    ``{component: [class index per replica]}`` and the stream indexes."""
    from ..costs import NS

    c = costs
    get_cpu = c.request_overhead + lease_bytes * (c.protobuf_decode_ns_per_byte + c.protobuf_encode_ns_per_byte) * NS
    put_cpu = c.request_overhead + lease_bytes * (2 * c.protobuf_decode_ns_per_byte
                                                  + c.protobuf_encode_ns_per_byte) * NS
    from ..etcd.range_reads import ETCD_READ_PARAMS

    quorum = ETCD_READ_PARAMS["etcd_range_base_latency"].default + ETCD_READ_PARAMS["etcd_read_index_latency"].default
    # APF puts these in the leader-election priority level; the article's shedding would keep them too
    s_get = w.add_stream("leader_election_get", get_cpu, extra_latency=quorum, exempt=True)
    s_put = w.add_stream("leader_election_update", put_cpu, extra_latency=c.etcd_put_latency, mutating=True,
                         exempt=True)
    out = {}
    for name in (KCM, SCHED):
        base = w.index(name)
        proto = w.classes[base]
        idx = [base]
        for r in range(1, replicas):
            idx.append(w.add_class(ClientClass(f"{name}-{r}", proto.user_agent, 1, np.zeros(len(w.stream_names)),
                                               proto.watches, proto.watch_bytes_per_s, proto.relist_objects,
                                               proto.relist_bytes, heavy=True)))
        out[name] = idx
    return {"classes": out, "get": s_get, "update": s_put}


@dataclass
class Replica:
    spec: ControllerSpec
    index: int
    cls: int
    client: int
    role: int = LEADING
    generation: int = 0
    candidate: Candidate | None = None
    synced: bool = True
    warm_from: float = math.nan
    warm_until: float = math.nan
    warm: WarmUp | None = None
    instance: int = -1
    list_charged: float = 0.0          # share of its LISTs' API-server work already charged

    @property
    def name(self) -> str:
        return f"{self.spec.name}-{self.index}"

    @property
    def identity(self) -> str:
        return f"{self.name}_{self.generation}"


@dataclass
class Gap:
    component: str
    event: str
    stopped_at: float
    old_leader: str
    released: bool = False
    acquired_at: float = math.nan
    new_leader: str = ""
    new_was_warm: bool = False
    first_work_at: float = math.nan
    warmup_s: float = 0.0
    list_apiserver_cpu_s: float = 0.0      # the LISTs the new leader waited for (a cold start)


class ControllerFailover(Component):
    """Leader election, warm-ups and work queues of kube-controller-manager and kube-scheduler."""

    name = "controller-failover"

    def __init__(self, p: dict, specs: list[ControllerSpec], layout: dict, seed: int = 0):
        self.p = p
        self.specs = {s.name: s for s in specs}
        self.layout = layout
        self.cfg = {s.name: ElectionConfig.from_params(p, release_on_cancel=s.release) for s in specs}
        self.rng = np.random.default_rng([int(seed), 8])
        self.skew = float(p.get("clock_skew", 0.0))
        self.replicas: dict[str, list[Replica]] = {}
        self.stores = {s.name: LeaseStore(f"kube-system/{s.name}") for s in specs}
        self.gaps: list[Gap] = []
        self._open_gap: dict[str, Gap | None] = {s.name: None for s in specs}
        self._working: dict[str, list[list[float]]] = {s.name: [] for s in specs}
        self._role_log: list[tuple] = []
        self._last_role: dict = {}
        self._pending: dict[str, tuple[str, bool]] = {}
        self._applied: dict[int, tuple] = {}
        self._nbytes = {s.name: float(sum(r.nbytes for r in s.resources)) for s in specs}
        self.candidates: dict[str, list[Candidate]] = {s.name: [] for s in specs}
        self.list_events: list[dict] = []

    # ------------------------------------------------------------------------------------
    def attach(self, cp) -> None:
        self.cp = cp
        self.env = cp.engine.env
        p = self.p
        self.base = {}
        cls_of = self.layout["classes"]
        first_client = {}
        for c, pos in zip(*np.unique(cp.cn.cls, return_index=True)):
            first_client[int(c)] = int(pos)
        for name, spec in self.specs.items():
            lead = cls_of[name][0]
            k = cp.w.classes[lead]
            self.base[name] = {"rates": cp.rates[lead].copy(), "watch_bytes": k.watch_bytes_per_s,
                               "watches": k.watches, "relist_bytes": k.relist_bytes}
            reps = []
            for r, c in enumerate(cls_of[name]):
                rep = Replica(spec, r, c, first_client[c], role=LEADING if r == 0 else STANDBY)
                rep.synced = spec.warm or r == 0
                reps.append(rep)
            self.replicas[name] = reps
        s_get, s_up = self.layout["get"], self.layout["update"]
        self.s_get, self.s_up = s_get, s_up
        steps = cp.steps
        self.rec = {k: np.zeros(steps) for k in (
            "kcm_leader", "scheduler_leader", "kcm_working", "scheduler_working", "workqueue_depth_replicaset",
            "pods_not_created", "scheduler_pending_pods", "nodes_not_health_checked", "list_apiserver_cores",
            "list_bytes_per_s", "list_etcd_cores", "standby_memory_bytes", "standby_watch_cores",
            "controller_memory_bytes")}
        # the few: one election per component, already settled at t=0 (replica 0 renews)
        rp = float(p["leader_elect_retry_period"])
        for name, reps in self.replicas.items():
            store = self.stores[name]
            lead = reps[0]
            lead.generation = 1
            store.create(0.0, lead.identity, LeaderElectionRecord(lead.identity, self.cfg[name].lease_duration,
                                                                  0.0, 0.0, 0))
            for rep in reps:
                self._log(0.0, rep)
                if rep.index:
                    rep.generation = 1
                self._start_candidate(rep, delay=0.0 if rep.index == 0 else float(self.rng.random()) * rp,
                                      renew_phase=float(self.rng.random()) * rp if rep.index == 0 else None)
        self.tokens = {KCM: float(p["kcm_kube_api_burst"]), SCHED: float(p["scheduler_burst"])}
        self.q = {"rs_dirty": 0.0, "pods_pending": 0.0}
        self.nlc_last = 0.0
        self._created_last = float(p["pod_churn"])
        self._bound_last = float(p["pod_churn"])
        self._kcm_f, self._sched_f = 1.0, 1.0
        self._rs_writes = 2.0 * float(p["pod_churn"])
        self._set_loads()

    # -- candidates -----------------------------------------------------------------------
    def _transport(self, rep: Replica):
        cp = self.cp

        def tr(op):
            j = int(cp.cn.conn[rep.client])
            if j < 0 or not cp.inst.serving[j]:
                return 0.001, False
            s = self.s_get if op == "get" else self.s_up
            lat = float(cp.lat[j, s])
            rej = getattr(cp, "rej", None)
            if rej is not None and rej is not cp._zeros_ks and rej[j, s] > 0 and self.rng.random() < rej[j, s]:
                return 0.001, False
            return lat, True
        return tr

    def _start_candidate(self, rep: Replica, delay: float = 0.0, renew_phase: float | None = None) -> None:
        name = rep.spec.name
        rate = 1.0 if rep.index == 0 else 1.0 + self.skew
        rep.candidate = Candidate(self.env, rep.identity, self.stores[name], self.cfg[name], self._transport(rep),
                                  self.rng, Clock(rate), on_started_leading=self._started(rep),
                                  on_stopped_leading=self._stopped(rep), start_delay=delay, renew_phase=renew_phase)
        self.candidates[name].append(rep.candidate)
        if rep.index == 0 and rep.generation == 1 and renew_phase is not None:
            # the t=0 leader: it already holds the lease (the record above names it)
            rep.candidate.observed, rep.candidate.observed_rv = self.stores[name].get()
            rep.candidate.observed_time = 0.0

    def _started(self, rep: Replica):
        def cb(cand, t):
            if cand is not rep.candidate:
                return
            name = rep.spec.name
            gap = self._open_gap[name]
            if gap is not None:
                gap.acquired_at, gap.new_leader, gap.new_was_warm = t, rep.name, rep.synced
            if not self._working[name]:             # the leader at t=0: it was already at work
                rep.role = LEADING
                self._working[name].append([0.0, math.inf])
            elif rep.synced:
                rep.role = LEADING
                self._begin_work(rep, t + float(self.p["first_work_item_seconds"]))
            else:
                rep.role = LEADER_WARMING
                self.env.process(self._cold_start(rep, rep.generation))
            self._log(t, rep)
        return cb

    def _stopped(self, rep: Replica):
        def cb(cand, t, reason):
            if cand is not rep.candidate:
                return
            event, released = self._pending.pop(rep.spec.name, (reason, False))
            self._end_work(rep, t, event, released)
            if reason == "lost":                    # OnStoppedLeading: the process exits, the kubelet restarts it
                rep.role = DOWN
                rep.synced = False
                self._log(t, rep)
                self.env.process(self._restart(rep, float(self.p["crashloop_backoff_initial"])))
        return cb

    def _begin_work(self, rep: Replica, at: float) -> None:
        name = rep.spec.name
        self._working[name].append([at, math.inf])
        gap = self._open_gap[name]
        if gap is not None:
            gap.first_work_at = at
            self.gaps.append(gap)
            self._open_gap[name] = None

    def _end_work(self, rep: Replica, t: float, event: str, released: bool) -> None:
        name = rep.spec.name
        w = self._working[name]
        if w and w[-1][1] == math.inf:
            w[-1][1] = max(t, w[-1][0])
        if self._open_gap[name] is None:
            self._open_gap[name] = Gap(name, event, t, rep.name, released)

    def _cold_start(self, rep: Replica, gen: int):
        yield from self._warm(rep)
        if rep.generation != gen or rep.candidate is None or not rep.candidate.leading:
            return
        gap = self._open_gap[rep.spec.name]
        if gap is not None and rep.warm is not None:
            gap.warmup_s = rep.warm.seconds
            gap.list_apiserver_cpu_s = rep.warm.apiserver_cpu
        rep.role = LEADING
        self._log(self.env.now, rep)
        self._begin_work(rep, self.env.now + float(self.p["first_work_item_seconds"]))

    def _warm(self, rep: Replica):
        """LIST every object the replica watches from the API server its connection holds."""
        cp = self.cp
        while cp.cn.conn[rep.client] < 0 or not cp.inst.serving[int(cp.cn.conn[rep.client])]:
            yield self.env.timeout(cp.dt)
        j = int(cp.cn.conn[rep.client])
        spec = rep.spec
        wait = float(cp.inst.backlog[j] / cp.inst.cores[j])
        wu = warm_up(spec.resources, self.p, qps=spec.qps, burst=spec.burst, queue_wait=wait)
        rep.warm, rep.instance, rep.list_charged = wu, j, 0.0
        rep.warm_from, rep.warm_until = self.env.now, self.env.now + wu.seconds
        self.list_events.append({"time": self.env.now, "component": spec.name, "replica": rep.name,
                                 "instance": cp.inst.names[j], "objects": wu.objects, "bytes": wu.bytes,
                                 "requests": wu.requests, "seconds": wu.seconds, "bound": wu.bound,
                                 "apiserver_cpu_s": wu.apiserver_cpu, "etcd_cpu_s": wu.etcd_cpu,
                                 "source": wu.source})
        yield self.env.timeout(wu.seconds)
        rep.synced = True

    def _boot(self, rep: Replica, gen: int):
        """A fresh process: start, (warm: list, then) enter the election."""
        yield self.env.timeout(float(self.p["controller_start_seconds"]))
        if rep.generation != gen:
            return
        if rep.spec.warm:
            rep.role = WARMING
            self._log(self.env.now, rep)
            yield from self._warm(rep)
            if rep.generation != gen:
                return
        rep.role = STANDBY
        self._log(self.env.now, rep)
        self._start_candidate(rep)

    def _restart(self, rep: Replica, after: float):
        gen = rep.generation
        yield self.env.timeout(after)
        if rep.generation != gen:
            return
        self.start(rep)

    # -- what the scripts do --------------------------------------------------------------
    def start(self, rep: Replica) -> None:
        rep.generation += 1
        rep.synced = False
        rep.warm = None
        rep.candidate = None
        rep.role = STARTING
        self._log(self.env.now, rep)
        self.env.process(self._boot(rep, rep.generation))

    def stop(self, rep: Replica, how: str, event: str) -> None:
        """Stop a replica: ``how`` is "cancel" (SIGTERM: the run context is cancelled, the
        Lease released if configured) or "crash" (SIGKILL, OOM: nothing is released)."""
        cand = rep.candidate
        if cand is not None and cand.alive:
            if cand.leading:
                self._pending[rep.spec.name] = (event, how == "cancel" and rep.spec.release)
            getattr(cand, how)()                # SimPy delivers it at this instant; on_stopped follows
        rep.generation += 1                     # a warm-up in progress is abandoned
        rep.synced = False
        rep.role = DOWN
        self._log(self.env.now, rep)

    def rollout(self, at: float, restart_after: float, pause: float, name: str = "upgrade"):
        """Upgrade the control-plane nodes one at a time: on node i, kube-controller-manager and
        kube-scheduler are stopped (SIGTERM), start again ``restart_after`` seconds later (the new
        image), and the next node follows ``pause`` seconds after both are ready."""
        env, cp = self.env, self.cp

        def proc():
            yield env.timeout(at)
            cp.events.event(env.now, f"{name} begins")
            n = max(len(r) for r in self.replicas.values())
            for i in range(n):
                reps = [r[i] for r in self.replicas.values() if i < len(r)]
                for rep in reps:
                    self.stop(rep, "cancel", name)
                    cp.events.event(env.now, "stopped", replica=rep.name)
                yield env.timeout(restart_after)
                for rep in reps:
                    self.start(rep)
                while not all(self.ready(r) for r in reps):
                    yield env.timeout(cp.dt)
                yield env.timeout(pause)
            cp.events.event(env.now, f"{name} ends")

        return cp.engine._start(proc())

    def crash(self, at: float, components, restart_after: float, name: str = "crash"):
        """At ``at`` the current leader of each of ``components`` is killed; the kubelet restarts
        it ``restart_after`` seconds later (CrashLoopBackOff)."""
        env, cp = self.env, self.cp

        def proc():
            yield env.timeout(at)
            cp.events.event(env.now, f"{name} begins")
            victims = [self.leader(c) for c in components]
            victims = [v for v in victims if v is not None]
            for rep in victims:
                self.stop(rep, "crash", name)
                cp.events.event(env.now, "killed", replica=rep.name)
            yield env.timeout(restart_after)
            for rep in victims:
                if rep.role == DOWN:
                    self.start(rep)
            cp.events.event(env.now, f"{name} ends")

        return cp.engine._start(proc())

    def leader(self, name: str) -> Replica | None:
        for rep in self.replicas[name]:
            if rep.candidate is not None and rep.candidate.leading:
                return rep
            if rep.role == LEADER_WARMING:
                return rep
        return None

    def ready(self, rep: Replica) -> bool:
        """A restarted replica is ready (its /healthz and readiness) once it is in the election
        (and, warm, synced)."""
        return rep.role in (STANDBY, LEADING, LEADER_WARMING)

    # -- bookkeeping --------------------------------------------------------------------------
    def _log(self, t: float, rep: Replica) -> None:
        key = (rep.spec.name, rep.index)
        if self._last_role.get(key) == rep.role:
            return
        self._last_role[key] = rep.role
        self._role_log.append((t, rep.spec.name, rep.index, rep.role))

    def _working_fraction(self, name: str, a: float, b: float) -> float:
        tot = 0.0
        for s, e in reversed(self._working[name]):
            if e <= a:
                break
            tot += max(0.0, min(e, b) - max(s, a))
        return tot / (b - a)

    def _last_working_time(self, name: str, a: float, b: float) -> float | None:
        for s, e in reversed(self._working[name]):
            if e <= a:
                return None
            if s < b:
                return min(e, b)
        return None

    # ------------------------------------------------------------------------------------
    # the tick
    # ------------------------------------------------------------------------------------
    def before_tick(self, cp, t0: float, t1: float) -> None:
        i = cp._i
        p = self.p
        dt = cp.dt
        if t0 > 0:
            a = t0 - dt
            fk = self._working_fraction(KCM, a, t0)
            fs = self._working_fraction(SCHED, a, t0)
            self._work(a, t0, fk, fs)
            self._kcm_f, self._sched_f = fk, fs
        rec = self.rec
        rec["kcm_working"][i] = self._kcm_f
        rec["scheduler_working"][i] = self._sched_f
        for name, key in ((KCM, "kcm_leader"), (SCHED, "scheduler_leader")):
            ld = self.leader(name)
            rec[key][i] = -1 if ld is None else ld.index
        rec["workqueue_depth_replicaset"][i] = self.q["rs_dirty"]
        rec["pods_not_created"][i] = self.q["rs_dirty"] * float(p["pods_per_replicaset_change"])
        rec["scheduler_pending_pods"][i] = self.q["pods_pending"]
        rec["nodes_not_health_checked"][i] = (float(p["nodes"]) if t0 - self.nlc_last > float(p["node_monitor_period"])
                                              else 0.0)
        self._set_loads()

    def _work(self, a: float, b: float, fk: float, fs: float) -> None:
        """The work queues over [a, b): what arrived, what the leaders processed."""
        p = self.p
        dt = b - a
        churn = float(p["pod_churn"])
        k = float(p["pods_per_replicaset_change"])
        # kube-controller-manager: ReplicaSet syncs (k creates + k deletes each), token bucket
        qk = float(p["kcm_kube_api_qps"])
        self.tokens[KCM] = min(float(p["kcm_kube_api_burst"]), self.tokens[KCM] + qk * dt)
        self.q["rs_dirty"] += churn / k * dt
        syncs = 0.0
        if fk > 0:
            syncs = min(self.q["rs_dirty"], self.tokens[KCM] / (2.0 * k))
            self.tokens[KCM] -= syncs * 2.0 * k
            self.q["rs_dirty"] -= syncs
        created = syncs * k
        self._rs_writes = 2.0 * created / dt
        last = self._last_working_time(KCM, a, b)
        if last is not None:
            self.nlc_last = max(self.nlc_last, last)
        # kube-scheduler: binds, token bucket and its own pace
        qs = float(p["scheduler_qps"])
        self.tokens[SCHED] = min(float(p["scheduler_burst"]), self.tokens[SCHED] + qs * dt)
        self.q["pods_pending"] += created
        bound = 0.0
        if fs > 0:
            bound = min(self.q["pods_pending"], self.tokens[SCHED], fs * float(p["scheduler_pods_per_s"]) * dt)
            self.tokens[SCHED] -= bound
            self.q["pods_pending"] -= bound
        self._bound_last = bound / dt

    def _set_loads(self) -> None:
        """Each replica's client class gets the load of its role (recomputed when it changes)."""
        cp = self.cp
        for name, reps in self.replicas.items():
            f = self._kcm_f if name == KCM else self._sched_f
            extra = self._rs_writes if name == KCM else self._bound_last
            for rep in reps:
                role = rep.role
                key = (role, rep.synced, f, extra) if role == LEADING else (role, rep.synced)
                last = self._applied.get(rep.cls)
                if last is not None and last[0] == key:
                    continue
                r, watches, wbytes, relist = self._load(name, rep, f, extra)
                if last is not None and last[1] == (watches, wbytes, relist):
                    cp.set_class_load(rep.cls, rates=r)
                else:
                    cp.set_class_load(rep.cls, rates=r, watch_bytes_per_s=wbytes, watches=watches,
                                      relist_bytes=relist)
                self._applied[rep.cls] = (key, (watches, wbytes, relist))

    def _load(self, name: str, rep: Replica, f: float, extra: float):
        cp = self.cp
        base = self.base[name]
        rp = float(self.p["leader_elect_retry_period"])
        r = np.zeros_like(base["rates"])
        watches, wbytes, relist = 0.0, 0.0, 0.0
        role = rep.role
        if role in (LEADING, LEADER_WARMING):
            r[self.s_up] = 1.0 / rp
        elif role == STANDBY:
            r[self.s_get] = 1.0 / (rp * (1.0 + JITTER_FACTOR / 2.0))
        if role == LEADING:
            r = r + base["rates"] * f
            if name == KCM:            # the ReplicaSet controller's pod writes follow its backlog
                s_write = cp.w.stream("controller_write")
                churn = float(self.p["pod_churn"])
                r[s_write] = max(0.0, base["rates"][s_write] - 2.0 * churn) * f + extra
            else:
                r[cp.w.stream("pod_bind")] = extra
        if role in (LEADING, STANDBY, LEADER_WARMING) and rep.synced:
            watches, wbytes, relist = base["watches"], base["watch_bytes"], base["relist_bytes"]
        return r, watches, wbytes, relist

    def _lists_now(self, t0: float):
        """Warm-ups whose LISTs the API servers serve during [t0, t0 + dt), with the share of
        each LIST's API-server work that falls in that tick."""
        dt = self.cp.dt
        for reps in self.replicas.values():
            for rep in reps:
                wu = rep.warm
                if wu is None or rep.instance < 0:
                    continue
                hold = max(wu.apiserver_hold_seconds, 1e-9)
                a, b = rep.warm_from, rep.warm_from + hold
                if a >= t0 + dt or b <= t0 - dt:
                    continue
                # what falls before t0 + dt and was not charged yet (a LIST that began between two
                # ticks is charged from the next one)
                share = max(0.0, min(1.0, (min(b, t0 + dt) - a) / hold) - rep.list_charged)
                if share > 0 or a < t0 + dt <= b:
                    rep.list_charged += share
                    yield rep, wu, share

    def extra_cpu(self, cp, adm, t0: float):
        out = None
        i = cp._i
        tot_api = tot_etcd = tot_bytes = 0.0
        for rep, wu, share in self._lists_now(t0):
            if out is None:
                out = np.zeros(cp.k)
            out[rep.instance] += wu.apiserver_cpu * share
            tot_api += wu.apiserver_cpu * share / cp.dt
            tot_etcd += wu.etcd_cpu * share / cp.dt
            tot_bytes += wu.bytes * share / cp.dt
        self.rec["list_apiserver_cores"][i] = tot_api
        self.rec["list_etcd_cores"][i] = tot_etcd
        self.rec["list_bytes_per_s"][i] = tot_bytes
        return out

    def memory(self, cp, adm, t0: float):
        """The API server holds a LIST's response while it builds and sends it."""
        out = None
        for reps in self.replicas.values():
            for rep in reps:
                wu = rep.warm
                if wu is None or rep.instance < 0:
                    continue
                if rep.warm_from < t0 + cp.dt and rep.warm_from + wu.apiserver_hold_seconds > t0:
                    if out is None:
                        out = np.zeros(cp.k)
                    out[rep.instance] += wu.apiserver_memory
        return out

    def after_tick(self, cp, t0: float, t1: float) -> None:
        i = cp._i
        factor = float(self.p["object_memory_factor"])
        standby_mem = standby_watch = ctrl_mem = 0.0
        for name, reps in self.replicas.items():
            nbytes = self._nbytes[name]
            for rep in reps:
                held = nbytes * factor if rep.synced and rep.role != DOWN else 0.0
                if rep.role == WARMING or (rep.role == LEADER_WARMING and not rep.synced):
                    if rep.warm is not None and rep.warm.seconds > 0:
                        held = nbytes * factor * min(1.0, (t0 - rep.warm_from) / rep.warm.seconds) + nbytes
                ctrl_mem += held
                if rep.role == STANDBY:
                    standby_mem += held
                    if rep.synced:
                        standby_watch += float(cp.watch_cpu[rep.cls])
        self.rec["standby_memory_bytes"][i] = standby_mem
        self.rec["standby_watch_cores"][i] = standby_watch
        self.rec["controller_memory_bytes"][i] = ctrl_mem

    # ------------------------------------------------------------------------------------
    # results
    # ------------------------------------------------------------------------------------
    def series(self, n: int) -> dict:
        return {k: v[:n].copy() for k, v in self.rec.items()}

    def failovers(self, until: float):
        import pandas as pd

        rows = []
        gaps = list(self.gaps) + [g for g in self._open_gap.values() if g is not None]
        for g in gaps:
            first = g.first_work_at
            rows.append({"component": g.component, "event": g.event, "stopped_at": g.stopped_at,
                         "released": g.released, "old_leader": g.old_leader, "new_leader": g.new_leader,
                         "new_was_warm": g.new_was_warm,
                         "lease_taken_s": g.acquired_at - g.stopped_at if math.isfinite(g.acquired_at) else math.inf,
                         "warmup_s": g.warmup_s, "list_apiserver_cpu_s": g.list_apiserver_cpu_s,
                         "interruption_s": first - g.stopped_at if math.isfinite(first) else math.inf,
                         "first_work_at": first})
        cols = ["component", "event", "stopped_at", "released", "old_leader", "new_leader", "new_was_warm",
                "lease_taken_s", "warmup_s", "list_apiserver_cpu_s", "interruption_s", "first_work_at"]
        return pd.DataFrame(rows, columns=cols).sort_values("stopped_at", kind="stable").reset_index(drop=True)

    def timeline(self, until: float):
        """One row per replica and span of a role (for the lease-holder timeline)."""
        import pandas as pd

        rows = []
        last: dict = {}
        for t, name, idx, role in self._role_log:
            key = (name, idx)
            if key in last:
                t_prev, r_prev = last[key]
                if t > t_prev:
                    rows.append({"component": name, "replica": idx, "role": ROLE_NAMES[r_prev],
                                 "start": t_prev, "end": t})
            last[key] = (t, role)
        for (name, idx), (t_prev, r_prev) in last.items():
            if until > t_prev:
                rows.append({"component": name, "replica": idx, "role": ROLE_NAMES[r_prev], "start": t_prev,
                             "end": until})
        for name, reps in self.replicas.items():
            for rep in reps:
                if (name, rep.index) not in last:
                    rows.append({"component": name, "replica": rep.index, "role": ROLE_NAMES[rep.role],
                                 "start": 0.0, "end": until})
        df = pd.DataFrame(rows, columns=["component", "replica", "role", "start", "end"])
        return df.sort_values(["component", "replica", "start"], kind="stable").reset_index(drop=True)

    def leadership(self, until: float) -> dict:
        """Every leadership span (real time) per component: [start, end, identity]."""
        return {name: sorted([a, min(b, until), c.name] for c in cands for a, b in c.led)
                for name, cands in self.candidates.items()}

    def max_overlap(self, until: float) -> float:
        """Longest time two replicas of one component both believed they led (0 = never)."""
        worst = 0.0
        for spans in self.leadership(until).values():
            for i in range(len(spans)):
                for j in range(i + 1, len(spans)):
                    if spans[j][0] >= spans[i][1]:
                        continue
                    if spans[i][2] != spans[j][2]:
                        worst = max(worst, min(spans[i][1], spans[j][1]) - spans[j][0])
        return worst

    def summary(self, cp) -> dict:
        return {}

"""API Priority and Fairness (KEP-1040): classify, share, queue fairly, dispatch by seats.

Picture a post office with counters in several halls (the *priority levels*). A
doorman reads each customer's badge and errand against a list of rules, checked in
order (the *FlowSchemas*, by ``matchingPrecedence``): node agents renewing their lease go
to the node hall, the controller-manager to the workload-high hall, ordinary service
accounts to workload-low, anyone else to global-default. Within a hall, customers who
belong together form a *flow* (one per user, or per namespace). Each hall owns a number
of counter seats, a share of the building's total (``nominalConcurrencyShares``); an
idle hall lends some of its seats (``lendablePercent``) to a busy one. A big errand (a
LIST of 200,000 pods) takes up to ten seats at once (the *work estimator*). When every
seat is taken, a customer waits in one of the hall's queues: which queue is decided by
**shuffle sharding**: the flow's name is hashed into a *hand* of ``handSize`` queues out
of ``queues``, and the customer joins the shortest queue of that hand, so a noisy flow
can only fill its own hand, and two flows rarely share their whole hand. A free seat
goes to the queue whose head would *finish first* in a virtual world where every busy
queue progresses at the same rate (**fair queuing** by virtual finish time), so equal
flows get equal service. A queue longer than ``queueLengthLimit`` refuses newcomers with
**429**, and a customer who waits longer than a quarter of the request timeout (15 s)
is sent away with 429 too.

Two zooms of the same algorithm:

* :class:`QueueSet` and :class:`DiscreteAPF`: the exact dispatcher for a few hundred
  requests, event by event (virtual time ``R``, each queue's ``nextDispatchR``, the
  seats in use, the round-robin start index, the 15 s limit checked when a request
  arrives at a queue, borrowing every 10 s). The property tests and the notebook's
  exercises run this one.
* :class:`FluidAPF` and :class:`APF` (a :class:`~kscale_lab.controlplane.Component`):
  the same rules per tick over *flow groups* (10,000 kubelets are 10,000 equal flows in
  one level; equal flows share equally, so a group needs one number per instance):
  seats held by executing requests, max-min fair sharing of the free seats among flows
  (what fair queuing converges to), a FIFO backlog by age (15 s limit), the hand's queue
  capacity, the same work estimator and the same borrowing. ``tests/test_apf.py`` holds
  the two together on a case both can run. With :class:`APF` on, the core's
  max-inflight filter is off: upstream's ServerCL is the sum of the two inflight flags.

Mirrors (read, not copied): kubernetes/kubernetes
``staging/src/k8s.io/apiserver/pkg/util/flowcontrol/fairqueuing/queueset/queueset.go``
(virtual time, dispatch, anti-windup, the wait limit), ``.../util/shufflesharding``
(dealing a hand), ``.../flowcontrol/apf_controller.go`` (nominal, lendable and borrowing
limits, seat-demand smoothing, ``computeConcurrencyAllocation``),
``.../flowcontrol/request/list_work_estimator.go`` and ``mutating_work_estimator.go``
(seats), ``pkg/apis/flowcontrol/bootstrap/default.go`` (the suggested configuration).
The article (section 7) had only max-inflight and added User-Agent limits; upstream
rejected User-Agent matching (PRs #115992, #116322, #132331): the string is chosen by
the client. APF keys flows on the authenticated identity instead.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import ParameterError
from ..controlplane import Component
from ..params import Param, ParamSet

# --------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------

APF_PARAMS = ParamSet([
    Param("apf_request_wait_limit", 15.0, "s",
          "kube-apiserver: WithPriorityAndFairness(..., RequestTimeout/4); --request-timeout 60 s "
          "(staging/src/k8s.io/apiserver/pkg/server/config.go)",
          "longest a request may wait in an APF queue before it is rejected with 429", lo=0.1, hi=3600),
    Param("apf_objects_per_seat", 100.0, "objects",
          "APF work estimator: objectsPerSeat = 100 (flowcontrol/request/config.go)",
          "objects a LIST processes per seat it occupies", lo=1, hi=1e6),
    Param("apf_max_seats", 10, "seats",
          "APF work estimator: maximumSeatsLimit = 10 (env APF_MAX_SEATS_LIMIT overrides it)",
          "most seats one request may occupy", lo=1, hi=1000, kind=int),
    Param("apf_watches_per_seat", 10.0, "watches",
          "APF work estimator: watchesPerSeat = 10 (flowcontrol/request/config.go)",
          "watchers notified per final seat of a mutating request", lo=1, hi=1e6),
    Param("apf_event_additional_duration", 0.005, "s",
          "APF work estimator: eventAdditionalDuration = 5 ms (flowcontrol/request/config.go)",
          "time a mutating request keeps its final seats while its watchers are notified", lo=0, hi=10),
    Param("apf_borrowing_period", 10.0, "s",
          "apf_controller.go: borrowingAdjustmentPeriod = 10 s",
          "how often each priority level's current concurrency limit is recomputed from its seat demand",
          lo=0.5, hi=3600),
    Param("apf_estimated_service", 0.003, "s",
          "queueset.go: estimatedServiceDuration = 3 ms (the virtual world's guess, corrected at finish)",
          "service time fair queuing assumes for a request until it finishes", lo=1e-6, hi=10),
])

#: apf_controller.go: seatDemandSmoothingCoefficient (half-life of 5 minutes at 10 s periods)
SEAT_DEMAND_SMOOTHING = 0.977
#: shufflesharding.go: a hand must fit in a 60-bit hash (log2(queues) x handSize <= 60)
MAX_HASH_BITS = 60

# --------------------------------------------------------------------------------------
# Configuration objects (flowcontrol.apiserver.k8s.io/v1, in brief)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriorityLevel:
    """A PriorityLevelConfiguration. ``queues == 0`` is ``limitResponse: Reject``."""

    name: str
    nominal_concurrency_shares: int = 30
    lendable_percent: int = 0
    borrowing_limit_percent: int | None = None
    queues: int = 64
    hand_size: int = 6
    queue_length_limit: int = 50
    exempt: bool = False

    def validate(self) -> None:
        where = f"priority level {self.name!r}"
        if self.nominal_concurrency_shares < 0:
            raise ParameterError("nominalConcurrencyShares", f"of {where} must be >= 0; got "
                                                             f"{self.nominal_concurrency_shares}")
        if not 0 <= self.lendable_percent <= 100:
            raise ParameterError("lendablePercent", f"of {where} must be in [0, 100]; got {self.lendable_percent}")
        if self.borrowing_limit_percent is not None and self.borrowing_limit_percent < 0:
            raise ParameterError("borrowingLimitPercent", f"of {where} must be >= 0 or None; got "
                                                          f"{self.borrowing_limit_percent}")
        if self.exempt or self.queues == 0:
            return
        validate_shuffle_sharding(self.queues, self.hand_size, where)
        if self.queue_length_limit < 1:
            raise ParameterError("queueLengthLimit", f"of {where} must be >= 1; got {self.queue_length_limit}")


@dataclass(frozen=True)
class Subject:
    kind: str            # "User", "Group" or "ServiceAccount"
    name: str            # "*" matches every name
    namespace: str = ""  # for a ServiceAccount

    def matches(self, user: str, groups: Sequence[str]) -> bool:
        if self.kind == "User":
            return self.name in ("*", user)
        if self.kind == "Group":
            return self.name == "*" or self.name in groups
        prefix = f"system:serviceaccount:{self.namespace}:"
        return user.startswith(prefix) and self.name in ("*", user[len(prefix):])


@dataclass(frozen=True)
class ResourceRule:
    verbs: tuple = ("*",)
    resources: tuple = ("*",)
    namespaces: tuple = ("*",)
    cluster_scope: bool = True

    def matches(self, verb: str, resource: str, namespace: str) -> bool:
        if "*" not in self.verbs and verb not in self.verbs:
            return False
        if "*" not in self.resources and resource not in self.resources:
            return False
        if namespace == "":
            return self.cluster_scope
        return "*" in self.namespaces or namespace in self.namespaces


@dataclass(frozen=True)
class FlowSchema:
    name: str
    priority_level: str
    matching_precedence: int
    distinguisher: str | None       # "ByUser", "ByNamespace" or None (one flow)
    subjects: tuple
    rules: tuple = (ResourceRule(),)

    def matches(self, r: "RequestAttributes") -> bool:
        return (any(s.matches(r.user, r.groups) for s in self.subjects)
                and any(rule.matches(r.verb, r.resource, r.namespace) for rule in self.rules))

    def flow_distinguisher(self, r: "RequestAttributes") -> str:
        if self.distinguisher == "ByUser":
            return r.user
        if self.distinguisher == "ByNamespace":
            return r.namespace
        return ""


@dataclass(frozen=True)
class RequestAttributes:
    """Who asks (authenticated user and groups) and what (verb, resource, namespace)."""

    user: str
    groups: tuple
    verb: str
    resource: str
    namespace: str = ""


def _groups(*names):
    return tuple(Subject("Group", n) for n in names)


def _sa(namespace, name="*"):
    return Subject("ServiceAccount", name, namespace)


#: Suggested and mandatory priority levels of a current kube-apiserver (brief mechanisms.md
#: section 3; NCS, queues / handSize / queueLengthLimit from ``kubectl get
#: prioritylevelconfigurations`` on v1 clusters; the lendable percentages are the brief's
#: [memory] values except global-default's).
BOOTSTRAP_LEVELS = (
    PriorityLevel("exempt", 0, 0, None, 0, 0, 0, exempt=True),
    PriorityLevel("system", 30, 33, None, 64, 6, 50),
    PriorityLevel("node-high", 40, 25, None, 64, 6, 50),
    PriorityLevel("leader-election", 10, 0, None, 16, 4, 50),
    PriorityLevel("workload-high", 40, 50, None, 128, 6, 50),
    PriorityLevel("workload-low", 100, 90, None, 128, 6, 50),
    PriorityLevel("global-default", 20, 50, None, 128, 6, 50),
    PriorityLevel("catch-all", 5, 0, None, 0, 0, 0),
)

_LEASES = ResourceRule(("get", "create", "update"), ("leases", "endpoints", "configmaps"), ("kube-system",), False)
#: Suggested and mandatory FlowSchemas (bootstrap/default.go), in brief: subjects and rules
#: reduced to what the lab's clients send.
BOOTSTRAP_FLOW_SCHEMAS = (
    FlowSchema("exempt", "exempt", 1, None, _groups("system:masters")),
    FlowSchema("system-leader-election", "leader-election", 100, "ByUser",
               (Subject("User", "system:kube-controller-manager"), Subject("User", "system:kube-scheduler"),
                _sa("kube-system")), (_LEASES,)),
    FlowSchema("endpoint-controller", "workload-high", 150, "ByUser",
               (Subject("User", "system:kube-controller-manager"), _sa("kube-system", "endpoint-controller")),
               (ResourceRule(("get", "create", "update"), ("endpoints", "endpointslices")),)),
    FlowSchema("workload-leader-election", "leader-election", 200, "ByUser", (_sa("kube-system"),),
               (ResourceRule(("get", "create", "update"), ("leases", "endpoints", "configmaps")),)),
    FlowSchema("system-node-high", "node-high", 400, "ByUser", _groups("system:nodes"),
               (ResourceRule(("*",), ("nodes", "nodes/status"), (), True),
                ResourceRule(("*",), ("leases",), ("kube-node-lease",), False))),
    FlowSchema("system-nodes", "system", 500, "ByUser", _groups("system:nodes")),
    FlowSchema("kube-controller-manager", "workload-high", 800, "ByNamespace",
               (Subject("User", "system:kube-controller-manager"),)),
    FlowSchema("kube-scheduler", "workload-high", 800, "ByNamespace", (Subject("User", "system:kube-scheduler"),)),
    FlowSchema("kube-system-service-accounts", "workload-high", 900, "ByNamespace", (_sa("kube-system"),)),
    FlowSchema("service-accounts", "workload-low", 9000, "ByUser", _groups("system:serviceaccounts")),
    FlowSchema("global-default", "global-default", 9900, "ByUser",
               _groups("system:unauthenticated", "system:authenticated")),
    FlowSchema("catch-all", "catch-all", 10000, "ByUser", _groups("system:unauthenticated", "system:authenticated")),
)


def ordered(schemas: Iterable[FlowSchema]) -> list[FlowSchema]:
    """FlowSchemas in matching order: ascending ``matchingPrecedence``, then name."""
    return sorted(schemas, key=lambda f: (f.matching_precedence, f.name))


def classify(r: RequestAttributes, schemas: Sequence[FlowSchema]) -> tuple[FlowSchema, str]:
    """The first FlowSchema (by precedence) that matches ``r``, and the flow's distinguisher."""
    for fs in ordered(schemas):
        if fs.matches(r):
            return fs, fs.flow_distinguisher(r)
    raise ParameterError("flow_schemas", "must include a catch-all schema that matches every request; "
                                         f"none matched user {r.user!r}")


def check_config(levels: Sequence[PriorityLevel], schemas: Sequence[FlowSchema]) -> None:
    """One clear line for a broken configuration (unknown level, no shares, bad hand)."""
    names = [lv.name for lv in levels]
    for lv in levels:
        lv.validate()
    if sum(lv.nominal_concurrency_shares for lv in levels if not lv.exempt) <= 0:
        raise ParameterError("nominalConcurrencyShares", "must sum to more than 0 over the limited priority levels; "
                                                         "got 0")
    for fs in schemas:
        if fs.priority_level not in names:
            raise ParameterError("priority_level", f"of FlowSchema {fs.name!r} must be one of {', '.join(names)}; "
                                                   f"got {fs.priority_level!r}")


# --------------------------------------------------------------------------------------
# Concurrency limits and borrowing (apf_controller.go)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    nominal: np.ndarray      # NominalCL per level
    lendable: np.ndarray     # LendableCL
    min: np.ndarray          # nominal - lendable
    max: np.ndarray          # nominal + BorrowingCL (the sum of nominal limits when unlimited)

    @property
    def total(self) -> int:
        return int(self.nominal.sum())


def concurrency_limits(server_cl: int, levels: Sequence[PriorityLevel]) -> Limits:
    """NominalCL(i) = ceil(ServerCL x NCS(i) / sum NCS); LendableCL(i) = round(NominalCL(i) x
    lendablePercent(i) / 100); BorrowingCL(i) = round(NominalCL(i) x borrowingLimitPercent(i) / 100),
    unlimited when unset."""
    if server_cl < 1:
        raise ParameterError("server_concurrency_limit", f"must be at least 1; got {server_cl}")
    ncs = np.array([lv.nominal_concurrency_shares for lv in levels], dtype=float)
    total = ncs.sum()
    if total <= 0:
        raise ParameterError("nominalConcurrencyShares", "must sum to more than 0; got 0")
    nominal = np.ceil(server_cl * ncs / total)
    lendable = np.round(nominal * np.array([lv.lendable_percent for lv in levels]) / 100.0)
    mn = nominal - lendable
    big = nominal.sum()
    mx = np.array([n + (round(n * lv.borrowing_limit_percent / 100.0) if lv.borrowing_limit_percent is not None
                        else big) for n, lv in zip(nominal, levels)])
    return Limits(nominal, lendable, mn, np.minimum(mx, big))


def allocate(required: float, lower: np.ndarray, upper: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
    """``computeConcurrencyAllocation``: the allocations that sum to ``required``, each within
    its ``[lower, upper]``, and equal to ``fair x target`` wherever the bounds allow, with one
    common ``fair``. Returns (allocations, fair). Bisection on ``fair`` (the sum is monotone).
    When the bounds cannot meet the sum, every level gets its nearer bound."""
    alloc, fair = allocate_rows(required, np.atleast_2d(lower), np.atleast_2d(upper), np.atleast_2d(target))
    return alloc[0], float(fair[0])


def allocate_rows(required: float, lower: np.ndarray, upper: np.ndarray, target: np.ndarray):
    """:func:`allocate` for every row at once (one row per API server instance). The sum of
    ``clip(fair x target, lower, upper)`` is piecewise linear in ``fair`` with breakpoints at
    ``lower / target`` and ``upper / target``: evaluate it there, find the segment, interpolate."""
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    target = np.maximum(np.asarray(target, float), 1e-3)     # MinTarget
    pts = np.sort(np.concatenate([lower / target, upper / target], axis=1), axis=1)      # R x 2L
    tot = np.clip(pts[:, :, None] * target[:, None, :], lower[:, None, :], upper[:, None, :]).sum(axis=2)
    k = np.clip((tot < required).sum(axis=1), 1, pts.shape[1] - 1)
    r = np.arange(pts.shape[0])
    a, b, ta, tb = pts[r, k - 1], pts[r, k], tot[r, k - 1], tot[r, k]
    fair = np.where(tb > ta, a + (required - ta) / np.where(tb > ta, tb - ta, 1.0) * (b - a), b)
    alloc = np.clip(fair[:, None] * target, lower, upper)
    low = lower.sum(axis=1) >= required
    high = upper.sum(axis=1) <= required
    alloc = np.where(low[:, None], lower, np.where(high[:, None], upper, alloc))
    fair = np.where(low, 0.0, np.where(high, np.inf, fair))
    return alloc, fair


@dataclass
class SeatDemandStats:
    """apf_controller.go seatDemandStats: per borrowing period, the high watermark, average and
    standard deviation of (seats in use + seats waiting); smoothed = max(envelope, A x smoothed
    + (1 - A) x envelope), envelope = avg + stddev."""

    avg: float = 0.0
    std: float = 0.0
    high: float = 0.0
    smoothed: float = 0.0

    def update(self, avg: float, std: float, high: float) -> None:
        self.high, self.avg, self.std = high, avg, std
        env = avg + std
        self.smoothed = max(env, SEAT_DEMAND_SMOOTHING * self.smoothed + (1 - SEAT_DEMAND_SMOOTHING) * env)


def borrowing_targets(limits: Limits, stats_high: np.ndarray, stats_smoothed: np.ndarray):
    """(lower, upper, target) of each level for :func:`allocate`: the lower bound is the lesser
    of the demand's high watermark and NominalCL, never below minCL; the target is the smoothed
    demand, never below that lower bound."""
    lower = np.maximum(limits.min, np.minimum(limits.nominal, stats_high))
    return lower, limits.max.astype(float), np.maximum(lower, stats_smoothed)


# --------------------------------------------------------------------------------------
# The work estimator (flowcontrol/request)
# --------------------------------------------------------------------------------------


def list_seats(stored: float, limit: float = 0, selector: bool = False, from_cache: bool = True,
               single: bool = False, objects_per_seat: float = 100.0, min_seats: int = 1,
               max_seats: int = 10) -> int:
    """Seats of a LIST (list_work_estimator.go, by object count): objects it will process /
    objects per seat, clamped to [min, max]. From the watch cache it processes every stored
    object (indexes are not counted); from etcd with a selector every stored object plus the
    page; without a selector twice the page; a LIST naming one object, 1."""
    limited = stored if not (0 < limit < stored) else limit
    if single:
        n = 1.0
    elif from_cache:
        n = stored
    elif selector:
        n = stored + limited
    else:
        n = 2.0 * limited
    return int(min(max(math.ceil(n / objects_per_seat), min_seats), max_seats))


def mutating_work(watchers: float, watches_per_seat: float = 10.0, event_duration: float = 0.005,
                  max_seats: int = 10) -> tuple[int, int, float]:
    """(initial seats, final seats, additional latency) of a write (mutating_work_estimator.go,
    in brief): one seat to execute, then ``ceil(watchers / watchesPerSeat)`` seats for
    ``eventAdditionalDuration`` while its watchers are notified (more time, fewer seats, beyond
    the maximum)."""
    if watchers <= 0:
        return 1, 0, 0.0
    final = math.ceil(watchers / watches_per_seat)
    extra = event_duration
    if final > max_seats:
        extra = event_duration * final / max_seats
        final = max_seats
    return 1, int(final), float(extra)


# --------------------------------------------------------------------------------------
# Shuffle sharding (util/shufflesharding)
# --------------------------------------------------------------------------------------

_FNV_OFFSET, _FNV_PRIME, _MASK64 = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1


def flow_hash(flow_schema: str, distinguisher: str) -> int:
    """A 64-bit FNV-1a hash of the flow (FlowSchema name, a zero byte, distinguisher): the same
    flow always gets the same number."""
    h = _FNV_OFFSET
    for b in flow_schema.encode() + b"\x00" + distinguisher.encode():
        h = ((h ^ b) * _FNV_PRIME) & _MASK64
    return h


def validate_shuffle_sharding(queues: int, hand_size: int, where: str = "the priority level") -> None:
    if queues < 1:
        raise ParameterError("queues", f"of {where} must be at least 1; got {queues}")
    if not 1 <= hand_size <= queues:
        raise ParameterError("handSize", f"of {where} must be in [1, queues={queues}]; got {hand_size}")
    if math.log2(queues) * hand_size > MAX_HASH_BITS:
        raise ParameterError("handSize", f"of {where}: log2(queues) x handSize must be <= {MAX_HASH_BITS} "
                                         f"(a 64-bit hash deals the hand); got {math.log2(queues) * hand_size:.1f}")


def deal_hand(hash_value: int, queues: int, hand_size: int) -> list[int]:
    """Deal ``hand_size`` distinct queues out of ``queues`` from one hash: read the hash as a
    mixed-radix number with digits base ``queues``, ``queues - 1``, ...; the i-th digit picks
    the card among those not yet dealt (counting in ascending order)."""
    validate_shuffle_sharding(queues, hand_size)
    h = int(hash_value) & _MASK64
    dealt: list[int] = []
    for i in range(hand_size):
        d = h % (queues - i)
        h //= queues - i
        card = d
        for c in sorted(dealt):          # skip the cards already dealt
            if c <= card:
                card += 1
        dealt.append(card)
    return dealt


def expected_queues_covered(flows: float, queues: int, hand_size: int) -> float:
    """Expected number of distinct queues the hands of ``flows`` independent flows cover."""
    if queues <= 0:
        return 0.0
    return queues * (1.0 - (1.0 - hand_size / queues) ** max(flows, 0.0))


# --------------------------------------------------------------------------------------
# The exact dispatcher (queueset.go), for a few hundred requests
# --------------------------------------------------------------------------------------

QUEUED, EXECUTING, SERVED, REJECTED = "queued", "executing", "served", "rejected"


@dataclass(eq=False)
class Request:
    flow: tuple              # (FlowSchema name, distinguisher)
    arrival: float
    seats: int
    service: float           # how long it executes once dispatched
    rid: int = 0
    state: str = QUEUED
    reason: str = ""         # why rejected: "queue-full", "time-out", "concurrency-limit"
    start: float = math.nan
    finish: float = math.nan
    queue: int = -1
    arrival_r: float = 0.0


class _Queue:
    __slots__ = ("index", "waiting", "next_r", "seats_in_use", "executing")

    def __init__(self, index: int):
        self.index = index
        self.waiting: deque[Request] = deque()
        self.next_r = 0.0
        self.seats_in_use = 0
        self.executing = 0

    def waiting_work(self, g: float) -> float:
        return sum(r.seats * g for r in self.waiting)


class QueueSet:
    """One priority level's queues and dispatcher, as queueset.go does it.

    ``arrive(t, req)`` shuffle-shards the request into the shortest queue (by waiting
    seat-seconds) of its flow's hand, first rejecting that queue's requests that waited
    longer than the wait limit; rejects it if the level is at its limit and the queue is
    full; otherwise enqueues it and dispatches as much as possible. ``finish(t, req)`` frees
    its seats, corrects the queue's virtual start by (estimated - actual) x seats, and
    dispatches again. Dispatch picks, in round-robin order from the last dispatched queue,
    the queue whose oldest request has the least virtual finish ``nextDispatchR + seats x
    G``; the virtual clock ``R`` advances at ``min(seats requested, limit) / active queues``
    per second."""

    def __init__(self, level: PriorityLevel, limit: int, wait_limit: float = 15.0, estimated_service: float = 0.003):
        level.validate()
        self.level = level
        self.limit = int(limit)
        self.wait_limit = float(wait_limit)
        self.g = float(estimated_service)
        self.queues = [_Queue(i) for i in range(level.queues)]
        self.r = 0.0
        self.last_t = 0.0
        self.robin = -1
        self.enqueues = 0
        self.seats_in_use = 0
        self.executing: set[Request] = set()
        self.waiting = 0
        self.seats_waiting = 0
        self.max_seats_in_use = 0
        self.on_start = None         # callback(req) when a request is dispatched

    # -- the virtual clock ------------------------------------------------------------------
    def _sync(self, t: float) -> None:
        dt = t - self.last_t
        if dt > 0:
            active = [q for q in self.queues if q.waiting or q.executing]
            if active:
                requested = sum(q.seats_in_use + sum(r.seats for r in q.waiting) for q in self.queues)
                self.r += dt * min(requested, self.limit) / len(active)
        self.last_t = max(self.last_t, t)

    def set_limit(self, t: float, limit: int) -> list[Request]:
        self._sync(t)
        self.limit = int(limit)
        return self._dispatch_all(t)

    # -- arrival ------------------------------------------------------------------------------
    def hand(self, flow: tuple) -> list[int]:
        return deal_hand(flow_hash(*flow), self.level.queues, self.level.hand_size)

    def arrive(self, t: float, req: Request) -> list[Request]:
        """Admit, queue or reject ``req``; returns the requests rejected by time-out or this one."""
        self._sync(t)
        lv = self.level
        if lv.exempt:
            self._start(t, req, None)
            return []
        if lv.queues == 0:                              # limitResponse: Reject
            if self._fits(req.seats):
                self._start(t, req, None)
                return []
            req.state, req.reason = REJECTED, "concurrency-limit"
            return [req]
        hand = self.hand(req.flow)
        off = self.enqueues % len(hand)
        self.enqueues += 1
        best, best_work = None, math.inf
        for i in range(len(hand)):
            q = self.queues[hand[(off + i) % len(hand)]]
            w = q.waiting_work(self.g)
            if w < best_work:
                best, best_work = q, w
        out = self._time_out(t, best)
        if self.seats_in_use >= self.limit and len(best.waiting) >= lv.queue_length_limit:
            req.state, req.reason = REJECTED, "queue-full"
            out.append(req)
            return out
        if not best.waiting and not best.executing:
            best.next_r = self.r
        req.queue, req.arrival_r, req.state = best.index, self.r, QUEUED
        best.waiting.append(req)
        self.waiting += 1
        self.seats_waiting += req.seats
        self._bound(best)
        self._dispatch_all(t)
        return out

    def _time_out(self, t: float, q: _Queue) -> list[Request]:
        out = []
        while q.waiting and t - q.waiting[0].arrival > self.wait_limit:
            r = q.waiting.popleft()
            r.state, r.reason = REJECTED, "time-out"
            self.waiting -= 1
            self.seats_waiting -= r.seats
            out.append(r)
        if out:
            self._bound(q)
        return out

    # -- dispatch -------------------------------------------------------------------------------
    def _fits(self, seats: int) -> bool:
        if seats > self.limit:
            return self.seats_in_use == 0       # a request wider than the limit runs alone
        return self.seats_in_use + seats <= self.limit

    def _bound(self, q: _Queue) -> None:
        """Anti-windup: a queue's virtual dispatch never precedes its oldest request's arrival."""
        if q.waiting and q.next_r < q.waiting[0].arrival_r:
            q.next_r = q.waiting[0].arrival_r

    def _dispatch_all(self, t: float) -> list[Request]:
        started = []
        while self.waiting and self.seats_in_use < self.limit:
            r = self._dispatch_one(t)
            if r is None:
                break
            started.append(r)
        return started

    def _dispatch_one(self, t: float) -> Request | None:
        n = len(self.queues)
        best, best_f, best_i = None, math.inf, -1
        for _ in range(n):
            self.robin = (self.robin + 1) % n
            q = self.queues[self.robin]
            if q.waiting:
                f = q.next_r + q.waiting[0].seats * self.g
                if f < best_f:
                    best, best_f, best_i = q, f, self.robin
        if best is None:
            return None
        head = best.waiting[0]
        if not self._fits(head.seats):
            return None
        best.waiting.popleft()
        self.waiting -= 1
        self.seats_waiting -= head.seats
        self.robin = best_i
        best.next_r += head.seats * self.g
        self._start(t, head, best)
        self._bound(best)
        return head

    def _start(self, t: float, req: Request, q: _Queue | None) -> None:
        req.state, req.start = EXECUTING, t
        self.seats_in_use += req.seats
        self.max_seats_in_use = max(self.max_seats_in_use, self.seats_in_use)
        self.executing.add(req)
        if q is not None:
            q.seats_in_use += req.seats
            q.executing += 1
        if self.on_start is not None:
            self.on_start(req)

    # -- completion -----------------------------------------------------------------------------
    def finish(self, t: float, req: Request) -> list[Request]:
        self._sync(t)
        req.state, req.finish = SERVED, t
        self.executing.discard(req)
        self.seats_in_use -= req.seats
        if req.queue >= 0:
            q = self.queues[req.queue]
            q.seats_in_use -= req.seats
            q.executing -= 1
            q.next_r -= req.seats * (self.g - (t - req.start))
            self._bound(q)
        return self._dispatch_all(t)

    @property
    def seat_demand(self) -> int:
        return self.seats_in_use + self.seats_waiting


class DiscreteAPF:
    """Several priority levels, each a :class:`QueueSet`, fed by a list of requests in time
    order; every ``borrowing_period`` the levels' limits are recomputed from their seat
    demand (time-weighted average, standard deviation and high watermark over the period)."""

    def __init__(self, server_cl: int, levels: Sequence[PriorityLevel] = BOOTSTRAP_LEVELS,
                 schemas: Sequence[FlowSchema] = BOOTSTRAP_FLOW_SCHEMAS, wait_limit: float = 15.0,
                 borrowing_period: float = 10.0, borrowing: bool = True, estimated_service: float = 0.003):
        check_config(levels, schemas)
        self.levels = list(levels)
        self.schemas = ordered(schemas)
        self.limits = concurrency_limits(server_cl, self.levels)
        self.qs = {lv.name: QueueSet(lv, int(n), wait_limit, estimated_service)
                   for lv, n in zip(self.levels, self.limits.nominal)}
        self.period = float(borrowing_period)
        self.borrowing = borrowing
        self.stats = {lv.name: SeatDemandStats() for lv in self.levels}
        self._area = {lv.name: [0.0, 0.0, 0.0, 0.0] for lv in self.levels}   # integral, integral of square, max, last t
        self.limit_log: list[tuple[float, dict]] = []

    def level_of(self, r: RequestAttributes) -> tuple[str, tuple]:
        fs, dist = classify(r, self.schemas)
        return fs.priority_level, (fs.name, dist)

    def _integrate(self, t: float) -> None:
        for name, q in self.qs.items():
            a = self._area[name]
            d = q.seat_demand
            dt = t - a[3]
            if dt > 0:
                a[0] += d * dt
                a[1] += d * d * dt
            a[2] = max(a[2], d)
            a[3] = t

    def _rebalance(self, t: float, start: float) -> list[Request]:
        self._integrate(t)
        span = max(t - start, 1e-12)
        names = [lv.name for lv in self.levels]
        for name in names:
            a = self._area[name]
            avg = a[0] / span
            std = math.sqrt(max(a[1] / span - avg * avg, 0.0))
            self.stats[name].update(avg, std, a[2])
            d = self.qs[name].seat_demand
            self._area[name] = [0.0, 0.0, float(d), t]
        lo, hi, target = borrowing_targets(self.limits, np.array([self.stats[n].high for n in names]),
                                           np.array([self.stats[n].smoothed for n in names]))
        alloc, _ = allocate(float(self.limits.total), lo, hi, target)
        started = []
        cur = {}
        for name, a in zip(names, alloc):
            cur[name] = int(round(a))
            started += self.qs[name].set_limit(t, cur[name])
        self.limit_log.append((t, cur))
        return started

    def run(self, arrivals: Sequence[tuple[float, RequestAttributes, int, float]], until: float | None = None
            ) -> list[Request]:
        """Serve ``arrivals`` = [(time, attributes, seats, service seconds)]; returns every
        request with its fate (served, rejected, still executing or still queued at ``until``)."""
        events: list = []
        seq = 0
        reqs = []
        for i, (t, attrs, seats, service) in enumerate(sorted(arrivals, key=lambda a: a[0])):
            lvl, flow = self.level_of(attrs)
            r = Request(flow, float(t), int(seats), float(service), rid=i)
            reqs.append((lvl, r))
            heapq.heappush(events, (float(t), 1, seq, "arrive", lvl, r))
            seq += 1
        end = until if until is not None else (max((a[0] for a in arrivals), default=0.0) + 3600.0)
        if self.borrowing:
            k = 1
            while k * self.period <= end:
                heapq.heappush(events, (k * self.period, 0, seq, "rebalance", None, None))
                seq += 1
                k += 1
        last_rebalance = 0.0

        def started(lvl, lst, t):
            nonlocal seq
            for r in lst:
                heapq.heappush(events, (t + r.service, 0, seq, "finish", lvl, r))
                seq += 1

        for name, q in self.qs.items():
            q.on_start = None
        while events:
            t, _, _, kind, lvl, r = heapq.heappop(events)
            if t > end:
                break
            self._integrate(t)
            if kind == "rebalance":
                before = {n: set(q.executing) for n, q in self.qs.items()}
                self._rebalance(t, last_rebalance)
                last_rebalance = t
                for n, q in self.qs.items():
                    started(n, [x for x in q.executing if x not in before[n]], t)
                continue
            q = self.qs[lvl]
            before = set(q.executing)
            if kind == "arrive":
                q.arrive(t, r)
            else:
                q.finish(t, r)
            started(lvl, [x for x in q.executing if x not in before], t)
        return [r for _, r in reqs]


# --------------------------------------------------------------------------------------
# The fluid dispatcher: flow groups per tick
# --------------------------------------------------------------------------------------


@dataclass
class FlowGroup:
    """``flows`` equal flows of one FlowSchema in one priority level, sending ``parts``
    (request kinds with their own seats and service time)."""

    name: str
    level: int
    flows: float
    schema: str


@dataclass
class Part:
    """One kind of request of a flow group: ``seats`` per request."""

    name: str
    group: int
    seats: float
    final_seats: float = 0.0
    final_seconds: float = 0.0


def waterfill(lo: np.ndarray, hi: np.ndarray, n: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Fair level ``f`` over the last axis: sum(n x clip(f, lo, hi)) = cap (max-min fairness:
    each flow gets at most its demand ``hi``, at least what it holds ``lo``). Returns f
    (shape without the last axis); +inf where every demand fits, below every lo where
    nothing new fits."""
    lo = np.asarray(lo, float)
    hi = np.maximum(np.asarray(hi, float), lo)
    n = np.broadcast_to(np.asarray(n, float), lo.shape)
    pts = np.sort(np.concatenate([lo, hi], axis=-1), axis=-1)           # (..., 2m)
    tot = (n[..., None, :] * np.clip(pts[..., :, None], lo[..., None, :], hi[..., None, :])).sum(axis=-1)
    cap = np.asarray(cap, float)[..., None]
    k = (tot < cap).sum(axis=-1)                                         # first breakpoint with tot >= cap
    m2 = pts.shape[-1]
    full = k >= m2
    kk = np.clip(k, 1, m2 - 1)[..., None]
    a, b = np.take_along_axis(pts, kk - 1, -1)[..., 0], np.take_along_axis(pts, kk, -1)[..., 0]
    ta, tb = np.take_along_axis(tot, kk - 1, -1)[..., 0], np.take_along_axis(tot, kk, -1)[..., 0]
    c = cap[..., 0]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        f = np.where(tb > ta, a + (c - ta) / np.where(tb > ta, tb - ta, 1.0) * (b - a), b)
    f = np.where(k == 0, pts[..., 0], f)
    return np.where(full, np.inf, f)


class FluidAPF:
    """API Priority and Fairness on ``K`` API server instances, per tick, over flow groups.

    State per instance and part: a FIFO backlog by age (one slot per tick up to the wait
    limit) and the seats held by requests still executing (a release schedule). Per tick and
    priority level: the free seats (current limit minus what executing requests hold) are
    shared max-min fairly among the level's flows (each flow: what it holds, plus what its
    backlog and arrivals need, never more); what cannot start waits; what waited past the
    wait limit or overflows its flows' queues is rejected. Every ``borrowing_period`` each
    instance recomputes its levels' limits from their seat demand."""

    def __init__(self, k: int, levels: Sequence[PriorityLevel], server_cl: int, groups: Sequence[FlowGroup],
                 parts: Sequence[Part], dt: float, wait_limit: float = 15.0, borrowing_period: float = 10.0,
                 horizon_s: float = 4000.0, borrowing: bool = True):
        self.k = k
        self.levels = list(levels)
        self.L = len(levels)
        self.limits = concurrency_limits(server_cl, self.levels)
        self.groups = list(groups)
        self.parts = list(parts)
        self.dt = float(dt)
        self.wait_limit = float(wait_limit)
        self.W = max(1, int(math.ceil(self.wait_limit / self.dt)))
        self.period = float(borrowing_period)
        self.borrowing = borrowing
        P, G = len(self.parts), len(self.groups)
        self.P, self.G = P, G
        self.part_group = np.array([p.group for p in self.parts], dtype=np.int64)
        self._pg = np.zeros((P, G))
        self._pg[np.arange(P), self.part_group] = 1.0
        self.seats = np.array([p.seats for p in self.parts], dtype=float)
        self.group_level = np.array([g.level for g in self.groups], dtype=np.int64)
        self._pl = np.zeros((P, len(levels)))
        self._pl[np.arange(P), self.group_level[self.part_group]] = 1.0
        self.flows = np.array([max(g.flows, 1e-9) for g in self.groups], dtype=float)
        self.exempt = np.array([lv.exempt for lv in self.levels])
        self.reject_type = np.array([(not lv.exempt) and lv.queues == 0 for lv in self.levels])
        # queue capacity per group: the queues its flows' hands cover x queueLengthLimit
        cap = np.zeros(G)
        for gi, g in enumerate(self.groups):
            lv = self.levels[g.level]
            if lv.exempt:
                cap[gi] = np.inf
            elif lv.queues == 0:
                cap[gi] = 0.0
            else:
                cap[gi] = expected_queues_covered(g.flows, lv.queues, lv.hand_size) * lv.queue_length_limit
        self.group_cap = cap
        # padded (level x member) index of groups, for one vectorised water-fill per tick
        members = [np.flatnonzero(self.group_level == li) for li in range(self.L)]
        M = max(1, max(m.size for m in members))
        self.M = M
        self.member = np.full((self.L, M), -1, dtype=np.int64)
        for li, m in enumerate(members):
            self.member[li, : m.size] = m
        self.member_ok = self.member >= 0
        self.member_g = np.where(self.member_ok, self.member, 0)
        # state
        self.cl = np.tile(self.limits.nominal.astype(float), (k, 1))          # K x L current limits
        self.backlog = np.zeros((k, P, self.W))                                # requests by age slot
        self.H = int(math.ceil(horizon_s / self.dt)) + self.W + 4
        self._release = np.zeros((self.H, k, P))                               # seats released at tick
        self.held = np.zeros((k, P))                                           # seats of long requests
        self.i = 0
        self._dem_sum = np.zeros((k, self.L))
        self._dem_sq = np.zeros((k, self.L))
        self._dem_max = np.zeros((k, self.L))
        self._dem_n = 0
        self.stats_high = np.zeros((k, self.L))
        self.stats_smoothed = np.zeros((k, self.L))
        self._next_rebalance = self.period
        # last tick's outcome
        self.dispatched = np.zeros((k, P))
        self.rejected = np.zeros((k, P))
        self.rejected_timeout = np.zeros((k, P))
        self.rejected_full = np.zeros((k, P))
        self.wait = np.zeros((k, P))
        self.seats_in_use = np.zeros((k, self.L))
        self.max_seats_over_limit = 0.0
        self._serving = np.ones(k, dtype=bool)
        self._zeros_kp = np.zeros((k, len(self.parts)))
        self._kk = np.arange(k)[:, None]
        self._age_rev = (np.arange(self.W)[::-1] * self.dt).astype(float)
        self._age = (np.arange(self.W) * self.dt).astype(float)
        self._serving_arg = None
        self._pp = np.arange(len(self.parts))[None, :]

    def reset_instance(self, j: int) -> None:
        """Instance ``j`` stopped: its queues, executing requests and limits start afresh."""
        self.backlog[j] = 0.0
        self.held[j] = 0.0
        self._release[:, j, :] = 0.0
        self.cl[j] = self.limits.nominal
        self.stats_high[j] = 0.0
        self.stats_smoothed[j] = 0.0

    def step(self, t: float, arrivals: np.ndarray, service: np.ndarray, serving: np.ndarray | None = None) -> None:
        """One tick: ``arrivals`` (K x P) requests arriving this tick, ``service`` (K x P)
        seconds each executes once dispatched. Results in ``dispatched``, ``rejected`` (split
        into ``rejected_timeout`` and ``rejected_full``), ``wait`` (mean queue wait of the
        dispatched) and ``seats_in_use``."""
        dt, i, W = self.dt, self.i, self.W
        self._serving_arg = None if serving is None else np.asarray(serving, bool)
        arrivals = np.maximum(np.asarray(arrivals, float), 0.0)
        service = np.maximum(np.asarray(service, float), 1e-9)
        # seats of long requests that finish now
        row = i % self.H
        self.held = np.maximum(self.held - self._release[row], 0.0)
        self._release[row] = 0.0
        # age the backlog; what passes the wait limit is rejected (time-out)
        b = self.backlog
        timed_out = b[:, :, W - 1].copy()
        b[:, :, 1:] = b[:, :, :-1]
        b[:, :, 0] = arrivals
        offered = b.sum(axis=2)                                     # K x P requests that want to start
        # seats one request needs within this tick: all of them for long requests, the used
        # fraction of the tick for short ones (a seat serves dt / service short requests a tick)
        frac = np.minimum(service / dt, 1.0)
        need = offered * self.seats[None, :] * frac                 # K x P seats to start them all
        fits = ((self.held + need) @ self._pl <= self.cl + 1e-9) | self.exempt[None, :]
        if fits.all():
            # every level has seats for everything that waits or arrives: dispatch it all
            self._dispatch_all(t, b, offered, service, frac, timed_out)
            return
        held_g = self._by_group(self.held)                          # K x G
        need_g = self._by_group(need)
        n = self.flows
        lo = held_g / n
        hi = (held_g + need_g) / n
        # per level: max-min fair share of its limit among its flows
        LO = np.where(self.member_ok[None], lo[:, self.member_g], 0.0)         # K x L x M
        HI = np.where(self.member_ok[None], hi[:, self.member_g], 0.0)
        N = np.where(self.member_ok, n[self.member_g], 0.0)
        cap = np.where(self.exempt[None, :], np.inf, self.cl)
        f = waterfill(LO, HI, N[None], np.where(np.isinf(cap), 1e300, cap))     # K x L
        alloc = np.clip(f[..., None], LO, HI)                                     # per flow
        grant_g = np.zeros_like(held_g)
        gi = self.member[self.member_ok]
        grant_flow = alloc[:, self.member_ok]                                     # K x (#groups)
        grant_g[:, gi] = np.maximum(grant_flow * n[gi][None, :] - held_g[:, gi], 0.0)
        share = np.divide(grant_g, need_g, out=np.ones_like(grant_g), where=need_g > 1e-12)
        share = np.clip(share, 0.0, 1.0)
        go = offered * share[:, self.part_group]                    # K x P requests dispatched
        # take them from the oldest slots first (FIFO)
        rev = b[:, :, ::-1]
        before = np.cumsum(rev, axis=2) - rev
        take = np.clip(go[:, :, None] - before, 0.0, rev)
        b -= take[:, :, ::-1]
        wait_sum = take @ self._age_rev
        wait = np.divide(wait_sum, go, out=np.zeros_like(go), where=go > 1e-12)
        # reject-type levels do not queue; exempt ones never reject
        lvl_p = self.group_level[self.part_group]
        rej_now = self.reject_type[lvl_p][None, :] * b.sum(axis=2)
        if self.reject_type.any():
            b[:, self.reject_type[lvl_p], :] = 0.0
        # queue capacity: what overflows its flows' queues is rejected
        q = b.sum(axis=2)
        qg = self._by_group(q)
        over_g = np.maximum(qg - self.group_cap[None, :], 0.0)
        over_share = np.divide(over_g, qg, out=np.zeros_like(qg), where=qg > 1e-12)[:, self.part_group]
        full = q * over_share
        b *= (1.0 - over_share)[:, :, None]
        # the dispatched ones hold their seats until they finish (long ones beyond this tick)
        before = np.maximum(self.cl, self.held @ self._pl)          # the limit this dispatch obeyed
        self._finish(t, b, go, service, frac, timed_out, full + rej_now, wait)
        over = (self.seats_in_use - before)[:, ~self.exempt]
        self.max_seats_over_limit = max(self.max_seats_over_limit, float(over.max()) if over.size else 0.0)

    def _dispatch_all(self, t, b, offered, service, frac, timed_out) -> None:
        """The fast path of :meth:`step` when no level is short of seats."""
        go = offered
        wait_sum = b @ self._age
        b[:] = 0.0
        wait = np.divide(wait_sum, go, out=np.zeros_like(go), where=go > 1e-12)
        self._finish(t, b, go, service, frac, timed_out, self._zeros_kp, wait)

    def _finish(self, t, b, go, service, frac, timed_out, full, wait) -> None:
        dt, i = self.dt, self.i
        long_ = service > dt
        seats_go = go * self.seats[None, :]
        hold = np.where(long_, seats_go, 0.0)
        if hold.any():
            self.held += hold
            rows = (i + np.ceil(service / dt).astype(np.int64)) % self.H
            self._release[rows, self._kk, self._pp] += hold          # one row per (instance, part)
        short = np.where(long_, 0.0, go * frac)
        self.executing = self.held / self.seats[None, :] + short
        in_use = (self.held + short * self.seats[None, :]) @ self._pl
        self.seats_in_use = in_use
        waiting = (b.sum(axis=2) * self.seats[None, :]) @ self._pl
        demand = in_use + waiting
        self._dem_sum += demand * dt
        self._dem_sq += demand * demand * dt
        np.maximum(self._dem_max, demand, out=self._dem_max)
        self._dem_n += 1
        self.dispatched = go
        self.rejected_timeout = timed_out
        self.rejected_full = full
        self.rejected = timed_out + full
        self.wait = wait
        self.i += 1
        if self._serving_arg is not None:
            serving = self._serving_arg
            for j in np.flatnonzero(self._serving & ~serving):
                self.reset_instance(int(j))
            self._serving = serving.copy()
        if self.borrowing and t + dt >= self._next_rebalance - 1e-9:
            self.rebalance()
            self._next_rebalance += self.period

    def rebalance(self) -> None:
        span = max(self._dem_n * self.dt, 1e-12)
        avg = self._dem_sum / span
        std = np.sqrt(np.maximum(self._dem_sq / span - avg * avg, 0.0))
        env = avg + std
        self.stats_high = self._dem_max.copy()
        self.stats_smoothed = np.maximum(env, SEAT_DEMAND_SMOOTHING * self.stats_smoothed
                                         + (1 - SEAT_DEMAND_SMOOTHING) * env)
        lo, hi, target = borrowing_targets(self.limits, self.stats_high, self.stats_smoothed)
        alloc, _ = allocate_rows(float(self.limits.total), lo, np.broadcast_to(hi, lo.shape), target)
        self.cl = np.round(alloc)
        self._dem_sum[:] = 0.0
        self._dem_sq[:] = 0.0
        self._dem_max[:] = 0.0
        self._dem_n = 0

    def _by_group(self, x: np.ndarray) -> np.ndarray:
        return x @ self._pg

    def _by_level(self, x: np.ndarray) -> np.ndarray:
        return x @ self._pl


# --------------------------------------------------------------------------------------
# The control plane's admission with API Priority and Fairness
# --------------------------------------------------------------------------------------

#: what each of the core's request streams asks for: (verb, resource, namespace); "*" as a
#: namespace means "spread over many namespaces" (a ByNamespace flow per namespace)
STREAM_REQUESTS = {
    "lease": ("update", "leases", "kube-node-lease"),
    "node_status": ("patch", "nodes/status", ""),
    "kubelet_get": ("get", "configmaps", "*"),
    "pod_status": ("patch", "pods/status", "*"),
    "controller_write": ("update", "replicasets", "*"),
    "controller_read": ("get", "configmaps", "*"),
    "pod_bind": ("create", "pods/binding", "*"),
    "list_pods_all": ("list", "pods", ""),
    "ds_list_pods": ("list", "pods", ""),
    "event_write": ("create", "events", "*"),
}
#: the cost parameter naming a write's watchers (its final seats)
STREAM_WATCHERS = {"lease": "lease_watchers", "node_status": "node_watchers", "pod_status": "pod_watchers",
                   "pod_bind": "pod_watchers", "controller_write": "other_watchers", "event_write": "other_watchers"}

APF_SCENARIO_PARAMS = ParamSet([
    Param("apf_namespaces", 100, "namespaces",
          "assumption: a large cluster's workloads spread over ~100 namespaces",
          "namespaces a ByNamespace flow (kube-controller-manager's, kube-scheduler's) is spread over",
          lo=1, hi=100_000, kind=int),
])


def flows_of(fs: FlowSchema, user: str, count: int, namespace: str, namespaces: int) -> float:
    """How many distinct flows ``count`` clients of one class form under ``fs``."""
    if fs.distinguisher == "ByUser":
        return float(count) if "{i}" in user else 1.0
    if fs.distinguisher == "ByNamespace":
        return float(namespaces) if namespace == "*" else 1.0
    return 1.0


class APF(Component):
    """API Priority and Fairness as the control plane's admission (a
    :class:`~kscale_lab.controlplane.Component`; it replaces max-inflight).

    At ``attach`` every (client class, request stream) pair is classified by the FlowSchemas
    (the class's user and groups, the stream's verb, resource and namespace) into a flow group
    of its priority level; its seats come from the work estimator. Each tick the arrivals
    (clients on an instance x their rates) and their service times (the core's latency of
    the stream without the queue wait) go through :class:`FluidAPF`; the core receives the
    share rejected with 429, the queue wait as added latency, and a CPU and memory correction
    for the requests that wait in a queue instead of executing. Other components add their own
    request kinds with :meth:`add_part` (before the control plane is built) and :meth:`offer`
    them each tick (re-lists: the flow-control lab)."""

    name = "apf"
    replaces_max_inflight = True

    def __init__(self, p: Mapping, levels: Sequence[PriorityLevel] = BOOTSTRAP_LEVELS,
                 schemas: Sequence[FlowSchema] = BOOTSTRAP_FLOW_SCHEMAS, requests: Mapping | None = None):
        check_config(levels, schemas)
        self.p = p
        self.levels = list(levels)
        self.schemas = ordered(schemas)
        self.requests = dict(STREAM_REQUESTS, **(requests or {}))
        self._extra_specs: list[tuple] = []
        self._offers: dict[str, tuple] = {}

    # -- other components' request kinds ---------------------------------------------------
    def add_part(self, name: str, cls: int, request: tuple, seats: float) -> None:
        """Register a request kind of client class ``cls`` (verb, resource, namespace) with
        ``seats`` per request; offer it each tick with :meth:`offer`."""
        self._extra_specs.append((name, int(cls), tuple(request), float(seats)))

    def offer(self, name: str, arrivals: np.ndarray, service: np.ndarray) -> None:
        """This tick's requests of a registered kind: (K,) arrivals and (K,) service seconds."""
        self._offers[name] = (np.asarray(arrivals, float), np.asarray(service, float))

    def outcome(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(dispatched, rejected, mean queue wait) of a registered kind this tick, per instance."""
        j = self._extra_index[name]
        f = self.fluid
        return f.dispatched[:, j], f.rejected[:, j], f.wait[:, j]

    # -- the component -------------------------------------------------------------------------
    def classify_pair(self, cls, stream: str) -> tuple[FlowSchema, str]:
        verb, resource, ns = self.requests.get(stream, ("get", "configmaps", "*"))
        user = cls.user.replace("{i}", "0") if cls.user else "system:anonymous"
        groups = tuple(cls.groups) or ("system:authenticated",)
        return classify(RequestAttributes(user, groups, verb, resource, "default" if ns == "*" else ns),
                        self.schemas)

    def attach(self, cp) -> None:
        if getattr(self, "_attached_to", None) is cp:
            return
        self._attached_to = cp
        w, p = cp.w, self.p
        level_index = {lv.name: i for i, lv in enumerate(self.levels)}
        groups: list[FlowGroup] = []
        gkey: dict = {}
        parts: list[Part] = []
        core_c, core_s = [], []
        ns_count = int(p.get("apf_namespaces", 100))
        self.pair_schema = {}

        def group_for(c, fs, ns):
            cls = w.classes[c]
            key = (c, fs.name)
            if key not in gkey:
                gkey[key] = len(groups)
                groups.append(FlowGroup(f"{cls.name}/{fs.name}", level_index[fs.priority_level],
                                        flows_of(fs, cls.user, cls.count, ns, ns_count), fs.name))
            return gkey[key]

        max_seats = int(p.get("apf_max_seats", 10))
        rates = w.rates
        unsent = (rates == 0).all(axis=0)              # streams nobody sends yet (switched on later)
        for c, cls in enumerate(w.classes):
            for s, sname in enumerate(w.stream_names):
                if rates[c, s] == 0 and not unsent[s]:
                    continue
                fs, _ = self.classify_pair(cls, sname)
                self.pair_schema[(cls.name, sname)] = fs.name
                ns = self.requests.get(sname, ("get", "configmaps", "*"))[2]
                g = group_for(c, fs, ns)
                if w.is_list[s]:
                    seats = list_seats(float(p.get("pods", w.cache_objects)), 500, False, True,
                                       objects_per_seat=float(p.get("apf_objects_per_seat", 100.0)),
                                       max_seats=max_seats)
                    fseats, fsec = 0, 0.0
                elif w.mutating[s]:
                    watchers = float(p.get(STREAM_WATCHERS.get(sname, "other_watchers"), 1))
                    seats, fseats, fsec = mutating_work(watchers, float(p.get("apf_watches_per_seat", 10.0)),
                                                        float(p.get("apf_event_additional_duration", 0.005)),
                                                        max_seats)
                else:
                    seats, fseats, fsec = 1, 0, 0.0
                parts.append(Part(f"{cls.name}/{sname}", g, float(seats), float(fseats), fsec))
                core_c.append(c)
                core_s.append(s)
        self._extra_index = {}
        for name, c, request, seats in self._extra_specs:
            verb, resource, ns = request
            cls = w.classes[c]
            user = cls.user.replace("{i}", "0") if cls.user else "system:anonymous"
            fs, _ = classify(RequestAttributes(user, tuple(cls.groups) or ("system:authenticated",), verb, resource,
                                               "default" if ns == "*" else ns), self.schemas)
            self.pair_schema[(cls.name, name)] = fs.name
            g = group_for(c, fs, ns)
            self._extra_index[name] = len(parts)
            parts.append(Part(name, g, float(seats)))
        self.groups, self.parts = groups, parts
        self.core_c, self.core_s = np.array(core_c), np.array(core_s)
        self.n_core = len(core_c)
        S = len(w.stream_names)
        self._onehot = np.zeros((self.n_core, S))
        self._onehot[np.arange(self.n_core), self.core_s] = 1.0
        # per stream, the first part that sends it: where the tick's arrivals of a stream no
        # class sends at its base rate go (another component's requests: retries, a burst)
        self._first_part = np.full(S, -1)
        for j in range(self.n_core - 1, -1, -1):
            self._first_part[self.core_s[j]] = j
        self.final_time = np.array([pt.final_seats * pt.final_seconds / max(pt.seats, 1e-9)
                                    for pt in parts[: self.n_core]])
        server_cl = int(cp.costs.max_requests_inflight + cp.costs.max_mutating_requests_inflight)
        self.server_cl = server_cl
        self.fluid = FluidAPF(cp.k, self.levels, server_cl, groups, parts, cp.dt,
                              wait_limit=float(p.get("apf_request_wait_limit", 15.0)),
                              borrowing_period=float(p.get("apf_borrowing_period", 10.0)),
                              horizon_s=float(p.get("duration", 1800.0)) + 3600.0)
        self.wait_add = np.zeros((cp.k, S))
        self.deferred = np.zeros((cp.k, S))
        self.backlog_total = np.zeros(cp.k)
        steps = cp.steps
        L = len(self.levels)
        self.rec_seats = np.zeros((steps, cp.k, L))
        self.rec_limit = np.zeros((steps, cp.k, L))
        self.rec_rejected_class = np.zeros((steps, w.n_classes))
        self.rec_arrived_class = np.zeros((steps, w.n_classes))
        self.rec_rejected_level = np.zeros((steps, L))
        self.rejected_by_part = np.zeros(len(parts))
        self.arrived_by_part = np.zeros(len(parts))
        self.cls_of_part = np.array([core_c[i] if i < self.n_core else self._extra_cls(i) for i in range(len(parts))])
        self._part_cls = np.zeros((len(parts), w.n_classes))
        self._part_cls[np.arange(len(parts)), self.cls_of_part] = 1.0
        self._mem_part = cp.mem_s[self.core_s]

    def _extra_cls(self, i):
        name = self.parts[i].name
        for n, c, _, _ in self._extra_specs:
            if n == name:
                return c
        return 0

    def admission(self, cp, A, t0):
        dt = cp.dt
        rates = cp.rates[self.core_c, self.core_s]                          # per part, per client
        arr = np.zeros((cp.k, len(self.parts)))
        arr[:, : self.n_core] = cp.cn.req_counts[:, self.core_c] * rates[None, :] * dt
        # ``A`` is every arrival of the tick, other components' included (the request path's
        # retries, the scale-up's creations, probes): they go through the same filter, shared
        # over a stream's parts as its clients' own requests are
        base_s = arr[:, : self.n_core] @ self._onehot
        want = A * dt
        scale = np.divide(want, base_s, out=np.ones_like(want), where=base_s > 1e-12)
        arr[:, : self.n_core] *= scale[:, self.core_s]
        lone = (base_s <= 1e-12) & (want > 1e-12) & (self._first_part >= 0)[None, :]
        if lone.any():
            ki, si = np.nonzero(lone)
            np.add.at(arr, (ki, self._first_part[si]), want[ki, si])
        service = np.ones_like(arr)
        base = cp.lat[:, self.core_s] - self.wait_add[:, self.core_s]
        service[:, : self.n_core] = np.maximum(base, cp._service[self.core_s][None, :]) + self.final_time[None, :]
        for name, (a, sv) in self._offers.items():
            j = self._extra_index[name]
            arr[:, j] = a
            service[:, j] = np.maximum(sv, 1e-6)
        self._offers = {}
        f = self.fluid
        f.step(t0, arr, service, cp.inst.serving)
        n = self.n_core
        oh = self._onehot
        got = arr[:, :n] @ oh
        rej = f.rejected[:, :n] @ oh
        disp = f.dispatched[:, :n] @ oh
        share = np.divide(rej, got, out=np.zeros_like(got), where=got > 1e-12)
        self.deferred = got - rej - disp
        wsum = (f.wait[:, :n] * f.dispatched[:, :n]) @ oh
        self.wait_add = np.divide(wsum, disp, out=np.zeros_like(disp), where=disp > 1e-12)
        self.backlog_total = f.backlog.sum(axis=2).sum(axis=1)
        i = cp._i
        if i < self.rec_seats.shape[0]:
            self.rec_seats[i] = f.seats_in_use
            self.rec_limit[i] = f.cl
            rc = f.rejected.sum(axis=0)
            ac = arr.sum(axis=0)
            self.rec_rejected_class[i] = rc @ self._part_cls
            self.rec_arrived_class[i] = ac @ self._part_cls
            self.rec_rejected_level[i] = rc @ f._pl
            self.rejected_by_part += rc
            self.arrived_by_part += ac
        return np.clip(share, 0.0, 1.0)

    def extra_cpu(self, cp, adm, t0):
        return -(self.deferred @ cp.cpu_s)

    def latency(self, cp, adm, t0):
        return self.wait_add

    def memory(self, cp, adm, t0):
        # the core counts Little's law on what it admitted; APF knows what executes and what waits.
        # When a component owns the request path (its in_flight counts), the core counts nothing
        # and that component holds every admitted request's goroutine with its stream's memory,
        # queued here or executing: a request still in APF's queue has only its request's bytes
        # (at most as many as that component counts: the two see the same requests)
        f = self.fluid
        if cp.owned_in_flight is not None:
            queued = np.minimum(f.backlog[:, : self.n_core].sum(axis=2) @ self._onehot, cp.owned_in_flight)
            return -(queued @ np.maximum(cp.mem_s - cp.w.request_memory, 0.0))
        executing = f.executing[:, : self.n_core] @ self._mem_part
        return executing + self.backlog_total * cp.w.request_memory - (adm * cp.lat) @ cp.mem_s

    def summary(self, cp) -> dict:
        n = cp._i
        names = [lv.name for lv in self.levels]
        by_level = self.rec_rejected_level[:n].sum(axis=0)
        return {
            "apf_server_concurrency_limit": self.server_cl,
            "apf_rejected_requests_total": float(self.rejected_by_part.sum()),
            **{f"apf_rejected_{nm.replace('-', '_')}": float(v) for nm, v in zip(names, by_level)},
            "apf_max_seats_over_limit": float(self.fluid.max_seats_over_limit),
        }

"""The request path inside an API server, and the work that outlives its client.

Picture a restaurant that takes phone orders. The cook starts on an order, sends out for
an ingredient (an admission webhook), waits for the oven (etcd), and only then calls back.
If the caller hangs up after ten seconds and rings again at once, a cook who never notices
the hang-up keeps every abandoned order on the stove: the kitchen fills with food nobody
will eat, and each new call adds another plate. A cook who notices stops, and the kitchen
holds at most one order per caller still on the line.

An API server serves a non-long-running request in one goroutine that holds its stack and
buffers (request, decoded object, response) until the handler returns. Its path, in the
order the handler chain runs it (``staging/src/k8s.io/apiserver/pkg/server/config.go``,
``DefaultBuildHandlerChain``):

1. **loopback** (some requests): authentication that calls the API server itself (the
   article's example: service-account authentication); a nested request on the same
   instance, with its own goroutine, that waits in the same CPU queue;
2. **handler CPU**: the request waits for a core (the control-plane core's fluid CPU queue)
   and runs its pre-admission work (decode, authorisation, built-in admission);
3. **admission webhooks** (the streams a webhook's rules match): ``webhook_calls`` calls in
   series, each bounded by the webhook's ``timeoutSeconds``; with ``failurePolicy: Fail`` a
   call that times out fails the request, with ``Ignore`` the request goes on;
4. **etcd** (writes): the transaction; etcd itself answers "request timed out" after its
   ``ReqTimeout`` (about 7 s), so a slow etcd holds a goroutine no longer than that;
5. the rest of the **CPU** (encode for etcd, decode the result, encode the response).

Clients give up after their own timeout (client-go sends it as ``?timeout=``) or when the
server's timeout filter answers **504** after ``--request-timeout`` (60 s), and, being
level-triggered, retry at once (``client_retry``), up to ``max_retries`` times. Every
retry is a new request. What the server does when the client has gone is the switch:

* ``off`` (Kubernetes before 1.16, issue #78783): nothing notices. The timeout filter runs
  the handler in a second goroutine (``filters/timeout.go``); after its 504 that goroutine
  runs on to the end: the webhook calls and the etcd call finish, the memory stays held,
  and the request keeps its max-inflight slot (the timeout filter sits *outside* the
  max-inflight filter in the chain, so the slot is released only when the inner goroutine
  returns). Retries add requests beside the orphans.
* ``article`` (Kubernetes 1.16, PR #81602): admission and webhooks take the request's
  ``context.Context``. Go's HTTP server cancels it when the client resets its stream (or
  when the timeout filter fires); after ``cancellation_delay`` the blocked webhook or etcd
  call returns and the goroutine exits.
* ``upstream`` (PR #96061/#96901, about 1.21; ``filters/request_deadline.go``): the
  deadline is set when the request arrives, from ``?timeout=`` or ``--request-timeout``;
  webhook calls use ``min(deadline, timeoutSeconds)`` (``context.WithTimeout`` on the
  request context, ``admission/plugin/webhook/validating/dispatcher.go``); the storage
  layer hands the same context to the etcd client; the timeout filter answers 504 at the
  deadline. ``admissionregistration.k8s.io/v1`` webhooks default to ``timeoutSeconds: 10``
  and ``failurePolicy: Fail`` (``v1beta1``: 30 s and ``Ignore``). API Priority and
  Fairness adds a queue-wait limit (``--request-timeout``/4 = 15 s) before a request runs;
  that is the flow-control lab's component, which this path takes its queue wait from
  when it is present (``apf_queue_wait``).

A goroutine that waits for CPU is not stopped by a cancelled context: Go does not preempt
it; it stops at its next downstream call (a webhook, etcd). So cancellation saves the
downstream waits, the memory they hold and the CPU after them, not the CPU of a request
already queued.

**Fluid cohorts, never a process per request.** Requests that arrive at one instance, on
one stream, in one tick, with the same attempt number, are a *cohort*: they share the CPU
wait, the webhook and etcd latency of that moment, so they share one path
(:func:`request_path`, vectorised over instances x streams). Each cohort's end times are
written into calendars (goroutine end, client end with its outcome, the CPU after the
downstream calls); births are spread uniformly over their tick, so an end at ``t0 + x``
lands in two ticks in proportion. Per tick the work is a few (instances x streams) array
operations, whatever the number of clients. :func:`walk_request` is the same path for one
request, written stage by stage; :func:`exact_run` simulates a few hundred requests one by
one with it, as the reference the cohorts are tested against.

Every admitted request ends exactly once, as one of ``answered`` (a success reached a
waiting client), ``failed`` (an error reached it: a webhook failure, a 504),
``timed_out`` (the client gave up and the server ran the work to the end anyway),
``cancelled`` (the client gave up and the server stopped the work) or ``lost`` (its
instance died).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from ..controlplane import Component
from ..params import Param, ParamSet

ANSWERED, FAILED, TIMED_OUT, CANCELLED, LOST = range(5)
OUTCOMES = ("answered", "failed", "timed_out", "cancelled", "lost")
RETRY_POLICIES = ("immediate", "backoff", "none")
INCIDENTS = ("none", "webhook", "etcd", "both")

REQUEST_PARAMS = ParamSet([
    Param("client_timeout", 10.0, "s",
          "client-go rest.Config.Timeout, sent as ?timeout=: the kubelet's requests carry ?timeout=10s "
          "(its node-status-update-frequency; kubelet logs in kubernetes/kubernetes#64014)",
          "how long a client waits for an answer before it gives up (every stream but LISTs)", lo=0.001, hi=3600),
    Param("list_timeout", 60.0, "s",
          "assumption: a controller's LIST sets no client timeout; the server's --request-timeout (60 s) ends it",
          "how long a client waits for a LIST (a LIST of every pod takes seconds of CPU)", lo=0.001, hi=3600,
          plausible=(30.0, 60.0), plausible_source="controllers with no client timeout get the server's 60 s; some set 30 s"),
    Param("request_timeout", 60.0, "s",
          "kube-apiserver --request-timeout default 60 s (apiserver pkg/server/config.go NewConfig)",
          "the server's timeout filter answers 504 after this long", lo=0.001, hi=3600, flag="--request-timeout"),
    Param("webhook_timeout_seconds", 30.0, "s",
          "admissionregistration timeoutSeconds: 1-30 s, default 30 s in v1beta1 and 10 s in v1 "
          "(kubernetes/kubernetes PR #74562; staging/src/k8s.io/api/admissionregistration/v1/types.go)",
          "a webhook call gives up after this long (upstream setting: or at the request deadline if sooner)",
          lo=1, hi=30),
    Param("webhook_failure_policy", "Ignore", "1",
          "admissionregistration failurePolicy: 'Defaults to Ignore' in v1beta1, 'Defaults to Fail' in v1 "
          "(staging/src/k8s.io/api/admissionregistration/v1beta1 and v1 types.go)",
          "what a webhook call that times out does: Fail the request, or Ignore the webhook and go on",
          choices=("Fail", "Ignore"), kind=str),
    Param("webhook_calls", 1, "calls",
          "assumption: one webhook configuration matches (mutating webhooks are called one after another)",
          "webhook calls in series per request the webhook's rules match", lo=0, hi=10, kind=int),
    Param("webhook_streams", "pod_status pod_bind controller_write", "1",
          "assumption: a policy webhook (e.g. a pod security or image policy engine) matches writes of pods and "
          "workloads, not node Leases or Node status",
          "request streams (space-separated) that pass through the admission webhook", kind=str),
    Param("webhook_latency", 0.01, "s",
          "assumption: an in-cluster webhook answers in ~10 ms (a TLS round trip and a policy evaluation)",
          "time one webhook call takes while the webhook is healthy", lo=0, hi=3600,
          plausible=(0.002, 0.1), plausible_source="in-cluster webhooks answer in a few ms (a cached decision) to ~100 ms (a policy engine under load)"),
    Param("loopback_streams", "controller_write controller_read", "1",
          "assumption: the article names the loopback among a request's downstream calls (e.g. service-account "
          "authentication); controllers authenticate with ServiceAccount tokens, so their requests make one",
          "request streams (space-separated) whose authentication calls the API server itself", kind=str),
    Param("incident", "webhook", "1", "scenario: the issue's incidents (a slow admission webhook; a slow etcd)",
          "which dependency is slow during the incident window", choices=INCIDENTS, kind=str),
    Param("incident_at", 300.0, "s", "scenario: after 5 quiet minutes", "when the incident starts", lo=0, hi=86_400),
    Param("incident_for", 300.0, "s", "scenario: 'a slow admission webhook for a few minutes'",
          "how long the dependency stays slow", lo=0, hi=86_400),
    Param("webhook_slow_latency", 20.0, "s",
          "scenario: the webhook's pods are overloaded; each call takes 20 s (longer than a kubelet waits, shorter "
          "than v1beta1's 30 s timeout)",
          "time one webhook call takes during the incident", lo=0, hi=3600),
    Param("etcd_slow_latency", 20.0, "s",
          "scenario: etcd's disk stalls (etcd warns of a 'slow fdatasync' above 1 s); each write waits ~20 s",
          "time one etcd write takes during the incident", lo=0, hi=3600),
    Param("etcd_request_timeout", 7.0, "s",
          "etcd ServerConfig.ReqTimeout() = 5 s ('queue waiting, computation and disk IO delay') + 2 x the election "
          "timeout (default 1 s) (etcd-io/etcd server/config/config.go; etcdserver/config.go in 3.4); a write not "
          "applied by then fails with 'etcdserver: request timed out'",
          "etcd answers a write it could not commit in this long with an error", lo=0.001, hi=3600),
    Param("client_retry", "immediate", "1",
          "article section 6: clients are level-triggered and retry at once",
          "what a client does after a timeout or an error: retry at once, after a doubling backoff, or not",
          choices=RETRY_POLICIES, kind=str),
    Param("max_retries", 5, "retries",
          "kubelet: nodeStatusUpdateRetry = 5 and the lease controller's maxUpdateRetries = 5 (pkg/kubelet)",
          "retries of one request before the client drops it (its next periodic request comes anyway)",
          lo=0, hi=20, kind=int),
    Param("retry_backoff", 1.0, "s", "assumption: client-go backoffs start around 1 s and double",
          "first delay of the 'backoff' retry policy (then 2x, 4x, ...)", lo=0, hi=3600),
    Param("retry_after", 1.0, "s", "kube-apiserver's max-inflight filter answers 429 with Retry-After: 1 (docs/upstream.md section 3)",
          "delay before a client retries a request rejected with 429", lo=0, hi=3600),
    Param("cancellation_delay", 0.1, "s",
          "assumption: the client's RST_STREAM reaches the server within a round trip and the blocked call returns "
          "when its context is done",
          "time from the client giving up to the server's downstream call returning (article setting)",
          lo=0, hi=60,
          plausible=(0.01, 1.0), plausible_source="a round trip on a LAN up to a busy client whose cancel waits for its own goroutine"),
    Param("post_admission_cpu_share", 0.5, "1",
          "assumption: after admission a write still encodes the object for etcd, decodes the result and encodes "
          "the response: about half of its CPU",
          "share of a request's CPU that runs after its webhook and etcd calls", lo=0, hi=1,
          plausible=(0.2, 0.8), plausible_source="encode for etcd, decode the result and encode the response against decode, authorisation and admission"),
])



# ----------------------------------------------------------------------------------------
# the path of one request
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PathPolicy:
    """What the server does when the client has gone (the switch's three settings)."""

    cancel: bool = False       # the request context is cancelled and downstream calls honour it
    deadline: bool = False     # the deadline is set at arrival from ?timeout= / --request-timeout

    @classmethod
    def for_setting(cls, setting: str) -> "PathPolicy":
        return {"off": cls(False, False), "article": cls(True, False), "upstream": cls(True, True)}[setting]


@dataclass(frozen=True)
class PathParams:
    request_timeout: float = 60.0
    webhook_timeout: float = 30.0
    fail_closed: bool = False          # failurePolicy Fail
    cancel_delay: float = 0.1
    post_share: float = 0.5
    etcd_timeout: float = 7.0

    @classmethod
    def from_params(cls, p) -> "PathParams":
        return cls(float(p["request_timeout"]), float(p["webhook_timeout_seconds"]),
                   p["webhook_failure_policy"] == "Fail", float(p["cancellation_delay"]),
                   float(p["post_admission_cpu_share"]), float(p["etcd_request_timeout"]))


@dataclass
class Path:
    """The fate of a request (or a cohort), all times from its arrival, in seconds."""

    client_end: np.ndarray     # when the client stops waiting (its answer, its timeout, a 504)
    outcome: np.ndarray        # ANSWERED, FAILED, TIMED_OUT or CANCELLED
    g_end: np.ndarray          # when its goroutine ends (and its max-inflight slot is released)
    lb_end: np.ndarray         # when the loopback request's goroutine ends (0: no loopback)
    work_end: np.ndarray       # when the work would end if nothing stopped it
    post_at: np.ndarray        # when the CPU after the downstream calls runs (nan: never)
    post_cpu: np.ndarray       # that CPU, core-seconds
    wasted_cpu: np.ndarray     # CPU spent after the client stopped waiting, core-seconds


def request_path(tau, wait, cpu, etcd, hook_lat, calls, lb, q: PathParams, pol: PathPolicy) -> Path:
    """The path of requests that arrive with these conditions, vectorised (all arguments broadcast):

    ``tau`` the client's timeout; ``wait`` the CPU queue's wait; ``cpu`` the request's CPU;
    ``etcd`` its etcd time (0 for reads); ``hook_lat`` the time one webhook call takes and
    ``calls`` the number of calls (0: no webhook); ``lb`` the loopback call's duration (0: none).

    The work first runs as if nothing stopped it (webhook calls bounded by their timeout, the
    failure policy applied); then the context's cancellation at ``X`` cuts it: ``X`` = never
    (off), the client's timeout plus the cancellation delay (article; the timeout filter's own
    cancel at ``--request-timeout``), the deadline (upstream: ``min(?timeout=,
    --request-timeout)``, so a webhook call ends at ``min(deadline, timeoutSeconds)``). A
    blocking stage (loopback, webhook, etcd) returns at ``X``; a goroutine queued for CPU runs
    its CPU first and stops at its next call; the last CPU after the calls runs to the end.
    The same rules, stage by stage for one request, are :func:`walk_request`."""
    tau, wait, cpu, etcd, hook_lat, calls, lb = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in
                                                                      (tau, wait, cpu, etcd, hook_lat, calls, lb)))
    T = q.request_timeout
    C = np.minimum(tau, T)                                  # the client stops waiting here at the latest
    server_504 = T <= tau                                   # ... because the server answered 504
    down = (calls > 0) | (etcd > 0)
    post = np.where(down, cpu * q.post_share, 0.0)
    pre_end = lb + wait + (cpu - post)                      # loopback, CPU queue, CPU before admission
    timed = hook_lat > q.webhook_timeout
    per_call = np.minimum(hook_lat, q.webhook_timeout)
    if q.fail_closed:                                       # the first call that times out fails it
        failed = (calls > 0) & timed
        hooks = np.where(failed, per_call, calls * per_call)
    else:
        failed = np.zeros(pre_end.shape, dtype=bool)
        hooks = calls * per_call
    etcd_fails = ~failed & (etcd > q.etcd_timeout)           # etcd answers 'request timed out'
    down_end = pre_end + hooks + np.where(failed, 0.0, np.minimum(etcd, q.etcd_timeout))
    failed = failed | etcd_fails
    work_end = np.where(failed, down_end, down_end + post)
    # the client's view: an answer before it stops waiting, or its timeout / a 504
    answered_in_time = work_end <= C
    client_end = np.where(answered_in_time, work_end, C)
    # the server's view: when the context is cancelled (inf: never)
    if not pol.cancel:
        X = np.full_like(C, np.inf)
    elif pol.deadline:
        X = C
    else:
        X = np.where(server_504, T, C + q.cancel_delay)
    stop = X < work_end
    in_cpu = (X >= lb) & (X < pre_end)                      # a queued goroutine stops at its next call
    in_post = (X >= down_end) & ~failed                     # the last CPU runs to the end
    g_end = np.where(~stop | in_post, work_end, np.where(in_cpu, np.where(down, pre_end, work_end), X))
    cancelled = g_end < work_end
    outcome = np.where(answered_in_time, np.where(failed, FAILED, ANSWERED),
                       np.where(server_504, FAILED, np.where(cancelled, CANCELLED, TIMED_OUT)))
    lb_end = np.where(lb > 0, np.where(cancelled & (X < lb), X, lb), 0.0)
    post_runs = ~failed & down & ~cancelled
    post_at = np.where(post_runs, down_end, np.nan)
    pre = cpu - post
    # CPU after the client stopped waiting: the part of the pre-admission CPU that ran after it
    # (it runs in [pre_end - pre, pre_end]) and the post CPU if it ran
    with np.errstate(over="ignore", invalid="ignore"):
        frac = np.clip((pre_end - client_end) / np.where(pre > 0, pre, 1.0), 0.0, 1.0)
    wasted = np.where(answered_in_time, 0.0, np.where(pre > 0, pre * frac, 0.0) + np.where(post_runs, post, 0.0))
    return Path(client_end, outcome.astype(np.int8), g_end, lb_end, work_end, post_at,
                np.where(post_runs, post, 0.0), wasted)


def walk_request(tau, wait, cpu, etcd, hook_lat, calls, lb, q: PathParams, pol: PathPolicy) -> dict:
    """One request's path, stage by stage (the reference :func:`request_path` is tested against).

    Returns a dict with the fields of :class:`Path` (floats; ``outcome`` an int)."""
    T = q.request_timeout
    C = min(tau, T)
    server_504 = T <= tau
    if not pol.cancel:
        X = math.inf
    elif pol.deadline:
        X = C
    else:
        X = T if server_504 else C + q.cancel_delay
    has_down = calls > 0 or etcd > 0
    post = cpu * q.post_share if has_down else 0.0
    pre = cpu - post
    # the stages in order: (name, duration, blocking); a blocking call returns when the context is done
    stages = []
    if lb > 0:
        stages.append(("loopback", lb, True))
    stages.append(("cpu", wait + pre, False))
    failed = False
    for _ in range(int(calls)):
        if hook_lat > q.webhook_timeout:
            stages.append(("webhook", q.webhook_timeout, True))
            if q.fail_closed:
                failed = True
                break
        else:
            stages.append(("webhook", hook_lat, True))
    if not failed and etcd > 0:
        stages.append(("etcd", min(etcd, q.etcd_timeout), True))
        failed = etcd > q.etcd_timeout
    if not failed and post > 0:
        stages.append(("post", post, False))
    t, g_end, stopped, lb_end, post_runs = 0.0, None, False, 0.0, False
    down_end = None
    for name, dur, blocking in stages:
        if name == "post":
            down_end = t
        if X < t + dur and g_end is None:
            if blocking:
                g_end, stopped = max(X, t), True          # the call returns at X
            elif name == "cpu" and has_down:
                t += dur                                  # runs its CPU, stops at its next call
                g_end, stopped = t, True
            # a stage of CPU with nothing after it (or the post CPU) runs to its end
        if name == "loopback":
            lb_end = g_end if stopped else t + dur
        if stopped:
            break
        t += dur
        if name == "post":
            post_runs = True
    work = sum(d for _, d, _ in stages)
    if g_end is None:
        g_end = t
    answered_in_time = work <= C
    client_end = work if answered_in_time else C
    cancelled = g_end < work
    if answered_in_time:
        outcome = FAILED if failed else ANSWERED
    elif server_504:
        outcome = FAILED
    else:
        outcome = CANCELLED if cancelled else TIMED_OUT
    pre_end = lb + wait + pre
    wasted = 0.0
    if not answered_in_time:
        if pre > 0:
            wasted += pre * min(1.0, max(0.0, (pre_end - client_end) / pre))
        if post_runs:
            wasted += post
    return {"client_end": client_end, "outcome": outcome, "g_end": g_end, "lb_end": lb_end if lb > 0 else 0.0,
            "work_end": work, "post_cpu": post if post_runs else 0.0, "wasted_cpu": wasted, "pre_end": pre_end}


def retry_delay(policy: str, attempt: int, backoff: float) -> float:
    """Seconds a client waits before retry number ``attempt + 1`` (``attempt`` = 0 for the first try)."""
    if policy == "immediate":
        return 0.0
    if policy == "backoff":
        return backoff * 2.0 ** attempt
    return math.inf


# ----------------------------------------------------------------------------------------
# conditions over time: the incidents
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Incident:
    kind: str = "none"
    at: float = 0.0
    length: float = 0.0
    webhook_latency: float = 0.01
    webhook_slow: float = 20.0
    etcd_slow: float = 20.0

    @classmethod
    def from_params(cls, p) -> "Incident":
        return cls(p["incident"], float(p["incident_at"]), float(p["incident_for"]), float(p["webhook_latency"]),
                   float(p["webhook_slow_latency"]), float(p["etcd_slow_latency"]))

    def active(self, t: float) -> bool:
        return self.kind != "none" and self.at <= t < self.at + self.length

    def hook(self, t: float) -> float:
        return self.webhook_slow if self.kind in ("webhook", "both") and self.active(t) else self.webhook_latency

    def etcd(self, t: float, normal: float) -> float:
        return self.etcd_slow if self.kind in ("etcd", "both") and self.active(t) else normal

    @property
    def end(self) -> float:
        return self.at + self.length if self.kind != "none" else 0.0


def stream_mask(names: str, stream_names, param: str) -> np.ndarray:
    """Boolean mask over streams from a space-separated list (one clear error for an unknown name)."""
    from ..errors import ParameterError

    want = [x for x in str(names).replace(",", " ").split() if x]
    bad = [x for x in want if x not in stream_names]
    if bad:
        raise ParameterError(param, f"names unknown streams {', '.join(bad)}; streams: {', '.join(stream_names)}")
    return np.array([s in want for s in stream_names])


# ----------------------------------------------------------------------------------------
# the fluid cohorts
# ----------------------------------------------------------------------------------------
@dataclass
class StreamTable:
    """What the cohorts need per stream (arrays over streams)."""

    cpu: np.ndarray            # core-seconds per request
    etcd: np.ndarray           # normal etcd time per request (0 for reads)
    mutating: np.ndarray
    memory: np.ndarray         # bytes held while the request's goroutine lives
    tau: np.ndarray            # the client's timeout per stream
    hooked: np.ndarray         # the webhook's rules match the stream
    loopback: np.ndarray       # authentication makes a loopback call
    loopback_cpu: float = 0.0
    loopback_memory: float = 100_000.0
    names: list = field(default_factory=list)


class CohortPath:
    """Requests in flight as cohorts, per instance and stream; driven one tick at a time.

    ``step(i, arrivals, rejected_share, wait, live)`` takes this tick's attempts (``arrivals``:
    instances x streams x attempt, requests in the tick), the share the admission filters
    reject, the CPU queue's wait per instance and which instances run; it schedules every
    admitted cohort's ends and returns the tick's figures; ``end_tick(i, live)`` counts the
    clients whose request ended in the tick and schedules their retries; ``retries_due(i)``
    gives the retries arriving in tick ``i``. Nothing here knows the control plane: the
    component :class:`RequestPathComponent` feeds it from the core, the tests feed it directly.

    The calendars are arrays over ticks. A cohort born in tick ``i`` whose requests end ``x``
    seconds after arriving ends in ticks ``i + floor(x/dt)`` and the next, in proportion (its
    births are spread over the tick). Because every cohort of a tick shares the conditions,
    one unit of births has one pattern of ends, its *kernel* (ticks after birth x instances x
    streams x what ends); a tick adds ``kernel x births`` to the calendars in one operation, and
    the kernel is recomputed only when the conditions change (the CPU wait, the incident)."""

    #: what the event calendar holds per (tick, instance, stream)
    G_END, LB_END, POST_CPU, WASTE = range(4)

    def __init__(self, k: int, streams: StreamTable, steps: int, dt: float, q: PathParams, pol: PathPolicy,
                 incident: Incident, retry_policy: str = "immediate", max_retries: int = 5, backoff: float = 1.0,
                 retry_after: float = 1.0, webhook_calls: int = 1):
        self.k, self.st, self.dt, self.q, self.pol = k, streams, float(dt), q, pol
        S = streams.cpu.size
        self.S = S
        self.R = int(max_retries) if retry_policy != "none" else 0
        self.inc = incident
        self.calls = np.where(streams.hooked, int(webhook_calls), 0).astype(float)
        self.steps = int(steps)
        n = self.steps + 2
        self.n = n
        self.delay_ticks = np.array([max(1, int(round(retry_delay(retry_policy, r, backoff) / self.dt)))
                                     if retry_policy != "none" else 1 for r in range(self.R + 1)])
        # the clients that got a 429 come back after Retry-After, spread over [retry_after, 2 x retry_after)
        # (each waits from its own answer; their retries are not in step)
        self.after_ticks = max(1, int(round(retry_after / self.dt)))
        self.after_jitter = 0.5 if retry_after >= self.dt else 0.0
        self.cal = np.zeros((n, k, S, 4))
        self.ends_o = np.zeros((n, k, S, 4))                   # client ends by outcome
        self.ends_r = np.zeros((n, k, S, self.R + 1, 2))        # client ends by attempt: happy, unhappy
        self.retry_cal = np.zeros((n, k, S, self.R + 1))
        self.alive = np.zeros((k, S))
        self.alive_lb = np.zeros((k, S))
        self.waiting = np.zeros((k, S))
        self.live = np.ones(k, dtype=bool)
        self._acc = {name: 0.0 for name in ("rejected", "dropped", "retries", "lost")}
        self._acc_adm = np.zeros((k, S))
        self._acc_o = np.zeros((k, S, 4))
        self._acc_unhappy = np.zeros((k, S, self.R + 1))
        self.lost_at = np.zeros((n, k, S))
        self._all_live = True
        self.max_outlive = 0.0          # longest a cancelled cohort's goroutine outlived its client
        kk, ss = np.meshgrid(np.arange(k), np.arange(S), indexing="ij")
        self._kk, self._ss = kk, ss
        self._key = None
        self._kern = None
        self.path = None
        #: etcd's write latency beyond the stream table's, set from outside each tick (the capstone's
        #: etcd component: a slow freelist, a saturated commit), seconds
        self.etcd_extra = 0.0
        self._flat = (self.cal.reshape(-1), self.ends_o.reshape(-1), self.ends_r.reshape(-1))
        self._rows = (k * S * 4, k * S * 4, k * S * (self.R + 1) * 2)
        self._r1 = np.arange(1, self.R + 1)
        self._dticks = self.delay_ticks[: self.R]

    # -- conditions and kernels -------------------------------------------------------------
    def conditions(self, t: float):
        """(webhook call latency, etcd time) per stream for requests arriving at ``t``."""
        hook = np.where(self.st.hooked, self.inc.hook(t), 0.0)
        slow = self.inc.kind in ("etcd", "both") and self.inc.active(t)
        etcd = np.where(self.st.mutating & slow, self.inc.etcd_slow, self.st.etcd + self.etcd_extra)
        return hook, etcd

    def _split(self, offset: np.ndarray, room: int, at_least: int = 0):
        """Rows (relative to the birth tick) of ends ``offset`` seconds after births spread over the
        tick: a share ``1 - frac`` in row ``a``, ``frac`` in ``a + 1`` (clipped to the calendar)."""
        e = np.minimum(np.maximum(offset, 0.0) / self.dt, room)
        lo = np.floor(e)
        frac = e - lo
        a = np.clip(lo.astype(np.int64), at_least, room - 1)
        b = np.clip(a + 1, 0, room - 1)
        frac = np.where((lo < at_least) | (a == b), 0.0, frac)
        return a, b, frac

    def _kernel(self, i: int, wait: np.ndarray, extra_wait):
        """The ends of one unit of births in tick ``i``, as flat indices into the calendars
        (relative to row ``i``) and weights, in two halves whose indices are distinct."""
        t0 = i * self.dt
        st = self.st
        hook, etcd = self.conditions(t0)
        w = wait[:, None] if extra_wait is None else wait[:, None] + extra_wait
        lb = np.where(st.loopback[None, :], wait[:, None] + st.loopback_cpu, 0.0)
        path = request_path(st.tau[None, :], w, st.cpu[None, :], etcd[None, :], hook[None, :],
                            self.calls[None, :], lb, self.q, self.pol)
        K, S, R1 = self.k, self.S, self.R + 1
        room = self.n - i
        ks = (self._kk * S + self._ss).ravel()                       # flat (instance, stream)
        has_lb = np.broadcast_to(st.loopback[None, :], self._kk.shape)
        post_at = np.nan_to_num(path.post_at, nan=0.0)
        cal_i, cal_w, cal_ks = [[], []], [[], []], [[], []]
        for c, (offset, weight, at_least) in enumerate((
                (path.g_end, np.ones(ks.size), 0),
                (path.lb_end, np.where(has_lb, 1.0, 0.0).ravel(), 0),
                (post_at, path.post_cpu.ravel(), 1),                 # the core's CPU of tick i is counted
                (path.client_end, path.wasted_cpu.ravel(), 0))):
            a, b, f = self._split(offset.ravel(), room, at_least)
            for h, (rows, wt) in enumerate(((a, weight * (1 - f)), (b, weight * f))):
                cal_i[h].append((rows * (K * S) + ks) * 4 + c)
                cal_w[h].append(wt)
                cal_ks[h].append(ks)
        a, b, f = self._split(path.client_end.ravel(), room)
        out = path.outcome.astype(np.int64).ravel()
        happy = (out != ANSWERED).astype(np.int64)                   # 0 happy, 1 unhappy
        rr = np.arange(R1)
        halves = []
        for h in range(2):
            ci = np.concatenate(cal_i[h])
            cw = np.concatenate(cal_w[h])
            cks = np.concatenate(cal_ks[h])
            m = cw != 0
            rows, wt = (a, 1 - f) if h == 0 else (b, f)
            oi = (rows * (K * S) + ks) * 4 + out
            ri = (((rows * (K * S) + ks)[:, None] * R1 + rr[None, :]) * 2 + happy[:, None]).ravel()
            halves.append((ci[m], cw[m], cks[m], oi, wt, ri, np.repeat(wt, R1), np.repeat(ks, R1) * R1 + np.tile(rr, ks.size)))
        cancelled = path.outcome == CANCELLED
        outlive = float(np.max(np.where(cancelled, path.g_end - path.client_end, 0.0)))
        reach = 1 + max(int(h[0].max(initial=0)) // (4 * K * S) for h in halves)
        reach = max(reach, 1 + int(b.max(initial=0)))
        self._kern = (halves, outlive, reach)
        self.path = path

    # -- one tick ----------------------------------------------------------------------------
    def retries_due(self, i: int) -> np.ndarray:
        """(instances x streams x attempt) retries arriving in tick ``i`` (attempt 0 is empty)."""
        return self.retry_cal[min(i, self.n - 1)]

    def step(self, i: int, arrivals: np.ndarray, rej: np.ndarray, wait: np.ndarray, live: np.ndarray,
             extra_wait: np.ndarray | None = None) -> np.ndarray:
        """Admit this tick's attempts (less the rejected share), schedule their ends; returns the
        admitted requests (instances x streams)."""
        self._kill(i, live, since=i)
        adm_r = arrivals * (1.0 - rej)[..., None]
        n = adm_r.sum(axis=-1)
        if rej.any():                                         # 429: retried after Retry-After
            rej_r = arrivals - adm_r
            self._retry(i + self.after_ticks, rej_r * (1.0 - self.after_jitter))
            if self.after_jitter:
                self._retry(i + self.after_ticks + 1, rej_r * self.after_jitter)
            self._acc["rejected"] += float(rej_r.sum())
        key = (wait.tobytes(), self.inc.active(i * self.dt), None if extra_wait is None else extra_wait.tobytes(),
               self.etcd_extra)
        if key != self._key or self._kern[2] > self.n - i:
            self._kernel(i, wait, extra_wait)
            self._key = key
        halves, outlive, _ = self._kern
        row_cal, row_o, row_r = self._rows
        calf, of, rf = self._flat
        nf = n.ravel()
        af = adm_r.ravel()
        for ci, cw, cks, oi, ow, ri, rw, rks in halves:
            calf[i * row_cal + ci] += cw * nf[cks]
            of[i * row_o + oi] += ow * nf
            rf[i * row_r + ri] += rw * af[rks]
        ended = self.cal[i]
        self.alive += n - ended[..., self.G_END]
        self.alive_lb += n * self.st.loopback - ended[..., self.LB_END]
        self.waiting += n
        self._acc_adm += n
        np.maximum(self.alive, 0.0, out=self.alive)
        np.maximum(self.alive_lb, 0.0, out=self.alive_lb)
        if outlive > self.max_outlive and nf.any():
            self.max_outlive = outlive
        return n

    def end_tick(self, i: int, live: np.ndarray) -> np.ndarray:
        """Clients whose request ended in tick ``i``: count the outcomes, schedule the retries.
        Returns the ends (instances x streams x outcome; the instances' lost requests are in
        ``lost_at``)."""
        by = self.ends_o[i]                                                            # k, s, outcome
        unhappy = self.ends_r[i, ..., 1]                                               # k, s, r
        if self.R:
            self.retry_cal[np.minimum(i + self._dticks, self.n - 1), :, :, self._r1] += \
                np.transpose(unhappy[..., : self.R], (2, 0, 1))
        self._acc_unhappy += unhappy
        self._acc_o += by
        self.waiting -= by.sum(axis=-1)
        np.maximum(self.waiting, 0.0, out=self.waiting)
        self._kill(i, live, since=i + 1)
        return by

    def post_cpu_due(self, i: int) -> np.ndarray:
        return self.cal[min(i, self.n - 1), :, :, self.POST_CPU].sum(axis=1)

    # -- retries ---------------------------------------------------------------------------
    def _retry(self, j: int, amounts_r: np.ndarray) -> None:
        """Requests (k, s, attempt r) that ended badly come back as attempt r+1 in tick ``j``."""
        if self.R:
            self.retry_cal[min(j, self.n - 1), :, :, 1:] += amounts_r[..., :-1]
            self._acc["retries"] += float(amounts_r[..., :-1].sum())
        self._acc["dropped"] += float(amounts_r[..., -1].sum())

    # -- an instance dies --------------------------------------------------------------------
    def _kill(self, i: int, live: np.ndarray, since: int) -> None:
        """Instances that stopped running since the last call: their requests are lost; clients
        still waiting see the connection break and retry in the next tick."""
        if live.all() and self._all_live:
            return
        died = self.live & ~live
        self.live = live.copy()
        self._all_live = bool(live.all())
        if not died.any():
            return
        for k in np.flatnonzero(died):
            lost = self.ends_o[since:, k].sum(axis=(0, -1))                  # s
            pending = self.ends_r[since:, k].sum(axis=(0, -1))               # s, r: clients still waiting
            amounts = np.zeros((self.k, self.S, self.R + 1))
            amounts[k] = pending
            self._retry(i + 1, amounts)
            for arr in (self.cal, self.ends_o, self.ends_r):
                arr[since:, k] = 0.0
            self.alive[k] = 0.0
            self.alive_lb[k] = 0.0
            self.waiting[k] = 0.0
            self.lost_at[min(i, self.n - 1), k] += lost
            self._acc["lost"] += float(lost.sum())
        self._key = None

    @property
    def totals(self) -> dict:
        """Requests admitted, rejected (429), retried, dropped (after ``max_retries``), and ended
        by outcome, so far."""
        o = self._acc_o.sum(axis=(0, 1))
        out = {"admitted": float(self._acc_adm.sum()), "rejected": self._acc["rejected"],
               "retries": float(self._acc["retries"] + self._acc_unhappy[..., : self.R].sum()),
               "dropped": float(self._acc["dropped"] + self._acc_unhappy[..., self.R].sum())}
        for code in (ANSWERED, FAILED, TIMED_OUT, CANCELLED):
            out[OUTCOMES[code]] = float(o[code])
        out["lost"] = self._acc["lost"]
        return out

    def in_flight(self) -> float:
        """Requests whose goroutine still runs (all instances)."""
        return float(self.alive.sum() + self.alive_lb.sum())


# ----------------------------------------------------------------------------------------
# the exact reference: a few hundred requests, one by one
# ----------------------------------------------------------------------------------------
def exact_run(arrivals, stream: int, st: StreamTable, q: PathParams, pol: PathPolicy, incident: Incident,
              wait: float = 0.0, retry_policy: str = "immediate", max_retries: int = 5, backoff: float = 1.0,
              webhook_calls: int = 1, horizon: float | None = None, dt: float = 1.0) -> dict:
    """Simulate requests one by one on one instance: first attempts at the times ``arrivals``
    (seconds), on stream ``stream``, with a constant CPU wait; each goes through
    :func:`walk_request` with the conditions at its arrival; a client that did not get a
    success retries (``retry_policy``) as a new request. Returns the requests (one dict
    each, with ``arrival`` and ``attempt``) and, per tick, the goroutines alive and the
    clients waiting at the tick's end (the cohorts' convention)."""
    calls = webhook_calls if st.hooked[stream] else 0
    R = max_retries if retry_policy != "none" else 0
    heap = [(float(a), 0, n) for n, a in enumerate(sorted(arrivals))]
    heapq.heapify(heap)
    done = []
    seq = len(heap)
    while heap:
        at, r, _ = heapq.heappop(heap)
        hook = incident.hook(at) if st.hooked[stream] else 0.0
        etcd = incident.etcd(at, float(st.etcd[stream])) if st.mutating[stream] else float(st.etcd[stream])
        lb = wait + st.loopback_cpu if st.loopback[stream] else 0.0
        rq = walk_request(float(st.tau[stream]), wait, float(st.cpu[stream]), etcd, hook, calls, lb, q, pol)
        rq.update(arrival=at, attempt=r)
        done.append(rq)
        if rq["outcome"] != ANSWERED and r < R:
            # a retry comes whole ticks later (at once: the next tick), as in the cohorts
            d = retry_delay(retry_policy, r, backoff)
            nxt = at + rq["client_end"] + max(1, int(round(d / dt))) * dt
            heapq.heappush(heap, (nxt, r + 1, seq))
            seq += 1
    end = horizon if horizon is not None else max([d["arrival"] + d["g_end"] for d in done] + [0.0]) + 2 * dt
    ticks = np.arange(int(math.ceil(end / dt))) * dt + dt
    arr = np.array([d["arrival"] for d in done])
    g = arr + np.array([d["g_end"] for d in done])
    c = arr + np.array([d["client_end"] for d in done])
    alive = ((arr[None, :] < ticks[:, None]) & (g[None, :] > ticks[:, None])).sum(axis=1) if done else ticks * 0
    waiting = ((arr[None, :] < ticks[:, None]) & (c[None, :] > ticks[:, None])).sum(axis=1) if done else ticks * 0
    return {"requests": done, "ticks": ticks, "alive": alive, "waiting": waiting}


# ----------------------------------------------------------------------------------------
# on the control-plane core
# ----------------------------------------------------------------------------------------
#: the per-tick, per-instance series :meth:`RequestPathComponent.series` returns
SERIES = ("goroutines", "request_memory_bytes", "waiting", "admitted", "retries", "rejected",
          "wasted_cpu", "post_cpu", *OUTCOMES)


class RequestPathComponent(Component):
    """The request path as a :class:`~kscale_lab.controlplane.Component` of the control-plane core.

    It owns the requests in flight (``in_flight``: the max-inflight filter counts the
    cohorts' goroutines, orphans included; ``memory``: their bytes), adds the clients'
    retries to the arrivals, moves the CPU that runs after the downstream calls to when it
    runs (or never, if the request was cancelled), and sets the latency the core records to
    what the client saw. ``apf_queue_wait``: if another component on the core has a method of
    that name (the flow-control lab's API Priority and Fairness), its (instances x streams)
    queue wait is added to the CPU wait of the upstream setting's requests.

    Per tick it only copies arrays into its records; :meth:`series` reduces them once."""

    name = "request-path"

    def __init__(self, p, setting: str):
        self.p = p
        self.setting = setting
        self.pol = PathPolicy.for_setting(setting)

    # Component hooks ----------------------------------------------------------------------
    def attach(self, cp) -> None:
        p, w = self.p, cp.w
        names = list(w.stream_names)
        hooked = stream_mask(p["webhook_streams"], names, "webhook_streams")
        loop = stream_mask(p["loopback_streams"], names, "loopback_streams")
        tau = np.where(w.is_list, float(p["list_timeout"]), float(p["client_timeout"]))
        self.st = StreamTable(cpu=w.stream_cpu.copy(), etcd=w.stream_extra_latency.copy(), mutating=w.mutating.copy(),
                              memory=w.stream_memory.copy(), tau=tau, hooked=hooked, loopback=loop,
                              loopback_cpu=float(cp.costs.get_from_cache(p["other_request_bytes"])),
                              loopback_memory=float(w.request_memory), names=names)
        self.c = CohortPath(cp.k, self.st, cp.steps, cp.dt, PathParams.from_params(p), self.pol,
                            Incident.from_params(p), p["client_retry"], int(p["max_retries"]),
                            float(p["retry_backoff"]), float(p["retry_after"]), int(p["webhook_calls"]))
        down = (self.c.calls > 0) | (w.stream_extra_latency > 0) | w.mutating
        self._post_cpu_s = np.where(down, w.stream_cpu * self.c.q.post_share, 0.0)
        self._loop_cpu_s = np.where(loop, self.st.loopback_cpu, 0.0)
        steps, k, S, R1 = cp.steps, cp.k, len(names), self.c.R + 1
        self.rec_arr = np.zeros((steps, k, S, R1))      # attempts arriving (attempt 0: the clients' own)
        self.rec_rej = np.zeros((steps, k, S))          # share rejected (429)
        self.rec_adm = np.zeros((steps, k, S))          # admitted
        self.rec_alive = np.zeros((steps, k, S))        # goroutines at the tick's end
        self.rec_alive_lb = np.zeros((steps, k, S))
        self.rec_waiting = np.zeros((steps, k, S))
        self.rec_ends = np.zeros((steps, k, S, 4))      # client ends by outcome
        self.rec_mem = np.zeros((steps, k))
        self._arr = np.zeros((k, S, R1))
        self._mem = np.zeros(k)
        self._apf = [comp for comp in cp.components if callable(getattr(comp, "apf_queue_wait", None))]

    def before_tick(self, cp, t0, t1) -> None:
        pass

    def arrivals(self, cp, t0):
        """The retries due this tick (a dead instance's go where its clients went)."""
        i, dt = cp._i, cp.dt
        due = self.c.retries_due(i).copy()
        live = self._live = cp.inst.serving
        if not live.all():
            dead = ~live
            moved = due[dead].sum(axis=0)                         # S x R+1
            if moved.any():
                due[dead] = 0.0
                if live.any():
                    base = (cp.cn.req_counts @ cp.rates)[live]
                    tot = base.sum(axis=0)
                    share = np.where(tot > 0, base / np.where(tot > 0, tot, 1.0), 1.0 / live.sum())
                    due[live] += share[:, :, None] * moved[None]
                else:                                            # nobody to retry against yet: next tick
                    self.c.retry_cal[min(i + 1, self.c.n - 1), 0] += moved
        self._arr = due
        self._retry_now = due[..., 1:].sum(axis=-1)
        return self._retry_now / dt

    def in_flight(self, cp, A, t0):
        """Requests holding a max-inflight slot as this tick starts (those that end in it free theirs).
        ``A`` holds every arrival of the tick: what is not a retry of ours is a first attempt."""
        c = self.c
        self._arr[..., 0] = np.maximum(A * cp.dt - self._retry_now, 0.0)
        return np.maximum(c.alive - c.cal[min(cp._i, c.n - 1), :, :, c.G_END], 0.0)

    def admission(self, cp, A, t0):
        return None

    def extra_cpu(self, cp, adm, t0):
        dt = cp.dt
        return self.c.post_cpu_due(cp._i) + adm @ (self._loop_cpu_s - self._post_cpu_s) * dt

    def latency(self, cp, adm, t0):
        i = cp._i
        wait = cp.inst.backlog / cp.inst.cores
        extra = None
        if self._apf and self.pol.deadline:
            extra = sum(np.asarray(comp.apf_queue_wait(cp), dtype=float) for comp in self._apf)
        rej = cp.rej
        n = self.c.step(i, self._arr, rej, wait, self._live, extra_wait=extra)
        self.rec_arr[i] = self._arr
        self.rec_rej[i] = rej
        self.rec_adm[i] = n
        return self.c.path.client_end - cp.lat

    def memory(self, cp, adm, t0):
        c = self.c
        self._mem = c.alive @ self.st.memory + c.alive_lb @ np.full(self.st.cpu.size, self.st.loopback_memory)
        return self._mem

    def after_tick(self, cp, t0, t1) -> None:
        i = cp._i
        c = self.c
        self.rec_ends[i] = c.end_tick(i, cp.inst.serving)
        self.rec_alive[i] = c.alive
        self.rec_alive_lb[i] = c.alive_lb
        self.rec_waiting[i] = c.waiting
        self.rec_mem[i] = self._mem

    def summary(self, cp) -> dict:
        c = self.c
        return {"requests_" + k: v for k, v in c.totals.items()} | {
            "goroutine_outlives_client_max_s": c.max_outlive,
            "requests_in_flight_at_end": c.in_flight(),
        }

    # after the run -------------------------------------------------------------------------
    def series(self, n: int) -> dict:
        """The per-tick, per-instance series (``SERIES``), each (ticks x instances), from the records."""
        c = self.c
        ends = self.rec_ends[:n]
        out = {
            "goroutines": (self.rec_alive[:n] + self.rec_alive_lb[:n]).sum(axis=2),
            "request_memory_bytes": self.rec_mem[:n],
            "waiting": self.rec_waiting[:n].sum(axis=2),
            "admitted": self.rec_adm[:n].sum(axis=2),
            "retries": self.rec_arr[:n, ..., 1:].sum(axis=(2, 3)),
            "rejected": (self.rec_arr[:n].sum(axis=-1) * self.rec_rej[:n]).sum(axis=2),
            "wasted_cpu": c.cal[:n, :, :, c.WASTE].sum(axis=2),
            "post_cpu": c.cal[:n, :, :, c.POST_CPU].sum(axis=2),
            "lost": c.lost_at[:n].sum(axis=2),
        }
        for code in (ANSWERED, FAILED, TIMED_OUT, CANCELLED):
            out[OUTCOMES[code]] = ends[..., code].sum(axis=2)
        return out

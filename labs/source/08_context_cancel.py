# %% [markdown]
# # Lab 8: context-aware request handling (goroutines and memory that outlive their clients)
#
# **The article, section 6.** Serving a request may call out: to etcd, to admission and
# authentication webhooks, even to the API server itself (loopback, e.g. service-account
# authentication). "If the client has given up (cancelled or timed out) but the server keeps
# working for it, goroutines and resources pile up; and clients, being level-triggered, retry at
# once, so the pile grows until the API server **OOMs and crashes**." The fix: propagate the
# request's context and stop downstream work when the client is gone. Admission and webhooks
# became context-aware in **Kubernetes 1.16** (the bug report is kubernetes/kubernetes issue
# #78783, by the article's authors).

# %% [markdown]
# **Learning objectives.** After this lab you can
# - follow a request through an API server (loopback, CPU, admission webhooks, etcd) and say
#   which stage keeps running after its client has gone, and why a queued goroutine cannot be
#   stopped;
# - predict, with Little's law, how many goroutines a slow dependency holds with and without
#   cancellation;
# - explain why the max-inflight filter caps the orphans, and what the orphans then cost;
# - compute the deadline of a webhook call upstream today (`min(deadline, timeoutSeconds)`).
#
# **Prerequisites.** Lab 6 (the control-plane core: API servers with CPU and memory, OOM kill and
# CrashLoopBackOff, 20,000 clients); [max-inflight](../docs/glossary.md#max-inflight) and a
# [429](../docs/glossary.md#429); [Little's law](../docs/glossary.md#littles-law) (requests in a
# system = arrival rate x time in it); a [goroutine](../docs/glossary.md#goroutine) (Go's
# lightweight thread, a few KB of stack).
#
# **Time.** About 45 minutes: 10 reading, 20 with the dashboard, 15 for the exercises.

# %% [markdown]
# The model is the **control-plane core** of lab 6 (3 API servers, 10k kubelets, 10k kube-proxies,
# the controllers) with the **request path** as a component: per API server and request stream,
# the requests in flight are *cohorts* (all requests of one tick share their conditions), each
# holding a goroutine and its memory until it ends. Kubelets wait 10 s (`?timeout=10s`), then
# retry at once, up to 5 times. At minute 5 an admission webhook on pod and workload writes
# becomes slow: each call takes 20 s, for 5 minutes.

# %%
from kscale_lab.labs.context_cancel import LAB as lab
from kscale_lab.viz import load_bokeh
from kscale_lab.viz.context_cancel import ContextCancelDashboard

# %%
load_bokeh()

# %% [markdown]
# ## Predict first
# During the slow-webhook incident, without cancellation (`off`) and with it (`article`):
# 1. How many times more goroutines do the slowed streams hold without cancellation than with it?
# 2. Is an API server OOM-killed without cancellation (64 GiB each)?
# 3. How many times more answers per second reach a waiting client with cancellation?
#
# Write your guesses before you run the next cells:

# %%
my_guess = {"goroutines_off_over_article": None,  # a ratio, e.g. 3.0
            "crashes_off": None,                  # "yes" or "no"
            "goodput_gain_article": None}         # a ratio, e.g. 1.5

# %% [markdown]
# ## Toggle
# Each change reruns the whole model (30 simulated minutes, 10k nodes). Flip the switch; make the
# webhook slower than its timeout; make clients wait longer than the webhook; let the webhook
# match every write; disable the max-inflight limits; shrink the machine.

# %%
# NBVAL_IGNORE_OUTPUT
dash = ContextCancelDashboard()
dash

# %% [markdown]
# Every widget has a Python handle. The three settings, same incident:

# %%
# NBVAL_CHECK_OUTPUT
runs = {}
for setting in ["off", "article", "upstream"]:
    dash.controls["switch"].value = setting
    runs[setting] = dash.result
    s = dash.result.summary
    print(f"{setting:>8}: {s['affected_goroutines_steady']:6,.0f} goroutines on the slowed streams, "
          f"{s['goodput_during_per_s']:6,.0f} answers/s to waiting clients, {s['rejected_during_per_s']:6,.0f} "
          f"429s/s, {s['wasted_cpu_cores_during']:.3f} cores for clients already gone, "
          f"{s['apiserver_crashes']} OOM kills")
dash.controls["switch"].value = "off"

# %% [markdown]
# Your guesses beside the model:

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.exercises import compare_guess
compare_guess(my_guess, lab)

# %% [markdown]
# ## Little's law, measured
# In a steady state, the requests in a system are its arrival rate times the time each spends in
# it. With cancellation a request that cannot finish is held for its client's timeout (10 s) plus
# the cancellation delay (0.1 s); without, for the webhook's whole 20 s. The model counts the
# goroutines; beside them, the admitted arrival rate x the client's timeout, both measured over
# the incident's steady second half:

# %%
# NBVAL_CHECK_OUTPUT
for setting, res in runs.items():
    s = res.summary
    print(f"{setting:>8}: {s['affected_goroutines_steady']:6,.0f} goroutines = "
          f"{s['affected_goroutines_steady'] / s['little_product']:.3f} x ({s['affected_arrivals_per_s_steady']:.0f}/s "
          f"x {s['client_timeout_affected_s']:.0f} s = {s['little_product']:,.0f})")

# %% [markdown]
# ## Why nothing crashes here, and what it takes
# The **max-inflight filter** (`--max-mutating-requests-inflight`, 1,000 per server in a large
# GCE cluster) sits *inside* the timeout filter in the handler chain, so an orphan keeps its slot
# until its goroutine returns: the orphans are capped, and the slots they hold are slots new
# requests cannot have (the 429s above; lost goodput). 1,000 orphans of 100 KB hold 0.1 GB.
#
# Remove the cap (`0` disables it) and let the webhook match every write, node Leases included (a
# catch-all policy webhook): the orphans pile up. On a smaller machine, that is the article's crash.

# %%
# NBVAL_CHECK_OUTPUT
pile = {"max_requests_inflight": 0, "max_mutating_requests_inflight": 0,
        "webhook_streams": "lease node_status pod_status controller_write pod_bind"}
for setting in ["off", "article"]:
    s = lab.run(setting, pile).summary
    print(f"{setting:>8}: peak {s['goroutines_peak']:8,.0f} request goroutines, "
          f"{s['request_memory_peak_bytes'] / 2**30:5.1f} GiB held by requests, memory peak "
          f"{s['memory_peak_share'] * 64:5.1f} GiB of 64")

# %%
# NBVAL_CHECK_OUTPUT
small = dict(pile, apiserver_memory_limit_bytes=12 * 2**30)
for setting in ["off", "article"]:
    r = lab.run(setting, small)
    kills = r.events[r.events.event == "OOMKilled"]
    print(f"{setting:>8} on 12 GiB: {len(kills)} OOM kills, {r.summary['requests_lost']:,.0f} requests lost, "
          f"memory after the incident {r.summary['memory_after_share']:.0%} of the limit")

# %% [markdown]
# ## When does cancellation matter?
# A slow **etcd** makes every write wait, yet etcd answers "request timed out" after its own
# request timeout (about 7 s), before a kubelet gives up (10 s): no goroutine outlives its
# client, and the three settings behave the same. Only clients more impatient than etcd make
# orphans:

# %%
# NBVAL_CHECK_OUTPUT
no_cap = {"max_requests_inflight": 0, "max_mutating_requests_inflight": 0}
for timeout in [10.0, 3.0]:
    line = []
    for setting in ["off", "article"]:
        s = lab.run(setting, dict(no_cap, incident="etcd", client_timeout=timeout)).summary
        line.append(f"{setting} {s['affected_goroutines_steady']:6,.0f}")
    print(f"clients wait {timeout:4.0f} s: goroutines on writes during the slow etcd: " + ", ".join(line))

# %% [markdown]
# ## The article beside the lab
# Each figure is computed by the model; the band recomputes it with each assumption at the ends of
# its plausible range. The crash row does not hold at this cluster's scale: the note says what it
# would take.

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.claims import show_claims
print(show_claims("context-cancel"))

# %% [markdown]
# ## Upstream today
# - **Kubernetes 1.16** (kubernetes/kubernetes PR #81602, "Plumb context timeout to admission
#   webhooks"): admission receives the request's `context.Context`, and a webhook call uses the
#   lesser of the context's deadline and the webhook's `timeoutSeconds`.
# - **About 1.21** (PR #96061, merged as #96901, "plumb context with request deadline"): the
#   deadline is set as soon as the request arrives, from `?timeout=` (client-go sends its timeout
#   there) or `--request-timeout` (60 s); the timeout filter, admission and the storage layer (down
#   to the etcd client) use that one context
#   (`staging/src/k8s.io/apiserver/pkg/endpoints/filters/request_deadline.go`). The timeout filter
#   answers **504** when it expires (`pkg/server/filters/timeout.go`); a handler that is still
#   running logs "post-timeout activity".
# - **admissionregistration.k8s.io/v1** webhooks: `timeoutSeconds` between 1 and 30, default
#   **10** (v1beta1: 30), `failurePolicy` default **Fail** (v1beta1: Ignore). The `upstream`
#   setting uses these.
# - **API Priority and Fairness** (lab 7) adds a queue-wait limit, `--request-timeout`/4 = 15 s,
#   before a request runs; it also keeps node Leases out of the pool that a slow webhook's
#   orphans fill.
# - Not fixed by any of this: a goroutine that is running or queued for CPU is not preempted by a
#   cancelled context; it stops at its next call (the model does the same).

# %% [markdown]
# ## Exercises
# Stuck? `hint(1, 1)` gives a direction, `hint(1, 2)` the method, `hint(1, 3)` nearly the answer.
#
# ### Exercise 1: how long may a webhook call take?
# A request's CPU before admission ends `elapsed` seconds after it arrived; then the API server
# calls a webhook that never answers. Return how long the call lasts, for a `setting` (`off`,
# `article` or `upstream`), the webhook's `timeout_seconds`, the client's `client_timeout` (None:
# the client sends no `?timeout=`) and the server's `request_timeout`. (In `article` the context
# is cancelled when the client leaves, but nothing bounds the call itself but its timeout.)

# %%
from kscale_lab.exercises.context_cancel import check_steady_goroutines, check_webhook_call_limit, hint


def webhook_call_limit(setting, timeout_seconds, client_timeout, request_timeout, elapsed):
    ### BEGIN SOLUTION
    if setting != "upstream":
        return timeout_seconds
    deadline = min(float("inf") if client_timeout is None else client_timeout, request_timeout)
    return max(0.0, min(timeout_seconds, deadline - elapsed))
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_webhook_call_limit(webhook_call_limit)

# %% [markdown]
# ### Exercise 2: how many goroutines does a slow webhook hold?
# `rate` requests per second call a webhook that takes `webhook_latency` seconds (its
# `timeoutSeconds` is `webhook_timeout`, failure policy Ignore); clients wait `client_timeout`
# seconds and do not retry; in `article` the context is cancelled `cancel_delay` seconds after the
# client leaves. Derive on paper, then write, the goroutines the stream holds once steady in each
# setting. The check runs the model's cohorts on several cases.

# %%
def steady_goroutines(setting, rate, client_timeout, webhook_latency, webhook_timeout, cancel_delay):
    ### BEGIN SOLUTION
    held = min(webhook_latency, webhook_timeout)
    if setting == "article":
        held = min(held, client_timeout + cancel_delay)
    elif setting == "upstream":
        held = min(held, client_timeout)
    return rate * held
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_steady_goroutines(steady_goroutines)

# %% [markdown]
# ## Summary
# - A request holds a goroutine and its memory until its handler returns; without cancellation it
#   returns when the slowest downstream call does, long after a 10 s client has left.
# - With the context propagated, a request is held for its client's timeout: by Little's law the
#   goroutines are the arrival rate x the timeout, whatever the webhook does.
# - The max-inflight filter caps the orphans (it is inside the timeout filter), so at this scale
#   they do not crash the server; they fill the slots and turn new requests into 429s.
#   Without a cap, a webhook on every write piles up GiBs of orphans: on a small machine, the
#   article's crash.
# - Cancellation matters when a dependency is bounded later than the client gives up (a webhook's
#   30 s); etcd's own 7 s timeout makes a slow etcd end before a kubelet gives up.
# - Upstream sets the deadline at arrival and gives v1 webhooks a 10 s timeout: the work stops at
#   the client's deadline even if no one tells the server the client has gone.

# %% [markdown]
# ## Check your understanding
# 1. Why does an orphan keep its max-inflight slot after the timeout filter answered 504?
# 2. With cancellation, what sets the number of goroutines a slow webhook holds: the webhook or the
#    clients? And without?
# 3. Why does a slow etcd produce no orphans in this cluster, and which clients would change that?
# 4. A request is queued for CPU when its client leaves. What does cancellation save, and what not?
# 5. What does upstream's request deadline add to the article's cancellation for client-go clients,
#    and for a client that abandons a request without closing its stream?
#
# ## Next
# Lab 9 (controller hot standby) is next; lab 7 (flow control) puts API Priority and Fairness on
# this same core. Back to the [tour](00_tour.ipynb).

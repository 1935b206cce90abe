# %% [markdown]
# # Lab 9: controller failover: leader election, hot standby and releasing the lease
#
# **The article, section 8.** "A controller at 10k nodes holds close to **1M objects**; fetching and
# deserialising them on restart took **minutes**." Alibaba's fix: the standby **pre-starts its
# informers** (its cache is already warm) and, on an upgrade, the leader **releases its leader
# Lease** so the standby takes over at once. Result: an interruption of **< 2 s** on upgrade; on a
# crash the standby waits for the lease to expire (**15 s** by default); no minutes-long re-sync,
# and less load on the API server during recovery. "Applies to the scheduler too."

# %% [markdown]
# **Learning objectives.** After this lab you can
# - explain client-go's leader election: one Lease, three durations (lease 15 s, renew deadline 10 s,
#   retry 2 s), and why a standby trusts only its *own* clock;
# - predict how long a cluster runs without a working kube-controller-manager or kube-scheduler after
#   an upgrade and after a crash, with cold and with warm standbys;
# - say what a warm standby costs (memory, watches, a re-list after each of its own restarts);
# - compare the article's fix with upstream today (kube-scheduler: warm and releases; kube-controller-manager:
#   cold, and releases only behind an alpha feature gate).
#
# **Prerequisites.** Lab 3 (List-Watch: an [informer](../docs/glossary.md#informer) lists, then
# watches) and lab 6 (the control-plane core: API servers, connections, the load of each client); the
# [Lease](../docs/glossary.md#lease) object; what [leader election](../docs/glossary.md#leader-election)
# is for.
#
# **Time.** About 45 minutes: 10 reading, 15 with the dashboard, 20 for the exercises.

# %%
from kscale_lab.labs.hot_standby import LAB as lab
from kscale_lab.viz import load_bokeh
from kscale_lab.viz.hot_standby import HotStandbyDashboard

# %%
load_bokeh()

# %% [markdown]
# ## How client-go elects a leader
# kube-controller-manager and kube-scheduler each run three replicas (one per control-plane node).
# Each replica runs client-go's `LeaderElector` on a Lease in `kube-system`:
# - the **leader** renews the Lease every `retryPeriod` (2 s); if it cannot renew within
#   `renewDeadline` (10 s) it stops leading and exits;
# - a **standby** reads the Lease every 2 to 4.4 s (`retryPeriod` jittered by 1.2) and notes, *on its own
#   clock*, when it last saw the record change; it may take the Lease only once `leaseDuration`
#   (15 s) has passed since then, and only with the resourceVersion it read (a second taker gets a
#   conflict);
# - with `ReleaseOnCancel` a leader that is stopped on purpose writes an **empty holder**: the next
#   standby to look takes the Lease at once.
#
# The lab runs exactly this algorithm (`kscale_lab.clients.leaderelection`). Here it is alone, 200
# handovers each way, with 2 ms requests:

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.labs.hot_standby import handovers
p = lab.resolve("article")
for kind in ["release", "crash"]:
    h = handovers(p, kind, latency=0.002)
    print(f"{kind:>7}: a standby holds the Lease {h.mean():.1f} s after the leader stopped on average "
          f"(fastest {h.min():.1f} s, slowest {h.max():.1f} s)")

# %% [markdown]
# ## Predict first
# The whole control plane now runs on the shared core (3 API servers, 10k kubelets and kube-proxies,
# 20 pods/s created and deleted). At minute 5 the three control-plane nodes are upgraded one after
# the other; at minute 20 both leaders crash. kube-controller-manager's informers hold 1M objects.
# 1. With the article's fix, how long is kube-controller-manager without a working leader during the
#    upgrade (the longest handover)?
# 2. ... and after the crash?
# 3. Without the fix (cold standbys, no release), how long after the crash?
# 4. How much memory does one warm kube-controller-manager standby hold?
# 5. With warm standbys, do the API servers serve no warm-up LIST at all after the crash?

# %%
my_guess = {"upgrade_interruption_with_fix_s": None,    # seconds
            "crash_interruption_with_fix_s": None,      # seconds
            "crash_interruption_without_fix_s": None,   # seconds
            "warm_standby_memory_gb": None,             # GB
            "warm_standby_spares_the_lists": None}      # "yes" or "no"

# %% [markdown]
# ## Toggle
# Each change reruns the model (30 simulated minutes). The top-left plot shows each replica's role:
# *leading* (dark blue), *leading but still listing* (vermillion: a cold standby that just won),
# *standby* (light blue), *listing before standing by* (orange: a warm standby after its own restart),
# stopped (grey). Use **show** to zoom on the upgrade or the crash. Then try the lease durations, the
# object count and the decode cost, and where the LISTs are served from.

# %%
# NBVAL_IGNORE_OUTPUT
dash = HotStandbyDashboard()
dash

# %% [markdown]
# What each setting does, per component (every number from the run):

# %%
# NBVAL_CHECK_OUTPUT
runs = {}
for setting in ["off", "article", "upstream"]:
    dash.controls["switch"].value = setting
    runs[setting] = s = dash.result
    for c, name in [("kcm", "kube-controller-manager"), ("scheduler", "kube-scheduler")]:
        sm = s.summary
        print(f"{setting:>8} {name:<23}: upgrade: longest {sm[c + '_upgrade_interruption_max_s']:5.1f} s "
              f"({sm[c + '_upgrade_handovers']} handovers); crash: {sm[c + '_crash_interruption_s']:5.1f} s")
dash.controls["switch"].value = "off"

# %% [markdown]
# Your guesses beside the model:

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.exercises import compare_guess
compare_guess(my_guess, lab)

# %% [markdown]
# ## Every handover, one by one
# The time without a working leader is the lease changing hands, plus (for a cold standby) the
# warm-up, plus the first work item. Without the fix the lease must expire; with it the released
# lease goes at the next try:

# %%
# NBVAL_CHECK_OUTPUT
cols = ["component", "event", "stopped_at", "released", "new_was_warm", "lease_taken_s", "warmup_s", "interruption_s"]
for setting in ["off", "article"]:
    print(setting)
    print(runs[setting].failovers[cols].round(2).to_string(index=False))

# %% [markdown]
# ## What waited, and what it cost
# While no kube-controller-manager works, ReplicaSets are not reconciled (their pods are not created)
# and nobody checks the nodes' health; while no kube-scheduler works, created pods wait. A warm standby
# pays for its speed: it holds every object decoded in memory and receives every watch event, and
# after each of *its own* restarts it lists everything again (off the critical path, but on the API
# servers all the same):

# %%
# NBVAL_CHECK_OUTPUT
for setting in ["off", "article"]:
    sm = runs[setting].summary
    print(f"{setting:>8}: after the crash: {sm['pending_pods_peak_crash']:.0f} pods waiting at most, "
          f"{sm['replicasets_not_reconciled_peak_crash']:.0f} ReplicaSets behind, "
          f"{sm['nodes_not_health_checked_peak_crash']:,.0f} nodes unchecked; LISTs: "
          f"{sm['list_apiserver_cpu_s_waited_crash']:.1f} API-server core-seconds the new leaders waited for, "
          f"{sm['list_apiserver_cpu_s_crash']:.1f} in all; standbys hold {sm['standby_memory_bytes'] / 1e9:.1f} GB "
          f"and {sm['standby_watch_share_of_apiserver_cpu']:.1%} of the API servers' CPU for their watches")

# %% [markdown]
# ## Where would "minutes" come from?
# The warm-up is counted from the scenario: kube-controller-manager lists every object (1M, 1.45 GB),
# one reflector per resource type; the Pods' reflector is the longest. The model's costs are
# today's (protobuf, the watch cache answering `resourceVersion=0`). Move the inputs and watch which
# bound sets the time:

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.clients.informers import controller_manager_resources, warm_up
for source in ["watch-cache", "etcd"]:
    for us in [5, 20, 100]:
        q = dict(p, informer_object_cpu=us * 1e-6)
        w = warm_up(controller_manager_resources(q), q, source=source, qps=q["kcm_kube_api_qps"],
                    burst=q["kcm_kube_api_burst"])
        print(f"{source:>11}, {us:>3} µs per object: {w.seconds:6.1f} s ({w.bound}), {w.requests:,} LIST requests, "
              f"API servers {w.apiserver_cpu:5.1f} core-s, etcd {w.etcd_cpu:4.1f} core-s")

# %% [markdown]
# ## One leader at a time: what the durations promise
# Clock *offsets* do not matter to the algorithm: every candidate compares durations on its own
# clock. Clock *rates* do. Below, a leader is cut off from the API servers at minute 1 (it keeps
# acting until its renew deadline runs out) while a standby's clock runs faster than its own. And
# client-go's own checks (`leaseDuration > renewDeadline > 1.2 x retryPeriod`) accept durations that
# leave no margin at all, as the last line shows. Exercise 3 asks how much faster is safe.

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.clients.leaderelection import ElectionConfig, run_election
for ld, rd, rp, fast in [(15, 10, 2, 1.2), (15, 10, 2, 2.0), (20, 18, 11, 1.0)]:
    worst = max(run_election(ElectionConfig(ld, rd, rp), 2, until=150.0, rates=[1.0, fast],
                             partitions=[(0, 60.0, 150.0)], seed=k).max_overlap(150.0) for k in range(10))
    print(f"lease {ld} s, deadline {rd} s, retry {rp} s, standby clock x{fast}: "
          f"two leaders at once for up to {worst:.1f} s (10 schedules)")

# %% [markdown]
# ## The article beside the lab
# Every figure is computed by the model. The interruptions are means over 200 handovers of the same
# election at the Lease request latency the control-plane run measured, plus what the new leader does
# before its first work item.

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.claims import show_claims
print(show_claims("hot-standby"))

# %% [markdown]
# ## Upstream today
# - **kube-scheduler** starts and syncs its informers *before* it enters the election
#   (`cmd/kube-scheduler/app/server.go`, unless `DelayCacheUntilActive` is set) and releases its Lease
#   on shutdown (`ReleaseOnCancel`, PR #100305): the article's hot standby, upstream.
# - **kube-controller-manager** creates its informers inside the leader callback
#   (`CreateControllerContext` in `OnStartedLeading`): its standbys are cold. PR #126640 (2024, "usually
#   within 2 seconds vs about 40 seconds") would have released the lock on termination; it was
#   closed. KEP-5366 (graceful leader transition) added the feature gate
#   `ControllerManagerReleaseLeaderElectionLockOnExit` (alpha in v1.36, off by default): tick it in the
#   dashboard with the upstream setting. It releases the lease; the standby is still cold.
# - controller-runtime exposes the same switch to operators as `LeaderElectionReleaseOnCancel`.
# - Look at the upstream row above: the scheduler hands over in about a second on upgrade, the
#   controller manager needs the lease to expire and then lists a million objects.

# %% [markdown]
# ## Exercises
# ### Exercise 1: the acquire rule
# Write client-go's decision: may candidate `me` take the Lease now? `record` has `holder`,
# `renew_time` (on the holder's clock) and `lease_duration_seconds`; `observed_time` is when `me` last
# saw the record change, and `now`, both on `me`'s clock. Stuck? `hint(1, 1)`, then levels 2 and 3.

# %%
from kscale_lab.exercises.hot_standby import check_acquire_rule, check_safe_skew, check_worst_takeover, hint

def may_acquire(record, observed_time, now, me):
    ### BEGIN SOLUTION
    if record["holder"] in ("", me):
        return True
    return not (observed_time + record["lease_duration_seconds"] > now)
    ### END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check_acquire_rule(may_acquire)

# %% [markdown]
# ### Exercise 2: the worst case after a crash
# Requests take no time. The leader crashes. What is the longest a standby can take to hold the Lease,
# as a function of the three durations? Derive it on paper first (what may the standby not have seen
# yet when the leader crashed?), then write it. The check runs the election model too.

# %%
def worst_takeover(lease_duration, renew_deadline, retry_period):
    ### BEGIN SOLUTION
    return lease_duration + 2 * 2.2 * retry_period
    ### END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check_worst_takeover(worst_takeover)

# %% [markdown]
# ### Exercise 3: how much clock skew is safe?
# A leader's clock runs at rate 1, a standby's at rate 1 + s. The leader loses its connection to the
# API servers. What is the largest s for which the two can never act at once, as a function of the
# durations?

# %%
def safe_skew(lease_duration, renew_deadline, retry_period):
    ### BEGIN SOLUTION
    return lease_duration / (renew_deadline + retry_period) - 1
    ### END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check_safe_skew(safe_skew)

# %% [markdown]
# ## Summary
# - The lease timing sets the floor: a released Lease goes at the standby's next try (about a second),
#   a crashed leader's only after `leaseDuration` on the standby's clock (about 15 s).
# - A cold standby adds its warm-up: listing and decoding everything it watches, a million objects for
#   kube-controller-manager, while nothing is reconciled and no node is checked.
# - A warm standby removes the warm-up from the failover but not from the cluster: it holds every
#   object in memory, receives every event, and lists everything again after its own restarts.
# - One leader at a time is a timing promise, not a lock: it needs `leaseDuration > renewDeadline +
#   retryPeriod` and clocks whose rates differ by less than that ratio.
# - Upstream did it for kube-scheduler; kube-controller-manager is still cold and releases only behind
#   an alpha feature gate.
#
# ## Check your understanding
# 1. Why does a standby compare against the time *it* saw the record change, not the record's `renewTime`?
# 2. Why is the crash failover between about 13 and 24 s, not exactly 15 s?
# 3. With warm standbys, why is the LIST load on the API servers after a crash not zero?
# 4. What happens to pods waiting to be scheduled when kube-controller-manager and kube-scheduler crash
#    together, and why do fewer pods wait than when only the scheduler crashes?
# 5. Name a valid client-go configuration under which two leaders can act at once with perfect clocks.
#
# ## Next
# The capstone runs all nine mechanisms on one cluster. Back to the [tour](00_tour.ipynb).

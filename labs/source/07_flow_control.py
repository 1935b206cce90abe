# %% [markdown]
# # Lab 7: preventing request floods
#
# **The article, section 7.** Only the max-inflight limits existed (the most reads and writes an
# API server runs at once). Two incidents broke a 10,000-node cluster anyway:
#
# - **A restart or an upgrade of the API servers.** Every client reconnects and re-lists at once.
#   While an API server's watch cache is not ready, the LISTs **fall through to etcd**, saturating
#   the network and OOMing the API servers and etcd; a crashed API server invites still more
#   requests: an **avalanche**. The fix: **reject expensive requests (LIST) with 429 until the cache
#   is ready**; clients wait and retry. "The bottleneck becomes network I/O between API server and
#   clients."
# - **A buggy client.** A DaemonSet bug multiplies by the node count: tens of thousands of nodes
#   kept listing pods and crashed the API server. The fix: **rate limits by User-Agent**, configured
#   at runtime from the monitoring dashboards; only with a healthy API server can the DaemonSet be
#   fixed and rolled out.
#
# Upstream Kubernetes solved both differently: KEP-4568 (resilient watch cache initialisation) and
# **API Priority and Fairness** (KEP-1040). This lab puts all three on the shared control-plane core
# of lab 6: 3 API servers, 10,000 kubelets and 10,000 kube-proxies with one connection each, the
# controllers, etcd.

# %% [markdown]
# **Learning objectives.** After this lab you can
# - explain why a LIST that meets an empty watch cache costs etcd, the network and the API server
#   a scan of every pod, and how 429-until-ready and KEP-4568 avoid it;
# - tell which resource binds while 20,000 clients re-list (CPU, memory, a network link, etcd,
#   APF's seats), and why it depends on the inflight limit;
# - classify a request with FlowSchemas, deal its flow's shuffle-sharding hand, and compute a
#   priority level's seats and a LIST's width;
# - say why upstream isolates a buggy DaemonSet by its ServiceAccount and refused User-Agent limits.
#
# **Prerequisites.** Lab 6 (the control-plane core: connections, the load balancer's health checks,
# OOM kills and CrashLoopBackOff); lab 3 (the [watch cache](../docs/glossary.md#watch-cache), re-list
# on [410 Gone](../docs/glossary.md#410-gone)); lab 4 ([paging](../docs/glossary.md#paging-limit-continue)
# and [quorum reads](../docs/glossary.md#quorum-read) from etcd); [max-inflight](../docs/glossary.md#max-inflight)
# and [429](../docs/glossary.md#429). New here: [APF](../docs/glossary.md#apf),
# [FlowSchema](../docs/glossary.md#flowschema), [priority level](../docs/glossary.md#priority-level),
# [shuffle sharding](../docs/glossary.md#shuffle-sharding), [seat](../docs/glossary.md#seat).
#
# **Time.** About 60 minutes: 15 reading, 20 with the dashboard, 25 for the exercises.

# %%
from kscale_lab.labs.flow_control import LAB as lab
from kscale_lab.viz import load_bokeh
from kscale_lab.viz.flow_control import FlowControlDashboard

# %%
load_bokeh()

# %% [markdown]
# ## Predict first
# At minute 5 all three API servers restart. Clients know the servers' addresses, so they reconnect
# as soon as a server listens, before its watch caches are filled. At minute 15 a DaemonSet (one pod
# per node) starts LISTing all 200,000 pods every 5 minutes.
# 1. Without any protection (`off`), does an API server crash (OOM) after the restart?
# 2. How many GB per second does etcd send to the API servers while their caches fill?
# 3. With the article's fix (LISTs wait for the cache), which resource is busiest while the 20,000
#    clients re-list: the API servers' CPU, their memory, the network from etcd, the network to the
#    clients, or etcd's CPU?
# 4. With API Priority and Fairness (`upstream`), what share of the kubelets' Lease renewals
#    succeed while the DaemonSet runs?

# %%
my_guess = {"restart_crashes_off": None,            # True or False
            "etcd_gb_per_s_during_fill_off": None,  # GB/s, e.g. 1.0
            "busiest_resource_article": None,       # "apiserver cpu", "apiserver memory", "network etcd->apiserver",
                                                    # "network apiserver->clients" or "etcd cpu"
            "lease_success_ds_upstream": None}      # a share, 0 to 1

# %% [markdown]
# ## Toggle
# The dashboard runs the whole model (30 simulated minutes, 10k nodes) each time you change a
# control; a run it has seen before comes back at once. Flip the switch; then let the clients find
# the servers through a health-checked load balancer, raise `--max-requests-inflight` to the 3000
# large-cluster guides recommend, slow the operator down, or take `workload-low`'s shares away.

# %%
# NBVAL_IGNORE_OUTPUT
dash = FlowControlDashboard()
dash

# %% [markdown]
# Every widget has a Python handle; a cell can do what a click does:

# %%
# NBVAL_CHECK_OUTPUT
runs = {}
for setting in ["off", "article", "upstream"]:
    dash.controls["switch"].value = setting
    runs[setting] = dash.result
    s = dash.result.summary
    print(f"{setting:>8}: restart: {s['restart_crashes']} OOM kills, recovered after {s['restart_recovery_s']:.0f} s, "
          f"{s['restart_relists_from_etcd']:.0f} re-lists served by etcd; DaemonSet: {s['ds_crashes']} OOM kills, "
          f"{s['ds_lease_success_share']:.1%} of Lease renewals ok")
dash.controls["switch"].value = "off"

# %% [markdown]
# Your guesses beside the model:

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.exercises import compare_guess
compare_guess(my_guess, lab)

# %% [markdown]
# ## What a LIST costs when the cache is empty
# A kubelet re-lists *the pods of its node*: 20 pods, a field selector `spec.nodeName`, `limit=500`.
# The watch cache answers from its node-name index. etcd has no such index: the API server pages
# through every pod, 500 at a time, each page a quorum read, and keeps the 20 that match
# (`kscale_lab.etcd.range_reads.plan_list`, the loop of `store.go` `GetList`).

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.apiserver.relists import relist_profiles
from kscale_lab.clients.workload import build_workload
from kscale_lab.costs import COST_PARAMS, Costs

p = lab.resolve("off")
work = build_workload(p, Costs.from_params({k: v for k, v in p.items() if k in COST_PARAMS}), "article")
for cls, pr in zip(work.classes, relist_profiles(work, p, Costs.from_params({k: v for k, v in p.items()
                                                                              if k in COST_PARAMS}))):
    if pr.lists:
        print(f"{cls.name:>24} x{cls.count:>6,}: from the cache {pr.cache_bytes / 1e6:8.2f} MB sent; from etcd "
              f"{pr.etcd_ranges:>5} ranges, {pr.etcd_bytes / 1e6:8.1f} MB read, {pr.etcd_cpu:6.2f} etcd core-s, "
              f"{pr.etcd_apiserver_cpu:6.2f} API server core-s")

# %% [markdown]
# ## Which resource binds?
# During each restart's recovery, the mean use of each resource on its busiest instance (demand over
# capacity; for APF, the busiest priority level's seats over its limit):

# %%
# NBVAL_CHECK_OUTPUT
for setting, r in runs.items():
    u = r.parts["restart_utilisation"]
    print(f"{setting:>8}: " + ", ".join(f"{k} {v:.0%}" for k, v in u.items())
          + f"  -> {r.summary['restart_binding_resource']}")

# %% [markdown]
# The article says the network binds once LISTs wait for the cache. Here the CPU (encode and write a
# re-list: ~28 ns per byte) and a 10 Gbit/s link (0.8 ns per byte for 32 cores) are nearly matched:
# which one wins follows the link speed you assume (`apiserver_network_bytes_per_s`).
#
# ### How much do the inflight limits decide?
# `--max-requests-inflight` bounds what the LISTs in flight hold. A re-list from etcd holds one page;
# a re-list from the cache holds its whole response (a kube-proxy's is 23 MB) until it is written.

# %%
# NBVAL_CHECK_OUTPUT
for inflight, mutating in [(400, 200), (3000, 1000)]:
    for setting in ["off", "article", "upstream"]:
        s = lab.run(setting, {"incident": "restart", "max_requests_inflight": inflight,
                              "max_mutating_requests_inflight": mutating}).summary
        print(f"--max-requests-inflight={inflight:>4} {setting:>8}: {s['restart_crashes']:>2} OOM kills, "
              f"recovered after {s['restart_recovery_s']:>5.0f} s, memory peak {s['apiserver_memory_peak_share']:.0%} "
              f"of the limit")

# %% [markdown]
# ## API Priority and Fairness: who is which flow?
# Each client class and request kind matched against the suggested FlowSchemas (lowest
# `matchingPrecedence` first). A flow is (FlowSchema, distinguisher): 10,000 kubelets are 10,000
# flows (by user, `system:node:<name>`); all 10,000 kube-proxies are **one** flow (their ServiceAccount
# in `kube-system`, by namespace); so are all pods of the buggy DaemonSet (one ServiceAccount).

# %%
# NBVAL_CHECK_OUTPUT
apf = runs["upstream"].parts["apf"]
for g in apf.groups:
    print(f"{g.name:>48}: priority level {apf.levels[g.level].name:<15} {g.flows:>7,.0f} flows")

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.exercises.flow_control import demo_hands
print(demo_hands([("service-accounts", "system:serviceaccount:monitoring:node-agent"),
                  ("service-accounts", "system:serviceaccount:operators:operator-0"),
                  ("service-accounts", "system:serviceaccount:operators:operator-1")]))

# %% [markdown]
# A flow's hand is 6 of `workload-low`'s 128 queues. The DaemonSet can fill only its own hand (6 x 50
# requests); a request of another flow finds a short queue in its own hand unless the two hands
# coincide, and fair queuing gives every busy queue the same share of the level's seats.
#
# ## The article beside the lab
# Each figure is computed by the model, never typed in. Rows whose value depends on an assumption
# are *conditional*; the notes say which one.

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.claims import show_claims
print(show_claims("flow-control"))

# %% [markdown]
# ## Upstream today
# - **KEP-4568**, resilient watch cache initialisation (`ResilientWatchCacheInitialization`, beta and on
#   since 1.31): while a resource's cache fills, WATCHes and selective LISTs get **429**, unselective
#   LISTs with a `limit` go to etcd (their cost is bounded), GETs go to etcd. The post-start hook
#   `WatchCacheInitializationPostStartHook` (beta, off by default) keeps `/readyz` false until the
#   built-in caches are filled (`watch_cache_init_post_start_hook`).
# - **API Priority and Fairness** (GA in 1.29) replaced max-inflight: ServerCL = the two inflight
#   flags' sum, split among priority levels by shares, lent and borrowed every 10 s; flows are
#   shuffle-sharded into queues and served by fair queuing; a LIST takes up to 10 seats.
# - **User-Agent limits were rejected upstream.** kubernetes/kubernetes PRs #115992 (a FlowSchema
#   match on User-Agent with a token bucket), #116322 and #132331 were closed without merge: the
#   User-Agent is chosen by the client, so a buggy or hostile client changes it. The upstream way is a
#   FlowSchema on the identity (here the DaemonSet's ServiceAccount) pointing at a small or Reject
#   priority level; by default the suggested `service-accounts` schema already isolates it.
# - The price: APF bounds concurrency, not CPU or bytes. A 10-seat LIST of 200,000 pods is 500 MB;
#   and the 10,000 kube-proxies' re-lists all share one flow's fair share after a restart.

# %% [markdown]
# ## Exercises
# ### Exercise 1: deal a flow's hand
# Shuffle sharding deals `hand_size` distinct queues out of `queues` from the flow's 64-bit hash.
# Read the hash as a number in a mixed base (digits base `queues`, `queues - 1`, ...); the i-th digit
# picks the card among those still in the deck, counting in ascending order. Write it. Stuck?
# `hint(1, 1)` (then `hint(1, 2)`, `hint(1, 3)`).

# %%
from kscale_lab.exercises.flow_control import check_deal, check_fair_share, check_seats, hint

def deal(hash_value, queues, hand_size):
    ### BEGIN SOLUTION
    h, dealt = hash_value, []
    for i in range(hand_size):
        card = h % (queues - i)
        h //= queues - i
        for c in sorted(dealt):
            if c <= card:
                card += 1
        dealt.append(card)
    return dealt
    ### END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check_deal(deal)

# %% [markdown]
# ### Exercise 2: fair queuing's share
# When a priority level's seats are short, fair queuing serves every busy flow at the same rate, so a
# flow gets an equal share `f` of the seats unless it wants less. Given each flow's demand (seats) and
# the level's seats, return what each flow gets. Why does this make the DaemonSet's single flow
# harmless to the 10,000 kubelets' flows? Stuck? `hint(2, 1)`.

# %%
def fair_share(demands, seats):
    ### BEGIN SOLUTION
    order = sorted(range(len(demands)), key=lambda i: demands[i])
    out, left = [0.0] * len(demands), float(seats)
    for n, i in enumerate(order):
        f = left / (len(order) - n)
        out[i] = min(demands[i], f)
        left -= out[i]
    return out
    ### END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check_fair_share(fair_share)

# %% [markdown]
# ### Exercise 3: a level's seats and a LIST's width
# On paper first: with ServerCL seats split by the levels' shares, what is a level's nominal limit? How
# many seats does a LIST from the watch cache over `stored` objects take, and how many such LISTs run
# in the level at once? Write it as a function of `(server_cl, shares, level, stored)`, returning
# `(nominal, seats, at_once)`. Stuck? `hint(3, 1)`.

# %%
import math

def seats(server_cl, shares, level, stored):
    ### BEGIN SOLUTION
    nominal = math.ceil(server_cl * shares[level] / sum(shares.values()))
    width = min(max(math.ceil(stored / 100), 1), 10)
    return nominal, width, nominal // width
    ### END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check_seats(seats)

# %% [markdown]
# ## Summary
# - A re-list that meets an empty watch cache becomes a paged quorum read of every pod: etcd's CPU and
#   the etcd-to-API-server link fill up, and the cache's own fill waits behind them.
# - 429 until the cache is ready (the article) and KEP-4568 (upstream) keep those LISTs off etcd; what
#   remains is serving 20,000 re-lists from the caches: CPU and the link to the clients.
# - Max-inflight bounds requests, not bytes: how much memory the LISTs in flight hold is the limit
#   times their size, and with the limits large clusters use, that is what crashes a server.
# - A per-User-Agent limit saves the cluster only after someone sets it; APF isolates the DaemonSet
#   by its ServiceAccount (one flow, ten seats per LIST) while the kubelets' Leases keep the node-high
#   level's seats.
#
# ## Check your understanding
# 1. Why does a kubelet's LIST of 20 pods cost etcd 200,000 pods when the cache is not ready?
# 2. With a `/readyz`-checked load balancer, why do no LISTs reach an empty cache in this lab?
# 3. Why does raising `--max-requests-inflight` from 400 to 3000 turn a stall into a crash loop?
# 4. Why are all 10,000 kube-proxies one APF flow, and what does that do to their re-lists?
# 5. Why did upstream refuse to match FlowSchemas on the User-Agent?
#
# ## Next
# Lab 8, context cancellation (article section 6, not written yet), follows what happens to the work
# of a client that has given up; meanwhile the [capstone](10_capstone.ipynb) puts every switch on one
# cluster. Back to the [tour](00_tour.ipynb).

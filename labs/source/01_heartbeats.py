# %% [markdown]
# # Lab 1: node heartbeats at 10,000 nodes
#
# **The article, section 2.** Every kubelet used to update its Node object every **10 s**. A Node
# object is about **15 KB** (dozens of images, volumes). etcd keeps history, so at 10k nodes this
# produced about **1 GB of transaction log per minute**, and (de)serialising Node objects took
# **more than 80 % of the API server's CPU**. The fix (KEP-0009, on by default in Kubernetes 1.14):
# a tiny **Lease** object per node, renewed every 10 s, and the Node status only every **60 s**.
# It "took clusters from ~1,000 to several thousand nodes".
#
# In this lab the kubelets, the API servers, etcd's MVCC log and the node lifecycle controller are
# modelled with their real mechanisms; you toggle the heartbeat and watch etcd, the API servers
# and node health.

# %% [markdown]
# **Learning objectives.** After this lab you can
# - compute the etcd transaction log (WAL) a fleet of kubelets writes, from the object size, the
#   interval and the node count, and check it against the model;
# - explain why a Lease cuts **bytes**, not **requests**, and what that does to etcd and to the API
#   servers' CPU;
# - say how an overloaded API server turns into healthy nodes marked `NotReady` (the node lifecycle
#   controller's grace period), and derive the CPU at which it starts;
# - name the flags involved (`nodeStatusUpdateFrequency`, `nodeStatusReportFrequency`,
#   `--node-monitor-grace-period`, `--quota-backend-bytes`).
#
# **Prerequisites.** The tour ([00_tour](00_tour.ipynb)); what etcd's [WAL](../docs/glossary.md#wal),
# [MVCC](../docs/glossary.md#mvcc) history and [compaction](../docs/glossary.md#compaction) are
# (the glossary has a paragraph on each); reading a numpy expression.
#
# **Time.** About 45 minutes: 10 reading, 15 with the dashboard, 20 for the exercises.

# %%
from kscale_lab.labs.heartbeats import LAB as lab
from kscale_lab.viz import load_bokeh
from kscale_lab.viz.heartbeats import HeartbeatDashboard, onset_figure, scale_figure
from bokeh.plotting import show

# %%
load_bokeh()

# %% [markdown]
# ## Predict first
# Write your guesses down before you run the dashboard:
# 1. At 10,000 nodes with Node-status heartbeats (15 KB every 10 s), how many GB of etcd
#    transaction log per minute? And with Lease (Lease every 10 s, status every 60 s)?
# 2. What fills up first, the API servers' CPU (3 servers x 32 cores) or etcd's quota?
# 3. Does a Lease reduce the number of writes etcd receives, or only their size?

# %%
# Your guesses before you run anything below (None = no guess yet)
my_guess = {
    "wal_gb_per_min_node_status": None,  # question 1: GB of etcd WAL per minute, Node-status heartbeats
    "wal_gb_per_min_lease": None,        # question 1: the same with Lease
    "fills_first": None,                 # question 2: "apiserver cpu", "etcd quota" or "neither"
    "lease_reduces_writes": None,        # question 3: True (fewer writes) or False (only smaller ones)
}

# %% [markdown]
# ## Toggle
# The dashboard runs the whole model (10 simulated minutes) each time you change a control.
# Flip **heartbeats** between `off`, `article` and `upstream`; then try 20,000 nodes, a 40 KB Node
# object, a 2 GiB quota, or very few API server cores.

# %%
# NBVAL_IGNORE_OUTPUT
dash = HeartbeatDashboard()
dash

# %% [markdown]
# Your guesses beside the model (its default scenario):

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.exercises import compare_guess
compare_guess(my_guess, lab)

# %% [markdown]
# Every widget has a Python handle: a cell can do what a click does.

# %%
# NBVAL_CHECK_OUTPUT
for setting in ["off", "article", "upstream"]:
    dash.controls["switch"].value = setting
    s = dash.result.summary
    print(f"{setting:>8}: {s['etcd_wal_bytes_per_min'] / 1e9:5.2f} GB/min of WAL, {s['etcd_revisions_per_s']:6.0f} revisions/s, "
          f"{100 * s['apiserver_cpu_heartbeat_share']:3.0f} % of API server CPU on heartbeats")
dash.controls["switch"].value = "off"

# %% [markdown]
# Look at question 3 again: the Lease setting sends **more** write requests (a Lease every 10 s *and*
# a status every 60 s), and etcd's revision rate goes up, not down. What falls is the **bytes**: the
# log, the history kept until compaction, and the CPU spent decoding and encoding Node objects.
# A real etcd measured on this kind of machine shows the same ([data/etcd_real](../data/etcd_real/README.md),
# section 3: 1,000 vs 1,167 writes/s, 0.91 vs 0.18 GB/min of WAL at 10k nodes).

# %% [markdown]
# ## The article beside the lab
# Each figure below is computed by the model, never typed in. `max_nodes` is the largest cluster
# (pods and objects growing along) whose etcd stays under the 2 GiB quota of the time through a
# compaction cycle and whose API servers keep up.
#
# Each row says on what basis the figures agree, the test, and the band: the lab's value as each
# assumption it depends on moves over its plausible range (`kscale-lab params heartbeats --format json`
# gives each parameter's `plausible` range and the reason for it).

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.claims import show_claims
print(show_claims("heartbeats"))

# %% [markdown]
# Why etcd breaks first: kube-apiserver compacts etcd every 5 minutes, to the revision it saw
# 5 minutes earlier, so up to **two windows** of history sit in etcd. With Node status every 10 s
# that is 60 copies of every 15 KB Node.

# %%
# NBVAL_IGNORE_OUTPUT
show(scale_figure(lab))

# %% [markdown]
# ## When does an overloaded API server start marking healthy nodes NotReady?
# All kubelets here are alive. When the API servers cannot keep up, heartbeats wait, get
# `429 Too Many Requests` (at `--max-mutating-requests-inflight`), are retried (up to 5 times at
# once), and some miss the node lifecycle controller's grace period (40 s; 50 s since 1.32):
# healthy nodes are marked `NotReady`, and their pods would be evicted 5 minutes later.
# The sweep below shrinks the API servers until that happens.

# %%
# NBVAL_IGNORE_OUTPUT
onset = lab.onset_sweep([0.5, 1, 1.5, 2, 2.5, 3])
show(onset_figure(onset))

# %% [markdown]
# ## Upstream today
# - **KEP-589** (the KEP-0009 heartbeat design) went GA in 1.17, which also raised the periodic Node
#   status from 1 minute to **5 minutes** (`nodeStatusReportFrequency`); a real change is still posted
#   within 10 s. Measured at 5k nodes: etcd writes from 150 MB/min to 30 MB/min.
# - The Lease lives in `kube-node-lease`, is 40 s long (`nodeLeaseDurationSeconds`) and renewed every
#   10 s (a quarter of it).
# - `--node-monitor-grace-period` went from 40 s to **50 s** in 1.32 (PR #126287): it must exceed
#   HTTP/2's health-check timeouts (30 s + 15 s), or a short API-server hiccup flaps nodes NotReady.
# - Since 1.31 the kubelet reads its Node from its own informer instead of a GET every 10 s
#   (PR #123977): in the `article` setting that GET is now the largest heartbeat cost. Try it in the
#   dashboard: compare the CPU of `article` and `upstream`.
# - Simulators have the same problem: KWOK (kubernetes-sigs/kwok#251) saw every component's CPU spike
#   after creating 5,000 fake nodes "mainly because the heartbeat frequency was too high", and only
#   later learned to heartbeat with Leases (#375).

# %% [markdown]
# ## Exercises
# Each exercise ends with a check that runs your code against the model. Stuck? `hint(1)` gives a
# direction, `hint(1, 2)` the method, `hint(1, 3)` nearly the answer (the same for exercises 2 and 3).

# %%
from kscale_lab.exercises.heartbeats import hint

# %% [markdown]
# ### Exercise 1: the transaction log, on paper
# Write the WAL bytes per minute that `nodes` kubelets produce when each writes an `object_bytes`
# Node every `interval_s` seconds; every write also costs `wal_overhead_bytes` of framing (key, raft
# entry). The check compares your formula with what the simulation measures.

# %%
def txlog_bytes_per_min(nodes, object_bytes, interval_s, wal_overhead_bytes):
    ### BEGIN SOLUTION
    return nodes * (60.0 / interval_s) * (object_bytes + wal_overhead_bytes)
    ### END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.exercises.heartbeats import check_cores, check_not_ready, check_txlog
check_txlog(txlog_bytes_per_min)

# %% [markdown]
# ### Exercise 2: the node monitor's verdict
# The node lifecycle controller keeps, per node, the time it last saw a heartbeat (`probe`). Every
# 5 s it marks NotReady every node not heard of for **more than** `grace` seconds. Write that rule
# for a whole array of nodes at once (numpy, no loop).

# %%
import numpy as np

def not_ready(now, probe, grace):
    ### BEGIN SOLUTION
    return (now - np.asarray(probe)) > grace
    ### END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check_not_ready(not_ready)

# %% [markdown]
# ### Exercise 3: how many cores do Node-status heartbeats need?
# With 3 API servers and 10,000 nodes sending Node status every 10 s, what is the fewest cores per
# API server with which no node is ever wrongly marked NotReady? You can see it happen with the model
# (`lab.run("off", {"apiserver_cores": c, "quota_backend_bytes": 1024**4, "duration": 300})` and its
# `summary["nodes_ever_notready"]`, or `lab.onset_sweep(...)`), but do not hunt for the number:
# **derive it**. On paper first: when does a heartbeat start to wait longer than the 40 s grace
# period? Then write `cores_needed(heartbeat_cpu_cores,
# background_cpu_cores, apiservers)`, where the first two are the CPU the cluster asks of the API
# servers, in cores, from the closed form `lab.steady_state("off", overrides)` (instant). The check
# evaluates your formula on three clusters (10,000 and 6,000 nodes; a 30 KB Node every 20 s) and runs
# the event-level model 20 % below and 20 % above each answer. Stuck? `hint(3)`, then `hint(3, 2)`.

# %%
def cores_needed(heartbeat_cpu_cores, background_cpu_cores, apiservers):
    ### BEGIN SOLUTION
    return (heartbeat_cpu_cores + background_cpu_cores) / apiservers
    ### END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check_cores(cores_needed)

# %% [markdown]
# **Going further.** The heartbeat share of CPU depends on what else the API servers do. How many
# background requests per second (`other_requests`) would it take to bring the Node-status share
# below 80 %? Is that plausible for a 10k-node cluster? (`lab.steady_state("off", {...})` answers
# in a millisecond.)

# %% [markdown]
# ## Summary
# - A heartbeat that rewrites a 15 KB Node every 10 s is, at 10,000 nodes, about **1 GB of etcd WAL
#   per minute**: nodes × writes per minute × (object + framing). etcd keeps that history until the
#   API server compacts, so the database grows by gigabytes per compaction window.
# - The Lease sends **more** requests (a tiny Lease every 10 s and a status every 60 s) but far fewer
#   **bytes**: WAL, history and the CPU spent decoding and encoding Node objects all fall.
# - Without Leases the API servers' CPU goes mostly to heartbeats. When the CPU they ask for reaches
#   what the servers have, queues grow without bound, heartbeats miss the grace period, and
#   **healthy nodes are marked NotReady**: an overload looks like a node failure.
# - Which limit comes first depends on the cluster: etcd's quota (bytes of history) or the API
#   servers' CPU (objects decoded); the claims table's `max_nodes` is the smaller of the two.
#
# ## Check your understanding
# 1. Why does the Lease setting write *more* revisions per second than `off`, and still shrink the WAL
#    fivefold?
# 2. At 20,000 nodes with Node-status heartbeats, how much WAL per minute do you expect? What would
#    halving the Node object do?
# 3. Why does an API server that is too slow make the node lifecycle controller mark **healthy** nodes
#    NotReady? What happens 5 minutes later?
# 4. Upstream raised `--node-monitor-grace-period` from 40 s to 50 s. Which failure does that avoid,
#    and what does it cost?
# 5. Which resource runs out first at 10k nodes with Node-status heartbeats and a 2 GiB quota: etcd or
#    the API servers' CPU? How would you check it with `lab.steady_state`?
#
# Model answers: [docs/teacher_guide.md](../docs/teacher_guide.md#lab-01-node-heartbeats).
#
# ## Next
# [Lab 2: etcd storage](02_etcd_storage.ipynb): the write streams of this lab land in etcd's bbolt file;
# what does its free-page allocator do with them? Back to [the tour](00_tour.ipynb).

# %% [markdown]
# # kscale_lab: how Kubernetes survives at 10,000 nodes
#
# In 2019 Alibaba and Ant Financial wrote up how they took single Kubernetes clusters to
# **10,000 nodes, 200,000 pods and 1,000,000 objects**. Unoptimised, such a cluster was unstable:
# etcd was slow and too small, the API servers choked on queries, controllers took minutes to
# recover from a restart, and scheduling a pod took about **10 s**.
#
# Their write-up names nine fixes. This kit lets you switch each one **off**, on **as in the
# article**, or on **as upstream Kubernetes does it today**, and watch what happens at full scale.
#
# - **Real mechanisms, modelled time.** The data structures are the real ones (an MVCC revision
#   log, bbolt's free lists, the watch cache and its `410 Gone`, leases, the scheduler's filters)
#   at real sizes. Time comes from a cost model whose every parameter has a unit and a source.
# - **No figure is typed in.** The article's numbers are targets; every figure you see is
#   computed, and moves when you move its cause.

# %% [markdown]
# **Learning objectives.** After the tour you can
# - name the nine mechanisms of the article and say which component (etcd, the API servers, the
#   clients) each one lives in;
# - explain, on the map below, how one mechanism's output becomes another's load;
# - use a lab: its dashboard, its Python handles, the command line, the claims table.
#
# **Prerequisites.** A first idea of Kubernetes' control plane (an API server in front of etcd,
# controllers and kubelets that watch it); the [glossary](../docs/glossary.md) has every term the labs use.
#
# **Time.** About 20 minutes (the claims table takes a few seconds to compute).
#
# Teachers: the [teacher guide](../docs/teacher_guide.md) has a 90-minute plan, a three-session plan and
# the model answers of every lab's questions.

# %%
import kscale_lab
from kscale_lab.labs.base import registry
from kscale_lab.scenario import SWITCH_SPECS

# %% [markdown]
# ## The nine switches
# One switch per optimisation in the article. Each lab stresses one of them.

# %%
# NBVAL_CHECK_OUTPUT
labs = {lab.switch: name for name, lab in registry().items()}
for spec in SWITCH_SPECS:
    print(f"{spec.name:<15} section {spec.article_section}  lab: {labs.get(spec.name, '(coming)'):<12} {spec.title}")

# %% [markdown]
# ## The map: how one mechanism's output is another's load
# The article lists nine fixes one by one, but they meet in one cluster: the heartbeats' writes are
# etcd's load, an API server's restart is every watcher's relist, a flood of relists is flow control's
# job. Each arrow below is such a coupling; the capstone (to come) runs all nine on one cluster so that
# they are real, not summed afterwards. (`docs/mechanisms_map.svg`, drawn by
# `python -m kscale_lab.viz.mechanism_map`.)

# %%
from kscale_lab.viz.mechanism_map import show_map

show_map()

# %% [markdown]
# ## How to use a lab
# 1. **Read the problem**: the article's words and numbers come first.
# 2. **Predict** before you touch anything: write your guess down.
# 3. **Toggle**: each lab has a dashboard; flip its switch, move its sliders, and watch the plots.
# 4. **Compare** the lab's figure with the article's (the claims table below does it for every lab).
# 5. **Do the exercises**: each ends with a check that runs your code against the model.
#
# The same model runs without a notebook:
#
# ```
# kscale-lab list                                   # labs, switches and settings
# kscale-lab params heartbeats                      # every parameter, its unit and source
# kscale-lab run heartbeats --nodes 5000 --format json
# kscale-lab claims                                 # the article beside the labs
# kscale-lab report --out report.html               # every lab's figures, parameters, claims: one file
# ```

# %% [markdown]
# ## The article beside the labs
# Every row is computed by a lab's model now, in this notebook (it takes about half a minute: each
# row is also recomputed with every assumption it depends on at both ends of its plausible range).
# How to read a row:
# - **criterion**: the test against the article's figure; "(direction only)" means the row checks
#   the sign of an effect, not its size, and **holds** then says "yes (direction)";
# - **basis**: why the figures agree (or not). *emergent*: out of the mechanism, fed with
#   independently sourced inputs; *arithmetic*: follows directly from an input; *calibrated
#   out of / in sample*: a cost was fitted on other measurements / on the one checked;
#   *by-construction*: the mechanism guarantees it; *conditional*: an assumption drives it;
# - **band**: the lab's value as each of those assumptions moves over its plausible range, one at a
#   time; **robust**: the claim holds over the whole band.
#
# A claim that does not hold, or is not robust, is not hidden: its note (`kscale-lab claims`, or the
# lab's notebook) says why in one sentence. Below, the lab values are computed now; the bands (one
# rerun per assumption and end of its range, for every lab: minutes) are the ones stored by
# `python -m kscale_lab.claims snapshot` and checked against a fresh computation by the tests; each
# lab's notebook recomputes its own.

# %%
from kscale_lab.claims import show_claims

overview = show_claims(compact=True, bands="snapshot")   # runs every lab once (a progress bar shows)

# %%
# NBVAL_CHECK_OUTPUT
print(overview)

# %% [markdown]
# ## A question in many runs: sweeps
# A sweep runs one lab for every point of a grid of parameters, for every setting of its switch
# (and every seed), and returns one table, one row per run. Here: **how large a cluster does the
# control plane carry as the Node object grows**, for each heartbeat setting, with etcd's 2 GiB
# default quota of 2019? Each run simulates a 1,000-node cluster for 10 minutes; its summary
# includes `max_nodes`, the largest cluster (pods and objects scaled along) whose etcd stays under
# its quota through a compaction cycle and whose API servers keep up, from the same rates.
#
# The runs go to worker processes (one per core), with a progress bar. The same from a terminal,
# or on a Dask cluster with `--scheduler tcp://HOST:8786`:
#
# ```
# kscale-lab sweep heartbeats --grid node_object_bytes=2000,5000,10000,15000,25000,40000 \
#     --set nodes=1000 --set quota_backend_bytes=2147483648 --out sweep.csv
# ```

# %%
# NBVAL_IGNORE_OUTPUT
from kscale_lab.viz import load_bokeh
load_bokeh()

# %%
# NBVAL_IGNORE_OUTPUT
sizes = [2_000, 5_000, 10_000, 15_000, 25_000, 40_000]
sweep = kscale_lab.sweep("heartbeats", {"node_object_bytes": sizes},
                         base={"nodes": 1_000, "quota_backend_bytes": 2 * 1024**3})

# %%
# NBVAL_CHECK_OUTPUT
print(sweep.pivot(index="node_object_bytes", columns="setting", values="max_nodes")[["off", "article", "upstream"]]
      .to_string())

# %%
# NBVAL_IGNORE_OUTPUT
from bokeh.io import show
from kscale_lab.viz.sweeps import per_setting
show(per_setting(sweep.assign(node_kb=sweep.node_object_bytes / 1000), "node_kb", "max_nodes",
                 title="the largest cluster the control plane carries (etcd quota 2 GiB)",
                 x_label="Node object (KB)", y_label="nodes", y_axis_type="log", legend="bottom_left"))

# %% [markdown]
# ## The labs
# - [01 Node heartbeats: Node status vs Lease](01_heartbeats.ipynb) (article section 2)
# - [02 etcd storage: bbolt's free-page allocator, MVCC history, a real etcd](02_etcd_storage.ipynb) (section 1)
# - [03 List-Watch, the watch cache and bookmarks](03_bookmarks.ipynb) (section 4)
# - [04 Consistent reads from the watch cache, with indexes](04_cached_reads.ipynb) (section 5)
# - [05 The scheduler: equivalence classes and relaxed search](05_scheduler.ipynb) (section 9)
# - [08 Context-aware request handling: goroutines that outlive their clients](08_context_cancel.ipynb) (section 6)
# - [09 Controller failover: leader election, hot standby, releasing the lease](09_hot_standby.ipynb) (section 8)
#
# Still to come, already shaping the model (the integrator adds their links here as they land):
# - 06 API server load balancing (section 3)
# - 07 Preventing request floods: flow control (section 7)
# - 09 Controller failover: hot standby (section 8)
# - 10 The capstone: every switch on at 10,000 nodes
#
# Solutions to every exercise are in [solutions/](solutions/). Terms: the [glossary](../docs/glossary.md).
# Where the numbers come from: [the article](../docs/article.md), [upstream today](../docs/upstream.md),
# [measurements of a real etcd](../data/etcd_real/README.md).

# %% [markdown]
# ## Summary
# - One cluster of 10,000 nodes, 200,000 pods and 1,000,000 objects; nine mechanisms, each with a
#   switch (`off`, `article`, `upstream`) and a lab that zooms in on it.
# - The mechanisms are real algorithms at real sizes; time comes from named, sourced costs; the
#   article's numbers are targets, and the claims table says which ones the labs reproduce and why
#   the others do not.
# - The mechanisms feed each other: one's output is another's load (the map).
#
# ## Check your understanding
# 1. Which component does each of the nine fixes change: etcd, the API servers, or the clients?
# 2. Pick one arrow of the map and say what would happen to its target if its source were switched off.
# 3. What is the difference between the `article` and the `upstream` setting of a switch?
# 4. Why can a claim of the article "not hold" in a lab without the lab being wrong?
#
# Model answers: [docs/teacher_guide.md](../docs/teacher_guide.md#the-tour).
#
# ## Next
# [Lab 1: node heartbeats](01_heartbeats.ipynb), the first and simplest mechanism.

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
# ```

# %% [markdown]
# ## The article beside the labs
# Every row is computed by a lab's model now, in this notebook (it takes a few seconds). A claim
# that does not hold is not hidden: each lab's notebook explains why, and which causes move it.

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.claims import claims_table, format_value
table = claims_table()
print(table.assign(lab_value=table.lab_value.map(format_value))[["lab", "claim", "article", "lab_value", "unit", "holds"]].to_string(index=False))

# %% [markdown]
# ## The labs
# - [01 Node heartbeats: Node status vs Lease](01_heartbeats.ipynb) (article section 2)
# - [02 etcd storage: bbolt's free-page allocator, MVCC history, a real etcd](02_etcd_storage.ipynb) (section 1)
# - [03 List-Watch, the watch cache and bookmarks](03_bookmarks.ipynb) (section 4)
# - [04 Consistent reads from the watch cache, with indexes](04_cached_reads.ipynb) (section 5)
# - [05 The scheduler: equivalence classes and relaxed search](05_scheduler.ipynb) (section 9)
# - [08 Context-aware request handling: goroutines that outlive their clients](08_context_cancel.ipynb) (section 6)
#
# Still to come, already shaping the model: API server load balancing,
# flow control, controller hot standby, and a capstone with every switch on at 10,000 nodes.
#
# Solutions to every exercise are in [solutions/](solutions/).

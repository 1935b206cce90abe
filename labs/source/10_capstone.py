# %% [markdown]
# # Lab 10 (capstone): nine switches, one cluster, a big-sale day
#
# **The article's summary.** With every optimisation in place, one Kubernetes cluster carried
# **10,000 nodes, 200,000 pods and 1,000,000 objects** through the 618 shopping festival.
# Unoptimised, scheduling latency reached **~10 s** and the cluster was unstable.
#
# Each earlier lab zoomed in on one mechanism. Here all of them run **together, on shared state**:
# one control plane (3 API servers, a load balancer, 20,000 connected clients), one etcd whose
# write latency comes from its freelist at its current size, the kubelets' heartbeats, a watch
# cache that bookmarks keep fresh, reads served by cache or etcd, a scheduler. One mechanism's
# trouble becomes another's load. The day is scripted: a 3,000-replica scale-up at minute 2, a
# rolling upgrade of the API servers at minute 5, `describe node` / `get nodes` probes all along
# (the buggy DaemonSet, the slow webhook and the controller-manager failover join as their labs'
# components are composed). The cluster is scored with Kubernetes' own SLOs.
#

# %% [markdown]
# **Learning objectives.** After this lab you can
# - read a scorecard of Kubernetes' scalability SLIs and say which SLO a run breaks;
# - trace an SLO break back through a chain of causes in one cluster's event log;
# - explain why some optimisations matter alone and others only together;
# - say which couplings a composed model makes, and how it tests them against each lab.
#
# **Prerequisites.** Labs 1-6, the [SLO](../docs/glossary.md#p99-and-slo) entry of the glossary.
#
# **Time.** About 45 minutes: 10 reading, 15 the dashboard and the scorecard, 20 the exercises.

# %%
from kscale_lab.labs.capstone import LAB as lab, SLOS
from kscale_lab import composition
from kscale_lab.viz import load_bokeh
from kscale_lab.viz.capstone import CapstoneDashboard

# %%
load_bokeh()

# %% [markdown]
# ## How the mechanisms feed each other
# What is coupled, and how coarse each coupling is (the composition module's own words):

# %%
# NBVAL_CHECK_OUTPUT
print(composition.__doc__.split("What is simplified")[0].strip())
print("\ncomposed now:", ", ".join(composition.composed()))

# %% [markdown]
# ## Predict first
# Start from the article's cluster (every switch as in the article). Which **single** switch,
# turned off, breaks the most SLOs? Which SLO breaks first when *every* switch is off, and why?

# %%
my_guess = {"worst_single_switch": None,        # a switch name, e.g. "heartbeats" (or "none")
            "first_slo_broken_all_off": None}   # e.g. "pod startup", "write latency", "nodes notready"

# %% [markdown]
# ## The day, switch by switch
# The dashboard runs the whole day (30 simulated minutes at 10k nodes) on every change. Set every
# switch at once with the buttons, then turn single switches off.

# %%
# NBVAL_IGNORE_OUTPUT
dash = CapstoneDashboard()
dash

# %% [markdown]
# ## The scorecard
# Every switch off, as in the article, as upstream does it today, and the ablation: the article's
# cluster with one switch turned off, for each of the nine. The twelve runs go to parallel
# processes (a progress bar shows them). A run already made with the same parameters and the same
# code is read back from disk instead (`kscale-lab cache` says where; change a parameter or a line
# of the model and it is computed again).

# %%
# NBVAL_IGNORE_OUTPUT
card = lab.scorecard()

# %%
# NBVAL_CHECK_OUTPUT
cols = ["slos_broken", "breaks", "first_break"]
print(card[cols].to_string())

# %% [markdown]
# Your guesses beside the model:

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.exercises import compare_guess
compare_guess(my_guess, lab)

# %% [markdown]
# ## The chain of causes
# For each row that breaks an SLO, the events of its own run, from the incident before the first
# break up to it:

# %%
# NBVAL_CHECK_OUTPUT
for row, chain in card.loc[card.slos_broken > 0, "chain"].items():
    print(f"{row}:\n    {chain}")

# %% [markdown]
# Two things to look for. First, the article's own cluster (`all article`) is not spotless: the buggy
# DaemonSet's LISTs saturate the API servers until the operator sets the User-Agent limit, five
# minutes later, and what breaks meanwhile is in its chain. Second, some switches matter only
# together: etcd's freelist and the heartbeats each add nothing beyond the article row when turned off
# alone, but off together (as in `all off`, from the first second) Node-status heartbeats (15 KB,
# 1,000 a second) need contiguous free pages that the array freelist of a 40 GB db must scan for, the
# commits fall behind, every write waits. The next cell shows it without any incident.

# %%
# NBVAL_CHECK_OUTPUT
quiet = {"incidents": "none", "duration": 300.0}
for label, over in [("freelist off", {"freelist": "off"}), ("heartbeats off", {"heartbeats": "off"}),
                    ("both off", {"freelist": "off", "heartbeats": "off"})]:
    s = lab.run("article", {**quiet, **over}).summary
    print(f"{label:>15}: etcd put latency up to {s['etcd_put_latency_mean_max_s']:.3g} s, "
          f"{s['nodes_ever_notready']:,} nodes falsely NotReady")

# %% [markdown]
# ## The article beside the lab

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.claims import claims_table, format_value
t = claims_table(["capstone"])
print(t.assign(lab_value=t.lab_value.map(format_value))[["claim", "article", "lab_value", "unit", "holds"]]
      .to_string(index=False))

# %% [markdown]
# ## Exercises
# ### Exercise 1: which SLO does an ablation break?
# Without running the model, predict for the article's cluster with the **scheduler** switch off:
# which SLOs break that the article's cluster (every switch on) keeps? Put their names (from
# `[s.name for s in SLOS]`) in a list. The check runs both rows of the model. Stuck? `hint(1, 1)`.

# %%
### BEGIN SOLUTION stub: predicted_breaks = None  # YOUR ANSWER HERE
predicted_breaks = ["pod startup latency (p99 <= 5 s)"]
### END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.exercises.capstone import check_ablation_prediction, check_minimal_set, hint
check_ablation_prediction(predicted_breaks, "scheduler")

# %% [markdown]
# ### Exercise 2: the smallest set of switches that keeps every SLO
# Turn every switch **off** except a set you choose (those as in the article). Find a set that breaks
# no SLO the article's cluster keeps, and from which no switch can be removed without breaking one (a
# *minimal* set). Use the model: `lab.run("off", {s: "article" for s in your_set}).summary["slo_breaks"]`
# against `lab.run("article").summary["slo_breaks"]`.
# Stuck? `hint(2, 1)`.

# %%
### BEGIN SOLUTION stub: minimal_set = None  # YOUR ANSWER HERE
from kscale_lab.scenario import SWITCH_NAMES
keep = set(lab.run("article").summary["slo_breaks"])
minimal_set = set(SWITCH_NAMES)
for s in SWITCH_NAMES:
    trial = minimal_set - {s}
    if not set(lab.run("off", {x: "article" for x in trial}).summary["slo_breaks"]) - keep:
        minimal_set = trial
### END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check_minimal_set(minimal_set)

# %% [markdown]
# ## Summary
# - The scorecard is what a Kubernetes SRE already watches: API call latency, pod startup latency,
#   node health, API server crashes, etcd space.
# - Some optimisations matter alone (the scheduler's decide pod startup under a scale-up); others
#   only together (etcd's freelist and the heartbeats saturate etcd only when both are off).
# - A chain of causes comes from the run's own events: an incident, what the components did, the
#   SLO that broke.
# - A composed model can be wrong in its couplings: each is written down, coarser than its lab, and
#   tested against that lab (one model, two zooms).
#
# ## Check your understanding
# 1. With every switch off, which SLO breaks first, and through which chain of causes?
# 2. Why do "freelist off" and "heartbeats off" each change little alone, while both together stall etcd?
# 3. Which SLO does the scheduler switch protect, and during which incident?
# 4. What does "one model, two zooms" mean here, and how is it tested?
# 5. Name a coupling the capstone simplifies, and what the simplification leaves out.
#
# ## Next
# Back to the [tour](00_tour.ipynb) for the whole kit; each lab zooms in on one row of the
# scorecard, from [lab 1](01_heartbeats.ipynb) on.

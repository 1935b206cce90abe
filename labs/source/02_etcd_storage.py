# %% [markdown]
# # Lab 2: etcd storage at 10,000 nodes
#
# **The article, section 1.** At 10k nodes etcd was "too small to hold the objects", and its
# read/write latency was high. Alibaba first moved data out of etcd (into Tair: more capacity,
# weaker consistency, dropped), then gave **each resource type its own etcd**. Then they found the
# real bottleneck: **bbolt's free-page allocator**. To write a node of *n* pages, bbolt needs *n*
# contiguous free pages, and it found them by a **linear scan** of a sorted array of every free page
# id, which slowed down as the data grew. Their **segregated hashmap** (run length -> start pages)
# finds a run in **O(1)** and merges a freed run with its neighbours. Result: etcd went from the
# recommended **2 GB to 100 GB** "with no significant read/write latency growth". In the CNCF
# write-up of the same work, **above ~40 GB, after a compaction, bbolt's `spill` went from ~1 ms to
# ~8 s** and puts timed out.
#
# In this lab bbolt's file is modelled page by page (copy-on-write B+tree leaves, etcd's batched
# commits, MVCC history until the API server compacts, the quota), with both of bbolt's real
# freelists counting their work; a calibrated cost turns the count into time. A real etcd runs
# beside the model at the end.

# %% [markdown]
# **Learning objectives.** After this lab you can
# - explain how bbolt finds room for a write (a run of contiguous free pages), and why a linear scan of
#   the free list slows every commit of a big, compacted database;
# - write the two operations of the segregated hashmap (allocate a run, merge a freed page with its
#   neighbours), the data structure Alibaba contributed;
# - tell MVCC history, compaction, the db file, the space in use and `--quota-backend-bytes` apart, and
#   read a `NOSPACE` alarm;
# - derive where the array freelist stops keeping up with a write rate, and say where the hashmap is
#   *not* better.
#
# **Prerequisites.** [Lab 1](01_heartbeats.ipynb) (the write streams that land here); the glossary's
# [MVCC](../docs/glossary.md#mvcc), [revision](../docs/glossary.md#revision),
# [compaction](../docs/glossary.md#compaction), [spill](../docs/glossary.md#spill) and
# [quota](../docs/glossary.md#quota-nospace); Python dicts and sets.
#
# **Time.** About 60 minutes: 15 reading, 15 with the dashboard, 30 for the exercises (the live-etcd
# cells add a few minutes where etcd is installed).

# %%
import shutil

import numpy as np
from bokeh.plotting import show

from kscale_lab.labs.etcd_storage import GB, LAB as lab
from kscale_lab.viz import load_bokeh
from kscale_lab.viz.etcd_storage import EtcdStorageDashboard, history_figure, sweep_figure

# %%
load_bokeh()

# %% [markdown]
# ## Predict first
# Write your guesses down before you touch the dashboard:
# 1. A 10k-node cluster writes ~1,500 times a second. With the **array** freelist, how does put p99
#    change from a 2 GB to a 100 GB database (half of it free after a compaction)? With the **hashmap**?
# 2. Which grows the free list faster: Node-status heartbeats (15 KB every 10 s) or Leases?
# 3. Is there any database on which the hashmap is **slower** than the array?

# %%
# Your guesses before you run anything below (None = no guess yet)
my_guess = {
    "array_p99_ms_2gb": None,      # question 1: put p99 (ms), array freelist, 2 GB db
    "array_p99_ms_100gb": None,    #             ... 100 GB db
    "hashmap_p99_ms_2gb": None,    #             hashmap freelist, 2 GB db
    "hashmap_p99_ms_100gb": None,  #             ... 100 GB db
}

# %% [markdown]
# ## Toggle
# The switch sets the freelist and the quota of each era: `off` = array freelist, 2 GiB
# (etcd 3.3/3.4); `article` = segregated hashmap, 100 GiB (Alibaba 2019); `upstream` = etcd 3.5+
# defaults (hashmap) with the suggested 8 GiB maximum. The left plot is the 1-100 GB sweep for
# both freelists (the dotted line is your db size); the right one the free space's runs of
# contiguous pages. Below: 16 simulated minutes of the cluster's write stream landing on etcd,
# with the API server compacting every 5 minutes. Try a 50 GB db, 100 pods/s of churn,
# Node-status heartbeats, or one etcd per resource type.
#
# The dashboard opens on `off`, and that etcd is **dead**: the cluster's objects alone are more than
# its 2 GiB quota, so it raises `NOSPACE` at once and refuses every write (the purple line says so;
# there is no commit to draw). The latency sweep at the top left still compares the two freelists.
# Flip to `article` or `upstream`, or give each resource its own etcd, to see a live one.

# %%
# NBVAL_IGNORE_OUTPUT
dash = EtcdStorageDashboard()
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
    s, sw = dash.result.summary, dash.sweep_df
    p99 = {fl: sw[sw.freelist == fl].put_p99_s.iloc[[0, -1]].to_numpy() * 1e3 for fl in ("array", "map")}
    alarm = "never" if np.isnan(s["etcd_nospace_at_s"]) else f"at {s['etcd_nospace_at_s']:.0f} s"
    print(f"{setting:>8}: {s['params']['backend_bbolt_freelist_type']:>5} freelist, db peak "
          f"{s['etcd_mvcc_db_total_size_in_bytes_max'] / GB:4.1f} GB vs quota {s['etcd_server_quota_backend_bytes'] / GB:5.1f} GB, "
          f"NOSPACE {alarm}; sweep 1 -> 100 GB: array p99 {p99['array'][0]:.1f} -> {p99['array'][1]:.1f} ms, "
          f"map p99 {p99['map'][0]:.1f} -> {p99['map'][1]:.1f} ms")
dash.controls["switch"].value = "off"

# %% [markdown]
# `off` cannot even hold the cluster: 10k nodes, 200k pods, 1M objects and an hour of Events take
# more than 2 GiB, so etcd raises **NOSPACE** at once and refuses every write. That is the
# article's "too small to hold the objects", and the reason for its first steps: a bigger quota
# and an etcd per resource type (`etcd clusters` in the dashboard: with one etcd per resource, each
# fits under 2 GiB until Node-status history fills the nodes' etcd).

# %% [markdown]
# ## 2 GB -> 100 GB: latency against db size
# The sweep gives each db size half of its pages free, laid out as a compaction leaves them, and
# asks what one commit costs: the freelist's counted work at that many free pages (the array moves
# the whole tail of its id list on almost every allocation; the hashmap touches a couple of spans),
# plus the pages written and two fdatasyncs. Puts that arrive while a commit holds etcd's batch lock
# wait for it: that is the latency tail.

# %%
# NBVAL_IGNORE_OUTPUT
sw = lab.sweep("article")
show(sweep_figure(sw, "put p99 vs db size, 10k-node write stream (1,500 puts/s)"))

# %% [markdown]
# A commit also bounds throughput: back to back, full batches of 10,000 puts, the backend commits
# at most `10,000 / commit time` puts a second. (Raft, the WAL's fsync and the apply loop set their
# own limits, far lower for the hashmap; this is only the bound the freelist moves.)

# %%
# NBVAL_CHECK_OUTPUT
cap = lab.sweep("article", sizes=[2 * GB, 40 * GB, 100 * GB])
for fl in ("array", "map"):
    g = cap[cap.freelist == fl]
    print(f"{fl:>5}: at most " + ", ".join(f"{c:,.0f} puts/s at {d / GB:.0f} GB" for c, d in zip(g.capacity, g.db_bytes)))

# %% [markdown]
# The stress test of the CNCF write-up "kept injecting data" into a 40 GB etcd and compacted. Here
# it is with values of 1-64 KiB at the rate an empty etcd takes them on this machine: before the
# compaction only copy-on-write pages are free; after it, half of the file.

# %%
# NBVAL_CHECK_OUTPUT
sp = lab.spill_after_compaction(40 * GB)
for fl in ("array", "map"):
    b, a = sp[fl]["spill_s"]
    state = "commits fall behind: every commit is a full batch of 10,000 puts" if sp[fl]["saturated"][1] else "keeps up"
    print(f"{fl:>5}: spill {b * 1e3:6.1f} ms before, {a * 1e3:8.1f} ms after compacting 40 GB "
          f"({sp[fl]['free_pages'][1]:,.0f} free pages); {state}")

# %% [markdown]
# The model was calibrated on a real etcd 3.4 on this kind of machine
# ([data/etcd_real](../data/etcd_real/README.md) section 4, 8 clients: the array's cost per id on the
# 4.1 GB db with 0.51M free pages, then checked on the 8.3 GB db with 1.02M). Here is that benchmark, model vs
# measurement; the 1 GB point is where the model is weakest (it overestimates the array's cost
# where the real run saw no difference).

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.etcd.bbolt import MEASURED_SECTION4

s4 = lab.sweep("article", sizes=[L * 4096 / 0.5 for L in (129_000, 511_000, 1_020_000)], load="section4")
for row in s4.itertuples():
    L = round(row.free_pages / 1000) * 1000
    thr, p99, *_ = MEASURED_SECTION4[(L, "array" if row.freelist == "array" else "map")]
    print(f"{row.freelist:>5} {row.free_pages / 1e6:4.2f}M free pages: p99 {row.put_p99_s * 1e3:5.1f} ms "
          f"(real {p99:5.1f}), {row.throughput:5.0f} puts/s (real {thr:5.0f})")

# %% [markdown]
# ## The heartbeat lab's write streams land here
# kube-apiserver compacts every 5 minutes to the revision it saw 5 minutes earlier, so a window of
# history always sits in etcd. How much, against the quota?

# %%
# NBVAL_IGNORE_OUTPUT
show(history_figure(lab))

# %%
# NBVAL_CHECK_OUTPUT
for hb in ("off", "article", "upstream"):
    r = lab.run("article", {"heartbeat_stream": hb, "duration": 330.0, "quota_backend_bytes": 1024**4,
                            "db_size_bytes": 0})
    print(f"heartbeats {hb:>8}: {r.summary['history_bytes_per_compaction_window'] / GB:4.2f} GB of history per "
          f"5-minute window at 10k nodes, {r.summary['etcd_disk_wal_write_bytes_per_min'] / GB:4.2f} GB/min of WAL")

# %% [markdown]
# ## The page model, exactly
# The sweep uses a law; the law comes from the exact page model. Here it is on the cluster's own
# stream (300 nodes, compaction every minute): every revision is an element of a B+tree leaf, every
# commit copies the rightmost leaf and its branch pages to new pages through a real freelist, and
# each compaction batch rewrites the leaves it touched. Note the file never shrinks, and what the
# free space looks like afterwards.

# %%
# NBVAL_CHECK_OUTPUT
small = {"nodes": 300, "etcd_compaction_interval": 60.0, "db_size_bytes": 0}
ex = lab.exact("article", small, duration=200.0)
fast = lab.run("article", dict(small, duration=200.0))
c = ex.commits
print(f"{len(c):,} commits, {int(c.puts.sum()):,} puts, {int((c.kind == 'compaction').sum())} compaction batches")
print(f"db file {ex.summary['etcd_mvcc_db_total_size_in_bytes'] / 1e6:.0f} MB, in use "
      f"{ex.summary['etcd_mvcc_db_total_size_in_use_in_bytes'] / 1e6:.0f} MB, {ex.summary['free_pages']:,} free pages "
      f"(fast tier: file {fast.series.etcd_mvcc_db_total_size_in_bytes.iloc[-1] / 1e6:.0f} MB, in use "
      f"{fast.series.etcd_mvcc_db_total_size_in_use_in_bytes.iloc[-1] / 1e6:.0f} MB)")
lengths, counts = ex.backend.bbolt.run_length_histogram()
print("free runs by length (pages: runs):", ", ".join(f"{n}: {k}" for n, k in zip(lengths[:10], counts[:10])))

# %% [markdown]
# ## Where the hashmap is not better
# The hashmap pays per page when pages come back: every freed page looks up and rewrites its
# neighbouring spans (three Go map writes each), where the array merges a sorted slice. On a small
# database, releasing what one compaction batch of Node history frees costs the hashmap more
# (bbolt issue #239: "map freelist is slower for deletes"; others measured it ~10 % slower on small
# databases). And at 1 GB there is nothing to win: the real etcd showed the same put latency for both.

# %%
# NBVAL_CHECK_OUTPUT
rel = lab.release_cost_small_db()
print(f"releasing {rel['released_pages']:,} pages into {rel['free_pages']:,} free pages (1 GB db): "
      f"array {rel['array'] * 1e3:.2f} ms, hashmap {rel['map'] * 1e3:.2f} ms")

# %% [markdown]
# ## A real etcd beside the model
# If `etcd` is installed (`apt-get install etcd-server`), the cells below start a private one on
# 127.0.0.1 (its own ports and a temporary directory, stopped by its PID), replay 30 s of the
# heartbeat lab's kubelets from 1,000 nodes, and compare what etcd wrote with what the exact page
# model predicts for the same puts. Real measurements vary from run to run.

# %%
# NBVAL_IGNORE_OUTPUT
from kscale_lab.etcd.realetcd import RealEtcd, run_heartbeats

if shutil.which("etcd") is None:
    print("etcd is not installed here: skipping the live cells (apt-get install etcd-server to run them).")
else:
    for scenario in ("node", "lease"):
        with RealEtcd() as etcd:
            real = run_heartbeats(etcd, 1000, scenario, sim_seconds=30.0)
        pred = lab.predict_real(real)
        print(f"{scenario:>5}: {real.puts:,} puts in {real.wall_seconds:.1f} s | WAL real {pred['wal_bytes_real'] / 1e6:.1f} MB, "
              f"model {pred['wal_bytes_model'] / 1e6:.1f} MB | db growth real {pred['db_growth_real'] / 1e6:.1f} MB, "
              f"model {pred['db_growth_model'] / 1e6:.1f} MB")

# %% [markdown]
# History, compaction, the quota and defragmentation, live, on a 16 MiB quota: every put of a key
# keeps its old value until a compaction; compaction frees pages but the file stays; NOSPACE stops
# every write; only defragmentation gives the space back.

# %%
# NBVAL_IGNORE_OUTPUT
from kscale_lab.etcd.realetcd import quota_lifecycle

if shutil.which("etcd") is None:
    print("etcd is not installed here: skipping.")
else:
    quota_lifecycle(quota_bytes=16 * 2**20)

# %% [markdown]
# The heavy version of section 4 (a 4 GB fragmented db, array vs map; minutes and ~12 GB of disk)
# is a script, never run here: `python benchmarks/heavy_freelist_real_etcd.py`.

# %% [markdown]
# ## The article beside the lab
# Every value below is computed by the model, never typed in: the article's figure is the target.
#
# Each row also says on what basis the figures agree and the band: the lab's value as each
# assumption it depends on moves over its plausible range.

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.claims import show_claims

print(show_claims("etcd-storage"))

# %% [markdown]
# ## Upstream today
# - The hashmap freelist (bbolt PR #141, bbolt v1.3.2) shipped in etcd 3.4 behind
#   `--experimental-backend-bbolt-freelist-type` (default `array`); since **etcd 3.5** the flag is
#   `--backend-bbolt-freelist-type` and defaults to **`map`**. bbolt itself still defaults to array.
# - etcd opens bbolt with `NoFreelistSync`: the freelist is never written to disk, and is rebuilt by
#   scanning the file at start (same for both types).
# - The quota still defaults to **2 GiB**; the docs call **8 GiB** a suggested maximum and etcd warns
#   above it. `--etcd-servers-overrides` (e.g. Events in their own etcd) is still how large clusters
#   split etcd.
# - Compaction deletes in batches of 1,000 revisions, 10 ms apart (etcd 3.4, PR #11034), so that
#   a compaction does not hold the batch lock for long; defragmentation still blocks the member.
# - Later bbolt work made the hashmap's `getFreePageIDs` 97 % faster (PR #419) and split the two
#   freelists behind one interface (PR #775).

# %% [markdown]
# ## Exercises
# Each exercise ends with a check that runs your code against the model. Stuck? `hint(1)` gives a
# direction, `hint(1, 2)` the method, `hint(1, 3)` nearly the answer (the same for exercises 2 and 3).

# %%
from kscale_lab.exercises.etcd_storage import hint

# %% [markdown]
# ### Exercise 1: the hashmap's allocate
# `freemaps` maps a run length to the set of start pages of free runs of that length. Write
# `allocate(freemaps, n)`: take a run of exactly `n` pages if one exists (the O(1) path); otherwise
# take any larger run, give its first `n` pages and put the remainder back under its own length;
# drop a length whose set becomes empty; return the start page, or 0 when nothing fits.

# %%
def allocate(freemaps, n):
    ### BEGIN SOLUTION
    if n in freemaps:
        start = freemaps[n].pop()
        if not freemaps[n]:
            del freemaps[n]
        return start
    for size in list(freemaps):
        if size > n:
            start = freemaps[size].pop()
            if not freemaps[size]:
                del freemaps[size]
            freemaps.setdefault(size - n, set()).add(start + n)
            return start
    return 0
    ### END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
from kscale_lab.exercises.etcd_storage import check_allocate, check_array_limit, check_free_page

check_allocate(allocate)

# %% [markdown]
# ### Exercise 2: merge on free
# `forward[start] = size` and `backward[end] = size` (end = start + size - 1) describe the free
# runs. Write `free_page(forward, backward, page)`: make `page` free, merging it with the run that
# ends at `page - 1` and the one that starts at `page + 1`, so that free runs never touch. Change the
# two dicts in place.

# %%
def free_page(forward, backward, page):
    ### BEGIN SOLUTION
    start, size = page, 1
    if page - 1 in backward:
        before = backward.pop(page - 1)
        del forward[page - before]
        start -= before
        size += before
    if page + 1 in forward:
        after = forward.pop(page + 1)
        del backward[page + after]
        size += after
    forward[start] = size
    backward[start + size - 1] = size
    ### END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check_free_page(free_page)

# %% [markdown]
# ### Exercise 3: where does the array give up?
# In the stress test above, the array freelist stops keeping up beyond some db size (half of it free
# after a compaction). Do not hunt for that size: **derive** it. On paper first: a commit carries the
# puts that arrived during the last batch interval `T` and the last commit, `n = rate × (T + C)`, and a
# batch holds at most 10,000 puts (`backend_batch_limit`). For the array, the commit time `C` of a full
# batch grows with the free pages `L`. When does the backlog start to grow?
#
# Then write `db_limit(put_rate)`: the largest db size (bytes) at which the array keeps up with
# `put_rate` puts/s of the stress test. `lab.sweep("article", {"stress_put_rate": r}, sizes=[...],
# freelists=("array",), load="stress")` gives, per size, `free_pages` and `capacity` (= 10,000 / the
# commit time of a full batch); `lab.resolve("article")` the parameters. The check evaluates your
# function at three put rates against the model, within 10 %. How does the answer at 2,550 puts/s
# compare with the article's "above ~40 GB"? What would change it? Stuck? `hint(3)`.

# %%
def db_limit(put_rate):
    ### BEGIN SOLUTION
    p = lab.resolve("article")
    T, limit = p["backend_batch_interval"], p["backend_batch_limit"]
    sw = lab.sweep("article", {"stress_put_rate": put_rate}, sizes=[10 * GB, 20 * GB], freelists=("array",),
                   load="stress")
    C = limit / sw.capacity.to_numpy()            # a full batch's commit time at each size
    L = sw.free_pages.to_numpy()
    slope = (C[1] - C[0]) / (L[1] - L[0])         # the array's cost per free page, per commit
    free = (limit / put_rate - T - (C[0] - slope * L[0])) / slope
    return free * p["bbolt_page_size"] / p["free_fraction"]
    ### END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check_array_limit(db_limit)

# %% [markdown]
# **Going further.** With `lab.exact(...)`, compare the free-run histogram a compaction leaves after
# Node-status heartbeats with the one after Leases. Which one makes the array scan further?

# %% [markdown]
# ## Summary
# - bbolt writes a B+tree node into a **run of contiguous free pages**. The array freelist finds one by
#   scanning a sorted list of every free page id and shifting its tail; after a compaction frees
#   millions of pages, every commit pays for that, holds the batch lock longer, and puts queue behind it.
# - The **segregated hashmap** (run length -> start pages, merging a freed page with its neighbours)
#   makes the allocation independent of the free list's length: the sweep stays flat from 2 to 100 GB.
# - Capacity is not only the allocator: MVCC keeps every revision until the API server compacts, the
#   file never shrinks without a defragmentation, and the quota (2 GiB then, 8 GiB suggested today)
#   turns "too much history" into `NOSPACE` and refused writes. At 10k nodes the cluster's objects alone
#   exceed 2 GiB.
# - The hashmap is not free: it pays per page when a compaction releases pages, so on a small database
#   it is slightly slower than the array.
#
# ## Check your understanding
# 1. Why does the array freelist get slower *after* a compaction, when the database holds less data?
# 2. What does "O(1)" mean for the hashmap's allocate, and where is it not quite O(1)?
# 3. After a compaction the db file does not shrink. What does, and what does it cost the member?
# 4. Why does the `off` etcd refuse every write at 10k nodes, and which two steps of the article
#    would let it accept them?
# 5. Your `db_limit` grows when the put rate falls. Why, and what does that say about the article's
#    "above ~40 GB"?
#
# Model answers: [docs/teacher_guide.md](../docs/teacher_guide.md#lab-02-etcd-storage).
#
# ## Next
# [Lab 3: List-Watch, the watch cache and bookmarks](03_bookmarks.ipynb): every write you saw here
# reaches the API servers' watch caches and the clients that watch them. Back to [the tour](00_tour.ipynb).

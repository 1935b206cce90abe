"""Bookmarks at 10k nodes / 200k pods: an API server restart after 10 minutes of churn.

Run:  .venv/bin/python benchmarks/bench_watchcache.py [--seed N] [--minutes M] [--pod-creates-per-s R]

What it does (figures are printed, nothing is asserted):

1. generates 10 simulated minutes of writes with one global revision counter (pods
   with churn, plus Lease renewals, Node status and core Events that take revisions
   in between: the pods' RVs are not contiguous);
2. fills the pods' watch cache in bulk (upstream's resize rule decides the tape's
   length from the churn);
3. for each bookmark policy (off / article = v1.15 / upstream) builds the same fleet
   (one kubelet per node watching its node's pods, a few controllers watching every
   pod, the same random watch timeouts and phases), processes every watch timeout of
   the 10 minutes, then restarts the API server at the end and prints what the
   reconnecting clients cost: events re-read from the tape ("init events"), 410s
   and objects relisted, and the wall time of that computation.

The article's figure (bookmarks cut the events to re-sync to 3 % of before;
KEP-956: ~40x fewer init events) is a target to compare with, not an input.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kscale_lab.apiserver.watchcache import WatchCache, generate_cluster_writes  # noqa: E402
from kscale_lab.clients.reflector import ReflectorFleet, default_clients  # noqa: E402

VARIANTS = ("off", "article", "upstream")


def pct(a: float, b: float) -> str:
    return f"{100.0 * a / b:5.1f} %" if b else "  n/a"


def run(seed: int, duration: float, churn: dict, verbose: bool = True, cache_params: dict | None = None) -> dict:
    """One scenario: writes, the pods' watch cache, one fleet per policy, a restart."""
    nodes = churn["nodes"]
    t0 = time.perf_counter()
    w = generate_cluster_writes(seed, duration, churn)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    cache = WatchCache("pods", w.initial_pods, w.list_rv, params=cache_params)
    clients = default_clients(nodes)
    fleets = {(v, rc): ReflectorFleet(cache, clients, bookmarks=v, seed=seed)
              for v in VARIANTS for rc in ("warm", "cold")}
    t_list = time.perf_counter() - t0
    t0 = time.perf_counter()
    cache.add_events(w.pods)
    t_add = time.perf_counter() - t0
    span = cache.history("time", cache.start_index, cache.end_index)
    rate = len(w.pods) / duration
    if verbose:
        counts = w.writes_per_type()
        print(f"writes in {duration / 60:g} simulated min (seed {seed}): "
              + ", ".join(f"{k} {v:,}" for k, v in counts.items())
              + f"  [generated in {t_gen:.2f} s]")
        print(f"one global revision counter: {int(w.rv[-1] - w.list_rv):,} revisions, of which "
              f"{len(w.pods):,} pod events ({rate:.0f}/s, {rate / nodes * 60:.2f}/min per node)")
        print(f"pods watch cache: {cache.object_count:,} objects; capacity {cache.capacity:,} "
              f"(went {' -> '.join(str(c) for _, _, c in cache.capacity_history)}); the tape spans "
              f"{span[-1] - span[0]:.0f} s; index ops {cache.index_ops:,}  [LIST {t_list:.2f} s, "
              f"bulk add {t_add:.2f} s]")
        print(f"clients: {nodes:,} kubelets (spec.nodeName=<node>) + {len(clients) - nodes} controllers "
              f"(all pods); watch timeouts U[5, 10) min, first watches at random phases")
        print()
    res = {}
    times, rvs = cache.history("time"), cache.history("rv")
    for v in VARIANTS:
        f = fleets[(v, "warm")]
        t0 = time.perf_counter()
        out = f.restart(duration, "warm")
        dt = time.perf_counter() - t0
        kub = f.clients.field == 1
        pos = np.searchsorted(rvs, out.rv_before[kub], side="right") - 1
        age = np.where(pos >= 0, duration - times[np.maximum(pos, 0)], duration)
        cold = fleets[(v, "cold")].restart(duration, "cold").totals
        res[v] = {"fleet": f, "out": out, "wall": dt, "age": age, "cold": cold}
    res["rate"] = rate
    res["span"] = float(span[-1] - span[0])
    res["capacity"] = cache.capacity
    return res


def report(res: dict, duration: float) -> None:
    print("API server restart at the end; the clients reconnect to a warm cache (an HA peer's):")
    hdr = (f"{'bookmarks':9} | {'init events':>12} {'410s':>6} {'objects relisted':>16} "
           f"{'kubelet RV age p50 / p90':>25} | {'wall':>7}")
    print(hdr)
    print("-" * len(hdr))
    for v in VARIANTS:
        t, age = res[v]["out"].totals, res[v]["age"]
        print(f"{v:9} | {t.events_scanned:12,} {t.relists:6,} {t.objects_relisted:16,} "
              f"{np.percentile(age, 50):12.0f} s / {np.percentile(age, 90):5.0f} s | {res[v]['wall']:6.3f}s")
    print()
    print(f"the {duration / 60:g} minutes of watch timeouts before it (KEP-956's 'init events' on watch restart):")
    hdr = f"{'bookmarks':9} | {'watches':>8} {'init events':>12} {'per watch':>9} {'410s':>6} {'objects relisted':>16}"
    print(hdr)
    print("-" * len(hdr))
    for v in VARIANTS:
        s = res[v]["fleet"].steady
        print(f"{v:9} | {s.watches:8,} {s.events_scanned:12,} {s.events_scanned / max(s.watches, 1):9.0f} "
              f"{s.relists:6,} {s.objects_relisted:16,}")
    print()
    off_r, off_s = res["off"]["out"].totals, res["off"]["fleet"].steady
    for v in ("article", "upstream"):
        t, s = res[v]["out"].totals, res[v]["fleet"].steady
        print(f"{v} / off: restart init events {pct(t.events_scanned, off_r.events_scanned)}, "
              f"restart objects relisted {pct(t.objects_relisted, off_r.objects_relisted)}; "
              f"watch-timeout init events {pct(s.events_scanned, off_s.events_scanned)} "
              f"({off_s.events_scanned / max(s.events_scanned, 1):.0f}x fewer), "
              f"watch-timeout relists {s.relists:,} vs {off_s.relists:,}")
    print()
    print("the same restart if the clients reconnect to a freshly started cache (its tape starts at its own LIST):")
    for v in VARIANTS:
        t = res[v]["cold"]
        print(f"  {v:9}: init events {t.events_scanned:,}, 410s {t.relists:,}, objects relisted {t.objects_relisted:,}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--pods", type=int, default=200_000)
    ap.add_argument("--pod-creates-per-s", type=float, default=None,
                    help="pod creations (= deletions) per second; default: the module's parameter")
    ap.add_argument("--sweep", action="store_true", help="also print the ratios for several churn levels")
    ap.add_argument("--fixed-capacity", type=int, default=None,
                    help="a fixed tape length (lower = upper bound), as v1.15's --watch-cache-sizes "
                         "before dynamic sizing; default: upstream's adaptive capacity")
    args = ap.parse_args(argv)
    duration = 60.0 * args.minutes
    churn = {"nodes": args.nodes, "pods": args.pods}
    if args.pod_creates_per_s is not None:
        churn["pod_creates_per_s"] = churn["pod_deletes_per_s"] = args.pod_creates_per_s
    cp = None
    if args.fixed_capacity is not None:
        cp = {"lower_bound_capacity": args.fixed_capacity, "upper_bound_capacity": args.fixed_capacity}
    res = run(args.seed, duration, churn, cache_params=cp)
    report(res, duration)
    wall = max(res[v]["wall"] for v in VARIANTS)
    print()
    print(f"wall time of one restart outcome (all watch timeouts of the {args.minutes:g} min + the restart, "
          f"{args.nodes + 5:,} clients): worst policy {wall:.3f} s (target <= 1 s)")
    if args.sweep:
        print()
        print("churn sweep (upstream / off, warm restart):")
        print(f"{'creates/s':>9} {'pod ev/s':>8} {'tape':>6} | {'restart init ev':>15} {'restart 410s':>12} "
              f"| {'timeout init ev':>15} {'timeout 410s (off)':>18}")
        for r in (1.0, 5.0, 20.0, 100.0):
            c = dict(churn, pod_creates_per_s=r, pod_deletes_per_s=r)
            x = run(args.seed, duration, c, verbose=False, cache_params=cp)
            ro, ru = x["off"]["out"].totals, x["upstream"]["out"].totals
            so, su = x["off"]["fleet"].steady, x["upstream"]["fleet"].steady
            print(f"{r:9g} {x['rate']:8.0f} {x['span']:5.0f}s | {pct(ru.events_scanned, ro.events_scanned):>15} "
                  f"{ru.relists:>5,} / {ro.relists:<5,} | {pct(su.events_scanned, so.events_scanned):>15} "
                  f"{so.relists:>18,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

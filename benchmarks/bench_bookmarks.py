"""How fast the bookmarks lab recomputes its restart scenario at 10k nodes / 200k pods.

Run:  .venv/bin/python benchmarks/bench_bookmarks.py [--nodes N] [--restart-min M] [--repeat R]

Prints (nothing is asserted):

1. the wall time of ``LAB.run(setting)`` for each setting, cold (the writes generated)
   and warm (the writes memoised, as when a reader toggles the switch), with the time
   split into generating the writes, LISTing the pods into the watch cache, adding the
   events (upstream's resize rule), the reflector fleet (watch timeouts + restart) and
   the costs/series;
2. what the dashboard does per change: all three settings;
3. the run's headline figures and the claims table, for the report;
4. the process's peak memory.

Target: the restart scenario at 10k nodes / 200k pods recomputes in <= 1 s.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kscale_lab.apiserver.watchcache import WatchCache  # noqa: E402
from kscale_lab.clients.reflector import ReflectorFleet  # noqa: E402
from kscale_lab.labs import bookmarks as bm  # noqa: E402

LAB = bm.LAB


def split(setting: str, overrides: dict) -> dict:
    """The stages of one run, timed separately (same code path as LAB.run)."""
    p = LAB.resolve(setting, overrides)
    T = float(p["restart_at"])
    out = {}
    t0 = time.perf_counter()
    bm._WRITES.clear()
    w = bm._writes(p["seed"], T, LAB.churn(p))
    out["generate writes"] = time.perf_counter() - t0
    wc = LAB.watch_cache_params(setting, p)
    t0 = time.perf_counter()
    cache = WatchCache("pods", w.initial, w.list_rv, params=wc)
    out["LIST into the watch cache"] = time.perf_counter() - t0
    clients = LAB.clients(p)
    t0 = time.perf_counter()
    fleet = ReflectorFleet(cache, clients, bookmarks=bm.POLICIES[setting]["bookmarks"], seed=p["seed"],
                           params={**wc, "min_watch_timeout": p["min_watch_timeout"]}, record=True, trace=[0])
    out["fleet set-up"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cache.add_events(w.pods)
    out["add events (resize rule)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fleet.advance(T)
    fleet.restart(T, p["reconnect"], cold_list_rv=w.last_rv)
    out["watch timeouts + restart"] = time.perf_counter() - t0
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--restart-min", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    o = {"nodes": args.nodes, "restart_at": 60.0 * args.restart_min}
    p = LAB.resolve("off", o)
    print(f"bookmarks lab: {p['nodes']:,} nodes, {p['pods']:,} pods, {p['pod_churn']:g} pods/s of churn, "
          f"restart at {p['restart_at'] / 60:g} min, {p['nodes'] + p['controllers']:,} watchers")
    print()
    print("stages of one run (cold: writes generated):")
    for s in LAB.settings:
        parts = split(s, o)
        print(f"  {s:9}" + "  ".join(f"{k} {v:.3f} s" for k, v in parts.items()))
    print()
    print(f"LAB.run(setting), best of {args.repeat}:")
    results = {}
    for s in LAB.settings:
        bm._WRITES.clear()
        t0 = time.perf_counter()
        results[s] = LAB.run(s, o)
        cold = time.perf_counter() - t0
        warm = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            LAB.run(s, o)
            warm.append(time.perf_counter() - t0)
        print(f"  {s:9} cold {cold:.3f} s   warm {min(warm):.3f} s   (target <= 1 s)")
    t0 = time.perf_counter()
    for s in LAB.settings:
        LAB.run(s, dict(o, pod_churn=p["pod_churn"] * 1.01))
    print(f"  one dashboard change (three settings, new churn, writes generated once): "
          f"{time.perf_counter() - t0:.3f} s")
    print()
    print("the restart (warm HA peer) and the 10 minutes of watch timeouts before it:")
    hdr = (f"  {'setting':9} | {'init events':>12} {'relists':>7} {'CPU-s':>7} {'re-sync s':>9} | "
           f"{'timeout init ev':>15} {'relists':>7} | {'RV age p50':>10} {'tape':>8}")
    print(hdr)
    for s, r in results.items():
        sm = r.summary
        print(f"  {s:9} | {sm['restart_init_events']:12,} {sm['restart_relists']:7,} "
              f"{sm['restart_apiserver_cpu_seconds']:7.1f} {sm['restart_resync_seconds']:9.2f} | "
              f"{sm['timeouts_init_events']:15,} {sm['timeouts_relists']:7,} | "
              f"{sm['selective_rv_age_p50_s']:8.0f} s {sm['watch_cache_capacity']:8,}")
    if args.nodes == 10_000 and args.restart_min == 10.0:
        print()
        from kscale_lab.claims import claims_table, format_value

        t = claims_table(["bookmarks"])
        print(t.assign(lab_value=t.lab_value.map(format_value))[["claim", "article", "lab_value", "holds"]]
              .to_string(index=False))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(f"peak memory of this process: {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

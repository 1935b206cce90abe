"""Speed and memory of the hot-standby lab at 10k nodes (prints figures; asserts nothing).

    .venv/bin/python benchmarks/bench_hot_standby.py [--quick]

Targets from the issue: 30 simulated minutes at 10k nodes <= 1 s per setting; a dashboard
change <= 0.5 s median; the notebook runs in <= 60 s; peak memory within the lab's estimate.
The load average is printed too: on a shared machine every figure scales with it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from _common import notebook_seconds, peak_rss_gb  # benchmarks/_common.py (the script's folder is on sys.path)

ROOT = Path(__file__).resolve().parent.parent


def runs(repeat: int) -> dict:
    from kscale_lab.labs.hot_standby import LAB

    LAB.run("off", {"duration": 60.0})          # imports and first-call costs
    res = {}
    for s in LAB.settings:
        walls, cpus = [], []
        for _ in range(repeat):
            w, c = time.perf_counter(), time.process_time()
            LAB.run(s)
            walls.append(time.perf_counter() - w)
            cpus.append(time.process_time() - c)
        res[s] = {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}
    return res


def dashboard(n: int) -> tuple[list[float], list[float]]:
    """Changes that need a new run (a new control value each time), and toggles back to a
    setting the dashboard already ran (shown from its memory)."""
    from kscale_lab.viz.hot_standby import HotStandbyDashboard

    d = HotStandbyDashboard()
    fresh, again, cpu = [], [], []
    values = [("switch", "article"), ("switch", "upstream"), ("object_us", 10), ("lease", 30.0), ("retry", 1.0),
              ("objects", 2_000_000), ("source", "etcd"), ("crash", "kube-scheduler"), ("skew", 0.1),
              ("object_us", 50), ("objects", 500_000), ("lease", 60.0)]
    for name, v in values[:n]:
        c = time.process_time()
        d.controls[name].value = v
        cpu.append(time.process_time() - c)
        fresh.append(d.seconds)
    for s in ["off", "article", "upstream"] * 2:
        d.controls["switch"].value = s
        again.append(d.seconds)
    return fresh, again, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, skip the notebook")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    r = runs(1 if args.quick else 3)
    fresh, again, dcpu = dashboard(6 if args.quick else 12)
    rss, est = peak_rss_gb("hot-standby")
    figures = {"load_average_1min": load0, "run_30min_10k_s": r, "dashboard_new_run_median_s": statistics.median(fresh),
               "dashboard_new_run_max_s": max(fresh), "dashboard_seen_again_median_s": statistics.median(again),
               "dashboard_all_changes_median_s": statistics.median(fresh + again),
               "dashboard_new_run_cpu_median_s": statistics.median(dcpu),
               "peak_rss_gb_three_settings": rss, "memory_estimate_gb": est}
    if not args.quick:
        figures["notebook_solutions_09_s"] = notebook_seconds(ROOT / "labs" / "solutions" / "09_hot_standby.ipynb")
    print(f"load average when started: {load0:.1f} (2 cores)")
    for s, v in r.items():
        print(f"30 simulated minutes, 10k nodes, {s:>8}: {v['wall_s']:.2f} s wall, {v['cpu_s']:.2f} s CPU  "
              "(target <= 1 s)")
    print(f"dashboard change needing a new run: median {figures['dashboard_new_run_median_s']:.2f} s, max "
          f"{figures['dashboard_new_run_max_s']:.2f} s (n={len(fresh)}; CPU median "
          f"{figures['dashboard_new_run_cpu_median_s']:.2f} s); a setting seen before: median "
          f"{figures['dashboard_seen_again_median_s']:.3f} s (n={len(again)})  (target <= 0.5 s median)")
    print(f"peak RSS running all three settings: {rss:.2f} GB; the lab's estimate: {est:.2f} GB")
    if "notebook_solutions_09_s" in figures:
        print(f"whole notebook 09_hot_standby (solutions copy): {figures['notebook_solutions_09_s']:.1f} s  (target <= 60 s)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

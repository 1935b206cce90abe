"""Speed and memory of the heartbeat lab at 10k nodes (prints figures; asserts nothing).

    .venv/bin/python benchmarks/bench_heartbeats.py [--quick]

Targets from the issue: a dashboard toggle recomputes in <= 0.5 s (median); 10 simulated
minutes of heartbeats run in <= 2 s; the whole notebook runs in <= 60 s; peak memory <= 1 GB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from _common import notebook_seconds, peak_rss_gb  # benchmarks/_common.py (the script's folder is on sys.path)

ROOT = Path(__file__).resolve().parent.parent


def toggles(n: int) -> list[float]:
    from kscale_lab.viz.heartbeats import HeartbeatDashboard

    dash = HeartbeatDashboard()
    out = []
    order = ["article", "upstream", "off"]
    for i in range(n):
        dash.controls["switch"].value = order[i % 3]
        out.append(dash.seconds)
    return out


def runs(repeat: int) -> dict:
    from kscale_lab.labs.heartbeats import LAB

    res = {}
    for s in LAB.settings:
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            LAB.run(s)
            times.append(time.perf_counter() - t)
        res[s] = statistics.median(times)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, skip the notebook")
    args = ap.parse_args()
    t = toggles(6 if args.quick else 15)
    r = runs(1 if args.quick else 3)
    mem = peak_rss_gb("heartbeats")[0]
    figures = {
        "toggle_median_s": statistics.median(t),
        "toggle_max_s": max(t),
        "run_10min_10k_s": r,
        "peak_memory_gb_all_three_settings": mem,
    }
    if not args.quick:
        figures["notebook_01_heartbeats_s"] = notebook_seconds(ROOT / "labs" / "01_heartbeats.ipynb")
        figures["notebook_solutions_01_heartbeats_s"] = notebook_seconds(ROOT / "labs" / "solutions" / "01_heartbeats.ipynb")
    print(f"dashboard toggle at 10k nodes: median {figures['toggle_median_s']:.3f} s, max {figures['toggle_max_s']:.3f} s"
          f"  (target <= 0.5 s median; n={len(t)})")
    for s, v in r.items():
        print(f"10 simulated minutes, 10k nodes, {s:>8}: {v:.3f} s  (target <= 2 s)")
    print(f"peak memory, one process running all three settings: {mem:.2f} GB  (target <= 1 GB)")
    if "notebook_01_heartbeats_s" in figures:
        print(f"whole notebook 01_heartbeats (student copy): {figures['notebook_01_heartbeats_s']:.1f} s; "
              f"solutions copy: {figures['notebook_solutions_01_heartbeats_s']:.1f} s  (target <= 60 s)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

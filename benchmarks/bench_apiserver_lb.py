"""Speed and memory of the API server load-balancing lab at 10k nodes (prints figures; asserts nothing).

    .venv/bin/python benchmarks/bench_apiserver_lb.py [--quick]

Targets (issue #9): 30 simulated minutes at 10k clients <= 1 s per setting; a dashboard change
<= 0.5 s median. Wall time depends on what else the machine runs, so CPU time is printed too.
"""

from __future__ import annotations

import argparse
import resource
import statistics

from _common import timed  # benchmarks/_common.py (the script's folder is on sys.path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    repeat = 1 if args.quick else 3
    from kscale_lab.labs.apiserver_lb import LAB

    LAB.run("off", {"nodes": 100, "duration": 10.0})      # warm imports
    print("30 simulated minutes, 10,000 nodes (20,022 clients), 3 API servers:")
    for s in LAB.settings:
        walls, cpus = [], []
        for _ in range(repeat):
            _, w, c = timed(lambda: LAB.run(s))
            walls.append(w)
            cpus.append(c)
        print(f"  {s:>8}: {statistics.median(walls):.2f} s wall, {statistics.median(cpus):.2f} s CPU (median of {repeat})")
    from kscale_lab.viz.apiserver_lb import APIServerLBDashboard

    dash = APIServerLBDashboard()
    changes = [("switch", "article"), ("switch", "upstream"), ("switch", "off"), ("lb_policy", "least-connections"),
               ("cores", 12), ("reshuffle_period", 600), ("lb_429_threshold", 0.3), ("max_surge", 3),
               ("goaway_chance", 0.01)]
    secs = []
    for name, value in changes * (1 if args.quick else 2):
        before = dash.controls[name].value
        dash.controls[name].value = value
        secs.append(dash.seconds)
        if name != "switch":
            dash.controls[name].value = before
    print(f"dashboard change: median {statistics.median(secs):.2f} s, max {max(secs):.2f} s over {len(secs)} changes")
    _, w, c = timed(lambda: LAB.claims())
    print(f"claims (10 rows, their runs): {w:.1f} s wall, {c:.1f} s CPU")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

"""Speed and memory of the context-cancellation lab at 10k nodes (prints figures; asserts nothing).

    .venv/bin/python benchmarks/bench_context_cancel.py [--quick]

Targets (issue #11): 30 simulated minutes at 10k nodes <= 1 s per setting; a dashboard change
<= 0.5 s median; the notebook's Run-All within a minute. Wall time depends on what else the
machine runs, so CPU time is printed too (and the load average beside it).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

from _common import timed  # benchmarks/_common.py (the script's folder is on sys.path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    repeat = 1 if args.quick else 3
    from kscale_lab.labs.context_cancel import LAB

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    LAB.run("off", {"nodes": 100, "duration": 10.0})      # warm imports
    print("30 simulated minutes, 10,000 nodes (20,022 clients), 3 API servers, a slow webhook for 5 minutes:")
    for incident in ("webhook", "both"):
        for s in LAB.settings:
            walls, cpus = [], []
            for _ in range(repeat):
                _, w, c = timed(lambda: LAB.run(s, {"incident": incident}))
                walls.append(w)
                cpus.append(c)
            print(f"  {incident:>7} {s:>8}: {statistics.median(walls):.2f} s wall, {statistics.median(cpus):.2f} s CPU "
                  f"(median of {repeat})")
    from kscale_lab.viz.context_cancel import ContextCancelDashboard

    dash = ContextCancelDashboard()
    changes = [("switch", "article"), ("switch", "upstream"), ("switch", "off"), ("incident", "etcd"),
               ("webhook_slow_latency", 30.0), ("client_timeout", 30.0), ("client_retry", "backoff"),
               ("scope", "every write"), ("inflight", "disabled (0)"), ("memory_gib", 12)]
    fresh, cpu, remembered = [], [], []
    for name, value in changes:
        c0 = time.process_time()
        dash.controls[name].value = value
        fresh.append(dash.seconds)
        cpu.append(time.process_time() - c0)
    for value in (64, 12):                                 # back and forth: both runs are remembered
        dash.controls["memory_gib"].value = value
        remembered.append(dash.seconds)
    print(f"dashboard change, new settings: median {statistics.median(fresh):.2f} s wall "
          f"({statistics.median(cpu):.2f} s CPU), max {max(fresh):.2f} s over {len(fresh)} changes; "
          f"a setting seen before: {max(remembered) * 1000:.1f} ms")
    _, w, c = timed(lambda: LAB.claims())
    print(f"claims ({len(LAB.CLAIM_RUNS)} rows, their runs): {w:.1f} s wall, {c:.1f} s CPU")
    print(f"memory estimate of one run: {LAB.memory_estimate('off')[0] / 2**20:.0f} MB; "
          f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

"""Speed and memory of the flow-control lab at 10k nodes (prints figures; asserts nothing).

    .venv/bin/python benchmarks/bench_flow_control.py [--quick]

Targets from the issue: each setting's run (30 simulated minutes, 10k nodes, both incidents)
<= 1 s; a dashboard change <= 0.5 s median; the notebook's Run-All within a minute. On a
shared machine wall time includes waiting for a core: the script prints process CPU time
beside it (CPU time is what the run costs; wall time is what a reader waits).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from _common import notebook_seconds, peak_rss_gb, timed  # benchmarks/_common.py (the script's folder is on sys.path)

ROOT = Path(__file__).resolve().parent.parent


def runs(repeat: int) -> dict:
    from kscale_lab.labs.flow_control import LAB

    LAB.run("off", {"nodes": 500, "duration": 60.0})       # imports, caches
    res = {}
    for s in LAB.settings:
        walls, cpus = [], []
        for _ in range(repeat):
            _, w, c = timed(lambda: LAB.run(s))
            walls.append(w)
            cpus.append(c)
        res[s] = {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}
    return res


def dashboard_changes() -> dict:
    from kscale_lab.viz.flow_control import FlowControlDashboard

    dash = FlowControlDashboard()
    changes = [("switch", "article"), ("switch", "upstream"), ("inflight", 3000), ("switch", "off"),
               ("inflight", 400), ("switch", "article"), ("operator_reaction_s", 60), ("switch", "upstream"),
               ("workload_low", 20), ("switch", "off")]
    walls, cpus = [], []
    for name, value in changes:
        c = time.process_time()
        dash.controls[name].value = value
        walls.append(dash.seconds)
        cpus.append(time.process_time() - c)
    return {"median_wall_s": statistics.median(walls), "median_cpu_s": statistics.median(cpus),
            "max_wall_s": max(walls), "changes": len(changes), "remembered": sum(w < 0.05 for w in walls)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one repeat, no notebook")
    a = ap.parse_args(argv)
    from kscale_lab.labs.flow_control import LAB

    p = LAB.resolve("off")
    out = {"load_average_1min": os.getloadavg()[0],
           "scenario": f"{p['nodes']:,} nodes, {p['duration']:g} s, tick {p['tick']:g} s, incidents {p['incident']}",
           "run_per_setting": runs(1 if a.quick else 3),
           "dashboard": dashboard_changes(),
           "peak_rss_gb_one_run": peak_rss_gb("flow-control", ["upstream"])[0],
           "memory_estimate_gb": LAB.memory_estimate("upstream")[0] / 1e9}
    if not a.quick:
        out["notebook_run_all_s"] = notebook_seconds(ROOT / "labs" / "solutions" / "07_flow_control.ipynb")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

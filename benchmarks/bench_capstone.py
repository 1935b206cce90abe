"""Speed and memory of the capstone at 10k nodes / 200k pods / 1M objects (prints figures; asserts nothing).

    .venv/bin/python benchmarks/bench_capstone.py [--quick]

Targets (issue #13): 30 simulated minutes with all nine switches <= 60 s wall on one core and
<= 1 GB peak memory; the ablation's twelve runs in parallel processes. Each run is measured in a
fresh process (its peak RSS is its own); wall time depends on the machine's load, so CPU time is
printed too, and the simulated/wall ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time
from kscale_lab.labs.capstone import LAB
w, c = time.perf_counter(), time.process_time()
r = LAB.run(sys.argv[1])
out = {"wall": time.perf_counter() - w, "cpu": time.process_time() - c,
       "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
       "estimate_mb": LAB.memory_estimate(sys.argv[1])[0] / 2**20,
       "slos_broken": r.summary["slos_broken"], "duration": r.summary["params"]["duration"]}
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one setting, no ablation")
    args = ap.parse_args()
    settings = ["article"] if args.quick else ["off", "article", "upstream"]
    print("capstone, 30 simulated minutes, 10,000 nodes, 200,000 pods, 1,000,000 objects, all nine switches:")
    for s in settings:
        p = subprocess.run([sys.executable, "-c", CHILD, s], capture_output=True, text=True, check=True)
        r = json.loads(p.stdout.strip().splitlines()[-1])
        print(f"  {s:>8}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU, {r['duration'] / r['wall']:.0f}x simulated/wall, "
              f"peak RSS {r['peak_mb']:.0f} MB (estimate {r['estimate_mb']:.0f} MB), {r['slos_broken']} SLOs broken")
    if not args.quick:
        from kscale_lab.labs.capstone import LAB

        w = time.perf_counter()
        card = LAB.scorecard(progress=False)
        print(f"scorecard (12 runs in parallel processes): {time.perf_counter() - w:.1f} s wall, {len(card)} rows")


if __name__ == "__main__":
    main()

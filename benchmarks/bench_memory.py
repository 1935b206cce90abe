"""Memory benchmark: each lab's estimate next to the peak its run really reaches.

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_memory.py [--nodes 10000 100000] [--lab NAME]``

For every lab of the registry and each cluster size, one fresh Python process runs every
setting one after the other (as ``kscale-lab run LAB --nodes N`` does) and reports its
peak resident set (VmHWM, interpreter and libraries included) next to the lab's estimate
(:meth:`kscale_lab.labs.base.Lab.memory_estimate`, the largest over the settings) and the
wall time. A size whose estimate is above the limit (``KSCALE_LAB_MEMORY_LIMIT_GIB``,
default 1 GiB) is not run: its refusal is printed instead. ``--limit GIB`` sets the limit
for this benchmark. Prints; asserts nothing (tests/test_memory.py holds estimate >= peak).
"""

from __future__ import annotations

import argparse
import json
import os

from kscale_lab import memory
from kscale_lab.errors import ScenarioTooLarge
from kscale_lab.labs.base import registry
from kscale_lab.memory import GIB


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--lab", action="append", help="only these labs (default: every lab of the registry)")
    ap.add_argument("--limit", type=float, help="KSCALE_LAB_MEMORY_LIMIT_GIB for this run")
    ap.add_argument("--json", action="store_true", help="one JSON line per measurement as well")
    a = ap.parse_args(argv)
    if a.limit is not None:
        os.environ["KSCALE_LAB_MEMORY_LIMIT_GIB"] = str(a.limit)
    limit = memory.memory_limit_bytes()
    base = memory.measure_baseline()
    print(f"limit {limit / GIB:.2f} GiB ({memory.LIMIT_VARIABLE}); baseline (interpreter + numpy, pandas, simpy, "
          f"every lab imported): measured {base / GIB:.3f} GiB, counted {memory.BASELINE_SCRIPT_BYTES / GIB:.3f} GiB")
    print(f"{'lab':<14}{'nodes':>9}  {'estimate GiB':>12}  {'peak RSS GiB':>12}  {'est/peak':>8}  {'wall s':>7}  "
          f"largest items of the estimate")
    for name, lab in registry().items():
        if a.lab and name not in a.lab:
            continue
        for n in a.nodes:
            o = {"nodes": n}
            need = {s: lab.memory_estimate(s, o) for s in lab.settings}
            top = max(need, key=lambda s: need[s][0])
            est, detail = need[top]
            largest = detail.split("; largest: ", 1)[-1] if "; largest: " in detail else ""
            if est > limit:
                err = ScenarioTooLarge(est, limit, detail)
                print(f"{name:<14}{n:>9,}  {est / GIB:>12.2f}  {'refused':>12}  {'':>8}  {'':>7}  {err}")
                continue
            r = memory.measure(name, o)
            if "refused" in r:
                print(f"{name:<14}{n:>9,}  {est / GIB:>12.2f}  {'refused':>12}  {'':>8}  {'':>7}  {r['refused']}")
                continue
            peak = r["peak_rss"]
            print(f"{name:<14}{n:>9,}  {r['estimate'] / GIB:>12.2f}  {peak / GIB:>12.2f}  "
                  f"{r['estimate'] / peak:>8.2f}  {r['wall_s']:>7.1f}  {largest}", flush=True)
            if a.json:
                print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

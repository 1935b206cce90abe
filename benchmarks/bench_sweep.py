"""Throughput of a sweep (runs per second) with 1 and 2 workers (prints figures; asserts nothing).

    .venv/bin/python benchmarks/bench_sweep.py [--lab heartbeats] [--points 8] [--nodes 2000]
                                               [--scheduler tcp://HOST:PORT]

The sweep is the heartbeat lab over ``--points`` Node object sizes x its three settings, at
``--nodes`` nodes (10 simulated minutes each). "1 worker" runs in this process; "2 workers"
in two local worker processes, their start-up (a fresh interpreter importing kscale_lab)
included, as a user waits for it. With ``--scheduler`` the same sweep also runs on that Dask
cluster. The tables are compared: the same for the same seeds, wherever they ran.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kscale_lab.sweeps import sweep  # noqa: E402


def timed(**kw):
    t0 = time.perf_counter()
    df = sweep(progress=False, **kw)
    return df, time.perf_counter() - t0


def model_columns(df):
    return df[[c for c in df.columns if "wall_time" not in c]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lab", default="heartbeats")
    ap.add_argument("--points", type=int, default=8, help="grid points (Node object sizes), default 8")
    ap.add_argument("--nodes", type=int, default=2000)
    ap.add_argument("--scheduler", default=None, help="also run on this Dask scheduler")
    args = ap.parse_args(argv)
    sizes = [int(2_000 + i * 48_000 / max(args.points - 1, 1)) for i in range(args.points)]
    kw = dict(lab=args.lab, grid={"node_object_bytes": sizes}, base={"nodes": args.nodes})
    ref = None
    runs = [("1 worker (this process)", dict(workers=1)), ("2 workers (processes)", dict(workers=2))]
    if args.scheduler:
        runs.append((f"dask {args.scheduler}", dict(scheduler=args.scheduler)))
    print(f"sweep {args.lab}: {args.points} points x 3 settings at {args.nodes:,} nodes")
    for label, extra in runs:
        df, wall = timed(**kw, **extra)
        same = "" if ref is None else ("  same table" if model_columns(df).equals(model_columns(ref))
                                       else "  TABLE DIFFERS")
        ref = df if ref is None else ref
        print(f"  {label:<28} {len(df):4d} runs in {wall:6.2f} s: {len(df) / wall:6.2f} runs/s{same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Wall time and counted work per allocation / free for bbolt's two freelists.

    .venv/bin/python benchmarks/bench_freelist.py [--sizes 1e3,1e4,1e5,1e6] [--seed 0]

For each size, a fragmented free list of that many free spans (run lengths and gaps
geometric with mean 4 pages: about 4 free pages per span) is built for the array and
for the segregated hashmap. Then rounds of one write transaction each allocate runs of
1-8 pages, the next transaction frees them, and the release that begins the following
transaction merges them back, so the list keeps its size. Reported per operation:

* alloc us: wall time of ``allocate`` (Python; not bbolt's Go time);
* alloc work: counted work per allocation (array: ids scanned + ids moved; hashmap:
  spans touched + size classes visited); this is what the cost model turns into time;
* free us / release us: wall time of ``free`` and of the release per freed run;
* release work: ids merged (array) or spans touched (hashmap) per freed run.

Target (bbolt PR #141, the article's section 1): the hashmap stays within about 2x
across the range while the array grows with the free list.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kscale_lab.etcd.freelist import ArrayFreelist, HashmapFreelist, fragmented_spans  # noqa: E402


def alloc_work(w) -> int:
    return int(w.ids_scanned + w.ids_moved + w.spans_touched + w.size_classes_scanned)


def release_work(w) -> int:
    return int(w.ids_merged + w.spans_touched)


def bench(cls, starts, sizes, n_allocs: int, round_size: int, seed: int) -> dict:
    t0 = time.perf_counter()
    fl = cls.from_spans(starts, sizes)
    build = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    t_alloc = t_free = t_release = 0.0
    w_alloc = w_release = 0
    done = failed = freed_runs = 0
    txid = 2
    while done < n_allocs:
        k = min(round_size, n_allocs - done)
        ns = rng.integers(1, 9, size=k).tolist()
        fl.reset_work()
        got = []
        t = time.perf_counter()
        for n in ns:
            s = fl.allocate(txid, n)
            if s:
                got.append((s, n))
        t_alloc += time.perf_counter() - t
        w_alloc += alloc_work(fl.reset_work())
        failed += k - len(got)
        done += k
        t = time.perf_counter()
        for s, n in got:
            fl.free(txid + 1, s, n)
        t_free += time.perf_counter() - t
        t = time.perf_counter()
        fl.release_pending_pages(())  # the next write transaction begins, no readers
        t_release += time.perf_counter() - t
        w_release += release_work(fl.reset_work())
        freed_runs += len(got)
        txid += 2
    return {
        "build_s": build,
        "alloc_us": 1e6 * t_alloc / done,
        "alloc_work": w_alloc / done,
        "free_us": 1e6 * t_free / max(freed_runs, 1),
        "release_us": 1e6 * t_release / max(freed_runs, 1),
        "release_work": w_release / max(freed_runs, 1),
        "failed": failed,
        "n": done,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e3,1e4,1e5,1e6", help="free spans per list, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--allocs", type=int, default=2000, help="allocations per freelist and size")
    args = ap.parse_args(argv)
    sizes = [int(float(x)) for x in args.sizes.split(",")]
    rows = []
    t_all = time.perf_counter()
    print(f"{'spans':>9} {'free pages':>11} {'freelist':>8} {'build s':>8} {'allocs':>6} {'alloc us':>10} "
          f"{'alloc work':>11} {'free us':>8} {'release us':>11} {'release work':>13} {'failed':>6}")
    for n_spans in sizes:
        starts, z, _ = fragmented_spans(n_spans=n_spans, mean_run=4.0, seed=args.seed)
        round_size = max(1, min(100, n_spans // 20))
        for cls in (ArrayFreelist, HashmapFreelist):
            r = bench(cls, starts, z, args.allocs, round_size, args.seed)
            rows.append((n_spans, cls.kind, r))
            print(f"{n_spans:>9,} {int(z.sum()):>11,} {cls.kind:>8} {r['build_s']:>8.2f} {r['n']:>6} "
                  f"{r['alloc_us']:>10.1f} {r['alloc_work']:>11,.0f} {r['free_us']:>8.1f} "
                  f"{r['release_us']:>11.1f} {r['release_work']:>13,.0f} {r['failed']:>6}", flush=True)
    by = {(n, k): r for n, k, r in rows}
    lo, hi = min(sizes), max(sizes)
    for kind in ("array", "hashmap"):
        a, b = by[(lo, kind)], by[(hi, kind)]
        print(f"{kind:>8}: alloc wall time x{b['alloc_us'] / a['alloc_us']:.1f}, alloc work "
              f"x{b['alloc_work'] / max(a['alloc_work'], 1e-9):.1f}, release wall time "
              f"x{b['release_us'] / a['release_us']:.1f} from {lo:,} to {hi:,} spans")
    print(f"total {time.perf_counter() - t_all:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

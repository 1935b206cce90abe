"""Wall times of the etcd storage lab, and the figures they produce.

    .venv/bin/python benchmarks/bench_etcd_storage.py [--exact-nodes 300,1000] [--no-dashboard]

Prints, each with its wall time (this machine; a fresh process, so the first sweep includes
measuring the work laws on the real freelists):

* the 1-100 GB sweep (15 sizes x 2 freelists, the 10k-node write stream), cold then warm, and a
  200-size sweep: put p50/p99 at 2 and 100 GB;
* ``run`` for each setting at 10k nodes (16 simulated minutes, one etcd), and with one etcd per
  resource;
* the claims (every model computation behind ``kscale-lab claims --lab etcd-storage``);
* the exact page model on the lab's stream (both freelists) at the ``--exact-nodes`` sizes, and
  how far the fast tier's db size is from it;
* a dashboard recompute (a control change), unless ``--no-dashboard``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kscale_lab.labs.etcd_storage import GB, LAB  # noqa: E402


def timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exact-nodes", default="300,1000")
    ap.add_argument("--no-dashboard", action="store_true")
    args = ap.parse_args(argv)

    sw, t_cold = timed(LAB.sweep, "article")
    _, t_warm = timed(LAB.sweep, "article")
    _, t_200 = timed(LAB.sweep, "article", sizes=np.geomspace(GB, 100 * GB, 200))
    print(f"sweep 1-100 GB, 15 sizes x 2 freelists: cold {t_cold:.3f} s (work laws measured), warm {t_warm * 1e3:.1f} ms; "
          f"200 sizes: {t_200 * 1e3:.1f} ms")
    for fl in ("array", "map"):
        g = sw[sw.freelist == fl]
        two = LAB.sweep("article", sizes=[2 * GB, 100 * GB], freelists=(fl,))
        print(f"  {fl:>5}: put p50 {two.put_p50_s.iloc[0] * 1e3:.2f} / {two.put_p50_s.iloc[1] * 1e3:.2f} ms, "
              f"p99 {two.put_p99_s.iloc[0] * 1e3:.2f} / {two.put_p99_s.iloc[1] * 1e3:.2f} ms, commit "
              f"{two.commit_s.iloc[0] * 1e3:.2f} / {two.commit_s.iloc[1] * 1e3:.2f} ms at 2 / 100 GB; "
              f"capacity {g.capacity.iloc[0]:,.0f} -> {g.capacity.iloc[-1]:,.0f} puts/s")

    for s in LAB.settings:
        r, t = timed(LAB.run, s)
        sm = r.summary
        print(f"run {s:>8} (10k nodes, 16 min): {t:.2f} s; db peak {sm['etcd_mvcc_db_total_size_in_bytes_max'] / GB:.2f} GB, "
              f"NOSPACE at {sm['etcd_nospace_at_s']} s, history/window "
              f"{sm['history_bytes_per_compaction_window'] / GB:.2f} GB, free pages max {sm['bbolt_free_pages_max']:,.0f}")
    r, t = timed(LAB.run, "off", {"etcd_servers_overrides": "per-resource"})
    print(f"run      off, one etcd per resource: {t:.2f} s; NOSPACE at {r.summary['etcd_nospace_at_s']} s")

    c, t = timed(LAB.claims)
    print(f"claims: {t:.2f} s")
    for k, v in c.items():
        print(f"  {k} = {v:.4g}")

    for n in [int(x) for x in args.exact_nodes.split(",") if x]:
        o = {"nodes": n, "etcd_compaction_interval": 60.0, "db_size_bytes": 0}
        for fl in ("map", "array"):
            ex, t = timed(LAB.exact, "article", dict(o, backend_bbolt_freelist_type=fl), duration=200.0)
            fast = LAB.run("article", dict(o, backend_bbolt_freelist_type=fl, duration=200.0)).series
            d_ex = ex.summary["etcd_mvcc_db_total_size_in_bytes"]
            d_fast = fast.etcd_mvcc_db_total_size_in_bytes.iloc[-1]
            print(f"exact page model {n:>5} nodes, 200 s, {fl:>5}: {t:.2f} s, {ex.summary['commits']:,} commits, "
                  f"{ex.summary['puts']:,} puts; db {d_ex / 1e6:.0f} MB (fast tier {d_fast / 1e6:.0f} MB, "
                  f"{100 * (d_fast / d_ex - 1):+.1f} %), spill max {ex.summary['spill_seconds_max'] * 1e3:.2f} ms")

    if not args.no_dashboard:
        from kscale_lab.viz.etcd_storage import EtcdStorageDashboard

        d, t = timed(EtcdStorageDashboard)
        print(f"dashboard: built in {t:.2f} s")
        for name, value in (("switch", "article"), ("db_gb", 50.0), ("churn", 100), ("split", "per-resource")):
            _, t = timed(setattr, d.controls[name], "value", value)
            print(f"  {name} -> {value}: recomputed in {t:.2f} s (model {d.seconds:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed and figures of the cached-reads lab at 10k nodes / 200k pods (prints; asserts nothing).

    .venv/bin/python benchmarks/bench_cached_reads.py [--nodes N] [--repeat R] [--notebook]

Target from the issue: the describe-node scenario at 10k nodes / 200k pods recomputes in
<= 1 s. Printed: the cold build of the cluster state (writes, the pods/nodes/events watch
caches with their indexes), a warm full run per setting (describe node, get nodes, the
kubelet LIST storm, read-after-write probes), describe node alone, a dashboard toggle, the
lab's figures, peak memory, and optionally the notebook's Run-All time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import notebook_seconds  # benchmarks/_common.py (the script's folder is on sys.path)

ROOT = Path(__file__).resolve().parent.parent


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def peak_memory_child(nodes: int) -> float:
    code = ("from kscale_lab.labs.cached_reads import LAB\n"
            f"[LAB.run(s, {{'nodes': {nodes}}}) for s in LAB.settings]\n"
            "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) * 1024 / 1e9


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--notebook", action="store_true", help="also time the notebook's Run-All")
    args = ap.parse_args(argv)

    from kscale_lab.apiserver.consistent_read import ReadCosts
    from kscale_lab.labs import cached_reads as cr

    lab = cr.LAB
    o = {"nodes": args.nodes}
    p = lab.resolve("off", o)
    cr._STATES.clear()
    t = time.perf_counter()
    st = cr.cluster_state(p)
    build = time.perf_counter() - t
    print(f"cached-reads at {args.nodes:,} nodes / {p['pods']:,} pods / {p['events']:,} events")
    print(f"  cold build of the cluster state (writes + 3 watch caches)  {build:6.3f} s")
    res = {}
    for s in lab.settings:
        sec, res[s] = timed(lambda s=s: lab.run(s, o), args.repeat)
        print(f"  warm run, {s:<8} (describe, get nodes, storm, probes)     {sec:6.3f} s")
    costs = ReadCosts.from_params(p)
    for s in lab.settings:
        ps = lab.resolve(s, o)
        sec, _ = timed(lambda s=s, ps=ps: cr.describe_node(s, ps, st, costs, 0, st.t_describe), args.repeat)
        print(f"  describe node alone, {s:<8}                            {sec:6.3f} s")

    from kscale_lab.viz.cached_reads import CachedReadsDashboard

    dash = CachedReadsDashboard(nodes=min(max(args.nodes // 1000 * 1000, 1000), 20_000))
    toggles = []
    for s in ["article", "upstream", "off", "article"]:
        dash.controls["switch"].value = s
        toggles.append(dash.seconds)
    print(f"  dashboard switch toggle (median of {len(toggles)})               {statistics.median(toggles):6.3f} s")

    print("figures (seconds unless said):")
    keys = ["describe_node_seconds", "describe_node_list_pods_seconds", "describe_node_list_events_seconds",
            "get_nodes_seconds", "describe_node_objects_decoded", "pods_list_etcd_round_trips",
            "describe_node_apiserver_cpu_seconds", "describe_node_etcd_cpu_seconds",
            "kubelet_list_p99_seconds", "kubelet_list_failed_share", "kubelet_list_progress_requests",
            "read_after_write_stale_share_rv0", "read_after_write_stale_share_consistent"]
    print(f"  {'metric':<42}" + "".join(f"{s:>14}" for s in lab.settings))
    for k in keys:
        print(f"  {k:<42}" + "".join(f"{res[s].summary[k]:>14.4g}" for s in lab.settings))
    kep = cr.kep2340_reproduction()
    print(f"  KEP-2340 test: etcd {kep['latency_off']:.2f} s (KEP {kep['kep_latency_off']:.2f}), cache "
          f"{kep['latency_on']:.3f} s (KEP {kep['kep_latency_on']:.3f})")
    print(f"peak memory, all three settings in a fresh process: {peak_memory_child(args.nodes):.2f} GB")
    if args.notebook:
        print(f"notebook Run-All (solutions): {notebook_seconds(ROOT / 'labs/solutions/04_cached_reads.ipynb'):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

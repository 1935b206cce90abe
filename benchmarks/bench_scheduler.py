"""Scheduler lab benchmark: wall time of the model, and what the model says.

Run: ``.venv/bin/python benchmarks/bench_scheduler.py [--quick]``

Prints (no assertions):

1. wall time to place 200k pods on 10k nodes (scenario ``scale-200k``) per setting;
2. wall time of the default burst (scenario ``burst``, 10k nodes) per setting;
3. modelled metrics (p50/p99 scheduling latency, pods/s, nodes evaluated per pod,
   placement quality, imbalance) for off / article / upstream at 1k, 5k and 10k nodes,
   plus upstream variants (batching with rescoring; percentageOfNodesToScore=100).

Targets to compare with (never used by the model): the article reports ~10 s pod
scheduling latency at 10k nodes unoptimised; scheduler_perf's SchedulingBasic
5000Nodes_10000Pods expects at least 680 pods/s (test/integration/scheduler_perf/misc/
performance-config.yaml threshold); issue #63784 measured 100+ pods/s (eCache off) vs
60+ pods/s (eCache on) at 3,000 nodes in 2018.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from kscale_lab.scheduler import compare, run
from kscale_lab.scheduler.search import MODES


def wall(scenario: str, setting: str, params: dict | None = None) -> tuple[float, dict]:
    t0 = time.perf_counter()
    m, _ = run(scenario, setting, params)
    return time.perf_counter() - t0, m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the 200k-pod runs")
    args = ap.parse_args()
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)

    if not args.quick:
        print("== 200k pods on 10k nodes (scenario scale-200k), wall time per setting")
        for s in MODES:
            w, m = wall("scale-200k", s)
            print(f"  {s:9s} wall {w:6.2f} s   pods {m['pods']:,}  scheduled {m['scheduled']:,}  "
                  f"modelled p99 {m['scheduler_pod_scheduling_sli_duration_seconds_p99']:8.1f} s  "
                  f"capacity {m['capacity_pods_per_s']:7.0f} pods/s  classes {m['equivalence_classes']}")

    print("\n== default burst (scenario burst, 10k nodes), wall time per setting")
    for s in MODES:
        w, m = wall("burst", s)
        print(f"  {s:9s} wall {w:6.3f} s   pods {m['pods']:,}")

    cols = {
        "burst_scheduler_pod_scheduling_sli_duration_seconds_p50": "burst p50 s",
        "burst_scheduler_pod_scheduling_sli_duration_seconds_p99": "burst p99 s",
        "scheduler_scheduling_attempt_duration_seconds_p99": "attempt p99 s",
        "mean_cycle_s": "cycle s",
        "capacity_pods_per_s": "capacity pods/s",
        "burst_throughput_pods_per_s": "burst pods/s",
        "nodes_evaluated_per_pod": "nodes eval/pod",
        "filter_evaluations_per_pod": "filter evals/pod",
        "nodes_scored_per_pod": "scored/pod",
        "batched_share": "batched",
        "score_gap_mean": "score gap",
        "best_score_share": "best share",
        "node_cpu_utilisation_cv": "cpu util CV",
    }
    print("\n== modelled metrics, scenario burst (3,000-pod Deployment at 1,000 pods/s, 10 % anti-affinity, "
          "20 pods/s churn)")
    for n in (1_000, 5_000, 10_000):
        df = compare("burst", {"nodes": n})
        print(f"\n-- {n:,} nodes")
        print(df[list(cols)].rename(columns=cols).to_string(float_format=lambda x: f"{x:.4g}"))

    print("\n== upstream variants at 10k nodes")
    rows = {}
    for name, extra in (
        ("upstream (v1.35 batching)", {}),
        ("upstream + rescore (v1.37)", {"batching_rescore": True}),
        ("upstream, no batching", {"opportunistic_batching": False}),
        ("upstream, percentageOfNodesToScore=100", {"percentage_of_nodes_to_score": 100}),
        ("article, eCache read cost 0", None),
    ):
        if extra is None:
            m, _ = run("burst", "article", {"equivalence_read_cost_s": 0.0})
        else:
            m, _ = run("burst", "upstream", extra)
        rows[name] = {v: m[k] for k, v in cols.items()}
    print(pd.DataFrame(rows).T.to_string(float_format=lambda x: f"{x:.4g}"))

    print("\n== 1-pod-per-node burst (burst_cpu_m=20000): where KEP-5598 v1.35 batching applies, 10k nodes")
    df = compare("burst", {"burst_cpu_m": 20_000, "burst_mem_mib": 8_192, "burst_affinity_share": 0.0,
                           "burst_pods": 2_000})
    print(df[list(cols)].rename(columns=cols).to_string(float_format=lambda x: f"{x:.4g}"))


if __name__ == "__main__":
    main()

"""Checks for the scheduler lab's exercises.

1. ``nodes_to_score(num_all_nodes, percentage)``: upstream's numFeasibleNodesToFind,
   checked on the boundaries of its floors and on random sizes.
2. ``class_key(pod)``: an equivalence-class key for pods given as plain dicts; checked
   for soundness (pods that share a key behave the same on every node) and use (the
   replicas of one Deployment share a key, whatever their names and field order).
3. ``burst_needed``: the smallest burst at which the unoptimised scheduler reaches the
   article's 10 s at 10k nodes; checked by running the model at the answer and 20 %
   below it.
"""

from __future__ import annotations

import numpy as np

from . import Verdict, call_student, verdict

EX1 = "Exercise 1 (the number of nodes to score)"
EX2 = "Exercise 2 (an equivalence-class key)"
EX3 = "Exercise 3 (how big a burst for ~10 s?)"

# ----------------------------------------------------------------------------- exercise 1
_SIZES = (0, 1, 50, 99, 100, 101, 150, 199, 200, 499, 500, 1_000, 1_250, 2_500, 4_999, 5_000, 5_624, 5_625,
          5_626, 6_000, 10_000, 12_345, 20_000, 50_000)
_PERCENTAGES = (0, 1, 5, 10, 42, 50, 100)


def check_nodes_to_score(fn) -> Verdict:
    """``fn(num_all_nodes, percentage_of_nodes_to_score)`` -> feasible nodes to find."""
    from ..scheduler.search import num_feasible_nodes_to_find

    rng = np.random.default_rng(5)
    cases = [(n, p) for n in _SIZES for p in _PERCENTAGES]
    cases += [(int(n), int(p)) for n, p in zip(rng.integers(0, 60_000, 60), rng.choice(_PERCENTAGES, 60))]
    for n, pct in cases:
        got, bad = call_student(EX1, fn, n, pct)
        if bad:
            return bad
        want = num_feasible_nodes_to_find(n, pct)
        try:
            ok = int(got) == want and float(got) == want
        except (TypeError, ValueError):
            ok = False
        if not ok:
            how = "the adaptive default" if pct == 0 else f"percentageOfNodesToScore: {pct}"
            return verdict(EX1, "not yet right",
                           f"For {n:,} nodes with {how}, kube-scheduler looks for {want:,} feasible nodes; "
                           f"your function says {got!r}.")
    return verdict(EX1, "done", f"Your function agrees with numFeasibleNodesToFind on {len(cases)} cases, "
                                f"the 100-node and 5 % floors included.")


# ----------------------------------------------------------------------------- exercise 2
ZONES = ("zone-a", "zone-b", "zone-c")
DISKTYPES = ("hdd", "ssd")
POOLS = ("pool-0", "pool-1", "pool-2", "pool-3")
TOLERATIONS = ("dedicated=gpu", "dedicated=infra", "node.kubernetes.io/unschedulable",
               "node.kubernetes.io/disk-pressure")

#: the Deployments the exercise's pods come from: (app, cpu_m, mem_mib, node_selector, zones, tolerations,
#: anti-affinity group); pairs of them differ in one field only
TEMPLATES = (
    ("web", 500, 1024, {}, [], [], None),
    ("web-big", 1000, 1024, {}, [], [], None),            # differs from web in cpu only
    ("web-ssd", 500, 1024, {"disktype": "ssd"}, [], [], None),
    ("web-ssd-pool", 500, 1024, {"disktype": "ssd", "pool": "pool-1"}, [], [], None),
    ("web-ab", 500, 1024, {}, ["zone-a", "zone-b"], [], None),
    ("web-c", 500, 1024, {}, ["zone-c"], [], None),
    ("gpu-job", 500, 1024, {}, [], ["dedicated=gpu"], None),
    ("gpu-infra", 500, 1024, {}, [], ["dedicated=gpu", "dedicated=infra"], None),
    ("cache", 500, 1024, {}, [], [], "cache"),            # differs from web in anti-affinity only
    ("queue", 500, 1024, {}, [], [], "queue"),
    ("db", 2000, 8192, {"disktype": "ssd"}, ["zone-a"], ["dedicated=infra"], "db"),
)


def make_pods(n: int = 400, seed: int = 0) -> list[dict]:
    """Pods as a controller would create them: replicas of :data:`TEMPLATES` with their
    own name, uid and creation time, and map/list fields in no particular order."""
    rng = np.random.default_rng(seed)
    pods = []
    for i in range(n):
        app, cpu, mem, sel, zones, tol, anti = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        sel_items = list(sel.items())
        rng.shuffle(sel_items)
        zones = list(zones)
        rng.shuffle(zones)
        tol = list(tol)
        rng.shuffle(tol)
        suffix = "".join(rng.choice(list("bcdfghjklmnpqrstvwxz2456789"), 5))
        pods.append({
            "name": f"{app}-7d4b9c-{suffix}",
            "uid": f"{int(rng.integers(1 << 62)):016x}",
            "created_at": round(float(i) * 0.001 + float(rng.random()) * 1e-4, 6),
            "labels": {"app": app, "pod-template-hash": "7d4b9c"},
            "image": f"registry.local/{app}:1.{len(app)}",
            "requests": {"cpu_m": cpu, "mem_mib": mem},
            "node_selector": dict(sel_items),
            "required_zones": zones,
            "tolerations": tol,
            "anti_affinity": anti,
        })
    return pods


def pod_spec_of(pod: dict):
    """The fields the modelled filters and scores read, as a
    :class:`~kscale_lab.scheduler.cluster_state.PodSpec` (order-independent)."""
    from ..scheduler.cluster_state import LABEL_DISKTYPE, LABEL_POOL, LABEL_ZONE, TAINT_BITS, PodSpec

    keys = {"disktype": (LABEL_DISKTYPE, DISKTYPES), "pool": (LABEL_POOL, POOLS),
            "topology.kubernetes.io/zone": (LABEL_ZONE, ZONES)}
    sel = tuple(sorted((keys[k][0], keys[k][1].index(v)) for k, v in pod["node_selector"].items()))
    mask = sum(1 << ZONES.index(z) for z in set(pod["required_zones"]))
    aff = ((LABEL_ZONE, mask),) if mask else ()
    tol = sum(1 << TAINT_BITS.index(t) for t in set(pod["tolerations"]))
    groups = sorted({t[6] for t in TEMPLATES if t[6]})
    anti = groups.index(pod["anti_affinity"]) if pod["anti_affinity"] else -1
    return PodSpec(int(pod["requests"]["cpu_m"]), int(pod["requests"]["mem_mib"]), sel, aff, tol, anti)


def _differs(a: dict, b: dict) -> str:
    sa, sb = pod_spec_of(a), pod_spec_of(b)
    for field in ("cpu_m", "mem_mib", "node_selector", "required_affinity", "tolerations", "anti_affinity_group"):
        if getattr(sa, field) != getattr(sb, field):
            return {"cpu_m": "requests", "mem_mib": "requests", "node_selector": "node_selector",
                    "required_affinity": "required_zones", "tolerations": "tolerations",
                    "anti_affinity_group": "anti_affinity"}[field]
    return ""


def check_class_key(fn) -> Verdict:
    """``fn(pod: dict)`` -> a hashable key. Sound: pods that share a key have the same
    requests, node selector, required zones, tolerations and anti-affinity (so every
    filter and score gives them the same answer on every node). Useful: replicas of
    one Deployment share a key, whatever their name, uid, creation time and the order
    of their map and list fields."""
    pods = make_pods()
    keys = []
    for pod in pods:
        key, bad = call_student(EX2, fn, pod)
        if bad:
            return bad
        try:
            hash(key)
        except TypeError:
            return verdict(EX2, "not yet right", f"Your key for {pod['name']} is not hashable "
                                                 f"({type(key).__name__}): a dict or a list cannot be a dict key.")
        keys.append(key)
    first: dict = {}
    for pod, key in zip(pods, keys):
        other = first.setdefault(key, pod)
        what = _differs(pod, other)
        if what:
            return verdict(EX2, "not yet right",
                           f"{other['name']} and {pod['name']} share a key but differ in {what}: a node can be "
                           f"feasible for one and not for the other.")
    by_spec: dict = {}
    for pod, key in zip(pods, keys):
        spec = pod_spec_of(pod)
        if spec in by_spec and by_spec[spec][1] != key:
            return verdict(EX2, "not yet right",
                           f"{by_spec[spec][0]['name']} and {pod['name']} are replicas of one Deployment (same "
                           f"requests, selector, zones, tolerations, anti-affinity) but get different keys: "
                           f"they would never share a class.")
        by_spec.setdefault(spec, (pod, key))
    return verdict(EX2, "done", f"{len(pods)} pods, {len(set(keys))} classes: one per Deployment, and pods in "
                                f"one class get the same answer from every filter and score.")


# ----------------------------------------------------------------------------- exercise 3
def check_burst_needed(answer, target_s: float = 10.0, setting: str = "off", nodes: int = 10_000) -> Verdict:
    """``answer``: the smallest burst (pods) with which the unoptimised scheduler's p99
    scheduling latency at 10k nodes reaches ``target_s`` (to within 20 %)."""
    from ..labs.scheduler import LAB

    if answer is None:
        return verdict(EX3, "not done yet", "Set burst_needed to your answer.")
    try:
        b = int(round(float(answer)))
    except (TypeError, ValueError, OverflowError):
        return verdict(EX3, "not yet right", f"burst_needed must be a number of pods; got {answer!r}.")
    if not 1 <= b <= 500_000:
        return verdict(EX3, "not yet right", f"burst_needed must be between 1 and 500,000 pods; got {b:,}.")
    key = "scheduler_pod_scheduling_sli_duration_seconds_p99"
    at = LAB.run(setting, {"nodes": nodes, "burst_pods": b}).summary[key]
    below = LAB.run(setting, {"nodes": nodes, "burst_pods": int(b * 0.8)}).summary[key]
    if at < target_s:
        return verdict(EX3, "not yet right", f"With a burst of {b:,} pods the p99 is {at:.1f} s: not yet "
                                             f"{target_s:g} s.")
    if below >= target_s:
        return verdict(EX3, "not yet right", f"{int(b * 0.8):,} pods (20 % fewer) already give {below:.1f} s: "
                                             f"look lower.")
    return verdict(EX3, "done", f"{b:,} pods give a p99 of {at:.1f} s; 20 % fewer give {below:.1f} s.")

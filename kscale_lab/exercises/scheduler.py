"""Checks for the scheduler lab's exercises.

1. ``nodes_to_score(num_all_nodes, percentage, min_nodes, min_percentage)``: upstream's
   numFeasibleNodesToFind with its two floors as parameters, checked against an
   independent implementation on the floors' boundaries, on random sizes and on other
   floors (so calling the lab's ``nodes_to_score``, which only knows upstream's floors,
   does not pass; nor does code that names it);
2. ``class_key(pod)``: an equivalence-class key for pods given as plain dicts; checked for
   soundness (pods that share a key behave the same on every node: pods of one
   Deployment can differ, in a rollout or under a VerticalPodAutoscaler) and use (pods
   that read the same in every field the filters and scores use share a key, whatever
   their names, labels, field order, or Deployment);
3. ``burst_needed(capacity_pods_per_s, creation_rate, target_s)``: the derivation of the
   smallest burst with which the unoptimised scheduler's p99 reaches ``target_s``,
   evaluated on several clusters and targets against the model (within 20 %). The
   checker never prints the model's burst nor says which way an answer is off.
"""

from __future__ import annotations

import numpy as np

from . import Hints, Verdict, call_quiet, call_student, refuse_shortcut, verdict

EX1 = "Exercise 1 (the number of nodes to score)"
EX2 = "Exercise 2 (an equivalence-class key)"
EX3 = "Exercise 3 (how big a burst for ~10 s?)"

hint = Hints({
    1: ["Three rules, in this order: a small cluster is searched whole; then the percentage (the adaptive one "
        "when it is 0); then a floor on the result.",
        "Below min_nodes nodes: all of them. Percentage 0 means 50 - num_all_nodes // 125, never below "
        "min_percentage. The result is num_all_nodes * percentage // 100, never below min_nodes.",
        "if n < min_nodes: return n; pct = pct or max(50 - n // 125, min_percentage); "
        "return max(n * pct // 100, min_nodes). Integer division throughout, as in Go."],
    2: ["What does a filter or a score read? Only the fields listed in the task: a pod's name, uid, "
        "creation time, image and labels never decide where it fits.",
        "Labels are not enough: during a rollout one app label covers two templates, and a "
        "VerticalPodAutoscaler sets each pod's requests when it is created. Build the key from the fields "
        "themselves.",
        "Dicts and lists are not hashable and their order differs between replicas: a tuple of cpu_m, mem_mib, "
        "frozenset(node_selector.items()), frozenset(required_zones), frozenset(tolerations), anti_affinity."],
    3: ["Where does the wait come from? Nothing in a cycle is slow: pods arrive faster (creation_rate) than "
        "the scheduler serves them (capacity_pods_per_s), and the difference queues.",
        "Pod k of the burst is created at k / creation_rate and bound at about k / capacity: its wait grows "
        "linearly with k. The p99 over all pods is close to the wait of the burst's last pods.",
        "wait(k) = k (1 / capacity - 1 / creation_rate); set the last pod's wait to target_s and solve for k. "
        "(The churn pods shift the p99 a little: within 20 % you may ignore them.)"],
}, {1: EX1, 2: EX2, 3: EX3})

# ----------------------------------------------------------------------------- exercise 1
_SIZES = (0, 1, 50, 99, 100, 101, 150, 199, 200, 499, 500, 1_000, 1_250, 2_500, 4_999, 5_000, 5_624, 5_625,
          5_626, 6_000, 10_000, 12_345, 20_000, 50_000)
_PERCENTAGES = (0, 1, 5, 10, 42, 50, 100)
#: (min_nodes, min_percentage): upstream's floors first, then others the imported helper cannot answer
_FLOORS = ((100, 5), (50, 5), (300, 5), (100, 2), (100, 10), (250, 8))
_SHORTCUTS = ("nodes_to_score", "num_feasible_nodes_to_find")


def feasible_nodes_to_find(n: int, pct: int = 0, min_nodes: int = 100, min_percentage: int = 5) -> int:
    """numFeasibleNodesToFind (pkg/scheduler/schedule_one.go) written out again, with its
    constants minFeasibleNodesToFind and minFeasibleNodesPercentageToFind as parameters:
    the checker's reference, independent of :mod:`kscale_lab.scheduler.search`."""
    if n < min_nodes:
        return n
    if pct == 0:
        pct = 50 - n // 125
        if pct < min_percentage:
            pct = min_percentage
    num = n * pct // 100
    return min_nodes if num < min_nodes else num


def check_nodes_to_score(fn) -> Verdict:
    """``fn(num_all_nodes, percentage_of_nodes_to_score, min_nodes, min_percentage)`` ->
    feasible nodes to find."""
    from ..labs.scheduler import nodes_to_score
    from ..scheduler.search import num_feasible_nodes_to_find

    bad = refuse_shortcut(EX1, fn, _SHORTCUTS, " (the check also varies the floors, which it cannot)",
                          objects=(nodes_to_score, num_feasible_nodes_to_find))
    if bad:
        return bad
    rng = np.random.default_rng(5)
    cases = [(n, p, 100, 5) for n in _SIZES for p in _PERCENTAGES]
    cases += [(int(n), int(p), 100, 5) for n, p in zip(rng.integers(0, 60_000, 60), rng.choice(_PERCENTAGES, 60))]
    for mn, mp in _FLOORS[1:]:
        cases += [(n, p, mn, mp) for n in (0, 40, mn - 1, mn, mn + 1, 2 * mn, 1_000, 5_625, 10_000, 50_000)
                  for p in (0, 1, 50)]
    for n, pct, mn, mp in cases:
        got, bad = call_student(EX1, fn, n, pct, mn, mp)
        if bad:
            return bad
        want = feasible_nodes_to_find(n, pct, mn, mp)
        try:
            ok = int(got) == want and float(got) == want
        except (TypeError, ValueError):
            ok = False
        if not ok:
            how = "the adaptive default" if pct == 0 else f"percentageOfNodesToScore: {pct}"
            floors = "" if (mn, mp) == (100, 5) else f", floors min_nodes={mn}, min_percentage={mp}"
            return verdict(EX1, "not yet right",
                           f"For {n:,} nodes with {how}{floors}, kube-scheduler's rule looks for {want:,} feasible "
                           f"nodes; your function says {got!r}.")
    return verdict(EX1, "done", f"Your function agrees with numFeasibleNodesToFind on {len(cases)} cases, "
                                f"both floors included, upstream's and others.")


# ----------------------------------------------------------------------------- exercise 2
ZONES = ("zone-a", "zone-b", "zone-c")
DISKTYPES = ("hdd", "ssd")
POOLS = ("pool-0", "pool-1", "pool-2", "pool-3")
TOLERATIONS = ("dedicated=gpu", "dedicated=infra", "node.kubernetes.io/unschedulable",
               "node.kubernetes.io/disk-pressure")

#: the pod templates the exercise's pods come from: (Deployment, pod-template-hash, cpu_m, mem_mib,
#: node_selector, zones, tolerations, anti-affinity group). Pairs differ in one field only; some
#: Deployments share a spec, and one Deployment's pods can differ in spec:
#: * ``web`` is mid-rollout: its old and new ReplicaSets (two hashes) ask for different cpu;
#: * ``api`` and ``web-v1`` are two Deployments with web's old spec (one class);
#: * ``worker`` runs under a VerticalPodAutoscaler: each pod gets its requests when it is created
#:   (a tuple: one value per pod, drawn at random), under one template hash.
TEMPLATES = (
    ("web", "7d4b9c", 500, 1024, {}, [], [], None),
    ("web", "5f8c6d", 750, 1024, {}, [], [], None),             # web's new ReplicaSet: more cpu
    ("api", "6c9d7f", 500, 1024, {}, [], [], None),             # web's old spec, another Deployment
    ("web-v1", "9b8d4c", 500, 1024, {}, [], [], None),          # and another
    ("web-big", "8f7c5b", 1000, 1024, {}, [], [], None),        # differs from web in cpu only
    ("web-ssd", "4c6d8f", 500, 1024, {"disktype": "ssd"}, [], [], None),
    ("web-ssd-pool", "7b5c9d", 500, 1024, {"disktype": "ssd", "pool": "pool-1"}, [], [], None),
    ("web-ab", "6d4f8b", 500, 1024, {}, ["zone-a", "zone-b"], [], None),
    ("web-c", "5c7b9f", 500, 1024, {}, ["zone-c"], [], None),
    ("gpu-job", "9d6c4b", 500, 1024, {}, [], ["dedicated=gpu"], None),
    ("gpu-infra", "8c4b7d", 500, 1024, {}, [], ["dedicated=gpu", "dedicated=infra"], None),
    ("cache", "4f9b6c", 500, 1024, {}, [], [], "cache"),        # differs from web in anti-affinity only
    ("queue", "7f6d5c", 500, 1024, {}, [], [], "queue"),
    ("db", "6b8f4d", 2000, 8192, {"disktype": "ssd"}, ["zone-a"], ["dedicated=infra"], "db"),
    ("worker", "5d9c7b", (250, 400), 512, {}, [], [], None),    # VPA: requests per pod
)


def make_pods(n: int = 400, seed: int = 0) -> list[dict]:
    """Pods as controllers (and admission) would create them: replicas of :data:`TEMPLATES`
    with their own name, uid and creation time, map/list fields in no particular order."""
    rng = np.random.default_rng(seed)
    pods = []
    for i in range(n):
        app, h, cpu, mem, sel, zones, tol, anti = TEMPLATES[i % len(TEMPLATES) if i < len(TEMPLATES)
                                                            else int(rng.integers(len(TEMPLATES)))]
        if isinstance(cpu, tuple):      # the VerticalPodAutoscaler's admission plugin sets this pod's requests
            cpu = int(cpu[int(rng.integers(len(cpu)))])
        sel_items = list(sel.items())
        rng.shuffle(sel_items)
        zones = list(zones)
        rng.shuffle(zones)
        tol = list(tol)
        rng.shuffle(tol)
        suffix = "".join(rng.choice(list("bcdfghjklmnpqrstvwxz2456789"), 5))
        pods.append({
            "name": f"{app}-{h}-{suffix}",
            "uid": f"{int(rng.integers(1 << 62)):016x}",
            "created_at": round(float(i) * 0.001 + float(rng.random()) * 1e-4, 6),
            "labels": {"app": app, "pod-template-hash": h},
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
    groups = sorted({t[7] for t in TEMPLATES if t[7]})
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
    filter and score gives them the same answer on every node), even when they come from
    one Deployment (a rollout, a VerticalPodAutoscaler). Useful: pods that read the same
    in those fields share a key, whatever their name, uid, creation time, labels, the
    order of their map and list fields, or the Deployment they come from."""
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
            same = " (one Deployment, but not one spec)" if pod["labels"]["app"] == other["labels"]["app"] else ""
            return verdict(EX2, "not yet right",
                           f"{other['name']} and {pod['name']} share a key but differ in {what}{same}: a node can be "
                           f"feasible for one and not for the other.")
    by_spec: dict = {}
    for pod, key in zip(pods, keys):
        spec = pod_spec_of(pod)
        if spec in by_spec and by_spec[spec][1] != key:
            return verdict(EX2, "not yet right",
                           f"{by_spec[spec][0]['name']} and {pod['name']} read the same in every field the filters "
                           f"and scores use (requests, selector, zones, tolerations, anti-affinity) but get "
                           f"different keys: they would never share a class.")
        by_spec.setdefault(spec, (pod, key))
    apps = len({p["labels"]["app"] for p in pods})
    return verdict(EX2, "done", f"{len(pods)} pods of {apps} Deployments, {len(set(keys))} classes: one per spec "
                                f"(a rollout's two templates apart, Deployments with one spec together), and pods "
                                f"in one class get the same answer from every filter and score.")


# ----------------------------------------------------------------------------- exercise 3
#: (nodes, burst_creation_rate, target p99 in s): clusters whose schedulers serve 100-360 pods/s
BURST_CASES = ((10_000, 1_000.0, 10.0), (5_000, 1_000.0, 10.0), (20_000, 1_000.0, 20.0), (10_000, 500.0, 10.0))


def check_burst_needed(fn, setting: str = "off", cases=BURST_CASES) -> Verdict:
    """``fn(capacity_pods_per_s, creation_rate, target_s)`` -> the smallest burst (pods)
    with which the unoptimised scheduler's p99 scheduling latency reaches ``target_s``:
    the reader's derivation, evaluated per case at the model's capacity, and checked by
    running the model 20 % below and 20 % above the answer (the p99 must cross the
    target in between). Says which case failed, never the model's burst nor a direction."""
    from ..labs.scheduler import LAB

    if fn is None or not callable(fn):
        return verdict(EX3, "not done yet" if fn is None else "not yet right",
                       "Define burst_needed(capacity_pods_per_s, creation_rate, target_s)."
                       if fn is None else f"burst_needed must be a function; got {type(fn).__name__}.")
    key = "scheduler_pod_scheduling_sli_duration_seconds_p99"
    for nodes, rate, target in cases:
        o = {"nodes": nodes, "burst_creation_rate": rate}
        cap = LAB.run(setting, o).summary["capacity_pods_per_s"]
        b, bad = call_quiet(EX3, fn, cap, rate, target)
        if bad:
            return bad
        if not 1 <= b <= 400_000:
            return verdict(EX3, "not yet right", f"For {nodes:,} nodes ({cap:.0f} pods/s) your formula gives {b:,.0f} "
                                                 f"pods: a burst must be between 1 and 400,000 pods.")
        low = LAB.run(setting, dict(o, burst_pods=int(b * 0.8))).summary[key]
        high = LAB.run(setting, dict(o, burst_pods=int(np.ceil(b * 1.2)))).summary[key]
        if not (low < target <= high):
            return verdict(EX3, "not yet right",
                           f"For {nodes:,} nodes (the scheduler places {cap:.0f} pods/s), a burst created at "
                           f"{rate:,.0f} pods/s and a p99 target of {target:g} s, your formula gives {b:,.0f} pods; "
                           f"the model's smallest such burst is not within 20 % of it. Check the derivation "
                           f"(hint(3) gives a start).")
    return verdict(EX3, "done", f"Your formula finds the burst within 20 % on {len(cases)} clusters and targets: "
                                f"the latency is queueing, set by the cycle time (capacity) and the burst.")

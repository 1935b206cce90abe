"""Exercises that cannot be gamed (CONTRIBUTING.md section 4b).

Every checker rejects the known wrong answers (shortcuts through the lab's own functions,
unsound keys, the target typed in as a constant); numeric tasks are derivations checked on
several inputs; no "not yet right" prints the model's target or a direction to bisect with;
every exercise has staged hints.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

import numpy as np
import pytest

import kscale_lab.exercises as EX
from kscale_lab.exercises import cached_reads as CR
from kscale_lab.exercises import etcd_storage as ES
from kscale_lab.exercises import heartbeats as HB
from kscale_lab.exercises import scheduler as SC

DIRECTION = re.compile(r"\b(lower|higher|look|smaller|larger|bigger|fewer|too (many|few|big|small|low|high))\b", re.I)


def _no_target(detail: str, *targets: float, scale: float = 1.0):
    """Neither a direction nor the target (in the usual formats) is in the message."""
    assert not DIRECTION.search(detail), detail
    for t in targets:
        x = t / scale
        for form in (f"{x:.3g}", f"{x:.2f}") + ((f"{x:,.0f}",) if x >= 100 else ()):
            if len(form.replace(",", "").replace(".", "").lstrip("0")) >= 2:
                assert not re.search(rf"(?<![\d.,]){re.escape(form)}(?![\d.]\d|\d|e)", detail), \
                    f"the target {form} is printed: {detail}"


# ------------------------------------------------------------------------------- hints
def _modules():
    for m in pkgutil.iter_modules(EX.__path__):
        if m.name == "guesses":          # the predictions, not exercises
            continue
        yield importlib.import_module(f"kscale_lab.exercises.{m.name}")


@pytest.mark.parametrize("mod", list(_modules()), ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_every_exercise_has_staged_hints(mod):
    numbers = sorted(int(k[2:]) for k in vars(mod) if re.fullmatch(r"EX\d+", k))
    assert numbers, f"{mod.__name__}: no EX1, EX2, ... titles"
    assert isinstance(mod.hint, EX.Hints), f"{mod.__name__}: no hint = Hints(...)"
    assert sorted(mod.hint.table) == numbers
    for n in numbers:
        levels = mod.hint.table[n]
        assert len(levels) >= 2 and all(len(h) > 20 for h in levels)
        first, last = str(mod.hint(n)), str(mod.hint(n, 99))
        assert first.startswith(getattr(mod, f"EX{n}")) and "hint 1 of" in first and "next: hint(" in first
        assert levels[-1] in last and "the last hint" in last
    assert "must be one of" in mod.hint(99) and "level must be" in mod.hint(numbers[0], 0)


# ------------------------------------------------------------------------------- scheduler
def _key(pod):
    r = pod["requests"]
    return (r["cpu_m"], r["mem_mib"], frozenset(pod["node_selector"].items()), frozenset(pod["required_zones"]),
            frozenset(pod["tolerations"]), pod["anti_affinity"])


def test_class_key_rejects_labels_and_template_hashes():
    assert SC.check_class_key(_key).done
    app = SC.check_class_key(lambda p: p["labels"]["app"])            # the issue's hole: a rollout is unsound
    assert app.status == "not yet right" and "requests" in app.detail
    for wrong in (lambda p: (p["labels"]["app"], p["labels"]["pod-template-hash"]),   # VPA: one hash, two specs
                  lambda p: p["labels"]["pod-template-hash"],
                  lambda p: p["image"],
                  lambda p: (p["labels"]["app"], _key(p))):                       # sound, but api/web-v1 apart
        assert SC.check_class_key(wrong).status == "not yet right"
    pods = SC.make_pods()
    # the test pods do contain what makes those keys wrong
    web = {p["requests"]["cpu_m"] for p in pods if p["labels"]["app"] == "web"}
    worker = {p["requests"]["cpu_m"] for p in pods if p["labels"]["app"] == "worker"}
    assert len(web) == 2 and len(worker) == 2
    specs = {}
    for p in pods:
        specs.setdefault(SC.pod_spec_of(p), set()).add(p["labels"]["app"])
    assert any(len(apps) > 1 for apps in specs.values())      # Deployments that share a spec


def test_nodes_to_score_refuses_the_imported_answer_and_checks_other_floors():
    from kscale_lab.labs.scheduler import nodes_to_score
    from kscale_lab.scheduler.search import num_feasible_nodes_to_find

    def good(n, pct=0, min_nodes=100, min_percentage=5):
        if n < min_nodes:
            return n
        pct = pct or max(50 - n // 125, min_percentage)
        return max(n * pct // 100, min_nodes)

    assert SC.check_nodes_to_score(good).done
    shortcut = SC.check_nodes_to_score(lambda n, p=0, a=100, b=5: nodes_to_score(n, p))
    assert shortcut.status == "not yet right" and "nodes_to_score" in shortcut.detail
    alias = nodes_to_score
    assert SC.check_nodes_to_score(lambda n, p=0, a=100, b=5: alias(n, p)).status == "not yet right"
    fixed = lambda n, p=0, a=100, b=5: good(n, p)      # upstream's floors hard-coded  # noqa: E731
    assert SC.check_nodes_to_score(fixed).status == "not yet right"
    # the checker's reference is independent, and agrees with upstream's floors
    for n in (0, 99, 100, 101, 1_000, 5_624, 5_625, 10_000, 50_000):
        for pct in (0, 1, 5, 42, 100):
            assert SC.feasible_nodes_to_find(n, pct) == num_feasible_nodes_to_find(n, pct)


def test_burst_is_a_derivation_checked_on_several_clusters():
    from kscale_lab.labs.scheduler import LAB

    assert SC.check_burst_needed(lambda mu, lam, t: t / (1 / mu - 1 / lam)).done
    target = LAB.burst_for_latency(10.0)
    typed = SC.check_burst_needed(lambda mu, lam, t: target)          # the default case's answer, typed in
    assert typed.status == "not yet right"
    _no_target(typed.detail, LAB.burst_for_latency(10.0, "off", {"nodes": 5_000}))
    no_arrivals = SC.check_burst_needed(lambda mu, lam, t: t * mu)    # forgets that pods arrive meanwhile
    assert no_arrivals.status == "not yet right"
    assert SC.check_burst_needed(lambda mu, lam, t: float("nan")).status == "not yet right"
    assert SC.check_burst_needed(7).status == "not yet right"


# ------------------------------------------------------------------------------- heartbeats
def test_cores_is_a_derivation_checked_on_several_clusters():
    assert HB.check_cores(lambda h, b, n: (h + b) / n).done
    typed = HB.check_cores(lambda h, b, n: 2.4)                        # about the default's answer
    assert typed.status == "not yet right"
    _no_target(typed.detail)
    margin = HB.check_cores(lambda h, b, n: (h + b) / n / 0.8)        # "keep utilisation under 80 %"
    assert margin.status == "not yet right"
    _no_target(margin.detail)
    assert HB.check_cores(None).status == "not done yet"


# ------------------------------------------------------------------------------- etcd storage
def _db_limit(put_rate):
    from kscale_lab.labs.etcd_storage import GB, LAB

    p = LAB.resolve("article")
    T, limit = p["backend_batch_interval"], p["backend_batch_limit"]
    sw = LAB.sweep("article", {"stress_put_rate": put_rate}, sizes=[10 * GB, 20 * GB], freelists=("array",),
                   load="stress")
    C = limit / sw.capacity.to_numpy()
    L = sw.free_pages.to_numpy()
    slope = (C[1] - C[0]) / (L[1] - L[0])
    return (limit / put_rate - T - (C[0] - slope * L[0])) / slope * p["bbolt_page_size"] / p["free_fraction"]


def test_db_limit_is_a_derivation_checked_at_several_rates():
    assert ES.check_array_limit(_db_limit).done
    at_default = ES.array_limit(ES.LIMIT_RATES[0])
    typed = ES.check_array_limit(lambda r: at_default)                # the default rate's answer, typed in
    assert typed.status == "not yet right"
    _no_target(typed.detail, *[ES.array_limit(r) for r in ES.LIMIT_RATES[1:]], scale=1e9)
    article = ES.check_array_limit(lambda r: 40e9)                     # the article's figure, typed in
    assert article.status == "not yet right"
    _no_target(article.detail, at_default, scale=1e9)
    # the limit does move with the rate: a constant cannot pass
    assert ES.array_limit(1500.0) > 1.5 * ES.array_limit(4000.0)
    assert ES.check_array_limit(3e10).status == "not yet right"       # a number, not a function


# ------------------------------------------------------------------------------- cached reads
def test_round_trips_refuses_plan_list():
    from kscale_lab.etcd.range_reads import plan_list

    def mine(n, limit, grow):
        trips, page, left = 0, limit, n
        while left > 0:
            left -= page
            trips += 1
            if grow:
                page = min(2 * page, 10_000)
        return max(trips, 1)

    assert CR.check_round_trips(mine).done
    shortcut = CR.check_round_trips(lambda n, l, g: plan_list(np.zeros(n, bool), np.ones(n), l, grow=g).etcd_ranges)
    assert shortcut.status == "not yet right" and "plan_list" in shortcut.detail


def test_index_breakeven_is_a_derivation_and_never_prints_the_target():
    good = lambda e, r, f, u: 2 * r * 3600 * u / (e * f)       # noqa: E731
    assert CR.check_index(good).done
    default = CR.index_figures()["breakeven_describes_per_hour"]
    typed = CR.check_index(lambda e, r, f, u: default)         # the default's answer, typed in
    assert typed.status == "not yet right"
    _no_target(typed.detail, CR.index_figures({"events": 60_000})["breakeven_describes_per_hour"])
    one_op = CR.check_index(lambda e, r, f, u: r * 3600 * u / (e * f))   # forgets the delete at expiry
    assert one_op.status == "not yet right"
    _no_target(one_op.detail, default)
    assert CR.check_index(None).status == "not done yet"

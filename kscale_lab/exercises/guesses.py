"""Predict, then compare: the reader's guesses beside what the model computes.

Every lab's "Predict first" section is followed by a ``my_guess`` cell, a dict
whose keys are that lab's questions (values start as ``None``); after the
dashboard one call,

    compare_guess(my_guess, lab)

prints one line per question: "you guessed X, the model says Y", with a symbol and
a word (not a colour) for how close it came. The model's values are computed here,
from the lab's default scenario, never typed in; they move when the model does.

A lab's questions are a list of :class:`Question` in :data:`QUESTIONS`, keyed by the
lab's command-line name. A question is a number (with its unit: a guess within a
factor of two counts as close), a yes/no, or a choice among a few words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

CLOSE_FACTOR = 2.0   # a numeric guess within this factor of the model counts as close
CLOSE_POINTS = 10.0  # a share guessed within this many percentage points counts as close


@dataclass(frozen=True)
class Question:
    key: str
    text: str
    model: Callable[[Any], Any]           # lab -> the model's answer
    unit: str = ""                        # for numbers
    kind: str = "number"                  # "number", "share" (0..1, or a percentage), "yes/no", "choice"
    choices: tuple = field(default=())    # for "choice"


@lru_cache(maxsize=64)
def _summary(lab_name: str, setting: str, overrides: tuple = ()) -> dict:
    from ..labs.base import get_lab

    return get_lab(lab_name).run(setting, dict(overrides)).summary


def _s(setting: str, metric: str, scale: float = 1.0, **overrides):
    return lambda lab: _summary(lab.name, setting, tuple(sorted(overrides.items())))[metric] * scale


def _best(metric: str):
    """The setting with the smallest ``metric`` in the lab's default scenario."""
    return lambda lab: min(lab.settings, key=lambda s: _summary(lab.name, s)[metric])


def _fills_first(lab):
    s = _summary(lab.name, "off")
    if not math.isnan(s["etcd_nospace_at_s"]):
        return "etcd quota"
    return "apiserver cpu" if s["apiserver_cpu_utilisation"] >= 0.95 else "neither"


def _sweep_p99(freelist: str, gb: int):
    def f(lab):
        from ..labs.etcd_storage import GB

        sw = _sweep(lab.name)
        row = sw[(sw.freelist == freelist) & (sw.db_bytes.round() == round(gb * GB))]
        return float(row.put_p99_s.iloc[0]) * 1e3
    return f


@lru_cache(maxsize=4)
def _sweep(lab_name: str):
    from ..labs.base import get_lab
    from ..labs.etcd_storage import GB

    return get_lab(lab_name).sweep("article", sizes=[2 * GB, 100 * GB])


def _heaviest_clients(lab):
    shares = _summary(lab.name, "off")["cpu_share_by_client"]
    name = max(shares, key=shares.get)
    return {"kubelet": "kubelets", "kube-proxy": "kube-proxies"}.get(name, "controllers")


def _capstone_card():
    from ..labs.capstone import LAB

    return LAB.scorecard(progress=False)


def _worst_single_switch(lab):
    from ..labs.capstone import extra_breaks

    extra = extra_breaks(_capstone_card())
    if not extra or max(extra.values()) == 0:
        return "none"
    return max(extra, key=extra.get)


def _first_slo_all_off(lab):
    from ..labs.capstone import SLOS

    first = str(_capstone_card().loc["all off", "first_break"])
    for slo in SLOS:
        if first.startswith(slo.name):
            return SLO_WORDS[slo.name]
    return "none"


#: short names of the capstone's SLOs for a guess
SLO_WORDS = {"API call latency, mutating (p99 <= 1 s)": "write latency",
             "API call latency, single-object reads (p99 <= 1 s)": "read latency",
             "API call latency, LISTs (p99 <= 30 s)": "list latency",
             "pod startup latency (p99 <= 5 s)": "pod startup",
             "nodes falsely NotReady (none)": "nodes notready",
             "API server OOM kills (none)": "apiserver crash",
             "etcd NOSPACE (never)": "etcd nospace"}


QUESTIONS: dict[str, list[Question]] = {
    "flow-control": [
        Question("restart_crashes_off", "without protection (off), does an API server crash (OOM) after the restart?",
                 lambda lab: _summary(lab.name, "off")["restart_crashes"] > 0, kind="yes/no"),
        Question("etcd_gb_per_s_during_fill_off", "GB/s etcd sends to the API servers while their caches fill (off)",
                 _s("off", "restart_etcd_bytes_read_peak_per_s", 1e-9), "GB/s"),
        Question("busiest_resource_article", "the busiest resource while the clients re-list (article)",
                 lambda lab: _summary(lab.name, "article")["restart_binding_resource"].lower(), kind="choice",
                 choices=("apiserver cpu", "apiserver memory", "network etcd->apiserver",
                          "network apiserver->clients", "etcd cpu")),
        Question("lease_success_ds_upstream", "share of Lease renewals that succeed while the DaemonSet runs (upstream)",
                 _s("upstream", "ds_lease_success_share"), kind="share"),
    ],
    "apiserver-lb": [
        Question("busiest_share_after_upgrade", "share of the clients on the busiest API server after the upgrade "
                 "(off, round robin)", _s("off", "upgrade_busiest_share"), kind="share"),
        Question("busiest_share_after_restarts", "the same after two of the three servers restarted",
                 _s("off", "restart_busiest_share"), kind="share"),
        Question("heaviest_clients", "which clients carry most of the API servers' CPU", _heaviest_clients,
                 kind="choice", choices=("kubelets", "kube-proxies", "controllers")),
    ],
    "capstone": [
        Question("worst_single_switch", "which single switch, turned off, breaks the most SLOs the article's cluster keeps",
                 _worst_single_switch, kind="choice",
                 choices=("freelist", "heartbeats", "apiserver_lb", "bookmarks", "cached_reads", "context_cancel",
                          "flow_control", "hot_standby", "scheduler", "none")),
        Question("first_slo_broken_all_off", "which SLO breaks first with every switch off", _first_slo_all_off,
                 kind="choice", choices=tuple(SLO_WORDS.values()) + ("none",)),
    ],
    "context-cancel": [
        Question("goroutines_off_over_article", "goroutines the slowed streams hold during the slow webhook, without "
                 "cancellation (off) over with it (article)",
                 lambda lab: _summary(lab.name, "off")["affected_goroutines_steady"]
                 / _summary(lab.name, "article")["affected_goroutines_steady"], "x"),
        Question("crashes_off", "is an API server OOM-killed without cancellation (64 GiB each)?",
                 lambda lab: _summary(lab.name, "off")["apiserver_crashes"] > 0, kind="yes/no"),
        Question("goodput_gain_article", "answers per second reaching a waiting client during the incident, article "
                 "over off", lambda lab: _summary(lab.name, "article")["goodput_during_per_s"]
                 / _summary(lab.name, "off")["goodput_during_per_s"], "x"),
    ],
    "heartbeats": [
        Question("wal_gb_per_min_node_status", "etcd WAL at 10k nodes, Node-status heartbeats (off)",
                 _s("off", "etcd_wal_bytes_per_min", 1e-9), "GB/min"),
        Question("wal_gb_per_min_lease", "etcd WAL at 10k nodes, Lease heartbeats (article)",
                 _s("article", "etcd_wal_bytes_per_min", 1e-9), "GB/min"),
        Question("fills_first", "what fills up first with Node-status heartbeats", _fills_first, kind="choice",
                 choices=("apiserver cpu", "etcd quota", "neither")),
        Question("lease_reduces_writes", "does a Lease reduce the writes etcd receives (revisions/s)?",
                 lambda lab: _summary(lab.name, "article")["etcd_revisions_per_s"]
                 < _summary(lab.name, "off")["etcd_revisions_per_s"], kind="yes/no"),
    ],
    "etcd-storage": [
        Question("array_p99_ms_2gb", "put p99, array freelist, 2 GB db", _sweep_p99("array", 2), "ms"),
        Question("array_p99_ms_100gb", "put p99, array freelist, 100 GB db", _sweep_p99("array", 100), "ms"),
        Question("hashmap_p99_ms_2gb", "put p99, hashmap freelist, 2 GB db", _sweep_p99("map", 2), "ms"),
        Question("hashmap_p99_ms_100gb", "put p99, hashmap freelist, 100 GB db", _sweep_p99("map", 100), "ms"),
    ],
    "bookmarks": [
        Question("kubelet_events_per_min", "pod events a kubelet's watch sees per minute",
                 _s("off", "selective_events_per_watcher_per_min"), "events/min"),
        Question("kubelet_rv_age_s", "a kubelet's RV age at the restart, median, no bookmarks",
                 _s("off", "selective_rv_age_p50_s"), "s"),
        Question("kubelet_410_at_restart", "without bookmarks, do kubelets get 410 at the restart?",
                 lambda lab: _summary(lab.name, "off")["restart_relists_selective"] > 0, kind="yes/no"),
        Question("best_at_watch_timeout", "setting with the fewest events to re-sync at watch timeouts",
                 _best("timeouts_init_events"), kind="choice", choices=("off", "article", "upstream")),
        Question("best_at_restart", "setting with the fewest events to re-sync at the API server restart",
                 _best("restart_init_events"), kind="choice", choices=("off", "article", "upstream")),
    ],
    "cached-reads": [
        Question("etcd_round_trips", "etcd round trips to list one node's pods (pages of 500)",
                 _s("off", "pods_list_etcd_round_trips"), "round trips"),
        Question("pods_decoded", "pods the API server decodes for that list",
                 _s("off", "apiserver_storage_list_evaluated_objects_total"), "pods"),
        Question("rv0_can_miss_write", "can a resourceVersion=0 read miss an acknowledged write?",
                 lambda lab: _summary(lab.name, "article")["read_after_write_stale_share_rv0"] > 0, kind="yes/no"),
        Question("consistent_can_miss_write", "can a consistent read from the cache miss one?",
                 lambda lab: _summary(lab.name, "article")["read_after_write_stale_share_consistent"] > 0,
                 kind="yes/no"),
    ],
    "scheduler": [
        Question("cycle_ms_10k", "one scheduling cycle at 10k nodes, every node evaluated",
                 _s("off", "mean_cycle_s", 1e3), "ms"),
        Question("pods_per_s", "pods per second one scheduler can place (off)",
                 _s("off", "capacity_pods_per_s"), "pods/s"),
        Question("last_pod_wait_s", "wait of the 3,000-pod burst's last pods (p99, off)",
                 _s("off", "burst_scheduler_pod_scheduling_sli_duration_seconds_p99"), "s"),
        Question("best_node_share_relaxed", "share of pods still placed on a best-scoring node, relaxed search",
                 _s("article", "best_score_share"), kind="share"),
    ],
    "hot-standby": [
        Question("upgrade_interruption_with_fix_s", "kube-controller-manager without a working leader during the "
                 "upgrade, longest handover, warm standby + release (article)",
                 _s("article", "kcm_upgrade_interruption_max_s"), "s"),
        Question("crash_interruption_with_fix_s", "... after its leader crashes (article)",
                 _s("article", "kcm_crash_interruption_s"), "s"),
        Question("crash_interruption_without_fix_s", "... after its leader crashes, cold standby (off)",
                 _s("off", "kcm_crash_interruption_s"), "s"),
        Question("warm_standby_memory_gb", "memory one warm kube-controller-manager standby holds",
                 _s("article", "kcm_standby_memory_bytes", 1e-9), "GB"),
        Question("warm_standby_spares_the_lists", "with warm standbys, do the API servers serve no warm-up LIST "
                 "after the crash?", lambda lab: _summary(lab.name, "article")["list_apiserver_cpu_s_crash"] == 0,
                 kind="yes/no"),
    ],
}


def questions(lab) -> list[Question]:
    name = lab if isinstance(lab, str) else lab.name
    if name not in QUESTIONS:
        raise KeyError(f"no guess questions for lab {name!r}; labs with questions: {', '.join(QUESTIONS)}")
    return QUESTIONS[name]


def blank_guess(lab) -> dict:
    """The ``my_guess`` dict a notebook starts from: every question, no answer yet."""
    return {q.key: None for q in questions(lab)}


def _fmt(x, unit: str = "") -> str:
    from ..viz import fmt

    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        if float(x).is_integer():
            return f"{int(x):,} {unit}".strip()
        return fmt(x, unit)
    return repr(x) if isinstance(x, str) else str(x)


def _yes_no(x):
    if isinstance(x, bool):
        return x
    if isinstance(x, str) and x.strip().lower() in ("yes", "y", "true", "no", "n", "false"):
        return x.strip().lower() in ("yes", "y", "true")
    raise ValueError("answer yes or no (True/False)")


def compare_one(q: Question, guess, model) -> str:
    says = f"the model says {100 * model:.0f} %" if q.kind == "share" else f"the model says {_fmt(model, q.unit)}"
    if guess is None or guess is Ellipsis:
        return f"… {q.text}: no guess yet; {says}"
    try:
        if q.kind == "number":
            g = float(guess)
            if not math.isfinite(g):
                raise ValueError("a finite number")
            if g <= 0 or model <= 0:
                close = math.isclose(g, model, rel_tol=0.5, abs_tol=1e-12)
                how = "close" if close else "far off"
            else:
                r = model / g
                close = 1 / CLOSE_FACTOR <= r <= CLOSE_FACTOR
                how = ("within a factor of 2" if close else
                       f"the model's is {r:.1f}x yours" if r > 1 else f"the model's is 1/{1 / r:.1f} of yours")
            shown = _fmt(g, q.unit)
        elif q.kind == "share":
            g = float(guess)
            g = g / 100.0 if g > 1 else g          # 40 means 40 %
            if not 0 <= g <= 1:
                raise ValueError("a share between 0 and 1 (or a percentage)")
            apart = 100 * abs(g - model)
            close = apart <= CLOSE_POINTS
            how = "within 10 points" if close else f"{apart:.0f} points apart"
            shown = f"{100 * g:.0f} %"
        elif q.kind == "yes/no":
            g = _yes_no(guess)
            close, how, shown = g == model, ("right" if g == model else "not what the model says"), _fmt(g)
        else:
            g = str(guess).strip().lower()
            if g not in q.choices:
                raise ValueError(f"one of {', '.join(repr(c) for c in q.choices)}")
            close, how, shown = g == model, ("right" if g == model else "not what the model says"), repr(g)
    except (TypeError, ValueError) as err:
        return f"? {q.text}: cannot read your guess {guess!r} ({err}); {says}"
    return f"{'✓' if close else '✗'} {q.text}: you guessed {shown}, {says} ({how})"


class GuessReport:
    """One line per question; prints as text (nbval can compare it)."""

    def __init__(self, lines: list[str]):
        self.lines = lines

    def __str__(self) -> str:
        return "\n".join(self.lines)

    __repr__ = __str__

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def compare_guess(my_guess: dict, lab) -> GuessReport:
    """Each guess in ``my_guess`` beside the model's value (``lab``: the lab or its name)."""
    from ..labs.base import get_lab

    lab = get_lab(lab) if isinstance(lab, str) else lab
    qs = questions(lab)
    if not isinstance(my_guess, dict):
        return GuessReport([f"? my_guess should be a dict like {blank_guess(lab)!r}"])
    lines = [compare_one(q, my_guess.get(q.key), q.model(lab)) for q in qs]
    unknown = [k for k in my_guess if k not in {q.key for q in qs}]
    if unknown:
        lines.append(f"? not a question of this lab: {', '.join(map(repr, unknown))} "
                     f"(questions: {', '.join(q.key for q in qs)})")
    return GuessReport(lines)

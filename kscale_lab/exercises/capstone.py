"""Checks for the capstone's exercises."""

from __future__ import annotations

from . import Hints, Verdict, verdict

EX1 = "Exercise 1 (which SLO does an ablation break?)"
EX2 = "Exercise 2 (a minimal set of switches)"

hint = Hints({
    1: ["Which incident of the day needs the scheduler, and which SLO measures what that incident asks for?",
        "The scale-up creates 3,000 pods at once; without equivalence classes and relaxed search each pod "
        "evaluates all 10,000 nodes. Which latency does a queue of pods feed?",
        "Pod startup = scheduling + binding + the kubelet: compare the queue's p99 with the SLO's 5 s."],
    2: ["Start from every switch on (as in the article) and try to turn each off in turn.",
        "Keep a switch off when no SLO breaks without it; the order matters less than checking each once.",
        "Greedy: s = all switches; for each x: if run('off', {y: 'article' for y in s - {x}}) breaks nothing the "
        "article row keeps, drop x. Then check that removing any one of the rest breaks one."],
}, {1: EX1, 2: EX2})


def check_ablation_prediction(predicted, switch: str) -> Verdict:
    """``predicted``: the SLO names the reader expects the article setting with ``switch`` off to
    break. Checked by running that row."""
    from ..labs.capstone import LAB, SLOS

    if predicted is None:
        return verdict(EX1, "not done yet", "Set predicted_breaks to a list of SLO names.")
    names = {s.name for s in SLOS}
    try:
        got = set(predicted)
    except TypeError:
        return verdict(EX1, "not yet right", "predicted_breaks must be a list of SLO names.")
    unknown = got - names
    if unknown:
        return verdict(EX1, "not yet right", f"{sorted(unknown)[0]!r} is not an SLO name; names: "
                                             f"{', '.join(s.name for s in SLOS)}.")
    base = set(LAB.run("article").summary["slo_breaks"])
    want = set(LAB.run("article", {switch: "off"}).summary["slo_breaks"]) - base
    if got == want:
        return verdict(EX1, "done", f"With {switch} off exactly the SLOs you named break beyond the article's.")
    return verdict(EX1, "not yet right", f"With {switch} off the model breaks {len(want)} SLO(s) that the article's "
                                         f"cluster keeps; your list names {len(got)}, and they differ.")


def check_minimal_set(switches) -> Verdict:
    """``switches``: switches set as in the article, all others off. Done when it breaks no SLO the
    article's cluster (every switch on) keeps, and removing any one of them breaks one."""
    from ..labs.capstone import LAB
    from ..scenario import SWITCH_NAMES

    if switches is None:
        return verdict(EX2, "not done yet", "Set minimal_set to a set of switch names.")
    try:
        chosen = set(switches)
    except TypeError:
        return verdict(EX2, "not yet right", "minimal_set must be a set of switch names.")
    bad = chosen - set(SWITCH_NAMES)
    if bad:
        return verdict(EX2, "not yet right", f"{sorted(bad)[0]!r} is not a switch; switches: {', '.join(SWITCH_NAMES)}.")

    base = set(LAB.run("article").summary["slo_breaks"])

    def broken(on):
        return len(set(LAB.run("off", {s: "article" for s in on}).summary["slo_breaks"]) - base)

    if broken(chosen):
        return verdict(EX2, "not yet right", "With only these switches on, an SLO the article's cluster keeps breaks.")
    for s in sorted(chosen):
        if broken(chosen - {s}) == 0:
            return verdict(EX2, "not yet right", "It keeps what the article's cluster keeps, but it is not minimal: one "
                                                 "of its switches can be turned off without breaking more.")
    return verdict(EX2, "done", f"{len(chosen)} switch(es) keep every SLO the article's cluster keeps, and none of "
                                f"them can go.")

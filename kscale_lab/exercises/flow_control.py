"""Checks for the flow-control lab's exercises (API Priority and Fairness by hand).

Each checker runs the reader's function against the model's own algorithm
(:mod:`kscale_lab.apiserver.apf`) on inputs where the likely wrong answers differ, and
refuses code that simply calls the model's function. A "not yet right" names the input
that failed and what is wrong with it, never the expected value.
"""

from __future__ import annotations

import math

import numpy as np

from . import Hints, Verdict, call_student, verdict

EX1 = "Exercise 1 (shuffle sharding: deal a flow's hand)"
EX2 = "Exercise 2 (fair queuing's share: max-min fairness)"
EX3 = "Exercise 3 (a priority level's seats and a LIST's width)"

_FORBIDDEN = {EX1: ("deal_hand", "DealIntoHand"), EX2: ("waterfill", "FluidAPF"),
              EX3: ("concurrency_limits", "list_seats", "Limits")}

hint = Hints({
    1: ["Read the hash as a number written in a mixed base: first digit base `queues`, then base `queues - 1`, "
        "and so on, one digit per card of the hand.",
        "digit_i = h % (queues - i); h //= (queues - i). The digit says which of the cards still in the deck to "
        "take, counting the remaining cards in ascending order.",
        "Keep the dealt cards; card = digit, then for every dealt card c in ascending order, if c <= card: "
        "card += 1; append card."],
    2: ["Each flow gets the same share f of the seats, except a flow that wants less than f gets what it wants.",
        "Sort the demands; give everyone the smallest demand, take it off, share what is left among the others, "
        "and repeat.",
        "f solves sum(min(d_i, f)) = seats; if sum(d) <= seats every flow gets d_i. Return min(d_i, f) per flow."],
    3: ["NominalCL is ServerCL split in proportion to the levels' shares (every level's, the exempt one's 0 "
        "included), rounded up.",
        "nominal = ceil(server_cl * shares[level] / sum(shares)); a LIST from the watch cache processes every "
        "stored object, one seat per 100.",
        "seats = min(max(ceil(stored / 100), 1), 10); the LISTs that run at once are nominal // seats."],
}, {1: EX1, 2: EX2, 3: EX3})


def _calls_model(exercise: str, fn) -> Verdict | None:
    """Refuse a function that reaches the model's own answer (by name, global or closure)."""
    forbidden = set(_FORBIDDEN[exercise])
    names: set = set()

    def walk(code):
        names.update(code.co_names)
        names.update(code.co_freevars)
        for const in code.co_consts:
            if hasattr(const, "co_names"):
                walk(const)

    code = getattr(fn, "__code__", None)
    if code is not None:
        walk(code)
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            obj = cell.cell_contents
        except ValueError:
            continue
        if getattr(obj, "__name__", "") in forbidden and getattr(obj, "__module__", "").startswith("kscale_lab"):
            names.add(obj.__name__)
    bad = names & forbidden
    if bad:
        return verdict(exercise, "not yet right", f"Your function calls the model's {sorted(bad)[0]}: write the "
                                                  f"algorithm yourself.")
    return None


def check_deal(fn) -> Verdict:
    """``fn(hash_value, queues, hand_size)`` -> the hand: ``hand_size`` distinct queue indexes."""
    from ..apiserver.apf import deal_hand, flow_hash

    if (bad := _calls_model(EX1, fn)) is not None:
        return bad
    cases = [(0, 8, 3), (7, 8, 8), (2**64 - 1, 64, 6), (12345, 16, 4), (flow_hash("service-accounts",
             "system:serviceaccount:monitoring:node-agent"), 128, 6)]
    rng = np.random.default_rng(7)
    for _ in range(80):
        q = int(rng.choice([4, 8, 16, 64, 128]))
        cases.append((int(rng.integers(0, 2**63)), q, int(rng.integers(1, min(q, 8) + 1))))
    for h, q, hand in cases:
        got, err = call_student(EX1, fn, h, q, hand)
        if err:
            return err
        try:
            got = [int(x) for x in got]
        except (TypeError, ValueError):
            return verdict(EX1, "not yet right", "Return a list of queue indexes.")
        if len(got) != hand:
            return verdict(EX1, "not yet right", f"For queues={q}, hand_size={hand} your hand has {len(got)} cards.")
        if len(set(got)) != hand or min(got) < 0 or max(got) >= q:
            return verdict(EX1, "not yet right", f"For hash {h}, queues={q}: a hand holds distinct queues in "
                                                 f"[0, {q}); yours does not.")
        if got != deal_hand(h, q, hand):
            return verdict(EX1, "not yet right", f"For hash {h}, queues={q}, hand_size={hand} your hand differs from "
                                                 f"the dealer's (compare the order of the cards too).")
        if fn(h, q, hand) != got:
            return verdict(EX1, "not yet right", "Dealing the same hash twice gave two hands: a hand must be "
                                                 "deterministic.")
    return verdict(EX1, "done", f"Your dealer agrees with the model's on {len(cases)} hashes.")


def check_fair_share(fn) -> Verdict:
    """``fn(demands, seats)`` -> each flow's seats under max-min fairness."""
    from ..apiserver.apf import waterfill

    if (bad := _calls_model(EX2, fn)) is not None:
        return bad
    cases = [([10, 10, 10], 30), ([5, 50, 50], 30), ([1, 2, 3], 100), ([0, 40], 10), ([7], 3), ([4, 4, 100], 9)]
    rng = np.random.default_rng(3)
    for _ in range(60):
        m = int(rng.integers(1, 7))
        d = np.round(rng.uniform(0, 60, m), 1).tolist()
        cases.append((d, float(np.round(rng.uniform(1, 150), 1))))
    for d, seats in cases:
        got, err = call_student(EX2, fn, list(d), seats)
        if err:
            return err
        got = np.asarray(got, dtype=float)
        dem = np.asarray(d, dtype=float)
        if got.shape != dem.shape:
            return verdict(EX2, "not yet right", f"For demands {d}, return one share per flow.")
        f = waterfill(np.zeros((1, dem.size)), dem[None, :], np.ones(dem.size), np.array([seats]))[0]
        want = np.minimum(dem, f)
        if not np.allclose(got, want, atol=1e-6, rtol=1e-6):
            if (got > dem + 1e-9).any():
                why = "a flow gets more than it asks for"
            elif got.sum() > seats + 1e-6:
                why = "the shares add up to more seats than the level has"
            elif got.sum() < min(seats, dem.sum()) - 1e-6:
                why = "seats are left idle while a flow still waits"
            else:
                why = "a flow that wants more than another gets less than it, or less than an equal share"
            return verdict(EX2, "not yet right", f"Demands {d} with {seats} seats: {why}.")
    return verdict(EX2, "done", f"Your shares agree with the model's water-filling on {len(cases)} cases.")


def check_seats(fn) -> Verdict:
    """``fn(server_cl, shares, level, stored_objects)`` -> (NominalCL of ``level``, seats of a LIST
    from the watch cache over ``stored_objects``, how many such LISTs the level runs at once)."""
    from ..apiserver.apf import BOOTSTRAP_LEVELS, concurrency_limits, list_seats

    if (bad := _calls_model(EX3, fn)) is not None:
        return bad
    base = {lv.name: lv.nominal_concurrency_shares for lv in BOOTSTRAP_LEVELS}
    cases = [(600, base, "workload-low", 200_000), (600, base, "system", 50), (4000, base, "node-high", 1001),
             (600, dict(base, **{"workload-low": 5}), "workload-high", 100), (7, base, "leader-election", 0)]
    rng = np.random.default_rng(5)
    names = [n for n in base if base[n] > 0]
    for _ in range(30):
        sh = {n: int(rng.integers(0, 120)) for n in base}
        sh[names[0]] = max(sh[names[0]], 1)
        cases.append((int(rng.integers(1, 5000)), sh, str(rng.choice(names)), int(rng.integers(0, 3000))))
    import dataclasses

    for server_cl, shares, level, stored in cases:
        got, err = call_student(EX3, fn, server_cl, dict(shares), level, stored)
        if err:
            return err
        try:
            nominal, seats, at_once = (int(x) for x in got)
        except (TypeError, ValueError):
            return verdict(EX3, "not yet right", "Return three integers: (nominal, seats, at_once).")
        levels = [dataclasses.replace(lv, nominal_concurrency_shares=shares[lv.name]) for lv in BOOTSTRAP_LEVELS]
        lim = concurrency_limits(server_cl, levels)
        i = [lv.name for lv in levels].index(level)
        want_n = int(lim.nominal[i])
        want_s = list_seats(stored, 500, False, True)
        if nominal != want_n:
            return verdict(EX3, "not yet right", f"ServerCL={server_cl}, level {level!r}: your nominal limit is off "
                                                 f"(round up, and share over every level's shares).")
        if seats != want_s:
            return verdict(EX3, "not yet right", f"A LIST over {stored} stored objects: your seat count is off "
                                                 f"(one seat per 100 objects, at least 1, at most 10).")
        if at_once != want_n // want_s:
            return verdict(EX3, "not yet right", f"ServerCL={server_cl}, level {level!r}, {stored} objects: how many "
                                                 f"whole LISTs fit in the level's nominal seats?")
    return verdict(EX3, "done", f"Your limits and seats agree with the model's on {len(cases)} cases.")


def demo_hands(flows: list[tuple[str, str]], queues: int = 128, hand_size: int = 6) -> str:
    """The hands of a few flows (FlowSchema, distinguisher), and the queues they share."""
    from ..apiserver.apf import deal_hand, flow_hash

    lines = []
    hands = {}
    for fs, d in flows:
        h = deal_hand(flow_hash(fs, d), queues, hand_size)
        hands[(fs, d)] = set(h)
        lines.append(f"{fs} / {d or '-'}: queues {sorted(h)}")
    keys = list(hands)
    for a in range(len(keys)):
        for b in range(a + 1, len(keys)):
            common = hands[keys[a]] & hands[keys[b]]
            lines.append(f"  {keys[a][1] or keys[a][0]} and {keys[b][1] or keys[b][0]} share "
                         f"{len(common)} of {hand_size} queues")
    return "\n".join(lines)



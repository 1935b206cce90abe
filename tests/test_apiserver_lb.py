"""The API server load-balancing lab: input, causes and effects, claims, dashboard, exercises."""

import math

import numpy as np
import pytest

from kscale_lab.claims import load_claims
from kscale_lab.cli import main
from kscale_lab.errors import ParameterError
from kscale_lab.labs.apiserver_lb import LAB, guess_report, rebalance_time

SMALL = {"nodes": 1000, "duration": 1200.0, "rollout_at": 120.0, "restart_at": 700.0}


@pytest.fixture(scope="module")
def runs():
    return {s: LAB.run(s, SMALL) for s in LAB.settings}


@pytest.mark.parametrize("over, name", [
    ({"lb_429_threshold": 0.7, "lb_close_threshold": 0.6}, "lb_close_threshold"),
    ({"max_surge": 4}, "max_surge"),
    ({"restart_count": 5}, "restart_count"),
    ({"apiservers": 0}, "apiservers"),
    ({"reshuffle_period": -1}, "reshuffle_period"),
    ({"lb_policy": "sticky"}, "lb_policy"),
])
def test_bad_input_names_the_parameter(over, name):
    with pytest.raises(ParameterError) as e:
        LAB.run("article", over)
    assert f"'{name}'" in str(e.value)


def test_cli_refuses_in_one_line(capsys):
    assert main(["run", "apiserver-lb", "--set", "max_surge=9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "max_surge" in err[0]


def test_sticky_connections_keep_the_upgrade_imbalance(runs):
    off = runs["off"].summary
    assert off["upgrade_cpu_imbalance"] > 1.5
    # nothing moves a connected client in the off setting: the imbalance stays until the restart
    assert off["upgrade_cpu_imbalance_final"] == pytest.approx(off["upgrade_cpu_imbalance"], rel=0.05)
    assert off["reshuffles_total"] == off["goaways_total"] == off["connections_closed_total"] == 0


def test_the_imbalance_comes_from_the_load_balancers_lag():
    """A load balancer that learns within the rollout's pause spreads the clients of each
    stopped server over both others: the upgrade's imbalance shrinks."""
    slow = LAB.run("off", SMALL).summary["upgrade_cpu_imbalance"]
    fast = LAB.run("off", dict(SMALL, lb_health_check_interval=1.0, lb_healthy_threshold=1,
                               rollout_step_pause=10.0)).summary["upgrade_cpu_imbalance"]
    assert fast < slow - 0.3


def test_surge_upgrade_keeps_balance_and_one_at_a_time_does_not():
    surge = LAB.run("article", SMALL).summary
    one = LAB.run("article", dict(SMALL, max_surge=0, reshuffle_period=86_400.0)).summary
    assert surge["upgrade_cpu_imbalance"] < 1.2 < one["upgrade_cpu_imbalance"]


def test_reshuffle_rebalances_and_its_period_sets_the_pace(runs):
    art = runs["article"].summary
    assert art["reshuffles_total"] > 0 and math.isfinite(art["restart_rebalance_s"])
    slow = LAB.run("article", dict(SMALL, reshuffle_period=1200.0)).summary["restart_rebalance_s"]
    assert slow > art["restart_rebalance_s"]


def test_overloaded_unbalanced_server_runs_out_of_memory_and_its_clients_move():
    o = dict(SMALL, nodes=10_000, duration=1200.0, apiserver_cores=10.0)
    off = LAB.run("off", o)
    kills = off.events[off.events.event == "OOMKilled"]
    assert len(kills) >= 1 and (kills.clients > 0).all()
    art = LAB.run("article", o).summary
    assert art["apiserver_crashes"] < len(kills)


def test_goaway_moves_requests_at_its_chance():
    lo = LAB.run("upstream", dict(SMALL, goaway_chance=0.001)).summary["goaways_total"]
    hi = LAB.run("upstream", dict(SMALL, goaway_chance=0.01)).summary["goaways_total"]
    assert 5 * lo < hi < 20 * lo


def test_rebalance_time():
    t = np.arange(100.0)
    imb = np.where(t < 40, 2.0, 1.05)
    assert rebalance_time(t, imb, 10.0, 100.0) == 30.0
    assert rebalance_time(t, imb, 10.0, 60.0) == math.inf      # not 30 s of balance before t_next


def test_claims_are_computed_for_every_row():
    rows = {c.claim for c in load_claims("apiserver-lb")}
    only = ["upgrade_cpu_imbalance_off", "upgrade_not_healed_off"]
    got = LAB.claims(overrides={"nodes": 1000}, only=only)
    assert set(got) == set(only) and set(LAB.CLAIM_RUNS) == rows
    assert all(isinstance(v, float) for v in got.values())


def test_guess_report_says_both(runs):
    text = guess_report({"busiest_share_after_upgrade": 0.4}, runs["off"])
    assert "you guessed 40%" in text and "the model says" in text and "you did not guess" in text


def test_dashboard_recomputes_and_fills():
    from kscale_lab.viz.apiserver_lb import APIServerLBDashboard

    d = APIServerLBDashboard()
    first = np.array(d.sources["inst"].data["conn0"]).copy()
    assert first.size > 0 and np.nanmax(first) > 0
    d.controls["switch"].value = "article"
    assert d.result.setting == "article"
    assert len(d.sources["moves"].data["t"]) == len(d.result.series)
    d.controls["lb_policy"].value = "client-side"
    assert d.result.summary["params"]["lb_policy"] == "client-side"


def test_exercise_checkers_accept_the_rule_and_reject_near_misses():
    from kscale_lab.clients.connections import reconnect_time
    from kscale_lab.exercises.apiserver_lb import check_least_connections, check_reconnect_rule

    assert check_reconnect_rule(reconnect_time).done

    def sliding(times, k, w):     # a sliding window is a different rule
        for i in range(len(times)):
            if i + 1 >= k and times[i] - times[i + 1 - k] <= w:
                return times[i]
        return None

    assert check_reconnect_rule(sliding).status == "not yet right"
    assert check_reconnect_rule(lambda t, k, w: None).status == "not done yet"   # the stub's answer
    assert check_reconnect_rule(lambda t, k, w: t[k - 1] if len(t) >= k else None).status == "not yet right"

    def rr(counts, m):            # round robin is not least connections
        return np.bincount(np.arange(m) % len(counts), minlength=len(counts))

    assert check_least_connections(rr).status == "not yet right"
    assert check_least_connections(lambda c, m: None).status == "not done yet"

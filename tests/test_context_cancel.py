"""The context-cancellation lab: input, causes and effects, the crash mechanism, claims, dashboard,
exercises. Mechanism tests use 1,000 nodes and 15 simulated minutes."""

import math

import numpy as np
import pytest

from kscale_lab.claims import load_claims
from kscale_lab.cli import main
from kscale_lab.errors import ParameterError
from kscale_lab.labs.context_cancel import LAB

SMALL = {"nodes": 1000, "duration": 900.0, "incident_at": 120.0, "incident_for": 300.0}
NO_LIMIT = {"max_requests_inflight": 0, "max_mutating_requests_inflight": 0}
EVERY_WRITE = {"webhook_streams": "lease node_status pod_status controller_write pod_bind"}


@pytest.fixture(scope="module")
def runs():
    return {s: LAB.run(s, SMALL) for s in LAB.settings}


@pytest.mark.parametrize("over, name", [
    ({"client_timeout": 0}, "client_timeout"),
    ({"client_timeout": -3}, "client_timeout"),
    ({"webhook_timeout_seconds": 31}, "webhook_timeout_seconds"),
    ({"webhook_slow_latency": -1}, "webhook_slow_latency"),
    ({"webhook_latency": -0.1}, "webhook_latency"),
    ({"etcd_slow_latency": -5}, "etcd_slow_latency"),
    ({"webhook_streams": "pods"}, "webhook_streams"),
    ({"client_retry": "sometimes"}, "client_retry"),
    ({"incident": "meteor"}, "incident"),
])
def test_bad_input_names_the_parameter(over, name):
    with pytest.raises(ParameterError) as e:
        LAB.run("article", dict(SMALL, **over))
    assert f"'{name}'" in str(e.value)


def test_cli_refuses_in_one_line(capsys):
    assert main(["run", "context-cancel", "--set", "webhook_timeout_seconds=45"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "webhook_timeout_seconds" in err[0] and "30" in err[0]


def test_upstream_gets_v1_webhook_defaults_unless_the_user_sets_them():
    up = LAB.resolve("upstream", {})
    assert up["webhook_timeout_seconds"] == 10.0 and up["webhook_failure_policy"] == "Fail"
    assert LAB.resolve("article", {})["webhook_timeout_seconds"] == 30.0
    assert LAB.resolve("upstream", {"webhook_timeout_seconds": 25})["webhook_timeout_seconds"] == 25.0


def test_without_an_incident_the_settings_do_the_same(runs):
    quiet = {s: LAB.run(s, dict(SMALL, incident="none")).summary for s in ("off", "article")}
    assert quiet["off"]["goroutines_peak"] == pytest.approx(quiet["article"]["goroutines_peak"])
    assert quiet["off"]["goodput_before_per_s"] == pytest.approx(quiet["article"]["goodput_before_per_s"])


def test_orphans_hold_goroutines_for_the_webhook_call_and_cancellation_for_the_client(runs):
    off, art, up = (runs[s].summary for s in LAB.settings)
    # Little's law: goroutines = admitted rate x time held
    assert art["affected_goroutines_steady"] == pytest.approx(art["little_product"] * (1 + 0.1 / 10), rel=0.02)
    assert up["affected_goroutines_steady"] == pytest.approx(up["little_product"], rel=0.02)
    assert off["affected_goroutines_steady"] == pytest.approx(off["little_product"] * 2.0, rel=0.03)   # 20 s / 10 s
    assert off["wasted_cpu_cores_during"] > 0 and art["wasted_cpu_cores_during"] == 0
    assert off["requests_timed_out"] > 0 and off["requests_cancelled"] == 0
    assert art["requests_cancelled"] > 0 and art["requests_timed_out"] == 0
    assert art["goroutine_outlives_client_max_s"] == pytest.approx(0.1)


def test_a_slower_webhook_holds_more_orphans_but_not_more_cancelled_goroutines():
    o = dict(SMALL, **NO_LIMIT)
    off = [LAB.run("off", dict(o, webhook_slow_latency=x)).summary["affected_goroutines_steady"] for x in (15, 25)]
    art = [LAB.run("article", dict(o, webhook_slow_latency=x)).summary["affected_goroutines_steady"] for x in (15, 25)]
    assert off[1] > 1.4 * off[0]
    assert art[1] == pytest.approx(art[0], rel=0.03)


def test_retries_add_arrivals():
    """Every request times out, so each is tried 1 + max_retries times (no inflight limit to reject them)."""
    o = dict(SMALL, **NO_LIMIT)
    imm = LAB.run("article", o).summary
    none = LAB.run("article", dict(o, client_retry="none")).summary
    assert imm["retries_during_per_s"] > 0 and none["retries_during_per_s"] == 0
    ratio = imm["affected_arrivals_per_s_steady"] / none["affected_arrivals_per_s_steady"]
    assert ratio == pytest.approx(1 + 5, rel=0.05)


def test_a_slow_etcd_matters_only_when_clients_give_up_before_etcd_does():
    """etcd answers 'request timed out' after ~7 s: kubelets that wait 10 s see an error, no orphan."""
    base = dict(SMALL, incident="etcd")
    patient = {s: LAB.run(s, base).summary for s in ("off", "article")}
    assert patient["off"]["affected_goroutines_steady"] == pytest.approx(patient["article"]["affected_goroutines_steady"])
    assert patient["off"]["requests_timed_out"] == 0
    hasty = {s: LAB.run(s, dict(base, client_timeout=3.0, **NO_LIMIT)).summary for s in ("off", "article")}
    assert hasty["off"]["affected_goroutines_steady"] > 1.5 * hasty["article"]["affected_goroutines_steady"]


def test_max_inflight_caps_the_orphans_and_their_slots_cost_goodput():
    o = dict(SMALL, nodes=10_000, **EVERY_WRITE)
    off = LAB.run("off", o)
    cap = 1000 * 3
    assert off.series["apiserver_request_goroutines"].max() <= cap + 3000 * 1.01    # mutating + read-only slots
    assert off.summary["rejected_during_per_s"] > 0
    art = LAB.run("article", dict(SMALL, nodes=10_000)).summary
    assert art["goodput_during_per_s"] > LAB.run("off", dict(SMALL, nodes=10_000)).summary["goodput_during_per_s"]


def test_orphans_crash_a_small_server_that_cancellation_saves_and_memory_returns_after():
    o = dict(SMALL, nodes=5000, **NO_LIMIT, **EVERY_WRITE)
    peaks = {s: LAB.run(s, o).summary for s in ("off", "article")}
    lo = peaks["article"]["memory_peak_share"] * 64
    hi = peaks["off"]["memory_peak_share"] * 64
    assert hi > lo + 1.0                                       # GiB more held by orphans
    limit = int(((lo + hi) / 2) * 1024**3)
    small = {s: LAB.run(s, dict(o, apiserver_memory_limit_bytes=limit)) for s in ("off", "article")}
    kills = small["off"].events[small["off"].events.event == "OOMKilled"]
    assert len(kills) >= 1 and small["article"].summary["apiserver_crashes"] == 0
    assert small["off"].summary["requests_lost"] > 0
    art = small["article"].summary
    assert art["memory_after_share"] == pytest.approx(art["memory_before_share"], rel=0.01)   # back to baseline


def test_every_admitted_request_ends_once(runs):
    for res in runs.values():
        sm = res.summary
        ended = sum(sm[f"requests_{o}"] for o in ("answered", "failed", "timed_out", "cancelled", "lost"))
        waiting = res.series["clients_waiting"].iloc[-1]
        assert ended + waiting == pytest.approx(sm["requests_admitted"], rel=1e-9)


def test_same_seed_same_result():
    a, b = LAB.run("off", SMALL), LAB.run("off", SMALL)
    assert a.series.equals(b.series) and a.instances.equals(b.instances)


def test_claims_are_computed_for_every_row():
    rows = {c.claim for c in load_claims("context-cancel")}
    assert set(LAB.CLAIM_RUNS) == rows
    only = ["little_ratio_article", "goodput_gain_article"]
    got = LAB.claims(overrides={"nodes": 1000, "duration": 900.0, "incident_at": 120.0}, only=only)
    assert set(got) == set(only) and all(isinstance(v, float) and math.isfinite(v) for v in got.values())


def test_guesses_are_compared_with_the_model():
    from kscale_lab.exercises import compare_guess

    text = str(compare_guess({"goroutines_off_over_article": 3.0, "crashes_off": "yes"}, LAB))
    assert "you guessed 3 x" in text and "the model says" in text and "no guess yet" in text


def test_dashboard_recomputes_fills_and_remembers():
    from kscale_lab.viz.context_cancel import ContextCancelDashboard

    d = ContextCancelDashboard()
    g = np.array(d.sources["g"].data["goroutines"])
    assert g.size == 1800 and g.max() > 0
    d.controls["switch"].value = "article"
    assert d.result.setting == "article"
    d.controls["switch"].value = "off"
    assert d.seconds < 0.05                                   # remembered (Dashboard.run's memo)
    d.controls["inflight"].value = "disabled (0)"
    assert d.result.summary["params"]["max_requests_inflight"] == 0


def test_exercise_checkers_accept_the_model_and_reject_near_misses():
    from kscale_lab.exercises.context_cancel import check_steady_goroutines, check_webhook_call_limit, hint

    def limit(setting, ts, tau, T, elapsed):
        if setting != "upstream":
            return ts
        deadline = min(math.inf if tau is None else tau, T)
        return max(0.0, min(ts, deadline - elapsed))

    assert check_webhook_call_limit(limit).done
    assert check_webhook_call_limit(lambda s, ts, tau, T, e: ts).status == "not yet right"       # ignores deadline
    assert check_webhook_call_limit(lambda s, ts, tau, T, e: min(ts, tau or T)).status == "not yet right"
    assert check_webhook_call_limit(lambda *a: None).status == "not done yet"

    def steady(setting, rate, tau, lat, ts, d):
        held = min(lat, ts)
        if setting == "article":
            held = min(held, tau + d)
        elif setting == "upstream":
            held = min(held, tau)
        return rate * held

    assert check_steady_goroutines(steady).done
    assert check_steady_goroutines(lambda s, r, tau, lat, ts, d: r * tau).status == "not yet right"
    assert check_steady_goroutines(lambda s, r, tau, lat, ts, d: r * lat).status == "not yet right"
    assert "Little" in str(hint(2, 1)) and "must be one of" in str(hint(9, 1))

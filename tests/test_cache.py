"""The disk cache of expensive runs: a hit is the run it stands for, and any cause of the
run (setting, parameter, code) changes the key."""

import pickle

import pytest

from kscale_lab import cache
from kscale_lab.errors import ParameterError
from kscale_lab.labs.base import get_lab


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.DIR_VARIABLE, str(tmp_path))
    monkeypatch.setenv(cache.SWITCH_VARIABLE, "1")
    return tmp_path


def test_a_hit_returns_what_was_computed_and_a_miss_computes(tmp_cache):
    calls = []
    k = cache.key("t", 1, {"a": 2})
    assert cache.cached(k, lambda: calls.append(1) or {"x": [1, 2]}) == {"x": [1, 2]}
    assert cache.cached(k, lambda: calls.append(1) or "other") == {"x": [1, 2]}
    assert calls == [1]
    assert cache.key("t", 1, {"a": 3}) != k and cache.key("u", 1, {"a": 2}) != k


def test_the_code_is_part_of_the_key(tmp_cache, monkeypatch):
    k = cache.key("t", 1)
    cache.code_digest.cache_clear()
    monkeypatch.setattr(cache, "code_digest", lambda: "another version of the code")
    assert cache.key("t", 1) != k


def test_an_unreadable_file_is_a_miss(tmp_cache):
    k = cache.key("t", "broken")
    (tmp_cache / k).write_bytes(b"not a pickle")
    assert cache.cached(k, lambda: 42) == 42
    assert pickle.loads((tmp_cache / k).read_bytes()) == 42


def test_off_computes_every_time_and_a_bad_switch_is_named(tmp_cache, monkeypatch):
    monkeypatch.setenv(cache.SWITCH_VARIABLE, "0")
    k = cache.key("t", 2)
    assert cache.cached(k, lambda: 1) == 1 and cache.cached(k, lambda: 2) == 2
    assert not list(tmp_cache.iterdir())
    monkeypatch.setenv(cache.SWITCH_VARIABLE, "maybe")
    with pytest.raises(ParameterError, match="KSCALE_LAB_CACHE"):
        cache.enabled()


def test_the_budget_drops_the_least_recently_used(tmp_cache, monkeypatch):
    monkeypatch.setattr(cache, "BUDGET_BYTES", 2500)
    for i in range(5):
        cache.store(cache.key("t", i), b"x" * 1000)
    assert len(list(tmp_cache.glob("*.pickle"))) == 2


def test_a_capstone_run_read_back_equals_the_run(tmp_cache):
    lab = get_lab("capstone")
    o = {"nodes": 1_000, "pods": 10_000, "duration": 600.0}
    fresh = lab.run("article", o)
    assert cache.has(lab.cache_key("article", o))
    again = lab.run("article", o)
    assert again is not fresh
    assert again.summary["slo_breaks"] == fresh.summary["slo_breaks"]
    assert again.series.equals(fresh.series)
    # a parameter is a cause: another value is another run
    assert lab.cache_key("article", {**o, "nodes": 1_001}) != lab.cache_key("article", o)
    assert lab.cache_key("off", o) != lab.cache_key("article", o)


def test_binder_warms_the_capstone_scorecard_at_build_time():
    import os
    from pathlib import Path

    post = Path(__file__).resolve().parent.parent / "binder" / "postBuild"
    assert os.access(post, os.X_OK)
    assert "LAB.scorecard(" in post.read_text()


def test_claims_values_read_back_equal_a_fresh_computation(tmp_cache, monkeypatch):
    from kscale_lab import claims

    lab = get_lab("bookmarks")
    claims.clear_memo()
    first = dict(claims.lab_values(lab))
    assert any(p.name.startswith("claims-") for p in tmp_cache.iterdir())
    claims.clear_memo()
    monkeypatch.setenv(cache.SWITCH_VARIABLE, "0")
    fresh = dict(claims.lab_values(lab))
    claims.clear_memo()
    assert first == fresh

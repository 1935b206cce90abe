import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="session")
def hb_lab():
    from kscale_lab.labs.heartbeats import LAB

    return LAB


@pytest.fixture(autouse=True)
def fresh_process_baseline(monkeypatch):
    """Estimates in a test count the baseline of a fresh process (the measured floor), not what
    this pytest worker happens to hold after the tests before it: which tests ran first must
    not move a slider's cut or a sweep's worker count. tests/test_memory.py checks the
    process-held baseline itself, and the measured runs use fresh processes."""
    from kscale_lab import memory

    monkeypatch.setattr(memory, "_BASELINE", {})
    monkeypatch.setattr(memory, "current_rss_bytes", lambda: 0)

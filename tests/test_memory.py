"""Memory: every lab's estimate bounds what its run really holds, and a run that would not
fit is refused before it starts, in one line that names the estimate, the limit and
KSCALE_LAB_MEMORY_LIMIT_GIB.

The measured test runs every lab of the registry (new labs included, with no edit here)
in a fresh Python process at three sizes and compares the estimate with the process's
peak resident set (VmHWM), interpreter and libraries included."""

import os
import subprocess
import sys

import pytest

from kscale_lab import memory
from kscale_lab.errors import ScenarioTooLarge
from kscale_lab.labs.base import Lab, registry
from kscale_lab.memory import GIB, MIB, Footprint, Memo, set_bytes

LABS = list(registry())

#: the sizes of the measured test: nodes, and for the largest a short simulated time so the
#: test stays quick (the parameters a lab does not have are left out)
SHORT = {"duration": 120.0, "restart_at": 120.0, "kubelet_list_window": 20.0, "churn_duration_s": 20.0}
SIZES = (("2k", {"nodes": 2_000}, False), ("10k", {"nodes": 10_000}, False), ("30k-short", {"nodes": 30_000}, True))


def _overrides(lab, over, short):
    o = {k: v for k, v in over.items() if k in lab.params}
    if short:
        o.update({k: v for k, v in SHORT.items() if k in lab.params})
    return o


@pytest.mark.slow
@pytest.mark.parametrize("size", [s[0] for s in SIZES])
@pytest.mark.parametrize("name", LABS)
def test_estimate_bounds_the_measured_peak(name, size):
    lab = registry()[name]
    _, over, short = next(s for s in SIZES if s[0] == size)
    o = _overrides(lab, over, short)
    r = memory.measure(name, o, env={"KSCALE_LAB_MEMORY_LIMIT_GIB": "64"})
    assert "refused" not in r, r["refused"]
    est, peak = r["estimate"], r["peak_rss"]
    assert est >= peak, (f"{name} {o}: estimate {est / MIB:.0f} MiB < measured peak {peak / MIB:.0f} MiB; "
                         f"{lab.memory_estimate(lab.settings[-1], o)[1]}")
    # an estimate so loose that it refuses what fits is a defect too
    assert est <= 4 * peak, f"{name} {o}: estimate {est / MIB:.0f} MiB > 4 x measured {peak / MIB:.0f} MiB"


def test_every_lab_itemises_its_run():
    for name, lab in registry().items():
        assert type(lab).memory_footprint is not Lab.memory_footprint, f"{name} has no memory_footprint"
        for s in lab.settings:
            fp = lab.memory_footprint(s, lab.resolve(s))
            assert fp.items and fp.arrays_bytes > 0, name


def test_default_scenarios_fit_binder_even_in_a_kernel(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipykernel", sys.modules.get("ipykernel") or type(sys)("ipykernel"))
    monkeypatch.setattr(memory, "_BASELINE", {})
    monkeypatch.setattr(memory, "current_rss_bytes", lambda: 0)     # a fresh kernel, not this test process
    assert memory.baseline_bytes() == memory.BASELINE_KERNEL_BYTES
    for name, lab in registry().items():
        for s in lab.settings:
            need, detail = lab.memory_estimate(s)
            assert need < GIB, f"{name} {s}: {need / GIB:.2f} GiB ({detail})"


def test_estimate_grows_with_the_cluster():
    for name, lab in registry().items():
        s = lab.settings[0]
        small = lab.memory_estimate(s, {"nodes": 2_000})[0]
        big = lab.memory_estimate(s, {"nodes": 50_000})[0]
        assert big > small, name


@pytest.mark.parametrize("name", LABS)
def test_too_large_is_refused_before_the_run_in_one_line(name, monkeypatch):
    lab = registry()[name]
    monkeypatch.setenv("KSCALE_LAB_MEMORY_LIMIT_GIB", "0.05")
    with pytest.raises(ScenarioTooLarge) as e:
        lab.run(lab.settings[0])
    msg = str(e.value)
    assert "\n" not in msg
    assert "needs about" in msg and "GiB" in msg and "limit of 0.05 GiB" in msg
    assert "KSCALE_LAB_MEMORY_LIMIT_GIB=" in msg
    assert e.value.need_bytes == lab.memory_estimate(lab.settings[0])[0] > e.value.limit_bytes


def test_a_bad_limit_is_a_parameter_error(monkeypatch):
    from kscale_lab.errors import ParameterError

    for raw in ("lots", "0", "-1", "nan"):
        monkeypatch.setenv("KSCALE_LAB_MEMORY_LIMIT_GIB", raw)
        with pytest.raises(ParameterError, match="KSCALE_LAB_MEMORY_LIMIT_GIB"):
            memory.memory_limit_bytes()


def test_cli_refuses_in_one_line_with_exit_2():
    p = subprocess.run([sys.executable, "-m", "kscale_lab.cli", "run", "cached-reads", "--nodes", "100000"],
                       capture_output=True, text=True, env={**os.environ, "KSCALE_LAB_MEMORY_LIMIT_GIB": "1"})
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert "GiB of memory" in p.stderr and "KSCALE_LAB_MEMORY_LIMIT_GIB=" in p.stderr


def test_scheduler_nodes_are_limited_by_memory_not_by_a_range(monkeypatch):
    lab = registry()["scheduler"]
    monkeypatch.setenv("KSCALE_LAB_MEMORY_LIMIT_GIB", "8")
    assert lab.resolve("off", {"nodes": 100_000})["nodes"] == 100_000
    for s in lab.settings:
        lab.check_memory(s, {"nodes": 100_000})
    monkeypatch.setenv("KSCALE_LAB_MEMORY_LIMIT_GIB", "0.1")
    with pytest.raises(ScenarioTooLarge):
        lab.check_memory("off", {"nodes": 100_000})


def test_set_sizes_are_cpythons():
    for n in list(range(0, 200)) + [1_000, 20_000, 50_000, 60_000, 200_000]:
        assert set_bytes(n) == sys.getsizeof(set(list(range(1_000, 1_000 + n)))), n


def test_footprint_peak_is_the_largest_moment():
    fp = (Footprint("t").add("keys", 10, 8).add("build temp", 10, 100, phase="build")
          .add("tape", 10, 50, since="run").add("sort", 10, 30, phase="summary"))
    assert fp.moments == ["build", "run", "summary"]
    assert fp.moment_bytes() == {"build": 1080.0, "run": 580.0, "summary": 880.0}
    assert fp.arrays_bytes == 1080.0 and fp.peak_moment == "build"
    assert fp.total() == int(memory.baseline_bytes() + memory.FIXED_BYTES
                             + (1 + memory.ALLOCATOR_OVERHEAD) * 1080.0)
    assert "t" in fp.detail()


def test_memo_keeps_others_only_up_to_its_budget():
    m = Memo(2, others_bytes=100)
    m.get_or("a", lambda: "A", 50)
    m.get_or("b", lambda: "B", 500)      # a (50 B) is within the budget: kept
    assert list(m) == ["a", "b"]
    m.get_or("c", lambda: "C", 10)       # b (500 B) is over it: dropped, and a with it (size 2)
    assert list(m) == ["c"]
    assert m.get_or("c", lambda: "other", 10) == "C"


def test_dashboard_sliders_stop_at_what_fits(monkeypatch):
    from kscale_lab.viz.heartbeats import HeartbeatDashboard

    monkeypatch.setenv("KSCALE_LAB_MEMORY_LIMIT_GIB", "0.3")
    d = HeartbeatDashboard(nodes=2000)
    cut = d.controls["nodes"].max
    assert 2000 <= cut < 20_000
    assert registry()["heartbeats"].fits(d.overrides()[1] | {"nodes": cut})
    assert not registry()["heartbeats"].fits(d.overrides()[1] | {"nodes": cut + 1000})
    assert "stops at" in d.memory_note.value and "KSCALE_LAB_MEMORY_LIMIT_GIB" in d.memory_note.value
    monkeypatch.setenv("KSCALE_LAB_MEMORY_LIMIT_GIB", "64")
    d.controls["node_kb"].value = 16          # any change refits
    assert d.controls["nodes"].max == 20_000 and d.memory_note.value == ""


def test_the_counted_baseline_is_what_a_fresh_process_measures():
    # the constant is a floor near what a fresh process holds (machines differ by ~30 MiB:
    # pages, allocator); a process that holds more counts what it holds
    rss = memory.measure_baseline()
    assert 0.6 * memory.BASELINE_SCRIPT_BYTES <= rss <= 1.5 * memory.BASELINE_SCRIPT_BYTES, rss / MIB


def test_the_baseline_is_at_least_what_this_process_holds_and_does_not_move(monkeypatch):
    monkeypatch.setattr(memory, "in_kernel", lambda: False)
    monkeypatch.setattr(memory, "_BASELINE", {})
    monkeypatch.setattr(memory, "current_rss_bytes", lambda: 10 * GIB)
    assert memory.baseline_bytes() == 10 * GIB
    monkeypatch.setattr(memory, "current_rss_bytes", lambda: 11 * GIB)
    assert memory.baseline_bytes() == 10 * GIB          # read once: one process, one baseline
    monkeypatch.setattr(memory, "_BASELINE", {})
    monkeypatch.setattr(memory, "current_rss_bytes", lambda: MIB)
    assert memory.baseline_bytes() == memory.BASELINE_SCRIPT_BYTES

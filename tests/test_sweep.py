"""Sweeps: one tidy row per point x setting x seed, the same here, in worker processes and on
a Dask cluster; bad input refused before anything runs; an interrupted sweep keeps its rows."""

from __future__ import annotations

import pandas as pd
import pytest

from kscale_lab import sweeps
from kscale_lab.cli import main
from kscale_lab.errors import ParameterError
from kscale_lab.labs.base import registry

SMALL = {"nodes": 300, "duration": 30}
GRID = {"node_object_bytes": [5_000, 30_000]}


def _model_columns(df):
    """Everything but the wall clock (``wall_time_s`` measures the machine, not the model)."""
    return df[[c for c in df.columns if "wall_time" not in c]]


@pytest.fixture(scope="module")
def here():
    return sweeps.sweep("heartbeats", GRID, base=SMALL, seeds=2, workers=1, progress=False)


def test_one_row_per_point_setting_and_seed(here):
    df = here
    assert len(df) == 2 * 3 * 2
    assert list(df.columns[:5]) == ["run", "setting", "seed", "node_object_bytes", "nodes"]
    assert list(df["run"]) == list(range(12))
    assert set(df["setting"]) == {"off", "article", "upstream"} and set(df["seed"]) == {0, 1}
    assert (df["nodes"] == 300).all()
    assert "etcd_wal_bytes_per_min" in df.columns and "params" not in df.columns
    # the metric moves with its cause: a Node object 6x larger writes more WAL with Node status updates
    off = df[(df.setting == "off") & (df.seed == 0)].set_index("node_object_bytes")
    assert off.loc[30_000, "etcd_wal_bytes_per_min"] > 1.5 * off.loc[5_000, "etcd_wal_bytes_per_min"]


def test_a_row_is_the_lab_run_it_names(here, hb_lab):
    row = here.iloc[7]
    o = dict(SMALL, node_object_bytes=row["node_object_bytes"], seed=int(row["seed"]))
    sm = hb_lab.run(row["setting"], o).summary
    assert row["etcd_wal_bytes_per_min"] == sm["etcd_wal_bytes_per_min"]
    assert row["nodes_ever_notready"] == sm["nodes_ever_notready"]


def test_worker_processes_give_the_same_table(here):
    two = sweeps.sweep("heartbeats", GRID, base=SMALL, seeds=2, workers=2, progress=False)
    pd.testing.assert_frame_equal(_model_columns(two), _model_columns(here))


def test_a_dask_cluster_gives_the_same_table(here):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as c:
        df = sweeps.sweep("heartbeats", GRID, base=SMALL, seeds=2, scheduler=c.scheduler_address, progress=False)
    pd.testing.assert_frame_equal(_model_columns(df), _model_columns(here))


def test_every_lab_sweeps(tmp_path):
    """A lab gets sweeps for free: plan and memory estimate for every lab in the registry."""
    for name, lab in registry().items():
        tasks, heads = sweeps.plan(lab, {}, None, 1, {})
        assert len(tasks) == len(lab.settings)
        assert all(lab.memory_estimate(t[2], t[3]) > 0 for t in tasks)


@pytest.mark.parametrize("grid, kw, needle", [
    ({"nope": [1, 2]}, {}, "'nope' is unknown"),
    ({"node_object_bytes": [5_000, 1e12]}, {}, "'node_object_bytes' must be"),
    ({"node_object_bytes": [5_000, 5_000]}, {}, "repeated grid values"),
    ({"node_object_bytes": []}, {}, "no grid values"),
    ({"node_object_bytes": [5_000]}, {"base": {"node_object_bytes": 1}}, "both in the grid"),
    ({}, {"settings": ["sideways"]}, "'heartbeats' must be one of"),
    ({}, {"seeds": 0}, "'--seeds' must be an integer >= 1"),
    ({"seed": [1, 2]}, {"seeds": 2}, "say the same thing"),
    ({}, {"out": "table.xlsx"}, "'--out' must end in .csv or .parquet"),
    ({}, {"workers": "many"}, "'--workers'"),
    ({}, {"scheduler": "localhost"}, "'--scheduler' must be a Dask scheduler address"),
    ({}, {"scheduler": "tcp://127.0.0.1:8786", "workers": 2}, "'--workers' applies to local runs"),
])
def test_bad_input_is_refused_before_anything_runs(monkeypatch, grid, kw, needle):
    monkeypatch.setattr(sweeps, "run_task", lambda t: pytest.fail("ran before refusing"))
    with pytest.raises(ParameterError, match=needle.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        sweeps.sweep("heartbeats", grid, progress=False, **kw)


def test_too_large_for_memory_is_refused_with_the_estimate(monkeypatch, capsys):
    monkeypatch.setenv("KSCALE_LAB_MEMORY_LIMIT_GIB", "0.1")
    monkeypatch.setattr(sweeps, "run_task", lambda t: pytest.fail("ran before refusing"))
    # one run fits (about 65 MB at 10k nodes), three at once do not: asked-for workers are refused...
    with pytest.raises(sweeps.SweepTooLarge, match="3 workers at once"):
        sweeps.sweep("heartbeats", {}, workers=3, progress=False)
    # ... and a run that alone does not fit is refused whatever the workers
    rc = main(["sweep", "heartbeats", "--grid", "nodes=10000,40000"])
    err = capsys.readouterr().err
    assert rc == 2 and "largest run alone" in err and "KSCALE_LAB_MEMORY_LIMIT_GIB" in err
    assert len(err.strip().splitlines()) == 1


def test_default_workers_shrink_to_fit_memory(monkeypatch, hb_lab):
    monkeypatch.setenv("KSCALE_LAB_MEMORY_LIMIT_GIB", "0.1")
    monkeypatch.setattr(sweeps.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    tasks, _ = sweeps.plan(hb_lab, {"node_object_bytes": [5_000, 10_000]})
    one = hb_lab.memory_estimate("off")
    k, _ = sweeps._fit_workers(hb_lab, tasks, None, local=True)
    assert k == int(0.1 * 1024**3 // one) and 1 <= k < 6


def test_interrupted_sweep_keeps_finished_rows(tmp_path, monkeypatch):
    out = tmp_path / "partial.csv"
    real, calls = sweeps.run_task, []

    def flaky(task):
        calls.append(task[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(sweeps, "run_task", flaky)
    with pytest.raises(KeyboardInterrupt):
        sweeps.sweep("heartbeats", GRID, base=SMALL, workers=1, out=out, progress=False)
    kept = pd.read_csv(out)
    assert list(kept["run"]) == [0, 1] and kept["etcd_wal_bytes_per_min"].notna().all()


def test_interrupt_stops_the_workers_and_keeps_rows(tmp_path, monkeypatch):
    out = tmp_path / "partial.csv"
    real_add = sweeps._Out.add

    def add(self, rows):
        real_add(self, rows)
        if len(rows) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(sweeps._Out, "add", add)
    with pytest.raises(KeyboardInterrupt):
        sweeps.sweep("heartbeats", {"node_object_bytes": [5_000, 10_000, 20_000, 30_000]}, base=SMALL,
                     workers=2, out=out, progress=False)
    kept = pd.read_csv(out)
    assert len(kept) == 2 and kept["run"].is_monotonic_increasing


def test_cli_sweep_csv_and_parquet(tmp_path, capsys):
    rc = main(["sweep", "heartbeats", "--grid", "node_object_bytes=5000,30000", "--set", "nodes=300",
               "--set", "duration=30", "--switch", "heartbeats=off", "--workers", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("run,setting,seed,node_object_bytes,nodes,duration,") and len(lines) == 3
    pytest.importorskip("pyarrow")
    path = tmp_path / "s.parquet"
    rc = main(["sweep", "heartbeats", "--grid", "node_object_bytes=5000,30000", "--set", "nodes=300",
               "--set", "duration=30", "--switch", "heartbeats=off,article", "--workers", "1", "--out", str(path)])
    assert rc == 0
    df = pd.read_parquet(path)
    assert len(df) == 4 and list(df["setting"]) == ["off", "article", "off", "article"]


def test_parquet_without_pyarrow_is_one_clear_line(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "pyarrow" else real(n, *a))
    rc = main(["sweep", "heartbeats", "--out", str(tmp_path / "s.parquet")])
    err = capsys.readouterr().err
    assert rc == 2 and "needs pyarrow" in err and "kscale-lab[parquet]" in err


def test_cli_refuses_another_labs_switch(capsys):
    rc = main(["sweep", "heartbeats", "--switch", "scheduler=off"])
    err = capsys.readouterr().err
    assert rc == 2 and "not the switch of lab heartbeats" in err


def test_ctrl_c_on_the_command_line_keeps_the_finished_rows(tmp_path):
    """A real SIGINT to ``kscale-lab sweep`` with worker processes: exit 130, finished rows kept."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "s.csv"
    sizes = ",".join(str(1_000 + 500 * i) for i in range(60))
    proc = subprocess.Popen([sys.executable, "-m", "kscale_lab.cli", "sweep", "heartbeats", "--grid",
                             f"node_object_bytes={sizes}", "--set", "nodes=300", "--set", "duration=30",
                             "--workers", "2", "--out", str(out)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    kept = pd.read_csv(out)
    assert 2 <= len(kept) < 180 and kept["run"].is_unique and kept["run"].is_monotonic_increasing
    assert f"kept {len(kept)} of 180 runs" in err


def test_progress_helper(monkeypatch):
    from kscale_lab import progress

    monkeypatch.setenv("KSCALE_LAB_PROGRESS", "0")
    assert not progress.enabled()
    assert list(progress.track(range(5), desc="x")) == [0, 1, 2, 3, 4]
    monkeypatch.setenv("KSCALE_LAB_PROGRESS", "1")
    assert progress.enabled()
    with progress.bar(total=3, desc="y", show=False) as b:   # hidden, still a working bar
        b.update(3)
        b.set_postfix_str("done")
    with progress.bar(total=2, desc="z") as b:
        b.update(2)
        assert b.n == 2

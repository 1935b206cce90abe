import csv
import io
import json
import subprocess
import sys

import pytest

from kscale_lab.cli import main


def run(capsys, *args):
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_list_shows_every_switch_and_lab(capsys):
    rc, out, _ = run(capsys, "list")
    assert rc == 0
    for name in ("freelist", "heartbeats", "apiserver_lb", "bookmarks", "cached_reads", "context_cancel",
                 "flow_control", "hot_standby", "scheduler"):
        assert name in out


def test_params_json_has_unit_default_source(capsys):
    rc, out, _ = run(capsys, "params", "heartbeats", "--format", "json")
    doc = json.loads(out)
    names = {p["name"]: p for p in doc["params"]}
    assert names["node_object_bytes"]["unit"] == "B" and names["node_object_bytes"]["default"] == 15000.0
    assert all(p["source"] for p in doc["params"])
    assert names["node_monitor_grace_period"]["setting_defaults"] == {"upstream": 50.0}


def test_run_json_shape(capsys):
    rc, out, _ = run(capsys, "run", "heartbeats", "--nodes", "300", "--set", "duration=30", "--seed", "3",
                     "--format", "json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["lab"] == "heartbeats"
    assert doc["scenario"]["nodes"] == 300 and doc["scenario"]["seed"] == 3
    assert doc["scenario"]["pods"] == 6000          # scaled with the nodes the user set
    assert doc["scenario"]["node_monitor_grace_period"] == {"off": 40.0, "article": 40.0, "upstream": 50.0}
    assert set(doc["results"]) == {"off", "article", "upstream"}
    assert "etcd_wal_bytes_per_min" in doc["results"]["off"]


def test_run_one_setting_and_other_switches(capsys):
    rc, out, _ = run(capsys, "run", "heartbeats", "--nodes", "200", "--set", "duration=20",
                     "--switch", "heartbeats=article", "--switch", "scheduler=upstream", "--format", "csv")
    assert rc == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["metric", "article"]


@pytest.mark.parametrize("args, needle", [
    (["run", "heartbeats", "--nodes", "-5"], "'nodes'"),
    (["run", "heartbeats", "--nodes", "lots"], "'nodes'"),
    (["run", "heartbeats", "--set", "node_object_bytes=1e12"], "'node_object_bytes'"),
    (["run", "heartbeats", "--set", "nope=1"], "'nope' is unknown"),
    (["run", "heartbeats", "--set", "duration"], "NAME=VALUE"),
    (["run", "heartbeats", "--switch", "heartbeats=maybe"], "'heartbeats'"),
    (["run", "heartbeats", "--switch", "warp=on"], "not a switch"),
    (["run", "nolab"], "'LAB' is unknown"),
    (["params", "nolab"], "'LAB' is unknown"),
    (["run", "heartbeats", "--nodes", "100000", "--set", "duration=86400"], "GiB of memory"),
    (["frobnicate"], "invalid"),
])
def test_bad_input_is_one_line_exit_2(capsys, args, needle):
    rc, out, err = run(capsys, *args)
    assert rc == 2
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_console_script_exit_status_without_traceback():
    p = subprocess.run([sys.executable, "-m", "kscale_lab.cli", "run", "heartbeats", "--nodes", "0"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("\n") == 1

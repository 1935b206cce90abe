import csv
import io

from kscale_lab.claims import CSV_COLUMNS, Claim, claims_table, load_claims
from kscale_lab.cli import main


def test_claims_csv_columns_and_rows(capsys):
    assert main(["claims", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    hb = [r for r in rows if r["lab"] == "heartbeats"]
    assert {r["claim"] for r in hb} == {c.claim for c in load_claims("heartbeats")}


def test_every_heartbeat_claim_holds_at_default_scale():
    t = claims_table(["heartbeats"])
    assert t.holds.all(), t[["claim", "lab_value"]]


def test_comparisons():
    c = Claim("x", "c", "", "~1", "approx", 1.0, None, None, 0.25, "u", "s")
    assert c.holds(1.2) and not c.holds(1.3) and not c.holds(float("nan"))
    g = Claim("x", "c", "", ">80%", "gt", 0.8, None, None, None, "1", "s")
    assert g.holds(0.81) and not g.holds(0.8)
    b = Claim("x", "c", "", "several", "between", 5, 2, 9, None, "n", "s")
    assert b.holds(2) and b.holds(9) and not b.holds(10)


def test_lab_value_is_computed_not_typed_in():
    """Change a cause, and the lab's figure moves (while the article's stays)."""
    from kscale_lab.labs.heartbeats import LAB

    small = LAB.run("off", {"node_object_bytes": 5000.0, "quota_backend_bytes": 1024**4, "duration": 120.0})
    big = LAB.run("off", {"node_object_bytes": 30000.0, "quota_backend_bytes": 1024**4, "duration": 120.0})
    assert big.summary["etcd_wal_bytes_per_min"] > 5 * small.summary["etcd_wal_bytes_per_min"]

"""The claims table: the article's figures beside the lab's own.

``data/claims/<lab>.csv`` lists, for each lab, the article's claims: what is
claimed, the figure as the article states it, how to compare (``approx`` within a
relative tolerance, ``gt``/``lt`` a bound, ``between`` a range), the unit and the
source. The figure is a *target*: the lab computes its own value with its model
(:meth:`kscale_lab.labs.base.Lab.claims`) and the table says whether the claim
holds. ``kscale-lab claims`` prints it.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ParameterError

CSV_COLUMNS = ("lab", "claim", "article", "lab_value", "unit", "holds")


def data_dir() -> Path:
    env = os.environ.get("KSCALE_LAB_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True)
class Claim:
    lab: str
    claim: str
    description: str
    article: str
    compare: str
    value: float
    lo: float | None
    hi: float | None
    tolerance: float | None
    unit: str
    source: str

    def holds(self, x: float) -> bool:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return False
        if self.compare == "approx":
            return abs(x - self.value) <= (self.tolerance or 0.0) * abs(self.value)
        if self.compare == "gt":
            return x > self.value
        if self.compare == "lt":
            return x < self.value
        if self.compare == "between":
            return self.lo <= x <= self.hi
        raise ValueError(f"unknown comparison {self.compare!r} in claims of {self.lab}")


def _num(s: str) -> float | None:
    s = (s or "").strip()
    return float(s) if s else None


def load_claims(lab: str) -> list[Claim]:
    path = data_dir() / "claims" / f"{lab}.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [Claim(lab, r["claim"], r["description"], r["article"], r["compare"], float(r["value"]),
                      _num(r["lo"]), _num(r["hi"]), _num(r["tolerance"]), r["unit"], r["source"])
                for r in csv.DictReader(f)]


def claims_table(labs=None):
    """DataFrame with one row per claim of every lab that exists (or of ``labs``)."""
    import pandas as pd

    from .labs.base import get_lab, registry

    names = list(labs) if labs else list(registry())
    rows = []
    for name in names:
        lab = get_lab(name)
        claims = load_claims(lab.name)
        if not claims:
            continue
        values = lab.claims()
        for c in claims:
            if c.claim not in values:
                raise ParameterError("claim", f"{c.claim!r} of lab {lab.name} is listed in data/claims but the "
                                              f"lab does not compute it")
            x = float(values[c.claim])
            rows.append({"lab": lab.name, "claim": c.claim, "article": c.article, "lab_value": x,
                         "unit": c.unit, "holds": c.holds(x), "description": c.description,
                         "source": c.source})
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS) + ["description", "source"])


def format_value(x: float) -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int) or (isinstance(x, float) and abs(x) >= 1000):
        return f"{x:,.0f}"
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)

"""The claims table: the article's figures beside the lab's own, and on what basis.

``data/claims/<lab>.csv`` lists, for each lab, the article's claims: what is
claimed, the figure as the article states it, how to compare (``approx`` within a
relative tolerance, ``gt``/``lt`` a bound, ``between`` a range), the unit and the
source. The figure is a *target*: the lab computes its own value with its model
(:meth:`kscale_lab.labs.base.Lab.claims`) and the table says whether the claim
holds. Each row also says

* ``criterion``: the test in words, generated from the comparison ("within ±25 % of
  1 GB/min", "> 100x", "between 2,000 and 9,999 nodes"); a bound at the no-effect
  value (1 for a ratio, 0 or 100 % for a share) says "(direction only)";
* ``basis``: why the lab's figure agrees or not (:data:`BASES`): ``emergent`` from
  independently sourced inputs, ``arithmetic``, ``calibrated-out-of-sample``,
  ``calibrated-in-sample``, ``by-construction`` or ``conditional``;
* ``band_lo`` / ``band_hi``: the lab's value as each assumption it depends on
  (``band_params``, each a :class:`~kscale_lab.params.Param` with a ``plausible``
  range) moves to either end of its range, one at a time, the others at their
  defaults (one-at-a-time extremes, not corners); ``robust``: the claim holds over
  the whole band;
* ``note``: one sentence for the rows that do not hold or are not robust.

``kscale-lab claims`` prints it (``--no-bands`` skips the band). The lab values are
kept in ``tests/data/claims_snapshot.json``; ``python -m kscale_lab.claims snapshot``
rewrites it on purpose (see CONTRIBUTING.md section 3).
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from . import cache
from .errors import ParameterError

CSV_COLUMNS = ("lab", "claim", "article", "lab_value", "unit", "holds", "robust", "criterion", "basis",
               "band_lo", "band_hi", "note")
DATA_COLUMNS = ("claim", "description", "article", "compare", "value", "lo", "hi", "tolerance", "unit", "source",
                "basis", "band_params", "note")
COMPARES = ("approx", "gt", "lt", "between")
#: the basis vocabulary, in the order of trust (CONTRIBUTING.md section 3)
BASES = {
    "emergent": "comes out of the mechanism fed with independently sourced inputs",
    "arithmetic": "follows directly from an input",
    "calibrated-out-of-sample": "a cost was fitted on other measurements than the one checked",
    "calibrated-in-sample": "a cost was fitted on the measurement (or finding) the claim checks",
    "by-construction": "a property the mechanism guarantees: a proof, not a measurement",
    "conditional": "driven by an assumption: see the band",
}
SNAPSHOT = Path(__file__).resolve().parent.parent / "tests" / "data" / "claims_snapshot.json"


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
    basis: str = ""
    band_params: tuple = ()
    note: str = ""

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

    def holds_over(self, lo: float, hi: float) -> bool:
        """The claim holds for every value in ``[lo, hi]`` (every criterion is an interval)."""
        return self.holds(lo) and self.holds(hi)

    @property
    def is_share(self) -> bool:
        return self.unit == "1"

    @property
    def direction_only(self) -> bool:
        """A bound at the no-effect value: the row checks the sign of an effect, not its size."""
        if self.compare not in ("gt", "lt"):
            return False
        if self.unit == "x":
            return self.value == 1.0
        if self.is_share:
            return self.value in (0.0, 1.0)
        return False

    def criterion(self) -> str:
        """The comparison in words, e.g. ``within ±25 % of 1 GB/min``, ``> 100x``."""
        v = lambda x: format_quantity(x, self.unit)  # noqa: E731
        if self.compare == "approx":
            tol = self.tolerance or 0.0
            text = f"= {v(self.value)}" if tol == 0 else f"within ±{_pct(tol)} of {v(self.value)}"
        elif self.compare == "between":
            text = f"between {v(self.lo)} and {v(self.hi)}"
        else:
            text = f"{'>' if self.compare == 'gt' else '<'} {v(self.value)}"
        return text + (" (direction only)" if self.direction_only else "")


def _num(s: str) -> float | None:
    s = (s or "").strip()
    return float(s) if s else None


def load_claims(lab: str) -> list[Claim]:
    path = data_dir() / "claims" / f"{lab}.csv"
    if not path.exists():
        return []
    out = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in DATA_COLUMNS[:10] if c not in (reader.fieldnames or ())]
        if missing:
            raise ParameterError("claims", f"file {path.name} lacks the columns {', '.join(missing)} "
                                           f"(CONTRIBUTING.md section 3)")
        for r in reader:
            # basis, band_params and note may be missing in a file of the older form: the row
            # then prints without them and tests/test_claims.py says what to add
            c = Claim(lab, r["claim"], r["description"], r["article"], r["compare"], float(r["value"]),
                      _num(r["lo"]), _num(r["hi"]), _num(r["tolerance"]), r["unit"], r["source"],
                      (r.get("basis") or "").strip(), tuple((r.get("band_params") or "").split()),
                      (r.get("note") or "").strip())
            if c.compare not in COMPARES:
                raise ParameterError("compare", f"of claim {c.claim!r} ({lab}) must be one of {', '.join(COMPARES)}; "
                                                f"got {c.compare!r}")
            if c.compare == "between" and (c.lo is None or c.hi is None):
                raise ParameterError("lo", f"and hi of claim {c.claim!r} ({lab}) are needed for 'between'")
            if c.basis and c.basis not in BASES:
                raise ParameterError("basis", f"of claim {c.claim!r} ({lab}) must be one of {', '.join(BASES)}; "
                                              f"got {c.basis!r}")
            out.append(c)
    return out


# --------------------------------------------------------------------------------------
# Computing the table: lab values, memoised per process, and their bands
# --------------------------------------------------------------------------------------
_MEMO: dict = {}


def lab_values(lab, overrides: dict | None = None, only=None) -> dict:
    """``lab.claims(overrides=..., only=...)``, memoised per process (each distinct set of
    overrides runs the lab once per missing claim set) and on disk in :mod:`kscale_lab.cache`
    (keyed by lab, overrides, claims and the code's digest: the tests, the report and the tour
    compute each once)."""
    key = (lab.name, tuple(sorted((overrides or {}).items())))
    have = _MEMO.setdefault(key, {})
    need = None if only is None else set(only) - set(have)
    if need is None or need:
        takes = inspect.signature(lab.claims).parameters
        kw = {}
        if "overrides" in takes:
            kw["overrides"] = dict(overrides) if overrides else None
        elif overrides:
            raise ParameterError("band_params", f"of lab {lab.name} need claims(results=None, overrides=None, "
                                                f"only=None): its claims() takes no overrides (CONTRIBUTING.md "
                                                f"section 3)")
        if "only" in takes:
            kw["only"] = need
        k = cache.key("claims", lab.name, key[1], None if need is None else sorted(need))
        got = cache.cached(k, lambda: {c: float(v) for c, v in lab.claims(**kw).items()})
        have.update({k: float(v) for k, v in got.items()})
    return have


def clear_memo() -> None:
    _MEMO.clear()


def band_overrides(lab, claim: Claim) -> list[dict]:
    """The override sets of ``claim``'s band: each band parameter at each end of its
    plausible range, the others at their defaults (one at a time)."""
    out = []
    for name in claim.band_params:
        if name not in lab.params:
            raise ParameterError("band_params", f"of claim {claim.claim!r} ({lab.name}) names {name!r}, which is "
                                                f"not a parameter of the lab")
        p = lab.params[name]
        if p.plausible is None:
            raise ParameterError("band_params", f"of claim {claim.claim!r} ({lab.name}) names {name!r}, which has no "
                                                f"plausible range (Param(..., plausible=(lo, hi), plausible_source=...))")
        for v in p.plausible:
            if v != p.default:
                out.append({p.name: v})
    return out


def claim_band(lab, claim: Claim, value: float, claims=None) -> tuple[float, float]:
    """(band_lo, band_hi) of ``claim``: the smallest and largest of its value and of its
    values at each band override. ``claims``: the lab's other claims, so that one run per
    override set serves every claim that needs it."""
    vals = [value]
    for o in band_overrides(lab, claim):
        need = {c.claim for c in (claims or [claim]) if o in band_overrides(lab, c)} | {claim.claim}
        vals.append(lab_values(lab, o, need)[claim.claim])
    if any(math.isnan(v) for v in vals):
        return float("nan"), float("nan")
    return min(vals), max(vals)


def claims_table(labs=None, bands: bool | str = True):
    """DataFrame with one row per claim of every lab that exists (or of ``labs``):
    :data:`CSV_COLUMNS` plus ``description``, ``source``, ``band_params``. ``bands=False``
    skips the band (``band_lo``/``band_hi`` NaN, ``robust`` None); ``bands="snapshot"`` takes
    the band and ``robust`` from ``tests/data/claims_snapshot.json`` (computed by the same code,
    checked against a fresh computation by the tests) while the lab values are computed now:
    the tour's overview, which would otherwise rerun every band of every lab."""
    import pandas as pd

    from .labs.base import get_lab, registry

    names = list(labs) if labs else list(registry())
    rows = []
    for name in names:
        lab = get_lab(name)
        claims = load_claims(lab.name)
        if not claims:
            continue
        values = lab_values(lab, None, {c.claim for c in claims})
        for c in claims:
            if c.claim not in values:
                raise ParameterError("claim", f"{c.claim!r} of lab {lab.name} is listed in data/claims but the "
                                              f"lab does not compute it")
            x = float(values[c.claim])
            stored = _stored(lab.name, c.claim) if bands == "snapshot" else None
            if stored is not None:
                lo = float("nan") if stored.get("band_lo") is None else float(stored["band_lo"])
                hi = float("nan") if stored.get("band_hi") is None else float(stored["band_hi"])
                robust = stored.get("robust")
            elif bands is True:
                lo, hi = claim_band(lab, c, x, claims)
                robust = bool(c.holds_over(lo, hi)) if not math.isnan(lo) else False
            else:
                lo = hi = float("nan")
                robust = None
            rows.append({"lab": lab.name, "claim": c.claim, "article": c.article, "lab_value": x, "unit": c.unit,
                         "holds": c.holds(x), "robust": robust, "criterion": c.criterion(), "basis": c.basis,
                         "band_lo": lo, "band_hi": hi, "note": c.note, "description": c.description,
                         "source": c.source, "band_params": " ".join(c.band_params)})
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS) + ["description", "source", "band_params"])


def _stored(lab: str, claim: str):
    try:
        return read_snapshot().get(lab, {}).get(claim)
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------
def format_value(x: float) -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    if x is None:
        return "-"
    if isinstance(x, int) or (isinstance(x, float) and abs(x) >= 1000):
        return f"{x:,.0f}"
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)


def _pct(share: float) -> str:
    v = 100.0 * share
    if v == 0:
        return "0 %"
    if abs(v) >= 10:
        return f"{v:.0f} %"
    return f"{v:.2g} %"


def format_quantity(x: float, unit: str) -> str:
    """A value with its unit as a reader wants it: shares (unit ``1``) as %, ratios as
    ``4.2x``, counts with thousands separators."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if unit == "1":
        return _pct(x)
    v = format_value(float(x))
    if unit == "x":
        return f"{v}x"
    if unit in ("", None):
        return v
    return f"{v} {unit}"


def format_band(lo: float, hi: float, unit: str) -> str:
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return "-"
    a, b = format_quantity(lo, unit), format_quantity(hi, unit)
    return a if a == b else f"{a} .. {b}"


def _yn(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return "yes" if x else "no"


def printable(table):
    """The table as people read it: values with units (shares as %), yes/no, the band as
    one column, ``holds`` saying "yes (direction)" for direction-only rows."""
    import pandas as pd

    claims = {}
    for lab in table["lab"].unique() if len(table) else ():
        claims.update({(lab, c.claim): c for c in load_claims(lab)})
    rows = []
    for r in table.to_dict("records"):
        c = claims[(r["lab"], r["claim"])]
        holds = _yn(r["holds"])
        if r["holds"] and c.direction_only:
            holds = "yes (direction)"
        rows.append({"lab": r["lab"], "claim": r["claim"], "article": r["article"],
                     "lab value": format_quantity(r["lab_value"], r["unit"]), "criterion": r["criterion"],
                     "holds": holds, "robust": _yn(r["robust"]), "basis": r["basis"],
                     "band": format_band(r["band_lo"], r["band_hi"], r["unit"]), "note": r["note"]})
    return pd.DataFrame(rows, columns=["lab", "claim", "article", "lab value", "criterion", "holds", "robust",
                                       "basis", "band", "note"])


def show_claims(lab=None, bands: bool | str = True, width: int = 100, compact: bool = False) -> str:
    """The claims of ``lab`` (a name; None = every lab) as printable text: one block per
    claim (claim, article, lab value, criterion, holds, robust, basis, band, note). For a
    notebook cell: ``print(show_claims("heartbeats"))``. ``compact``: one line per claim,
    without the notes (the tour's overview)."""
    import textwrap

    labs = [lab] if isinstance(lab, str) else (list(lab) if lab else None)
    t = printable(claims_table(labs, bands=bands))
    if compact:
        cols = [c for c in t.columns if c != "note" and not (c == "lab" and isinstance(lab, str))]
        return t[cols].to_string(index=False)
    out = []
    for r in t.to_dict("records"):
        head = (f"{r['lab']}: " if lab is None or not isinstance(lab, str) else "") + r["claim"]
        out.append(head)
        out.append(f"  article {r['article']}  |  lab {r['lab value']}  |  test: {r['criterion']}")
        out.append(f"  holds {r['holds']}  |  robust {r['robust']}  |  basis {r['basis']}  |  band {r['band']}")
        if r["note"]:
            out.extend(textwrap.wrap(r["note"], width, initial_indent="  note: ", subsequent_indent="        "))
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# The snapshot of lab values (tests/data/claims_snapshot.json)
# --------------------------------------------------------------------------------------
def _clean(x):
    if x is None:
        return None
    if isinstance(x, (bool,)) or type(x).__name__ == "bool_":
        return bool(x)
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def snapshot(table=None) -> dict:
    """{lab: {claim: {lab_value, band_lo, band_hi, holds, robust}}} of the current model."""
    table = claims_table() if table is None else table
    out: dict = {}
    for r in table.to_dict("records"):
        out.setdefault(r["lab"], {})[r["claim"]] = {k: _clean(r[k]) for k in
                                                    ("lab_value", "band_lo", "band_hi", "holds", "robust")}
    return out


def write_snapshot(path: Path = SNAPSHOT) -> dict:
    snap = snapshot()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(snap, indent=1, sort_keys=True) + "\n")
    return snap


def read_snapshot(path: Path = SNAPSHOT) -> dict:
    return json.loads(Path(path).read_text())


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["snapshot"]:
        print("usage: python -m kscale_lab.claims snapshot   (rewrites tests/data/claims_snapshot.json)",
              file=sys.stderr)
        return 2
    old = read_snapshot() if SNAPSHOT.exists() else {}
    new = write_snapshot()
    moved = [(lab, c, old.get(lab, {}).get(c), v) for lab, rows in new.items() for c, v in rows.items()
             if old.get(lab, {}).get(c) != v]
    for lab, c, a, b in moved:
        print(f"{lab} {c}: {a} -> {b}")
    print(f"wrote {SNAPSHOT} ({sum(len(r) for r in new.values())} claims, {len(moved)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Which assumptions move which claims: a helper for choosing a claim's ``band_params``.

For every number parameter of a lab whose source says ``assumption``, recompute the lab's
claims with the parameter at each end of its plausible range (or at half and twice its
default when it has none) and print the claims that move by more than ``--threshold``
(relative), marking those whose ``band_params`` in ``data/claims/<lab>.csv`` do not list it.

    .venv/bin/python benchmarks/claims_sensitivity.py heartbeats [--threshold 0.03]

Slow (every claim, twice per assumption); run it when you add a lab or a claim, not in CI.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kscale_lab.claims import load_claims  # noqa: E402
from kscale_lab.labs.base import get_lab, registry  # noqa: E402


def candidates(p):
    if p.plausible is not None:
        return [v for v in p.plausible if v != p.default]
    d = p.default
    out = []
    for v in ((d * 0.5, d * 2.0) if d else ((p.lo or 0) + 1,)):
        v = max(v, p.lo) if p.lo is not None else v
        v = min(v, p.hi) if p.hi is not None else v
        v = int(round(v)) if p.kind is int else float(v)
        if v != d:
            out.append(v)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("labs", nargs="*", help="lab names (default: every lab with claims)")
    ap.add_argument("--threshold", type=float, default=0.03, help="relative move to report (default 0.03)")
    a = ap.parse_args(argv)
    for name in a.labs or [n for n in registry() if load_claims(n)]:
        lab = get_lab(name)
        claims = {c.claim: c for c in load_claims(name)}
        base = lab.claims()
        print(f"== {name}")
        for p in lab.params:
            if p.kind not in (int, float) or "assumption" not in p.source.lower():
                continue
            for v in candidates(p):
                t = time.perf_counter()
                got = lab.claims(overrides={p.name: v}, only=set(claims))
                moved = []
                for k, c in claims.items():
                    x, y = float(base[k]), float(got.get(k, math.nan))
                    rel = abs(y - x) / abs(x) if x else (0.0 if y == x else math.inf)
                    if rel > a.threshold or math.isnan(rel):
                        flag = "" if p.name in c.band_params else "  <- not in band_params"
                        moved.append(f"{k} {x:.4g} -> {y:.4g}{flag}")
                print(f"  {p.name} = {v!r} ({time.perf_counter() - t:.1f} s): " + ("; ".join(moved) or "-"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

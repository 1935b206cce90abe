"""Figures are colour-blind safe: Okabe-Ito colours, and a second cue besides colour."""

import re
from pathlib import Path

from kscale_lab import viz

ROOT = Path(__file__).resolve().parent.parent
HEX = re.compile(r"[\"']#[0-9a-fA-F]{3,8}[\"']")


def test_settings_use_okabe_ito_with_a_dash_a_marker_and_a_hatch_each():
    okabe = set(viz.OKABE_ITO.values())
    assert set(viz.PALETTE.values()) <= okabe and set(viz.COLORS) <= okabe
    for cue in (viz.PALETTE, viz.DASHES, viz.MARKERS, viz.HATCHES):
        assert set(cue) == {"off", "article", "upstream"}
        assert len(set(cue.values())) == 3, cue       # each setting differs in every cue


def test_no_hard_coded_colour_in_a_figure():
    """Colours come from kscale_lab.viz (PALETTE, COLORS, NEUTRAL, ...), not literals in a viz
    module or a notebook source (HTML text colours in summaries are grey text, allowed)."""
    files = [p for p in (ROOT / "kscale_lab" / "viz").glob("*.py") if p.name not in ("__init__.py", "static.py")]
    files += sorted((ROOT / "labs" / "source").glob("*.py"))
    found = [f"{p.name}:{i}: {line.strip()}" for p in files for i, line in enumerate(p.read_text().splitlines(), 1)
             if HEX.search(line)]
    assert not found, found


def test_claims_figure_says_holds_in_words():
    import pandas as pd

    from kscale_lab.viz.bookmarks import claims_figure

    f = claims_figure(pd.DataFrame({"claim": ["a", "b"], "lab_value": [0.02, 0.5], "unit": ["1", "1"],
                                    "holds": [True, False]}))
    src = f.renderers[0].data_source
    assert src.data["verdict"] == ["✓ holds", "✗ fails"]
    assert src.data["hatch"][0] != src.data["hatch"][1]

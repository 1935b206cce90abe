"""The report: one static HTML file, every lab of the registry, opened in headless Chromium.

The report is built once (every lab, every setting, at the default scenario) and checked
three ways: its content (each lab's figures, parameters and claims), the data it hands to
BokehJS (every figure has data), and, in Chromium from a file:// URL with no server and
no network, that every ColumnDataSource arrived with the rows Python sent and that no
console error or page error was logged.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from kscale_lab.cli import main
from kscale_lab.labs.base import registry

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-quic", "--no-first-run"]


def _rows(source) -> int:
    cols = list(source.data.values())
    return len(cols[0]) if cols else 0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from kscale_lab.reports import render

    page, roots = render(progress=False)
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(page, encoding="utf-8")
    return path, page, roots


def test_every_lab_has_its_sections(built):
    from kscale_lab.claims import load_claims

    _, page, roots = built
    for name, lab in registry().items():
        assert f"id='lab-{name}'" in page
        for c in load_claims(name):
            assert f">{c.claim}<" in page            # its claims rows
        assert f"<code>{next(iter(lab.params)).name}</code>" in page   # its parameters
    assert page.count("<section ") == len(registry())
    # opens offline: BokehJS is inline, nothing is loaded from the network
    assert not re.search(r"<(script|link)[^>]*(src|href)=[\"']?https?:", page)
    assert "Bokeh.embed.embed_items" in page
    assert len(roots) >= len(registry())


def test_every_figure_has_data(built):
    from bokeh.models import ColumnDataSource, GlyphRenderer, Plot

    _, _, roots = built
    plots = [p for r in roots.values() for p in r.select({"type": Plot})]
    assert len(plots) >= 4 * len(registry())
    for p in plots:
        sources = [g.data_source for g in p.select({"type": GlyphRenderer})
                   if isinstance(g.data_source, ColumnDataSource)]
        assert any(_rows(s) > 0 for s in sources), f"figure {p.title.text if p.title else p.id!r} has no data"


def test_static_render_needs_no_widget(monkeypatch):
    """A dashboard's figures are built from a result without creating one widget."""
    import ipywidgets

    from kscale_lab.reports import dashboards
    from kscale_lab.viz.dashboard import _StandIn

    lab = registry()["heartbeats"]
    result = lab.run("article", {"nodes": 300, "duration": 30})
    monkeypatch.setattr(ipywidgets.Widget, "__init__", lambda *a, **k: pytest.fail("a widget was created"))
    d = dashboards()["heartbeats"].static(result, {"nodes": 300, "duration": 30})
    assert isinstance(d.summary, _StandIn) and "article" in d.summary.value
    assert d.widget is None and d.layout is not None
    assert _rows(d.sources["series"]) == len(result.series)


def test_report_opens_in_chromium_with_all_data(built):
    if not CHROMIUM:
        if os.environ.get("KSCALE_LAB_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required (KSCALE_LAB_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("chromium not installed (apt-get install chromium)")
    from bokeh.models import ColumnDataSource
    from playwright.sync_api import sync_playwright

    path, _, roots = built
    sent = {s.id: _rows(s) for r in roots.values() for s in r.select({"type": ColumnDataSource})}
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
        page.goto(path.as_uri())
        page.wait_for_function("() => window.Bokeh && Bokeh.documents && Bokeh.documents.length > 0",
                               timeout=120_000)
        page.locator("canvas").first.wait_for(state="attached", timeout=120_000)
        page.wait_for_timeout(1500)
        arrived = page.evaluate('''() => { const out = {};
            for (const d of (window.Bokeh?.documents || [])) for (const m of d.all_models)
              if (m.type === 'ColumnDataSource') { const c = Object.values(m.data || {});
                out[m.id] = c.length ? c[0].length : 0; }
            return out; }''')
        canvases = page.locator("canvas").count()
        art = Path(__file__).resolve().parent.parent / "artifacts"
        art.mkdir(exist_ok=True)
        page.screenshot(path=str(art / "report.png"), full_page=False)
        browser.close()
    assert canvases > 0
    assert set(arrived) == set(sent), "some data sources did not reach BokehJS"
    assert arrived == sent, {k: (sent[k], arrived[k]) for k in sent if sent[k] != arrived[k]}
    assert not errors, errors


@pytest.mark.parametrize("args, needle", [
    (["report", "nolab"], "'LAB'"),
    (["report", "heartbeats", "--set", "nope=1"], "'nope' is not a parameter"),
    (["report", "heartbeats", "--set", "node_object_bytes=-1"], "'node_object_bytes'"),
    (["report", "heartbeats", "--switch", "heartbeats=sideways"], "'heartbeats' must be one of"),
    (["report", "heartbeats", "--switch", "scheduler=off"], "'scheduler' is not the switch of any lab"),
    (["report", "heartbeats", "--out", "report.pdf"], "'--out'"),
])
def test_bad_input_is_one_line_before_anything_runs(capsys, monkeypatch, args, needle):
    for lab in registry().values():
        monkeypatch.setattr(lab, "run", lambda *a, **k: pytest.fail("ran before refusing"), raising=False)
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_cli_writes_a_report_for_one_setting(tmp_path, capsys):
    out = tmp_path / "hb.html"
    rc = main(["report", "heartbeats", "--set", "nodes=300", "--set", "duration=30",
               "--switch", "heartbeats=article", "--out", str(out)])
    assert rc == 0
    page = out.read_text()
    assert "settings shown: article." in page and "<code>nodes=300</code>" in page
    assert "id='lab-bookmarks'" not in page


def test_a_lab_can_add_its_own_sections(monkeypatch):
    """The capstone's scorecard hook: ``report_sections(results)`` -> [(title, content)]."""
    import pandas as pd
    from bokeh.plotting import figure

    from kscale_lab.reports import render

    lab = registry()["heartbeats"]
    seen = {}

    def sections(results):
        seen.update(results)
        f = figure(title="a lab's own figure")
        f.line([0, 1], [1, 2])
        return [("Scorecard", pd.DataFrame({"SLO": ["API call latency"], "met": [True]})),
                ("A note", "<p id='lab-note'>from the lab</p>"), ("A figure", f)]

    monkeypatch.setattr(lab, "report_sections", sections, raising=False)
    page, roots = render(["heartbeats"], {"nodes": 300, "duration": 30}, {"heartbeats": "off"}, progress=False)
    assert list(seen) == ["off"] and seen["off"].setting == "off"
    assert "<h3>Scorecard</h3>" in page and ">API call latency<" in page and ">yes<" in page
    assert "<p id='lab-note'>from the lab</p>" in page
    assert any(k.startswith("x") for k in roots) and "{{root:" not in page

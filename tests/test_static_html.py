"""The saved notebooks read without a kernel: nbconvert's HTML, opened in Chromium.

GitHub, nbviewer and an HTML export have no kernel and no BokehJS: a live Bokeh plot or
a dashboard widget is blank there. The build gives each figure and each dashboard a PNG
(``kscale_lab.viz.static``). Here every built notebook is converted to HTML with
nbconvert and opened in headless Chromium from a file (no server, no kernel); every cell
that shows a figure must show an image, and the image must have content (not a blank
square). Screenshots land in ``artifacts/static-*.png``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
NOTEBOOKS = sorted(p for p in (ROOT / "labs").rglob("*.ipynb") if not any(part.startswith(".") for part in p.parts))
FIGURE_MIMES = ("application/vnd.bokehjs_exec.v0+json", "application/vnd.jupyter.widget-view+json")

pytestmark = pytest.mark.browser

if not CHROMIUM:
    if os.environ.get("KSCALE_LAB_REQUIRE_BROWSER") == "1":
        raise RuntimeError("chromium is required (KSCALE_LAB_REQUIRE_BROWSER=1) but not installed")
    pytest.skip("chromium not installed (apt-get install chromium)", allow_module_level=True)


def figure_cells(nb: dict) -> list[int]:
    """Indices of the cells whose outputs hold a live Bokeh figure or a widget."""
    return [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
            and any(m in o.get("data", {}) for o in c.get("outputs", []) for m in FIGURE_MIMES)]


def test_every_saved_figure_carries_an_image():
    missing = []
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        for i in figure_cells(nb):
            if not any("image/png" in o.get("data", {}) for o in nb["cells"][i]["outputs"]):
                missing.append(f"{path.relative_to(ROOT)} cell {i}: {nb['cells'][i]['source'][:60]!r}")
    assert not missing, missing


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


# per cell (in order): [[width, height, share of non-white pixels] for each image]
IMAGES_JS = """() => [...document.querySelectorAll('.jp-Cell')].map(cell =>
  [...cell.querySelectorAll('.jp-OutputArea-output img')].map(img => {
    const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
    if (!c.width || !c.height) return [0, 0, 0];
    const g = c.getContext('2d'); g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data; let ink = 0;
    for (let k = 0; k < d.length; k += 16) if (d[k] < 240 || d[k + 1] < 240 || d[k + 2] < 240) ink++;
    return [c.width, c.height, ink / (d.length / 16)]; }))"""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT / "labs")))
def test_html_export_shows_every_figure_without_a_kernel(browser, path, tmp_path):
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(path), as_version=4)
    want = figure_cells(json.loads(path.read_text()))
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    page_file = tmp_path / f"{path.stem}.html"
    page_file.write_text(body, encoding="utf-8")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")
    images = page.evaluate(IMAGES_JS)
    assert len(images) == len(nb.cells)
    blank = [i for i in want if not any(w > 100 and h > 100 and ink > 0.02 for w, h, ink in images[i])]
    art = ROOT / "artifacts"
    art.mkdir(exist_ok=True)
    if want:
        page.locator(".jp-Cell").nth(want[0]).scroll_into_view_if_needed()
    page.screenshot(path=str(art / f"static-{path.parent.name}-{path.stem}.png"))
    page.close()
    assert not blank, [f"cell {i}: {nb.cells[i].source[:60]!r}" for i in blank]

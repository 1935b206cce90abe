"""Static images of Bokeh figures, so a saved notebook reads without a kernel.

A Bokeh plot in a notebook is JavaScript: on GitHub, nbviewer, or an HTML export
(nbconvert) there is no BokehJS and no kernel, and the plot is blank. So when a
notebook is *built* (``python -m kscale_lab.notebooks build`` sets
``KSCALE_LAB_STATIC_IMAGES=1`` for its kernel), every figure also gets a PNG:

* ``bokeh.plotting.show(fig)`` is followed by an ``image/png`` output (the notebook
  hook :func:`install_show_hook`, installed by :func:`kscale_lab.viz.load_bokeh`);
* a dashboard's display bundle carries an ``image/png`` of its default state beside
  the live widget (JupyterLab shows the widget; nbconvert, which skips a widget
  without saved widget state, shows the image).

The PNG is drawn by the same BokehJS in headless Chromium (Debian's ``chromium``,
which the browser test needs anyway): the figure is written as a standalone HTML
page with BokehJS inline (no network) and Chromium's ``--screenshot`` takes it; the
white margin is cropped. About 2 s per figure, so a live kernel (a student toggling
a dashboard) does not do it unless asked. Where Chromium is missing the image is
left out and the notebook still runs.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ENV = "KSCALE_LAB_STATIC_IMAGES"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--force-device-scale-factor=1",
                 "--virtual-time-budget=8000"]


def enabled() -> bool:
    return os.environ.get(ENV) == "1" and chromium() is not None


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _size(obj) -> tuple[int, int]:
    """A window large enough for the layout (the screenshot is cropped afterwards)."""
    w = h = 0
    for m in obj.references() if hasattr(obj, "references") else []:
        w = max(w, int(getattr(m, "width", 0) or 0))
        h = max(h, int(getattr(m, "height", 0) or 0))
    return max(1000, 2 * w + 200), max(800, 3 * h + 400)


def html_page(obj, header_html: str = "") -> str:
    from bokeh.embed import components
    from bokeh.resources import INLINE

    script, div = components(obj)
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>" + INLINE.render()
            + "<style>body{margin:8px;background:#fff}</style></head><body>"
            + header_html + div + script + "</body></html>")


def png(obj, header_html: str = "", timeout: float = 60.0) -> bytes | None:
    """PNG bytes of a Bokeh model (optionally with HTML above it), or None without Chromium."""
    exe = chromium()
    if exe is None:
        return None
    from PIL import Image, ImageChops

    width, height = _size(obj)
    with tempfile.TemporaryDirectory(prefix="kscale-png-") as tmp:
        page, out = Path(tmp) / "fig.html", Path(tmp) / "fig.png"
        page.write_text(html_page(obj, header_html), encoding="utf-8")
        cmd = [exe, *CHROMIUM_ARGS, f"--window-size={width},{height}", f"--screenshot={out}",
               f"--user-data-dir={Path(tmp) / 'profile'}", page.as_uri()]
        try:
            subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return None
        if not out.exists():
            return None
        img = Image.open(out).convert("RGB")
        box = ImageChops.difference(img, Image.new("RGB", img.size, (255, 255, 255))).getbbox()
        if box is None:
            return None
        l, t, r, b = box
        img = img.crop((max(l - 6, 0), max(t - 6, 0), min(r + 6, img.width), min(b + 6, img.height)))
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
        return buf.getvalue()


def install_show_hook() -> None:
    """Make ``bokeh.plotting.show`` in a notebook add a static PNG after the live plot
    (only when :func:`enabled`). The live output is Bokeh's own, unchanged."""
    from bokeh.io import notebook as nb

    hooks = nb._HOOKS.get("jupyter")
    if hooks is None or getattr(hooks["doc"], "_kscale_static", False):
        return
    show_doc = hooks["doc"]

    def show_doc_with_image(obj, state, notebook_handle=None):
        handle = show_doc(obj, state, notebook_handle)
        if enabled():
            image = png(obj)
            if image is not None:
                from IPython.display import Image, display

                display(Image(data=image, format="png"))
        return handle

    show_doc_with_image._kscale_static = True
    nb.install_notebook_hook("jupyter", hooks["load"], show_doc_with_image, hooks["app"], overwrite=True)

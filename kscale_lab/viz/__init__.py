"""Plots and dashboards: Bokeh figures driven by ipywidgets.

The pattern every lab follows (tried in JupyterLab 4 with jupyter_bokeh, see
``docs/recipes.md``):

* load BokehJS once per notebook from the installed package, never a CDN
  (:func:`load_bokeh`): classrooms and these machines have no network;
* one ``ColumnDataSource`` per plot; a widget callback reruns the model and
  replaces ``source.data`` as a whole, so the plot updates live;
* the Bokeh layout is wrapped in ``jupyter_bokeh.BokehModel`` and placed in an
  ipywidgets box next to the controls;
* colours come from :data:`PALETTE` / :data:`COLORS` (Okabe-Ito), each series with a
  second cue (:data:`DASHES`, :data:`MARKERS`, :data:`HATCHES`);
* every widget is reachable from Python (``dash.controls["switch"].value = ...``),
  so tests and later cells can drive the dashboard without a browser.
"""

from __future__ import annotations

import html

# Colours: Okabe & Ito's palette ("Color Universal Design", 2008), told apart with
# deuteranopia, protanopia and tritanopia. Colour is never the only cue: every setting
# also has a line dash, a marker and a bar hatch, and verdicts are a symbol and a word.
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7"}
PALETTE = {"off": OKABE_ITO["vermillion"], "article": OKABE_ITO["blue"], "upstream": OKABE_ITO["bluish_green"]}
DASHES = {"off": "solid", "article": "dashed", "upstream": "dotdash"}
MARKERS = {"off": "circle", "article": "square", "upstream": "triangle"}
HATCHES = {"off": " ", "article": "/", "upstream": "."}
# other series, in this order (after the settings' three): orange, sky blue, reddish purple, black, yellow
COLORS = (OKABE_ITO["orange"], OKABE_ITO["sky_blue"], OKABE_ITO["reddish_purple"], OKABE_ITO["black"],
          OKABE_ITO["yellow"])
SERIES_DASHES = ("solid", "dashed", "dotted", "dotdash", "dashdot")
REFERENCE = "#555555"      # reference lines (an article's figure, a quota): grey, dashed
LIMIT = OKABE_ITO["reddish_purple"]  # a hard limit (quota, alarm), always with a dash or an "x" marker
NEUTRAL = "#999999"        # "everything else", background series
VERDICT = {True: "✓ holds", False: "✗ fails"}
SETTING_LABELS = {"off": "off (before)", "article": "article (Alibaba 2019)", "upstream": "upstream (today)"}


def load_bokeh() -> None:
    """Load BokehJS into the notebook from the installed package (no CDN), and show
    kscale_lab's own errors (a parameter out of range, a scenario too large) as one
    line instead of a traceback."""
    from bokeh.io import output_notebook
    from bokeh.resources import INLINE

    from .static import install_show_hook

    output_notebook(INLINE, hide_banner=True)
    install_show_hook()
    install_error_handler()


def install_error_handler() -> bool:
    """In IPython, print a :class:`~kscale_lab.errors.KscaleError` as one line."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    if ip is None:
        return False
    from ..errors import KscaleError

    def one_line(shell, etype, value, tb, tb_offset=None):
        from IPython.display import HTML, display

        display(HTML(error_html(value)))
        return None

    ip.set_custom_exc((KscaleError,), one_line)
    return True


def error_html(err: Exception) -> str:
    return f'<div style="color:#b03a2e"><b>Not run:</b> {html.escape(str(err))}</div>'


def show_error(err: Exception) -> None:
    """Show a user error as one line, not a traceback."""
    from IPython.display import HTML, display

    display(HTML(error_html(err)))


def setting_style(setting: str) -> dict:
    """Line colour and dash of a setting (for ``figure.line(..., **setting_style(s))``)."""
    return {"color": PALETTE[setting], "line_dash": DASHES[setting]}


def lighter(hex_color: str, f: float = 0.55) -> str:
    """The colour mixed with white (``f`` = share of white)."""
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return "#{:02x}{:02x}{:02x}".format(*(int(c + (255 - c) * f) for c in (r, g, b)))


def fmt(x, unit: str = "") -> str:
    """A number for people: 3 significant digits, thousands separated."""
    import math

    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if abs(x) >= 1000:
        s = f"{x:,.0f}"
    elif abs(x) >= 10:
        s = f"{x:.1f}"
    else:
        s = f"{x:.3g}"
    return f"{s} {unit}".strip()

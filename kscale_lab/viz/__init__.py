"""Plots and dashboards: Bokeh figures driven by ipywidgets.

The pattern every lab follows (tried in JupyterLab 4 with jupyter_bokeh, see
``docs/recipes.md``):

* load BokehJS once per notebook from the installed package, never a CDN
  (:func:`load_bokeh`): classrooms and these machines have no network;
* one ``ColumnDataSource`` per plot; a widget callback reruns the model and
  replaces ``source.data`` as a whole, so the plot updates live;
* the Bokeh layout is wrapped in ``jupyter_bokeh.BokehModel`` and placed in an
  ipywidgets box next to the controls;
* every widget is reachable from Python (``dash.controls["switch"].value = ...``),
  so tests and later cells can drive the dashboard without a browser.
"""

from __future__ import annotations

import html

PALETTE = {"off": "#c0392b", "article": "#2471a3", "upstream": "#229954"}
SETTING_LABELS = {"off": "off (before)", "article": "article (Alibaba 2019)", "upstream": "upstream (today)"}


def load_bokeh() -> None:
    """Load BokehJS into the notebook from the installed package (no CDN), and show
    kscale_lab's own errors (a parameter out of range, a scenario too large) as one
    line instead of a traceback."""
    from bokeh.io import output_notebook
    from bokeh.resources import INLINE

    output_notebook(INLINE, hide_banner=True)
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

"""A sweep's table as a plot: one line per setting of the switch.

:func:`kscale_lab.sweep` returns one row per run; :func:`per_setting` draws a metric
against a swept parameter, one line per setting, in the settings' colours. A sweep with
several seeds is drawn as the mean over the seeds, with each seed's points.
"""

from __future__ import annotations

from . import PALETTE, REFERENCE, SETTING_LABELS


def per_setting(df, x: str, y: str, title: str = "", x_label: str | None = None, y_label: str | None = None,
                width: int = 640, height: int = 320, legend: str = "top_right", **figure_kw):
    """A Bokeh figure of ``y`` against ``x`` for each setting in a sweep table ``df``."""
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure

    for col in (x, y, "setting"):
        if col not in df.columns:
            raise KeyError(f"the sweep has no column {col!r}; columns: {', '.join(df.columns)}")
    f = figure(title=title or f"{y} vs {x}", width=width, height=height, toolbar_location=None,
               x_axis_label=x_label or x, y_axis_label=y_label or y, **figure_kw)
    for s, g in df.groupby("setting", sort=False):
        color = PALETTE.get(s, REFERENCE)
        mean = g.groupby(x, sort=True)[y].mean().reset_index()
        f.line(x, y, source=ColumnDataSource(mean), line_width=2, color=color,
               legend_label=SETTING_LABELS.get(s, s))
        f.scatter(x, y, source=ColumnDataSource(g[[x, y]]), size=6, color=color)
    f.legend.location = legend
    f.legend.label_text_font_size = "9pt"
    return f

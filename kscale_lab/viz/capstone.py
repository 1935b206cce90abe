"""The capstone's dashboard: pick the nine switches, watch one 10k-node cluster's day.

Left: a setting for every switch at once, then each switch on its own (``follow`` takes the
preset). Right: the run's scorecard, one line per SLO (value, limit, met or broken, in words).
Below, over the 30 simulated minutes with the incidents shaded: API call latency of writes,
etcd's put latency and db size, nodes falsely NotReady, and the API servers' busiest CPU and
memory.
"""

from __future__ import annotations

import math

import numpy as np

from . import OKABE_ITO, REFERENCE, SETTING_LABELS, fmt
from .dashboard import Dashboard

INCIDENT_COLORS = tuple(OKABE_ITO[k] for k in ("orange", "sky_blue", "bluish_green", "reddish_purple", "vermillion",
                                               "blue"))


class CapstoneDashboard(Dashboard):
    lab_name = "capstone"

    def make_controls(self) -> dict:
        import ipywidgets as w

        from ..scenario import SWITCH_NAMES

        style = {"description_width": "120px"}
        lay = w.Layout(width="330px")
        c = {"switch": w.ToggleButtons(options=[("off", "off"), ("article", "article"), ("upstream", "upstream")],
                                       value="off", description="every switch", style=style,
                                       tooltips=["the cluster before the optimisations", "as Alibaba did it (2019)",
                                                 "as upstream does it today"])}
        for s in SWITCH_NAMES:
            c[s] = w.Dropdown(options=["follow", "off", "article", "upstream"], value="follow", description=s,
                              style=style, layout=lay)
        return c

    def overrides(self):
        from ..scenario import SWITCH_NAMES

        c = self.controls
        return c["switch"].value, {s: c[s].value for s in SWITCH_NAMES if c[s].value != "follow"}

    def make_figures(self):
        from bokeh.layouts import gridplot
        from bokeh.models import BoxAnnotation, ColumnDataSource, Span
        from bokeh.plotting import figure

        S = self.sources
        S["tl"] = ColumnDataSource(dict(t=[], mut=[], worst=[], put=[], db=[], nr=[], cpu=[], mem=[], ready=[]))
        kw = dict(width=440, height=220, toolbar_location=None, x_axis_label="simulated minutes")
        f1 = figure(title="API call latency of writes", y_axis_label="seconds", y_axis_type="log", **kw)
        f1.line("t", "mut", source=S["tl"], color=OKABE_ITO["blue"], line_width=2, legend_label="mean")
        f1.line("t", "worst", source=S["tl"], color=OKABE_ITO["vermillion"], line_width=2, line_dash="dashed",
                legend_label="worst instance")
        f1.add_layout(Span(location=1.0, dimension="width", line_dash="dotted", line_color=REFERENCE))
        f2 = figure(title="etcd put latency", y_axis_label="seconds", y_axis_type="log", **kw)
        f2.line("t", "put", source=S["tl"], color=OKABE_ITO["bluish_green"], line_width=2)
        f3 = figure(title="nodes falsely NotReady", y_axis_label="nodes", **kw)
        f3.line("t", "nr", source=S["tl"], color=OKABE_ITO["reddish_purple"], line_width=2)
        f3.y_range.start = 0
        f4 = figure(title="API servers: the busiest", y_axis_label="share of capacity / limit", **kw)
        f4.line("t", "cpu", source=S["tl"], color=OKABE_ITO["orange"], line_width=2, legend_label="CPU")
        f4.line("t", "mem", source=S["tl"], color=OKABE_ITO["sky_blue"], line_width=2, line_dash="dashed", legend_label="memory")
        f4.y_range.start = 0
        for f in (f1, f4):
            f.legend.location = "top_left"
            f.legend.label_text_font_size = "8pt"
            f.legend.background_fill_alpha = 0.6
        self.figures = [f1, f2, f3, f4]
        self.boxes = [[BoxAnnotation(left=0, right=0, fill_alpha=0.10, fill_color=INCIDENT_COLORS[m % 6])
                       for m in range(6)] for _ in self.figures]
        for f, boxes in zip(self.figures, self.boxes):
            for b in boxes:
                f.add_layout(b)
        return gridplot([[f1, f2], [f3, f4]], toolbar_location=None)

    def fill(self, result) -> None:
        tl = result.timeline
        t = tl["time"].to_numpy() / 60.0
        floor = 1e-4

        def pos(x):
            x = np.asarray(x, dtype=float)
            return np.where(np.isfinite(x) & (x > floor), x, np.where(np.isinf(x), 120.0, floor))

        self.sources["tl"].data = dict(
            t=t, mut=pos(tl["mutating_latency_mean_s"]), worst=pos(tl["mutating_latency_worst_s"]),
            put=pos(tl["etcd_put_latency_s"]), db=tl["etcd_db_bytes"].to_numpy() / 1e9,
            nr=tl["nodes_notready"].to_numpy(), cpu=tl["cpu_util_max"].to_numpy(),
            mem=tl["memory_share_max"].to_numpy(), ready=tl["ready_instances"].to_numpy())
        spans = incident_spans(result)
        for boxes in self.boxes:
            for m, b in enumerate(boxes):
                left, right = spans[m][1:] if m < len(spans) else (0.0, 0.0)
                b.left, b.right = left, right
        self.summary.value = scorecard_html(result)


def incident_spans(result) -> list[tuple[str, float, float]]:
    """(name, start min, end min) of the incidents that happened in the run."""
    ev = result.events
    sm = result.summary
    p = sm["params"]
    out = []
    if "scaleup" in str(p.get("incidents", "")):
        out.append(("scale-up", p["scaleup_at"] / 60.0, p["scaleup_at"] / 60.0 + 0.5))
    b = ev.loc[ev["event"] == "upgrade begins", "time"]
    e = ev.loc[ev["event"] == "upgrade ends", "time"]
    if len(b):
        out.append(("API server upgrade", float(b.iloc[0]) / 60.0, float(e.iloc[0]) / 60.0 if len(e) else p["duration"] / 60))
    return out


def scorecard_html(result) -> str:
    from ..labs.capstone import SLOS

    sm = result.summary
    rows = []
    for slo in SLOS:
        v = sm.get(slo.sli, math.nan)
        broken = slo.broken(v)
        mark = "&#10007; broken" if broken else "&#10003; met"
        when = sm.get("first_breaks", {}).get(slo.name)
        when = f" at {when / 60:.1f} min" if when is not None and broken else ""
        if isinstance(v, float) and math.isnan(v):
            shown = "not measured"
        elif slo.unit == "1":                    # a yes/no SLI (an alarm raised or not)
            shown = "raised" if v else "not raised"
        else:
            shown = fmt(v, slo.unit)
        rows.append(f"<tr><td style='padding-right:10px'>{slo.name}</td><td style='text-align:right'>{shown}</td>"
                    f"<td style='padding-left:10px'><b>{mark}</b>{when}</td></tr>")
    sw = sm["switches"]
    composed = sm.get("composed", ())
    differ = [f"{k}={v}" for k, v in sw.items() if v != result.setting]
    missing = [k for k in sw if k not in composed]
    chain = " &rarr; ".join(sm.get("chain", [])) or "no SLO broke"
    return (f"<div style='font-size:12.5px'><b>{SETTING_LABELS.get(result.setting, result.setting)}</b>"
            f"{' with ' + ', '.join(differ) if differ else ''}: <b>{sm['slos_broken']}</b> SLO(s) broken"
            f"<table>{''.join(rows)}</table><div style='margin-top:4px'><i>chain:</i> {chain}</div>"
            + (f"<div>not yet composed: {', '.join(missing)}</div>" if missing else "")
            + "</div>")

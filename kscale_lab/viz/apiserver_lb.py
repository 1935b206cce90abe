"""The load-balancing lab's dashboard: three API servers, an upgrade and two restarts.

Left: the switch, the load balancer's policy, cores per API server (fewer cores is the
overload variant), the article's thresholds and reshuffle period, maxSurge, upstream's
GOAWAY chance. Right: the figures of the run (imbalance after each disruption, time
to re-balance, crashes). Below, per API server over the 30 simulated minutes:
connections, CPU, memory against its limit, and what moved clients (reconnects after
429s, closed connections, reshuffles, GOAWAYs). The disruptions are shaded.
"""

from __future__ import annotations

import math

import numpy as np

from . import NEUTRAL, OKABE_ITO, REFERENCE, SETTING_LABELS, fmt
from .dashboard import Dashboard

#: one colour and dash per instance slot (Okabe-Ito, colour-blind safe; dashes for the surge slots)
SLOT_COLORS = tuple(OKABE_ITO[k] for k in ("orange", "sky_blue", "bluish_green", "blue", "vermillion",
                                           "reddish_purple", "black", "yellow"))
SLOT_DASH = ("solid", "solid", "solid", "dashed", "dashed", "dashed", "dotted", "dotted")
MAX_SLOTS = 8


class APIServerLBDashboard(Dashboard):
    lab_name = "apiserver-lb"

    def make_controls(self) -> dict:
        import ipywidgets as w

        style = {"description_width": "150px"}
        lay = w.Layout(width="400px")
        return {
            "switch": self.switch_control(description="apiserver_lb", style=style,
                                          tooltips=["sticky connections, max-inflight only",
                                                    "429 + close above thresholds, reconnect, reshuffle, maxSurge=3",
                                                    "--goaway-chance, graceful shutdown"]),
            "lb_policy": w.Dropdown(options=["round-robin", "least-connections", "random", "client-side"],
                                    value="round-robin", description="load balancer", style=style, layout=lay),
            "cores": w.IntSlider(value=32, min=6, max=64, step=2, description="cores per API server",
                                 continuous_update=False, style=style, layout=lay),
            "max_surge": w.Dropdown(options=[("setting's default", -1), ("0 (one at a time)", 0), ("1", 1),
                                             ("3 (all at once)", 3)], value=-1, description="upgrade maxSurge",
                                    style=style, layout=lay),
            "lb_429_threshold": w.FloatSlider(value=0.5, min=0.1, max=1.0, step=0.05, description="429 above load",
                                              continuous_update=False, style=style, layout=lay),
            "reshuffle_period": w.SelectionSlider(options=[60, 120, 300, 600, 1200, 1800], value=300,
                                                  description="reshuffle every (s)", continuous_update=False,
                                                  style=style, layout=lay),
            "goaway_chance": w.SelectionSlider(options=[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.02], value=0.001,
                                               description="--goaway-chance", continuous_update=False, style=style,
                                               layout=lay),
        }

    def overrides(self):
        c = self.controls
        o = {"lb_policy": c["lb_policy"].value, "apiserver_cores": float(c["cores"].value),
             "lb_429_threshold": float(c["lb_429_threshold"].value),
             "lb_close_threshold": max(0.8, float(c["lb_429_threshold"].value)),
             "reshuffle_period": float(c["reshuffle_period"].value),
             "goaway_chance": float(c["goaway_chance"].value)}
        if c["max_surge"].value >= 0:
            o["max_surge"] = int(c["max_surge"].value)
        return c["switch"].value, o

    def make_figures(self):
        from bokeh.layouts import gridplot
        from bokeh.models import BoxAnnotation, ColumnDataSource, Span
        from bokeh.plotting import figure

        S = self.sources
        cols = {"t": []}
        for j in range(MAX_SLOTS):
            cols.update({f"conn{j}": [], f"cpu{j}": [], f"mem{j}": []})
        S["inst"] = ColumnDataSource(cols)
        S["moves"] = ColumnDataSource(dict(t=[], reconnect=[], closed=[], goaway=[], relist=[]))
        kw = dict(width=440, height=230, toolbar_location=None, x_axis_label="simulated minutes")
        f1 = figure(title="connections per API server", y_axis_label="clients", **kw)
        f2 = figure(title="CPU demand per API server", y_axis_label="share of its cores", **kw)
        f3 = figure(title="memory per API server", y_axis_label="share of its limit", **kw)
        self.lines = []
        for j in range(MAX_SLOTS):
            style = dict(line_width=2, color=SLOT_COLORS[j], line_dash=SLOT_DASH[j])
            label = f"apiserver-{j}"
            self.lines.append((f1.line("t", f"conn{j}", source=S["inst"], legend_label=label, **style),
                               f2.line("t", f"cpu{j}", source=S["inst"], **style),
                               f3.line("t", f"mem{j}", source=S["inst"], **style)))
        f1.legend.location = "top_left"
        f1.legend.label_text_font_size = "8pt"
        f1.legend.background_fill_alpha = 0.6
        f3.add_layout(Span(location=1.0, dimension="width", line_dash="dashed", line_color=REFERENCE))
        f4 = figure(title="what moved clients (per minute)", y_axis_label="clients / min", **kw)
        f4.line("t", "reconnect", source=S["moves"], color=OKABE_ITO["blue"], line_width=2,
                legend_label="dialled again (break, 429s, reshuffle)")
        f4.line("t", "closed", source=S["moves"], color=OKABE_ITO["vermillion"], line_width=2, line_dash="dashed",
                legend_label="closed by an overloaded server")
        f4.line("t", "goaway", source=S["moves"], color=OKABE_ITO["bluish_green"], line_width=2, line_dash="dotdash",
                legend_label="GOAWAY")
        f4.line("t", "relist", source=S["moves"], color=OKABE_ITO["reddish_purple"], line_width=2, line_dash="dotted",
                legend_label="re-lists (410)")
        f4.legend.location = "top_right"
        f4.legend.label_text_font_size = "8pt"
        f4.legend.background_fill_alpha = 0.6
        self.figures = [f1, f2, f3, f4]
        self.boxes = []
        for f in self.figures:
            f.y_range.start = 0
            f.x_range.start = 0
            pair = []
            for _ in range(2):
                b = BoxAnnotation(left=0, right=0, fill_alpha=0.12, fill_color=NEUTRAL)
                f.add_layout(b)
                pair.append(b)
            self.boxes.append(pair)
        return gridplot([[f1, f2], [f3, f4]], toolbar_location=None)

    def fill(self, result) -> None:
        inst = result.instances
        names = sorted(inst["instance"].unique(), key=lambda s: int(s.split("-")[1]))
        k = len(names)
        t = result.series["time"].to_numpy()
        n = t.size
        minutes = t / 60.0
        limit = float(result.summary["params"]["apiserver_memory_limit_bytes"])
        data = {"t": minutes}
        conn = inst["connections"].to_numpy().reshape(n, k)
        cpu = np.nan_to_num(inst["demand_util"].to_numpy().reshape(n, k))
        mem = inst["memory_bytes"].to_numpy().reshape(n, k) / limit
        for j in range(MAX_SLOTS):
            if j < k:
                data[f"conn{j}"], data[f"cpu{j}"], data[f"mem{j}"] = conn[:, j], _smooth(cpu[:, j], 5), mem[:, j]
            else:
                z = np.full(n, np.nan)
                data[f"conn{j}"] = data[f"cpu{j}"] = data[f"mem{j}"] = z
        self.sources["inst"].data = data
        for j, trio in enumerate(self.lines):
            for g in trio:
                g.visible = j < k and bool(np.nanmax(conn[:, j]) > 0 if j < k else False)
        per_min = 60.0
        moves = {
            "t": minutes,
            "reconnect": _smooth(inst["connects"].to_numpy().reshape(n, k).sum(axis=1), 10) * per_min,
            "closed": _smooth(inst["closed"].to_numpy().reshape(n, k).sum(axis=1), 10) * per_min,
            "goaway": _smooth(inst["goaways"].to_numpy().reshape(n, k).sum(axis=1), 10) * per_min,
            "relist": _smooth(inst["relists"].to_numpy().reshape(n, k).sum(axis=1), 10) * per_min,
        }
        self.sources["moves"].data = moves
        ev = result.events
        spans = []
        for name in ("upgrade", "restart"):
            b = ev.loc[ev["event"] == f"{name} begins", "time"]
            e = ev.loc[ev["event"] == f"{name} ends", "time"]
            if len(b):
                spans.append((float(b.iloc[0]) / 60.0, float(e.iloc[0]) / 60.0 if len(e) else minutes[-1]))
        for pair in self.boxes:
            for m, box in enumerate(pair):
                left, right = spans[m] if m < len(spans) else (0.0, 0.0)
                box.left, box.right = left, right
        sm = result.summary
        rows = [
            ("after the upgrade: CPU max/mean", fmt(sm.get("upgrade_cpu_imbalance")), "x"),
            ("&nbsp;&nbsp;... just before the restarts", fmt(sm.get("upgrade_cpu_imbalance_final")), "x"),
            ("after two restarts: CPU max/mean", fmt(sm.get("restart_cpu_imbalance")), "x"),
            ("re-balanced after the restarts", seconds_text(sm.get("restart_rebalance_s")), ""),
            ("API server OOM kills", str(sm.get("apiserver_crashes", 0)), ""),
            ("clients re-dialled", fmt(sm.get("reconnects_total")), ""),
            ("requests answered 429", fmt(100 * sm.get("rejected_share", 0.0)), "%"),
        ]
        body = "".join(f"<tr><td style='padding-right:12px'>{a}</td><td style='text-align:right'><b>{v}</b> {u}"
                       f"</td></tr>" for a, v, u in rows)
        self.summary.value = (f"<div style='font-size:13px'><b>{SETTING_LABELS[result.setting]}</b>, "
                              f"{sm['params']['nodes']:,} nodes, {sm['params']['apiservers']} API servers x "
                              f"{sm['params']['apiserver_cores']:g} cores<table>{body}</table>"
                              "<span>max/mean 1 = even; 3 = everything on one of three</span>"
                              "</div>")


def _smooth(x: np.ndarray, k: int) -> np.ndarray:
    if k <= 1 or x.size < k:
        return x
    c = np.cumsum(np.insert(np.nan_to_num(x), 0, 0.0))
    out = np.empty_like(x, dtype=float)
    out[k - 1:] = (c[k:] - c[:-k]) / k
    out[: k - 1] = c[1:k] / np.arange(1, k)
    return out


def seconds_text(x) -> str:
    """A duration in seconds for people; ``inf`` reads "not within the run"."""
    if x is None or (isinstance(x, float) and (math.isnan(x))):
        return "-"
    if math.isinf(x):
        return "not within the run"
    return f"after {x:.0f} s"

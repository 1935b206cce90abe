"""The bookmarks lab's dashboard: toggle watch bookmarks and watch an API server restart.

Left: the switch, pod churn, the watch cache's capacity, what the selective watchers
select, the restart time and where the clients reconnect. Right (Bokeh):

* the RV age of a few clients (three selective watchers, a controller) against how
  far back the watch cache's tape reaches: a client whose line climbs above the shaded
  band gets 410 at its next reconnect;
* re-lists per setting, at the routine watch timeouts and at the restart;
* events and objects to re-sync per setting, as a share of ``off``, with the
  article's 3 %;
* the API server CPU spent re-syncing watches over time, and at the restart.

Every setting is computed for the plots that compare them (the writes are generated
once and shared); ``dash.results`` holds the three results.
"""

from __future__ import annotations

import numpy as np

from ..claims import load_claims
from . import (COLORS, DASHES, HATCHES, LIMIT, MARKERS, NEUTRAL, OKABE_ITO, PALETTE, REFERENCE, SERIES_DASHES, SETTING_LABELS,
               VERDICT, fmt, lighter, setting_style)
from .dashboard import Dashboard

SETTINGS = ("off", "article", "upstream")
TRACE_COLORS = COLORS[:4]
SELECTIVITY = {
    "nodes": ("spec.nodeName", {}),
    "namespaces": ("metadata.namespace", {}),
    "apps": ("label", {"label_values": 100}),
}


class BookmarksDashboard(Dashboard):
    """Controls: switch, churn, cache capacity, selectivity, restart time, reconnect."""

    lab_name = "bookmarks"
    memory_controls = ("restart_min",)

    def __init__(self, base: dict | None = None, **initial):
        """``base``: parameter overrides every run starts from (e.g. a smaller
        cluster, ``{"nodes": 2000}``); ``initial``: control values."""
        self.base = dict(base or {})
        self.results = {}
        super().__init__(**initial)

    def make_controls(self) -> dict:
        import ipywidgets as w

        style = {"description_width": "130px"}
        lay = w.Layout(width="390px")
        return {
            "switch": self.switch_control(description="bookmarks", style=style,
                                      tooltips=["no bookmarks", "1.15: one bookmark 2 s before a watch's deadline",
                                                "today: every minute and 2 s before the deadline"]),
            "churn": w.SelectionSlider(options=[1, 2, 5, 10, 20, 50, 100, 200], value=20,
                                       description="pod churn (pods/s)", continuous_update=False, style=style,
                                       layout=lay),
            "capacity": w.Dropdown(options=[("setting's default", 0), ("1,000 events", 1_000),
                                            ("10,000 events", 10_000), ("100,000 events", 100_000),
                                            ("500,000 events", 500_000)], value=0,
                                   description="watch cache size", style=style, layout=lay),
            "selectivity": w.Dropdown(options=[("1 in nodes: kubelets (spec.nodeName)", "nodes"),
                                               ("1 in 1,000: per-namespace watchers", "namespaces"),
                                               ("1 in 100: per-app watchers (label)", "apps")],
                                      value="nodes", description="selective watches", style=style, layout=lay),
            "restart_min": w.IntSlider(value=10, min=2, max=60, step=1, description="restart at (min)",
                                       continuous_update=False, style=style, layout=lay),
            "reconnect": w.ToggleButtons(options=[("warm HA peer", "warm"), ("cold cache", "cold")], value="warm",
                                         description="reconnect to", style=style),
        }

    def overrides(self):
        c = self.controls
        field, extra = SELECTIVITY[c["selectivity"].value]
        o = {**self.base, "pod_churn": float(c["churn"].value), "restart_at": 60.0 * c["restart_min"].value,
             "selective_field": field, "reconnect": c["reconnect"].value, **extra}
        cap = int(c["capacity"].value)
        if cap:
            o["watch_cache_size"] = cap
            o["upper_bound_capacity"] = cap
            if cap < self.lab.params["lower_bound_capacity"].default:
                o["lower_bound_capacity"] = cap
        return c["switch"].value, o

    def make_figures(self):
        from bokeh.layouts import gridplot
        from bokeh.models import ColumnDataSource, FactorRange, Span
        from bokeh.plotting import figure

        S = self.sources
        kw = dict(width=420, height=240, toolbar_location=None)
        # 1. RV ages against the tape's reach
        S["trace"] = ColumnDataSource(dict(t=[], reach=[], zero=[], a0=[], a1=[], a2=[], a3=[]))
        f1 = figure(title="how old is each client's RV? (shaded: what the tape still serves)",
                    x_axis_label="simulated minutes", y_axis_label="RV age (s)", **kw)
        f1.varea(x="t", y1="zero", y2="reach", source=S["trace"], color=OKABE_ITO["sky_blue"], alpha=0.3,
                 legend_label="watch cache reaches back")
        labels = ("selective watcher A", "selective watcher B", "selective watcher C", "a controller")
        self.trace_lines = [f1.step("t", f"a{k}", source=S["trace"], color=TRACE_COLORS[k], line_width=1.6,
                                    line_dash=SERIES_DASHES[k],
                                    mode="after", legend_label=labels[k]) for k in range(4)]
        self.restart_span = Span(location=10.0, dimension="height", line_dash="dashed", line_color=LIMIT)
        f1.add_layout(self.restart_span)
        f1.legend.location = "top_left"
        f1.legend.label_text_font_size = "8pt"
        f1.legend.background_fill_alpha = 0.6
        f1.y_range.start = 0
        # 2. re-lists per setting
        factors = [(s, k) for s in SETTINGS for k in ("timeouts", "restart")]
        S["relists"] = ColumnDataSource(dict(x=factors, n=[0] * len(factors), color=[NEUTRAL] * len(factors),
                                             hatch=[" "] * len(factors)))
        f2 = figure(title="re-lists (410 Gone): at watch timeouts, at the restart", x_range=FactorRange(*factors),
                    y_axis_label="relists", **kw)
        f2.vbar(x="x", top="n", width=0.8, source=S["relists"], color="color", hatch_pattern="hatch",
                hatch_color="white")
        f2.y_range.start = 0
        f2.xaxis.major_label_text_font_size = "8pt"
        # 3. re-sync volume relative to off
        S["ratio"] = ColumnDataSource(dict(x=factors, pct=[0.0] * len(factors), color=[NEUTRAL] * len(factors),
                                           hatch=[" "] * len(factors), label=[""] * len(factors)))
        f3 = figure(title="events to re-sync, % of off (dashed: the article's 3 %)", x_range=FactorRange(*factors),
                    y_axis_label="% of off", y_axis_type="log", **kw)
        f3.vbar(x="x", top="pct", bottom=0.1, width=0.8, source=S["ratio"], color="color", hatch_pattern="hatch",
                hatch_color="white")
        f3.add_layout(Span(location=3.0, dimension="width", line_dash="dashed", line_color=REFERENCE))
        f3.y_range.start = 0.1
        f3.y_range.end = 200
        f3.xaxis.major_label_text_font_size = "8pt"
        # 4. API server CPU re-syncing watches
        S["cpu"] = ColumnDataSource(dict(t=[], cpu=[]))
        S["cpu_restart"] = ColumnDataSource(dict(t=[], cpu=[]))
        f4 = figure(title="API server CPU re-syncing watches (dot: the restart, CPU-s)",
                    x_axis_label="simulated minutes", y_axis_label="cores / CPU-seconds", **kw)
        self.cpu_line = f4.line("t", "cpu", source=S["cpu"], line_width=2, color=PALETTE["off"],
                                legend_label="watch timeouts (cores)")
        self.cpu_dot = f4.scatter("t", "cpu", source=S["cpu_restart"], size=12, color=PALETTE["off"], marker="diamond",
                                  legend_label="restart (CPU-seconds)")
        f4.legend.location = "top_left"
        f4.legend.label_text_font_size = "8pt"
        f4.y_range.start = 0
        self.figures = [f1, f2, f3, f4]
        return gridplot([[f1, f2], [f3, f4]], toolbar_location=None)

    def fill(self, result) -> None:
        setting = result.setting
        _, overrides = self.overrides()
        self.results = {s: (result if s == setting else self.run(s, overrides)) for s in SETTINGS}
        tr = result.traces
        t_min = tr["time"].to_numpy() / 60.0
        data = dict(t=t_min, reach=tr["tape_reach_s"].to_numpy(), zero=np.zeros_like(t_min))
        names = result.trace_names
        for k in range(4):
            col = f"rv_age_s[{names[k]}]" if k < len(names) else None
            data[f"a{k}"] = tr[col].to_numpy() if col else np.full_like(t_min, np.nan)
            self.trace_lines[k].visible = col is not None
        self.sources["trace"].data = data
        T = result.summary["params"]["restart_at"]
        self.restart_span.location = T / 60.0
        # relists and ratios
        xs, n, colors, hatches, pct = [], [], [], [], []
        off = self.results["off"].summary
        for s in SETTINGS:
            sm = self.results[s].summary
            for k in ("timeouts", "restart"):
                xs.append((s, k))
                n.append(sm[f"{k}_relists"])
                colors.append(PALETTE[s] if k == "restart" else lighter(PALETTE[s]))
                hatches.append(HATCHES[s])
                base = off[f"{k}_resync_items"]
                pct.append(max(100.0 * sm[f"{k}_resync_items"] / base, 0.1) if base else 0.1)
        self.sources["relists"].data = dict(x=xs, n=n, color=colors, hatch=hatches)
        self.sources["ratio"].data = dict(x=xs, pct=pct, color=colors, hatch=hatches, label=[f"{p:.1f} %" for p in pct])
        df = result.series
        self.sources["cpu"].data = dict(t=(df["time"].to_numpy() + 5.0) / 60.0,
                                        cpu=df["apiserver_resync_cpu_cores"].to_numpy())
        self.sources["cpu_restart"].data = dict(t=[T / 60.0], cpu=[result.summary["restart_apiserver_cpu_seconds"]])
        self.cpu_line.glyph.line_dash = DASHES[setting]
        for g in (self.cpu_line, self.cpu_dot):
            g.glyph.line_color = PALETTE[setting]
            if hasattr(g.glyph, "fill_color"):
                g.glyph.fill_color = PALETTE[setting]
        self.summary.value = summary_html(self.lab, result, self.results["off"])


def summary_html(lab, result, off) -> str:
    sm, so = result.summary, off.summary
    claims = {c.claim: c for c in load_claims(lab.name)}

    def pct(a, b):
        return f"{100 * a / b:.1f} % of off" if b else "-"

    traced = ", ".join(f"{'ABC'[i]}: {n}" if i < 3 else n for i, n in enumerate(getattr(result, "trace_names", [])))
    rows = [
        ("pod events / s (all watchers' type)", fmt(sm["pod_events_per_s"]), ""),
        ("events per selective watcher / min", fmt(sm["selective_events_per_watcher_per_min"]), ""),
        ("watch cache: capacity, reach", f"{sm['watch_cache_capacity']:,} / {fmt(sm['watch_cache_span_s'], 's')}", ""),
        ("selective RV age at restart p50 / p90",
         f"{fmt(sm['selective_rv_age_p50_s'])} / {fmt(sm['selective_rv_age_p90_s'], 's')}", ""),
        ("restart: resumed / relisted", f"{sm['restart_resumed']:,} / {sm['restart_relists']:,}", ""),
        ("restart: init events re-read", fmt(sm["restart_init_events"]),
         pct(sm["restart_init_events"], so["restart_init_events"])),
        ("restart: objects relisted", fmt(sm["restart_objects_relisted"]), ""),
        ("restart: API server CPU, time to re-sync",
         f"{fmt(sm['restart_apiserver_cpu_seconds'], 'CPU-s')}, {fmt(sm['restart_resync_seconds'], 's')}", ""),
        ("restart: etcd read", fmt(sm["restart_etcd_bytes_read"] / 1e6, "MB"), ""),
        ("watch timeouts: init events", fmt(sm["timeouts_init_events"]),
         pct(sm["timeouts_init_events"], so["timeouts_init_events"])),
        ("watch timeouts: relists", f"{sm['timeouts_relists']:,}", ""),
    ]
    body = "".join(f"<tr><td style='padding-right:6px'>{a}</td><td style='text-align:right;white-space:nowrap'>"
                   f"<b>{b}</b></td><td style='color:#666;padding-left:6px;white-space:nowrap'>{c}</td></tr>"
                   for a, b, c in rows)
    target = claims["resync_restart_article"].article if "resync_restart_article" in claims else ""
    return (f"<div style='font-size:11px;line-height:1.3'><b>{SETTING_LABELS[result.setting]}</b>, "
            f"article: events to re-sync fall to {target}"
            f"<table style='width:390px'>{body}</table>"
            f"<div style='color:#666'>traced clients: {traced}</div></div>")


def ratio_figure(df, param: str, x_label: str, metric: str = "restart_init_events", title: str = "",
                 log_x: bool = True):
    """``metric`` of article and upstream as % of off, against ``param`` (a sweep
    DataFrame from :meth:`kscale_lab.labs.bookmarks.BookmarksLab.sweep`)."""
    from bokeh.models import Span
    from bokeh.plotting import figure

    f = figure(title=title or f"{metric}: % of off", width=640, height=300, x_axis_label=x_label,
               y_axis_label="% of off", x_axis_type="log" if log_x else "linear", y_axis_type="log",
               toolbar_location=None)
    off = df[df.setting == "off"].set_index(param)[metric]
    for s in ("article", "upstream"):
        g = df[df.setting == s].set_index(param)[metric]
        y = 100.0 * g / off.reindex(g.index)
        f.line(g.index.to_numpy(), y.to_numpy(), line_width=2, legend_label=SETTING_LABELS[s], **setting_style(s))
        f.scatter(g.index.to_numpy(), y.to_numpy(), size=7, marker=MARKERS[s], color=PALETTE[s],
                  legend_label=SETTING_LABELS[s])
    f.add_layout(Span(location=3.0, dimension="width", line_dash="dashed", line_color=REFERENCE))
    f.legend.location = "bottom_right"
    return f


def churn_figure(churn):
    """Events to re-sync as % of no bookmarks against how often a kubelet's watch fires
    (``churn``: one row per churn factor, columns ``events/kubelet/min`` and the ratios)."""
    from bokeh.models import Span
    from bokeh.plotting import figure

    sw = churn.melt(id_vars=["events/kubelet/min"],
                    value_vars=["restart upstream/off %", "restart article/off %", "timeouts article/off %"])
    fig = figure(title="events to re-sync, % of no bookmarks, against how often a kubelet's watch fires",
                 x_axis_type="log", y_axis_type="log", width=640, height=300, toolbar_location=None,
                 x_axis_label="pod events per kubelet per minute", y_axis_label="% of off")
    style = {"restart article/off %": ("article", "article"), "restart upstream/off %": ("upstream", "upstream"),
             "timeouts article/off %": (COLORS[2], "off")}
    for name in sorted(set(sw.variable)):
        g = sw[sw.variable == name]
        color, cue = style[name]
        color = PALETTE.get(color, color)
        fig.line(g["events/kubelet/min"], g.value, line_width=2, color=color, line_dash=DASHES[cue] if cue != "off"
                 else "dotted", legend_label=name)
        fig.scatter(g["events/kubelet/min"], g.value, size=7, marker=MARKERS[cue] if cue != "off" else "diamond",
                    color=color, legend_label=name)
    fig.add_layout(Span(location=3.0, dimension="width", line_dash="dashed", line_color=REFERENCE))
    fig.legend.location = "bottom_right"
    return fig


def claims_figure(table):
    """The article's 3 % beside the lab's ratios (one bar per claim given as a share);
    each bar says in words whether the claim holds."""
    from bokeh.models import ColumnDataSource, LabelSet, Span
    from bokeh.plotting import figure

    rows = table[table["unit"] == "1"]
    names = rows["claim"].tolist()
    vals = (100.0 * rows["lab_value"].astype(float)).tolist()
    holds = [bool(h) for h in rows["holds"]]
    src = ColumnDataSource(dict(x=names, y=vals, color=[PALETTE["article"] if h else PALETTE["off"] for h in holds],
                                hatch=[" " if h else "x" for h in holds], verdict=[VERDICT[h] for h in holds]))
    f = figure(title="the article's 3 % (dashed) beside the lab", x_range=names, width=640, height=300,
               y_axis_label="% (lab value)", toolbar_location=None)
    f.vbar(x="x", top="y", width=0.7, color="color", hatch_pattern="hatch", hatch_color="white", source=src)
    f.add_layout(LabelSet(x="x", y="y", text="verdict", source=src, text_align="center", y_offset=3,
                          text_font_size="9pt"))
    f.add_layout(Span(location=3.0, dimension="width", line_dash="dashed", line_color=REFERENCE))
    f.xaxis.major_label_orientation = 0.5
    f.xaxis.major_label_text_font_size = "8pt"
    f.y_range.start = 0
    f.y_range.range_padding = 0.15
    return f

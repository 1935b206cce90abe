"""The scheduler lab's dashboard: toggle the search at 10k nodes and watch a burst.

Controls: the switch (off / article / upstream), the article's two ideas one by one
(equivalence classes, relaxed search; they follow the switch until you change them),
upstream's opportunistic batching, the cluster size, the burst size and the share of
burst pods with required anti-affinity. Plots: scheduling latency over time (every
pod, and the p99 of each second), pods per second (created vs bound), nodes evaluated
per pod (fresh evaluations vs cached reads) and placement quality (how far the chosen
node's score is from the best).
"""

from __future__ import annotations

import numpy as np

from ..claims import load_claims
from ..scheduler.search import MODE_DEFAULTS
from . import COLORS, DASHES, HATCHES, LIMIT, MARKERS, NEUTRAL, PALETTE, REFERENCE, SERIES_DASHES, SETTING_LABELS, fmt, setting_style
from .dashboard import Dashboard

#: score gaps shown one by one; larger ones are pooled in the last bar
GAP_BINS = 10
#: at most this many pods are drawn one by one in the latency plot
MAX_POINTS = 6_000


class SchedulerDashboard(Dashboard):
    """Predict, then toggle: the scheduling queue under a Deployment burst."""

    lab_name = "scheduler"
    memory_controls = ("nodes", "burst_pods")

    def __init__(self, **initial):
        self._syncing = False
        d = MODE_DEFAULTS.get(initial.get("switch"), {})
        initial = {**d, **initial}  # the two ideas follow an initial switch unless given too
        super().__init__(**initial)
        self.controls["batching"].disabled = self.controls["switch"].value != "upstream"

    def make_controls(self) -> dict:
        import ipywidgets as w

        style = {"description_width": "150px"}
        lay = w.Layout(width="390px")
        return {
            "switch": self.switch_control(description="scheduler", style={"description_width": "80px",
                                                                                   "button_width": "90px"},
                                      tooltips=["every pod evaluates every node",
                                                "equivalence classes + relaxed random search",
                                                "percentageOfNodesToScore + round robin + batching"]),
            "equivalence_classes": w.Checkbox(value=False, description="equivalence classes", style=style,
                                              layout=lay, indent=False),
            "relaxed_search": w.Checkbox(value=False, description="relaxed search (stop early)", style=style,
                                         layout=lay, indent=False),
            "batching": w.Checkbox(value=True, description="opportunistic batching (upstream)", style=style,
                                   layout=lay, indent=False, disabled=True),
            "nodes": w.IntSlider(value=10_000, min=1_000, max=20_000, step=1_000, description="nodes",
                                 continuous_update=False, style=style, layout=lay),
            "burst_pods": w.IntSlider(value=3_000, min=0, max=10_000, step=250, description="burst (pods)",
                                      continuous_update=False, style=style, layout=lay),
            "affinity_share": w.FloatSlider(value=0.1, min=0.0, max=1.0, step=0.05, readout_format=".2f",
                                            description="pods with anti-affinity", continuous_update=False,
                                            style=style, layout=lay),
        }

    # the switch sets the two ideas to what the setting does; the checkboxes then
    # switch them one by one (one recompute per click)
    def _on_change(self, change) -> None:
        if self._syncing:
            return
        if change["owner"] is self.controls["switch"]:
            self._syncing = True
            try:
                self._sync_to_setting(change["new"])
            finally:
                self._syncing = False
        self.update()

    def _sync_to_setting(self, setting: str) -> None:
        c = self.controls
        d = MODE_DEFAULTS[setting]
        c["equivalence_classes"].value = d["equivalence_classes"]
        c["relaxed_search"].value = d["relaxed_search"]
        c["batching"].disabled = setting != "upstream"

    def overrides(self):
        c = self.controls
        return c["switch"].value, {
            "equivalence_classes": bool(c["equivalence_classes"].value),
            "relaxed_search": bool(c["relaxed_search"].value),
            "opportunistic_batching": bool(c["batching"].value),
            "nodes": int(c["nodes"].value),
            "burst_pods": int(c["burst_pods"].value),
            "burst_affinity_share": float(c["affinity_share"].value),
        }

    def make_figures(self):
        from bokeh.layouts import gridplot
        from bokeh.models import ColumnDataSource, Label, Span
        from bokeh.plotting import figure

        claims = {c.claim: c for c in load_claims("scheduler")}
        S = self.sources
        S["pods"] = ColumnDataSource(dict(t=[], latency=[], color=[], marker=[]))
        S["series"] = ColumnDataSource(dict(t=[], p99=[], arrived=[], bound=[], pending=[], evaluated=[],
                                            reads=[]))
        S["gap"] = ColumnDataSource(dict(gap=[], share=[], label=[]))
        kw = dict(width=400, height=240, toolbar_location=None)
        f1 = figure(title="scheduling latency (queue wait + cycle + bind)", y_axis_type="log",
                    x_axis_label="simulated seconds (when bound)", y_axis_label="seconds", **kw)
        f1.scatter("t", "latency", source=S["pods"], size=4, alpha=0.4, color="color", marker="marker")
        self.p99_line = f1.line("t", "p99", source=S["series"], line_width=2, color=PALETTE["off"],
                                legend_label="p99 of each second")
        target = claims["latency_p99_off_10k"]
        f1.add_layout(Span(location=target.value, dimension="width", line_dash="dashed", line_color=REFERENCE))
        f1.add_layout(Label(x=0, y=target.value, text=f"article: {target.article} (off, 10k nodes)",
                            text_font_size="9pt", text_color=REFERENCE, y_offset=3))
        f1.y_range.start = 1e-3
        f1.y_range.end = 300
        f1.legend.location = "bottom_right"
        f1.legend.label_text_font_size = "8pt"
        f2 = figure(title="pods per second", x_axis_label="simulated seconds", y_axis_label="pods/s", **kw)
        f2.step("t", "arrived", source=S["series"], mode="after", line_width=1, color=NEUTRAL, line_dash="dashed",
                legend_label="created")
        self.bound_line = f2.step("t", "bound", source=S["series"], mode="after", line_width=2,
                                  color=PALETTE["off"], legend_label="bound")
        f2.legend.location = "top_right"
        f2.legend.label_text_font_size = "8pt"
        f2.y_range.start = 0
        f3 = figure(title="nodes evaluated per pod", y_axis_type="log", x_axis_label="simulated seconds",
                    y_axis_label="nodes", **kw)
        self.eval_line = f3.line("t", "evaluated", source=S["series"], line_width=2, color=PALETTE["off"],
                                 legend_label="filters run afresh")
        f3.line("t", "reads", source=S["series"], line_width=2, line_dash="dashed", color=COLORS[2],
                legend_label="cached results read")
        self.nodes_span = Span(location=10_000, dimension="width", line_dash="dotted", line_color=REFERENCE)
        f3.add_layout(self.nodes_span)
        f3.y_range.start = 0.8
        f3.y_range.end = 40_000
        f3.legend.location = "bottom_right"
        f3.legend.label_text_font_size = "8pt"
        f4 = figure(title="placement quality: best score - chosen score", x_axis_label="score gap (of 200)",
                    y_axis_label="share of pods", **kw)
        self.gap_bars = f4.vbar(x="gap", top="share", width=0.8, source=S["gap"], color=PALETTE["off"],
                                hatch_pattern=HATCHES["off"], hatch_color="white")
        f4.y_range.start = 0
        f4.y_range.end = 1
        self.figures = [f1, f2, f3, f4]
        return gridplot([[f1, f2], [f3, f4]], toolbar_location=None)

    def fill(self, result) -> None:
        pods, df = result.pods, result.series
        setting = result.setting
        color = PALETTE[setting]
        ok = pods["node"].to_numpy() >= 0
        bt = pods["bind_s"].to_numpy()[ok]
        lat = pods["latency_s"].to_numpy()[ok]
        aa, burst = pods["anti_affinity"].to_numpy()[ok], pods["burst"].to_numpy()[ok]
        # colour and marker: anti-affinity (orange x), the burst (the setting's colour), churn (grey)
        kind = np.where(aa, COLORS[0], np.where(burst, color, NEUTRAL))
        marker = np.where(aa, "x", np.where(burst, MARKERS[setting], "dot"))
        if bt.size > MAX_POINTS:  # an even thinning, deterministic
            keep = np.linspace(0, bt.size - 1, MAX_POINTS).astype(np.int64)
            bt, lat, kind, marker = bt[keep], lat[keep], kind[keep], marker[keep]
        self.sources["pods"].data = dict(t=bt, latency=lat, color=kind, marker=marker)
        t = df["time"].to_numpy()
        self.sources["series"].data = dict(
            t=t, p99=df["scheduler_pod_scheduling_sli_duration_seconds_p99"].to_numpy(),
            arrived=df["pods_arrived_per_s"].to_numpy(), bound=df["pods_bound_per_s"].to_numpy(),
            pending=df["scheduler_pending_pods"].to_numpy(),
            evaluated=np.maximum(df["nodes_evaluated_per_pod"].to_numpy(), 1.0),
            reads=np.where(df["cache_reads_per_pod"].to_numpy() > 0, df["cache_reads_per_pod"].to_numpy(), np.nan),
        )
        gap = pods["score_gap"].to_numpy()[ok]
        counts = np.bincount(np.minimum(gap.astype(np.int64), GAP_BINS), minlength=GAP_BINS + 1)
        share = counts / max(gap.size, 1)
        labels = [str(i) for i in range(GAP_BINS)] + [f">={GAP_BINS}"]
        self.sources["gap"].data = dict(gap=np.arange(GAP_BINS + 1), share=share, label=labels)
        for glyph in (self.p99_line, self.bound_line, self.eval_line):
            glyph.glyph.line_color = color
            glyph.glyph.line_dash = DASHES[setting]
        self.gap_bars.glyph.hatch_pattern = HATCHES[setting]
        self.gap_bars.glyph.fill_color = color
        self.gap_bars.glyph.line_color = color
        self.nodes_span.location = result.summary["params"]["nodes"]
        self.summary.value = summary_html(self.lab, result)


def summary_html(lab, result) -> str:
    sm = result.summary
    p = sm["params"]
    claims = {c.claim: c for c in load_claims(lab.name)}
    mech = [name for name, on in (("equivalence classes", p["equivalence_classes"]),
                                  ("relaxed search", p["relaxed_search"])) if on]
    if result.setting == "upstream" and p["opportunistic_batching"]:
        mech.append("batching")
    rows = [
        ("scheduling latency p50", fmt(sm["scheduler_pod_scheduling_sli_duration_seconds_p50"], "s"), ""),
        ("scheduling latency p99", fmt(sm["scheduler_pod_scheduling_sli_duration_seconds_p99"], "s"),
         claims["latency_p99_off_10k"].article + " (off, 10k)"),
        ("throughput (capacity)", fmt(sm["capacity_pods_per_s"], "pods/s"), ""),
        ("scheduling cycle", fmt(sm["mean_cycle_s"] * 1000, "ms"), ""),
        ("nodes evaluated per pod", fmt(sm["nodes_evaluated_per_pod"]),
         f"of {p['nodes']:,}"),
        ("cached results read per pod", fmt(sm["cache_reads_per_pod"]), ""),
        ("pods placed by batching", fmt(100 * sm["batched_share"], "%"), ""),
        ("best node chosen", fmt(100 * sm["best_score_share"], "%"), "exhaustive: 100 %"),
        ("mean score gap", fmt(sm["score_gap_mean"]), "of 200"),
        ("CPU utilisation CV", fmt(sm["node_cpu_utilisation_cv"]), "imbalance"),
    ]
    body = "".join(f"<tr><td style='padding-right:6px'>{a}</td><td style='text-align:right;white-space:nowrap'>"
                   f"<b>{b}</b></td><td style='color:#666;padding-left:6px'>{c}</td></tr>" for a, b, c in rows)
    return (f"<div style='font-size:11px;line-height:1.3'><b>{SETTING_LABELS[result.setting]}</b>: "
            f"{', '.join(mech) or 'every node, every pod'}"
            f"<table style='width:390px'><tr><th></th><th>lab</th><th>article</th></tr>{body}</table></div>")


def size_figure(df, metric: str = "scheduler_pod_scheduling_sli_duration_seconds_p99",
                label: str = "p99 scheduling latency (s)"):
    """A metric of :meth:`SchedulerLab.size_sweep` against cluster size, per setting."""
    from bokeh.models import Span
    from bokeh.plotting import figure

    f = figure(title=f"{label} vs cluster size (default burst)", width=640, height=300, y_axis_type="log",
               x_axis_label="nodes", y_axis_label=label, toolbar_location=None)
    for s, g in df.groupby("setting", sort=False):
        f.line(g["nodes"], g[metric], line_width=2, legend_label=SETTING_LABELS[s], **setting_style(s))
        f.scatter(g["nodes"], g[metric], size=7, marker=MARKERS[s], color=PALETTE[s], legend_label=SETTING_LABELS[s])
    if metric.startswith("scheduler_pod_scheduling"):
        target = {c.claim: c for c in load_claims("scheduler")}["latency_p99_off_10k"]
        f.add_layout(Span(location=target.value, dimension="width", line_dash="dashed", line_color=REFERENCE))
    f.legend.location = "center_right"
    return f


def nodes_to_score_figure(max_nodes: int = 20_000, percentages=(0, 10, 50)):
    """Upstream's numFeasibleNodesToFind against cluster size: the adaptive default
    (50 % minus 1 % per 125 nodes, floors of 5 % and 100 nodes) and fixed percentages."""
    from bokeh.plotting import figure

    from ..labs.scheduler import nodes_to_score

    n = np.arange(1, max_nodes + 1, 25)
    f = figure(title="nodes kube-scheduler filters before it stops (numFeasibleNodesToFind)", width=640,
               height=300, x_axis_label="nodes in the cluster", y_axis_label="feasible nodes to find",
               toolbar_location=None)
    colors = (PALETTE["upstream"], PALETTE["article"], COLORS[2], PALETTE["off"], COLORS[0])
    for k, pct in enumerate(percentages):
        name = "adaptive default (0)" if pct == 0 else f"percentageOfNodesToScore: {pct}"
        f.line(n, nodes_to_score(n, pct), line_width=2, color=colors[k % len(colors)],
               line_dash=SERIES_DASHES[k % len(SERIES_DASHES)], legend_label=name)
    f.legend.location = "top_left"
    f.y_range.start = 0
    return f

"""The hot-standby lab's dashboard: who holds the lease, and what waits while nobody works.

Left: the switch, the three lease durations, how many objects the controllers list and what
one costs to decode and index, where the LISTs are served from, which leaders crash, a clock
skew, upstream's kube-controller-manager feature gate, and which part of the run to show.
Right: per component, the longest interruption during the upgrade, the crash's, the warm-up,
the standby's memory. Below, over the 30 simulated minutes: each replica's role (leading,
warming up, standing by, down), the work waiting (pods not yet created or scheduled, nodes
nobody checked), the LIST load of the warm-ups on the API servers, the controllers' memory.
"""

from __future__ import annotations

import math

import numpy as np

from . import NEUTRAL, OKABE_ITO, REFERENCE, SETTING_LABELS, fmt
from .dashboard import Dashboard

#: one colour per role (Okabe-Ito, colour-blind safe)
ROLE_COLORS = {"leading": OKABE_ITO["blue"], "leader (warming)": OKABE_ITO["vermillion"],
               "standby": OKABE_ITO["sky_blue"], "warming": OKABE_ITO["orange"], "starting": OKABE_ITO["yellow"],
               "down": NEUTRAL}
ROLE_LABELS = {"leading": "leading (working)", "leader (warming)": "leading, still listing",
               "standby": "standby", "warming": "listing before standing by", "starting": "starting",
               "down": "stopped"}
SHOW = ("the whole run", "the upgrade", "the crash")
REPLICAS = 3            # the dashboard shows the default three replicas of each component
GB = 1e9


class HotStandbyDashboard(Dashboard):
    lab_name = "hot-standby"
    memory_controls = ()       # no size slider changes what a run holds by much (see memory_footprint)

    def __init__(self, fixed: dict | None = None, **initial):
        """``fixed``: parameters the controls do not set (a smaller cluster for a quick look)."""
        self._fixed = dict(fixed or {})
        super().__init__(**initial)

    def make_controls(self) -> dict:
        import ipywidgets as w

        style = {"description_width": "150px"}
        lay = w.Layout(width="400px")

        def sel(options, value, desc):
            return w.SelectionSlider(options=options, value=value, description=desc, continuous_update=False,
                                     style=style, layout=lay)

        return {
            "switch": self.switch_control(description="hot_standby", style=style,
                                          tooltips=["cold standbys, the lease expires",
                                                    "warm standbys, the leader releases on upgrade",
                                                    "kube-scheduler warm + releases; kube-controller-manager cold"]),
            "show": w.Dropdown(options=list(SHOW), value=SHOW[0], description="show", style=style, layout=lay),
            "lease": sel([5.0, 10.0, 15.0, 30.0, 60.0], 15.0, "lease duration (s)"),
            "renew": sel([2.5, 5.0, 7.5, 10.0, 20.0, 40.0], 10.0, "renew deadline (s)"),
            "retry": sel([0.5, 1.0, 2.0, 4.0, 8.0], 2.0, "retry period (s)"),
            "objects": sel([250_000, 500_000, 1_000_000, 2_000_000, 4_000_000], 1_000_000, "objects"),
            "object_us": sel([5, 10, 20, 50, 100], 20, "decode+index µs/object"),
            "source": w.Dropdown(options=[("watch cache (resourceVersion=0)", "watch-cache"),
                                          ("etcd (paged, quorum reads)", "etcd")], value="watch-cache",
                                 description="informer LISTs from", style=style, layout=lay),
            "crash": w.Dropdown(options=[("both leaders", "both"), ("kube-controller-manager", "kube-controller-manager"),
                                         ("kube-scheduler", "kube-scheduler")], value="both",
                                description="crash", style=style, layout=lay),
            "skew": w.FloatSlider(value=0.0, min=0.0, max=0.5, step=0.05, description="standby clocks faster by",
                                  continuous_update=False, style=style, layout=lay, readout_format=".0%"),
            "kcm_release": w.Checkbox(value=False, description="upstream: KCM releases (KEP-5366 gate)",
                                      style={"description_width": "initial"}, layout=lay),
        }

    def overrides(self):
        c = self.controls
        return c["switch"].value, {
            **self._fixed,
            "leader_elect_lease_duration": float(c["lease"].value),
            "leader_elect_renew_deadline": float(c["renew"].value),
            "leader_elect_retry_period": float(c["retry"].value),
            "objects": int(c["objects"].value),
            "informer_object_cpu": float(c["object_us"].value) * 1e-6,
            "informer_list_source": c["source"].value,
            "crash_components": c["crash"].value,
            "clock_skew": float(c["skew"].value),
            "kcm_release_on_exit": bool(c["kcm_release"].value),
        }

    def _on_change(self, change) -> None:
        if change["owner"] is self.controls["show"]:
            self._zoom()
            return
        self.update()

    # -- figures ------------------------------------------------------------------------
    def make_figures(self):
        from bokeh.layouts import gridplot
        from bokeh.models import (BoxAnnotation, ColumnDataSource, DataRange1d, Legend, LegendItem, LinearAxis,
                                  Range1d)
        from bokeh.plotting import figure

        S = self.sources
        S["roles"] = ColumnDataSource(dict(left=[], right=[], bottom=[], top=[], color=[], role=[]))
        S["series"] = ColumnDataSource(dict(t=[], pending=[], not_created=[], nodes=[], list_api=[], list_etcd=[],
                                            mem_standby=[], mem_all=[]))
        kw = dict(width=440, height=240, toolbar_location=None, x_axis_label="simulated minutes")
        rows = 2 * REPLICAS
        f1 = figure(title="who leads: each replica's role", y_range=Range1d(-0.5, rows - 0.5),
                    **dict(kw, height=300))
        items = []
        for role, color in ROLE_COLORS.items():     # one legend entry per role, even when absent
            g = f1.quad(left=[0], right=[0], bottom=[0], top=[0], color=color)
            items.append(LegendItem(label=ROLE_LABELS[role], renderers=[g]))
        f1.quad("left", "right", "bottom", "top", source=S["roles"], fill_color="color", line_color=None)
        f1.yaxis.ticker = list(range(rows))
        f1.yaxis.major_label_overrides = {k: v for k, v in enumerate(
            [f"kcm-{r}" for r in range(REPLICAS)] + [f"sched-{r}" for r in range(REPLICAS)])}
        f1.add_layout(Legend(items=items, ncols=3, label_text_font_size="7pt", spacing=0, padding=2, margin=2),
                      "below")
        f2 = figure(title="work waiting", y_axis_label="pods", **kw)
        pods = [f2.line("t", "pending", source=S["series"], color=OKABE_ITO["blue"], line_width=2,
                        legend_label="pods waiting to be scheduled"),
                f2.line("t", "not_created", source=S["series"], color=OKABE_ITO["vermillion"], line_width=2, line_dash="dashed",
                        legend_label="pods not yet created (ReplicaSets behind)")]
        f2.y_range = DataRange1d(renderers=pods, start=0)
        f2.extra_y_ranges = {"nodes": Range1d(0, 1.05)}
        f2.add_layout(LinearAxis(y_range_name="nodes", axis_label="share of nodes"), "right")
        f2.line("t", "nodes", source=S["series"], y_range_name="nodes", color=NEUTRAL, line_width=2,
                line_dash="dotted", legend_label="nodes not health-checked (right)")
        f2.legend.location = "top_right"
        f2.legend.label_text_font_size = "8pt"
        f2.legend.background_fill_alpha = 0.6
        f3 = figure(title="warm-up LISTs: load on the API servers and etcd", y_axis_label="cores", **kw)
        f3.line("t", "list_api", source=S["series"], color=OKABE_ITO["orange"], line_width=2, legend_label="API servers")
        f3.line("t", "list_etcd", source=S["series"], color=OKABE_ITO["bluish_green"], line_width=2, line_dash="dashed",
                legend_label="etcd")
        f3.legend.location = "top_right"
        f3.legend.label_text_font_size = "8pt"
        f4 = figure(title="controllers' informer caches in memory", y_axis_label="GB", **kw)
        f4.line("t", "mem_all", source=S["series"], color=OKABE_ITO["blue"], line_width=2, legend_label="all 6 replicas")
        f4.line("t", "mem_standby", source=S["series"], color=OKABE_ITO["sky_blue"], line_width=2, line_dash="dashed",
                legend_label="the standbys (the price of warm ones)")
        f4.legend.location = "bottom_right"
        f4.legend.label_text_font_size = "8pt"
        f4.legend.background_fill_alpha = 0.6
        self.figures = [f1, f2, f3, f4]
        self.boxes = []
        for f in self.figures:
            pair = []
            for _ in range(2):
                b = BoxAnnotation(left=0, right=0, fill_alpha=0.10, fill_color=REFERENCE)
                f.add_layout(b)
                pair.append(b)
            self.boxes.append(pair)
        for f in (f3, f4):
            f.y_range.start = 0
        for f in self.figures[1:]:
            f.x_range = f1.x_range
        return gridplot([[f1, f2], [f3, f4]], toolbar_location=None)

    def fill(self, result) -> None:
        p = result.summary["params"]
        s = result.series
        t = s["time"].to_numpy() / 60.0
        tl = result.timeline
        tl = tl[(tl.end > tl.start) & (tl.replica < REPLICAS)]
        y = np.where(tl.component.to_numpy() == "kube-controller-manager", 0, REPLICAS) + tl.replica.to_numpy()
        y = y.astype(float)
        self.sources["roles"].data = dict(left=(tl.start / 60.0).to_numpy(), right=(tl.end / 60.0).to_numpy(),
                                          bottom=y - 0.4, top=y + 0.4,
                                          color=[ROLE_COLORS[r] for r in tl.role], role=list(tl.role))
        self.sources["series"].data = dict(
            t=t, pending=s["scheduler_pending_pods"].to_numpy(), not_created=s["pods_not_created"].to_numpy(),
            nodes=s["nodes_not_health_checked"].to_numpy() / float(p["nodes"]), list_api=s["list_apiserver_cores"].to_numpy(),
            list_etcd=s["list_etcd_cores"].to_numpy(), mem_standby=s["standby_memory_bytes"].to_numpy() / GB,
            mem_all=s["controller_memory_bytes"].to_numpy() / GB)
        ev = result.events
        self._spans = {}
        for name in ("upgrade", "crash"):
            b = ev.loc[ev["event"] == f"{name} begins", "time"]
            e = ev.loc[ev["event"] == f"{name} ends", "time"]
            if len(b):
                self._spans[name] = (float(b.iloc[0]) / 60.0, float(e.iloc[0]) / 60.0 if len(e) else t[-1])
        for pair in self.boxes:
            for m, name in enumerate(("upgrade", "crash")):
                left, right = self._spans.get(name, (0.0, 0.0))
                pair[m].left, pair[m].right = left, right
        self._t_end = float(t[-1]) if t.size else 30.0
        self._zoom()
        self.summary.value = summary_html(result)

    def _zoom(self) -> None:
        f1 = self.figures[0]
        what = self.controls["show"].value
        spans = getattr(self, "_spans", {})
        if what == "the upgrade" and "upgrade" in spans:
            a, b = spans["upgrade"]
            f1.x_range.start, f1.x_range.end = a - 0.25, b + 1.0
        elif what == "the crash" and "crash" in spans:
            a, _ = spans["crash"]
            f1.x_range.start, f1.x_range.end = a - 0.25, a + 1.25
        else:
            f1.x_range.start, f1.x_range.end = 0.0, getattr(self, "_t_end", 30.0)


def summary_html(result) -> str:
    sm = result.summary
    p = sm["params"]
    rows = []
    for short, name in (("kcm", "kube-controller-manager"), ("scheduler", "kube-scheduler")):
        mode = ("warm" if sm[f"{short}_warm_standby"] else "cold") + (", releases" if sm[f"{short}_releases_lease"]
                                                                      else ", no release")
        rows.append(f"<tr><td colspan=2 style='padding-top:4px'><b>{name}</b> ({mode})</td></tr>")
        rows.append(_row("longest interruption in the upgrade", _s(sm[f"{short}_upgrade_interruption_max_s"]),
                         f"{sm[f'{short}_upgrade_handovers']} handovers"))
        rows.append(_row("interruption after the crash", _s(sm[f"{short}_crash_interruption_s"]), ""))
        rows.append(_row("its warm-up (LIST + decode)", _s(sm[f"{short}_warmup_s"]),
                         f"{sm[f'{short}_informer_objects']:,} objects"))
        rows.append(_row("memory of one standby", fmt(sm[f"{short}_standby_memory_bytes"] / GB), "GB"))
    margin = sm["max_safe_clock_skew"] >= 0
    rows.append(_row("two leaders at once", _s(sm["two_leaders_s"]),
                     "" if margin else "<b>no margin</b>: a cut-off leader may outlast the lease"))
    body = "".join(rows)
    return (f"<div style='font-size:13px'><b>{SETTING_LABELS[result.setting]}</b>, {p['nodes']:,} nodes, "
            f"{p['objects']:,} objects, lease {p['leader_elect_lease_duration']:g} / "
            f"{p['leader_elect_renew_deadline']:g} / {p['leader_elect_retry_period']:g} s<table>{body}</table></div>")


def _row(a, v, note):
    return (f"<tr><td style='padding-right:12px'>{a}</td><td style='text-align:right'><b>{v}</b></td>"
            f"<td style='padding-left:8px;color:#555'>{note}</td></tr>")


def _s(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if math.isinf(x):
        return "not within the run"
    return f"{x:.1f} s"

"""The heartbeat lab's dashboard: toggle Node status vs Lease at 10k nodes."""

from __future__ import annotations

import numpy as np

from ..claims import load_claims
from . import COLORS, DASHES, LIMIT, MARKERS, NEUTRAL, PALETTE, REFERENCE, SETTING_LABELS, fmt, setting_style
from .dashboard import Dashboard

GIB = 1024**3
MB = 1e6


class HeartbeatDashboard(Dashboard):
    """Controls: the switch, nodes (up to 20k), Node object size, heartbeat interval,
    etcd quota, API server cores. Plots: etcd write rate, db size vs quota, API
    server CPU (heartbeats vs the rest), nodes wrongly NotReady."""

    lab_name = "heartbeats"

    def make_controls(self) -> dict:
        import ipywidgets as w

        style = {"description_width": "140px"}
        lay = w.Layout(width="390px")
        return {
            "switch": self.switch_control(description="heartbeats", style=style,
                                      tooltips=["Node status every 10 s", "Lease 10 s + status 60 s",
                                                "Lease 10 s + status 5 min"]),
            "nodes": w.IntSlider(value=10_000, min=1_000, max=20_000, step=1_000, description="nodes",
                                 continuous_update=False, style=style, layout=lay),
            "node_kb": w.IntSlider(value=15, min=1, max=100, step=1, description="Node object (KB)",
                                   continuous_update=False, style=style, layout=lay),
            "interval": w.IntSlider(value=10, min=2, max=60, step=1, description="heartbeat interval (s)",
                                    continuous_update=False, style=style, layout=lay),
            "quota_gib": w.Dropdown(options=[("2 GiB (etcd default)", 2), ("8 GiB (suggested max)", 8),
                                             ("64 GiB", 64)], value=8, description="etcd quota",
                                    style=style, layout=lay),
            "cores": w.IntSlider(value=32, min=1, max=64, step=1, description="cores per API server",
                                 continuous_update=False, style=style, layout=lay),
        }

    def overrides(self):
        c = self.controls
        return c["switch"].value, {
            "nodes": c["nodes"].value,
            "node_object_bytes": c["node_kb"].value * 1000.0,
            "node_lease_renew_interval": float(c["interval"].value),
            "node_status_update_frequency": float(c["interval"].value),
            "quota_backend_bytes": int(c["quota_gib"].value * GIB),
            "apiserver_cores": float(c["cores"].value),
        }

    def make_figures(self):
        from bokeh.layouts import gridplot
        from bokeh.models import ColumnDataSource, Label, Span
        from bokeh.plotting import figure

        claims = {c.claim: c for c in load_claims("heartbeats")}
        S = self.sources
        S["series"] = ColumnDataSource(dict(t=[], wal=[], db=[], db_use=[], quota=[], hb=[], other=[],
                                            zero=[], notready=[]))
        S["alarm"] = ColumnDataSource(dict(t=[], db=[]))
        kw = dict(width=430, height=230, toolbar_location=None, x_axis_label="simulated minutes")
        f1 = figure(title="etcd transaction log (WAL) written", y_axis_label="GB per minute", **kw)
        self.wal_line = f1.line("t", "wal", source=S["series"], line_width=2, color=PALETTE["off"])
        target = claims["txlog_per_min_off"]
        f1.add_layout(Span(location=target.value, dimension="width", line_dash="dashed", line_color=REFERENCE))
        f1.add_layout(Label(x=0.1, y=target.value, text=f"article: {target.article} (Node status, 10k nodes)",
                            text_font_size="9pt", text_color=REFERENCE, y_offset=3))
        f1.y_range.start = 0
        f2 = figure(title="etcd db size vs --quota-backend-bytes", y_axis_label="GB", **kw)
        self.db_line = f2.line("t", "db", source=S["series"], line_width=2, color=PALETTE["off"],
                               legend_label="db size (file)")
        f2.line("t", "db_use", source=S["series"], line_width=1, line_dash="dotted", color=COLORS[3],
                legend_label="in use")
        f2.line("t", "quota", source=S["series"], line_width=2, line_dash="dashed", color=LIMIT,
                legend_label="quota")
        f2.scatter("t", "db", source=S["alarm"], size=12, marker="x", color=LIMIT, line_width=3,
                   legend_label="NOSPACE alarm")
        f2.legend.location = "top_left"
        f2.legend.label_text_font_size = "8pt"
        f2.y_range.start = 0
        f3 = figure(title="API server CPU", y_axis_label="cores (all API servers)", **kw)
        f3.varea_stack(["hb", "other"], x="t", source=S["series"], color=[COLORS[0], NEUTRAL], hatch_pattern=[" ", "/"],
                       legend_label=["heartbeats", "everything else"])
        f3.legend.location = "top_left"
        f3.legend.label_text_font_size = "8pt"
        f3.y_range.start = 0
        f4 = figure(title="nodes wrongly marked NotReady", y_axis_label="nodes", **kw)
        self.nr_line = f4.line("t", "notready", source=S["series"], line_width=2, color=PALETTE["off"])
        f4.y_range.start = 0
        self.figures = [f1, f2, f3, f4]
        return gridplot([[f1, f2], [f3, f4]], toolbar_location=None)

    def fill(self, result) -> None:
        df = result.series
        setting = result.setting
        t = (df["time"].to_numpy() + self.lab.scenario(result.summary["params"]).tick) / 60.0
        wal = df["etcd_wal_bytes_per_s"].to_numpy() * 60 / 1e9
        wal_s = trailing_mean(wal, max(1, int(round(10.0 / self.lab.scenario(result.summary["params"]).tick))))
        k = max(1, int(round(10.0 / self.lab.scenario(result.summary["params"]).tick)))
        hb = trailing_mean(df["apiserver_cpu_heartbeat_cores"].to_numpy(), k)
        tot = trailing_mean(df["apiserver_cpu_cores"].to_numpy(), k)
        self.sources["series"].data = dict(
            t=t, wal=wal_s, db=df["etcd_mvcc_db_total_size_in_bytes"].to_numpy() / 1e9,
            db_use=df["etcd_mvcc_db_total_size_in_use_in_bytes"].to_numpy() / 1e9,
            quota=df["etcd_server_quota_backend_bytes"].to_numpy() / 1e9,
            hb=np.minimum(hb, tot), other=np.maximum(tot - hb, 0.0), zero=np.zeros_like(t),
            notready=df["node_collector_unhealthy_nodes_in_zone"].to_numpy(),
        )
        sm = result.summary
        alarm_t = sm["etcd_nospace_at_s"]
        if np.isnan(alarm_t):
            self.sources["alarm"].data = dict(t=[], db=[])
        else:
            self.sources["alarm"].data = dict(t=[(alarm_t + 1) / 60.0], db=[sm["etcd_quota_backend_bytes"] / 1e9])
        for glyph in (self.wal_line, self.db_line, self.nr_line):
            glyph.glyph.line_color = PALETTE[setting]
            glyph.glyph.line_dash = DASHES[setting]
        self.summary.value = summary_html(self.lab, result)


def trailing_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Mean of the last ``k`` values at each point (fewer at the start)."""
    c = np.cumsum(np.insert(np.asarray(x, dtype=float), 0, 0.0))
    i = np.arange(1, len(x) + 1)
    lo = np.maximum(i - k, 0)
    return (c[i] - c[lo]) / (i - lo)


def summary_html(lab, result) -> str:
    sm = result.summary
    claims = {c.claim: c for c in load_claims(lab.name)}
    nospace = "never" if np.isnan(sm["etcd_nospace_at_s"]) else f"at {fmt(sm['etcd_nospace_at_s'], 's')}"
    first_nr = "-" if np.isnan(sm["first_notready_at_s"]) else f"from {fmt(sm['first_notready_at_s'], 's')}"
    rows = [
        ("etcd transaction log", fmt(sm["etcd_wal_bytes_per_min"] / 1e9, "GB/min"),
         claims["txlog_per_min_off"].article + " (off, 10k)"),
        ("heartbeat share of API server CPU", fmt(100 * sm["apiserver_cpu_heartbeat_share"], "%"),
         claims["cpu_share_off"].article + " (off, 10k)"),
        ("etcd revisions", fmt(sm["etcd_revisions_per_s"], "/s"), ""),
        ("peak db size / quota", f"{fmt(sm['etcd_db_size_max_bytes'] / 1e9)} / "
                                 f"{fmt(sm['etcd_quota_backend_bytes'] / 1e9, 'GB')}", ""),
        ("NOSPACE alarm", nospace, ""),
        ("heartbeat latency p99", fmt(sm["heartbeat_latency_p99_s"] * 1000, "ms"), ""),
        ("nodes wrongly NotReady (max)", f"{sm['nodes_notready_max']:,} {first_nr}", ""),
    ]
    body = "".join(f"<tr><td style='padding-right:6px'>{a}</td><td style='text-align:right;white-space:nowrap'>"
                   f"<b>{b}</b></td><td style='color:#666;padding-left:6px'>{c}</td></tr>" for a, b, c in rows)
    return (f"<div style='font-size:11px;line-height:1.3'><b>{SETTING_LABELS[result.setting]}</b>"
            f"<table style='width:390px'><tr><th></th><th>lab</th><th>article</th></tr>{body}</table></div>")


def scale_figure(lab, max_nodes: int = 20_000, quota_gib: float = 2.0):
    """Peak etcd db size (base objects + two compaction windows of history) against
    cluster size, per setting, with the quota: where each setting stops fitting."""
    from bokeh.models import Span
    from bokeh.plotting import figure

    nodes = np.arange(500, max_nodes + 1, 500)
    f = figure(title=f"peak etcd db size vs cluster size (quota {quota_gib:g} GiB)", width=640, height=300,
               x_axis_label="nodes (pods and objects scale along)", y_axis_label="GB", toolbar_location=None)
    for s in lab.settings:
        peak = [lab.steady_state(s, nodes=int(n)).peak_db_bytes / 1e9 for n in nodes]
        f.line(nodes, peak, line_width=2, legend_label=SETTING_LABELS[s], **setting_style(s))
        f.scatter(nodes[::4], peak[::4], size=7, marker=MARKERS[s], color=PALETTE[s], legend_label=SETTING_LABELS[s])
    f.add_layout(Span(location=quota_gib * GIB / 1e9, dimension="width", line_dash="dashed", line_color=LIMIT))
    f.legend.location = "top_left"
    return f


def onset_figure(df, param: str = "apiserver_cores"):
    """Nodes wrongly marked NotReady against API server capacity, per setting."""
    from bokeh.plotting import figure

    f = figure(title="when does it start? nodes wrongly marked NotReady", width=640, height=300,
               x_axis_label="cores per API server (3 API servers)", y_axis_label="nodes ever NotReady",
               toolbar_location=None)
    for s, g in df.groupby("setting", sort=False):
        f.line(g[param], g["nodes_ever_notready"], line_width=2, legend_label=SETTING_LABELS[s], **setting_style(s))
        f.scatter(g[param], g["nodes_ever_notready"], size=7, marker=MARKERS[s], color=PALETTE[s],
                  legend_label=SETTING_LABELS[s])
    f.legend.location = "top_right"
    return f

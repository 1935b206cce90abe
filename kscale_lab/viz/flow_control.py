"""The flow-control lab's dashboard: a restart of every API server, then a buggy DaemonSet.

Left: the switch, which incidents, how the servers restart, how clients find them
(client-side addresses or a health-checked load balancer), ``--max-requests-inflight``,
the DaemonSet's LIST period, the operator's reaction time (article setting), the
``workload-low`` priority level's shares (upstream setting). Right: the figures of the
run per incident. Below, over the 30 simulated minutes: memory and CPU per API server
(OOM kills marked), the network (bytes etcd sends to the API servers, and the API
servers' use of their link to the clients), the re-lists (from the cache, from etcd,
answered 429), and the nodes (Lease renewals that succeed, nodes wrongly NotReady).
The incidents are shaded.
"""

from __future__ import annotations

import math
import numpy as np

from . import NEUTRAL, OKABE_ITO, REFERENCE, SETTING_LABELS, fmt
from .dashboard import Dashboard

#: one colour and dash per instance slot (Okabe-Ito, colour-blind safe)
SLOT_COLORS = tuple(OKABE_ITO[k] for k in ("orange", "sky_blue", "bluish_green", "blue", "vermillion",
                                           "reddish_purple"))
SLOT_DASH = ("solid", "dashed", "dotdash", "dotted", "solid", "dashed")
MAX_SLOTS = 6
CACHE_SIZE = 24
MEM_CLIP = 1.5          # memory above this share of the limit (the tick an instance is killed) is drawn at it


class FlowControlDashboard(Dashboard):
    lab_name = "flow-control"
    memory_controls = ()          # the cluster's size is not a control here
    memo_size = CACHE_SIZE        # runs remembered: toggling back is instant

    def make_controls(self) -> dict:
        import ipywidgets as w

        style = {"description_width": "180px"}
        lay = w.Layout(width="400px")
        return {
            "switch": self.switch_control(description="flow_control", style=style,
                                          tooltips=["max-inflight only",
                                                    "LISTs 429 until the cache is ready; User-Agent limit",
                                                    "KEP-4568 + API Priority and Fairness"]),
            "incident": w.Dropdown(options=[("restart, then DaemonSet", "both"), ("restart only", "restart"),
                                            ("DaemonSet only", "daemonset")], value="both",
                                   description="incidents", style=style, layout=lay),
            "restart_mode": w.Dropdown(options=[("all at once", "all"), ("rolling, one at a time", "rolling")],
                                       value="all", description="API servers restart", style=style, layout=lay),
            "lb_policy": w.Dropdown(options=[("their addresses (client-side)", "client-side"),
                                             ("a /readyz-checked load balancer", "round-robin")],
                                    value="client-side", description="clients find servers by", style=style,
                                    layout=lay),
            "inflight": w.SelectionSlider(options=[400, 1000, 3000], value=400,
                                          description="--max-requests-inflight", continuous_update=False,
                                          style=style, layout=lay),
            "ds_list_period": w.SelectionSlider(options=[60, 120, 300, 600, 1800, 3600], value=300,
                                                description="DaemonSet lists every (s)", continuous_update=False,
                                                style=style, layout=lay),
            "operator_reaction_s": w.SelectionSlider(options=[0, 60, 300, 600, 900], value=300,
                                                     description="operator reacts after (s)",
                                                     continuous_update=False, style=style, layout=lay),
            "workload_low": w.SelectionSlider(options=[5, 20, 50, 100, 200], value=100,
                                              description="workload-low shares", continuous_update=False,
                                              style=style, layout=lay),
        }

    def overrides(self):
        c = self.controls
        ro = int(c["inflight"].value)
        o = {"incident": c["incident"].value, "restart_mode": c["restart_mode"].value,
             "lb_policy": c["lb_policy"].value, "max_requests_inflight": ro,
             "max_mutating_requests_inflight": max(200, ro // 3 if ro > 400 else 200),
             "ds_list_period": float(c["ds_list_period"].value),
             "operator_reaction_s": float(c["operator_reaction_s"].value)}
        if int(c["workload_low"].value) != 100:
            o["apf_shares"] = f"workload-low={int(c['workload_low'].value)}"
        return c["switch"].value, o

    def make_figures(self):
        from bokeh.layouts import gridplot
        from bokeh.models import BoxAnnotation, ColumnDataSource, Span
        from bokeh.plotting import figure

        S = self.sources
        cols = {"t": []}
        for j in range(MAX_SLOTS):
            cols.update({f"mem{j}": [], f"cpu{j}": []})
        S["inst"] = ColumnDataSource(cols)
        S["kills"] = ColumnDataSource(dict(t=[], y=[]))
        S["net"] = ColumnDataSource(dict(t=[], etcd=[], out=[]))
        S["relists"] = ColumnDataSource(dict(t=[], cache=[], etcd=[], rejected=[]))
        S["nodes"] = ColumnDataSource(dict(t=[], lease=[], notready=[]))
        kw = dict(width=440, height=220, toolbar_location=None, x_axis_label="simulated minutes")
        f1 = figure(title="memory per API server (OOM kills: x)", y_axis_label="share of its limit", **kw)
        f1.y_range.end = MEM_CLIP + 0.1
        f2 = figure(title="CPU per API server", y_axis_label="share of its cores", **kw)
        self.lines = []
        shown = min(MAX_SLOTS, int(self.lab.params["apiservers"].default))
        for j in range(MAX_SLOTS):
            style = dict(line_width=2, color=SLOT_COLORS[j], line_dash=SLOT_DASH[j])
            label = {"legend_label": f"apiserver-{j}"} if j < shown else {}
            self.lines.append((f1.line("t", f"mem{j}", source=S["inst"], **label, **style),
                               f2.line("t", f"cpu{j}", source=S["inst"], **style)))
        f1.scatter("t", "y", source=S["kills"], marker="x", size=12, color=OKABE_ITO["black"], line_width=2)
        f1.add_layout(Span(location=1.0, dimension="width", line_dash="dashed", line_color=REFERENCE))
        f1.legend.location = "top_left"
        f1.legend.label_text_font_size = "8pt"
        f1.legend.background_fill_alpha = 0.6
        f3 = figure(title="the network", y_axis_label="share of the links' capacity", **kw)
        f3.line("t", "etcd", source=S["net"], color=OKABE_ITO["vermillion"], line_width=2, legend_label="etcd -> API servers")
        f3.line("t", "out", source=S["net"], color=OKABE_ITO["blue"], line_width=2, line_dash="dashed",
                legend_label="API servers -> clients (busiest)")
        f4 = figure(title="re-lists per second", y_axis_label="LISTs / s", **kw)
        f4.line("t", "cache", source=S["relists"], color=OKABE_ITO["bluish_green"], line_width=2, legend_label="served from cache")
        f4.line("t", "etcd", source=S["relists"], color=OKABE_ITO["vermillion"], line_width=2, line_dash="dashed",
                legend_label="served from etcd")
        f4.line("t", "rejected", source=S["relists"], color=OKABE_ITO["reddish_purple"], line_width=2, line_dash="dotted",
                legend_label="answered 429")
        f5 = figure(title="the nodes", y_axis_label="share", **kw)
        f5.line("t", "lease", source=S["nodes"], color=OKABE_ITO["blue"], line_width=2, legend_label="Lease renewals ok")
        f5.line("t", "notready", source=S["nodes"], color=OKABE_ITO["vermillion"], line_width=2, line_dash="dashed",
                legend_label="nodes wrongly NotReady")
        for f in (f3, f4, f5):
            f.legend.location = "top_right"
            f.legend.label_text_font_size = "8pt"
            f.legend.background_fill_alpha = 0.6
        self.figures = [f1, f2, f3, f4, f5]
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
        return gridplot([[f1, f2], [f3, f4], [f5, None]], toolbar_location=None)

    def fill(self, result) -> None:
        cp, parts = result.cp, result.parts
        flood, health = parts["flood"], parts["health"]
        n = cp._i
        k = cp.k
        t = cp.rec_t[:n]
        minutes = t / 60.0
        limit = float(cp.inst.limit)
        data = {"t": minutes}
        mem = np.minimum(cp.rec["memory_bytes"][:n] / limit, MEM_CLIP)
        cpu = np.nan_to_num(cp.rec["cpu_util"][:n])
        for j in range(MAX_SLOTS):
            if j < k:
                data[f"mem{j}"], data[f"cpu{j}"] = mem[:, j], _smooth(cpu[:, j], 3)
            else:
                data[f"mem{j}"] = data[f"cpu{j}"] = np.full(n, np.nan)
        self.sources["inst"].data = data
        for j, pair in enumerate(self.lines):
            for g in pair:
                g.visible = j < k
        ev = result.events
        kills = ev[ev["event"] == "OOMKilled"] if len(ev) else ev
        self.sources["kills"].data = dict(t=(kills["time"].to_numpy() / 60.0) if len(kills) else [],
                                          y=np.minimum(kills["memory_bytes"].to_numpy() / limit, MEM_CLIP)
                                          if len(kills) else [])
        etcd_cap = max(flood.etcd_net, 1e-9)
        self.sources["net"].data = dict(t=minutes, etcd=_smooth(flood.rec_etcd["etcd_bytes_read_per_s"][:n] / etcd_cap,
                                                                5),
                                        out=_smooth(flood.rec["net_out_util"][:n].max(axis=1), 5))
        dt = cp.dt
        started = flood.rec["relists_started"][:n].sum(axis=1)
        from_etcd = flood.rec["relists_from_etcd"][:n].sum(axis=1)
        self.sources["relists"].data = dict(t=minutes, cache=_smooth((started - from_etcd) / dt, 5),
                                            etcd=_smooth(from_etcd / dt, 5),
                                            rejected=_smooth(flood.rec["relists_rejected"][:n].sum(axis=1) / dt, 5))
        ok, bad = health.rec_ok[:n], health.rec_fail[:n]
        tot = ok + bad
        lease = np.where(tot > 0, ok / np.maximum(tot, 1), np.nan)
        self.sources["nodes"].data = dict(t=minutes, lease=_ffill(lease),
                                          notready=health.rec_notready[:n] / max(health.n, 1))
        p = result.summary["params"]
        spans = []
        if p["incident"] in ("restart", "both"):
            spans.append((p["restart_at"] / 60.0, (p["ds_start"] if p["incident"] == "both" else p["duration"]) / 60.0))
        if p["incident"] in ("daemonset", "both"):
            spans.append((p["ds_start"] / 60.0, p["duration"] / 60.0))
        for pair in self.boxes:
            for m, box in enumerate(pair):
                left, right = spans[m] if m < len(spans) else (0.0, 0.0)
                box.left, box.right = left, right
                box.fill_color = NEUTRAL if m == 0 else OKABE_ITO["reddish_purple"]
        sm = result.summary
        rows = [("API server OOM kills", str(sm.get("apiserver_crashes", 0)), "")]
        if "restart_recovery_s" in sm:
            rows += [("<b>restart</b>: time until all ready and re-listed", _time(sm["restart_recovery_s"]), ""),
                     ("&nbsp;&nbsp;re-lists served by etcd", fmt(sm["restart_relists_from_etcd"]), ""),
                     ("&nbsp;&nbsp;etcd read at most", fmt(sm["restart_etcd_bytes_read_peak_per_s"] / 1e9), "GB/s"),
                     ("&nbsp;&nbsp;busiest resource", sm["restart_binding_resource"], ""),
                     ("&nbsp;&nbsp;nodes wrongly NotReady (most)", fmt(sm["restart_nodes_notready_max"]), "")]
        if "ds_crashes" in sm:
            rows += [("<b>DaemonSet</b>: OOM kills", str(sm["ds_crashes"]), ""),
                     ("&nbsp;&nbsp;its LISTs served / offered", f"{sm['ds_lists_served_per_s']:.2f} / "
                                                               f"{sm['ds_lists_offered_per_s']:.1f}", "per s"),
                     ("&nbsp;&nbsp;Lease renewals that succeed", fmt(100 * sm["ds_lease_success_share"]), "%"),
                     ("&nbsp;&nbsp;nodes wrongly NotReady (most)", fmt(sm["ds_nodes_notready_max"]), "")]
        body = "".join(f"<tr><td style='padding-right:12px'>{a}</td><td style='text-align:right'><b>{v}</b> {u}"
                       f"</td></tr>" for a, v, u in rows)
        self.summary.value = (f"<div style='font-size:13px'><b>{SETTING_LABELS[result.setting]}</b>, "
                              f"{p['nodes']:,} nodes, {p['apiservers']} API servers, "
                              f"--max-requests-inflight={p['max_requests_inflight']}<table>{body}</table></div>")


def _smooth(x: np.ndarray, k: int) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if k <= 1 or x.size < k:
        return x
    c = np.cumsum(np.insert(np.nan_to_num(x), 0, 0.0))
    out = np.empty_like(x)
    out[k - 1:] = (c[k:] - c[:-k]) / k
    out[: k - 1] = c[1:k] / np.arange(1, k)
    return out


def _ffill(x: np.ndarray) -> np.ndarray:
    out = np.asarray(x, dtype=float).copy()
    last = 1.0
    for i in range(out.size):
        if np.isnan(out[i]):
            out[i] = last
        else:
            last = out[i]
    return out


def _time(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if math.isinf(x):
        return "not within the run"
    return f"{x:.0f} s"

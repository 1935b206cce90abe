"""The context-cancellation lab's dashboard: a slow dependency, three API servers, 20,000 clients.

Left: the switch, the incident (a slow webhook, a slow etcd, both), how slow the webhook
is, how long clients wait and how they retry, which writes the webhook matches, the
max-inflight limits, the memory limit. Right: the run's figures (goroutines beside
Little's law, goodput, waste, crashes). Below, over the 30 simulated minutes: request
goroutines with the arrival rate x timeout they would hold with cancellation; memory per
API server against its limit; answers reaching waiting clients, 429s and retries; what
happened to the requests whose client did not get a success. The incident is shaded.
"""

from __future__ import annotations

import numpy as np

from . import COLORS, LIMIT, NEUTRAL, OKABE_ITO, SETTING_LABELS, fmt
from .apiserver_lb import SLOT_COLORS, SLOT_DASH, _smooth
from .dashboard import Dashboard

MAX_SLOTS = 3          # the lab runs 3 API servers (no surge)
GIB = 1024**3
LIMITS = {"GCE above 3000 nodes (3000 / 1000)": (3000, 1000), "flag defaults (400 / 200)": (400, 200),
          "disabled (0)": (0, 0)}
SCOPES = {"pods and workloads": "pod_status pod_bind controller_write",
          "every write": "lease node_status pod_status controller_write pod_bind"}


class ContextCancelDashboard(Dashboard):
    lab_name = "context-cancel"
    memo_size = 24                 # flipping back to a setting seen before reruns nothing
    memory_controls = ()           # no size slider: 10k nodes always fit

    def make_controls(self) -> dict:
        import ipywidgets as w

        style = {"description_width": "150px"}
        lay = w.Layout(width="400px")
        slider = dict(continuous_update=False, style=style, layout=lay)
        return {
            "switch": self.switch_control(description="context_cancel", style=style,
                                          tooltips=["work continues after the client gave up",
                                                    "context propagated: downstream calls stop (1.16)",
                                                    "deadline from ?timeout=, v1 webhooks (10 s, Fail)"]),
            "incident": w.Dropdown(options=["webhook", "etcd", "both", "none"], value="webhook",
                                   description="slow dependency", style=style, layout=lay),
            "webhook_slow_latency": w.SelectionSlider(options=[2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0], value=20.0,
                                                      description="webhook call (s)", **slider),
            "client_timeout": w.SelectionSlider(options=[2.0, 5.0, 10.0, 20.0, 30.0, 60.0], value=10.0,
                                                description="client timeout (s)", **slider),
            "client_retry": w.Dropdown(options=["immediate", "backoff", "none"], value="immediate",
                                       description="clients retry", style=style, layout=lay),
            "scope": w.Dropdown(options=list(SCOPES), value="pods and workloads", description="webhook matches",
                                style=style, layout=lay),
            "inflight": w.Dropdown(options=list(LIMITS), value=list(LIMITS)[0], description="max-inflight",
                                   style=style, layout=lay),
            "memory_gib": w.SelectionSlider(options=[8, 10, 12, 16, 24, 32, 64], value=64,
                                            description="memory limit (GiB)", **slider),
        }

    def overrides(self):
        c = self.controls
        ro, mut = LIMITS[c["inflight"].value]
        return c["switch"].value, {
            "incident": c["incident"].value, "webhook_slow_latency": float(c["webhook_slow_latency"].value),
            "client_timeout": float(c["client_timeout"].value), "client_retry": c["client_retry"].value,
            "webhook_streams": SCOPES[c["scope"].value], "max_requests_inflight": ro,
            "max_mutating_requests_inflight": mut, "apiserver_memory_limit_bytes": int(c["memory_gib"].value) * GIB,
        }

    def make_figures(self):
        from bokeh.layouts import gridplot
        from bokeh.models import BoxAnnotation, ColumnDataSource, Range1d, Span
        from bokeh.plotting import figure

        S = self.sources
        S["g"] = ColumnDataSource(dict(t=[], goroutines=[], little=[], waiting=[]))
        cols = {"t": []}
        for j in range(MAX_SLOTS):
            cols[f"mem{j}"] = []
        S["mem"] = ColumnDataSource(cols)
        S["flow"] = ColumnDataSource(dict(t=[], goodput=[], rejected=[], retries=[]))
        S["fate"] = ColumnDataSource(dict(t=[], timed_out=[], cancelled=[], failed=[], lost=[], wasted=[]))
        kw = dict(width=440, height=230, toolbar_location=None, x_axis_label="simulated minutes")
        f1 = figure(title="request goroutines (all API servers)", y_axis_label="goroutines", **kw)
        f1.line("t", "goroutines", source=S["g"], color=OKABE_ITO["vermillion"], line_width=2,
                legend_label="goroutines")
        f1.line("t", "little", source=S["g"], color=OKABE_ITO["blue"], line_width=2, line_dash="dashed",
                legend_label="admitted/s x timeout")
        f1.line("t", "waiting", source=S["g"], color=OKABE_ITO["bluish_green"], line_width=2, line_dash="dotted",
                legend_label="clients waiting")
        f2 = figure(title="memory per API server", y_axis_label="share of its limit", y_range=Range1d(0, 1.05), **kw)
        self.mem_lines = []
        for j in range(MAX_SLOTS):
            self.mem_lines.append(f2.line("t", f"mem{j}", source=S["mem"], color=SLOT_COLORS[j], line_width=2,
                                          line_dash=SLOT_DASH[j], legend_label=f"apiserver-{j}"))
        f2.add_layout(Span(location=1.0, dimension="width", line_dash="dashed", line_color=LIMIT))
        f3 = figure(title="goodput (answers to waiting clients), 429s, retries", y_axis_label="requests / s", **kw)
        f3.line("t", "goodput", source=S["flow"], color=OKABE_ITO["blue"], line_width=2,
                legend_label="goodput")
        f3.line("t", "rejected", source=S["flow"], color=OKABE_ITO["vermillion"], line_width=2, line_dash="dashed",
                legend_label="429s")
        f3.line("t", "retries", source=S["flow"], color=COLORS[2], line_width=2, line_dash="dotted",
                legend_label="retries")
        f4 = figure(title="requests whose client got no success (per s)", y_axis_label="requests / s", **kw)
        f4.line("t", "timed_out", source=S["fate"], color=OKABE_ITO["vermillion"], line_width=2,
                legend_label="orphan (work ran on)")
        f4.line("t", "cancelled", source=S["fate"], color=OKABE_ITO["blue"], line_width=2, line_dash="dashed",
                legend_label="cancelled")
        f4.line("t", "failed", source=S["fate"], color=COLORS[0], line_width=2, line_dash="dotdash",
                legend_label="error answer")
        f4.line("t", "lost", source=S["fate"], color=COLORS[3], line_width=2, line_dash="dotted",
                legend_label="lost in a crash")
        self.figures = [f1, f2, f3, f4]
        self.boxes = []
        for f, where in zip(self.figures, ("top_right", "center_right", "top_right", "top_right")):
            f.y_range.start = 0
            f.x_range.start = 0
            f.legend.location = where
            f.legend.label_text_font_size = "8pt"
            f.legend.background_fill_alpha = 0.6
            b = BoxAnnotation(left=0, right=0, fill_alpha=0.12, fill_color=NEUTRAL)
            f.add_layout(b)
            self.boxes.append(b)
        return gridplot([[f1, f2], [f3, f4]], toolbar_location=None)

    def fill(self, result) -> None:
        s, inst, sm = result.series, result.instances, result.summary
        p = sm["params"]
        t = s["time"].to_numpy()
        n = t.size
        minutes = t / 60.0
        k = len(inst) // max(n, 1)
        during = (t >= p["incident_at"]) & (t < p["incident_at"] + p["incident_for"]) & (p["incident"] != "none")
        little = np.where(during, _smooth(s["little_product"].to_numpy(), 10), np.nan)
        self.sources["g"].data = {"t": minutes, "goroutines": s["apiserver_request_goroutines"].to_numpy(),
                                  "little": little, "waiting": s["clients_waiting"].to_numpy()}
        mem = inst["memory_bytes"].to_numpy().reshape(n, k) / float(p["apiserver_memory_limit_bytes"])
        data = {"t": minutes}
        for j in range(MAX_SLOTS):
            data[f"mem{j}"] = mem[:, j] if j < k else np.full(n, np.nan)
            self.mem_lines[j].visible = j < k
        self.sources["mem"].data = data
        self.figures[1].y_range.end = max(1.05, 1.1 * float(np.nanmax(mem)) if mem.size else 1.05)
        self.sources["flow"].data = {"t": minutes, "goodput": _smooth(s["goodput_per_s"].to_numpy(), 5),
                                     "rejected": _smooth(s["rejected_per_s"].to_numpy(), 5),
                                     "retries": _smooth(s["retries_per_s"].to_numpy(), 5)}
        self.sources["fate"].data = {"t": minutes, **{o: _smooth(s[f"{o}_per_s"].to_numpy(), 5) for o in
                                                      ("timed_out", "cancelled", "failed", "lost")},
                                     "wasted": s["wasted_cpu_cores"].to_numpy()}
        a, e = (p["incident_at"] / 60.0, (p["incident_at"] + p["incident_for"]) / 60.0) \
            if p["incident"] != "none" else (0.0, 0.0)
        for box in self.boxes:
            box.left, box.right = a, e
        rows = [
            ("API server OOM kills", str(sm.get("apiserver_crashes", 0)), ""),
            ("request goroutines, peak", fmt(sm["goroutines_peak"]), ""),
            ("slowed streams, steady: goroutines", fmt(sm["affected_goroutines_steady"]), ""),
            ("&nbsp;&nbsp;admitted/s x client timeout", fmt(sm["little_product"]), ""),
            ("goodput during / before", fmt(100 * sm["goodput_share_during"]), "%"),
            ("429s during the incident", fmt(sm["rejected_during_per_s"]), "/s"),
            ("CPU on clients already gone", fmt(sm["wasted_cpu_cores_during"]), "cores"),
            ("memory peak (share of limit)", fmt(100 * sm["memory_peak_share"]), "%"),
        ]
        body = "".join(f"<tr><td style='padding-right:12px'>{x}</td><td style='text-align:right'><b>{v}</b> {u}"
                       f"</td></tr>" for x, v, u in rows)
        self.summary.value = (f"<div style='font-size:13px'><b>{SETTING_LABELS[result.setting]}</b>, "
                              f"{p['nodes']:,} nodes, incident: {p['incident']}<table>{body}</table></div>")

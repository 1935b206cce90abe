"""The cached-reads lab's dashboard: where the time of 'kubectl describe node' goes."""

from __future__ import annotations

import numpy as np

from ..apiserver.consistent_read import COMPONENTS
from ..claims import load_claims
from . import COLORS, HATCHES, MARKERS, NEUTRAL, OKABE_ITO, PALETTE, SETTING_LABELS, fmt, setting_style
from .dashboard import Dashboard

ROWS = [("describe node", "GET node", "describe: GET node"),
        ("describe node", "LIST pods", "describe: LIST pods"),
        ("describe node", "LIST events", "describe: LIST events"),
        ("describe node", "kubectl", "describe: kubectl"),
        ("get nodes", "LIST nodes", "get nodes: LIST"),
        ("get nodes", "kubectl", "get nodes: kubectl"),
        ("kubelet LIST storm", "kubelet LIST pods", "kubelet LIST (no queue)")]
LABELS = [r[2] for r in ROWS]
_O = OKABE_ITO
COMPONENT_COLORS = dict(zip(COMPONENTS, (_O["sky_blue"], _O["yellow"], NEUTRAL, _O["vermillion"], _O["orange"],
                                         _O["reddish_purple"], _O["bluish_green"], _O["blue"], _O["black"]), strict=True))
# a second cue beside colour: neighbours in the stack never share a hatch
COMPONENT_HATCHES = dict(zip(COMPONENTS, (" ", "/", ".", " ", "\\", "x", " ", "-", " "), strict=True))
COMPONENT_LABELS = {"rtt": "round trips", "fresh": "wait for fresh cache", "queue": "queueing",
                    "etcd": "etcd (quorum ranges)", "transfer": "transfer", "decode": "decode etcd objects",
                    "filter": "cache filter / index", "encode": "encode response", "client": "client"}
SCENARIO_ORDER = ("describe node", "get nodes", "kubelet LIST p99")


def breakdown(requests) -> dict:
    """Per row of :data:`ROWS`: the latency components (seconds), for a ColumnDataSource.
    The storm's median kubelet LIST is shown without its queueing (the storm plot shows
    the queues), so that one request of each kind is on the same scale."""
    out = {"row": LABELS}
    idx = {(r.scenario, r.kind): r for r in requests.itertuples()}

    def value(s, k, c):
        if (s, k) not in idx or (c == "queue" and s == "kubelet LIST storm"):
            return 0.0
        return float(getattr(idx[(s, k)], c))

    for c in COMPONENTS:
        out[c] = [value(s, k, c) for s, k, _ in ROWS]
    out["total"] = [sum(out[c][i] for c in COMPONENTS) for i in range(len(ROWS))]
    out["source"] = [str(idx[(s, k)].source) if (s, k) in idx else "" for s, k, _ in ROWS]
    return out


def headline(summary) -> dict:
    return {"describe node": summary["describe_node_seconds"], "get nodes": summary["get_nodes_seconds"],
            "kubelet LIST p99": summary["kubelet_list_p99_seconds"]}


class CachedReadsDashboard(Dashboard):
    """Controls: the switch, nodes, pods per node, page size (``--chunk-size``), the
    spec.nodeName index, whether events have a watch cache. Plots: latency breakdown
    per request, the three settings side by side, API server and etcd CPU per request,
    the kubelet LIST storm over time."""

    lab_name = "cached-reads"
    memory_controls = ("nodes", "pods_per_node")

    def __init__(self, **initial):
        self._cache: dict = {}
        super().__init__(**initial)

    def make_controls(self) -> dict:
        import ipywidgets as w

        style = {"description_width": "140px"}
        lay = w.Layout(width="390px")
        return {
            "switch": self.switch_control(description="cached reads", style=style,
                                      tooltips=["quorum reads from etcd, paged, filtered in the API server",
                                                "wait until fresh, then the indexed watch cache",
                                                "KEP-2340: progress every 100 ms, LIST from cache, GET from etcd"]),
            "nodes": w.IntSlider(value=10_000, min=1_000, max=20_000, step=1_000, description="nodes",
                                 continuous_update=False, style=style, layout=lay),
            "pods_per_node": w.IntSlider(value=20, min=5, max=110, step=5, description="pods per node",
                                         continuous_update=False, style=style, layout=lay),
            "page_size": w.Dropdown(options=[("no paging (one response)", 0), ("100", 100), ("500 (kubectl)", 500),
                                             ("1,000", 1000), ("5,000", 5000), ("10,000", 10_000)],
                                    value=500, description="page size (limit)", style=style, layout=lay),
            "index": w.Checkbox(value=True, description="spec.nodeName index in the cache", style=style,
                                layout=lay),
            "events_cache": w.Dropdown(options=[("as the setting does", "default"), ("yes", "yes"), ("no", "no")],
                                       value="default", description="events watch cache", style=style, layout=lay),
        }

    def overrides(self):
        c = self.controls
        o = {"nodes": c["nodes"].value, "pods": c["nodes"].value * c["pods_per_node"].value,
             "events": int(c["nodes"].value * self.lab.params["events"].default / 10_000),
             "page_size": c["page_size"].value, "pods_index": bool(c["index"].value)}
        if c["events_cache"].value != "default":
            o["events_watch_cache"] = c["events_cache"].value == "yes"
        return c["switch"].value, o

    def run_cached(self, setting, overrides):
        key = (setting, tuple(sorted(overrides.items())))
        if key not in self._cache:
            if len(self._cache) > 12:
                self._cache.clear()
            self._cache[key] = self.lab.run(setting, overrides)
        return self._cache[key]

    def make_figures(self):
        from bokeh.layouts import gridplot
        from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Legend
        from bokeh.plotting import figure

        S = self.sources
        empty = {c: [0.0] * len(LABELS) for c in COMPONENTS}
        S["breakdown"] = ColumnDataSource(dict(row=LABELS, total=[0.0] * len(LABELS), source=[""] * len(LABELS),
                                               **empty))
        kw = dict(width=440, height=260, toolbar_location=None)
        f1 = figure(title="latency breakdown, one request of each kind", y_range=FactorRange(*reversed(LABELS)),
                    x_axis_label="seconds", width=440, height=330, toolbar_location=None)
        bars = f1.hbar_stack(list(COMPONENTS), y="row", height=0.7, source=S["breakdown"],
                             color=[COMPONENT_COLORS[c] for c in COMPONENTS],
                             hatch_pattern=[COMPONENT_HATCHES[c] for c in COMPONENTS], hatch_color="white")
        f1.add_layout(Legend(items=[(COMPONENT_LABELS[c], [r]) for c, r in zip(COMPONENTS, bars, strict=True)],
                             orientation="horizontal", ncols=3, label_text_font_size="7pt", spacing=2, padding=2,
                             margin=2, glyph_width=12, glyph_height=10), "below")
        f1.x_range.start = 0
        f1.add_tools(HoverTool(tooltips=[("request", "@row"), ("total", "@total{0.000} s"), ("served by", "@source")]))
        self.breakdown_figure = f1

        cats = [(s, st) for s in SCENARIO_ORDER for st in ("off", "article", "upstream")]
        S["compare"] = ColumnDataSource(dict(x=cats, y=[1e-3] * len(cats), color=[PALETTE[c[1]] for c in cats],
                                             hatch=[HATCHES[c[1]] for c in cats]))
        claims = {c.claim: c for c in load_claims("cached-reads")}
        S["article"] = ColumnDataSource(dict(x=[("describe node", "off"), ("describe node", "article")],
                                             y=[claims["describe_node_off_s"].value,
                                                claims["describe_node_article_s"].value]))
        f2 = figure(title="the three settings (x: the article's figure)", x_range=FactorRange(*cats),
                    y_axis_type="log", y_axis_label="seconds", width=440, height=330, toolbar_location=None)
        f2.vbar(x="x", top="y", bottom=1e-4, width=0.8, color="color", hatch_pattern="hatch", hatch_color="white",
                source=S["compare"])
        f2.scatter(x="x", y="y", source=S["article"], marker="x", size=14, line_width=3, color=COLORS[3])
        f2.xaxis.major_label_orientation = 1.0
        f2.xaxis.group_label_orientation = 0
        f2.y_range.start = 1e-3

        S["cpu"] = ColumnDataSource(dict(row=LABELS, api=[0.0] * len(LABELS), etcd=[0.0] * len(LABELS)))
        f3 = figure(title="CPU per request: API server and etcd", y_range=FactorRange(*reversed(LABELS)),
                    x_axis_label="core-seconds", **kw)
        cpu_bars = f3.hbar_stack(["api", "etcd"], y="row", height=0.7, source=S["cpu"], color=[PALETTE["article"], PALETTE["off"]],
                                   hatch_pattern=[" ", "/"], hatch_color="white")
        f3.add_layout(Legend(items=[("API server", [cpu_bars[0]]), ("etcd (all members)", [cpu_bars[1]])],
                             orientation="horizontal", label_text_font_size="8pt", padding=2, margin=2), "below")
        f3.x_range.start = 0

        S["storm"] = ColumnDataSource(dict(t=[], api=[], etcd=[], rejected=[]))
        f4 = figure(title="kubelets LIST their pods at once: CPU in use", x_axis_label="seconds",
                    y_axis_label="cores", **kw)
        f4.line("t", "api", source=S["storm"], line_width=2, color=PALETTE["article"], legend_label="API servers")
        f4.line("t", "etcd", source=S["storm"], line_width=2, color=PALETTE["off"], line_dash="dashed",
                legend_label="etcd")
        f4.scatter("t", "rejected", source=S["storm"], size=4, marker="x", color=NEUTRAL, legend_label="429s per tick")
        f4.legend.label_text_font_size = "8pt"
        f4.legend.location = "top_right"
        f4.y_range.start = 0
        self.figures = [f1, f2, f3, f4]
        return gridplot([[f1, f2], [f3, f4]], toolbar_location=None)

    def fill(self, result) -> None:
        setting = result.setting
        _, overrides = self.overrides()
        self._cache[(setting, tuple(sorted(overrides.items())))] = result
        req = result.requests
        self.sources["breakdown"].data = breakdown(req)
        idx = {(r.scenario, r.kind): r for r in req.itertuples()}
        self.sources["cpu"].data = dict(
            row=LABELS, api=[float(idx[(s, k)].cpu_apiserver) if (s, k) in idx else 0.0 for s, k, _ in ROWS],
            etcd=[float(idx[(s, k)].cpu_etcd) if (s, k) in idx else 0.0 for s, k, _ in ROWS])
        heads = {s: headline((result if s == setting else self.run_cached(s, overrides)).summary)
                 for s in ("off", "article", "upstream")}
        cats = [(sc, st) for sc in SCENARIO_ORDER for st in ("off", "article", "upstream")]
        ys = [heads[st][sc] for sc, st in cats]
        self.sources["compare"].data = dict(x=cats, y=[max(float(y), 1e-4) if np.isfinite(y) else 1e-4 for y in ys],
                                            color=[PALETTE[c[1]] for c in cats], hatch=[HATCHES[c[1]] for c in cats])
        s = result.series
        self.sources["storm"].data = dict(t=s["time"].to_numpy(), api=s["apiserver_cpu_cores"].to_numpy(),
                                          etcd=s["etcd_cpu_cores"].to_numpy(), rejected=s["rejected_429"].to_numpy())
        self.breakdown_figure.title.text = (f"{setting}: describe node {fmt(result.summary['describe_node_seconds'], 's')}"
                                            f", get nodes {fmt(result.summary['get_nodes_seconds'], 's')}")
        self.summary.value = summary_html(self.lab, result)


def summary_html(lab, result) -> str:
    sm = result.summary
    claims = {c.claim: c for c in load_claims(lab.name)}
    art = {"off": claims["describe_node_off_s"].article, "article": claims["describe_node_article_s"].article}
    rows = [
        ("kubectl describe node", fmt(sm["describe_node_seconds"], "s"), art.get(result.setting, "")),
        ("  LIST pods: decoded / returned", f"{sm['apiserver_storage_list_evaluated_objects_total']:,} / "
                                            f"{sm['describe_node_pods_returned']:,}", ""),
        ("  objects scanned in the cache", f"{sm['describe_node_objects_scanned_in_cache']:,}", ""),
        ("  etcd round trips (quorum reads)", f"{sm['describe_node_etcd_range_requests']:,} "
                                              f"({sm['describe_node_quorum_reads']:,})", ""),
        ("  bytes from etcd", fmt(sm["describe_node_bytes_from_etcd"] / 1e6, "MB"), ""),
        ("  CPU: API server / etcd", f"{fmt(sm['describe_node_apiserver_cpu_seconds'])} / "
                                     f"{fmt(sm['describe_node_etcd_cpu_seconds'], 's')}", ""),
        ("  wait for a fresh cache", fmt(sm["apiserver_watch_cache_read_wait_seconds"] * 1000, "ms"), ""),
        ("kubectl get nodes", fmt(sm["get_nodes_seconds"], "s"), claims["get_nodes_speedup_article"].article),
        ("kubelet LIST storm: p99", fmt(sm["kubelet_list_p99_seconds"], "s"), ""),
        ("  failed (429 / timeout / 504)", fmt(100 * sm["kubelet_list_failed_share"], "%"), ""),
        ("stale reads: resourceVersion=0", fmt(100 * sm["read_after_write_stale_share_rv0"], "%"), ""),
        ("stale reads: consistent", fmt(100 * sm["read_after_write_stale_share_consistent"], "%"),
         claims["stale_reads_consistent_article"].article),
    ]
    body = "".join(f"<tr><td style='padding-right:6px;white-space:pre'>{a}</td><td style='text-align:right;"
                   f"white-space:nowrap'><b>{b}</b></td><td style='color:#666;padding-left:6px'>{c}</td></tr>"
                   for a, b, c in rows)
    return (f"<div style='font-size:11px;line-height:1.3'><b>{SETTING_LABELS[result.setting]}</b>"
            f"<table style='width:390px'><tr><th></th><th>lab</th><th>article</th></tr>{body}</table></div>")


def settings_table(lab, overrides=None):
    """The headline figures of the three settings as a DataFrame."""
    import pandas as pd

    rows = []
    for s in lab.settings:
        sm = lab.run(s, overrides).summary
        rows.append({"setting": s, "describe node (s)": sm["describe_node_seconds"],
                     "  LIST pods (s)": sm["describe_node_list_pods_seconds"],
                     "  LIST events (s)": sm["describe_node_list_events_seconds"],
                     "get nodes (s)": sm["get_nodes_seconds"],
                     "objects decoded": sm["describe_node_objects_decoded"],
                     "etcd round trips": sm["describe_node_etcd_range_requests"],
                     "kubelet LIST p99 (s)": sm["kubelet_list_p99_seconds"],
                     "kubelet LISTs failed": sm["kubelet_list_failed_share"]})
    return pd.DataFrame(rows)


def scale_figure(lab, nodes=(1000, 2500, 5000, 10_000)):
    """describe node latency against cluster size, per setting (log y)."""
    from bokeh.plotting import figure

    f = figure(title="kubectl describe node vs cluster size (20 pods per node)", width=640, height=300,
               x_axis_label="nodes", y_axis_label="seconds", y_axis_type="log", toolbar_location=None)
    for s in lab.settings:
        ys = [lab.run(s, {"nodes": int(n), "consistency_probes": 10, "kubelet_list_share": 0.0}).summary[
            "describe_node_seconds"] for n in nodes]
        f.line(list(nodes), ys, line_width=2, legend_label=SETTING_LABELS[s], **setting_style(s))
        f.scatter(list(nodes), ys, size=7, marker=MARKERS[s], color=PALETTE[s], legend_label=SETTING_LABELS[s])
    f.legend.location = "bottom_right"
    return f

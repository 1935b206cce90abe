"""The etcd storage lab's dashboard: the freelist switch, db size, churn, compaction interval.

Four plots, one ``ColumnDataSource`` each: put latency against db size for both freelists
(the 1-100 GB sweep, with the current size marked), the free space's runs by length, the
db file against the quota over time (with the NOSPACE alarm), and each second's commit time.
"""

from __future__ import annotations

import numpy as np

from ..claims import load_claims
from . import COLORS, DASHES, LIMIT, MARKERS, NEUTRAL, PALETTE, REFERENCE, SETTING_LABELS, fmt, setting_style
from .dashboard import Dashboard

GB = 1e9
FREELIST_COLORS = {"array": PALETTE["off"], "map": PALETTE["article"]}
FREELIST_MARKERS = {"array": MARKERS["off"], "map": MARKERS["article"]}


def _finite(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    return np.where(np.isfinite(a), a, np.nan)


class EtcdStorageDashboard(Dashboard):
    """Controls: the switch (freelist + quota), db size (GB), pod churn, compaction interval,
    which heartbeats feed etcd, one etcd or one per resource. Plots: latency vs db size,
    free-run histogram, db size vs quota, commit time."""

    lab_name = "etcd-storage"

    def make_controls(self) -> dict:
        import ipywidgets as w

        style = {"description_width": "150px"}
        lay = w.Layout(width="370px")
        return {
            "switch": self.switch_control(description="freelist", style=style,
                                      tooltips=["array freelist, 2 GiB quota", "hashmap freelist, 100 GiB quota",
                                                "hashmap (etcd 3.5+), 8 GiB quota"]),
            "db_gb": w.FloatLogSlider(value=2.0, base=10, min=0, max=2, step=0.05, description="db size (GB)",
                                      continuous_update=False, style=style, layout=lay, readout_format=".3g"),
            "churn": w.IntSlider(value=20, min=0, max=100, step=5, description="pod churn (pods/s)",
                                 continuous_update=False, style=style, layout=lay),
            "compaction_min": w.IntSlider(value=5, min=1, max=30, step=1, description="compaction every (min)",
                                          continuous_update=False, style=style, layout=lay),
            "heartbeats": w.Dropdown(options=[("Node status every 10 s", "off"),
                                              ("Lease + status 60 s", "article"),
                                              ("Lease + status 5 min", "upstream")],
                                     value="article", description="heartbeats", style=style, layout=lay),
            "split": w.Dropdown(options=[("one etcd", "none"), ("Events apart", "events"),
                                         ("one etcd per resource", "per-resource")],
                                value="none", description="etcd clusters", style=style, layout=lay),
        }

    def overrides(self):
        c = self.controls
        return c["switch"].value, {
            "db_size_bytes": int(c["db_gb"].value * GB),
            "pod_churn": float(c["churn"].value),
            "etcd_compaction_interval": float(c["compaction_min"].value * 60),
            "duration": float(max(960, 3 * c["compaction_min"].value * 60 + 60)),
            "heartbeat_stream": c["heartbeats"].value,
            "etcd_servers_overrides": c["split"].value,
        }

    def make_figures(self):
        from bokeh.layouts import gridplot
        from bokeh.models import ColumnDataSource, Label, Span
        from bokeh.plotting import figure

        S = self.sources
        S["sweep"] = ColumnDataSource(dict(gb=[], array_p99=[], map_p99=[], array_p50=[], map_p50=[]))
        S["hist"] = ColumnDataSource(dict(run=[], spans=[]))
        S["series"] = ColumnDataSource(dict(t=[], db=[], db_use=[], quota=[], history=[], commit=[]))
        S["alarm"] = ColumnDataSource(dict(t=[], db=[]))
        kw = dict(width=430, height=240, toolbar_location=None)
        f1 = figure(title="put latency vs db size (10k-node write stream)", x_axis_type="log",
                    x_axis_label="db size (GB, half of it free)", y_axis_label="ms", **kw)
        for fl in ("array", "map"):
            f1.line("gb", f"{fl}_p99", source=S["sweep"], line_width=2, color=FREELIST_COLORS[fl],
                    legend_label=f"{fl} p99")
            f1.scatter("gb", f"{fl}_p99", source=S["sweep"], size=6, marker=FREELIST_MARKERS[fl],
                       color=FREELIST_COLORS[fl], legend_label=f"{fl} p99")
            f1.line("gb", f"{fl}_p50", source=S["sweep"], line_width=1, line_dash="dashed",
                    color=FREELIST_COLORS[fl], legend_label=f"{fl} p50")
        self.db_marker = Span(location=2.0, dimension="height", line_dash="dotted", line_color=REFERENCE)
        f1.add_layout(self.db_marker)
        f1.legend.location = "top_left"
        f1.legend.label_text_font_size = "8pt"
        f1.y_range.start = 0
        f2 = figure(title="free space by run length (at this db size)", x_axis_label="run of free pages",
                    y_axis_label="runs", y_axis_type="log", **kw)
        f2.vbar(x="run", top="spans", bottom=1, width=0.8, source=S["hist"], color=NEUTRAL)
        f3 = figure(title="etcd db size vs --quota-backend-bytes", x_axis_label="simulated minutes",
                    y_axis_label="GB", **kw)
        self.db_line = f3.line("t", "db", source=S["series"], line_width=2, color=PALETTE["off"],
                               legend_label="db file")
        f3.line("t", "db_use", source=S["series"], line_width=1, line_dash="dotted", color=COLORS[3],
                legend_label="in use")
        f3.line("t", "history", source=S["series"], line_width=1.5, line_dash="dashdot", color=COLORS[0],
                legend_label="MVCC history")
        f3.line("t", "quota", source=S["series"], line_width=2, line_dash="dashed", color=LIMIT,
                legend_label="quota")
        f3.scatter("t", "db", source=S["alarm"], size=12, marker="x", color=LIMIT, line_width=3,
                   legend_label="NOSPACE")
        f3.legend.location = "top_left"
        f3.legend.label_text_font_size = "8pt"
        f3.y_range.start = 0
        f4 = figure(title="backend commit time (the batch lock)", x_axis_label="simulated minutes",
                    y_axis_label="ms", **kw)
        self.commit_line = f4.line("t", "commit", source=S["series"], line_width=2, color=PALETTE["off"])
        f4.y_range.start = 0
        # when etcd refuses writes (NOSPACE) the plots say so instead of drawing nothing
        self.refused_labels = []
        for f, y in ((f3, 195), (f4, 110)):
            lab = Label(x=12, y=y, x_units="screen", y_units="screen", text="", text_font_size="10pt",
                        text_font_style="bold", text_color=LIMIT, background_fill_color="white",
                        background_fill_alpha=0.8)
            f.add_layout(lab)
            self.refused_labels.append(lab)
        self.figures = [f1, f2, f3, f4]
        return gridplot([[f1, f2], [f3, f4]], toolbar_location=None)

    def fill(self, result) -> None:
        setting, ov = self.overrides()
        sw = self.lab.sweep(setting, ov)
        a, m = sw[sw.freelist == "array"], sw[sw.freelist == "map"]
        self.sweep_df = sw
        self.sources["sweep"].data = dict(
            gb=a.db_bytes.to_numpy() / GB, array_p99=_finite(a.put_p99_s) * 1e3, map_p99=_finite(m.put_p99_s) * 1e3,
            array_p50=_finite(a.put_p50_s) * 1e3, map_p50=_finite(m.put_p50_s) * 1e3)
        self.db_marker.location = ov["db_size_bytes"] / GB
        lengths, counts = self.lab.free_run_histogram(setting, ov)
        keep = lengths <= 40
        self.sources["hist"].data = dict(run=lengths[keep], spans=np.maximum(counts[keep], 1))
        df = result.series
        t = df["time"].to_numpy() / 60.0
        # several etcds (--etcd-servers-overrides): each has its own quota, so the plot shows
        # the fullest one against it, not their sum
        groups = [c for c in df.columns if c.startswith("db_bytes[")]
        db = (df[groups].max(axis=1) if groups else df["etcd_mvcc_db_total_size_in_bytes"]).to_numpy()
        share = db / np.maximum(df["etcd_mvcc_db_total_size_in_bytes"].to_numpy(), 1.0)
        self.figures[2].title.text = ("etcd db size vs --quota-backend-bytes" if not groups else
                                      f"the fullest of {len(groups)} etcds vs --quota-backend-bytes")
        # no commit happens in a second in which etcd accepted no write
        commit = _finite(df["etcd_disk_backend_commit_duration_seconds"].to_numpy()) * 1e3
        commit = np.where(df["etcd_mvcc_put_per_s"].to_numpy() > 0, commit, np.nan)
        self.sources["series"].data = dict(
            t=t, db=db / GB, db_use=df["etcd_mvcc_db_total_size_in_use_in_bytes"].to_numpy() * share / GB,
            quota=df["etcd_server_quota_backend_bytes"].to_numpy() / GB,
            history=df["etcd_mvcc_history_bytes"].to_numpy() * share / GB, commit=commit)
        sm = result.summary
        if np.isnan(sm["etcd_nospace_at_s"]):
            self.sources["alarm"].data = dict(t=[], db=[])
        else:
            i = min(int(sm["etcd_nospace_at_s"]), len(df) - 1)
            self.sources["alarm"].data = dict(t=[t[i]], db=[db[i] / GB])
        refused = refused_text(sm)
        for lab in self.refused_labels:
            lab.text = refused
            lab.visible = bool(refused)
        color = PALETTE[setting]
        for glyph in (self.db_line, self.commit_line):
            glyph.glyph.line_color = PALETTE[setting]
            glyph.glyph.line_dash = DASHES[setting]
        self.summary.value = summary_html(self.lab, result, sw, ov["db_size_bytes"])


REFUSED = "etcd refuses writes: NOSPACE"


def refused_text(sm) -> str:
    """One line when the run's etcd raised NOSPACE (empty otherwise): from when, and
    whether it accepted any write at all."""
    at = sm["etcd_nospace_at_s"]
    if np.isnan(at):
        return ""
    if sm["etcd_mvcc_put_per_s"] <= 0:
        return f"{REFUSED} from {fmt(at, 's')} (every write)"
    return f"{REFUSED} from {fmt(at, 's')} ({fmt(sm['etcd_refused_writes'])} writes refused)"


def latency_text(x, refused: bool = False) -> str:
    """A put latency for people: ms; a commit that cannot keep up (inf) "falls behind";
    no latency at all (no write accepted) says why instead of NaN."""
    if x is None or np.isnan(x):
        return REFUSED if refused else "no writes"
    if not np.isfinite(x):
        return "falls behind"
    return fmt(x * 1e3, "ms")


def summary_html(lab, result, sweep, db_bytes: float) -> str:
    sm = result.summary
    p = sm["params"]
    claims = {c.claim: c for c in load_claims(lab.name)}
    near = sweep.loc[(sweep.db_bytes - db_bytes).abs().groupby(sweep.freelist).idxmin()]
    pt = {r.freelist: r for r in near.itertuples()}
    refused = refused_text(sm)
    dead = bool(refused) and sm["etcd_mvcc_put_per_s"] <= 0
    nospace = "never" if not refused else f"at {fmt(sm['etcd_nospace_at_s'], 's')}"
    groups = [c for c in result.series.columns if c.startswith("db_bytes[")]
    if groups:   # each etcd has its own quota: the fullest one is what can hit it
        peak, peak_label = float(result.series[groups].max().max()), f"peak db size (fullest of {len(groups)}) / quota"
    else:
        peak, peak_label = sm["etcd_mvcc_db_total_size_in_bytes_max"], "peak db size / quota"
    hist = sm["history_bytes_per_compaction_window"]
    if dead:
        hist_text = f"none ({REFUSED})"
    elif np.isnan(hist):
        hist_text = "no full window in this run"
    else:
        hist_text = fmt(hist / GB, "GB")
    rows = [
        ("freelist", p["backend_bbolt_freelist_type"], ""),
        ("etcd clusters", f"{sm['etcds']}", ""),
        (peak_label, f"{fmt(peak / GB)} / {fmt(sm['etcd_server_quota_backend_bytes'] / GB, 'GB')}", ""),
        ("NOSPACE alarm", nospace, ""),
        ("history per compaction window", hist_text,
         claims["history_per_window_node_status_10k_gb"].article + " (Node status)"),
        ("free pages after compaction (max)", fmt(sm["bbolt_free_pages_max"]), ""),
        ("put p99 over the run", latency_text(sm["put_latency_p99_s"], bool(refused)), ""),
        (f"put p99 at {fmt(db_bytes / GB, 'GB')} (sweep): array / map", f"{latency_text(pt['array'].put_p99_s)} / "
                                                                      f"{latency_text(pt['map'].put_p99_s)}",
         claims["map_p99_growth_2_to_100gb"].article),
    ]
    body = "".join(f"<tr><td>{a}</td><td style='text-align:right'><b>{b}</b></td>"
                   f"<td style='color:#666'>{c}</td></tr>" for a, b, c in rows)
    lesson = ""
    if dead:
        live = sm["etcd_mvcc_db_total_size_in_bytes_max"]
        lesson = (f"<div style='color:#7d3c98;margin:4px 0'><b>{refused}.</b> The cluster's objects alone "
                  f"take {fmt(live / GB, 'GB')}, more than the {fmt(sm['etcd_server_quota_backend_bytes'] / GB, 'GB')} "
                  f"quota: the article's \"too small to hold the objects\". The latency sweep (top left) still "
                  f"compares the freelists; for a live etcd try <i>article</i> (100 GiB), <i>upstream</i> (8 GiB) or "
                  f"one etcd per resource.</div>")
    elif refused:
        lesson = f"<div style='color:#7d3c98;margin:4px 0'><b>{refused}.</b></div>"
    return (f"<div style='font-size:12px'><b>{SETTING_LABELS[result.setting]}</b>{lesson}"
            f"<table><tr><th></th><th>lab</th><th>article</th></tr>{body}</table></div>")


def sweep_figure(df, title: str = "put p99 vs db size", measured=None):
    """Put p99 (and throughput) against db size from :meth:`EtcdStorageLab.sweep`, one line per
    freelist; ``measured``: optional ``{freelist: (db_bytes, p99_s)}`` points to overlay."""
    from bokeh.plotting import figure

    f = figure(title=title, width=640, height=300, x_axis_type="log", x_axis_label="db size (GB)",
               y_axis_label="put p99 (ms)", toolbar_location=None)
    for fl, g in df.groupby("freelist", sort=False):
        f.line(g.db_bytes / GB, _finite(g.put_p99_s) * 1e3, line_width=2, color=FREELIST_COLORS[fl],
               legend_label=f"{fl} (model)")
        f.scatter(g.db_bytes / GB, _finite(g.put_p99_s) * 1e3, size=6, marker=FREELIST_MARKERS[fl],
                  color=FREELIST_COLORS[fl], legend_label=f"{fl} (model)")
        sat = g[g.saturated] if "saturated" in g else g.iloc[:0]
        if len(sat):
            f.scatter(sat.db_bytes / GB, np.full(len(sat), np.nanmax(_finite(df.put_p99_s)) * 1e3 * 1.05),
                      marker="inverted_triangle", size=9, color=FREELIST_COLORS[fl],
                      legend_label=f"{fl}: falls behind")
    for fl, pts in (measured or {}).items():
        xs, ys = zip(*pts)
        f.scatter(np.asarray(xs) / GB, np.asarray(ys) * 1e3, size=9, marker="circle", fill_color="white",
                  line_color=FREELIST_COLORS[fl], line_width=2, legend_label=f"{fl} (real etcd 3.4)")
    f.legend.location = "top_left"
    f.y_range.start = 0
    return f


def history_figure(lab, nodes=(1000, 2500, 5000, 7500, 10_000), quota_gib: float = 2.0):
    """MVCC history per compaction window against cluster size for the three heartbeat
    streams, with the quota: the heartbeat lab's write streams landing on etcd."""
    from bokeh.models import Span
    from bokeh.plotting import figure

    f = figure(title=f"MVCC history per 5-min window vs cluster size (quota {quota_gib:g} GiB)", width=640,
               height=300, x_axis_label="nodes (pods and objects scale along)", y_axis_label="GB",
               toolbar_location=None)
    labels = {"off": "Node status every 10 s", "article": "Lease + status 60 s", "upstream": "Lease + status 5 min"}
    for hb in ("off", "article", "upstream"):
        ys = []
        for n in nodes:
            r = lab.run("article", {"nodes": int(n), "heartbeat_stream": hb, "duration": 330.0,
                                    "quota_backend_bytes": 1024**4, "db_size_bytes": 0})
            ys.append(r.summary["history_bytes_per_compaction_window"] / GB)
        f.line(list(nodes), ys, line_width=2, legend_label=labels[hb], **setting_style(hb))
        f.scatter(list(nodes), ys, size=7, marker=MARKERS[hb], color=PALETTE[hb], legend_label=labels[hb])
    f.add_layout(Span(location=quota_gib * 1024**3 / GB, dimension="width", line_dash="dashed",
                      line_color=LIMIT))
    f.legend.location = "top_left"
    return f

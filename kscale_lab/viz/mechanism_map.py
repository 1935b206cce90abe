"""The map of the nine mechanisms: how one's output is another's load.

Each of the article's nine optimisations is a node (its switch, its article section and
the lab that zooms in on it); an edge says what one mechanism produces that another has to
carry ("Node status writes" from the heartbeats land in etcd as WAL, history and pages). A
capstone that runs all nine on one cluster must keep exactly these couplings real.

The figure is an SVG drawn here, without a plotting library, so that it renders on GitHub,
nbviewer and in a notebook with no kernel:

    python -m kscale_lab.viz.mechanism_map             write docs/mechanisms_map.svg
    python -m kscale_lab.viz.mechanism_map --check     exit 1 if the file is stale

In a notebook: ``from kscale_lab.viz.mechanism_map import show_map; show_map()``.
A new lab needs no edit here unless its mechanism gains an edge: the nodes come from
:data:`kscale_lab.scenario.SWITCH_SPECS` and the notebooks from the lab registry.
"""

from __future__ import annotations

import html
import sys
from dataclasses import dataclass
from pathlib import Path

from . import OKABE_ITO, REFERENCE

INK = OKABE_ITO["black"]      # lines and box edges
GREY = REFERENCE              # secondary text
PAPER = "white"               # box fill

ROOT = Path(__file__).resolve().parents[2]
SVG_PATH = ROOT / "docs" / "mechanisms_map.svg"

#: the order of the mechanisms around the circle (chosen so that related ones are neighbours)
ORDER = ("freelist", "heartbeats", "scheduler", "bookmarks", "hot_standby", "flow_control", "context_cancel",
         "apiserver_lb", "cached_reads")
#: where each runs: etcd, the clients (kubelets, informers, controllers, the scheduler), the API servers
WHERE = {"freelist": "etcd", "heartbeats": "kubelets", "scheduler": "scheduler", "bookmarks": "watch cache, informers",
         "hot_standby": "controllers", "flow_control": "API servers", "context_cancel": "API servers",
         "apiserver_lb": "API servers, clients", "cached_reads": "API servers, etcd"}


@dataclass(frozen=True)
class Edge:
    source: str     # switch whose output ...
    target: str     # ... is this switch's load
    label: str      # what flows


#: one mechanism's output is another's load (what the capstone must couple for real)
EDGES = (
    Edge("heartbeats", "freelist", "Node/Lease writes: WAL, MVCC history, freed pages"),
    Edge("heartbeats", "apiserver_lb", "15 KB Node objects to decode and encode"),
    Edge("scheduler", "freelist", "binding writes: pod churn into etcd"),
    Edge("scheduler", "bookmarks", "pod events every kubelet's watch filters"),
    Edge("freelist", "cached_reads", "quorum reads: etcd range latency"),
    Edge("freelist", "flow_control", "slow commits, NOSPACE: writes wait or fail"),
    Edge("apiserver_lb", "bookmarks", "restart or upgrade: every watch breaks"),
    Edge("bookmarks", "flow_control", "410 Gone: relists of every object"),
    Edge("hot_standby", "flow_control", "failover: informers list ~1M objects"),
    Edge("flow_control", "apiserver_lb", "429s: clients reconnect elsewhere"),
    Edge("context_cancel", "apiserver_lb", "abandoned requests hold memory: OOM, restart"),
    Edge("flow_control", "context_cancel", "timed-out clients retry at once"),
    Edge("cached_reads", "bookmarks", "waits for the watch cache to be fresh"),
    Edge("hot_standby", "bookmarks", "warm informers: watches resume, no relist"),
)


def nodes() -> list[dict]:
    """The nine mechanisms: switch, title, article section, lab name and notebook (or None)."""
    from ..labs.base import registry
    from ..scenario import SWITCH_SPECS

    labs = {lab.switch: lab for lab in registry().values()}
    out = []
    for spec in SWITCH_SPECS:
        lab = labs.get(spec.name)
        out.append({"switch": spec.name, "title": spec.title, "section": spec.article_section,
                    "lab": lab.name if lab else None,
                    "notebook": Path(lab.notebook).name if lab and lab.notebook else None})
    return out


def _layout(W: float, H: float, bw: float, bh: float):
    """Centre of each node on an ellipse, in :data:`ORDER` (neighbours' boxes do not touch)."""
    import math

    cx, cy, rx, ry = W / 2, H / 2 + 10, W / 2 - bw / 2 - 10, H / 2 - bh / 2 - 50
    out = {}
    for i, name in enumerate(ORDER):
        a = -math.pi / 2 + 2 * math.pi * i / len(ORDER)
        out[name] = (cx + rx * math.cos(a), cy + ry * math.sin(a))
    return out


def _wrap(text: str, width: int) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    return lines + ([cur] if cur else [])


def _capstone_notebook() -> str:
    from ..labs.base import registry

    lab = registry().get("capstone")
    return Path(lab.notebook).name if lab else "the capstone (to come)"


def map_svg() -> str:
    """The map as a standalone SVG document (deterministic: the same text every time):
    the nine mechanisms on a ring, numbered arrows between them, the arrows in words
    beside it."""
    ns = {n["switch"]: n for n in nodes()}
    W, H, MAPW = 1080, 660, 700
    bw, bh = 160.0, 54.0
    pos = _layout(MAPW, H, bw, bh)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           f'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
           '<title>The nine mechanisms of kscale_lab: how one\'s output is another\'s load</title>',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           f'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{INK}"/></marker></defs>',
           f'<rect x="0" y="0" width="{W}" height="{H}" fill="white"/>',
           '<text x="20" y="26" font-size="16" font-weight="bold">How one mechanism\'s output is another\'s '
           'load</text>']

    def border(name, toward):
        """Where the line from a node's centre toward ``toward`` leaves its box."""
        (x, y), (tx, ty) = pos[name], toward
        dx, dy = tx - x, ty - y
        k = min((bw / 2 + 4) / abs(dx) if dx else 1e9, (bh / 2 + 4) / abs(dy) if dy else 1e9)
        return x + dx * k, y + dy * k

    marks = []
    for i, e in enumerate(EDGES, start=1):
        (sx, sy), (tx, ty) = pos[e.source], pos[e.target]
        mx, my = (sx + tx) / 2, (sy + ty) / 2
        cx0, cy0 = MAPW / 2, H / 2 + 10
        # bend each chord a little toward the centre of the ring, so that two opposite arrows part
        cx, cy = mx + (cx0 - mx) * 0.22, my + (cy0 - my) * 0.22
        x1, y1 = border(e.source, (cx, cy))
        x2, y2 = border(e.target, (cx, cy))
        out.append(f'<path d="M {x1:.1f} {y1:.1f} Q {cx:.1f} {cy:.1f} {x2:.1f} {y2:.1f}" fill="none" '
                   f'stroke="{INK}" stroke-width="1.4" marker-end="url(#arrow)"/>')
        t = 0.5
        lx = (1 - t) ** 2 * x1 + 2 * (1 - t) * t * cx + t ** 2 * x2
        ly = (1 - t) ** 2 * y1 + 2 * (1 - t) * t * cy + t ** 2 * y2
        marks.append((i, lx, ly))
    for i, lx, ly in marks:
        out.append(f'<circle cx="{lx:.1f}" cy="{ly:.1f}" r="9" fill="white" stroke="{INK}" stroke-width="1.2"/>')
        out.append(f'<text x="{lx:.1f}" y="{ly + 4:.1f}" font-size="10" font-weight="bold" text-anchor="middle">'
                   f'{i}</text>')
    for name in ORDER:
        n = ns[name]
        x, y = pos[name]
        dash = '' if n["lab"] else ' stroke-dasharray="5 3"'
        out.append(f'<rect x="{x - bw / 2:.1f}" y="{y - bh / 2:.1f}" width="{bw:.0f}" height="{bh:.0f}" rx="8" '
                   f'fill="{PAPER}" stroke="{INK}" stroke-width="1.5"{dash}/>')
        out.append(f'<text x="{x:.1f}" y="{y - 9:.1f}" font-weight="bold" text-anchor="middle">{n["section"]}. '
                   f'{html.escape(name)}</text>')
        out.append(f'<text x="{x:.1f}" y="{y + 6:.1f}" font-size="10" text-anchor="middle" fill="{INK}">'
                   f'{html.escape(WHERE[name])}</text>')
        where = n["notebook"] or "lab still to come"
        out.append(f'<text x="{x:.1f}" y="{y + 20:.1f}" font-size="10" text-anchor="middle" fill="{GREY}">'
                   f'{html.escape(where)}</text>')
    # the arrows in words
    x0, y = MAPW + 10, 62
    out.append(f'<text x="{x0}" y="{y}" font-weight="bold">what flows (source: its output, target: its load)</text>')
    y += 22
    for i, e in enumerate(EDGES, start=1):
        lines = _wrap(f"{ns[e.source]['section']} -> {ns[e.target]['section']}: {e.label}", 52)
        out.append(f'<text x="{x0}" y="{y}" font-size="11"><tspan font-weight="bold">{i}.</tspan> '
                   f'{html.escape(lines[0])}</text>')
        for ln in lines[1:]:
            y += 14
            out.append(f'<text x="{x0 + 18}" y="{y}" font-size="11">{html.escape(ln)}</text>')
        y += 20
    capstone = _capstone_notebook()
    out.append(f'<text x="20" y="{H - 12}" font-size="10" fill="{GREY}">Boxes: the article\'s sections 1-9 and '
               f'their labs (dashed: lab still to come); all nine at once on one cluster: {html.escape(capstone)}. '
               f'Generated by python -m kscale_lab.viz.mechanism_map.</text>')
    out.append('</svg>')
    return "\n".join(out) + "\n"


def edges_markdown() -> str:
    """The edges as a markdown table (the map in words)."""
    titles = {n["switch"]: f'{n["section"]}. {n["switch"]}' for n in nodes()}
    rows = ["| from | to | what flows |", "|---|---|---|"]
    rows += [f"| {titles[e.source]} | {titles[e.target]} | {e.label} |" for e in EDGES]
    return "\n".join(rows)


def show_map():
    """Display the map in a notebook (a static SVG: it renders without a kernel)."""
    from IPython.display import SVG, display

    display(SVG(map_svg()))


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args not in ([], ["--check"]):
        print("usage: python -m kscale_lab.viz.mechanism_map [--check]", file=sys.stderr)
        return 2
    svg = map_svg()
    if args == ["--check"]:
        if not SVG_PATH.exists() or SVG_PATH.read_text() != svg:
            print(f"{SVG_PATH.relative_to(ROOT)} is stale: run python -m kscale_lab.viz.mechanism_map")
            return 1
        return 0
    SVG_PATH.parent.mkdir(parents=True, exist_ok=True)
    SVG_PATH.write_text(svg)
    print(f"wrote {SVG_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

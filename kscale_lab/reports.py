"""The report: one static HTML file with every lab's figures, parameters and claims.

``kscale-lab report [LAB ...] [--set NAME=VALUE ...] [--switch NAME=SETTING ...] --out
report.html`` (or :func:`report`) runs each lab for each setting of its switch and writes
one file that opens offline in any browser: Bokeh's JavaScript is inlined (no CDN, no
server, no kernel). It is the thing to attach to a ticket or put on a course page.

For every lab in the registry (:func:`kscale_lab.labs.base.registry`), so a lab added
later appears with no edit here:

* its dashboard's figures (:meth:`kscale_lab.viz.dashboard.Dashboard.static`), one tab per
  setting, with the dashboard's summary panel (the lab's figure beside the article's);
* the scenario and every parameter used: value per setting, default, unit, upstream flag,
  source, and which ones you set;
* its claims rows (:func:`kscale_lab.claims.claims_table`, every column it has), computed at
  the article's scenario (the lab's defaults), whatever ``--set`` says;
* the sections the lab adds itself, if it defines ``report_sections(results)`` (for
  example the capstone's scorecard): ``[(title, content)]``, content an HTML string, a
  DataFrame or a Bokeh model.

A parameter given with ``--set`` applies to every lab that has it (the report says which);
one that no lab in the report has is refused, as is an unknown switch or setting.
"""

from __future__ import annotations

import html
import importlib
import pkgutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import ParameterError

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1200px;
       color: #222; line-height: 1.4; padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ccc; padding-top: 1em; }
h3 { margin-bottom: 0.3em; } .meta { color: #666; font-size: 0.9em; }
table.kl { border-collapse: collapse; font-size: 12px; margin: 6px 0 12px 0; }
table.kl th, table.kl td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
table.kl th { background: #f4f4f4; } table.kl td.num { text-align: right; white-space: nowrap; }
tr.given td { background: #fff7e0; } details { margin: 6px 0; } summary { cursor: pointer; }
nav a { margin-right: 12px; }
"""


class _MemoLab:
    """The lab, with ``run`` remembered per (setting, parameters): the tabs and the
    dashboards' own comparisons share runs (a run is a pure function of them)."""

    def __init__(self, lab):
        self._lab = lab
        self._run = lab.run
        self._runs: dict = {}

    def run(self, setting, overrides=None, **kwargs):
        if kwargs:   # a lab's own extra arguments: not remembered
            return self._run(setting, overrides, **kwargs)
        key = (setting, repr(sorted(dict(overrides or {}).items())))
        if key not in self._runs:
            self._runs[key] = self._run(setting, overrides)
        return self._runs[key]

    def __getattr__(self, name):
        return getattr(self._lab, name)

    @contextmanager
    def shared(self):
        """While inside, the lab's own ``run`` (as its ``claims`` calls it) is remembered too."""
        self._lab.run = self.run
        try:
            yield
        finally:
            del self._lab.run


def dashboards() -> dict:
    """lab name -> its Dashboard class, found in :mod:`kscale_lab.viz` (no list to keep)."""
    from . import viz
    from .viz.dashboard import Dashboard

    found = {}
    for info in pkgutil.iter_modules(viz.__path__):
        if info.name.startswith("_") or info.name == "dashboard":
            continue
        mod = importlib.import_module(f"{viz.__name__}.{info.name}")
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, Dashboard) and obj is not Dashboard and obj.lab_name \
                    and obj.__module__ == mod.__name__:
                found[obj.lab_name] = obj
    return found


def _plan(labs, overrides, switches):
    from .labs.base import get_lab, registry

    chosen = [get_lab(n) for n in labs] if labs else list(registry().values())
    if not chosen:
        raise ParameterError("LAB", "none to report")
    overrides = dict(overrides or {})
    per_lab = {lab.name: {} for lab in chosen}
    for k, v in overrides.items():
        having = [lab for lab in chosen if k in lab.params]
        if not having:
            raise ParameterError(k, f"is not a parameter of any lab in the report ({', '.join(per_lab)})")
        for lab in having:
            per_lab[lab.name][lab.params[k].name] = lab.params[k].validate(v)
    wanted: dict[str, list[str]] = {}
    for name, value in (switches or {}).items():
        from .scenario import switch_spec

        spec = switch_spec(name)
        settings = [value] if isinstance(value, str) else list(value)
        for s in settings:
            if s not in spec.settings:
                raise ParameterError(spec.name, f"must be one of {', '.join(spec.settings)}; got {s!r}")
        if not any(lab.switch == spec.name for lab in chosen):
            raise ParameterError(spec.name, f"is not the switch of any lab in the report ({', '.join(per_lab)})")
        wanted[spec.name] = settings
    for lab in chosen:   # validated in the lab's own terms before anything runs
        for s in wanted.get(lab.switch, lab.settings):
            lab.resolve(s, per_lab[lab.name])
    return chosen, per_lab, wanted


def _claims(memo: _MemoLab, name: str):
    from .claims import claims_table

    with memo.shared():
        return claims_table([name])


def _cell(x) -> str:
    from .claims import format_value

    if x is None or (isinstance(x, float) and x != x):
        return "-"
    if isinstance(x, (bool, int, float)) or hasattr(x, "item"):
        return html.escape(format_value(x.item() if hasattr(x, "item") else x))
    return html.escape(str(x))


def _frame_html(df) -> str:
    """Any DataFrame as an HTML table, every column it has (numbers for people)."""
    if df is None or len(df) == 0:
        return "<p class='meta'>(none)</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for x in row:
            num = isinstance(x, (int, float)) and not isinstance(x, bool)
            cells.append(f"<td class='{'num' if num else ''}'>{_cell(x)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='kl'><tr>{head}</tr>{''.join(body)}</table>"


def _params_html(lab, results: Mapping[str, Any], given: Mapping[str, Any]) -> str:
    settings = list(results)
    eff = {s: dict((results[s].summary or {}).get("params") or lab.resolve(s, given)) for s in settings}
    rows = []
    n_given = 0
    for p in lab.params:
        vals = [eff[s].get(p.name, p.default) for s in settings]
        same = len(set(map(repr, vals))) == 1
        value = _cell(vals[0]) if same else "<br>".join(f"{html.escape(s)}: {_cell(v)}"
                                                          for s, v in zip(settings, vals))
        is_given = p.name in given
        n_given += is_given
        flag = f"<code>{html.escape(p.flag)}</code>" if p.flag else ""
        rows.append(f"<tr class='{'given' if is_given else ''}'><td><code>{p.name}</code></td><td>{flag}</td>"
                    f"<td class='num'>{value}</td><td class='num'>{_cell(p.default)}</td>"
                    f"<td>{html.escape(p.unit)}</td><td>{'set by you' if is_given else ''}</td>"
                    f"<td>{html.escape(p.doc)}<br><span class='meta'>source: {html.escape(p.source)}</span></td></tr>")
    table = ("<table class='kl'><tr><th>parameter</th><th>upstream flag</th><th>value used</th><th>default</th>"
             "<th>unit</th><th></th><th>what, and where the default comes from</th></tr>" + "".join(rows) + "</table>")
    return (f"<details><summary>{len(lab.params)} parameters ({n_given} set by you; highlighted)</summary>"
            f"{table}</details>")


def _scenario_line(lab, results, given) -> str:
    from .scenario import SCENARIO_PARAMS

    first = next(iter(results.values()))
    p = dict((first.summary or {}).get("params") or {})
    parts = []
    for k, label in (("nodes", "nodes"), ("pods", "pods"), ("objects", "objects"), ("duration", "s simulated"),
                     ("seed", "seed")):
        if k in p and k in SCENARIO_PARAMS:
            parts.append(f"seed {p[k]}" if k == "seed" else f"{_cell(p[k])} {label}")
    mine = ", ".join(f"<code>{html.escape(k)}={_cell(v)}</code>" for k, v in given.items()) or "none (defaults)"
    return (f"<p>Scenario: {', '.join(parts) or 'the lab defaults'}; settings shown: "
            f"{', '.join(results)}. Set by you: {mine}.</p>")


def _extra(content, roots: dict, key: str) -> str:
    from bokeh.model import Model

    if isinstance(content, Model):
        roots[key] = content
        return f"{{{{root:{key}}}}}"
    if hasattr(content, "to_dict") and hasattr(content, "columns"):
        return _frame_html(content)
    return str(content)


def render(labs: Sequence[str] | None = None, overrides: Mapping[str, Any] | None = None,
           switches: Mapping[str, Any] | None = None, progress: bool | None = None):
    """The report as ``(html, roots)``: the page, and the Bokeh models it embeds by key."""
    from bokeh.embed import components
    from bokeh.layouts import column
    from bokeh.models import Div, TabPanel, Tabs
    from bokeh.resources import INLINE

    from . import __version__
    from .progress import bar

    chosen, per_lab, wanted = _plan(labs, overrides, switches)
    dash_for = dashboards()
    steps = sum(len(wanted.get(lab.switch, lab.settings)) + 1 for lab in chosen)
    roots: dict = {}
    parts: list[str] = []
    with bar(total=steps, desc="report", unit="step", show=progress) as b:
        for i, lab in enumerate(chosen):
            given = per_lab[lab.name]
            memo = _MemoLab(lab)
            settings = wanted.get(lab.switch, list(lab.settings))
            results, panels = {}, []
            for s in settings:
                b.set_postfix_str(f"{lab.name} {s}")
                results[s] = memo.run(s, given)
                dash = dash_for.get(lab.name)
                if dash is not None:
                    d = dash.static(results[s], given, lab=memo)
                    panels.append(TabPanel(title=s, child=column(Div(text=d.summary.value or ""), d.layout)))
                b.update(1)
            sec = [f"<section id='lab-{html.escape(lab.name)}'><h2>{html.escape(lab.title)}</h2>",
                   f"<p class='meta'>lab <code>{html.escape(lab.name)}</code>, switch <code>{lab.switch}</code>, "
                   f"article section {html.escape(str(lab.article_section))}, notebook "
                   f"<code>{html.escape(lab.notebook)}</code></p>", _scenario_line(lab, results, given),
                   "<h3>Figures</h3>"]
            if panels:
                roots[f"lab{i}"] = Tabs(tabs=panels) if len(panels) > 1 else panels[0].child
                sec.append(f"{{{{root:lab{i}}}}}")
            else:
                sec.append("<p class='meta'>(this lab has no dashboard)</p>")
            sec += ["<h3>Scenario and parameters</h3>", _params_html(lab, results, given)]
            b.set_postfix_str(f"{lab.name} claims")
            sec += ["<h3>Claims: the article beside the lab</h3>",
                    "<p class='meta'>Computed at the article's scenario (the lab's defaults), whatever you set.</p>",
                    _frame_html(_claims(memo, lab.name))]
            hook = getattr(lab, "report_sections", None)
            if callable(hook):
                for j, (title, content) in enumerate(hook(results) or []):
                    sec += [f"<h3>{html.escape(str(title))}</h3>", _extra(content, roots, f"x{i}_{j}")]
            sec.append("</section>")
            parts.append("\n".join(sec))
            b.update(1)
    script, divs = components(roots) if roots else ("", {})
    body = "\n".join(parts)
    for key, div in divs.items():
        body = body.replace(f"{{{{root:{key}}}}}", div)
    nav = " ".join(f"<a href='#lab-{html.escape(lab.name)}'>{html.escape(lab.name)}</a>" for lab in chosen)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>kscale_lab report</title>
<style>{CSS}</style>
{INLINE.render()}
</head><body>
<h1>kscale_lab report: how Kubernetes survives at 10,000 nodes</h1>
<p class="meta">kscale_lab {__version__}. Every figure here is computed by the labs' models (real mechanisms,
modelled time); the article's figures are targets, shown beside them. Re-create it with
<code>kscale-lab report</code>.</p>
<nav>{nav}</nav>
{body}
{script}
</body></html>
"""
    return page, roots


def report(labs: Sequence[str] | None = None, overrides: Mapping[str, Any] | None = None,
           switches: Mapping[str, Any] | None = None, out: str | Path = "report.html",
           progress: bool | None = None) -> Path:
    """Write the report for ``labs`` (default: every lab) to ``out``; returns its path.

    ``overrides``: parameters for every lab that has them (``--set``); ``switches``:
    ``{switch: setting or [settings]}`` to show only those settings of that lab's switch."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ParameterError("--out", f"must end in .html; got {str(out)!r}")
    if not out.parent.is_dir():
        raise ParameterError("--out", f"folder {str(out.parent)!r} does not exist")
    page, _ = render(labs, overrides, switches, progress)
    out.write_text(page, encoding="utf-8")
    return out

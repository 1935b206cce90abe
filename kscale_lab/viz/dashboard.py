"""A "predict, then toggle" dashboard: controls and figures on top, live Bokeh plots below.

:class:`Dashboard` is the reusable part: it owns the widgets (``controls``), the
Bokeh data sources (``sources``), a summary panel, and reruns the lab whenever a
control changes. A lab's dashboard subclasses it and says which controls exist
(:meth:`make_controls`), how they map to the lab's parameters (:meth:`overrides`),
which plots to draw (:meth:`make_figures`) and how a result fills them
(:meth:`fill`).

Everything is reachable from Python: ``dash.controls["switch"].value = "article"``
reruns the model exactly as a click would, ``dash.result`` is the latest result and
``dash.seconds`` how long the last recompute took.

Without widgets: ``YourDashboard.static(result)`` builds the same Bokeh layout, filled
from one result, with no widget and no kernel (``kscale-lab report`` embeds it in a
static HTML file). Every dashboard gets it for free if its ``fill`` reads the run's
parameters through ``self.overrides()`` and its summary through ``self.summary.value``.

Memory: the sliders named in :attr:`Dashboard.memory_controls` stop at the largest value
whose run fits under the memory limit for every setting (from the lab's estimate,
:meth:`kscale_lab.labs.base.Lab.memory_estimate`, at the other controls' current values),
and a note under the controls says so.
"""

from __future__ import annotations

import time
from typing import Any

from . import error_html


class Dashboard:
    lab_name = ""
    #: sliders whose upper end is what fits under the memory limit (KSCALE_LAB_MEMORY_LIMIT_GIB)
    memory_controls: tuple[str, ...] = ("nodes",)

    def __init__(self, **initial: Any):
        import ipywidgets as w
        from jupyter_bokeh import BokehModel

        from ..labs.base import get_lab

        self.lab = get_lab(self.lab_name)
        if "_static" in self.__dict__:  # built by static(): figures only, no widget
            self._init_static(*self._static)
            return
        self.controls: dict[str, w.ValueWidget] = self.make_controls()
        for k, v in initial.items():
            if k not in self.controls:
                raise KeyError(f"no control named {k!r}; controls: {', '.join(self.controls)}")
            self.controls[k].value = v
        self.summary = w.HTML()
        self.status = w.HTML()
        self.memory_note = w.HTML()
        self._ceilings: dict = {}
        self._updating = False
        self.sources: dict = {}
        self.layout = self.make_figures()
        self.result = None
        self.seconds = float("nan")
        # fill the sources first, then wrap: a BokehModel sends its document as it is when it
        # is created, and the patches of later changes reach only views already on the page
        self._memo: dict = {}
        self.update()
        self.plot = BokehModel(self.layout)
        for c in self.controls.values():
            c.observe(self._on_change, names="value")
        # controls and the figures' summary side by side on top, the plots below: the
        # 2x2 grid of plots (about 880 px) then fits a notebook next to JupyterLab's sidebar
        left = w.VBox(list(self.controls.values()) + [self.status, self.memory_note],
                      layout=w.Layout(width="410px", min_width="410px", flex="0 0 410px"))
        right = w.VBox([self.summary], layout=w.Layout(flex="1 1 auto", margin="0 0 0 16px"))
        self.widget = w.VBox([w.HBox([left, right], layout=w.Layout(align_items="flex-start")), self.plot])

    @classmethod
    def static(cls, result, overrides=None, lab=None) -> "Dashboard":
        """This dashboard's figures filled from ``result``, without widgets or a kernel.

        ``overrides``: the parameters the run was given (what ``self.overrides()`` returns
        to ``fill``; a parameter not among them reads as the run's effective value,
        ``result.summary["params"]``). ``lab``: the object ``fill`` reruns other settings
        with (default: the lab itself). The result has ``.layout`` (the Bokeh layout),
        ``.sources`` and ``.summary.value`` (the summary panel's HTML)."""
        self = cls.__new__(cls)
        self._static = (result, dict(overrides or {}), lab)
        self.__init__()
        return self

    def _init_static(self, result, given, lab) -> None:
        if lab is not None:
            self.lab = lab
        effective = dict((getattr(result, "summary", None) or {}).get("params") or {})
        self.controls = _StandIns()
        self.summary, self.status = _StandIn(""), _StandIn("")
        self.sources = {}
        self._memo = {}
        self.overrides = lambda: (result.setting, _Given(given, effective))
        self.layout = self.make_figures()
        self.plot = self.widget = None
        self.result, self.seconds = result, float("nan")
        self.fill(result)

    # -- to be provided by a lab's dashboard --------------------------------------------
    def make_controls(self) -> dict:
        raise NotImplementedError

    def overrides(self) -> tuple[str, dict]:
        """(setting, parameter overrides) for the current control values."""
        raise NotImplementedError

    def make_figures(self):
        raise NotImplementedError

    def fill(self, result) -> None:
        raise NotImplementedError

    def switch_control(self, description: str, style=None, tooltips=None):
        """The lab's switch as toggle buttons, one per setting (``off`` first)."""
        import ipywidgets as w

        from ..scenario import switch_spec

        spec = switch_spec(self.lab.switch)
        return w.ToggleButtons(options=[(s, s) for s in spec.settings], value=spec.settings[0],
                               description=description, style=style or {},
                               tooltips=list(tooltips or [spec.doc[s] for s in spec.settings]))

    # -- the loop -------------------------------------------------------------------------
    def _on_change(self, change) -> None:
        self.update()

    def run(self, setting: str, overrides: dict):
        """``lab.run``, remembered for the last few (setting, overrides): a lab is
        deterministic, so flipping back to a setting seen a moment ago, or comparing
        the settings in one plot, reruns nothing."""
        key = (setting, tuple(sorted(overrides.items())))
        hit = self._memo.pop(key, None)
        if hit is None:
            hit = self.lab.run(setting, overrides)
        self._memo[key] = hit
        while len(self._memo) > self.memo_size:
            self._memo.pop(next(iter(self._memo)))
        return hit

    memo_size = 6

    # -- memory: sliders stop at what fits ------------------------------------------------
    def _overrides_with(self, name: str, value):
        """The overrides the dashboard would run with if control ``name`` had ``value``
        (read through a stand-in: the widget and its observers are not touched)."""
        import types

        real = self.controls[name]
        self.controls[name] = types.SimpleNamespace(value=value, description=getattr(real, "description", name))
        try:
            return self.overrides()[1]
        finally:
            self.controls[name] = real

    def _fits(self, name: str, value) -> bool:
        return self._why_not(name, value) is None

    def _why_not(self, name: str, value) -> str | None:
        """None if a run with control ``name`` at ``value`` fits for every setting, else
        "memory" or "range" (a parameter out of its range: the slider stops there too)."""
        from ..errors import KscaleError

        try:
            return None if self.lab.fits(self._overrides_with(name, value)) else "memory"
        except (KscaleError, ValueError):
            return "range"

    def fit_memory(self) -> None:
        """Set each memory control's maximum to the largest value that fits (never above
        the maximum the dashboard was built with), and say why under the controls."""
        from ..memory import GIB, LIMIT_VARIABLE, memory_limit_bytes

        notes, memory_cut = [], False
        for name in self.memory_controls:
            c = self.controls.get(name)
            if c is None or not all(hasattr(c, a) for a in ("min", "max", "step")):
                continue
            ceiling = self._ceilings.setdefault(name, c.max)
            lo, step = c.min, c.step
            steps = int(round((ceiling - lo) / step))

            def value(k):
                return lo + k * step

            if self._fits(name, ceiling):
                top, why = ceiling, None
            else:
                why = self._why_not(name, lo)
                if why is not None:             # even the smallest value does not run
                    top = None
                else:
                    a, b = 0, steps             # value(a) fits, value(b) does not
                    while b - a > 1:
                        mid = (a + b) // 2
                        if self._fits(name, value(mid)):
                            a = mid
                        else:
                            b = mid
                    top, why = value(a), self._why_not(name, value(b))
            label = getattr(c, "description", name)
            if why == "range":
                notes.append(f"{label} stops at {top if top is not None else lo:,} (a parameter's range)")
            elif why == "memory":
                memory_cut = True
                notes.append(f"even {label} = {lo:,} does not fit" if top is None else f"{label} stops at {top:,}")
            new_max = ceiling if top is None else top
            if c.max != new_max:
                c.max = new_max
        tail = (f": a larger run needs more than the {memory_limit_bytes() / GIB:.1f} GiB memory limit "
                f"({LIMIT_VARIABLE} raises it)") if memory_cut else ""
        self.memory_note.value = "" if not notes else f'<span style="color:#666">{"; ".join(notes)}{tail}</span>'

    def update(self) -> None:
        if self._updating:      # a slider clamped by fit_memory: the update under way uses its value
            return
        self._updating = True
        try:
            self.fit_memory()
            self._update()
        finally:
            self._updating = False

    def _update(self) -> None:
        setting, overrides = self.overrides()
        t0 = time.perf_counter()
        stored = self._stored(setting, overrides)
        try:
            result = self.run(setting, overrides)
        except Exception as err:  # a user error: say it in one line, keep the last plot
            from ..errors import KscaleError

            if not isinstance(err, (KscaleError, ValueError)):
                raise
            self.status.value = error_html(err)
            return
        self.seconds = time.perf_counter() - t0
        self.result = result
        self.fill(result)
        self._fit_titles()
        how = "read the stored run of" if stored else "recomputed"
        self.status.value = (f'<span style="color:#666">{how} {setting} in '
                             f'{self.seconds:.2f} s</span>')

    def _stored(self, setting: str, overrides: dict) -> bool:
        """True if the run is on disk already (:mod:`kscale_lab.cache`; labs with a ``cache_key``)."""
        key = getattr(self.lab, "cache_key", None)
        if key is None:
            return False
        from .. import cache

        try:
            return cache.has(key(setting, overrides))
        except Exception:       # a bad parameter: the run below says it in one line
            return False

    def _fit_titles(self) -> None:
        """A title longer than its plot is cut off by Bokeh: set it smaller instead."""
        for f in getattr(self, "figures", None) or []:
            title = getattr(f, "title", None)
            n = len(getattr(title, "text", "") or "")
            room = (f.width or 600) - 50                  # the frame: the figure less its y axis
            if n and n * 7.6 > room:                       # Bokeh's bold 13 px title: about 7.6 px a character
                title.text_font_size = f"{max(9, int(13 * room / (n * 7.6)))}px"

    def refresh_view(self) -> None:
        """Send the plots' current state as the document a new view renders from (a view
        displayed later, or one whose patches arrived before it existed, shows it)."""
        self.plot.render_bundle = type(self.plot)._model_to_traits(self.layout)

    def _repr_mimebundle_(self, include=None, exclude=None):
        """The live widget, and (when static images are on, as in a notebook build) a PNG
        of the current state for renderers without a kernel (nbconvert, GitHub)."""
        from . import static

        self.refresh_view()
        bundle = self.widget._repr_mimebundle_(include=include, exclude=exclude) or {}
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        image = static.png(self.layout, header_html=self.static_header()) if static.enabled() else None
        if image is not None:
            import base64

            data["image/png"] = base64.b64encode(image).decode()
        return data

    def static_header(self) -> str:
        """What the static image shows above the plots: the controls' values and the summary."""
        import html

        vals = ", ".join(f"{html.escape(getattr(c, 'description', k) or k)} = <b>{html.escape(str(_label(c)))}</b>"
                         for k, c in self.controls.items())
        return (f"<div style='font:12px sans-serif;margin-bottom:6px'>{vals}</div>"
                f"<div style='font-family:sans-serif'>{self.summary.value}</div>")


def _label(control):
    """The label a person sees for a control's value (an option's text, not its key)."""
    opts = getattr(control, "options", None)
    if opts:
        for o in opts:
            if isinstance(o, tuple) and o[1] == control.value:
                return o[0]
    return control.value


class _StandIn:
    """Stands in for a widget in a static render: holds ``value`` and any attribute set."""

    def __init__(self, value=None):
        self.value = value


class _StandIns(dict):
    """``controls`` of a static render: any control a dashboard touches is a stand-in."""

    def __missing__(self, key):
        self[key] = _StandIn()
        return self[key]


class _Given(dict):
    """The parameters a run was given; a parameter it was not given reads as its effective
    value (so ``fill`` can read ``ov["db_size_bytes"]``), but reruns see only the given ones."""

    def __init__(self, given, effective):
        super().__init__(given)
        self._effective = effective

    def __missing__(self, key):
        return self._effective[key]

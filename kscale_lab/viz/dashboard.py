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
        layout = self.make_figures()
        self.plot = BokehModel(layout)
        self.result = None
        self.seconds = float("nan")
        self.update()
        for c in self.controls.values():
            c.observe(self._on_change, names="value")
        # controls and the figures' summary side by side on top, the plots below: the
        # 2x2 grid of plots (about 880 px) then fits a notebook next to JupyterLab's sidebar
        left = w.VBox(list(self.controls.values()) + [self.status, self.memory_note],
                      layout=w.Layout(width="410px", min_width="410px", flex="0 0 410px"))
        right = w.VBox([self.summary], layout=w.Layout(flex="1 1 auto", margin="0 0 0 16px"))
        self.widget = w.VBox([w.HBox([left, right], layout=w.Layout(align_items="flex-start")), self.plot])

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
        try:
            result = self.lab.run(setting, overrides)
        except Exception as err:  # a user error: say it in one line, keep the last plot
            from ..errors import KscaleError

            if not isinstance(err, (KscaleError, ValueError)):
                raise
            self.status.value = error_html(err)
            return
        self.seconds = time.perf_counter() - t0
        self.result = result
        self.fill(result)
        self.status.value = (f'<span style="color:#666">recomputed {setting} in '
                             f'{self.seconds:.2f} s</span>')

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

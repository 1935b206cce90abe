"""What every lab provides, and the registry that finds them.

A lab is a module in :mod:`kscale_lab.labs` that defines ``LAB``, an instance of a
:class:`Lab` subclass. It names the switch it toggles, its parameters (scenario,
cost model and its own), and computes, for a setting of its switch:

* ``run(setting, overrides)`` -> :class:`~kscale_lab.cluster.RunResult`-like object
  with ``series`` (DataFrame), ``events`` and ``summary`` (metric -> number);
* ``claims(results, overrides, only)`` -> the lab's own figures for the article's claims
  listed in ``data/claims/<lab>.csv`` (the claims table puts them side by side, with
  each claim's band: the same figure with ``overrides`` of its assumptions).
* ``memory_estimate(setting, overrides)`` -> (bytes, detail): the peak one run holds, from
  the lab's :meth:`Lab.memory_footprint`; ``kscale-lab sweep`` refuses a sweep whose
  concurrent runs would not fit with it;
* optionally ``report_sections(results)`` -> extra sections for ``kscale-lab report``
  (a scorecard, a table): a list of ``(title, content)``, content an HTML string, a
  DataFrame or a Bokeh model.

Memory: every lab says what a run will hold (:meth:`Lab.memory_footprint`, a
:class:`~kscale_lab.memory.Footprint` of the arrays and tapes it allocates, from the
resolved parameters), and every ``run`` of every subclass is checked against the limit
before it starts (:meth:`Lab.__init_subclass__` wraps it): a scenario too large is
refused with its estimate (:class:`~kscale_lab.errors.ScenarioTooLarge`), never left to
the kernel's OOM killer.

The registry imports every module of the package, so a new lab needs no edit
anywhere else.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from typing import Any, Mapping

from .. import memory
from ..errors import ParameterError
from ..params import ParamSet
from ..scenario import SWITCH_SPECS, scale_with_nodes, switch_spec


class Lab:
    name: str = ""            # command-line name, e.g. "heartbeats"
    title: str = ""
    switch: str = ""          # the switch this lab toggles
    notebook: str = ""        # labs/NN_name.ipynb
    article_section: str = ""
    params: ParamSet = ParamSet([])
    # per-setting defaults for parameters whose upstream default changed over time;
    # applied only where the user did not set the parameter
    setting_defaults: Mapping[str, Mapping[str, Any]] = {}

    @property
    def settings(self) -> tuple[str, ...]:
        return switch_spec(self.switch).settings

    def check_setting(self, setting: str) -> str:
        if setting not in self.settings:
            raise ParameterError(self.switch, f"must be one of {', '.join(self.settings)}; got {setting!r}")
        return setting

    def resolve(self, setting: str, overrides: Mapping[str, Any] | None = None) -> dict:
        """Effective parameters for ``setting``: defaults, then the setting's own
        defaults, then the user's overrides (validated; never changed)."""
        self.check_setting(setting)
        overrides = dict(overrides or {})
        user = self.params.resolve(overrides)
        given = {self.params[k].name for k in overrides}
        if "nodes" in self.params:
            user = scale_with_nodes(user, given)
        for k, v in self.setting_defaults.get(setting, {}).items():
            if k not in given:
                user[k] = v
        return user

    def run(self, setting: str, overrides: Mapping[str, Any] | None = None):
        raise NotImplementedError

    # -- memory ------------------------------------------------------------------------------
    def __init_subclass__(cls, **kwargs):
        """Every ``run`` a lab defines is checked against the memory limit first."""
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is None or getattr(run, "_memory_guarded", False):
            return

        sig = inspect.signature(run)
        names = list(sig.parameters)[1:3]      # (setting, overrides), whatever a lab calls them

        @functools.wraps(run)
        def guarded(self, *args, **kw):
            bound = sig.bind(self, *args, **kw)
            bound.apply_defaults()
            a = bound.arguments
            self.check_memory(a[names[0]], a[names[1]] if len(names) > 1 else None)
            return run(self, *args, **kw)

        guarded._memory_guarded = True
        cls.run = guarded

    def memory_footprint(self, setting: str, p: Mapping[str, Any]) -> "memory.Footprint":
        """What a run of ``setting`` with the resolved parameters ``p`` holds at its peak:
        every lab itemises its arrays and tapes (see :mod:`kscale_lab.memory`). A lab that
        does not is estimated at the baseline only, and ``tests/test_memory.py`` fails."""
        return memory.Footprint(f"{self.name}: no memory_footprint")

    def memory_estimate(self, setting: str, overrides: Mapping[str, Any] | None = None) -> tuple[int, str]:
        """(bytes, one-line detail): the peak a run would reach, baseline included."""
        fp = self.memory_footprint(setting, self.resolve(setting, overrides))
        return fp.total(), fp.detail()

    def check_memory(self, setting: str, overrides: Mapping[str, Any] | None = None) -> int:
        """Raise :class:`~kscale_lab.errors.ScenarioTooLarge` if the run would not fit;
        return the estimate."""
        need, detail = self.memory_estimate(setting, overrides)
        memory.check(need, detail)
        return need

    def fits(self, overrides: Mapping[str, Any] | None = None, settings=None) -> bool:
        """True if a run of every setting (or ``settings``) fits under the limit."""
        limit = memory.memory_limit_bytes()
        return all(self.memory_estimate(s, overrides)[0] <= limit for s in (settings or self.settings))

    def summaries(self, results: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None):
        """For a lab's :meth:`claims`: ``summary(setting, forced=None)``, the summary of a run of
        ``setting`` with ``overrides`` and then ``forced``; each distinct run is made once, and a
        run of the defaults in ``results`` is reused."""
        results = dict(results or {})
        overrides = dict(overrides or {})
        memo: dict = {}

        def summary(setting, forced=None):
            forced = forced or {}
            if not forced and not overrides and setting in results:
                return results[setting].summary
            key = (setting, tuple(sorted({**overrides, **forced}.items())))
            if key not in memo:
                memo[key] = self.run(setting, {**overrides, **forced}).summary
            return memo[key]

        return summary

    def claims(self, results: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None,
               only=None) -> dict:
        """claim id -> lab value (computed by the model).

        ``results``: runs of the default parameters to reuse (ignored with ``overrides``);
        ``overrides``: parameter values applied to every run the claims make (the band of
        :mod:`kscale_lab.claims`); ``only``: the claim ids the caller needs (None = all): a
        lab computes at least those and may skip the runs only the others need."""
        raise NotImplementedError

    @staticmethod
    def wanted(only, *claim_ids: str) -> bool:
        """True when any of ``claim_ids`` is needed (``only`` None = every claim)."""
        return only is None or any(c in only for c in claim_ids)


_REGISTRY: dict[str, Lab] | None = None


def registry() -> dict[str, Lab]:
    global _REGISTRY
    if _REGISTRY is None:
        from .. import labs as pkg

        found = {}
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if info.name.startswith("_") or info.name == "base":
                continue
            mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
            lab = getattr(mod, "LAB", None)
            if isinstance(lab, Lab):
                found[lab.name] = lab
        order = {s.name: i for i, s in enumerate(SWITCH_SPECS)}
        _REGISTRY = dict(sorted(found.items(), key=lambda kv: (order.get(kv[1].switch, 99), kv[0])))
    return _REGISTRY


def get_lab(name: str) -> Lab:
    labs = registry()
    if name not in labs:
        raise ParameterError("LAB", f"is unknown: {name!r}; labs: {', '.join(labs) or '(none)'}")
    return labs[name]

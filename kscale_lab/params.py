"""Named parameters with a unit, a default, a range and a source.

Every number the model uses comes from a :class:`Param`: the scenario's size, the
cost of decoding a byte, an upstream flag's default. A parameter knows

* ``name``: a Python identifier (``node_monitor_grace_period``); the command line
  also accepts it with hyphens (``node-monitor-grace-period``);
* ``unit``: ``s``, ``B``, ``B/s``, ``cores``, ``1`` (dimensionless) ...;
* ``default`` and the allowed range (``lo``/``hi``) or ``choices``;
* ``source``: where the default comes from (a KEP, a file in an upstream repository,
  a measurement in ``data/etcd_real``), or ``assumption: ...`` with the reasoning
  when no published figure exists;
* ``flag``: the upstream flag or config field it mirrors, when there is one;
* ``plausible`` (optional): the ``(lo, hi)`` range a skeptical reader would still accept
  for an assumption, with ``plausible_source`` saying why (a spread of measurements, of
  published figures, or the reasoning). The claims table recomputes a claim with each
  such parameter at both ends (its *band*, :mod:`kscale_lab.claims`).

:class:`ParamSet` validates user input against these specs and never changes what
it is given: a value out of range is an error, not a clamp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from .errors import ParameterError


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    unit: str
    source: str
    doc: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple | None = None
    kind: type = float
    flag: str = ""
    plausible: tuple | None = None
    plausible_source: str = ""

    def __post_init__(self):
        if self.kind not in (int, float, str, bool):
            raise TypeError(f"unsupported kind {self.kind!r} for {self.name}")
        # A default must satisfy its own spec: catches typos in the tables.
        self.validate(self.default)
        if self.plausible is not None:
            if self.kind not in (int, float) or len(self.plausible) != 2:
                raise TypeError(f"plausible range of {self.name} must be (lo, hi) of a number parameter")
            lo, hi = (self.validate(v) for v in self.plausible)
            if not lo <= self.default <= hi:
                raise ValueError(f"plausible range of {self.name} must contain its default {self.default!r}")
            if not self.plausible_source:
                raise ValueError(f"plausible range of {self.name} needs a plausible_source (why this range)")
            object.__setattr__(self, "plausible", (lo, hi))

    # -- validation ------------------------------------------------------------
    def range_text(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind is bool:
            return "true or false"
        noun = "an integer" if self.kind is int else "a number"
        lo = "-inf" if self.lo is None else _fmt(self.lo)
        hi = "inf" if self.hi is None else _fmt(self.hi)
        unit = "" if self.unit in ("", "1") else f" {self.unit}"
        return f"{noun} in [{lo}, {hi}]{unit}"

    def validate(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's kind, or raise."""
        v = self._convert(value)
        if self.choices is not None:
            if v not in self.choices:
                raise ParameterError(self.name, f"must be {self.range_text()}; got {value!r}")
            return v
        if self.kind in (int, float):
            if isinstance(v, float) and not math.isfinite(v):
                raise ParameterError(self.name, f"must be {self.range_text()}; got {value!r}")
            if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
                raise ParameterError(self.name, f"must be {self.range_text()}; got {value!r}")
        return v

    def _convert(self, value: Any) -> Any:
        bad = ParameterError(self.name, f"must be {self.range_text()}; got {value!r}")
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                return False
            raise bad
        if self.kind is str:
            if isinstance(value, str):
                return value
            raise bad
        if isinstance(value, bool):
            raise bad
        if self.kind is int:
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                try:
                    f = float(value.replace("_", ""))
                except ValueError:
                    raise bad from None
                if f.is_integer():
                    return int(f)
            raise bad
        # float
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.replace("_", ""))
            except ValueError:
                raise bad from None
        try:  # numpy scalars
            return float(value)
        except (TypeError, ValueError):
            raise bad from None

    def as_row(self) -> dict:
        return {
            "name": self.name,
            "default": self.default,
            "unit": self.unit,
            "range": self.range_text(),
            "flag": self.flag,
            "source": self.source,
            "doc": self.doc,
            "plausible": list(self.plausible) if self.plausible is not None else None,
            "plausible_source": self.plausible_source,
        }


def _fmt(x: float) -> str:
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}".replace(",", "_") if abs(x) >= 100_000 else str(int(x))
    return f"{x:g}"


def normalise_name(name: str) -> str:
    return name.strip().lstrip("-").replace("-", "_")


@dataclass
class ParamSet:
    """An ordered set of :class:`Param`, with validation of user overrides."""

    params: tuple[Param, ...]
    _index: dict = field(init=False, repr=False)

    def __init__(self, params: Iterable[Param]):
        self.params = tuple(params)
        self._index = {}
        for p in self.params:
            if p.name in self._index:
                raise ValueError(f"duplicate parameter {p.name}")
            self._index[p.name] = p

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __contains__(self, name: str) -> bool:
        return normalise_name(name) in self._index

    def __getitem__(self, name: str) -> Param:
        key = normalise_name(name)
        if key not in self._index:
            raise ParameterError(name, f"is unknown; known: {', '.join(self._index)}")
        return self._index[key]

    def __add__(self, other: "ParamSet") -> "ParamSet":
        return ParamSet(self.params + tuple(p for p in other.params if p.name not in self._index))

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> dict:
        """Defaults updated with validated ``overrides``; unknown names are errors."""
        values = self.defaults()
        for k, v in (overrides or {}).items():
            p = self[k]
            values[p.name] = p.validate(v)
        return values

    def table(self):
        import pandas as pd

        return pd.DataFrame([p.as_row() for p in self.params])

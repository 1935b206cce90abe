"""How long a reader waits after moving a control, for every control of every dashboard.

Run:  .venv/bin/python benchmarks/bench_dashboards.py [--repeat R] [--only NAME ...] [--target S]

For each :class:`~kscale_lab.viz.dashboard.Dashboard` subclass found in ``kscale_lab.viz``
(a new lab's dashboard is covered without an edit here), builds it at its defaults, then for
each control sets a few values in turn (every other option of a toggle or dropdown; the
minimum, middle and maximum of a slider; both states of a check box), timing each change
exactly as a click triggers it (the model's rerun and the plots' refill). The control goes
back to its default before the next one. Prints, per control, the median and the maximum
wall time, and the median CPU time of this process (close to the wall time on an idle
machine; on a shared one the wall time also counts waiting for a core), and marks the
controls whose median wall time is above the target (default 0.5 s).

Nothing is asserted: wall times depend on the machine (2 shared cores here).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def dashboards() -> list[type]:
    """Every concrete Dashboard subclass in kscale_lab.viz, in module order."""
    import kscale_lab.viz as viz
    from kscale_lab.viz.dashboard import Dashboard

    found = []
    for mod in sorted(m.name for m in pkgutil.iter_modules(viz.__path__)):
        module = importlib.import_module(f"kscale_lab.viz.{mod}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Dashboard) and cls is not Dashboard and cls.lab_name and cls.__module__ == module.__name__:
                found.append(cls)
    return found


def trial_values(widget) -> list:
    """A few values for ``widget`` other than its current one."""
    import ipywidgets as w

    cur = widget.value
    if isinstance(widget, (w.ToggleButtons, w.Dropdown, w.RadioButtons, w.Select, w.SelectionSlider)):
        vals = [v for v in (o[1] if isinstance(o, tuple) else o for o in widget.options)]
        return [v for v in vals if v != cur]
    if isinstance(widget, w.Checkbox):
        return [not cur]
    if isinstance(widget, w.FloatLogSlider):
        lo, hi = widget.min, widget.max
        vals = [widget.base ** e for e in (lo, (lo + hi) / 2, hi)]
    elif isinstance(widget, (w.IntSlider, w.FloatSlider, w.BoundedIntText, w.BoundedFloatText)):
        lo, hi, step = widget.min, widget.max, getattr(widget, "step", 1) or 1
        mid = lo + round((hi - lo) / 2 / step) * step
        vals = [lo, mid, hi]
        if isinstance(widget, (w.IntSlider, w.BoundedIntText)):
            vals = [int(v) for v in vals]
    else:
        return []
    out = []
    for v in vals:
        if all(abs(v - x) > 1e-12 for x in [cur] + out):
            out.append(v)
    return out


def bench(cls, repeat: int) -> list[dict]:
    t0, c0 = time.perf_counter(), time.process_time()
    dash = cls()
    built, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = [{"dashboard": cls.__name__, "control": "(first view)", "values": 1, "median_s": built, "max_s": built,
             "cpu_s": cpu, "refused": 0}]
    for name, widget in dash.controls.items():
        default = widget.value
        times, cpus, refused = [], [], 0
        for v in trial_values(widget):
            for _ in range(repeat):
                before = dash.status.value
                t0, c0 = time.perf_counter(), time.process_time()
                widget.value = v
                times.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
                if "Not run" in dash.status.value and dash.status.value != before:
                    refused += 1
                widget.value = default     # back to the default (not timed)
        if times:
            rows.append({"dashboard": cls.__name__, "control": name, "values": len(times),
                         "median_s": statistics.median(times), "max_s": max(times),
                         "cpu_s": statistics.median(cpus), "refused": refused})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="changes per value (default 1)")
    ap.add_argument("--only", nargs="*", default=None, help="dashboard class names or lab names to run")
    ap.add_argument("--target", type=float, default=0.5, help="seconds: mark controls whose median is above")
    a = ap.parse_args(argv)
    if a.repeat < 1:
        print("--repeat: must be an integer >= 1", file=sys.stderr)
        return 2
    if not a.target > 0:
        print("--target: must be a number of seconds > 0", file=sys.stderr)
        return 2
    classes = dashboards()
    if a.only:
        classes = [c for c in classes if c.__name__ in a.only or c.lab_name in a.only]
        if not classes:
            print(f"--only: no dashboard named {' '.join(a.only)}", file=sys.stderr)
            return 2
    print(f"{'dashboard':<22} {'control':<20} {'changes':>7} {'median s':>9} {'max s':>7} {'median CPU s':>12}")
    slow = []
    for cls in classes:
        for r in bench(cls, a.repeat):
            mark = ""
            if r["control"] != "(first view)" and r["median_s"] > a.target:
                mark = f"  > {a.target:g} s"
                slow.append(f"{r['dashboard']}.{r['control']}")
            if r["refused"]:
                mark += f"  ({r['refused']} refused with one line)"
            print(f"{r['dashboard']:<22} {r['control']:<20} {r['values']:>7} {r['median_s']:>9.3f} {r['max_s']:>7.3f} "
                  f"{r['cpu_s']:>12.3f}{mark}")
    print(f"\ncontrols with a median above {a.target:g} s: {', '.join(slow) if slow else 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

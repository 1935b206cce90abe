"""Parameter sweeps: one lab, every point of a grid, every setting and seed, one tidy table.

A sweep answers "how does this metric move with that parameter, for each setting of the
switch?" with the same model a notebook toggles. It runs ``lab.run(setting, overrides)``
for the cartesian product of the grid's values, for every setting of the lab's switch
(or those asked for) and every seed, and returns a pandas DataFrame: one row per run,
the parameters that define it (``run``, ``setting``, ``seed``, the grid's and ``base``'s
parameters) then every number in the run's ``summary``, under the lab's metric names::

    import kscale_lab
    df = kscale_lab.sweep("heartbeats", {"node_object_bytes": [5_000, 15_000, 30_000]},
                          base={"quota_backend_bytes": 2 * 1024**3})

or ``kscale-lab sweep heartbeats --grid node_object_bytes=5000,15000,30000 --out sweep.csv``.

Where it runs:

* by default in local worker processes, as many as the machine has cores (fewer if their
  runs would not fit in the memory limit together); ``workers=1`` runs in this process;
* with ``scheduler="tcp://HOST:PORT"`` (or a ``distributed.Client``) the same tasks go to
  an existing Dask cluster (``pip install 'kscale-lab[dask]'``; the workers need
  kscale_lab installed too). A run is a pure function of its lab, setting and parameters
  (the seed among them), so the table is the same wherever it ran, except for metrics that
  measure the wall clock (``wall_time_s``).

Before anything runs, every parameter and value is validated and every point's memory
estimate (:meth:`kscale_lab.labs.base.Lab.memory_estimate`) is checked: an unknown
parameter, a value out of range, or a sweep whose concurrent runs would not fit
(``KSCALE_LAB_MEMORY_LIMIT_GIB``) is refused with one line. With ``out`` the rows are
written as they finish, so an interrupted sweep (Ctrl-C) keeps the rows it finished.
Progress shows as a bar (:mod:`kscale_lab.progress`).
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import sys
import threading
import time
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .errors import KscaleError, ParameterError
from .scenario import memory_limit_bytes

GIB = 1024**3

#: columns that say which run a row is, before the parameters and metrics
ID_COLUMNS = ("run", "setting", "seed")


class SweepTooLarge(KscaleError):
    """The sweep's concurrent runs would not fit in memory; the message carries the estimate."""

    def __init__(self, need_bytes: int, limit_bytes: int, detail: str):
        self.need_bytes, self.limit_bytes = need_bytes, limit_bytes
        super().__init__(f"sweep needs about {need_bytes / GIB:.2f} GiB of memory ({detail}), more than the "
                         f"limit of {limit_bytes / GIB:.2f} GiB (set KSCALE_LAB_MEMORY_LIMIT_GIB to raise it); "
                         f"use fewer workers or smaller points")


# -- the task: what a worker runs --------------------------------------------------------------------------
_RUN_LOCK = threading.Lock()   # one run at a time per process: a Dask worker's threads share the labs' caches


def run_task(task: tuple) -> tuple[int, dict]:
    """Run one point: ``(index, lab name, setting, overrides)`` -> ``(index, metrics)``.

    A module-level function, so that local worker processes and Dask workers import it."""
    index, lab_name, setting, overrides = task
    from .labs.base import get_lab

    with _RUN_LOCK:
        result = get_lab(lab_name).run(setting, dict(overrides))
    return index, metrics(result.summary)


def metrics(summary: Mapping[str, Any]) -> dict:
    """The numbers (and flags, and labels) of a run's summary, as plain Python values.
    ``params`` (the effective parameters) and non-scalar entries are not metrics."""
    out = {}
    for k, v in summary.items():
        if k == "params":
            continue
        if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
            v = v.item()
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[k] = v
    return out


def _worker_init() -> None:  # local worker processes: Ctrl-C is the parent's to handle
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["KSCALE_LAB_PROGRESS"] = "0"


# -- the plan: validated before anything runs -----------------------------------------------------------------
def parse_grid(items: Iterable[str] | None) -> dict[str, list[str]]:
    """``["NAME=V1,V2", ...]`` (the command line's ``--grid``) -> ``{NAME: [V1, V2]}``."""
    grid: dict[str, list[str]] = {}
    for item in items or []:
        if "=" not in item:
            raise ParameterError("--grid", f"must be NAME=V1,V2,...; got {item!r}")
        name, values = (s.strip() for s in item.split("=", 1))
        if name in grid:
            raise ParameterError("--grid", f"names {name!r} twice; give all its values once: {name}=V1,V2,...")
        grid[name] = [v.strip() for v in values.split(",")]
    return grid


def _positive_int(value, what: str, lo: int = 1) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ParameterError(what, f"must be an integer >= {lo}; got {value!r}") from None
    if isinstance(value, bool) or not f.is_integer() or f < lo:
        raise ParameterError(what, f"must be an integer >= {lo}; got {value!r}")
    return int(f)


def plan(lab, grid: Mapping[str, Sequence] | None = None, settings: Sequence[str] | None = None,
         seeds: int = 1, base: Mapping[str, Any] | None = None) -> tuple[list[tuple], list[dict]]:
    """Validate a sweep and list its runs: ``(tasks, row_heads)``, in grid order.

    Raises :class:`~kscale_lab.errors.ParameterError` (one line) for an unknown
    parameter, a value out of range, a parameter both in the grid and in ``base``,
    an empty or repeated list of values, an unknown setting."""
    from .labs.base import Lab, get_lab

    lab = lab if isinstance(lab, Lab) else get_lab(lab)
    grid = dict(grid or {})
    base = dict(base or {})
    names: dict[str, list] = {}
    for raw, values in grid.items():
        p = lab.params[raw]  # unknown -> one line naming it
        if p.name in names:
            raise ParameterError(p.name, "is in the grid twice")
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise ParameterError(p.name, f"grid values must be a list; got {values!r}")
        vals = [p.validate(v) for v in values]
        if not vals:
            raise ParameterError(p.name, "has no grid values")
        if len(set(map(repr, vals))) != len(vals):
            raise ParameterError(p.name, f"has repeated grid values: {list(values)!r}")
        names[p.name] = vals
    fixed = {}
    for raw, v in base.items():
        p = lab.params[raw]
        if p.name in names:
            raise ParameterError(p.name, "is both in the grid and set to one value; give it in one place")
        fixed[p.name] = p.validate(v)
    seeds = _positive_int(seeds, "--seeds")
    has_seed = "seed" in lab.params
    if seeds > 1 and not has_seed:
        raise ParameterError("--seeds", f"needs a seed parameter, and lab {lab.name} has none (it is deterministic)")
    if seeds > 1 and "seed" in names:
        raise ParameterError("--seeds", "and a grid over seed say the same thing; give one of them")
    chosen = list(settings) if settings else list(lab.settings)
    for s in chosen:
        lab.check_setting(s)
    if len(set(chosen)) != len(chosen):
        raise ParameterError(lab.switch, f"settings are repeated: {chosen!r}")
    seed0 = fixed.get("seed", lab.params["seed"].default if has_seed else None)
    seed_list = [seed0 + i for i in range(seeds)] if has_seed and "seed" not in names else [None]
    if has_seed and seeds > 1:
        lab.params["seed"].validate(seed_list[-1])
    tasks, heads = [], []
    keys = list(names)
    for combo in itertools.product(*(names[k] for k in keys)):
        point = dict(zip(keys, combo))
        for s in chosen:
            for seed in seed_list:
                o = {**fixed, **point}
                if seed is not None:
                    o["seed"] = seed
                lab.resolve(s, o)  # every value checked again in the lab's own terms
                i = len(tasks)
                tasks.append((i, lab.name, s, o))
                head = {"run": i, "setting": s}
                if has_seed:
                    head["seed"] = o.get("seed", seed0)
                head.update(point)
                head.update({k: v for k, v in fixed.items() if k != "seed"})
                heads.append(head)
    return tasks, heads


def _fit_workers(lab, tasks, workers: int | None, local: bool) -> tuple[int, list[int]]:
    """Workers that fit in memory together; the estimates, per task."""
    from .labs.base import get_lab

    lab = get_lab(lab) if isinstance(lab, str) else lab
    est = [int(lab.memory_estimate(t[2], t[3])[0]) for t in tasks]
    limit = memory_limit_bytes()
    top = sorted(est, reverse=True)
    big = max(range(len(tasks)), key=lambda i: est[i]) if tasks else 0

    def describe(i):
        _, _, s, o = tasks[i]
        shown = ", ".join(f"{k}={v}" for k, v in o.items() if k != "seed") or "defaults"
        return f"{s}, {shown}"

    if not tasks:
        return 1, est
    if top[0] > limit:
        raise SweepTooLarge(top[0], limit, f"its largest run alone ({describe(big)}) needs "
                                           f"{top[0] / GIB:.2f} GiB")
    if not local:
        return 1, est
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    want = min(workers or cores, len(tasks))
    need = sum(top[:want])
    if need <= limit:
        return want, est
    if workers:  # the user asked for this many: refuse, do not change it
        raise SweepTooLarge(need, limit, f"{workers} workers at once, the largest run ({describe(big)}) "
                                         f"{top[0] / GIB:.2f} GiB")
    k = want
    while k > 1 and sum(top[:k]) > limit:
        k -= 1
    return k, est


# -- execution: here, in local processes, or on a Dask cluster -------------------------------------------------
def _run_here(tasks) -> Iterator[tuple[int, dict]]:
    for t in tasks:
        yield run_task(t)


def _run_pool(tasks, workers: int) -> Iterator[tuple[int, dict]]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")   # safe from a notebook kernel's threads; same on every platform
    with _main_hidden():
        pool = ctx.Pool(workers, initializer=_worker_init)
    try:
        yield from pool.imap_unordered(run_task, tasks, chunksize=1)
        pool.close()
        pool.join()
    finally:
        pool.terminate()   # on Ctrl-C or an error: the runs in flight are abandoned, not awaited


@contextmanager
def _main_hidden():
    """While the workers start, hide the caller's ``__main__``: spawned workers then do not
    re-run the caller's script (a script need not guard ``sweep()`` with ``if __name__ ==
    "__main__"``). They need nothing from it: :func:`run_task` lives in this module."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def dask_client(scheduler):
    """``(client, ours)`` for an address such as ``tcp://HOST:8786`` or a ``distributed.Client``."""
    try:
        from distributed import Client
    except ImportError:
        raise ParameterError("--scheduler", "needs dask.distributed: pip install 'kscale-lab[dask]'") from None
    if isinstance(scheduler, Client):
        return scheduler, False
    if not isinstance(scheduler, str) or "://" not in scheduler:
        raise ParameterError("--scheduler", f"must be a Dask scheduler address such as tcp://HOST:8786; "
                                            f"got {scheduler!r}")
    try:
        return Client(scheduler, timeout=10, set_as_default=False), True
    except (OSError, TimeoutError) as err:
        raise ParameterError("--scheduler", f"could not reach a Dask scheduler at {scheduler}: "
                                            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None


def _run_dask(tasks, client) -> Iterator[tuple[int, dict]]:
    from distributed import as_completed

    futures = client.map(run_task, tasks, pure=False)
    try:
        for fut in as_completed(futures, loop=client.loop):
            yield fut.result()
    finally:
        client.cancel(futures)


# -- the table, written as it grows ------------------------------------------------------------------------
class _Out:
    """Rows to a CSV (appended as each run finishes) or a parquet file (rewritten every
    few seconds); at the end, or on an interruption, the whole file in run order."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path else None
        self.kind = None
        self._header: list[str] | None = None
        self._last = 0.0
        if self.path is None:
            return
        suffix = self.path.suffix.lower()
        if suffix == ".csv":
            self.kind = "csv"
        elif suffix in (".parquet", ".pq"):
            self.kind = "parquet"
            import importlib.util

            if importlib.util.find_spec("pyarrow") is None:
                raise ParameterError("--out", f"{self.path.name}: writing parquet needs pyarrow: "
                                              f"pip install 'kscale-lab[parquet]' (or write a .csv)")
        else:
            raise ParameterError("--out", f"must end in .csv or .parquet; got {str(self.path)!r}")
        if not self.path.parent.is_dir():
            raise ParameterError("--out", f"folder {str(self.path.parent)!r} does not exist")

    def add(self, rows: list[dict]) -> None:
        if self.kind == "csv":
            row = rows[-1]
            if self._header is None or any(k not in self._header for k in row):
                self._header = list(dict.fromkeys(k for r in rows for k in r))
                with open(self.path, "w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=self._header)
                    w.writeheader()
                    w.writerows(rows)
            else:
                with open(self.path, "a", newline="") as f:
                    csv.DictWriter(f, fieldnames=self._header).writerow(row)
        elif self.kind == "parquet" and time.monotonic() - self._last > 5.0:
            self.finish(rows)

    def finish(self, rows: list[dict]):
        df = table(rows)
        if self.kind == "csv":
            df.to_csv(self.path, index=False)
        elif self.kind == "parquet":
            df.to_parquet(self.path, index=False)
        self._last = time.monotonic()
        return df


def table(rows: list[dict]):
    import pandas as pd

    rows = sorted(rows, key=lambda r: r["run"])
    return pd.DataFrame(rows, columns=list(dict.fromkeys(k for r in rows for k in r)) or list(ID_COLUMNS[:2]))


def _row(head: dict, m: dict) -> dict:
    row = dict(head)
    for k, v in m.items():
        if k in row:
            if repr(row[k]) == repr(v):
                continue
            k = f"{k}_summary"   # a metric named like a parameter, with another value: keep both
        row[k] = v
    return row


def sweep(lab, grid: Mapping[str, Sequence] | None = None, *, settings: Sequence[str] | None = None,
          seeds: int = 1, base: Mapping[str, Any] | None = None, out: str | os.PathLike | None = None,
          scheduler=None, workers: int | None = None, progress: bool | None = None):
    """Run ``lab`` for every point of ``grid`` x setting x seed; a DataFrame, one row per run.

    ``grid``: parameter -> list of values (their cartesian product); ``settings``: which
    settings of the lab's switch (default all); ``seeds``: runs per point, seeds
    ``seed, seed+1, ...`` from the lab's (or ``base``'s) seed; ``base``: parameters set to
    one value for every run; ``out``: a ``.csv`` or ``.parquet`` file, written as runs
    finish; ``scheduler``: a Dask scheduler address or ``distributed.Client`` (default:
    local processes); ``workers``: local worker processes (default: the cores, fewer if
    they would not fit in memory; 1 runs here); ``progress``: show a bar (default: in a
    notebook or a terminal, see :mod:`kscale_lab.progress`)."""
    from .labs.base import Lab, get_lab
    from .progress import bar

    lab = lab if isinstance(lab, Lab) else get_lab(lab)
    if workers is not None:
        workers = _positive_int(workers, "--workers")
        if scheduler is not None:
            raise ParameterError("--workers", "applies to local runs; with --scheduler the cluster's workers run "
                                              "the sweep")
    tasks, heads = plan(lab, grid, settings, seeds, base)
    n_workers, _ = _fit_workers(lab, tasks, workers, local=scheduler is None)
    writer = _Out(out)
    client, ours = (dask_client(scheduler) if scheduler is not None else (None, False))
    if client is not None:
        runs, where = _run_dask(tasks, client), "dask"
    elif n_workers <= 1:
        runs, where = _run_here(tasks), "here"
    else:
        runs, where = _run_pool(tasks, n_workers), f"{n_workers} workers"
    rows: list[dict] = []
    b = bar(total=len(tasks), desc=f"sweep {lab.name} ({where})", unit="run", show=progress)
    try:
        with b:
            for index, m in runs:
                rows.append(_row(heads[index], m))
                if writer.path:
                    writer.add(rows)
                b.update(1)
    except BaseException as err:
        runs.close()   # stops the local workers or cancels the Dask futures
        if writer.path:
            writer.finish(rows)
        if isinstance(err, KeyboardInterrupt):
            kept = f"kept {len(rows)} of {len(tasks)} runs in {writer.path}" if writer.path else \
                f"{len(rows)} of {len(tasks)} runs done, none kept (no out file)"
            print(f"kscale-lab: sweep interrupted: {kept}", file=sys.stderr)
        raise
    finally:
        if ours:
            client.close()
    return writer.finish(rows) if writer.path else table(rows)


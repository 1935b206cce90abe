"""The simulation engine: SimPy time for the few, numpy arrays for the many.

Picture a control room with a handful of operators (API servers, etcd, the node
lifecycle controller, the compactor) and a stadium of 10,000 kubelets. SimPy runs
the operators as processes: each wakes at its own period (the compactor every
5 min, the node monitor every 5 s) or when something happens to it. The stadium is
never a process per seat: the fleet is a set of numpy arrays that one process
advances one ``tick`` at a time, all seats at once.

:class:`Engine` holds the SimPy environment, the seeded random generator (one
``numpy.random.Generator`` per run: a run is deterministic for its seed) and a
:class:`Recorder` that keeps metrics under their upstream names
(``apiserver_request_duration_seconds``, ``etcd_mvcc_db_total_size_in_bytes``, ...)
and returns them as a pandas DataFrame.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import simpy


class Recorder:
    """Time series and events under upstream metric names.

    ``sample(t, **metrics)`` adds one row to the time series (one row per tick);
    ``event(t, what, **detail)`` records something that happened once (an alarm,
    a compaction). ``frame()`` / ``events_frame()`` give DataFrames.
    """

    def __init__(self):
        self._rows: list[dict] = []
        self._events: list[dict] = []

    def sample(self, t: float, **metrics: float) -> None:
        metrics["time"] = t
        self._rows.append(metrics)

    def event(self, t: float, what: str, **detail) -> None:
        self._events.append({"time": t, "event": what, **detail})

    def frame(self):
        import pandas as pd

        df = pd.DataFrame.from_records(self._rows)
        if "time" in df:
            df = df[["time"] + [c for c in df.columns if c != "time"]]
        return df

    def events_frame(self):
        import pandas as pd

        return pd.DataFrame(self._events, columns=None if self._events else ["time", "event"])


class Engine:
    """A SimPy environment with a seeded generator and a recorder."""

    def __init__(self, seed: int, tick: float):
        self.env = simpy.Environment()
        self.rng = np.random.default_rng(seed)
        self.tick = float(tick)
        self.rec = Recorder()
        self._generators: list = []

    @property
    def now(self) -> float:
        return float(self.env.now)

    def every(self, period: float, fn: Callable[[float], None], offset: float = 0.0, priority: int = 0):
        """Run ``fn(now)`` every ``period`` seconds from ``offset``.

        Processes registered with a lower ``priority`` number run first within
        the same instant (SimPy runs same-time events in scheduling order; the
        registration order is the tie-break the model relies on: the fleet acts
        before the monitors look).
        """

        def proc():
            if offset > 0:
                yield self.env.timeout(offset)
            while True:
                fn(self.now)
                yield self.env.timeout(period)

        return self._start(proc())

    def at(self, when: float, fn: Callable[[float], None]):
        def proc():
            yield self.env.timeout(max(0.0, when - self.now))
            fn(self.now)

        return self._start(proc())

    def _start(self, gen):
        self._generators.append(gen)
        return self.env.process(gen)

    def close(self) -> None:
        """End every process and drop the environment.

        A suspended SimPy process and its pending event reference each other (a cycle
        only the garbage collector frees), and the process's frame references the model.
        Closing the generators releases the model's arrays as soon as the run is over."""
        for g in self._generators:
            g.close()
        self._generators.clear()
        self.env = None

    def run(self, until: float) -> None:
        # run to just past `until` so the last tick at `until` is included
        self.env.run(until=until + self.tick * 1e-6)

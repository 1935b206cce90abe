"""Memory: what a run will hold, estimated before it starts, refused when it would not fit.

A notebook on Binder has 1-2 GB. If a scenario needs more, the kernel is killed and
the student sees a dead notebook, not a reason. So every lab says, before it runs,
how many bytes the run will hold at its peak, and the run is refused with that
estimate when it is above the limit (1 GiB by default, raised with the environment
variable ``KSCALE_LAB_MEMORY_LIMIT_GIB``).

The estimate is a :class:`Footprint`: a list of named arrays and tapes (etcd's key
index, the revision log, a latency tape, the watch cache's indexes, ...), each a count
times the bytes of one element, taken from the parameters of the run. Counts that the
run only knows as it goes (writes, retries, attempts) are taken at their upper bound
from the mechanism (a kubelet retries at most 5 times a round; a pod is tried at most
``max_attempts`` times), so that the estimate bounds the peak rather than guessing it.
A run goes through *moments* (building its state, stepping, compacting, summarising):
an item is held throughout, held from a moment on (a tape that fills up), or alive only
during one moment (the copies of a compaction, the batch of a bulk insert); the peak is
the largest moment. On top: the interpreter and its libraries (:func:`baseline_bytes`, measured) and the
allocator's slack (:data:`ALLOCATOR_OVERHEAD`).

``tests/test_memory.py`` runs every lab of the registry in a fresh process at a few
sizes and checks estimate >= measured peak RSS; ``benchmarks/bench_memory.py`` prints
both at 10k and 100k nodes. :func:`measure` is the fresh-process measurement both use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ParameterError, ScenarioTooLarge

KIB, MIB, GIB = 1024, 1024**2, 1024**3

LIMIT_VARIABLE = "KSCALE_LAB_MEMORY_LIMIT_GIB"

#: peak RSS of a Python process that imported numpy, pandas, simpy and every lab of the
#: registry, before it runs anything. Measured with ``python -m kscale_lab.memory baseline``:
#: 128 MiB with the ten labs (CPython 3.11, numpy 2.4, pandas 3.1, Linux x86-64), rounded up.
BASELINE_SCRIPT_BYTES = 144 * MIB
#: the same inside a Jupyter kernel with the dashboards imported and BokehJS loaded
#: (ipykernel, ipywidgets, bokeh, jupyter_bokeh): measured 150 MiB when the script's was 80, so
#: the kernel adds ~70 MiB: 128 + 70, rounded up.
BASELINE_KERNEL_BYTES = 224 * MIB
#: assumption: glibc malloc and pymalloc round blocks up and keep some freed memory; small
#: Python objects (dicts of parameters, DataFrame indexes) are not itemised. Where the
#: itemised arrays are exact (etcd's keyspace while it is built), the measured peak above
#: the baseline matched them within 5 % at the sizes of tests/test_memory.py; elsewhere the
#: itemised upper bounds were 1.0-4x what the run reached.
ALLOCATOR_OVERHEAD = 0.15
#: one-off allocations independent of the run's size (pyarrow's memory pool behind pandas'
#: first string column, a DataFrame's index and block manager, a SimPy environment, NumPy's
#: small-array cache, interpreter frames). Measured: the first run of a control-plane lab at
#: 500 nodes raised the resident set 13-20 MiB above the import baseline, of which the
#: itemised arrays were under 2 MiB
FIXED_BYTES = 20 * MIB

# CPython object sizes (64-bit): used to price the Python containers some models keep
PY_INT_BYTES = 32        # an int above 256: 28 B rounded to pymalloc's 32-B block
PY_FLOAT_BYTES = 24
PY_LIST_SLOT_BYTES = 8
PY_SET_BYTES = 216       # sys.getsizeof(set()): header + the 8-slot small table
PY_SET_SLOT_BYTES = 16   # one hash table entry (key pointer + hash)
PY_DICT_ENTRY_BYTES = 50  # amortised: index byte(s) + 24-B entry, at 2/3 load, resized x2


def memory_limit_bytes() -> int:
    """The limit: ``KSCALE_LAB_MEMORY_LIMIT_GIB`` (GiB, default 1) in bytes."""
    raw = os.environ.get(LIMIT_VARIABLE, "1")
    try:
        gib = float(raw)
    except ValueError:
        raise ParameterError(LIMIT_VARIABLE, f"must be a number of GiB; got {raw!r}") from None
    if not gib > 0 or gib != gib or gib == float("inf"):
        raise ParameterError(LIMIT_VARIABLE, f"must be a number of GiB in (0, inf); got {raw!r}")
    return int(gib * GIB)


def in_kernel() -> bool:
    return "ipykernel" in sys.modules


def current_rss_bytes() -> int:
    """This process's resident set now (``VmRSS``), in bytes; 0 where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * KIB
    except OSError:
        pass
    return 0


_BASELINE: dict[bool, int] = {}


def baseline_bytes() -> int:
    """Memory the process holds before a run: interpreter and libraries. The larger of the
    measured constant (:data:`BASELINE_SCRIPT_BYTES`, or :data:`BASELINE_KERNEL_BYTES` in a
    Jupyter kernel) and this process's resident set when it first asks, read once and kept,
    so that every estimate of one process uses the same baseline. The constant is a floor:
    one machine's libraries, page sizes and allocator (transparent huge pages) hold up to
    ~30 MiB more than another's (146 MiB on a CI machine where this one measured 119)."""
    k = in_kernel()
    if k not in _BASELINE:
        _BASELINE[k] = max(BASELINE_KERNEL_BYTES if k else BASELINE_SCRIPT_BYTES, current_rss_bytes())
    return _BASELINE[k]


def check(need_bytes: int, detail: str = "") -> None:
    """Raise :class:`ScenarioTooLarge` if ``need_bytes`` is above the limit."""
    limit = memory_limit_bytes()
    if need_bytes > limit:
        raise ScenarioTooLarge(int(need_bytes), limit, detail)


def set_bytes(n: int) -> int:
    """Bytes of a CPython ``set`` of ``n`` elements built by adding them one by one
    (``set(a_list)``), without the elements. ``Objects/setobject.c``: after an insert
    that brings fill to 3/5 of the table, the table grows to the smallest power of two
    above 4 x used (2 x used above 50,000 elements)."""
    n = int(n)
    mask = 7                                   # PySet_MINSIZE = 8 slots, inside the object
    while True:
        used = -(-mask * 3 // 5)               # first fill with fill * 5 >= mask * 3
        if used > n:
            break
        minused = used * 2 if used > 50_000 else used * 4
        size = 8
        while size <= minused:
            size <<= 1
        mask = size - 1
    return PY_SET_BYTES + (0 if mask == 7 else (mask + 1) * PY_SET_SLOT_BYTES)


@dataclass
class Item:
    name: str
    count: float
    bytes_each: float
    phase: str | None = None     # only during this moment of the run
    since: str | None = None     # from this moment of the run on

    @property
    def nbytes(self) -> float:
        return float(self.count) * float(self.bytes_each)


@dataclass
class Footprint:
    """What a run holds at its peak: named arrays, each ``count x bytes_each``.

    A run goes through *moments* (building its state, stepping, compacting, summarising),
    named by the items in the order they first appear. ``add(name, count, bytes_each)``
    adds something held through the whole run; ``add(..., since="tick")`` something
    allocated at that moment and held from then on (a tape that fills up);
    ``add(..., phase="compaction")`` something that lives only during that moment (its
    temporaries). The peak is the largest moment; :meth:`total` adds the baseline, the
    fixed part and the allocator's overhead."""

    what: str
    items: list[Item] = field(default_factory=list)

    def add(self, name: str, count: float, bytes_each: float, phase: str | None = None,
            since: str | None = None) -> "Footprint":
        if not (count >= 0 and bytes_each >= 0):
            raise ValueError(f"{name}: count and bytes must be >= 0; got {count!r} x {bytes_each!r}")
        if phase is not None and since is not None:
            raise ValueError(f"{name}: give phase or since, not both")
        self.items.append(Item(name, float(count), float(bytes_each), phase, since))
        return self

    def add_bytes(self, name: str, nbytes: float, phase: str | None = None, since: str | None = None) -> "Footprint":
        return self.add(name, 1, nbytes, phase, since)

    def extend(self, other: "Footprint", prefix: str = "") -> "Footprint":
        for it in other.items:
            self.items.append(Item(prefix + it.name, it.count, it.bytes_each, it.phase, it.since))
        return self

    # -- sums ------------------------------------------------------------------------------
    @property
    def moments(self) -> list[str]:
        out: list[str] = []
        for it in self.items:
            for m in (it.phase, it.since):
                if m is not None and m not in out:
                    out.append(m)
        return out

    def _present(self, it: Item, i: int, order: dict) -> bool:
        if it.phase is not None:
            return order[it.phase] == i
        if it.since is not None:
            return order[it.since] <= i
        return True

    def moment_bytes(self) -> dict[str, float]:
        """Bytes held at each moment."""
        ms = self.moments
        order = {m: i for i, m in enumerate(ms)}
        if not ms:
            return {"run": sum(it.nbytes for it in self.items)}
        return {m: sum(it.nbytes for it in self.items if self._present(it, i, order)) for i, m in enumerate(ms)}

    @property
    def peak_moment(self) -> str:
        mb = self.moment_bytes()
        return max(mb, key=mb.get)

    @property
    def held_bytes(self) -> float:
        """Bytes held through the whole run (neither a phase nor a later moment)."""
        return sum(it.nbytes for it in self.items if it.phase is None and it.since is None)

    @property
    def arrays_bytes(self) -> float:
        """Bytes at the peak moment."""
        return max(self.moment_bytes().values())

    def total(self) -> int:
        """The estimate: baseline + fixed + (1 + overhead) x arrays at the peak."""
        return int(baseline_bytes() + FIXED_BYTES + (1.0 + ALLOCATOR_OVERHEAD) * self.arrays_bytes)

    def at_peak(self) -> list[Item]:
        ms = self.moments
        if not ms:
            return list(self.items)
        order = {m: i for i, m in enumerate(ms)}
        i = order[self.peak_moment]
        return [it for it in self.items if self._present(it, i, order)]

    def largest(self, k: int = 3) -> list[Item]:
        return sorted(self.at_peak(), key=lambda it: -it.nbytes)[:k]

    def detail(self) -> str:
        """One line: what, and the largest items at the peak."""
        parts = [f"{it.name} {it.nbytes / GIB:.2f} GiB" for it in self.largest() if it.nbytes >= 0.01 * GIB]
        return f"{self.what}; largest: {', '.join(parts)}" if parts else self.what

    def rows(self) -> list[dict]:
        peak = set(map(id, self.at_peak()))
        return [{"item": it.name, "when": (f"during {it.phase}" if it.phase else
                                           f"from {it.since}" if it.since else "held"),
                 "count": it.count, "bytes_each": it.bytes_each, "MiB": it.nbytes / MIB,
                 "at_peak": id(it) in peak} for it in self.items]

    def check(self) -> int:
        need = self.total()
        check(need, self.detail())
        return need


# --------------------------------------------------------------------------------------
# Memoised states: reuse without holding more than the estimate counts
# --------------------------------------------------------------------------------------

#: besides the entry a run uses, a :class:`Memo` keeps earlier entries only while they
#: total at most this (assumption: enough for a small scenario to toggle back and forth
#: instantly, little next to the 1 GiB limit); labs with a memo count it in their footprint
MEMO_OTHERS_BYTES = 64 * MIB


class Memo(OrderedDict):
    """A small LRU of expensive states (the cluster's writes, caches) that several settings
    and reruns share. ``get_or(key, make, nbytes)``: the cached value, or ``make()``; before
    making a new one, older entries are dropped until the others total at most
    :data:`MEMO_OTHERS_BYTES`, so a run holds its own state plus at most that."""

    def __init__(self, size: int = 2, others_bytes: int = MEMO_OTHERS_BYTES):
        super().__init__()
        self.size = size
        self.others_bytes = others_bytes
        self._nbytes: dict = {}

    def get_or(self, key, make, nbytes: float = 0.0):
        if key in self:
            self.move_to_end(key)
            return self[key]
        while len(self) >= self.size or (len(self) and sum(self._nbytes.get(k, 0.0) for k in self)
                                         > self.others_bytes):
            old, _ = self.popitem(last=False)
            self._nbytes.pop(old, None)
        value = make()
        self[key] = value
        self._nbytes[key] = float(nbytes)
        return value

    def clear(self) -> None:
        super().clear()
        self._nbytes.clear()


# --------------------------------------------------------------------------------------
# Measuring a run in a fresh process (tests/test_memory.py, benchmarks/bench_memory.py)
# --------------------------------------------------------------------------------------

def peak_rss_bytes() -> int:
    """This process's peak resident set (``VmHWM``), in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * KIB
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * KIB   # Linux: KiB


def _child(lab_name: str, overrides: dict, settings: list[str] | None) -> dict:
    from .labs.base import get_lab

    lab = get_lab(lab_name)
    settings = settings or list(lab.settings)
    before = peak_rss_bytes()
    est = {s: lab.memory_estimate(s, overrides)[0] for s in settings}
    out = {"lab": lab_name, "overrides": overrides, "settings": settings, "baseline_rss": before,
           "estimate": max(est.values()), "estimates": est}
    t0 = time.perf_counter()
    try:
        for s in settings:
            lab.run(s, overrides)
    except ScenarioTooLarge as err:
        out["refused"] = str(err)
    out["wall_s"] = time.perf_counter() - t0
    out["peak_rss"] = peak_rss_bytes()
    return out


def measure(lab_name: str, overrides: Mapping[str, Any] | None = None, settings=None,
            env: Mapping[str, str] | None = None, timeout: float = 1800.0) -> dict:
    """Run ``lab_name`` (every setting, one after the other, as ``kscale-lab run`` does)
    in a fresh Python process; return its estimate, measured peak RSS and wall time.
    A refused run has ``refused`` (the one-line message)."""
    args = [sys.executable, "-m", "kscale_lab.memory", "measure", lab_name,
            "--overrides", json.dumps(dict(overrides or {}))]
    if settings:
        args += ["--settings", ",".join(settings)]
    e = dict(os.environ)
    e["KSCALE_LAB_CACHE"] = "0"        # measure the run, not a read of its stored result
    e.update(env or {})
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=e)
    if proc.returncode != 0:
        raise RuntimeError(f"measuring {lab_name} {overrides} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_baseline(timeout: float = 300.0) -> int:
    """Peak RSS of a fresh process that imported every lab (what :data:`BASELINE_SCRIPT_BYTES`
    stands for), in bytes."""
    proc = subprocess.run([sys.executable, "-m", "kscale_lab.memory", "baseline"], capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"measuring the baseline failed:\n{proc.stderr[-2000:]}")
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["baseline_rss"])


def _main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m kscale_lab.memory")
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="run a lab and print estimate and peak RSS as JSON")
    m.add_argument("lab")
    m.add_argument("--overrides", default="{}")
    m.add_argument("--settings", default="")
    sub.add_parser("baseline", help="peak RSS after importing every lab (what BASELINE_SCRIPT_BYTES is)")
    a = ap.parse_args(argv)
    if a.cmd == "baseline":
        from .labs.base import registry

        registry()
        print(json.dumps({"baseline_rss": peak_rss_bytes(), "BASELINE_SCRIPT_BYTES": BASELINE_SCRIPT_BYTES}))
        return 0
    out = _child(a.lab, json.loads(a.overrides), [s for s in a.settings.split(",") if s] or None)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(_main())

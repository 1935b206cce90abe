"""What the benchmark scripts share: timing a call (wall and CPU) and a notebook's Run-All.
Peak memory comes from :func:`kscale_lab.memory.measure` (a fresh process, VmHWM)."""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(fn):
    """(fn(), wall seconds, CPU seconds of this process)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def notebook_seconds(path: Path) -> float:
    """Wall seconds of a notebook's Run-All in a fresh kernel."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    t = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - t


def peak_rss_gb(lab: str, settings=None) -> tuple[float, float]:
    """(peak RSS, memory estimate) in GB of ``lab``'s run of ``settings`` (default: all) in a fresh process."""
    from kscale_lab.memory import measure

    r = measure(lab, settings=settings)
    return r["peak_rss"] / 1e9, r["estimate"] / 1e9

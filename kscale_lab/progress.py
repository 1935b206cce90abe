"""Progress bars for the work a person waits for.

A sweep of a hundred runs, rebuilding the notebooks, the heavy real-etcd script, the
capstone's ablation: each says how far it is, in the terminal (a tqdm bar on stderr)
and in a notebook (tqdm's widget). One helper, so that every long computation shows
progress the same way::

    from kscale_lab.progress import bar, track

    for point in track(points, desc="ablation", unit="run"):
        ...

    with bar(total=len(tasks), desc="sweep heartbeats", unit="run") as b:
        for done in finished():
            b.update(1)

When is a bar shown? In a notebook (a Jupyter kernel), and in a terminal whose stderr is
a TTY; not in a log file or a CI log, where a redrawn line is noise. The environment
variable ``KSCALE_LAB_PROGRESS`` forces it: ``1`` shows bars everywhere, ``0`` hides
them. A hidden bar costs nothing and is still a working object (``update``, ``close``).
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where tqdm's widget form is the right bar)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def enabled() -> bool:
    """Whether a bar is shown here (see the module docstring)."""
    forced = os.environ.get("KSCALE_LAB_PROGRESS", "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    if in_notebook():
        return True
    err = sys.stderr
    return bool(err is not None and hasattr(err, "isatty") and err.isatty())


def bar(total: int | None = None, desc: str = "", unit: str = "it", leave: bool = True,
        show: bool | None = None, **kwargs):
    """A tqdm progress bar: the notebook widget in a kernel, text on stderr otherwise.

    ``show``: True or False overrides :func:`enabled`. Use it as a context manager or
    call ``close()``; ``update(n)`` advances it."""
    show = enabled() if show is None else bool(show)
    if in_notebook():
        try:
            from tqdm.notebook import tqdm
        except ImportError:  # ipywidgets missing: the text bar, on stderr
            from tqdm import tqdm
    else:
        from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, disable=not show, dynamic_ncols=True, **kwargs)


def track(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
          show: bool | None = None, **kwargs) -> Iterator[T]:
    """Iterate over ``iterable`` with a progress bar (closed when the loop ends)."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with bar(total=total, desc=desc, unit=unit, show=show, **kwargs) as b:
        for item in iterable:
            yield item
            b.update(1)

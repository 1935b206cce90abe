"""A disk cache for expensive, deterministic results: the capstone's runs (~5 s each, twelve
in a scorecard, ten more in the minimal-set exercise) and each lab's claims values (the runs
behind the claims table and its bands, which the tests, the report and the tour all need).

A run is a pure function of its setting, its resolved parameters and the code: the key is a
SHA-256 of all three, the code being every ``.py`` file of the package and every file under
``data/`` (calibration). Change a parameter, a cost, a line of a mechanism: the key changes
and the run is computed again. Nothing is ever looked up by a figure, only by its causes.

Where: ``$KSCALE_LAB_CACHE_DIR``, else ``~/.cache/kscale_lab``. ``KSCALE_LAB_CACHE=0`` turns
it off (the memory measurements and the reproducibility tests do). At most
:data:`BUDGET_BYTES` are kept, the least recently used dropped first. A file that cannot be
read (a half-written or foreign file) is a miss, never an error.

What the key cannot see: a module changed in memory (a monkeypatched constant in a running
kernel). Experiment that way with ``KSCALE_LAB_CACHE=0``, or edit the file."""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import ParameterError

DIR_VARIABLE = "KSCALE_LAB_CACHE_DIR"
SWITCH_VARIABLE = "KSCALE_LAB_CACHE"
#: what the cache may hold on disk (a capstone run pickles to ~2 MB)
BUDGET_BYTES = 256 * 1024**2
_PACKAGE = Path(__file__).resolve().parent
_DATA = _PACKAGE.parent / "data"


def enabled() -> bool:
    raw = os.environ.get(SWITCH_VARIABLE, "1").strip().lower()
    if raw in ("1", "on", "yes", "true", ""):
        return True
    if raw in ("0", "off", "no", "false"):
        return False
    raise ParameterError(SWITCH_VARIABLE, f"must be 1 or 0 (on or off); got {raw!r}")


def directory() -> Path:
    d = os.environ.get(DIR_VARIABLE)
    return Path(d) if d else Path.home() / ".cache" / "kscale_lab"


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 over the package's source and the calibration data (paths and bytes), and the
    versions of Python, NumPy and pandas: what a run's result depends on besides its inputs."""
    import numpy
    import pandas

    h = hashlib.sha256(f"{sys.version_info[:3]} {numpy.__version__} {pandas.__version__}".encode())
    files = sorted(_PACKAGE.rglob("*.py"))
    if _DATA.is_dir():
        files += sorted(p for p in _DATA.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(_PACKAGE.parent)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def key(kind: str, *parts: Any) -> str:
    """The file name of a result: ``kind`` and a digest of ``parts`` (by ``repr``) and the code."""
    h = hashlib.sha256(code_digest().encode())
    h.update(repr((kind,) + parts).encode())
    return f"{kind}-{h.hexdigest()[:32]}.pickle"


def _path(k: str) -> Path:
    return directory() / k


def has(k: str) -> bool:
    return enabled() and _path(k).is_file()


def load(k: str):
    """The stored result, or None (off, absent or unreadable)."""
    if not enabled():
        return None
    p = _path(k)
    try:
        with open(p, "rb") as f:
            out = pickle.load(f)
        os.utime(p)                         # least recently used goes first
        return out
    except Exception:   # absent, half-written, from another version: a miss
        return None


def store(k: str, value) -> None:
    if not enabled():
        return
    d = directory()
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, d / k)              # atomic: a reader sees all of it or nothing
        _prune(d)
    except OSError:     # a read-only or full disk: the run is still returned, just not kept
        pass


def _prune(d: Path) -> None:
    files = sorted((p for p in d.glob("*.pickle")), key=lambda p: p.stat().st_mtime, reverse=True)
    total = 0
    for p in files:
        total += p.stat().st_size
        if total > BUDGET_BYTES:
            p.unlink(missing_ok=True)


def cached(k: str, compute: Callable[[], Any]):
    """``compute()``, or the result stored under ``k``."""
    hit = load(k)
    if hit is not None:
        return hit
    out = compute()
    store(k, out)
    return out


def clear() -> int:
    """Remove every stored result; return how many."""
    d = directory()
    n = 0
    for p in d.glob("*.pickle") if d.is_dir() else ():
        p.unlink(missing_ok=True)
        n += 1
    return n

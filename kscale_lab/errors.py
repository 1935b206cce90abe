"""Errors a user can cause, with messages a user can act on.

Every error raised because of a value the user gave is a :class:`ParameterError`:
it names the parameter, the allowed range and the value received, in one line.
The command line prints that line and exits with status 2; a notebook shows it
as a one-line message instead of a traceback (see :func:`kscale_lab.viz.show_error`).
"""

from __future__ import annotations


class KscaleError(Exception):
    """Base class of every error kscale_lab raises on purpose."""


class ParameterError(KscaleError, ValueError):
    """A user-supplied value is unknown, of the wrong type or out of range.

    ``str(err)`` is a single line such as
    ``parameter 'nodes' must be an integer in [1, 100000]; got -5``.
    """

    def __init__(self, name: str, message: str):
        self.name = name
        super().__init__(f"parameter '{name}' {message}")


class ScenarioTooLarge(KscaleError):
    """The scenario would not fit in memory; the message carries the estimate, the
    limit and the environment variable that raises it, in one line."""

    def __init__(self, need_bytes: int, limit_bytes: int, detail: str = ""):
        import math

        self.need_bytes = need_bytes
        self.limit_bytes = limit_bytes
        self.detail = detail
        gib = 1024**3
        extra = f" ({detail})" if detail else ""
        enough = math.ceil(need_bytes / gib * 10) / 10
        super().__init__(
            f"scenario needs about {need_bytes / gib:.2f} GiB of memory{extra}, "
            f"more than the limit of {limit_bytes / gib:.2f} GiB: set KSCALE_LAB_MEMORY_LIMIT_GIB={enough:g} "
            f"(or more) if this machine has it, or make the scenario smaller"
        )

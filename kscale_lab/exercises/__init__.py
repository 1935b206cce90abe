"""Exercise checkers: each runs the reader's code against the model.

A check returns a :class:`Verdict`, shown as one line:

* ``done``: the reader's code agrees with the model (the line says what was checked);
* ``not done yet``: the code is still the stub (returns ``None``) or raises
  ``NotImplementedError``;
* ``not yet right``: it runs but disagrees; the line gives one counter-example.

Checks are deterministic (fixed seeds), so the verdict lines can be compared by
nbval (``# NBVAL_CHECK_OUTPUT``). Under nbgrader's autograder (``NBGRADER_EXECUTION``
set) a verdict other than ``done`` raises ``AssertionError``, so the graded cell
that made it scores 0 (``python -m kscale_lab.notebooks nbgrader``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    exercise: str
    status: str      # "done", "not done yet", "not yet right"
    detail: str

    def __post_init__(self):
        # under nbgrader (autograde, validate) a check that is not done fails its graded cell
        if os.environ.get("NBGRADER_EXECUTION") and self.status != "done":
            raise AssertionError(str(self))

    @property
    def done(self) -> bool:
        return self.status == "done"

    def __str__(self) -> str:
        mark = {"done": "✓", "not done yet": "…", "not yet right": "✗"}[self.status]
        return f"{mark} {self.exercise}: {self.status}. {self.detail}"

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def verdict(exercise: str, status: str, detail: str) -> Verdict:
    return Verdict(exercise, status, detail)


def call_student(exercise: str, fn, *args):
    """Call the reader's function; (result, None) or (None, Verdict) if not done / broken."""
    if fn is None:
        return None, verdict(exercise, "not done yet", "Define the function first.")
    try:
        out = fn(*args)
    except NotImplementedError:
        return None, verdict(exercise, "not done yet", "Replace the stub with your code.")
    except Exception as err:  # the reader's bug: report it in one line
        return None, verdict(exercise, "not yet right", f"Your code raised {type(err).__name__}: {err}")
    if out is None:
        return None, verdict(exercise, "not done yet", "Your function returns None: write its body.")
    return out, None


from .guesses import blank_guess, compare_guess  # noqa: E402  (predict, then compare: one helper for every lab)

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

Rules every checker follows (``CONTRIBUTING.md`` section 4b): it compares the reader's
code with an independent implementation on inputs where the likely wrong answers
differ; it never prints the model's target value nor a direction ("look lower") that
would let a reader bisect to it without the model; a numeric task asks for a function
of the inputs (the derivation), evaluated on several inputs. Each lab's module offers
staged hints, ``hint(exercise, level)``: 1 a direction, 2 the method, 3 nearly the
answer.
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
class Hint(str):
    """A hint, shown as its text (a ``str``, so it prints and compares as one)."""

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))

    def __repr__(self) -> str:
        return str(self)


class Hints:
    """Staged hints for a lab's exercises: ``hints(exercise, level=1)``.

    ``table``: ``{exercise number: [level 1, level 2, ...]}``; ``titles``: the exercises'
    names as their checkers print them. A level past the last repeats the last hint."""

    def __init__(self, table: dict[int, list[str]], titles: dict[int, str]):
        self.table = {int(k): list(v) for k, v in table.items()}
        self.titles = dict(titles)

    def __call__(self, exercise: int = 1, level: int = 1) -> Hint:
        ex = sorted(self.table)
        if isinstance(exercise, bool) or not isinstance(exercise, int) or exercise not in self.table:
            return Hint(f"hint(exercise, level): exercise must be one of {', '.join(map(str, ex))}; "
                        f"got {exercise!r}")
        levels = self.table[exercise]
        if isinstance(level, bool) or not isinstance(level, int) or level < 1:
            return Hint(f"hint(exercise, level): level must be an integer in [1, {len(levels)}]; got {level!r}")
        k = min(level, len(levels))
        more = f" (next: hint({exercise}, {k + 1}))" if k < len(levels) else " (the last hint)"
        return Hint(f"{self.titles.get(exercise, f'Exercise {exercise}')}, hint {k} of {len(levels)}: "
                    f"{levels[k - 1]}{more}")


def call_quiet(exercise: str, fn, *args):
    """Like :func:`call_student`, for functions that must return a finite number."""
    import math

    out, bad = call_student(exercise, fn, *args)
    if bad:
        return None, bad
    try:
        x = float(out)
    except (TypeError, ValueError, OverflowError):
        return None, verdict(exercise, "not yet right", f"Your function must return a number; got {out!r}.")
    if not math.isfinite(x):
        return None, verdict(exercise, "not yet right", f"Your function returned {x!r}: a number was expected.")
    return x, None


def names_used(fn) -> set:
    """Global, attribute and closure names a function's code (and its nested code) refers to."""
    code = getattr(fn, "__code__", None)
    out, todo = set(), [code] if code is not None else []
    while todo:
        c = todo.pop()
        out.update(c.co_names)
        out.update(c.co_freevars)
        todo.extend(k for k in c.co_consts if hasattr(k, "co_names"))
    return out


def objects_used(fn) -> list:
    """The objects behind those names: the function's globals it names, its closure cells."""
    out = []
    glb = getattr(fn, "__globals__", {})
    for name in names_used(fn):
        if name in glb:
            out.append(glb[name])
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            out.append(cell.cell_contents)
        except ValueError:      # an empty cell
            pass
    return out


def refuse_shortcut(exercise: str, fn, names, why: str = "", objects=()) -> "Verdict | None":
    """A "not yet right" if ``fn``'s code calls one of ``names`` or one of ``objects``
    (the lab's own answer, imported by the notebook for another cell, under any alias),
    else None."""
    used = sorted(names_used(fn) & set(names))
    if not used and objects:
        hit = [o for o in objects_used(fn) if any(o is x for x in objects)]
        used = [getattr(hit[0], "__name__", "the lab's function")] if hit else []
    if not used:
        return None
    return verdict(exercise, "not yet right", f"Your function calls {used[0]}, the lab's own answer: write the rule "
                                              f"yourself{why}.")

"""Build the lab notebooks from one authored source each.

A lab is written once, as ``labs/source/NN_name.py`` in the "percent" format
(``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose lines are
``# ``-comments). Exercise solutions sit between

    ### BEGIN SOLUTION
    ...
    ### END SOLUTION

(optionally ``### BEGIN SOLUTION stub: answer = None`` to say what the student
copy gets instead; the default stub is ``pass  # YOUR CODE HERE``, so a function
returns ``None``). From that source this module writes

* ``labs/solutions/NN_name.ipynb``: the solutions kept (only for labs with exercises);
* ``labs/NN_name.ipynb``: the student copy, solutions replaced by their stubs.

Both are executed (so nbval can compare the outputs of cells marked
``# NBVAL_CHECK_OUTPUT``), except that the output of the cell that loads BokehJS
(~4 MB of JavaScript) is cleared before saving. The student copy still runs top to
bottom; its exercise checks print that the exercise is not done yet.

    python -m kscale_lab.notebooks build [NAME ...]   regenerate and execute
    python -m kscale_lab.notebooks check              exit 1 if a notebook is stale
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABS = ROOT / "labs"
SOURCE = LABS / "source"
SOLUTIONS = LABS / "solutions"

_CELL = re.compile(r"^# %%(?P<rest>.*)$")
_BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION(?:\s+stub:\s*(?P<stub>.*))?\s*$")
_END = re.compile(r"^\s*### END SOLUTION\s*$")
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def parse(text: str) -> list[tuple[str, str]]:
    """Percent-format text -> [(cell_type, source)]."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        m = _CELL.match(line)
        if m:
            kind = "markdown" if "[markdown]" in m.group("rest") else "code"
            cells.append((kind, []))
            continue
        if not cells:
            if line.strip():
                raise ValueError("source must start with a '# %%' cell marker")
            continue
        cells[-1][1].append(line)
    out = []
    for kind, lines in cells:
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if kind == "markdown":
            lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines]
        out.append((kind, "\n".join(lines)))
    return out


def has_solutions(cells) -> bool:
    return any(_BEGIN.match(ln) for _, src in cells for ln in src.splitlines())


def strip_solutions(source: str, keep: bool) -> str:
    """Keep the solution (without markers) or replace it by its stub."""
    out, inside, stub, indent = [], False, None, ""
    for line in source.splitlines():
        m = _BEGIN.match(line)
        if m:
            if inside:
                raise ValueError("nested BEGIN SOLUTION")
            inside, indent = True, m.group("indent")
            stub = m.group("stub") or "pass  # YOUR CODE HERE"
            if not keep:
                out.append(f"{indent}{stub}")
            continue
        if _END.match(line):
            if not inside:
                raise ValueError("END SOLUTION without BEGIN")
            inside = False
            continue
        if keep or not inside:
            out.append(line)
    if inside:
        raise ValueError("BEGIN SOLUTION without END")
    return "\n".join(out)


def make_notebook(cells, keep_solutions: bool):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, src) in enumerate(cells):
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(src)
        else:
            cell = nbformat.v4.new_code_cell(strip_solutions(src, keep_solutions))
        cell["id"] = f"c{i:03d}"
        nb.cells.append(cell)
    return nb


def targets(name: str) -> list[tuple[Path, bool]]:
    """[(notebook path, keep_solutions)] generated from source ``name``."""
    cells = parse((SOURCE / f"{name}.py").read_text())
    out = [(LABS / f"{name}.ipynb", False)]
    if has_solutions(cells):
        out.append((SOLUTIONS / f"{name}.ipynb", True))
    return out


def sources() -> list[str]:
    return sorted(p.stem for p in SOURCE.glob("*.py"))


def _is_bokeh_loader(cell) -> bool:
    return cell.cell_type == "code" and "load_bokeh()" in cell.source


def execute(nb, cwd: Path, timeout: int = 600, desc: str = "notebook"):
    from nbclient import NotebookClient

    from .progress import bar

    with bar(total=sum(c.cell_type == "code" for c in nb.cells), desc=desc, unit="cell") as b:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(cwd)}}, store_widget_state=False,
                                record_timing=False, on_cell_executed=lambda **_: b.update(1))
        client.execute()
    for cell in nb.cells:
        if _is_bokeh_loader(cell):
            cell.outputs = []
    nb.metadata.pop("widgets", None)
    return nb


def build(names=None, run: bool = True) -> list[Path]:
    import nbformat

    written = []
    for name in names or sources():
        cells = parse((SOURCE / f"{name}.py").read_text())
        for path, keep in targets(name):
            nb = make_notebook(cells, keep)
            if run:
                execute(nb, path.parent, desc=str(path.relative_to(ROOT)))
            path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, str(path))
            written.append(path)
    return written


def stale() -> list[str]:
    """Notebooks whose cells differ from what their source generates."""
    import nbformat

    problems = []
    for name in sources():
        cells = parse((SOURCE / f"{name}.py").read_text())
        for path, keep in targets(name):
            if not path.exists():
                problems.append(f"{path.relative_to(ROOT)} is missing")
                continue
            want = make_notebook(cells, keep)
            have = nbformat.read(str(path), as_version=4)
            a = [(c.cell_type, c.source) for c in want.cells]
            b = [(c.cell_type, c.source) for c in have.cells]
            if a != b:
                problems.append(f"{path.relative_to(ROOT)} is stale: rebuild with "
                                f"`python -m kscale_lab.notebooks build {name}`")
            if not have.metadata.get("kernelspec"):
                problems.append(f"{path.relative_to(ROOT)} has no kernelspec")
            if keep is False and any("### BEGIN SOLUTION" in c.source for c in have.cells):
                problems.append(f"{path.relative_to(ROOT)} contains solutions")
    for nb_path in LABS.glob("*.ipynb"):
        if nb_path.stem not in sources():
            problems.append(f"{nb_path.relative_to(ROOT)} has no source in labs/source/")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kscale_lab.notebooks")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("names", nargs="*")
    b.add_argument("--no-run", action="store_true")
    sub.add_parser("check")
    args = ap.parse_args(argv)
    if args.cmd == "build":
        for p in build(args.names or None, run=not args.no_run):
            print("wrote", p.relative_to(ROOT))
        return 0
    problems = stale()
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

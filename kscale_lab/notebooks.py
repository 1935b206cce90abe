"""Build the lab notebooks from one authored source each.

A lab is written once, as ``labs/source/NN_name.py`` in jupytext's "percent"
format (``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose
lines are ``# ``-comments); jupytext reads it (and a teacher with jupytext in
JupyterLab can open it as a notebook and save it back unchanged: the
``[tool.jupytext]`` settings in ``pyproject.toml`` keep metadata out of the file).
Exercise solutions sit between nbgrader's markers

    ### BEGIN SOLUTION
    ...
    ### END SOLUTION

(optionally ``### BEGIN SOLUTION stub: answer = None`` to say what the student
copy gets instead; the default stub is ``pass  # YOUR CODE HERE``, so a function
returns ``None``). From that source this module writes

* ``labs/solutions/NN_name.ipynb``: the solutions kept, executed, every output saved
  (for labs with exercises or a "Predict" section); nbval checks these;
* ``labs/NN_name.ipynb``: the student copy, solutions replaced by their stubs,
  executed (it must run top to bottom), then its outputs cleared from the first
  "Predict" heading on, as nbgrader's release copies are: the answer is not on
  screen before the prediction.

The output of the cell that loads BokehJS (~4 MB of JavaScript) is cleared before
saving. Notebooks are executed with ``KSCALE_LAB_STATIC_IMAGES=1``, so every Bokeh
figure and dashboard also carries a PNG (``kscale_lab.viz.static``): the saved
notebooks read on GitHub, nbviewer or an nbconvert HTML export without a kernel.

    python -m kscale_lab.notebooks build [NAME ...]   regenerate and execute
    python -m kscale_lab.notebooks check              exit 1 if a notebook is stale
    python -m kscale_lab.notebooks nbgrader DIR       an nbgrader course directory (source/,
                                                      nbgrader_config.py) for release and autograding
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABS = ROOT / "labs"
SOURCE = LABS / "source"
SOLUTIONS = LABS / "solutions"

_CELL = re.compile(r"^# %%(?P<rest>.*)$")
_PREDICT = re.compile(r"^#+\s.*\bPredict\b", re.MULTILINE)
_CHECK_CALL = re.compile(r"^\s*(?:\w+\s*=\s*)?check_\w+\(", re.MULTILINE)
_BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION(?:\s+stub:\s*(?P<stub>.*))?\s*$")
_END = re.compile(r"^\s*### END SOLUTION\s*$")
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def parse(text: str) -> list[tuple[str, str]]:
    """Percent-format text -> [(cell_type, source)], read by jupytext."""
    if not text.lstrip().startswith("# %%"):
        raise ValueError("source must start with a '# %%' cell marker")
    try:
        import jupytext
    except ImportError:  # the build's own reader (the same cells) where jupytext is not installed
        return parse_percent(text)
    nb = jupytext.reads(text, fmt="py:percent")
    return [(c.cell_type, c.source) for c in nb.cells]


def parse_percent(text: str) -> list[tuple[str, str]]:
    """Percent-format text -> [(cell_type, source)], without jupytext."""
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


def predict_index(cells) -> int | None:
    """Index of the first markdown cell with a "Predict" heading (None if there is none)."""
    for i, cell in enumerate(cells):
        kind, src = (cell.cell_type, cell.source) if hasattr(cell, "cell_type") else cell
        if kind == "markdown" and _PREDICT.search(src):
            return i
    return None


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
    if has_solutions(cells) or predict_index(cells) is not None:
        out.append((SOLUTIONS / f"{name}.ipynb", True))
    return out


def sources() -> list[str]:
    return sorted(p.stem for p in SOURCE.glob("*.py"))


def _is_bokeh_loader(cell) -> bool:
    return cell.cell_type == "code" and "load_bokeh()" in cell.source


def execute(nb, cwd: Path, timeout: int = 600, static_images: bool = True, desc: str = "notebook"):
    from nbclient import NotebookClient

    from .progress import bar
    from .viz.static import ENV

    old = os.environ.get(ENV)
    old_progress = os.environ.get("KSCALE_LAB_PROGRESS")
    os.environ[ENV] = "1" if static_images else "0"   # the kernel inherits it
    os.environ["KSCALE_LAB_PROGRESS"] = "0"           # no progress widget saved in a notebook (it is transient)
    try:
        with bar(total=sum(c.cell_type == "code" for c in nb.cells), desc=desc, unit="cell") as b:
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": str(cwd)}}, store_widget_state=False,
                                    record_timing=False, on_cell_executed=lambda **_: b.update(1))
            client.execute()
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old
        if old_progress is None:
            os.environ.pop("KSCALE_LAB_PROGRESS", None)
        else:
            os.environ["KSCALE_LAB_PROGRESS"] = old_progress
    for cell in nb.cells:
        if _is_bokeh_loader(cell):
            cell.outputs = []
    nb.metadata.pop("widgets", None)
    return nb


def clear_from_predict(nb):
    """Clear the outputs from the first "Predict" heading on (a student copy)."""
    start = predict_index(nb.cells)
    if start is None:
        return nb
    for cell in nb.cells[start:]:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
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
            if not keep:
                clear_from_predict(nb)
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
            start = predict_index(have.cells)
            if keep is False and start is not None and any(c.get("outputs") for c in have.cells[start:]):
                problems.append(f"{path.relative_to(ROOT)} shows outputs after its 'Predict' heading: rebuild it")
    for nb_path in LABS.glob("*.ipynb"):
        if nb_path.stem not in sources():
            problems.append(f"{nb_path.relative_to(ROOT)} has no source in labs/source/")
    return problems


# -- nbgrader ------------------------------------------------------------------------------
NBGRADER_CONFIG = """\
# nbgrader configuration for the kscale_lab labs (written by python -m kscale_lab.notebooks nbgrader)
c = get_config()
c.CourseDirectory.course_id = "kscale_lab"
# kscale_lab's student copies must run top to bottom: a stub, not nbgrader's `raise NotImplementedError()`
c.ClearSolutions.code_stub = {"python": "pass  # YOUR CODE HERE"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.Execute.timeout = 900
"""


def nbgrader_cells(source: str) -> str:
    """Our ``### BEGIN SOLUTION stub: X`` as nbgrader writes it: the stub line stays
    before the markers (nbgrader replaces the region with its code stub)."""
    out = []
    for line in source.splitlines():
        m = _BEGIN.match(line)
        if m and m.group("stub"):
            out += [f"{m.group('indent')}{m.group('stub')}", f"{m.group('indent')}### BEGIN SOLUTION"]
        else:
            out.append(line)
    return "\n".join(out)


def nbgrader_notebook(name: str, text: str | None = None):
    """The solution notebook of lab ``name`` with nbgrader's cell metadata: cells with a
    solution region are solution cells; a cell that calls a ``check_*`` checker is an
    autograded test cell worth one point (a checker's verdict raises under nbgrader's
    autograder unless it is "done", see :class:`kscale_lab.exercises.Verdict`); every
    other cell is locked (read-only)."""
    import nbformat

    cells = parse(text if text is not None else (SOURCE / f"{name}.py").read_text())
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, src) in enumerate(cells):
        gid = f"{name}-c{i:03d}"
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(src)
            meta = {"grade": False, "solution": False, "locked": True}
        elif has_solutions([(kind, src)]):
            cell = nbformat.v4.new_code_cell(nbgrader_cells(src))
            meta = {"grade": False, "solution": True, "locked": False}
        elif _CHECK_CALL.search(src):
            cell = nbformat.v4.new_code_cell(src)
            meta = {"grade": True, "solution": False, "locked": True, "points": 1}
        elif "my_guess" in src and "compare_guess" not in src:
            cell = nbformat.v4.new_code_cell(src)   # the reader's guesses: editable, not graded
            meta = None
        else:
            cell = nbformat.v4.new_code_cell(src)
            meta = {"grade": False, "solution": False, "locked": True}
        cell["id"] = f"c{i:03d}"
        if meta is not None:
            cell.metadata["nbgrader"] = dict(meta, grade_id=gid, schema_version=3)
        nb.cells.append(cell)
    return nb


def nbgrader_course(root: Path, names=None) -> list[Path]:
    """Write an nbgrader course directory: ``nbgrader_config.py`` and
    ``source/<lab>/<lab>.ipynb`` for each lab with exercises. Then, in ``root``:
    ``nbgrader generate_assignment <lab>`` writes the student release,
    ``nbgrader autograde <lab>`` grades ``submitted/<student>/<lab>/``."""
    import nbformat

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(NBGRADER_CONFIG)
    written = []
    for name in names or sources():
        if not has_solutions(parse((SOURCE / f"{name}.py").read_text())):
            continue
        path = root / "source" / name / f"{name}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbgrader_notebook(name), str(path))
        written.append(path)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kscale_lab.notebooks")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("names", nargs="*")
    b.add_argument("--no-run", action="store_true")
    sub.add_parser("check")
    g = sub.add_parser("nbgrader", help="write an nbgrader course directory (source/ and nbgrader_config.py)")
    g.add_argument("dir")
    g.add_argument("names", nargs="*")
    args = ap.parse_args(argv)
    if args.cmd == "build":
        for p in build(args.names or None, run=not args.no_run):
            print("wrote", p.relative_to(ROOT))
        return 0
    if args.cmd == "nbgrader":
        unknown = [n for n in args.names if n not in sources()]
        if unknown:
            print(f"no lab source named {', '.join(unknown)}; sources: {', '.join(sources())}", file=sys.stderr)
            return 2
        for p in nbgrader_course(Path(args.dir), args.names or None):
            print("wrote", p)
        print(f"next: cd {args.dir} && nbgrader generate_assignment NAME (release/), nbgrader autograde NAME")
        return 0
    problems = stale()
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

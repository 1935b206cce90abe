"""(repository root, so that labs/ shows students only notebooks) nbval runs the solution copies (every output saved, deterministic cells compared).

A student copy whose outputs are cleared from its "Predict" heading on has nothing to
compare there; ``tests/test_student_copies.py`` runs it top to bottom instead. Student
copies with no solution copy (the tour) are still checked by nbval here.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent / "labs"


def pytest_ignore_collect(collection_path, config):
    p = Path(collection_path)
    if p.suffix == ".ipynb" and p.parent == HERE and (HERE / "solutions" / p.name).exists():
        return True
    if p.parent.name == "source" and p.suffix == ".py":   # the authored sources are not tests
        return True
    return None

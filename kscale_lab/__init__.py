"""kscale_lab: how Kubernetes survives at 10,000 nodes, as hands-on labs.

Real mechanisms (bbolt freelists, an MVCC log, the watch cache, leases, the
scheduler's filters), modelled time (a cost model whose every parameter has a unit
and a source). See ``kscale-lab list`` and the notebooks in ``labs/``.

Two entry points for work beyond one lab run (imported on first use):

* :func:`kscale_lab.sweep` (:mod:`kscale_lab.sweeps`): a lab over a grid of parameters,
  settings and seeds, as one DataFrame, in local processes or on a Dask cluster;
* :func:`kscale_lab.report` (:mod:`kscale_lab.reports`): one static HTML file with
  every lab's figures, parameters and claims, that opens offline.
"""

__version__ = "0.1.0"

__all__ = ["report", "sweep"]


def __getattr__(name):
    if name == "sweep":
        from .sweeps import sweep

        return sweep
    if name == "report":
        from .reports import report

        return report
    raise AttributeError(f"module 'kscale_lab' has no attribute {name!r}")

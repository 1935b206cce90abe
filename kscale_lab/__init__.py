"""kscale_lab: how Kubernetes survives at 10,000 nodes, as hands-on labs.

Real mechanisms (bbolt freelists, an MVCC log, the watch cache, leases, the
scheduler's filters), modelled time (a cost model whose every parameter has a unit
and a source). See ``kscale-lab list`` and the notebooks in ``labs/``.
"""

__version__ = "0.1.0"

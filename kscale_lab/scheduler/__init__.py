"""kscale_lab.scheduler: kube-scheduler's filter/score search at 10k nodes.

The article's section 9 (equivalence classes, relaxed randomisation) and upstream's
answers (``percentageOfNodesToScore``, KEP-5598 opportunistic batching), as real
algorithms over numpy node arrays, with the work counted exactly and converted to
modelled time by named cost parameters.

Modules:

* :mod:`.cluster_state` - nodes as arrays, pods as compact :class:`PodSpec` records.
* :mod:`.plugins` - filter and score plugins (upstream formulas and weights).
* :mod:`.equivalence` - per-class cached results, refreshed from the dirty log.
* :mod:`.search` - the three strategies (``"off"``, ``"article"``, ``"upstream"``) and
  :func:`num_feasible_nodes_to_find`.
* :mod:`.sim` - the scheduling queue in modelled time; ``run(scenario, setting, params)``;
  ``time_series``; ``calibrate_node_cost_factor``.
* :mod:`.reference` - a slow per-node model for property tests.
"""

from .cluster_state import NodeState, PodSpec, make_nodes, nodes_from_arrays
from .equivalence import ClassTable, EquivalenceCache, equivalence_key
from .plugins import FILTER_PLUGINS, SCORE_PLUGINS
from .search import MODE_DEFAULTS, MODES, Decision, Scheduler, num_feasible_nodes_to_find, schedule_pods
from .sim import (
    PARAMS, SCENARIOS, SETTING_DEFAULTS, calibrate_node_cost_factor, compare, make_workload, prepare, run, simulate,
    time_series,
)

__all__ = [
    "NodeState", "PodSpec", "make_nodes", "nodes_from_arrays",
    "ClassTable", "EquivalenceCache", "equivalence_key",
    "FILTER_PLUGINS", "SCORE_PLUGINS",
    "MODE_DEFAULTS", "MODES", "Decision", "Scheduler", "num_feasible_nodes_to_find", "schedule_pods",
    "PARAMS", "SCENARIOS", "SETTING_DEFAULTS", "calibrate_node_cost_factor", "compare", "make_workload", "prepare",
    "run", "simulate", "time_series",
]

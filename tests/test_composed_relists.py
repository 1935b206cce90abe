"""Components that share the control-plane core: re-lists after a rescheduled cache fill, and
requests in flight counted once when a component owns the request path."""

import numpy as np

from kscale_lab import controlplane as C
from kscale_lab.apiserver.instances import READY, InstanceSet
from kscale_lab.labs.capstone import LAB
from kscale_lab.labs.flow_control import LAB as FLOW


def test_a_rescheduled_fill_moves_the_history_of_an_instance_ready_before_its_caches():
    p = FLOW.resolve("article")
    inst = InstanceSet(2, 4.0, p, 1)
    inst.ready_before_cache = True
    inst.start(1, 0.0, 30.0)
    inst.fill_caches_at(1, np.inf)          # a component models the fill: its end not yet known
    inst.become_ready(inst.accept_at[1])
    assert inst.state[1] == READY and np.isinf(inst.cache_since[1])
    inst.fill_caches_at(1, 42.0)
    assert inst.cache_since[1] == 42.0      # a watch broken after 42 s resumes there


def _run(setting, over):
    store = {}
    orig = C.ControlPlane.run

    def run(self):
        store["cp"] = self
        return orig(self)

    C.ControlPlane.run = run
    try:
        res = LAB.run(setting, over)
    finally:
        C.ControlPlane.run = orig
    return res, store["cp"]


def test_relists_after_a_surge_upgrade_end():
    """The capstone's surge upgrade with instances ready before their caches (flow control article
    and upstream): whoever re-lists does so once; a reconnect after the fill resumes its watch."""
    over = {"duration": 700.0, "apiserver_upgrade_at": 120.0, "incidents": "apiserver_upgrade"}
    for fc in ("article", "upstream"):
        res, cp = _run("article", dict(over, flow_control=fc))
        flood = next(c for c in cp.components if c.name == "relists")
        new = np.flatnonzero(cp.inst.state == READY)
        assert new.size and np.all(cp.inst.cache_since[new] == cp.inst.cache_at[new]), fc
        late = cp.rec_t[: cp._i] >= float(cp.inst.cache_at[new].max()) + 120.0
        n = cp._i
        assert flood.rec["relists_started"][:n][late].sum() + flood.rec["relists_rejected"][:n][late].sum() == 0, fc


def test_requests_in_flight_are_counted_once_with_apf_and_the_request_path():
    """API Priority and Fairness beside the request path (which owns requests in flight): APF
    corrects only the memory of what waits in its queues, never the core's Little's law the core
    no longer counts, so no instance's memory goes negative when the buggy DaemonSet floods it."""
    over = {"duration": 640.0, "daemonset_at": 600.0, "incidents": "daemonset"}
    res, cp = _run("upstream", over)
    apf = next(c for c in cp.components if c.name == "apf")
    assert cp.owned_in_flight is not None
    assert apf.fluid.backlog.sum() > 0                      # the DaemonSet's LISTs queue
    assert np.nanmin(cp.rec["memory_bytes"][: cp._i]) >= 0.0

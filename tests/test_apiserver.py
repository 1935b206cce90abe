import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from kscale_lab.apiserver.server import APIServerPool


def pool(k=2, cores=4.0):
    return APIServerPool(k, cores, max_mutating_inflight=200, max_readonly_inflight=400, reject_cpu=5e-5)


@given(st.lists(st.tuples(st.integers(0, 1), st.floats(0, 0.999), st.floats(1e-4, 0.05), st.booleans()),
                max_size=300),
       st.floats(0, 10), st.integers(0, 3))
def test_work_is_conserved_and_capacity_respected(reqs, hog, seed):
    p = pool()
    rng = np.random.default_rng(seed)
    for _ in range(3):
        inst = np.array([r[0] for r in reqs], dtype=int)
        off = np.array([r[1] for r in reqs])
        cpu = np.array([r[2] for r in reqs])
        mut = np.array([r[3] for r in reqs], dtype=bool)
        before = p.backlog.copy()
        out = p.step(1.0, inst, off, cpu, mut, np.full(len(reqs), 0.003), rng, hog_cpu=hog)
        assert (out.cpu_used <= p.cores * 1.0 + 1e-9).all()
        assert np.allclose(before + out.cpu_demand - out.cpu_used, out.backlog)
        assert (out.backlog >= 0).all()
        lat = out.latency[out.admitted]
        assert (lat >= cpu[out.admitted] - 1e-12).all()          # at least its own CPU time
        assert np.isnan(out.latency[~out.admitted]).all()


def test_light_load_has_no_queue_and_overload_rejects():
    p = pool(k=1, cores=4.0)
    rng = np.random.default_rng(0)
    n = 100
    out = p.step(1.0, np.zeros(n, int), np.linspace(0, 0.99, n), np.full(n, 0.001), np.ones(n, bool),
                 np.zeros(n), rng)
    assert out.admitted.all() and np.nanmax(out.latency) < 0.01
    # 10x the capacity, for a while: the inflight limit starts answering 429
    rejected = 0
    for _ in range(20):
        n = 4000
        out = p.step(1.0, np.zeros(n, int), np.linspace(0, 0.99, n), np.full(n, 0.01), np.ones(n, bool),
                     np.zeros(n), rng)
        rejected += int(out.rejected.sum())
    assert rejected > 0 and p.backlog[0] > 0

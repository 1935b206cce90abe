"""The cached-reads lab: describe node, get nodes, a kubelet LIST storm, read-after-write."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kscale_lab.apiserver.watchcache import INDEX_NAMES
from kscale_lab.claims import load_claims
from kscale_lab.errors import ParameterError
from kscale_lab.labs.base import get_lab
from kscale_lab.labs.cached_reads import (
    LAB,
    cluster_state,
    index_maintenance_ops,
    kep2340_reproduction,
)

SMALL = {"nodes": 1000, "events": 18_000, "kubelet_list_window": 20.0, "consistency_probes": 1000}


@pytest.fixture(scope="module")
def small():
    return {s: LAB.run(s, SMALL) for s in LAB.settings}


@pytest.fixture(scope="module")
def full():
    return {s: LAB.run(s) for s in ("off", "article", "upstream")}


def test_registered_with_its_switch():
    assert get_lab("cached-reads") is LAB and LAB.switch == "cached_reads"
    assert LAB.settings == ("off", "article", "upstream")


def test_off_reads_every_pod_in_pages_to_return_one_nodes(full):
    sm = full["off"].summary
    pods = len(cluster_state(full["off"].summary["params"]).pod_objects)  # bound or not
    assert sm["apiserver_storage_list_fetched_objects_total"] == pods
    assert sm["apiserver_storage_list_evaluated_objects_total"] == pods
    assert 5 <= sm["apiserver_storage_list_returned_objects_total"] <= 50
    assert sm["pods_list_etcd_round_trips"] == math.ceil(pods / 500)
    assert sm["pods_list_peak_response_bytes"] < 500 * 2500 * 1.6
    req = full["off"].requests
    assert set(req[req.scenario == "describe node"].source) == {"etcd", "client"}


def test_article_reads_the_index_bucket_and_decodes_nothing(full):
    req = full["article"].requests.set_index("kind")
    assert req.loc["LIST pods", "objects_scanned"] == req.loc["LIST pods", "objects_returned"]
    assert req.loc["LIST pods", "index_used"] == "spec.nodeName"
    assert req.loc["LIST events", "source"] == "etcd"             # events have no watch cache by default
    cached = LAB.run("article", {"events_watch_cache": True})     # the operator's option
    sm = cached.summary
    assert sm["describe_node_objects_decoded"] == 0 and sm["describe_node_bytes_from_etcd"] == 0
    assert sm["describe_node_etcd_range_requests"] == 0
    assert sm["describe_node_quorum_reads"] == 3                # one revision fetch per request
    assert sm["describe_node_seconds"] < full["article"].summary["describe_node_seconds"]


def test_upstream_gets_from_etcd_lists_from_cache_and_events_from_etcd(full):
    req = full["upstream"].requests.set_index("kind")
    assert req.loc["GET node", "source"] == "etcd"
    assert req.loc["LIST pods", "source"] == "cache"
    assert req.loc["LIST events", "source"] == "etcd"            # DefaultWatchCacheSizes: events 0
    assert req.loc["LIST events", "etcd_ranges"] < 40             # pages double up to 10,000
    cached = LAB.run("upstream", {"events_watch_cache": True}).requests.set_index("kind")
    assert cached.loc["LIST events", "source"] == "cache"
    assert cached.loc["LIST events", "latency"] < req.loc["LIST events", "latency"] / 5


def test_the_index_is_what_makes_the_cache_fast(small):
    on = small["article"].requests.set_index("kind").loc["LIST pods"]
    off = LAB.run("article", dict(SMALL, pods_index=False)).requests.set_index("kind").loc["LIST pods"]
    assert off.objects_scanned > 19_000                             # every pod of the 1,000 nodes
    assert on.objects_scanned < 100 and off.latency > on.latency
    assert on.objects_returned == off.objects_returned


def test_latency_moves_with_its_causes(small):
    base = small["off"].summary["describe_node_list_pods_seconds"]
    bigger = LAB.run("off", dict(SMALL, pod_bytes=5000.0)).summary["describe_node_list_pods_seconds"]
    assert bigger > 1.2 * base
    slower = LAB.run("off", dict(SMALL, storage_decode_cpu_per_object=40e-6)).summary
    assert slower["describe_node_list_pods_seconds"] > 1.3 * base
    unpaged = LAB.run("off", dict(SMALL, page_size=0)).summary
    assert unpaged["pods_list_etcd_round_trips"] == 1
    assert unpaged["pods_list_peak_response_bytes"] > 20 * small["off"].summary["pods_list_peak_response_bytes"]
    far = LAB.run("article", dict(SMALL, client_rtt=0.05)).summary["describe_node_seconds"]
    assert far > small["article"].summary["describe_node_seconds"] + 0.1


def test_bigger_clusters_cost_more_from_etcd_not_from_the_indexed_cache():
    a = {s: LAB.run(s, dict(SMALL, nodes=500, events=9_000)).summary for s in ("off", "article")}
    b = {s: LAB.run(s, dict(SMALL, nodes=2000, events=36_000)).summary for s in ("off", "article")}
    assert b["off"]["describe_node_list_pods_seconds"] > 3 * a["off"]["describe_node_list_pods_seconds"]
    assert b["article"]["describe_node_list_pods_seconds"] < 2 * a["article"]["describe_node_list_pods_seconds"]


def test_get_nodes_pages_and_snapshots(small):
    off = small["off"].summary
    assert off["get_nodes_http_requests"] == 2                     # 1000 nodes, chunks of 500
    assert small["article"].summary["get_nodes_http_requests"] == 1  # the 2019 cache ignores limit
    up = small["upstream"].requests.set_index("kind").loc["LIST nodes"]
    no_snap = LAB.run("upstream", dict(SMALL, list_from_cache_snapshot=False)).requests.set_index("kind")
    assert up.source == "cache" and "etcd" in no_snap.loc["LIST nodes", "source"]
    assert no_snap.loc["LIST nodes", "objects_decoded"] == 500     # the continuation page came from etcd


def test_a_lagging_watch_fails_the_article_read_and_falls_back_upstream():
    art = LAB.run("article", dict(SMALL, watch_lag=4.0)).requests.set_index("kind")
    up = LAB.run("upstream", dict(SMALL, watch_lag=4.0)).requests.set_index("kind")
    assert art.loc["LIST pods", "status"] == 504 and art.loc["LIST pods", "source"] == "error"
    assert up.loc["LIST pods", "status"] == 200 and up.loc["LIST pods", "source"] == "etcd (fallback)"
    assert up.loc["LIST pods", "cache_wait"] == pytest.approx(3.0)


def test_consistency_kept_and_rv0_stale(small):
    for r in small.values():
        assert r.summary["read_after_write_stale_share_consistent"] == 0.0
        assert r.summary["read_after_write_stale_share_rv0"] > 0.1
    later = LAB.run("article", dict(SMALL, read_after_write_delay=0.1)).summary
    assert later["read_after_write_stale_share_rv0"] < small["article"].summary["read_after_write_stale_share_rv0"]
    buggy = LAB.run("article", dict(SMALL, etcd_progress_notify_bug=True)).summary
    assert buggy["read_after_write_stale_share_consistent"] > 0.01


def test_kubelet_storm_overwhelms_etcd_reads_not_the_cache(small, full):
    off, art, up = (full[s].summary for s in ("off", "article", "upstream"))
    assert off["kubelet_list_failed_share"] > 0.5
    assert off["kubelet_list_apiserver_cpu_peak_utilisation"] == pytest.approx(1.0)
    assert art["kubelet_list_failed_share"] == 0 and up["kubelet_list_failed_share"] == 0
    assert art["kubelet_list_objects_decoded"] == 0
    assert up["kubelet_list_progress_requests"] < art["kubelet_list_progress_requests"] / 5
    assert up["kubelet_list_cache_wait_p99_seconds"] <= 0.1 + 0.01 + 1e-9   # one progress period
    s = full["off"].series
    assert {"time", "rejected_429", "apiserver_cpu_cores", "etcd_cpu_cores"} <= set(s.columns)
    assert s["rejected_429"].sum() > 0 and full["article"].series["rejected_429"].sum() == 0


def test_index_maintenance_is_counted_per_write(small):
    st_ = cluster_state(small["article"].summary["params"])
    cache = st_.pods
    total = sum(index_maintenance_ops(cache, a) for a in ("node", "ns", "label"))
    assert len(INDEX_NAMES) == 3
    # the watch cache counts 3 inserts per object of its initial LIST, then the writes' changes
    assert total == cache.index_ops - 3 * len(st_.writes.initial_pods)
    assert small["article"].summary["index_maintenance_ops_per_s"] > 0
    assert small["off"].summary["index_maintenance_ops_per_s"] == 0


def test_deterministic_for_a_seed():
    a = LAB.run("upstream", dict(SMALL, seed=3)).summary
    b = LAB.run("upstream", dict(SMALL, seed=3)).summary
    c = LAB.run("upstream", dict(SMALL, seed=4)).summary
    keys = [k for k in a if k != "params"]
    assert all(a[k] == b[k] for k in keys)
    assert any(a[k] != c[k] for k in keys)


def test_bad_input_names_the_parameter():
    with pytest.raises(ParameterError, match="page_size"):
        LAB.run("off", {"page_size": -1})
    with pytest.raises(ParameterError, match="pod_churn"):
        LAB.run("off", {"nodes": 2, "events": 10})
    with pytest.raises(ParameterError, match="cached_reads"):
        LAB.run("sometimes")


def test_kep2340_reproduction_is_close_to_its_latency_columns():
    k = kep2340_reproduction()
    assert k["latency_off"] == pytest.approx(k["kep_latency_off"], rel=0.35)
    assert k["latency_on"] == pytest.approx(k["kep_latency_on"], rel=0.35)


def test_claims_are_computed_and_listed(full):
    values = LAB.claims(full)
    listed = {c.claim for c in load_claims("cached-reads")}
    assert listed == set(values)
    assert values["describe_node_off_s"] == full["off"].summary["describe_node_seconds"]
    assert values["describe_node_article_s"] == full["article"].summary["describe_node_seconds"]
    assert values["describe_node_article_events_cached_s"] < values["describe_node_article_s"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page=st.sampled_from([0, 50, 500, 5000]), index=st.booleans(), setting=st.sampled_from(["off", "article",
                                                                                             "upstream"]))
def test_every_describe_returns_the_same_pods(page, index, setting):
    r = LAB.run(setting, dict(SMALL, page_size=page, pods_index=index, consistency_probes=10))
    ref = LAB.run("off", dict(SMALL, consistency_probes=10)).summary["describe_node_pods_returned"]
    assert r.summary["describe_node_pods_returned"] == ref
    req = r.requests
    comp = req[["rtt", "fresh", "queue", "etcd", "transfer", "decode", "filter", "encode", "client"]].sum(axis=1)
    assert np.allclose(comp, req["latency"])


def test_dashboard_is_driven_from_python():
    from kscale_lab.viz.cached_reads import CachedReadsDashboard, breakdown

    dash = CachedReadsDashboard(nodes=1000)
    assert dash.result.setting == "off"
    off_total = dash.sources["breakdown"].data["total"][1]             # describe: LIST pods
    dash.controls["switch"].value = "article"
    assert dash.result.setting == "article"
    assert dash.sources["breakdown"].data["total"][1] < off_total / 10
    assert "article" in dash.summary.value and dash.seconds > 0
    dash.controls["page_size"].value = 0
    assert dash.result.summary["params"]["page_size"] == 0
    dash.controls["events_cache"].value = "no"
    assert dash.result.summary["params"]["events_watch_cache"] is False
    cmp = dict(zip(dash.sources["compare"].data["x"], dash.sources["compare"].data["y"], strict=True))
    assert cmp[("describe node", "off")] > cmp[("describe node", "article")]
    assert set(breakdown(dash.result.requests)) >= {"row", "total", "fresh", "decode"}
    with pytest.raises(KeyError):
        CachedReadsDashboard(warp=9)

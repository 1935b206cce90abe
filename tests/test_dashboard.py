"""Dashboards are driven from Python exactly as a click would drive them."""

import numpy as np
import pytest

from kscale_lab.viz.heartbeats import HeartbeatDashboard, onset_figure, scale_figure, trailing_mean


@pytest.fixture(scope="module")
def dash():
    return HeartbeatDashboard(nodes=2000)


def test_toggle_changes_the_plotted_data(dash):
    dash.controls["switch"].value = "off"
    wal_off = np.asarray(dash.sources["series"].data["wal"]).mean()
    dash.controls["switch"].value = "article"
    assert dash.result.setting == "article"
    wal_art = np.asarray(dash.sources["series"].data["wal"]).mean()
    assert wal_art < wal_off / 2
    assert "article" in dash.summary.value


def test_sliders_map_to_parameters(dash):
    dash.controls["switch"].value = "off"
    dash.controls["node_kb"].value = 30
    assert dash.result.summary["params"]["node_object_bytes"] == 30_000.0
    dash.controls["quota_gib"].value = 2
    assert dash.result.summary["etcd_quota_backend_bytes"] == 2 * 1024**3
    assert dash.seconds > 0


def test_unknown_initial_control_is_an_error():
    with pytest.raises(KeyError):
        HeartbeatDashboard(warp=9)


def test_static_figures_build(hb_lab):
    import pandas as pd

    assert scale_figure(hb_lab, max_nodes=2000).renderers
    df = pd.DataFrame({"setting": ["off", "off"], "apiserver_cores": [1, 2], "nodes_ever_notready": [5, 0]})
    assert onset_figure(df).renderers


def test_trailing_mean():
    assert np.allclose(trailing_mean(np.array([2.0, 4.0, 6.0, 8.0]), 2), [2, 3, 5, 7])

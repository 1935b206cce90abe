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


def _sources_in_bundle(bundle) -> list[tuple[str, int]]:
    """(source id, rows) of every ColumnDataSource in a BokehModel's render bundle, the
    document a view renders from when it appears in the page."""
    found = []

    def rows(col):
        if isinstance(col, list):
            return len(col)
        if isinstance(col, dict) and col.get("type") == "ndarray":
            return int(col["shape"][0]) if col.get("shape") else len(col.get("array", []))
        return -1

    def walk(x):
        if isinstance(x, dict):
            if x.get("name") == "ColumnDataSource" and "attributes" in x:
                entries = x["attributes"].get("data", {}).get("entries", [])
                found.append((x["id"], min((rows(v) for _, v in entries), default=0)))
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(bundle["docs_json"])
    return found


def _dashboard_classes():
    import importlib
    import pkgutil

    import kscale_lab.viz as viz
    from kscale_lab.viz.dashboard import Dashboard

    for m in pkgutil.iter_modules(viz.__path__):
        mod = importlib.import_module(f"kscale_lab.viz.{m.name}")
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, Dashboard) and obj is not Dashboard and obj.__module__ == mod.__name__:
                yield obj


@pytest.mark.parametrize("cls", list(_dashboard_classes()), ids=lambda c: c.__name__)
def test_the_document_sent_to_the_page_is_already_filled(cls):
    """A BokehModel sends its document when it is created; patches reach only views already
    on the page. So every dashboard's render bundle must carry filled sources, and a
    display sends the current state (the bookmarks dashboard once reached the page empty)."""
    dash = cls()
    found = _sources_in_bundle(dash.plot.render_bundle)
    assert found and all(n > 0 for _, n in found), found
    dash.controls["switch"].value = "article"
    before = dash.plot.render_bundle
    bundle = dash._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert dash.plot.render_bundle is not before          # the display re-sent the current document
    assert "image/png" not in bundle                      # static images only when a build asks for them

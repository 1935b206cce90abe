import pytest

from kscale_lab.errors import ParameterError
from kscale_lab.scenario import SWITCH_NAMES, Scenario, Switches, scale_with_nodes


def test_defaults_are_the_articles_scale():
    sc = Scenario.from_params()
    assert (sc.nodes, sc.pods, sc.objects) == (10_000, 200_000, 1_000_000)


def test_nine_switches_with_three_settings():
    assert len(SWITCH_NAMES) == 9
    sw = Switches.all("article")
    assert set(sw.as_dict().values()) == {"article"}
    with pytest.raises(ParameterError, match="'heartbeats'"):
        Switches(heartbeats="sometimes")
    with pytest.raises(ParameterError, match="not a switch"):
        Switches().with_(teleport="on")


def test_objects_must_hold_nodes_leases_and_pods():
    with pytest.raises(ParameterError, match="'objects'"):
        Scenario.from_params({"nodes": 10_000, "pods": 200_000, "objects": 100_000})


def test_setting_only_nodes_scales_pods_and_objects_but_never_what_was_given():
    v = scale_with_nodes({"nodes": 2000, "pods": 200_000, "objects": 1_000_000}, {"nodes"})
    assert (v["pods"], v["objects"]) == (40_000, 200_000)
    v = scale_with_nodes({"nodes": 2000, "pods": 7, "objects": 1_000_000}, {"nodes", "pods"})
    assert v["pods"] == 7 and v["objects"] == 200_000

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kscale_lab.errors import ParameterError
from kscale_lab.params import Param, ParamSet

P_INT = Param("nodes", 10, "nodes", "test", "n", lo=1, hi=100, kind=int)
P_FLOAT = Param("interval", 10.0, "s", "test", "i", lo=0.5, hi=60)
P_CHOICE = Param("mode", "a", "1", "test", "m", choices=("a", "b"), kind=str)
P_BOOL = Param("flag", False, "1", "test", "f", kind=bool)
PS = ParamSet([P_INT, P_FLOAT, P_CHOICE, P_BOOL])


@given(st.integers(1, 100))
def test_in_range_ints_are_kept_unchanged(v):
    assert P_INT.validate(v) == v
    assert P_INT.validate(str(v)) == v


@given(st.one_of(st.integers(max_value=0), st.integers(min_value=101)))
def test_out_of_range_ints_name_the_parameter_and_range(v):
    with pytest.raises(ParameterError) as e:
        P_INT.validate(v)
    msg = str(e.value)
    assert "'nodes'" in msg and "[1, 100]" in msg and "\n" not in msg


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_floats_are_never_clamped(v):
    if math.isfinite(v) and 0.5 <= v <= 60:
        assert P_FLOAT.validate(v) == v
    else:
        with pytest.raises(ParameterError):
            P_FLOAT.validate(v)


@pytest.mark.parametrize("bad", ["abc", "1e", None, [], True, 2.5])
def test_bad_types_for_int(bad):
    with pytest.raises(ParameterError):
        P_INT.validate(bad)


def test_choices_and_bools():
    assert P_CHOICE.validate("b") == "b"
    with pytest.raises(ParameterError, match="one of 'a', 'b'"):
        P_CHOICE.validate("c")
    assert P_BOOL.validate("true") is True and P_BOOL.validate("off") is False
    with pytest.raises(ParameterError):
        P_BOOL.validate("maybe")


def test_paramset_resolve_and_unknown_names():
    v = PS.resolve({"nodes": "20", "interval": 3})
    assert v == {"nodes": 20, "interval": 3.0, "mode": "a", "flag": False}
    assert PS.resolve({"interval": 2})["interval"] == 2.0
    with pytest.raises(ParameterError, match="'bogus' is unknown"):
        PS.resolve({"bogus": 1})
    # hyphenated names (as flags are written) are accepted
    assert "node-s" not in PS and "nodes" in PS


def test_a_default_must_satisfy_its_own_range():
    with pytest.raises(ParameterError):
        Param("x", 0, "1", "test", "x", lo=1, hi=2, kind=int)


def test_every_model_parameter_has_unit_source_and_doc():
    from kscale_lab.labs.base import registry

    for lab in registry().values():
        for p in lab.params:
            assert p.unit and p.source and p.doc, p.name

"""The shared input checkers of pml_relaxed._validation."""

import pytest

from pml_relaxed import _validation as v


def test_check_int_returns_the_value():
    assert v.check_int("seed", 0) == 0
    assert v.check_int("views", 3, minimum=1) == 3
    assert v.check_int("views", None, minimum=1, allow_none=True) is None
    assert v.check_optional_positive_int("pos_topk", None) is None


@pytest.mark.parametrize(
    "value,kwargs,error,message",
    [
        (True, {}, TypeError, r"seed must be an int; got bool \(True\)"),
        (1.0, {}, TypeError, r"seed must be an int; got float \(1.0\)"),
        ("2", {"minimum": 1}, TypeError, r"seed must be an int >= 1; got str \('2'\)"),
        (None, {"minimum": 0}, TypeError, r"seed must be an int >= 0; got NoneType \(None\)"),
        (2.5, {"minimum": 1, "allow_none": True}, TypeError, r"seed must be an int >= 1 or None; got float \(2.5\)"),
        (0, {"minimum": 1}, ValueError, r"seed must be >= 1; got 0"),
        (-3, {"minimum": -2, "allow_none": True}, ValueError, r"seed must be >= -2; got -3"),
    ],
)
def test_check_int_errors_name_the_argument(value, kwargs, error, message):
    with pytest.raises(error, match=message):
        v.check_int("seed", value, **kwargs)


def test_check_optional_positive_int_is_check_int_at_least_one():
    with pytest.raises(TypeError, match=r"k must be an int >= 1 or None; got bool"):
        v.check_optional_positive_int("k", False)
    with pytest.raises(ValueError, match=r"k must be >= 1; got 0"):
        v.check_optional_positive_int("k", 0)

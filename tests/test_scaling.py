"""Scaling raw values into the unit box."""

from __future__ import annotations

import warnings

import numpy as np

from hst_processor.scaling import learned_limits, scale


def test_learned_limits_widen_the_warmup_range_by_the_margin() -> None:
    low, high = learned_limits(np.array([[10.0], [20.0]]), margin=1.0)
    assert (low.tolist(), high.tolist()) == ([0.0], [30.0])  # the range fills the middle third


def test_a_flat_feature_still_gets_a_range() -> None:
    low, high = learned_limits(np.array([[5.0, 0.0], [5.0, 0.0]]), margin=1.0)
    assert low[0] < 5 < high[0] and low[1] < 0 < high[1]


def test_values_near_the_float_limit_give_finite_limits_without_warnings() -> None:
    huge = np.finfo(np.float64).max
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        low, high = learned_limits(np.array([[-huge], [huge]]), margin=1.0)
        scaled = scale(np.array([[0.0], [huge]]), low, high)
    assert np.isfinite(low).all() and np.isfinite(high).all()
    assert 0.0 <= scaled[0, 0] <= 1.0 and not np.isnan(scaled).any()

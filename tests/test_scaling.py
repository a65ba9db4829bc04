"""Scaling raw values into the unit box."""

from __future__ import annotations

import doctest
import warnings

import numpy as np

import hst_processor.scaling
from hst_processor.scaling import Scaling, learned_limits, scale, scale_rows


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


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(hst_processor.scaling).failed == 0


def test_a_series_gathers_its_first_window_then_freezes_its_limits() -> None:
    scaling = Scaling()
    assert scaling.gather([10.0, 5.0], 3) is None
    assert scaling.gather([30.0, 7.0], 3) is None
    warmup = scaling.gather([20.0, 9.0], 3)
    assert warmup is not None and not scaling.ready
    low, high = learned_limits(warmup, 0.0, ("a", "b"), fixed={"b": (0.0, 100.0)})
    learned = scaling.freeze(warmup, low, high)
    assert scaling.ready and scaling.warmup_rows == []
    assert learned.tolist() == [[0.0, 0.05], [1.0, 0.07], [0.5, 0.09]]
    assert scaling.low is not None and scaling.high is not None
    assert (scaling.low.tolist(), scaling.high.tolist()) == ([10.0, 0.0], [30.0, 100.0])


def test_rows_are_scaled_each_with_its_own_series_limits() -> None:
    one = Scaling(np.array([0.0]), np.array([10.0]))
    other = Scaling(np.array([100.0]), np.array([200.0]))
    scaled = scale_rows([one, other, one], [[5.0], [150.0], [20.0]])
    assert scaled.tolist() == [[0.5], [0.5], [2.0]]  # beyond the limits: beyond the box


def test_export_and_restore_round_trip_both_phases() -> None:
    gathering = Scaling()
    gathering.gather([1.0], 5)
    frozen = Scaling(np.array([0.0]), np.array([1.0]))
    for scaling in (gathering, frozen):
        restored = Scaling.restore(scaling.export())
        assert restored.export() == scaling.export() and restored.ready == scaling.ready

"""The calibration stage: landmarks (stateless) or rarity (a state per series)."""

from __future__ import annotations

import doctest
import math

import hst_processor.calibration
from hst_processor.calibration import Calibration, calibrated_score
from hst_processor.rarity import Rarity


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(hst_processor.calibration).failed == 0


def test_landmark_scores_are_clipped_to_the_unit_range() -> None:
    assert calibrated_score(total=5.0, typical=1000.0, isolated=10.0) == 1.0
    assert calibrated_score(total=2000.0, typical=1000.0, isolated=10.0) == 0.0
    assert calibrated_score(total=50.0, typical=5.0, isolated=10.0) == 0.0  # no room


def test_rarity_warms_up_then_scores_what_it_learned() -> None:
    rarity = Rarity(upper=math.log(511) + 1e-6, min_scores=10, extrapolate_after=10)
    calibration = Calibration(rarity)
    state = calibration.new_state()
    assert state is not None
    warm = [calibration.score(state, 1000.0, 1000.0, 10.0) for _ in range(10)]
    assert warm == [None] * 10 and state.seen == 10  # learned while warming up
    common = calibration.score(state, 1000.0, 1000.0, 10.0)
    rare = calibration.score(state, 10.0, 1000.0, 10.0)
    assert common is not None and rare is not None and common < 0.5 < rare


def test_a_zero_total_is_as_rare_as_can_be() -> None:
    calibration = Calibration(Rarity(upper=6.0, min_scores=1, extrapolate_after=1))
    state = calibration.new_state()
    calibration.score(state, 1000.0, 1000.0, 10.0)
    assert calibration.score(state, 0.0, 1000.0, 10.0) == 1.0

"""The range view: each field against its own long-run range (hst_processor/ranges.py)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hst_processor.ranges import SAMPLE_EVERY, FieldRanges, RangeState, alone_share
from hst_processor.rarity import rarity_of


def _normal_rows(count: int, width: int, seed: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    values: list[list[float]] = (rng.normal(50.0, 2.0, size=(count, width))).tolist()
    return values


def _fed(ranges: FieldRanges, rows: list[list[float]]) -> tuple[RangeState, list[float | None]]:
    state = ranges.new_state()
    return state, [ranges.observe(state, row)[0] for row in rows]


@given(
    st.lists(
        st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=3), min_size=4, max_size=60
    ).filter(lambda rows: len(rows) >= SAMPLE_EVERY)
)
@settings(max_examples=60, deadline=None)
def test_the_range_is_the_quartiles_of_every_fourth_reference_metric(rows):
    ranges = FieldRanges(reference=len(rows))
    state, scores = _fed(ranges, rows)
    assert scores == [None] * len(rows)  # the reference scores nothing
    sample = np.array(rows[::SAMPLE_EVERY])
    low, median, high = np.percentile(sample, [25, 50, 75], axis=0)
    assert state.median == median.tolist()
    assert state.low == low.tolist() and state.high == high.tolist()
    assert state.unit is not None
    for unit, spread, middle in zip(state.unit, high - low, median, strict=True):
        assert unit == max(spread, abs(middle) * 1e-3, 1e-9)
    assert state.sample == []  # the rows are let go once fitted


def test_a_field_far_out_of_its_range_scores_rare_and_is_named():
    ranges = FieldRanges(reference=1000)
    state, scores = _fed(ranges, _normal_rows(6000, 4, seed=1))
    normal = [score for score in scores if score is not None]
    assert len(normal) >= 4900  # after the reference, each metric scored (the first 100 gather)
    # About one normal metric in 1,000 reaches 0.5, as the calibration promises.
    assert 0.0002 <= sum(score >= 0.5 for score in normal) / len(normal) <= 0.004
    score, field = ranges.observe(state, [50.0, 50.0, 90.0, 50.0])  # 20 deviations out
    assert field == 2
    assert score is not None and rarity_of(score) < 1 / 5000


def test_a_field_flat_in_its_reference_that_moves_is_far_out():
    rows = [[1.0, 7.0] for _ in range(40)]
    ranges = FieldRanges(reference=40)
    state, _ = _fed(ranges, rows)
    assert state.unit == [1e-3, 7e-3]  # a flat field's unit: 0.1 % of its level
    field, distance = ranges.distance(state, [1.0, 7.7])
    assert field == 1 and math.isclose(distance, 100.0)
    zeros = FieldRanges(reference=8)
    flat, _ = _fed(zeros, [[0.0]] * 8)
    assert flat.unit == [1e-9]  # flat at zero: the absolute floor, never a division by zero
    assert zeros.distance(flat, [0.0]) == (0, 0.0)


def test_values_that_are_not_numbers_neither_crash_nor_count():
    ranges = FieldRanges(reference=8)
    rows = [[float(i), math.nan] for i in range(8)]
    state, _ = _fed(ranges, rows)
    assert state.median is not None and state.median[1] == 0.0  # never finite: 0
    assert ranges.distance(state, [math.nan, 5.0])[0] == 1  # NaN is no distance
    assert ranges.distance(state, [math.inf, 0.0]) == (0, math.inf)
    score, field = ranges.observe(state, [math.inf, 0.0])
    assert score is None and field == 0  # the calibration still gathers its first scores


def test_a_restored_state_scores_exactly_as_the_one_it_was_saved_from():
    rows = _normal_rows(2500, 3, seed=7)
    ranges = FieldRanges(reference=1000)
    for cut in (500, 1003, 1500):
        whole, expected = _fed(ranges, rows)
        state, _ = _fed(ranges, rows[:cut])
        resumed = RangeState.restore(state.export())
        rest = [ranges.observe(resumed, row) for row in rows[cut:]]
        assert [score for score, _ in rest] == expected[cut:]
        assert resumed.export() == whole.export()


def test_the_usual_interval_ignores_a_pause_and_sets_the_share_worth_an_alert_alone():
    ranges = FieldRanges(reference=400)
    state = ranges.new_state()
    for i in range(400):  # one metric a minute, with a day's pause halfway
        ranges.observe(state, [1.0], 60.0 * i + (86_400.0 if i >= 200 else 0.0))
    assert state.interval == 60.0 and state.times == []
    assert alone_share(state, 3.0) == 60.0 / (3 * 86_400.0)  # 1 in 4,320 metrics
    assert alone_share(state, 0.0) == 0.0  # alerts.alone_days: 0, never alone
    untimed = ranges.new_state()
    for _ in range(400):  # metrics without times: no cadence, never alone
        ranges.observe(untimed, [1.0])
    assert untimed.interval == 0.0 and alone_share(untimed, 3.0) == 0.0


def test_a_lasting_level_far_beyond_what_the_calibration_tells_apart_becomes_ordinary():
    # A counter that was 0 for its whole reference, then settles at 1,000: 1e12 units out,
    # beyond the calibration's top. It is rare when it comes, and ordinary once it lasts.
    rng = np.random.default_rng(3)
    ranges = FieldRanges(reference=1000)
    state = ranges.new_state()
    for _ in range(3000):
        ranges.observe(state, [float(rng.normal(50, 2)), 0.0])
    onset, field = ranges.observe(state, [50.0, 1000.0])
    assert field == 1 and onset is not None and onset >= 0.5
    later = [ranges.observe(state, [float(rng.normal(50, 2)), 1000.0])[0] for _ in range(3000)]
    assert all(score is not None and score < 0.35 for score in later[-1000:])

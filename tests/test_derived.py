"""Derived features: each kind's values, when it is ready, and a state that resumes exactly."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hst_processor.derived import DerivedFeature, DerivedState


def feed(spec: DerivedFeature, rows: list[list[float]], raw: tuple[str, ...] = ("x", "y")) -> list:
    state = DerivedState((spec,), raw)
    return [values if values is None else values[0] for values in map(state.update, rows)]


def test_change_is_the_step_from_the_previous_metric() -> None:
    assert feed(DerivedFeature("d", "change", "x"), [[1, 0], [4, 0], [2.5, 0]]) == [None, 3, -1.5]


def test_deviation_is_the_distance_from_the_mean_of_the_previous_window() -> None:
    spec = DerivedFeature("d", "deviation", "x", window=3)
    assert feed(spec, [[1, 0], [2, 0], [3, 0], [10, 0], [2, 0]]) == [None, None, None, 8.0, -3.0]


def test_spread_is_the_standard_deviation_of_the_window_including_this_metric() -> None:
    spec = DerivedFeature("s", "spread", "x", window=4)
    values = feed(spec, [[2, 0], [4, 0], [4, 0], [4, 0], [5, 0]])
    assert values[:3] == [None, None, None]
    assert values[3] == pytest.approx(math.sqrt(0.75))
    assert values[4] == pytest.approx(math.sqrt(0.1875))


def test_ratio_divides_and_treats_a_zero_divisor_as_zero() -> None:
    assert feed(DerivedFeature("r", "ratio", "x", of="y"), [[6, 3], [1, 0]]) == [2.0, 0.0]


def test_repeats_counts_metrics_in_a_row_with_exactly_the_same_value() -> None:
    rows = [[v, 0] for v in (5, 5, 5, 6, 6, 5)]
    assert feed(DerivedFeature("n", "repeats", "x"), rows) == [None, 1, 2, 0, 1, 0]


def test_residual_is_in_standard_deviations_of_the_fitted_line() -> None:
    rng = random.Random(3)
    fit = [[2 * load + 10 + rng.gauss(0, 0.5), load] for load in range(50, 150)]
    spec = DerivedFeature("r", "residual", "x", of="y", fit=100)
    state = DerivedState((spec,), ("x", "y"))
    assert all(state.update(row) is None for row in fit[:-1])
    last = state.update(fit[-1])
    assert last is not None
    slope, intercept, deviation = state.lines[0]  # type: ignore[misc]
    assert slope == pytest.approx(2, abs=0.02) and deviation == pytest.approx(0.5, abs=0.1)
    assert state.update([slope * 70 + intercept, 70]) == [pytest.approx(0)]
    assert state.update([slope * 80 + intercept + 5 * deviation, 80]) == [pytest.approx(5)]


def test_an_averaged_residual_smooths_over_its_window() -> None:
    spec = DerivedFeature("r", "residual", "x", of="y", window=2, fit=3)
    state = DerivedState((spec,), ("x", "y"))
    for row in ([1.0, 1.0], [2.0, 2.0], [3.1, 3.0]):
        fitted = state.update(row)
    slope, intercept, deviation = state.lines[0]  # type: ignore[misc]
    assert fitted is not None  # the metric that completes the fit gets its residual
    first = state.update([slope * 4 + intercept + 2 * deviation, 4.0])
    second = state.update([slope * 5 + intercept + 0 * deviation, 5.0])
    assert first == [pytest.approx((fitted[0] + 2) / 2)]
    assert second == [pytest.approx((2 + 0) / 2)]


def test_a_series_is_not_ready_until_every_derived_feature_is() -> None:
    specs = (
        DerivedFeature("c", "change", "x"),
        DerivedFeature("s", "spread", "x", window=3),
    )
    state = DerivedState(specs, ("x",))
    ready = [state.update([float(i)]) is not None for i in range(5)]
    assert ready == [False, False, True, True, True]


def test_an_exported_state_continues_exactly_where_it_stopped() -> None:
    specs = (
        DerivedFeature("c", "change", "x"),
        DerivedFeature("d", "deviation", "x", window=5),
        DerivedFeature("s", "spread", "y", window=4),
        DerivedFeature("r", "residual", "x", of="y", fit=20, window=3),
        DerivedFeature("n", "repeats", "y"),
        DerivedFeature("q", "ratio", "x", of="y"),
    )
    rng = random.Random(5)
    rows = [[rng.uniform(0, 10), float(rng.randint(1, 3))] for _ in range(200)]
    for cut in (3, 15, 60):
        whole = DerivedState(specs, ("x", "y"))
        expected = [whole.update(row) for row in rows]
        first = DerivedState(specs, ("x", "y"))
        got = [first.update(row) for row in rows[:cut]]
        second = DerivedState(specs, ("x", "y"))
        second.restore(first.export())
        got += [second.update(row) for row in rows[cut:]]
        assert got == expected


ALL_KINDS = (
    DerivedFeature("c", "change", "x"),
    DerivedFeature("d", "deviation", "x", window=3),
    DerivedFeature("s", "spread", "y", window=3),
    DerivedFeature("r", "residual", "x", of="y", fit=4, window=2),
    DerivedFeature("r1", "residual", "y", of="x", fit=3),
    DerivedFeature("n", "repeats", "y"),
    DerivedFeature("q", "ratio", "x", of="y"),
)
LIMIT = 1.7976931348623157e308
# Every finite float a metric can carry, with the float limits and their neighbours often.
ANY_VALUE = st.one_of(
    st.sampled_from([LIMIT, -LIMIT, 1e200, -1e200, 5e-324, 0.0, 1.0]),
    st.floats(allow_nan=False, allow_infinity=False),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(ANY_VALUE, ANY_VALUE), min_size=1, max_size=12))
@example([(1e200, 1.0)] + [(1.0, 1.0)] * 5)  # a huge value in the residual's fit (issue 12)
@example([(1.0, LIMIT), (1.0, 1.0), (1.0, 1.0)])  # a huge then a small value in a spread
def test_any_finite_values_give_finite_features_and_a_state_that_resumes(
    rows: list[tuple[float, float]],
) -> None:
    """Values at the float limits once overflowed a sum or a square and raised, and the
    poisoned fit, saved with the series, raised again after every restart."""
    whole = DerivedState(ALL_KINDS, ("x", "y"))
    expected = [whole.update(list(row)) for row in rows]
    for values in expected:
        assert values is None or all(math.isfinite(value) for value in values)
    cut = len(rows) // 2
    first = DerivedState(ALL_KINDS, ("x", "y"))
    got = [first.update(list(row)) for row in rows[:cut]]
    second = DerivedState(ALL_KINDS, ("x", "y"))
    second.restore(first.export())
    got += [second.update(list(row)) for row in rows[cut:]]
    assert got == expected


class StepByStep(DerivedState):
    """The features as each kind's general code computes them, metric after metric (the
    quick functions a ready state switches to are dropped before every metric)."""

    def update(self, row: list[float]) -> list[float] | None:  # type: ignore[override]
        self._steady = None
        return super().update(row)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(ANY_VALUE, st.sampled_from([2.0, 3.0])),  # repeats, often
            st.one_of(ANY_VALUE, st.sampled_from([2.0, 3.0])),
        ),
        min_size=1,
        max_size=20,
    )
)
@example([(1.0, 2.0)] * 4 + [(LIMIT, -LIMIT), (2.0, 2.0), (2.0, 2.0), (3.0, 1.0)])
def test_a_ready_state_computes_the_same_bits_as_the_general_code(
    rows: list[tuple[float, float]],
) -> None:
    quick = DerivedState(ALL_KINDS, ("x", "y"))
    general = StepByStep(ALL_KINDS, ("x", "y"))
    for row in rows:
        got, expected = quick.update(list(row)), general.update(list(row))
        assert repr(got) == repr(expected)  # the same bits (0.0 and -0.0 told apart)
        assert repr(quick.export()) == repr(general.export())


def test_overflow_is_computed_on_scaled_values_not_just_clipped() -> None:
    """Near the float limit the mean and spread are still the right numbers."""
    spread = feed(DerivedFeature("s", "spread", "x", window=2), [[LIMIT, 0], [-LIMIT, 0]])
    assert spread == [None, LIMIT]
    huge_then_small = feed(DerivedFeature("s", "spread", "x", window=2), [[1e200, 0], [0.0, 0]])
    assert huge_then_small == [None, 5e199]
    deviation = feed(DerivedFeature("d", "deviation", "x", window=2), [[LIMIT, 0]] * 3)
    assert deviation == [None, None, 0.0]

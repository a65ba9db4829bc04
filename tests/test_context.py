"""The default context features: what each one sees, what it ignores, and resuming exactly."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hst_processor.context import (
    LIMIT,
    MAX_RESIDUAL_FIELDS,
    ContextFeatures,
    features_of_series,
    source_of,
)


def related_rows(count: int, seed: int = 1) -> np.ndarray:
    """load wanders; power follows it with a little noise."""
    rng = np.random.default_rng(seed)
    load = 70 + np.cumsum(rng.normal(0, 1, count)).clip(-20, 20)
    power = 2.0 * load + 60 + rng.normal(0, 0.5, count)
    return np.column_stack([load, power])


def feed(context: ContextFeatures, rows: np.ndarray) -> list[dict[str, float]]:
    out = []
    for row in rows.tolist():
        out += [dict(zip(context.names, values, strict=True)) for values in context.update(row)]
    return out


def test_names_and_sources() -> None:
    assert ContextFeatures(("load", "power")).names == (
        "load.deviation",
        "load.residual",
        "power.deviation",
        "power.residual",
    )
    assert ContextFeatures(("value",)).names == ("value.deviation", "value.level")
    assert source_of("power.residual") == "power" and source_of("power.x") == "power.x"


def test_nothing_comes_out_until_the_fit_then_every_gathered_row() -> None:
    context = ContextFeatures(("load", "power"), fit=50)
    rows = related_rows(60)
    counts = [len(context.update(row)) for row in rows.tolist()]
    assert counts[:49] == [0] * 49 and counts[49] == 50 and counts[50:] == [1] * 10


def test_a_broken_relation_shows_in_the_residual_not_in_the_deviation() -> None:
    context = ContextFeatures(("load", "power"), fit=200)
    rows = related_rows(400)
    normal = feed(context, rows)
    broken = rows[-1].copy()
    broken[1] = 2.0 * broken[0] + 60 + 8.0  # power 8 above its line: 16 noise deviations
    (features,) = context.update(broken.tolist())
    named = dict(zip(context.names, features, strict=True))
    usual = max(abs(f["power.residual"]) for f in normal[200:])
    assert abs(named["power.residual"]) > usual + 1.0
    assert abs(named["load.deviation"]) < 2.0


def test_values_far_beyond_the_range_keep_distinct_places_in_the_box() -> None:
    context = ContextFeatures(("value",), fit=100)
    feed(context, np.random.default_rng(2).normal(10, 1, (150, 1)))
    just, far, farther = [context.update([v])[0] for v in (14.0, 40.0, 400.0)]
    level = context.names.index("value.level")
    assert just[level] < far[level] < farther[level] <= LIMIT


def test_an_outlier_among_the_first_metrics_does_not_squeeze_the_rest() -> None:
    rows = np.random.default_rng(3).normal(10, 1, (300, 1))
    rows[5] = 1e9  # one wild value while the fit gathers
    context = ContextFeatures(("value",), fit=100)
    out = feed(context, rows)
    levels = np.array([f["value.level"] for f in out[110:]])
    assert levels.std() > 0.2  # ordinary values still spread over the box, not at one point


def test_non_finite_values_leave_the_state_finite() -> None:
    context = ContextFeatures(("load", "power"), fit=50)
    feed(context, related_rows(60))
    for bad in ([float("nan"), 200.0], [float("inf"), 1e308], [-1e308, float("-inf")]):
        (features,) = context.update(bad)
        assert all(-LIMIT <= f <= LIMIT for f in features)
    (after,) = context.update([70.0, 200.0])
    assert all(np.isfinite(after))
    assert np.isfinite(context.level).all() and np.isfinite(context.usual).all()


def test_a_restored_state_continues_exactly() -> None:
    rows = related_rows(500, seed=4)
    original = ContextFeatures(("load", "power"), fit=100)
    feed(original, rows[:300])
    copy = ContextFeatures(("load", "power"), fit=100)
    copy.restore(original.export())
    assert feed(copy, rows[300:]) == feed(original, rows[300:])


def test_values_at_the_float_limit_in_the_fit_keep_every_statistic_finite() -> None:
    import warnings

    rows = [[1e308 if i % 2 else -1e308, float(i), 1.7976931348623157e308 if i % 7 else 3.0]
            for i in range(300)]  # fmt: skip
    context = ContextFeatures(("x", "y", "z"), fit=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warnings would reach stderr
        out = [row for values in rows for row in context.update(values)]
    assert len(out) == 300
    assert all(all(-LIMIT <= f <= LIMIT for f in row) for row in out)
    for name in ("center", "half_range", "level", "usual", "mean", "spread", "coefficients"):
        assert np.isfinite(getattr(context, name)).all(), name


def test_a_series_too_wide_for_residuals_gets_deviations_only_and_stays_cheap() -> None:
    width = MAX_RESIDUAL_FIELDS + 1
    fields = [f"f{i:04d}" for i in range(width)]
    context = ContextFeatures(fields, fit=20)
    assert context.names == tuple(sorted(f"{name}.deviation" for name in fields))
    assert context.coefficients.size == 0  # no width-squared matrix per series
    rng = np.random.default_rng(0)
    rows = [context.update(rng.random(width).tolist()) for _ in range(25)]
    assert [len(r) for r in rows] == [0] * 19 + [20] + [1] * 5
    assert all(len(row) == width for batch in rows for row in batch)
    restored = ContextFeatures(fields, fit=20)
    restored.restore(context.export())
    assert restored.update([0.5] * width) == context.update([0.5] * width)


def test_twenty_thousand_fields_cost_little() -> None:
    context = ContextFeatures([f"f{i:05d}" for i in range(20_000)], fit=3)
    for _ in range(4):
        context.update([1.0] * 20_000)
    assert context.coefficients.nbytes == 0


VALUES = st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False),
    st.sampled_from([0.0, -0.0, 1e300, -1e300, 1.7e308, math.inf, -math.inf, math.nan, 5e-324]),
)


@settings(max_examples=60, deadline=None)
@given(width=st.integers(1, 6), data=st.data())
def test_one_metric_at_a_time_gives_numpys_bits_and_state(width: int, data: st.DataObject) -> None:
    """A fitted series moves its running level in Python floats or in rounds shared with other
    series: every feature and every saved number must equal the per-metric NumPy path's,
    extreme and non-finite values included."""
    rows = data.draw(st.lists(st.lists(VALUES, min_size=width, max_size=width), min_size=30,
                              max_size=60))  # fmt: skip
    assert_same_bits(width, rows, fit=data.draw(st.integers(2, 20)))


@settings(max_examples=40, deadline=None)
@given(width=st.integers(1, 4), data=st.data())
def test_features_have_the_same_bits_however_metrics_are_batched(
    width: int, data: st.DataObject
) -> None:
    """Several series fed together in batches of any size (Python floats for a few metrics
    in all, otherwise a round per metric for a series with a few, a Python loop for one with
    many) give each metric the bits it gets alone."""
    fit = data.draw(st.integers(2, 12))
    rows = st.lists(st.lists(VALUES, min_size=width, max_size=width), min_size=fit,
                    max_size=fit + 30)  # fmt: skip
    streams = [data.draw(rows) for _ in range(data.draw(st.integers(1, 4)))]
    fields = [f"f{i}" for i in range(width)]
    expected, alone_saved = [], []
    for stream in streams:
        alone = ContextFeatures(fields, fit=fit)
        expected.append([row for values in stream for row in alone.update(values)])
        alone_saved.append(alone.export())
    contexts = [ContextFeatures(fields, fit=fit) for _ in streams]
    got = [[row for values in stream[:fit] for row in context.update(values)]
           for context, stream in zip(contexts, streams, strict=True)]  # fmt: skip
    cursors = [fit] * len(streams)
    while any(at < len(stream) for at, stream in zip(cursors, streams, strict=True)):
        ends = [at + data.draw(st.integers(0, 12)) for at in cursors]
        if ends == cursors:  # every batch empty: the first unfinished stream moves on
            waiting = [at < len(stream) for at, stream in zip(cursors, streams, strict=True)]
            ends[waiting.index(True)] += 1
        batches = [stream[at:end] for stream, at, end in zip(streams, cursors, ends, strict=True)]
        for mine, computed in zip(got, features_of_series(contexts, batches), strict=True):
            mine += computed
        cursors = [min(end, len(stream)) for end, stream in zip(ends, streams, strict=True)]
    assert [[[_bits(v) for v in row] for row in rows] for rows in got] == [
        [[_bits(v) for v in row] for row in rows] for rows in expected
    ]
    assert _bits_of([context.export() for context in contexts]) == _bits_of(alone_saved)


@pytest.mark.parametrize("width", [1, 2])
def test_a_negative_zero_step_is_squashed_to_positive_zero_as_numpy_does(width: int) -> None:
    rows = [[0.0] * width] * 10 + [[-0.0] * width] * 5  # level 0.0, then -0.0 - 0.0 = -0.0
    assert_same_bits(width, rows, fit=10)


def assert_same_bits(width: int, rows: list[list[float]], fit: int) -> None:
    fields = [f"f{i}" for i in range(width)]
    scalar, vector = ContextFeatures(fields, fit=fit), ContextFeatures(fields, fit=fit)
    outputs_scalar: list[list[float]] = []
    outputs_vector: list[list[float]] = []
    for index, row in enumerate(rows):
        outputs_scalar += scalar.update(row)
        outputs_vector += vector.update(row)
        if vector._running is not None:  # the NumPy path from here on, from the same state
            vector.export()  # which brings the running level into the arrays it reads
            vector._running = None
        if index == len(rows) // 2:  # a snapshot on the way changes nothing
            assert _bits_of(scalar.export()) == _bits_of(vector.export())
    assert scalar._running is not None or not scalar.fitted or _degenerate(scalar)
    assert [[_bits(v) for v in row] for row in outputs_scalar] == [
        [_bits(v) for v in row] for row in outputs_vector
    ]
    assert _bits_of(scalar.export()) == _bits_of(vector.export())


def _degenerate(context: ContextFeatures) -> bool:
    """A fit that left a divisor at zero (all values non-finite): NumPy's handling is kept."""
    return not all(
        bool(np.all(values > 0))
        for values in (context.floor, context.half_range, context.spread, context.residual_spread)
    )


def _bits(value: float) -> str:
    return "nan" if math.isnan(value) else value.hex()


def _bits_of(saved: Any) -> Any:
    if isinstance(saved, float):
        return _bits(saved)
    if isinstance(saved, dict):
        return {key: _bits_of(value) for key, value in saved.items()}
    if isinstance(saved, list):
        return [_bits_of(value) for value in saved]
    return saved


@pytest.mark.parametrize("width", [1, 2, 17])
def test_steps_beyond_the_float_range_move_every_path_alike(width: int) -> None:
    """Values swinging between the float limits overflow the step and its bound: the Python
    loop, the shared rounds and NumPy's per-metric path all clip it as NumPy does."""
    rows = [[(1.7e308 if i % 2 else -1.7e308)] + [float(k) for k in range(1, width)]
            for i in range(150)]  # fmt: skip
    assert_same_bits(width, rows, fit=20)
    assert_batches_like_one_by_one(width, rows, fit=20, batch=130)  # the Python loop


def test_a_restored_state_that_is_not_finite_scores_the_same_however_batched() -> None:
    """A snapshot with a NaN usual deviation (no fit leaves one) takes NumPy's per-metric
    path, so its features cannot depend on how the metrics were read."""
    context = ContextFeatures(("x", "y"), fit=10)
    feed(context, related_rows(10))
    saved = context.export()
    saved["arrays"]["usual"][0] = math.nan
    rows = related_rows(30, seed=2)[10:].tolist()
    alone, together = ContextFeatures(("x", "y"), fit=10), ContextFeatures(("x", "y"), fit=10)
    alone.restore(saved)
    together.restore(saved)
    one_by_one = [row for values in rows for row in alone.update(values)]
    assert _bits_of(together.features_of(rows)) == _bits_of(one_by_one)
    assert _bits_of(together.export()) == _bits_of(alone.export())


def test_series_computed_together_must_read_the_same_fields_in_one_order() -> None:
    first, second = ContextFeatures(("x", "y"), fit=3), ContextFeatures(("y", "x"), fit=3)
    for context in (first, second):
        feed(context, related_rows(3))
    with pytest.raises(ValueError, match="same fields"):
        features_of_series([first, second], [[[1.0, 2.0]], [[2.0, 1.0]]])


def test_ordinary_values_of_many_fields_give_the_same_bits_on_every_path() -> None:
    """Six related fields of ordinary values, where the order of a residual's sum shows in
    its last bits: a lone metric (Python floats), a few series' rounds and the per-metric
    NumPy path must all sum field by field in one order."""
    rng = np.random.default_rng(11)
    base = rng.normal(0.0, 1.0, (160, 1))
    rows = (base * rng.uniform(0.5, 3.0, 6) + rng.normal(0.0, 0.3, (160, 6))).tolist()
    assert_same_bits(6, rows, fit=40)
    assert_batches_like_one_by_one(6, rows, fit=40, batch=30)  # 30 rows of 6: the arrays


def assert_batches_like_one_by_one(
    width: int, rows: list[list[float]], fit: int, batch: int
) -> None:
    """After the fit, ``batch`` metrics at a time give the features and state that one metric
    at a time gives."""
    fields = [f"f{i}" for i in range(width)]
    alone, together = ContextFeatures(fields, fit=fit), ContextFeatures(fields, fit=fit)
    one_by_one = [row for values in rows for row in alone.update(values)]
    batched = [row for values in rows[:fit] for row in together.update(values)]
    for start in range(fit, len(rows), batch):
        batched += together.features_of(rows[start : start + batch])
    assert _bits_of(batched) == _bits_of(one_by_one)
    assert _bits_of(together.export()) == _bits_of(alone.export())

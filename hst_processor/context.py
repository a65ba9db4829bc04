"""Default features for metrics nobody wrote features for: level, deviation and residual.

Half-Space Trees see one point at a time, in a box. Raw fields give them neither the recent
past (a jump, a frozen sensor, a drift) nor the relations between fields (power that no longer
follows load), and a raw value far beyond the range seen so far lands in the same outermost
cell as one just past it. When no ``derived`` features are configured, each series therefore
gets, per field:

=============== ==============================================================================
``F.deviation`` the value minus the field's recent level (an average with a half-life of
                ``fast`` metrics), in units of its usual deviation (a running mean absolute
                deviation with a half-life of ``slow`` metrics): a jump, a spike, a drift, a
                level that moved for many fields at once
``F.residual``  (two fields or more) the value minus what the *other* fields predict by a ridge
                regression fitted on the first ``fit`` metrics, in standard deviations of that
                fit: a relation that broke, a frozen sensor whose partners keep moving (the
                idea of the Q and T-squared statistics)
``F.level``     (one field only, where there is no relation to learn) the value against the
                robust range (5th to 95th percentile, stretched by 1/0.9) of the first ``fit``
                metrics: 0 in the middle, about +-1 at its ends
=============== ==============================================================================

Every feature goes through ``sign(v) * log(1 + |v|)`` and is clipped to ``+-LIMIT`` (``LIMIT``
= 4: values up to about 50 units apart keep distinct places in the box), so a value ten times
beyond the range seen still lands somewhere other than one just past it, and one outlier in the
first metrics cannot squeeze everything else into a corner: the ranges are percentiles and the
running averages take each value's step clipped to three usual deviations.

The deviation's running state moves with every metric, so the series keeps following its own
level; level and residual are fitted once, and the model's learning (the reference window slides)
is what adapts to a new operating point. The state is plain data, exported with the series.

>>> context = ContextFeatures(("load", "power"), fit=4)
>>> [context.update([float(i), 2.0 * i + 1.0]) for i in range(3)]
[[], [], []]
>>> rows = context.update([3.0, 7.0])  # the fit completes: the four rows so far come out
>>> len(rows), len(rows[0]) == len(context.names)
(4, True)
>>> context.names
('load.deviation', 'load.residual', 'power.deviation', 'power.residual')
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from hst_processor.derived import FINITE_BOUND
from hst_processor.scaling import FloatArray

__all__ = [
    "KINDS",
    "LIMIT",
    "MAX_RESIDUAL_FIELDS",
    "SAVED_MATRICES",
    "SAVED_VECTORS",
    "ContextFeatures",
    "coefficient_width",
    "context_names",
    "features_of_series",
    "finite_percentiles",
    "source_of",
    "unsquash",
]

KINDS = ("deviation", "level", "residual")
SAVED_VECTORS = (
    "center",
    "half_range",
    "floor",
    "level",
    "usual",
    "mean",
    "spread",
    "residual_spread",
)
"""The state kept per field, one number each, as a snapshot names it."""
SAVED_MATRICES = ("coefficients",)
"""The state kept per pair of fields (the residuals' fit), one row per field."""

LIMIT = 4.0
"""Features are squashed into [-LIMIT, LIMIT]: the model's box."""
_CLIP = 3.0  # a running average moves by at most this many usual deviations per metric
_LARGEST = float(np.finfo(np.float64).max)
_RIDGE = 0.01  # ridge penalty per fitted metric, on standardised fields
_RESIDUAL_FLOOR = 0.05  # in the field's standard deviations: a fit cannot be more exact
_FLOOR_FRACTION = 1e-3  # a flat field's unit: this share of its level or range
_FLOOR_ABSOLUTE = 1e-9


MAX_RESIDUAL_FIELDS = 64
"""Beyond this many fields a series gets deviations only: the residuals' fit costs the fourth
power of the field count and their coefficients its square (1,000 fields: minutes of fit on
the metric path and 8 MB per series)."""


def coefficient_width(width: int) -> int:
    """Rows (and columns) of a series' fit coefficients: one per field, none when the series
    is too wide for residuals (a single field keeps its one unused row, as snapshots have it)."""
    return width if width <= MAX_RESIDUAL_FIELDS else 0


def _kinds(width: int) -> tuple[str, ...]:
    # With one field there is no relation to learn; the level stands in. With several, the
    # residuals carry each field's place among the others, and a level beside them only adds
    # dimensions the trees' splits must share (measured: fewer faults found).
    if width == 1:
        return ("deviation", "level")
    return ("deviation", "residual") if width <= MAX_RESIDUAL_FIELDS else ("deviation",)


def source_of(name: str) -> str:
    """The field a context feature is made from (any other name is its own source).

    >>> source_of("power.residual"), source_of("power")
    ('power', 'power')
    """
    field, _, kind = name.rpartition(".")
    return field if field and kind in KINDS else name


def context_names(fields: Sequence[str]) -> tuple[str, ...]:
    """The feature names for a series' fields, sorted (river builds its trees in that order)."""
    kinds = _kinds(len(fields))
    return tuple(sorted(f"{name}.{kind}" for name in fields for kind in kinds))


def _finite(values: FloatArray) -> FloatArray:
    """Overflowed statistics brought back within the float range (NaN: 0), where the derived
    features put theirs (:func:`hst_processor.derived.finite`)."""
    if math.isfinite(values.sum()):  # the usual case, in one call: nan_to_num costs ten
        return values
    result: FloatArray = np.nan_to_num(values, nan=0.0, posinf=FINITE_BOUND, neginf=-FINITE_BOUND)
    return result


def finite_percentiles(rows: FloatArray, percentiles: Sequence[float]) -> list[FloatArray]:
    """Each column's ``percentiles`` over its finite values, within the float range (a column
    never finite: 0), one array per percentile.

    >>> [p.tolist() for p in finite_percentiles(np.array([[1.0, np.nan], [3.0, np.inf]]), [50])]
    [[2.0, 0.0]]
    """
    with np.errstate(all="ignore"):
        finite = np.where(np.isfinite(rows), rows, np.nan)
        with warnings.catch_warnings():  # a column never finite: its NaNs become 0 below
            warnings.simplefilter("ignore", RuntimeWarning)
            found = np.nanpercentile(finite, percentiles, axis=0)
    return [np.nan_to_num(values) for values in found]


def unsquash(value: float) -> float:
    """A squashed feature back in its own units (the edge of the box stays the edge).

    >>> round(unsquash(float(_squash(np.array([12.5]))[0])), 9)
    12.5
    """
    return math.copysign(math.expm1(abs(value)), value)


def _squash(values: FloatArray) -> FloatArray:
    with np.errstate(over="ignore", invalid="ignore"):
        squashed = np.sign(values) * np.log1p(np.abs(values))
    # Into the box; an infinity lands on its edge, NaN in its middle.
    bounded: FloatArray = np.minimum(np.maximum(squashed, -LIMIT), LIMIT)
    if not math.isfinite(bounded.sum()):
        bounded = np.nan_to_num(bounded, nan=0.0)
    return bounded


class ContextFeatures:
    """One series' default features and the running state behind them."""

    def __init__(
        self, fields: Sequence[str], fit: int = 100, fast: float = 10.0, slow: float = 250.0
    ) -> None:
        self.fields = tuple(fields)
        self.names = context_names(self.fields)
        self.sources = {name: source_of(name) for name in self.names}
        self.fit = max(2, fit)
        self._fast = 1.0 - 0.5 ** (1.0 / fast)
        self._slow = 1.0 - 0.5 ** (1.0 / slow)
        width = len(self.fields)
        # Where each computed column goes in the sorted names: every field's deviation, then
        # every field's level or residual (the order ``_features`` computes them in).
        computed = [f"{name}.{kind}" for kind in _kinds(width) for name in self.fields]
        self._order = np.array([computed.index(name) for name in self.names], dtype=np.intp)
        self.pending: list[list[float]] = []  # metrics gathered for the fit
        self.fitted = False
        self.center = np.zeros(width)
        self.half_range = np.ones(width)
        self.floor = np.ones(width)
        self.level = np.zeros(width)  # running level, for the deviation
        self.usual = np.ones(width)  # running usual deviation
        self.mean = np.zeros(width)
        self.spread = np.ones(width)
        self.kinds = _kinds(width)
        fitted_width = coefficient_width(width)  # column i predicts field i
        self.coefficients = np.zeros((fitted_width, fitted_width))
        self.residual_spread = np.ones(width)
        self._running: _Running | None = None  # the running level, once fitted

    def update(self, row: Sequence[float]) -> list[list[float]]:
        """Feature rows for one metric's raw values, in :attr:`names` order: none while the
        first ``fit`` metrics are gathered, all of them when the fit completes, then one."""
        if self.fitted:
            return self.features_of([row])
        self.pending.append(list(row))
        if len(self.pending) < self.fit:
            return []
        gathered = np.array(self.pending, dtype=np.float64)
        self.pending = []
        self._fit(gathered)
        self._running = _Running.of(self)
        return self.features_of(gathered.tolist())

    def features_of(self, rows: Sequence[Sequence[float]]) -> list[list[float]]:
        """One feature row per metric of a fitted series, in :attr:`names` order (see
        :func:`features_of_series`, which does many series at once)."""
        return features_of_series([self], [rows])[0]

    def _fit(self, rows: FloatArray) -> None:
        low, median, high = finite_percentiles(rows, (5.0, 50.0, 95.0))
        with np.errstate(all="ignore"):
            finite = np.where(np.isfinite(rows), rows, np.nan)
            self.center = low / 2 + high / 2
            scale = np.maximum(np.abs(median), high / 2 - low / 2)
            self.floor = np.maximum(np.nan_to_num(scale * _FLOOR_FRACTION), _FLOOR_ABSOLUTE)
            # The middle 90 % spans 0.9 of the range: stretched to cover all of it, it leaves
            # out up to 5 % of outliers at either end.
            self.half_range = np.maximum((high / 2 - low / 2) / 0.9, self.floor)
            steps = np.abs(np.diff(np.nan_to_num(finite, nan=0.0), axis=0))
            self.level = median.copy()
            typical_step = np.median(steps, axis=0) if len(steps) else self.floor
            self.usual = np.maximum(typical_step, self.floor)
            clean = np.clip(np.nan_to_num(finite - median), -1e12, 1e12) + median
            self.mean = clean.mean(axis=0)
            self.spread = np.maximum(clean.std(axis=0), self.floor)
            # Values near the float limit overflow the statistics above: keep the state finite.
            for name in ("center", "floor", "half_range", "level", "usual", "mean", "spread"):
                setattr(self, name, _finite(getattr(self, name)))
            self.floor = np.maximum(self.floor, _FLOOR_ABSOLUTE)
            for name in ("half_range", "usual", "spread"):
                setattr(self, name, np.maximum(getattr(self, name), self.floor))
            standard = np.nan_to_num(np.clip((clean - self.mean) / self.spread, -1e6, 1e6))
        width = len(self.fields)
        if "residual" in self.kinds:
            coefficients = np.zeros((width, width))
            penalty = _RIDGE * len(standard) * np.eye(width - 1)
            residuals = np.empty_like(standard)
            for target in range(width):
                others = [i for i in range(width) if i != target]
                inputs = standard[:, others]
                normal = inputs.T @ inputs + penalty
                solved = np.linalg.solve(normal, inputs.T @ standard[:, target])
                coefficients[others, target] = solved
                residuals[:, target] = standard[:, target] - inputs @ solved
            self.coefficients = coefficients
            self.residual_spread = np.maximum(residuals.std(axis=0), _RESIDUAL_FLOOR)
        self.fitted = True

    def _features(self, values: FloatArray) -> list[float]:
        """One metric's features in NumPy, the running state in the arrays: the way for a
        restored state that no fit leaves (see :meth:`_Running.of`), and the reference the
        tests hold every faster path to, bit for bit."""
        finite = np.isfinite(values)
        safe = np.where(finite, values, self.level)
        with np.errstate(over="ignore", invalid="ignore"):
            usual = np.maximum(self.usual, self.floor)
            step = safe - self.level
            parts = [step / usual]  # the deviation
            if "level" in self.kinds:
                parts.append((values - self.center) / self.half_range)
            elif "residual" in self.kinds:  # against the other fields
                residuals = _residuals(
                    safe[np.newaxis, :],
                    self.mean,
                    self.spread,
                    self.coefficients,
                    self.residual_spread,
                )
                parts.append(residuals[0])
            # Running level and usual deviation, each step clipped so an outlier barely moves
            # them; a non-finite value leaves them alone.
            clipped = np.minimum(np.maximum(step, -_CLIP * usual), _CLIP * usual)
            if not math.isfinite(clipped.sum()):
                clipped = np.nan_to_num(clipped)
            self.level = _finite(self.level + self._fast * clipped)
            self.usual = _finite(self.usual + self._slow * (np.abs(clipped) - self.usual))
        combined = _squash(np.concatenate(parts))
        # A value that is not finite sits at the box's edge in its level (inf) or middle (NaN).
        result: list[float] = combined[self._order].tolist()
        return result

    # -- state ---------------------------------------------------------------------------------

    def export(self) -> dict[str, Any]:
        if self._running is not None:  # the running state lives in its lists
            self.level = np.array(self._running.level)
            self.usual = np.array(self._running.usual)
        return {
            "fields": list(self.fields),
            "pending": self.pending,
            "fitted": self.fitted,
            "arrays": {
                name: getattr(self, name).tolist() for name in SAVED_VECTORS + SAVED_MATRICES
            },
        }

    def restore(self, saved: dict[str, Any]) -> None:
        if tuple(saved["fields"]) != self.fields:
            raise ValueError("the saved context features are for other fields")
        self.pending = [[float(v) for v in row] for row in saved["pending"]]
        self.fitted = bool(saved["fitted"])
        for name, values in saved["arrays"].items():
            current = getattr(self, name)
            array = np.array(values, dtype=np.float64).reshape(current.shape)
            setattr(self, name, array)
        self._running = _Running.of(self) if self.fitted else None


def features_of_series(
    contexts: Sequence[ContextFeatures], rows: Sequence[Sequence[Sequence[float]]]
) -> list[list[list[float]]]:
    """The feature rows of fitted series of one feature set, ``rows[k]`` being the metrics of
    ``contexts[k]`` in order: one row per metric, in :attr:`ContextFeatures.names` order.

    Each series' running level moves metric by metric (see :func:`_advance`); the rest is done
    for every metric of every series at once, each row with its own series' statistics. The
    same element-wise operations whatever the grouping, so a metric's features have the same
    bits whether it comes alone or with many metrics of many series.

    >>> metrics = [[float(i), 2.0 * i + 1.0] for i in range(7)]
    >>> alone, many = (ContextFeatures(("load", "power"), fit=4) for _ in range(2))
    >>> for context in (alone, many):
    ...     _ = [context.update(row) for row in metrics[:4]]
    >>> one_by_one = [alone.features_of([row])[0] for row in metrics[4:]]
    >>> one_by_one == features_of_series([many], [metrics[4:]])[0]
    True
    """
    results: list[list[list[float]]] = [[] for _ in contexts]
    stacked: list[int] = []  # which of the contexts each stacked row belongs to
    metrics_in_order: list[Sequence[float]] = []
    moving: list[tuple[_Running, int, Sequence[Sequence[float]]]] = []
    for position, (context, metrics) in enumerate(zip(contexts, rows, strict=True)):
        if not metrics:
            continue
        if context._running is None:  # a restored state not as a fit leaves one: NumPy's way
            results[position] = [context._features(np.asarray(row, np.float64)) for row in metrics]
            continue
        moving.append((context._running, len(stacked), metrics))
        metrics_in_order += metrics
        stacked += [position] * len(metrics)
    if not stacked:
        return results
    first = contexts[stacked[0]]
    if any(context.fields != first.fields for context in contexts):
        raise ValueError("features_of_series takes series of the same fields, in one order")
    if len(stacked) * len(first.fields) ** 2 <= _SCALAR_WORK:
        for running, start, metrics in moving:
            position = stacked[start]
            results[position] = _scalar_features(contexts[position], running, metrics)
        return results
    which = np.array(stacked, dtype=np.intp)
    values = np.array(metrics_in_order, dtype=np.float64)
    deviations, safe = _advance(moving, values)
    with np.errstate(over="ignore", invalid="ignore"):
        parts = [deviations]
        if "level" in first.kinds:
            center = np.array([context.center for context in contexts])[which]
            half_range = np.array([context.half_range for context in contexts])[which]
            parts.append((values - center) / half_range)
        elif "residual" in first.kinds:
            parts.append(
                _residuals(
                    safe,
                    np.array([context.mean for context in contexts])[which],
                    np.array([context.spread for context in contexts])[which],
                    np.array([context.coefficients for context in contexts])[which],
                    np.array([context.residual_spread for context in contexts])[which],
                )
            )
        combined = _squash(np.concatenate(parts, axis=1))
    ordered: list[list[float]] = combined[:, first._order].tolist()
    for position, row in zip(stacked, ordered, strict=True):
        results[position].append(row)
    return results


_SCALAR_WORK = 128
"""Up to this many rows times fields squared (a residual costs a field's square), a batch is
computed in Python floats: some forty NumPy calls cost more than the arithmetic on a few
numbers, and a lone metric must not wait for them. The same IEEE operations in the same order
as the array path, so the same bits."""

_ROUNDS_UP_TO = 8
"""A series with at most this many metrics in a batch moves its running level together with
the other such series, one metric of each per round of NumPy operations (a thousand machines
sending a metric each: one round); one with more moves it in a Python loop of its own."""


def _advance(
    moving: Sequence[tuple[_Running, int, Sequence[Sequence[float]]]], values: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Every stacked row's deviations and finite values (see :meth:`_Running.advance`), each
    series' running state moved past its rows. ``moving`` holds each series' state, where its
    rows start among the stacked ``values``, and the rows."""
    deviations = np.empty_like(values)
    safe = np.empty_like(values)
    together: list[tuple[_Running, int, int]] = []
    for running, start, metrics in moving:
        if len(metrics) > _ROUNDS_UP_TO:
            moved, finite = running.advance(metrics)
            deviations[start : start + len(metrics)] = moved
            safe[start : start + len(metrics)] = finite
        else:
            together.append((running, start, len(metrics)))
    if not together:
        return deviations, safe
    states = [running for running, _, _ in together]
    starts = np.array([start for _, start, _ in together], dtype=np.intp)
    counts = np.array([count for _, _, count in together], dtype=np.intp)
    level = np.array([running.level for running in states], dtype=np.float64)
    usual_now = np.array([running.usual for running in states], dtype=np.float64)
    floor = np.array([running.floor for running in states], dtype=np.float64)
    fast = np.array([[running.fast] for running in states], dtype=np.float64)
    slow = np.array([[running.slow] for running in states], dtype=np.float64)
    everyone = np.arange(len(states))
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(int(counts.max())):
            active = everyone if step == 0 else np.flatnonzero(counts > step)
            at = starts[active] + step
            mean, spread = level[active], usual_now[active]
            row = values[at]
            kept = np.where(np.isfinite(row), row, mean)  # not finite: steps by 0
            usual = np.maximum(spread, floor[active])
            change = kept - mean
            deviations[at] = change / usual
            safe[at] = kept
            bound = _CLIP * usual
            clipped = np.minimum(np.maximum(change, -bound), bound)
            if not math.isfinite(clipped.sum()):  # a step and its bound beyond the float range
                clipped = np.nan_to_num(clipped)
            level[active] = _finite(mean + fast[active] * clipped)
            usual_now[active] = _finite(spread + slow[active] * (np.abs(clipped) - spread))
    for running, new_level, new_usual in zip(
        states, level.tolist(), usual_now.tolist(), strict=True
    ):
        running.level, running.usual = new_level, new_usual
    return deviations, safe


def _scalar_features(
    context: ContextFeatures, running: _Running, metrics: Sequence[Sequence[float]]
) -> list[list[float]]:
    """:func:`features_of_series` for one series' few metrics, in Python floats."""
    deviations, safe_rows = running.advance(metrics)
    order: list[int] = context._order.tolist()
    if "level" in context.kinds:
        center, half_range = context.center.tolist(), context.half_range.tolist()
        for parts, values in zip(deviations, metrics, strict=True):
            parts += [(v - c) / h for v, c, h in zip(values, center, half_range, strict=True)]
    elif "residual" in context.kinds:
        width = len(context.fields)
        mean, spread = context.mean.tolist(), context.spread.tolist()
        coefficients: list[list[float]] = context.coefficients.tolist()
        residual_spread = context.residual_spread.tolist()
        for parts, safe in zip(deviations, safe_rows, strict=True):
            standard = [
                min(max((v - m) / d, -1e6), 1e6) for v, m, d in zip(safe, mean, spread, strict=True)
            ]
            for target in range(width):
                predicted = 0.0  # summed field by field, as _predict does
                for source in range(width):
                    predicted += standard[source] * coefficients[source][target]
                parts.append((standard[target] - predicted) / residual_spread[target])
    result: list[list[float]] = []
    for parts in deviations:  # each row's deviations, then its level or residuals
        squashed = [_squash_scalar(value) for value in parts]
        result.append([squashed[k] for k in order])
    return result


def _squash_scalar(value: float) -> float:
    """``_squash`` of one number: NaN lands in the box's middle, infinity on its edge."""
    if value != value:
        return 0.0
    if value == 0:
        return 0.0  # NumPy's sign(-0.0) is 0.0: no negative zero
    # NumPy's log1p, not math's: from NumPy 2.4 they can differ in the last bit, and a
    # metric's features must have the same bits on the array path and on this one.
    squashed = math.copysign(float(np.log1p(abs(value))), value)
    return min(max(squashed, -LIMIT), LIMIT)


def _residuals(
    safe: FloatArray,
    mean: FloatArray,
    spread: FloatArray,
    coefficients: FloatArray,
    residual_spread: FloatArray,
) -> FloatArray:
    """Rows of values (finite) against what the other fields predict, in units of the fit's
    deviation; ``coefficients`` one matrix for all rows, or one per row."""
    standard = np.clip((safe - mean) / spread, -1e6, 1e6)
    residuals: FloatArray = (standard - _predict(standard, coefficients)) / residual_spread
    return residuals


def _predict(standard: FloatArray, coefficients: FloatArray) -> FloatArray:
    """Each row of ``standard`` times the coefficients (one matrix, or one per row), summed
    field by field in one fixed order. A BLAS product picks its order (and so its last bits)
    by the shape, and a metric's features must not depend on how many metrics came with it."""
    width = standard.shape[1]
    predicted = np.zeros((standard.shape[0], coefficients.shape[-1]))
    for field_index in range(width):
        predicted += standard[:, field_index : field_index + 1] * coefficients[..., field_index, :]
    return predicted


class _Running:
    """A fitted series' running level and usual deviation, in Python floats: they move one
    metric at a time, and a few numbers per metric cost less in Python than in NumPy calls.
    The same operations in the same order as :meth:`ContextFeatures._features`, so the same
    bits."""

    def __init__(self, context: ContextFeatures) -> None:
        self.level: list[float] = context.level.tolist()
        self.usual: list[float] = context.usual.tolist()
        self.floor: list[float] = context.floor.tolist()
        self.fast, self.slow = context._fast, context._slow

    @classmethod
    def of(cls, context: ContextFeatures) -> _Running | None:
        """The running state, for a series whose statistics are all finite and whose divisors
        are all positive, as a fit leaves them. A restored snapshot that says otherwise keeps
        NumPy's per-metric handling: with a NaN usual deviation, say, a Python comparison and
        NumPy's clip would move the level differently, and the features would depend on how
        the metrics were batched."""
        divisors = (context.floor, context.half_range, context.spread, context.residual_spread)
        if not all(bool(np.all(values > 0)) for values in divisors):
            return None
        saved = [getattr(context, name) for name in SAVED_VECTORS + SAVED_MATRICES]
        if not all(bool(np.isfinite(values).all()) for values in saved):
            return None
        return cls(context)

    def advance(
        self, rows: Sequence[Sequence[float]]
    ) -> tuple[list[list[float]], list[list[float]]]:
        """Each row's deviations (the step from the level, in usual deviations) and its values
        with any that is not finite replaced by the level, moving the state past every row."""
        level, usual_now, floor = self.level, self.usual, self.floor
        fast, slow, isfinite = self.fast, self.slow, math.isfinite
        deviations: list[list[float]] = []
        safe_rows: list[list[float]] = []
        for row in rows:
            deviation: list[float] = []
            safe: list[float] = []
            for i, value in enumerate(row):
                mean = level[i]
                if not isfinite(value):
                    value = mean  # steps by 0: leaves the state alone
                usual = usual_now[i]
                if usual < floor[i]:
                    usual = floor[i]
                change = value - mean
                deviation.append(change / usual)
                safe.append(value)
                # Each step clipped, so an outlier barely moves the state.
                bound = _CLIP * usual
                clipped = bound if change > bound else -bound if change < -bound else change
                if clipped - clipped != 0:  # a step and its bound beyond the float range
                    clipped = math.copysign(_LARGEST, clipped)  # as NumPy's nan_to_num
                moved = mean + fast * clipped
                level[i] = moved if isfinite(moved) else _finite_scalar(moved)
                spread = usual_now[i] + slow * (abs(clipped) - usual_now[i])
                usual_now[i] = spread if isfinite(spread) else _finite_scalar(spread)
            deviations.append(deviation)
            safe_rows.append(safe)
        return deviations, safe_rows


def _finite_scalar(value: float) -> float:
    """``_finite`` of one number."""
    if math.isfinite(value):
        return value
    if value != value:
        return 0.0
    return FINITE_BOUND if value > 0 else -FINITE_BOUND

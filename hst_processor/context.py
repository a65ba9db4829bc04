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
_RIDGE = 0.01  # ridge penalty per fitted metric, on standardised fields
_RESIDUAL_FLOOR = 0.05  # in the field's standard deviations: a fit cannot be more exact
_FLOOR_FRACTION = 1e-3  # a flat field's unit: this share of its level or range
_FLOOR_ABSOLUTE = 1e-9


SCALAR_WIDTH = 16
"""Up to this many fields a series' features are computed in Python floats, the fit's product
apart: some twenty NumPy calls per metric cost more than the arithmetic on a few numbers. Both
ways give the same bits (the same IEEE operations in the same order, the product by NumPy)."""

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
        self._scalar: _ScalarState | None = None  # a narrow fitted series: see SCALAR_WIDTH

    def update(self, row: Sequence[float]) -> list[list[float]]:
        """Feature rows for one metric's raw values, in :attr:`names` order: none while the
        first ``fit`` metrics are gathered, all of them when the fit completes, then one."""
        if self._scalar is not None:
            return [self._scalar.features(row, self.coefficients)]
        if self.fitted:
            return [self._features(np.asarray(row, dtype=np.float64))]
        self.pending.append(list(row))
        if len(self.pending) < self.fit:
            return []
        gathered = np.array(self.pending, dtype=np.float64)
        self.pending = []
        self._fit(gathered)
        rows = [self._features(values) for values in gathered]
        self._scalar = _ScalarState.of(self)
        return rows

    def _fit(self, rows: FloatArray) -> None:
        with np.errstate(all="ignore"):
            finite = np.where(np.isfinite(rows), rows, np.nan)
            with warnings.catch_warnings():  # a field never finite: its NaNs become 0 below
                warnings.simplefilter("ignore", RuntimeWarning)
                low, median, high = np.nanpercentile(finite, [5.0, 50.0, 95.0], axis=0)
            low, median, high = (np.nan_to_num(v) for v in (low, median, high))
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
        finite = np.isfinite(values)
        safe = np.where(finite, values, self.level)
        with np.errstate(over="ignore", invalid="ignore"):
            usual = np.maximum(self.usual, self.floor)
            step = safe - self.level
            parts = [step / usual]  # the deviation
            if "level" in self.kinds:
                parts.append((values - self.center) / self.half_range)
            elif "residual" in self.kinds:  # against the other fields
                standard = np.clip((safe - self.mean) / self.spread, -1e6, 1e6)
                predicted = standard @ self.coefficients
                parts.append((standard - predicted) / self.residual_spread)
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
        if self._scalar is not None:  # the running state lives in its lists
            self.level = np.array(self._scalar.level)
            self.usual = np.array(self._scalar.usual)
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
        self._scalar = _ScalarState.of(self) if self.fitted else None


class _ScalarState:
    """A narrow fitted series' state as Python floats, and :meth:`ContextFeatures._features`
    written with them: the same operations in the same order, so the same bits."""

    def __init__(self, context: ContextFeatures) -> None:
        self.level: list[float] = context.level.tolist()
        self.usual: list[float] = context.usual.tolist()
        self.floor: list[float] = context.floor.tolist()
        self.center: list[float] = context.center.tolist()
        self.half_range: list[float] = context.half_range.tolist()
        self.mean: list[float] = context.mean.tolist()
        self.spread: list[float] = context.spread.tolist()
        self.residual_spread: list[float] = context.residual_spread.tolist()
        self.order: list[int] = context._order.tolist()
        self.residual = "residual" in context.kinds
        self.fast, self.slow = context._fast, context._slow

    @classmethod
    def of(cls, context: ContextFeatures) -> _ScalarState | None:
        """The scalar state, for a narrow series whose divisors are all positive (as a fit
        leaves them; a restored snapshot that says otherwise keeps NumPy's handling)."""
        if len(context.fields) > SCALAR_WIDTH:
            return None
        divisors = (context.floor, context.half_range, context.spread, context.residual_spread)
        if not all(bool(np.all(values > 0)) for values in divisors):
            return None
        return cls(context)

    def features(self, row: Sequence[float], coefficients: FloatArray) -> list[float]:
        level, usual_now, floor = self.level, self.usual, self.floor
        isfinite = math.isfinite
        safe = [v if isfinite(v) else level[i] for i, v in enumerate(row)]
        usual = [u if u >= f else f for u, f in zip(usual_now, floor, strict=True)]
        step = [s - m for s, m in zip(safe, level, strict=True)]
        parts = [d / u for d, u in zip(step, usual, strict=True)]  # the deviation
        if self.residual:  # against the other fields
            standard = [
                min(max((s - m) / d, -1e6), 1e6)
                for s, m, d in zip(safe, self.mean, self.spread, strict=True)
            ]
            predicted = (np.array(standard) @ coefficients).tolist()  # NumPy's sum order
            parts += [
                (s - p) / r
                for s, p, r in zip(standard, predicted, self.residual_spread, strict=True)
            ]
        else:  # the level
            parts += [
                (v - c) / h for v, c, h in zip(row, self.center, self.half_range, strict=True)
            ]
        # Running level and usual deviation, each step clipped. A step is never NaN (a value
        # that is not finite steps by 0), so NumPy's nan_to_num of the clipped steps has
        # nothing to change here.
        fast, slow = self.fast, self.slow
        for i, change in enumerate(step):
            bound = _CLIP * usual[i]
            clipped = min(max(change, -bound), bound)
            level[i] = _finite_scalar(level[i] + fast * clipped)
            usual_now[i] = _finite_scalar(usual_now[i] + slow * (abs(clipped) - usual_now[i]))
        squashed = [_squash_scalar(value) for value in parts]
        return [squashed[k] for k in self.order]


def _squash_scalar(value: float) -> float:
    """``_squash`` of one number: NaN lands in the box's middle, infinity on its edge."""
    if value != value:
        return 0.0
    if value == 0:
        return 0.0  # NumPy's sign(-0.0) is 0.0: no negative zero
    squashed = math.copysign(math.log1p(abs(value)), value)
    return min(max(squashed, -LIMIT), LIMIT)


def _finite_scalar(value: float) -> float:
    """``_finite`` of one number."""
    if math.isfinite(value):
        return value
    if value != value:
        return 0.0
    return FINITE_BOUND if value > 0 else -FINITE_BOUND

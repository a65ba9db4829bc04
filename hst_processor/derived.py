"""Temporal and relational features, computed per series before scaling.

Half-Space Trees see one point at a time: a frozen sensor, a slow drift, a jump relative to the
recent level or a broken relation between two readings is invisible in a single point. A
derived feature puts that context into the point:

========== =========================================================== ==================
kind       value                                                       ready after
========== =========================================================== ==================
change     this value minus the previous one                           1 metric
deviation  this value minus the mean of the previous ``window`` values ``window`` metrics
spread     standard deviation of the last ``window`` values (this one  ``window`` metrics
           included)
ratio      ``field / of`` (0 when ``of`` is 0)                         at once
residual   how far ``field`` is from the straight line through         ``fit`` metrics
           (``of``, ``field``) fitted by least squares on the series'
           first ``fit`` metrics, then frozen, in standard deviations
           of the fit's own residuals (so one scale suits every pair);
           with a ``window``, the mean of the last ``window`` of them
repeats    how many metrics in a row ``field`` has kept exactly the    1 metric
           same value (0 when it just changed): a frozen sensor
========== =========================================================== ==================

Until every derived feature of a series is ready, its metrics are in warm-up. The state (recent
values, the fitted line) lives with the series and is saved with it, so a resumed run computes
exactly what an uninterrupted one would.

Any finite field value is accepted, up to the float limit: where the plain arithmetic would
overflow (a sum, a square), it is redone on values scaled down by the largest one, and a result
beyond the float range is brought back to ``+-FINITE_BOUND`` (NaN to 0), as the default features
of :mod:`.context` do. So a derived value, and the state saved with it, is always finite.

>>> spread = DerivedFeature("t_spread", "spread", "t", window=3)
>>> repeats = DerivedFeature("t_repeats", "repeats", "t")
>>> state = DerivedState((spread, repeats), ("t",))
>>> [state.update([value]) for value in (1.0, 1.0, 1.0, 4.0)]
[None, None, [0.0, 2.0], [1.4142135623730951, 0.0]]
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FINITE_BOUND", "KINDS", "DerivedFeature", "DerivedState", "finite"]

KINDS = ("change", "deviation", "spread", "ratio", "residual", "repeats")

FINITE_BOUND = sys.float_info.max / 4
"""Where an overflowed feature or statistic is put back: far out, yet with room for the
arithmetic that follows (a difference of two of them) not to overflow again."""


@dataclass(frozen=True)
class DerivedFeature:
    """One derived feature: ``name`` computed by ``kind`` from ``field`` (and ``of``)."""

    name: str
    kind: str
    field: str
    of: str = ""
    window: int = 0
    """Past values for ``deviation`` and ``spread``; for ``residual``, residuals averaged."""
    fit: int = 0
    """Metrics the ``residual`` line is fitted on."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "field": self.field,
            "of": self.of,
            "window": self.window,
            "fit": self.fit,
        }


class DerivedState:
    """One series' running state for its derived features."""

    def __init__(self, specs: Sequence[DerivedFeature], raw: Sequence[str]) -> None:
        self.specs = tuple(specs)
        position = {name: index for index, name in enumerate(raw)}
        self._field = [position[spec.field] for spec in self.specs]
        self._of = [position[spec.of] if spec.of else -1 for spec in self.specs]
        self.previous: list[float | None] = [None] * len(self.specs)
        self.history: list[deque[float]] = [
            deque(maxlen=max(1, spec.window + (spec.kind == "deviation"))) for spec in self.specs
        ]
        self.fit_points: list[list[tuple[float, float]]] = [[] for _ in self.specs]
        self.lines: list[tuple[float, float, float] | None] = [None] * len(self.specs)
        self._steady: list[Callable[[Sequence[float]], float]] | None = None  # once all ready

    def update(self, row: Sequence[float]) -> list[float] | None:
        """The derived values for one metric's raw ``row``; None while any is not ready.
        Every metric must pass through here, in order: the state moves with each."""
        steady = self._steady
        if steady is not None:
            return [step(row) for step in steady]
        values: list[float] = []
        ready = True
        for index, spec in enumerate(self.specs):
            value = row[self._field[index]]
            other = row[self._of[index]] if self._of[index] >= 0 else 0.0
            derived = self._one(index, spec, value, other)
            if derived is None:
                ready = False
            else:
                values.append(finite(derived))
        if ready:
            # Every feature has its history or its line now, and keeps it: from here on each
            # is one small function (the same arithmetic, without asking what it is each time).
            self._steady = [self._step(index) for index in range(len(self.specs))]
        return values if ready else None

    def _step(self, index: int) -> Callable[[Sequence[float]], float]:
        """Feature ``index``'s computation once it is ready, as :meth:`_one` and
        :func:`finite` do it (``tests/test_derived.py`` holds the two to the same bits)."""
        spec = self.specs[index]
        at, of = self._field[index], self._of[index]
        previous, history = self.previous, self.history[index]
        kind = spec.kind
        if kind == "residual":
            line = self.lines[index]
            assert line is not None  # ready: fitted
            slope, intercept, deviation = line
            window = spec.window

            def residual(row: Sequence[float]) -> float:
                value = (row[at] - (slope * row[of] + intercept)) / deviation
                if value - value != 0:
                    value = finite(value)
                if window <= 1:
                    return value
                history.append(value)
                return _mean(history)  # finite already: it sums finite values

            return residual
        if kind == "repeats":

            def repeats(row: Sequence[float]) -> float:
                value = row[at]
                run = history[0] + 1 if value == previous[index] else 0.0
                previous[index] = value
                history[0] = run
                return finite(run)

            return repeats
        one = self._one

        def other_kind(row: Sequence[float]) -> float:
            derived = one(index, spec, row[at], row[of] if of >= 0 else 0.0)
            assert derived is not None  # ready, and a feature that is ready stays so
            return finite(derived)

        return other_kind

    def _one(self, index: int, spec: DerivedFeature, value: float, other: float) -> float | None:
        kind = spec.kind
        if kind == "change":
            previous, self.previous[index] = self.previous[index], value
            return None if previous is None else value - previous
        if kind == "repeats":
            previous, self.previous[index] = self.previous[index], value
            history = self.history[index]  # holds the run length as its only value
            run = history[0] + 1 if history and value == previous else 0.0
            history.clear()
            history.append(run)
            return None if previous is None else run
        if kind == "ratio":
            return value / other if other else 0.0
        if kind == "residual":
            line = self.lines[index]
            if line is None:
                points = self.fit_points[index]
                points.append((other, value))
                if len(points) < spec.fit:
                    return None
                line = self.lines[index] = _fit_line(points)
                points.clear()
            slope, intercept, deviation = line
            # Kept finite before it joins the window, so the window's mean is finite too.
            residual = finite((value - (slope * other + intercept)) / deviation)
            if spec.window <= 1:
                return residual
            recent = self.history[index]
            recent.append(residual)
            return _mean(recent)
        history = self.history[index]
        history.append(value)
        if kind == "deviation":
            if len(history) <= spec.window:
                return None
            past = list(history)[:-1]
            return value - _mean(past)
        # spread
        if len(history) < spec.window:
            return None
        return _deviation(list(history))

    def export(self) -> dict[str, Any]:
        """Plain data for a snapshot."""
        return {
            "specs": [spec.describe() for spec in self.specs],
            "previous": self.previous,
            "history": [list(history) for history in self.history],
            "fit_points": [[list(point) for point in points] for points in self.fit_points],
            "lines": [None if line is None else list(line) for line in self.lines],
        }

    def restore(self, saved: dict[str, Any]) -> None:
        """Load what :meth:`export` wrote (for the same specs)."""
        self._steady = None  # the next metric finds out again whether every feature is ready
        self.previous = [None if v is None else float(v) for v in saved["previous"]]
        for history, values in zip(self.history, saved["history"], strict=True):
            history.clear()
            history.extend(float(v) for v in values)
        self.fit_points = [
            [(float(x), float(y)) for x, y in points] for points in saved["fit_points"]
        ]
        self.lines = [
            None if line is None else (float(line[0]), float(line[1]), float(line[2]))
            for line in saved["lines"]
        ]


def finite(value: float) -> float:
    """``value`` brought back within ``+-FINITE_BOUND`` when it overflowed (NaN: 0).

    >>> finite(float("inf")), finite(float("nan")), finite(2.5)
    (4.4942328371557893e+307, 0.0, 2.5)
    """
    if value - value == 0:  # finite: the usual case, left exactly as it is
        return value
    if value != value:
        return 0.0
    return math.copysign(FINITE_BOUND, value)


def _mean(values: Sequence[float]) -> float:
    """The mean, exact as ``fsum / n`` for ordinary values and without overflow near the
    float limit: the shares are halved too, since rounding can take n shares of the largest
    float just past it."""
    count = len(values)
    try:
        return math.fsum(values) / count
    except OverflowError:
        return finite(2 * math.fsum(value / (2 * count) for value in values))


def _deviation(values: Sequence[float]) -> float:
    """The population standard deviation; near the float limit, computed on the values
    scaled down by the largest one (the result may still overflow: :func:`finite`)."""
    try:
        return _plain_deviation(values)
    except OverflowError:
        largest = max(abs(value) for value in values)
        return _plain_deviation([value / largest for value in values]) * largest


def _plain_deviation(values: Sequence[float]) -> float:
    mean = _mean(values)
    return math.sqrt(math.fsum((x - mean) ** 2 for x in values) / len(values))


def _fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """Least-squares slope, intercept and residual standard deviation (a flat line through
    the mean when x never varied; a tiny deviation floor when the fit was exact).

    Near the float limit the line is fitted on the points scaled down by their largest
    coordinates and scaled back, and whatever still overflows is kept finite, so a series
    whose first metrics held a huge value gets a usable (if poor) line, never an error."""
    try:
        line = _plain_fit_line(points)
    except (OverflowError, ValueError):  # ValueError: fsum met inf - inf
        pass
    else:
        if all(part - part == 0 for part in line):
            return line
    scale_x = max(abs(x) for x, _ in points) or 1.0
    scale_y = max(abs(y) for _, y in points) or 1.0
    slope, intercept, deviation = _plain_fit_line([(x / scale_x, y / scale_y) for x, y in points])
    deviation = finite(deviation * scale_y)
    return (
        finite(slope * (scale_y / scale_x)),
        finite(intercept * scale_y),
        max(deviation, 1e-9 * max(1.0, scale_y)),
    )


def _plain_fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    count = len(points)
    mean_x = math.fsum(x for x, _ in points) / count
    mean_y = math.fsum(y for _, y in points) / count
    spread_x = math.fsum((x - mean_x) ** 2 for x, _ in points)
    slope = 0.0
    if spread_x > 0:
        slope = math.fsum((x - mean_x) * (y - mean_y) for x, y in points) / spread_x
    intercept = mean_y - slope * mean_x
    squares = math.fsum((y - slope * x - intercept) ** 2 for x, y in points)
    deviation = math.sqrt(squares / max(1, count - 2))
    return slope, intercept, max(deviation, 1e-9 * max(1.0, abs(mean_y)))

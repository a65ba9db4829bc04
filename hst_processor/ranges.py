"""Each field against its own long-run range: the view the trees' recent window misses.

The trees compare a metric with the series' last window (250 metrics) through features that
follow the recent level, so a field that leaves the range it kept for a long time, for a
minute or two, can look ordinary to them once the recent level has moved, and one such field
among many is seen by few trees. This stage looks at every field on its own, against a
reference that does not move: the median and interquartile range of the series' first
``reference`` metrics (every ``SAMPLE_EVERY``-th of them kept, so the reference spans a long
stretch at a small cost). Per metric, each field's distance from its median in interquartile
ranges; the largest, on a log scale, is calibrated by its own :class:`~.rarity.Rarity`, as the
trees' score is, so its score means the same "rarer than 1 in N of this series' recent
metrics".

The detector reports the rarer of the two views as ``anomaly_score``, and a metric whose
range score reaches the threshold and is rarer than normal operation reaches once in
``alerts.alone_days`` days (:func:`alone_share`, at the series' own cadence) opens an alert by
itself: a field far out of its long-run range is worth one metric's alert, where the trees'
view needs a few in a row.

>>> ranges = FieldRanges(reference=16)
>>> state = ranges.new_state()
>>> [ranges.observe(state, [float(i), 10.0]) for i in range(16)][-1]  # the reference gathers
(None, 0)
>>> state.median, state.low, state.high  # from metrics 0, 4, 8 and 12
([6.0, 10.0], [3.0, 10.0], [9.0, 10.0])
>>> ranges.distance(state, [30.0, 10.0])  # four interquartile ranges above the median
(0, 4.0)
>>> ranges.distance(state, [6.0, 10.5])  # a field flat so far: its unit is 0.1 % of its level
(1, 50.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hst_processor.config import RANGE_SAMPLE_EVERY
from hst_processor.context import finite_percentiles
from hst_processor.rarity import Rarity, RarityState

__all__ = ["SAMPLE_EVERY", "FieldRanges", "RangeState", "alone_share"]

SAMPLE_EVERY = RANGE_SAMPLE_EVERY
"""One metric in this many of the reference stretch is kept to fit the ranges from."""
_UPPER = 25.0  # log of the largest distance the calibration tells apart (about 7e10 units)
_FLOOR_FRACTION = 1e-3  # a field flat in the reference: its unit is this share of its level
_FLOOR_ABSOLUTE = 1e-9


@dataclass
class RangeState:
    """One series' ranges: the reference rows gathered, then each field's median and
    quartiles, and the calibration of the largest distance."""

    seen: int = 0  # metrics seen while the reference gathers
    sample: list[list[float]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # the sampled metrics' times, seconds
    median: list[float] | None = None
    low: list[float] | None = None  # the 25th percentile
    high: list[float] | None = None  # the 75th percentile
    unit: list[float] | None = None  # the interquartile range, floored
    interval: float = 0.0  # the series' usual seconds between metrics, from the reference
    rarity: RarityState = field(default_factory=RarityState)

    def export(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "sample": self.sample,
            "times": self.times,
            "median": self.median,
            "low": self.low,
            "high": self.high,
            "unit": self.unit,
            "interval": self.interval,
            "rarity": self.rarity.export(),
        }

    @classmethod
    def restore(cls, saved: dict[str, Any]) -> RangeState:
        def floats(values: list[Any] | None) -> list[float] | None:
            return None if values is None else [float(v) for v in values]

        return cls(
            int(saved["seen"]),
            [[float(v) for v in row] for row in saved["sample"]],
            [float(v) for v in saved["times"]],
            floats(saved["median"]),
            floats(saved["low"]),
            floats(saved["high"]),
            floats(saved["unit"]),
            float(saved["interval"]),
            RarityState.restore(saved["rarity"]),
        )


class FieldRanges:
    """The stage: ``reference`` metrics fix each field's range, then every metric is scored
    by its farthest field (see the module's text)."""

    def __init__(self, reference: int) -> None:
        self.reference = max(SAMPLE_EVERY, reference)
        self.rarity = Rarity(upper=_UPPER)
        # Farther than the calibration tells apart: at the start of its last bin, so that a
        # lasting level out there is counted as often as it is seen (a value beyond ``upper``
        # would have a share of 0 however often it came, and stay rare for ever).
        self._ceiling = _UPPER - self.rarity.width * (1.0 - 1e-6)

    def new_state(self) -> RangeState:
        return RangeState()

    def observe(
        self, state: RangeState, row: Sequence[float], when: float = 0.0
    ) -> tuple[float | None, int]:
        """``(score, field)`` for one metric's values at ``when`` (seconds): the range score
        (None while the reference gathers and while the calibration gathers its first
        scores) and the position of the field farthest from its range; the metric is then
        learned."""
        if state.unit is None:
            if state.seen % SAMPLE_EVERY == 0:
                state.sample.append(list(row))
                state.times.append(when)
            state.seen += 1
            if state.seen >= self.reference:
                _fit(state)
            return None, 0
        farthest, distance = self.distance(state, row)
        statistic = min(math.log(distance), self._ceiling) if distance > 0.0 else -math.inf
        return self.rarity.observe(state.rarity, statistic), farthest

    @staticmethod
    def distance(state: RangeState, row: Sequence[float]) -> tuple[int, float]:
        """The field farthest from its median, and how far, in interquartile ranges (a value
        that is not a number counts as no distance; an infinite one as the farthest)."""
        assert state.median is not None and state.unit is not None
        farthest, largest = 0, 0.0
        for position, (value, median, unit) in enumerate(
            zip(row, state.median, state.unit, strict=True)
        ):
            distance = abs(value - median) / unit
            if distance > largest:  # NaN is never larger
                farthest, largest = position, distance
        return farthest, largest


def alone_share(state: RangeState, days: float) -> float:
    """The share of metrics that normal operation reaches once in ``days`` at the series'
    own cadence: a range score rarer than this is worth an alert by itself (0: never)."""
    if days <= 0 or not state.interval > 0:
        return 0.0
    return min(1.0, state.interval / (86_400.0 * days))


def _fit(state: RangeState) -> None:
    """Each field's median and quartiles from the gathered rows (finite values only), and
    the usual interval between metrics (the median gap between sampled ones, per metric: a
    pause in the stream does not move it)."""
    gaps = np.diff(np.array(state.times, dtype=np.float64))
    interval = float(np.median(gaps)) / SAMPLE_EVERY if len(gaps) else 0.0
    state.interval = interval if math.isfinite(interval) and interval > 0 else 0.0
    state.times = []
    rows = np.array(state.sample, dtype=np.float64)
    low, median, high = finite_percentiles(rows, (25.0, 50.0, 75.0))
    with np.errstate(all="ignore"):
        floor = np.maximum(np.abs(median) * _FLOOR_FRACTION, _FLOOR_ABSOLUTE)
        unit = np.maximum(high - low, floor)
        unit = np.where(np.isfinite(unit), unit, np.finfo(np.float64).max)
    state.median, state.low, state.high = median.tolist(), low.tolist(), high.tolist()
    state.unit = unit.tolist()
    state.sample = []

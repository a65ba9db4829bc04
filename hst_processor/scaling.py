"""Mapping raw field values into the forest's unit box.

HST draws its splits inside each feature's limits, so features must share a scale. Each series
maps its raw values with its own ``(low, high)`` per feature: fixed limits from the config, or
the range its warm-up window covered, widened by a margin and then frozen (a learned range that
kept moving would move the trees' splits under the masses they hold). :class:`Scaling` is one
series' slice of this stage: its limits, or the warm-up rows gathered to learn them.

>>> low, high = learned_limits(np.array([[10.0, 5.0], [20.0, 5.0]]), margin=0.1)
>>> low.tolist(), high.tolist()
([9.0, 4.75], [21.0, 5.25])
>>> scale(np.array([[15.0, 5.0]]), low, high).tolist()
[[0.5, 0.5]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Re-exported: context.py still imports it from here.
from hst_processor.arrays import FloatArray as FloatArray

__all__ = ["Scaling", "fixed_limits", "learned_limits", "scale", "scale_rows"]

# A feature that did not move during warm-up still needs a range: this fraction of its level
# (or an absolute floor at level 0) on either side.
_FLAT_RANGE_FRACTION = 0.05
_FLAT_RANGE_FLOOR = 1e-6


def fixed_limits(
    features: Sequence[str], limits: Mapping[str, tuple[float, float]]
) -> tuple[FloatArray, FloatArray]:
    low = np.array([limits[name][0] for name in features], dtype=np.float64)
    high = np.array([limits[name][1] for name in features], dtype=np.float64)
    return low, high


def learned_limits(
    warmup: FloatArray,
    margin: float,
    features: Sequence[str] = (),
    fixed: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Limits covering the warm-up rows, widened by ``margin`` of their range on each side;
    a feature named in ``fixed`` keeps the limits given there instead."""
    seen_low = np.nanmin(warmup, axis=0)
    seen_high = np.nanmax(warmup, axis=0)
    # Halves first, so that values near the float limit cannot overflow.
    middle = seen_low / 2 + seen_high / 2
    flat = np.maximum(np.abs(middle) * _FLAT_RANGE_FRACTION, _FLAT_RANGE_FLOOR)
    with np.errstate(over="ignore", invalid="ignore"):
        half_width = np.maximum((seen_high / 2 - seen_low / 2) * (1 + 2 * margin), flat)
        low, high = middle - half_width, middle + half_width
    biggest = np.finfo(np.float64).max
    low, high = np.nan_to_num(low, neginf=-biggest), np.nan_to_num(high, posinf=biggest)
    for position, name in enumerate(features):
        if fixed and name in fixed:
            low[position], high[position] = fixed[name]
    return low, high


def scale(rows: FloatArray, low: FloatArray, high: FloatArray) -> FloatArray:
    """Map rows into the unit box; values beyond the limits land beyond [0, 1], which the
    trees treat as the outermost cells."""
    # Halves, so that limits spanning more than the float range cannot overflow; halving is
    # exact, so ordinary values scale to exactly (rows - low) / (high - low). A value near the
    # float limit may still become inf, which the trees place in the outermost cell.
    with np.errstate(over="ignore", invalid="ignore"):
        result: FloatArray = (rows / 2 - low / 2) / (high / 2 - low / 2)
    return result


def scale_rows(scalings: Sequence[Scaling], rows: Sequence[Sequence[float]]) -> FloatArray:
    """Scale each row with the limits of its own series (``scalings[i]`` for ``rows[i]``)."""
    position: dict[int, int] = {}
    lows: list[FloatArray] = []
    highs: list[FloatArray] = []
    which = np.empty(len(scalings), dtype=np.intp)
    for i, scaling in enumerate(scalings):
        at = position.get(id(scaling))
        if at is None:
            at = position[id(scaling)] = len(lows)
            assert scaling.low is not None and scaling.high is not None
            lows.append(scaling.low)
            highs.append(scaling.high)
        which[i] = at
    low, high = np.array(lows)[which], np.array(highs)[which]
    return scale(np.array(rows, dtype=np.float64), low, high)


@dataclass
class Scaling:
    """One series' scaling: fixed limits from the start, or limits learned from its first
    window of rows, gathered here until the window is full.

    >>> scaling = Scaling()
    >>> scaling.gather([10.0], 2) is None, scaling.ready
    (True, False)
    >>> window = scaling.gather([20.0], 2)
    >>> scaling.freeze(window, *learned_limits(window, margin=0.0)).tolist(), scaling.ready
    ([[0.0], [1.0]], True)
    >>> scale_rows([scaling], [[15.0]]).tolist()
    [[0.5]]
    """

    low: FloatArray | None = None
    high: FloatArray | None = None
    warmup_rows: list[list[float]] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """Whether the limits are set (rows can be scaled)."""
        return self.low is not None

    def gather(self, row: list[float], window: int) -> FloatArray | None:
        """Keep one warm-up row; once ``window`` are kept, all of them, to learn the limits
        from (then :meth:`freeze`); until then ``None``."""
        self.warmup_rows.append(row)
        if len(self.warmup_rows) < window:
            return None
        return np.array(self.warmup_rows, dtype=np.float64)

    def freeze(self, warmup: FloatArray, low: FloatArray, high: FloatArray) -> FloatArray:
        """Set the limits learned from the ``warmup`` rows; those rows scaled, for the model
        to learn."""
        self.low, self.high = low, high
        self.warmup_rows = []
        return scale(warmup, low, high)

    def export(self) -> dict[str, Any]:
        """Plain data for the snapshot's series entry."""
        return {
            "low": None if self.low is None else self.low.tolist(),
            "high": None if self.high is None else self.high.tolist(),
            "warmup_rows": self.warmup_rows,
        }

    @classmethod
    def restore(cls, saved: Mapping[str, Any]) -> Scaling:
        """The scaling :meth:`export` wrote (the snapshot's check has vetted its shape)."""
        low, high = saved["low"], saved["high"]
        return cls(
            None if low is None else np.array(low, dtype=np.float64),
            None if high is None else np.array(high, dtype=np.float64),
            [list(row) for row in saved["warmup_rows"]],
        )

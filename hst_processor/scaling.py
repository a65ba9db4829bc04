"""Mapping raw field values into the forest's unit box.

HST draws its splits inside each feature's limits, so features must share a scale. Each series
maps its raw values with its own ``(low, high)`` per feature: fixed limits from the config, or
the range its warm-up window covered, widened by a margin and then frozen (a learned range that
kept moving would move the trees' splits under the masses they hold).

>>> low, high = learned_limits(np.array([[10.0, 5.0], [20.0, 5.0]]), margin=0.1)
>>> low.tolist(), high.tolist()
([9.0, 4.75], [21.0, 5.25])
>>> scale(np.array([[15.0, 5.0]]), low, high).tolist()
[[0.5, 0.5]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# Re-exported: context.py still imports it from here.
from hst_processor.arrays import FloatArray as FloatArray

__all__ = ["fixed_limits", "learned_limits", "scale"]

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


def learned_limits(warmup: FloatArray, margin: float) -> tuple[FloatArray, FloatArray]:
    """Limits covering the warm-up rows, widened by ``margin`` of their range on each side."""
    seen_low = np.nanmin(warmup, axis=0)
    seen_high = np.nanmax(warmup, axis=0)
    # Halves first, so that values near the float limit cannot overflow.
    middle = seen_low / 2 + seen_high / 2
    flat = np.maximum(np.abs(middle) * _FLAT_RANGE_FRACTION, _FLAT_RANGE_FLOOR)
    with np.errstate(over="ignore", invalid="ignore"):
        half_width = np.maximum((seen_high / 2 - seen_low / 2) * (1 + 2 * margin), flat)
        low, high = middle - half_width, middle + half_width
    biggest = np.finfo(np.float64).max
    return np.nan_to_num(low, neginf=-biggest), np.nan_to_num(high, posinf=biggest)


def scale(rows: FloatArray, low: FloatArray, high: FloatArray) -> FloatArray:
    """Map rows into the unit box; values beyond the limits land beyond [0, 1], which the
    trees treat as the outermost cells."""
    # Halves, so that limits spanning more than the float range cannot overflow; halving is
    # exact, so ordinary values scale to exactly (rows - low) / (high - low). A value near the
    # float limit may still become inf, which the trees place in the outermost cell.
    with np.errstate(over="ignore", invalid="ignore"):
        result: FloatArray = (rows / 2 - low / 2) / (high / 2 - low / 2)
    return result

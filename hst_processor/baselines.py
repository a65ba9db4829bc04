"""The simple detectors people would use instead, for an honest comparison.

Each takes one series' feature values (rows in time order) and flags metrics: ``True``
anomalous, ``False`` normal, ``None`` not judged yet (its own warm-up). The evaluator turns the
flags into alerts with the same alert policy as the HST detector, so every detector is judged
by the same rules.

>>> import numpy as np
>>> values = np.array([[10.0]] * 100 + [[30.0]])
>>> static_threshold(values, warmup=50)[-1], robust_zscore(values, window=20)[-1]
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from hst_processor.forest import FloatArray

BoolArray = np.ndarray[Any, np.dtype[np.bool_]]

__all__ = ["BASELINES", "Flags", "robust_zscore", "seed_detector", "static_threshold"]

Flags = list[bool | None]


def static_threshold(values: FloatArray, warmup: int = 250, margin: float = 0.1) -> Flags:
    """A fixed band per field, as someone would set it from a first look at normal data: the
    range of the first ``warmup`` metrics, widened by ``margin`` of itself on each side."""
    if len(values) <= warmup:
        return [None] * len(values)
    reference = values[:warmup]
    low, high = reference.min(axis=0), reference.max(axis=0)
    room = (high - low) * margin
    outside: list[bool] = ((values < low - room) | (values > high + room)).any(axis=1).tolist()
    flags: Flags = [None] * warmup
    return flags + outside[warmup:]


def robust_zscore(values: FloatArray, window: int = 60, limit: float = 3.5) -> Flags:
    """Rolling median and MAD per field over the previous ``window`` metrics (InfluxDB 3's MAD
    check plugin does the same); flagged when any field's robust z-score exceeds ``limit``."""
    if len(values) <= window:
        return [None] * len(values)
    history = sliding_window_view(values[:-1], window, axis=0)  # (n - window, fields, window)
    median = np.median(history, axis=2)
    mad = np.median(np.abs(history - median[:, :, None]), axis=2)
    current = values[window:]
    deviation = np.abs(current - median)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(mad > 0, 0.6745 * deviation / mad, np.where(deviation > 0, np.inf, 0.0))
    above = cast(BoolArray, np.asarray(z > limit).any(axis=1))
    flags_after = [bool(flag) for flag in above]
    flags: Flags = [None] * window
    return flags + flags_after


def seed_detector(values: FloatArray, features: tuple[str, ...]) -> Flags:
    """The seed demo's detector: river ``HalfSpaceTrees(n_trees=5, height=2, window_size=250,
    seed=1)`` on power alone, min-max scaled over the whole series, flagged above 0.8."""
    from river.anomaly import HalfSpaceTrees

    power = values[:, features.index("power")]
    low, high = float(power.min()), float(power.max())
    scaled = (power - low) / (high - low) if high > low else np.zeros_like(power)
    model = HalfSpaceTrees(n_trees=5, height=2, window_size=250, seed=1)
    flags: Flags = []
    for value in scaled.tolist():
        point = {"power": value}
        flags.append(model.score_one(point) > 0.8)  # type: ignore[no-untyped-call]
        model.learn_one(point)  # type: ignore[no-untyped-call]
    return flags


BASELINES: dict[str, Callable[[FloatArray, tuple[str, ...]], Flags]] = {
    "static threshold": lambda values, features: static_threshold(values),
    "robust z-score": lambda values, features: robust_zscore(values),
    "seed (river HST on power)": seed_detector,
}
"""Every baseline by the name the evaluation table shows."""

"""The detectors people would use instead, for an honest comparison.

Each takes one series' field values (rows in time order, every numeric field of the series) and
the number of metrics it may treat as training (``warmup``), and flags metrics: ``True``
anomalous, ``False`` normal, ``None`` not judged yet. The evaluator turns the flags into alerts
with the same alert policy as the HST detector, so every detector is judged by the same rules.
A baseline whose library is not installed raises ``ImportError`` and is left out with a message.

>>> import numpy as np
>>> values = np.array([[10.0]] * 100 + [[30.0]])
>>> static_threshold(values, warmup=50)[-1], robust_zscore(values, window=20)[-1]
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from hst_processor.arrays import BoolArray, FloatArray

__all__ = [
    "BASELINES",
    "Flags",
    "isolation_forest",
    "river_hst",
    "robust_zscore",
    "static_threshold",
]

Flags = list[bool | None]
RARITY = 0.999  # flag what is rarer than 1 in 1,000: the default threshold's meaning


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
    flags: Flags = [None] * window
    return flags + [bool(flag) for flag in above]


def river_hst(values: FloatArray, warmup: int = 250) -> Flags:
    """river's ``HalfSpaceTrees`` at its defaults behind its ``MinMaxScaler``, as river's
    documentation composes them, flagged by river's ``QuantileFilter`` at 1 in 1,000 (which
    also keeps flagged metrics out of the model). Nothing is flagged in the first window."""
    from river import anomaly, compose, preprocessing

    del warmup  # river learns from the first metric; its first window scores nothing
    names = [f"f{index}" for index in range(values.shape[1])]
    model = compose.Pipeline(
        preprocessing.MinMaxScaler(),
        anomaly.QuantileFilter(anomaly.HalfSpaceTrees(seed=42), q=RARITY),
    )
    flags: Flags = []
    for index, row in enumerate(values.tolist()):
        point = dict(zip(names, row, strict=True))
        score = model.score_one(point)
        flags.append(None if index < 250 else bool(model[-1].classify(score)))
        model.learn_one(point)
    return flags


def isolation_forest(values: FloatArray, warmup: int = 250) -> Flags:
    """scikit-learn's ``IsolationForest`` (its defaults, a fixed seed) fitted on each series'
    first ``warmup`` metrics; flagged when a metric is more isolated than all but 1 in 1,000
    of those (needs scikit-learn: ``pip install 'hst-processor[baselines]'``)."""
    from sklearn.ensemble import IsolationForest

    if len(values) <= warmup:
        return [None] * len(values)
    finite = np.nan_to_num(values, nan=0.0, posinf=np.finfo(np.float64).max / 4)
    forest = IsolationForest(random_state=0).fit(finite[:warmup])
    training = -forest.score_samples(finite[:warmup])
    limit = float(np.quantile(training, RARITY))
    later = (-forest.score_samples(finite[warmup:]) > limit).tolist()
    flags: Flags = [None] * warmup
    return flags + [bool(flag) for flag in later]


EXTRAS = {
    "river HST (defaults)": ("river", "river"),
    "IsolationForest": ("scikit-learn", "baselines"),
}
"""The baselines that need an optional package: the package, and the extra that brings it."""

BASELINES: dict[str, Callable[[FloatArray, int], Flags]] = {
    "static threshold": static_threshold,
    "robust z-score": lambda values, warmup: robust_zscore(values),
    "river HST (defaults)": river_hst,
    "IsolationForest": isolation_forest,
}
"""Every baseline by the name the evaluation table shows."""

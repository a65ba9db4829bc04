"""Per-series models and the decision for each metric: warm-up, score, anomalous or not.

The detector is pure bookkeeping over parsed metrics: no I/O, no formatting. For a batch of
metrics it returns one :class:`Verdict` (or ``None``: pass through untouched) per metric, in
order. Each series (measurement plus its ``group_by`` tag values) owns its feature list, its
last known values, its scaling limits, its masses and its run of anomalous metrics; the tree
structure is shared by every series with the same features.

A lasting fault must stay flagged, yet HST learns whatever it sees. So a metric at or above the
threshold is not learned (unless ``learn_anomalies``), which keeps the reference window on
normal data; after ``relearn_after`` anomalous metrics in a row the series accepts the new level
and learns again, the way out for a genuine change of operating point.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from hst_processor.calibration import calibrated_score
from hst_processor.config import Config
from hst_processor.engine import Engine, make_engine
from hst_processor.forest import FloatArray
from hst_processor.lineproto import Metric
from hst_processor.log import Log
from hst_processor.scaling import fixed_limits, learned_limits, scale

__all__ = ["Counters", "Detector", "SeriesKey", "Verdict"]

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


class Verdict(NamedTuple):
    """What the processor adds to one metric."""

    tag_value: str  # the warm-up value, "true" or "false"
    score: float | None = None  # calibrated, in [0, 1]; None during warm-up
    raw_score: float | None = None  # river's score


@dataclass
class Counters:
    scored: int = 0
    anomalous: int = 0
    warmup: int = 0
    not_scored: int = 0  # a configured feature never seen yet
    already_scored: int = 0
    non_numeric: int = 0
    evicted: int = 0


@dataclass
class Series:
    key: SeriesKey
    features: tuple[str, ...]
    masses: Any
    last_values: list[float | None]
    low: FloatArray | None = None
    high: FloatArray | None = None
    warmup_rows: list[list[float]] = field(default_factory=list)
    anomalous_run: int = 0
    typical: tuple[int, float] | None = None  # (windows completed, typical total)


class Detector:
    def __init__(self, config: Config, log: Log) -> None:
        self.config = config
        self.log = log
        self.counters = Counters()
        self.series: OrderedDict[SeriesKey, Series] = OrderedDict()
        self._engines: dict[tuple[str, ...], Engine] = {}
        self._scored_measurements = frozenset(config.measurements)
        self._own_fields = {config.output.score_field, config.output.raw_score_field} - {""}
        self._warmup = Verdict(config.output.warmup_value)
        if config.model.engine == "river":
            importlib.import_module("river.anomaly")  # fail at start, not at the first metric

    def engine(self, features: tuple[str, ...]) -> Engine:
        engine = self._engines.get(features)
        if engine is None:
            model = self.config.model
            engine = make_engine(
                model.engine, features, model.n_trees, model.height, model.window_size, model.seed
            )
            self._engines[features] = engine
        return engine

    def process(self, metrics: Sequence[Metric | None]) -> list[Verdict | None]:
        """One verdict per metric (``None``: leave it as it is), in order."""
        verdicts: list[Verdict | None] = [None] * len(metrics)
        batches: dict[SeriesKey, tuple[Series, list[int], list[list[float]]]] = {}
        for index, metric in enumerate(metrics):
            if metric is None or not self._is_scored(metric):
                continue
            series = self._series_for(metric)
            if series is None:
                self.counters.not_scored += 1
                continue
            row = self._row(series, metric)
            if row is None:
                self.counters.not_scored += 1
                continue
            entry = batches.setdefault(series.key, (series, [], []))
            entry[1].append(index)
            entry[2].append(row)
        for series, indices, rows in batches.values():
            for index, verdict in zip(indices, self._score(series, rows), strict=True):
                verdicts[index] = verdict
        return verdicts

    # -- routing -----------------------------------------------------------------------------

    def _is_scored(self, metric: Metric) -> bool:
        if self._scored_measurements and metric.measurement not in self._scored_measurements:
            return False
        output = self.config.output
        if output.tag in metric.tags or output.score_field in metric.fields:
            # Telegraf runs processors twice when aggregators are configured: a metric we
            # already tagged (in warm-up it has the tag but no score) must not be learned twice.
            self.counters.already_scored += 1
            return False
        return True

    def _series_for(self, metric: Metric) -> Series | None:
        group_by = self.config.group_by
        if group_by is None:
            own_tag = self.config.output.tag
            tags = tuple(sorted((k, v) for k, v in metric.tags.items() if k != own_tag))
        else:
            tags = tuple((name, metric.tags.get(name, "")) for name in group_by)
        key: SeriesKey = (metric.measurement, tags)
        series = self.series.get(key)
        if series is not None:
            self.series.move_to_end(key)
            return series
        features = self.config.features or tuple(
            name
            for name, value in metric.fields.items()
            if _is_numeric(value) and name not in self._own_fields
        )
        if not features:
            self.log.warn_repeated(
                "no-features", f"{_describe(key)} has no numeric field to score; passed through"
            )
            return None
        features = tuple(sorted(features))
        if len(self.series) >= self.config.max_series:
            evicted, _ = self.series.popitem(last=False)
            self.counters.evicted += 1
            self.log.warn_repeated(
                "evicted",
                f"max_series={self.config.max_series} reached: forgot the least recently seen "
                f"series {_describe(evicted)}",
            )
        series = Series(
            key=key,
            features=features,
            masses=self.engine(features).new_masses(),
            last_values=[None] * len(features),
        )
        if self.config.scaling.mode == "fixed":
            series.low, series.high = fixed_limits(features, self.config.scaling.limits)
        self.series[key] = series
        return series

    def _row(self, series: Series, metric: Metric) -> list[float] | None:
        """The metric's features, missing ones filled with their last known values."""
        values = series.last_values
        for position, name in enumerate(series.features):
            value = metric.fields.get(name)
            if value is None:
                continue
            if _is_numeric(value):
                values[position] = float(value)
            else:
                self.counters.non_numeric += 1
                self.log.warn_repeated(
                    f"non-numeric:{name}",
                    f"field {name!r} of {_describe(series.key)} is not a number "
                    f"({type(value).__name__}); using its last known value",
                )
        if any(value is None for value in values):
            return None
        return list(values)  # type: ignore[arg-type]

    # -- scoring -----------------------------------------------------------------------------

    def _score(self, series: Series, rows: list[list[float]]) -> list[Verdict]:
        engine = self.engine(series.features)
        window = engine.window_size
        verdicts: list[Verdict] = []
        start = 0
        if series.low is None:
            # Learned scaling: collect the first window raw, then fix the limits and learn it.
            take = min(window - len(series.warmup_rows), len(rows))
            series.warmup_rows.extend(rows[:take])
            verdicts.extend([self._warmup] * take)
            start = take
            if len(series.warmup_rows) == window:
                self._freeze_limits(series, engine)
        if start == len(rows):
            self.counters.warmup += len(verdicts)
            return verdicts
        assert series.low is not None and series.high is not None
        scaled = scale(np.array(rows[start:], dtype=np.float64), series.low, series.high)
        position = 0
        while position < len(scaled):
            masses = series.masses
            room = window - masses.counter
            chunk = scaled[position : position + room]
            if masses.first_window:
                engine.learn_many(masses, chunk)
                verdicts.extend([self._warmup] * len(chunk))
                position += len(chunk)
                continue
            consumed, learn = self._judge(series, engine, chunk, room, verdicts)
            engine.learn_many(masses, chunk[:consumed][learn])
            position += consumed
        self.counters.warmup += sum(1 for v in verdicts if v.score is None)
        return verdicts

    def _judge(
        self,
        series: Series,
        engine: Engine,
        chunk: FloatArray,
        room: int,
        verdicts: list[Verdict],
    ) -> tuple[int, np.ndarray]:
        """Score a chunk that fits in the current window; decide which points to learn.

        Stops after the point that fills the window, since the points after it must be
        scored against the next reference window. Returns how many points were consumed and
        which of them to learn.
        """
        detection = self.config.detection
        totals = engine.totals_many(series.masses, chunk).tolist()
        typical = self._typical(series, engine)
        isolated = engine.max_total / (2 ** (self.config.model.height + 1) - 1)
        learn = np.zeros(len(totals), dtype=bool)
        learned = 0
        consumed = 0
        for total in totals:
            score = calibrated_score(total, typical, isolated)
            anomalous = score >= detection.threshold
            series.anomalous_run = series.anomalous_run + 1 if anomalous else 0
            relearning = 0 < detection.relearn_after < series.anomalous_run
            if not anomalous or detection.learn_anomalies or relearning:
                learn[consumed] = True
                learned += 1
            verdicts.append(
                Verdict("true" if anomalous else "false", score, 1 - total / engine.max_total)
            )
            self.counters.scored += 1
            self.counters.anomalous += anomalous
            consumed += 1
            if learned == room:
                break
        return consumed, learn[:consumed]

    def _typical(self, series: Series, engine: Engine) -> float:
        windows = series.masses.windows
        if series.typical is None or series.typical[0] != windows:
            series.typical = (windows, engine.typical_total(series.masses))
        return series.typical[1]

    def _freeze_limits(self, series: Series, engine: Engine) -> None:
        warmup = np.array(series.warmup_rows, dtype=np.float64)
        low, high = learned_limits(warmup, self.config.scaling.margin)
        for position, name in enumerate(series.features):
            if name in self.config.scaling.limits:
                low[position], high[position] = self.config.scaling.limits[name]
        series.low, series.high = low, high
        engine.learn_many(series.masses, scale(warmup, low, high))
        series.warmup_rows = []


def _is_numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(key: SeriesKey) -> str:
    measurement, tags = key
    return measurement + "".join(f",{k}={v}" for k, v in tags)

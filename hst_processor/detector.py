"""Per-series models and the decision for each metric: warm-up, score, anomalous or not.

The detector is pure bookkeeping over parsed metrics: no I/O, no formatting. For a batch of
metrics it returns one :class:`Verdict` (or ``None``: pass through untouched) per metric, in
order. It composes the stages; each series (measurement plus its ``group_by`` tag values,
:class:`~hst_processor.series.Series`) holds every stage's slice of state, and
:class:`~hst_processor.registry.SeriesTable` keeps the live series within their bounds, with
the trees shared by every series of the same features.

Per metric, in order: the fields (:mod:`.fields`, missing ones carried forward); the features
the trees see (:mod:`.features`: the default context features, configured derived features or
the fields); scaling into the box (:mod:`.scaling`); the model's mass total; the score (rarity
among the series' own recent metrics, see :mod:`.rarity`); the episode the tag marks (it opens
at the threshold and ends only after the score stayed below a lower level for a few metrics);
the learn gate; the alert policy.

A lasting fault must stay flagged long enough to be seen, yet a genuine change of normal must
become normal. So a metric at or above the threshold is not learned (unless ``learn_anomalies``),
which keeps the reference window on normal data, but only for ``relearn_after`` anomalous metrics
in a row (one window by default): then the series learns again and the new level becomes normal.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from hst_processor.alert_assembly import assemble_alert
from hst_processor.alerts import AlertEvent, AlertPolicy, FeatureReason
from hst_processor.calibration import Calibration
from hst_processor.config import Config
from hst_processor.context import LIMIT, source_of
from hst_processor.decision import EpisodeRule, LearnGate
from hst_processor.engine import Engine, EngineParts, WindowMasses, require_engine
from hst_processor.explanation import Explanation
from hst_processor.features import FeaturePlan
from hst_processor.fields import LastValues
from hst_processor.forest import FloatArray, Routed
from hst_processor.lineproto import Metric, is_numeric
from hst_processor.log import Log
from hst_processor.ranges import FieldRanges, alone_share
from hst_processor.rarity import Rarity, rarity_of
from hst_processor.registry import SeriesTable
from hst_processor.scaling import Scaling, fixed_limits, learned_limits, scale, scale_rows
from hst_processor.series import (
    Series,
    SeriesKey,
    SeriesKeys,
    describe_series,
    key_bytes,
    series_key_of,
)
from hst_processor.trees import node_count

__all__ = ["Counters", "Detector", "Series", "SeriesKey", "Verdict", "describe_series"]

SLICE_METRICS = 2048
"""Metrics scored together at most: the batch code's cost per slice (arrays gathered from every
series in it) is shared by more metrics. Measured with 1,000 machines and the defaults: 1.09x
against 512."""
SLICE_NEW_SERIES = 512
"""A slice ends early once this many series were new in it: what the series forgotten meanwhile
held, their trees included, is let go only between slices."""


class Ranged(NamedTuple):
    """The range view's verdict on one metric (see :mod:`.ranges`)."""

    score: float | None  # None: the view is not ready (or the series has none)
    field: int = 0  # the position of the field farthest out of its range
    value: float = 0.0  # that field's value
    alone: bool = False  # rare enough to open an alert by itself (``alerts.alone_days``)


_NOT_RANGED = Ranged(None)


class Verdict(NamedTuple):
    """What the processor adds to one metric."""

    tag_value: str  # the warm-up value, "true" or "false"
    score: float | None = None  # calibrated, in [0, 1]; None during warm-up
    raw_score: float | None = None  # river's score
    feature: str | None = None  # an anomalous metric's most blamed field


@dataclass
class Counters:
    scored: int = 0
    anomalous: int = 0
    warmup: int = 0
    not_scored: int = 0  # a field not seen yet; no room for a new series
    no_fields: int = 0  # a metric with none of its series' fields as a number
    already_scored: int = 0
    non_numeric: int = 0
    evicted: int = 0
    key_too_long: int = 0  # metrics whose series key exceeds limits.max_key_bytes
    lost: int = 0  # in a scoring worker that died (``workers``): passed through unscored


@dataclass
class _Batch:
    """The metrics of one batch that share a feature set, in input order."""

    indices: list[int] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    rows: list[list[float]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # seconds, for alerts
    ranged: list[Ranged] = field(default_factory=list)

    def add(
        self, index: int, series: Series, row: list[float], when: float, ranged: Ranged
    ) -> None:
        self.indices.append(index)
        self.series.append(series)
        self.rows.append(row)
        self.times.append(when)
        self.ranged.append(ranged)


class Detector:
    """Verdicts for parsed metrics, each series' stages composed in the order a metric meets
    them (see :mod:`.series` for which stage holds which state)."""

    def __init__(
        self,
        config: Config,
        log: Log,
        notify: Callable[[AlertEvent], None] | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self._notify = notify
        self._policy = (
            AlertPolicy(config.alerts, config.detection.threshold) if notify is not None else None
        )
        self.counters = Counters()
        self.table = SeriesTable(config, log)
        self._created = 0  # series made for new keys, ever (a slice counts its own)
        self.keys = SeriesKeys(config.group_by, config.output.tag, config.limits.max_key_bytes)
        self._scored_measurements = frozenset(config.measurements)
        self._reports = config.self_metrics.measurement
        self._own_fields = {config.output.score_field, config.output.raw_score_field} - {""}
        self._warmup = Verdict(config.output.warmup_value)
        self._features = FeaturePlan(config)
        self._explanation = Explanation(bool(config.output.feature_field), config.feature_sources())
        # The statistic calibrated is log(typical / total); no total is below the isolated one.
        nodes = node_count(config.model.height)  # max_total / isolated_total
        self.rarity = Rarity(upper=math.log(nodes) + 1e-6)
        by_rarity = config.detection.calibration == "rarity"
        self._calibration = Calibration(self.rarity if by_rarity else None)
        self._ranges = FieldRanges(config.detection.range_reference) if config.uses_ranges else None
        self._episodes = EpisodeRule.of(config.detection)
        self._gate = LearnGate.of(config.detection)
        require_engine(config.model.engine)

    @property
    def series(self) -> OrderedDict[SeriesKey, Series]:
        """The live series, least recently seen first."""
        return self.table.series

    def series_count(self) -> int:
        """How many series are live."""
        return len(self.table.series)

    def open_episodes(self) -> int:
        """Live series whose tag says ``true`` now (an episode has begun and not ended)."""
        return sum(series.episode.in_episode for series in self.table.series.values())

    def engine(self, features: tuple[str, ...]) -> Engine[Any]:
        """The engine of one feature set (built on first use)."""
        return self.table.engine(features)

    def process(self, metrics: Sequence[Metric | None]) -> list[Verdict | None]:
        """One verdict per metric (``None``: leave it as it is), in order.

        Scored in slices of at most SLICE_METRICS (the verdicts are the same for any slicing):
        what the series forgotten in a slice held, their trees included, is let go before the
        next, so a read of ever-new series never holds more than SLICE_NEW_SERIES of them."""
        verdicts: list[Verdict | None] = []
        while len(verdicts) < len(metrics):
            start = len(verdicts)
            verdicts += self._process_slice(metrics[start : start + SLICE_METRICS])
        return verdicts

    def _process_slice(self, metrics: Sequence[Metric | None]) -> list[Verdict | None]:
        """The verdicts of the slice's first metrics, up to where SLICE_NEW_SERIES were new."""
        verdicts: list[Verdict | None] = [None] * len(metrics)
        end = len(metrics)
        created = self._created
        # Each scored metric in order, with its series and its feature row (None: the
        # series' rows are computed together after this pass).
        scored: list[tuple[int, Series, list[float] | None, Metric, Ranged]] = []
        waiting: dict[int, tuple[Series, list[list[float]]]] = {}  # by id(series)
        for index, metric in enumerate(metrics):
            if self._created - created >= SLICE_NEW_SERIES:
                end = index  # the rest in the next slice
                break
            if metric is None or not self._is_scored(metric):
                continue
            series = self._series_for(metric)
            if series is None:  # counted by why (no numeric field, a key too long, no room)
                continue
            series.last_seen = metric.timestamp
            row = series.fields.read(metric.fields, series.inputs)
            if series.fields.rejected:
                self._warn_non_numeric(series)
            if row is None:  # none of the fields in this metric, or one not seen yet
                if series.fields.fresh:
                    self.counters.not_scored += 1
                else:
                    self.counters.no_fields += 1
                continue
            ranged = self._range_of(series, row, metric)
            if self._features.batched(series):
                entry = waiting.get(id(series))
                if entry is None:
                    entry = waiting[id(series)] = (series, [])
                entry[1].append(row)
                scored.append((index, series, None, metric, ranged))
                continue
            rows = self._features.rows(series, row)
            if not rows:  # a feature still gathers its history
                verdicts[index] = self._warmup
                self.counters.warmup += 1
                continue
            if len(rows) > 1:  # the gathered metrics, already answered as warm-up
                self._learn_gathered(series, rows[:-1])
            scored.append((index, series, rows[-1], metric, ranged))
        computed = {
            key: iter(rows)
            for key, rows in zip(
                waiting, self._features.rows_of(list(waiting.values())), strict=True
            )
        }
        groups: dict[tuple[str, ...], _Batch] = {}
        for index, series, feature_row, metric, ranged in scored:
            if feature_row is None:
                feature_row = next(computed[id(series)])
            batch = groups.get(series.features)
            if batch is None:
                batch = groups[series.features] = _Batch()
            when = self._seconds(metric) if self._policy else 0.0
            batch.add(index, series, feature_row, when, ranged)
        for features, batch in groups.items():
            self._score(self.table.engine_parts(features), batch, verdicts)
        self.table.settle()
        return verdicts[:end]

    def _range_of(self, series: Series, row: list[float], metric: Metric) -> Ranged:
        """The range view's verdict on a metric's values (every metric of a series that has
        the view comes through here, in order: it gathers its reference, then scores)."""
        state = series.ranges
        if state is None or self._ranges is None:
            return _NOT_RANGED
        # Untimed metrics leave the cadence unknown (0): they never open an alert alone.
        score, farthest = self._ranges.observe(state, row, self._seconds(metric, untimed=0.0))
        if score is None:
            return _NOT_RANGED
        # Rare enough alone: at or above the threshold itself (else a metric the trees flagged
        # would open an alert by itself at slow cadences) and within the alone rule's share.
        alone = score >= self._episodes.threshold and rarity_of(score) <= alone_share(
            state, self.config.alerts.alone_days
        )
        return Ranged(score, farthest, row[farthest], alone)

    # -- routing -----------------------------------------------------------------------------

    def _is_scored(self, metric: Metric) -> bool:
        if self._scored_measurements and metric.measurement not in self._scored_measurements:
            return False
        if metric.measurement == self._reports:
            return False  # a processor's report on itself (a second instance's, or a replay's)
        output = self.config.output
        if output.tag in metric.tags or output.score_field in metric.fields:
            # Telegraf runs processors twice when aggregators are configured: a metric we
            # already tagged (in warm-up it has the tag but no score) must not be learned twice.
            self.counters.already_scored += 1
            return False
        return True

    def series_key(self, metric: Metric) -> SeriesKey:
        """The series a metric belongs to: its measurement and ``group_by`` tag values."""
        return self.keys.key_of(metric)

    def _series_for(self, metric: Metric) -> Series | None:
        key = self.keys.key_of(metric)
        series = self.table.get(key)
        if series is not None:
            return series
        features = self.config.features or tuple(
            name
            for name, value in metric.fields.items()
            if is_numeric(value) and name not in self._own_fields
        )
        if not features:
            self.counters.no_fields += 1
            self.log.warn_repeated(
                "no-features",
                f"{describe_series(key)} has no numeric field to score; passed through",
            )
            return None
        raw = tuple(sorted(features))
        features = self.model_features_for(raw)
        if not self._fits_key(key):
            return None
        footprint = self.table.new_series_bytes(key, len(raw), features)
        if not self._make_room(footprint):
            self.counters.not_scored += 1
            return None
        series = self._new_series(key, features, raw, self.engine(features).new_masses())
        series.footprint = footprint
        self.table.adopt(series)
        self._created += 1
        return series

    def _fits_key(self, key: SeriesKey) -> bool:
        size = key_bytes(key)
        if size <= self.config.limits.max_key_bytes:
            return True
        self.counters.key_too_long += 1
        self.log.warn_repeated(
            "key-too-long",
            f"a series key of {size} bytes is longer than limits.max_key_bytes="
            f"{self.config.limits.max_key_bytes}: not modelled, passed through "
            f"({describe_series(key)[:120]}...)",
        )
        return False

    def _make_room(self, footprint: int) -> bool:
        forgotten = self.table.make_room(footprint)
        if forgotten is None:
            return False
        self.counters.evicted += forgotten
        return True

    def _new_series(
        self,
        key: SeriesKey,
        features: tuple[str, ...],
        inputs: tuple[str, ...],
        masses: WindowMasses,
    ) -> Series:
        """A series as it starts, every stage's state fresh."""
        if inputs == features:
            inputs = features  # the same object: the model needs no reordering
        context, derived = self._features.stages_for(inputs)
        if context is not None:  # context features are squashed into one fixed box
            scaling = Scaling(np.full(len(features), -LIMIT), np.full(len(features), LIMIT))
        elif self.config.scaling.mode == "fixed":
            scaling = Scaling(*fixed_limits(features, self.config.scaling.limits))
        else:
            scaling = Scaling()
        return Series(
            key=key,
            features=features,
            masses=masses,
            fields=LastValues.of(len(inputs)),
            scaling=scaling,
            derived=derived,
            inputs=inputs,
            context=context,
            rarity=self._calibration.new_state(),
            ranges=None if self._ranges is None or context is None else self._ranges.new_state(),
        )

    def restore_series(self, saved: Mapping[str, Any], features: tuple[str, ...]) -> bool:
        """Adopt a series from a snapshot entry (checked, and matching this configuration),
        with room made for it within ``max_series`` and ``limits.memory_mb`` as for a new
        one; False if it can never fit. Each stage restores its own part."""
        key = series_key_of(saved)
        inputs = tuple(saved.get("inputs") or features)
        footprint = self.table.new_series_bytes(key, len(inputs), features)
        if not self._make_room(footprint):
            return False
        parts = self.table.engine_parts(features)
        if parts.persistence is None:
            raise ValueError("state can only be kept with the built-in engine (model.engine: hst)")
        masses = parts.engine.new_masses()
        parts.persistence.import_masses(masses, saved["masses"])
        series = self._new_series(key, features, inputs, masses)
        series.restore(saved)
        series.footprint = footprint
        self.table.adopt(series)
        return True

    def export_series(self, series: Series) -> dict[str, Any]:
        """One series as plain data for a snapshot (see :meth:`Series.export`)."""
        persistence = self.table.engine_parts(series.features).persistence
        if persistence is None:
            raise ValueError("state can only be kept with the built-in engine (model.engine: hst)")
        return series.export(persistence)

    def forget_all(self) -> None:
        """Drop every series (a restore that failed halfway starts fresh)."""
        self.table.forget_all()

    def model_features_for(self, raw: tuple[str, ...]) -> tuple[str, ...]:
        """What the trees see for a series whose fields read are ``raw`` (sorted)."""
        return self._features.features_for(raw)

    def _warn_non_numeric(self, series: Series) -> None:
        for name, value in series.fields.rejected:
            self.counters.non_numeric += 1
            self.log.warn_repeated(
                f"non-numeric:{name}",
                f"field {name!r} of {describe_series(series.key)} is not a number "
                f"({type(value).__name__}); using its last known value",
            )

    # -- scoring -----------------------------------------------------------------------------

    def _score(self, parts: EngineParts, batch: _Batch, verdicts: list[Verdict | None]) -> None:
        """Verdicts for one feature set's metrics, every series of the batch at once."""
        engine = parts.engine
        scorable = _Batch()
        for index, series, row, when, ranged in zip(
            batch.indices, batch.series, batch.rows, batch.times, batch.ranged, strict=True
        ):
            if series.scaling.low is None:  # not ``ready``: this loop runs for every metric
                # Learned scaling: gather the first window raw, then fix the limits, learn it.
                verdicts[index] = self._warmup
                self.counters.warmup += 1
                warmup = series.scaling.gather(row, engine.window_size)
                if warmup is not None:
                    limits = self.config.scaling
                    low, high = learned_limits(
                        warmup, limits.margin, series.features, fixed=limits.limits
                    )
                    engine.learn_many(series.masses, series.scaling.freeze(warmup, low, high))
                continue
            scorable.add(index, series, row, when, ranged)
        if not scorable.rows:
            return
        scaled = scale_rows([series.scaling for series in scorable.series], scorable.rows)
        # A point's leaves depend only on the point: walked once, whatever the passes.
        routed = engine.route(scaled)
        pending = list(range(len(scorable.rows)))
        while pending:
            pending = self._score_pass(parts, pending, scorable, scaled, routed, verdicts)

    def _score_pass(
        self,
        parts: EngineParts,
        pending: list[int],
        batch: _Batch,
        scaled: FloatArray,
        routed_all: Routed,
        verdicts: list[Verdict | None],
    ) -> list[int]:
        """Score every pending point against its series' current reference window, in order.

        A series whose window fills in this pass stops there: its later points are returned,
        to be scored against the next reference window in another pass.
        """
        indices, owners = batch.indices, batch.series
        engine = parts.engine
        routed = routed_all if len(pending) == len(scaled) else routed_all.select(pending)
        totals = engine.totals_multi([owners[p].masses for p in pending], routed)
        room: dict[int, int] = {}
        full: set[int] = set()
        deferred: list[int] = []
        learn: list[int] = []  # positions in ``pending``
        for at, (p, total) in enumerate(zip(pending, totals.tolist(), strict=True)):
            series = owners[p]
            if id(series) in full:
                deferred.append(p)
                continue
            verdicts[indices[p]], learning = self._judge(parts, series, total, batch, p, scaled[p])
            if learning:
                self._count_learned(engine, series, room, full, learn, at)
        if learn:
            engine.learn_multi([owners[pending[at]].masses for at in learn], routed.select(learn))
        return deferred

    def _judge(
        self,
        parts: EngineParts,
        series: Series,
        total: float,
        batch: _Batch,
        position: int,
        scaled: FloatArray,
    ) -> tuple[Verdict, bool]:
        """One point's verdict from its mass total, and whether the model learns it: the
        calibration, the decision and its episode, the learn gate, blame and the alert policy."""
        engine = parts.engine
        masses = series.masses
        if masses.first_window:
            score = None
            learning = True
        else:
            typical = engine.typical_total(masses)
            score = self._calibration.score(series.rarity, total, typical, engine.isolated_total)
            learning = score is None  # the calibration gathers its first scores
        if score is None:
            self.counters.warmup += 1
            return self._warmup, learning
        # The rarer of the two views; the trees learn by their own score alone.
        ranged = batch.ranged[position]
        by_range = ranged.score is not None and ranged.score > score
        shown = ranged.score if by_range and ranged.score is not None else score
        anomalous, flagged = self._episodes.decide(series.episode, shown)
        feature = None
        if anomalous:
            feature = (
                series.inputs[ranged.field] if by_range else self._blame(parts, series, scaled)
            )
        verdict = Verdict(
            "true" if flagged else "false", shown, 1 - total / engine.max_total, feature
        )
        self.counters.scored += 1
        self.counters.anomalous += flagged
        if self._policy is not None:
            kind = self._policy.observe(series.alert, shown, batch.times[position], ranged.alone)
            if kind is not None:
                self._raise_alert(
                    kind,
                    parts,
                    series,
                    batch,
                    position,
                    scaled,
                    shown,
                    ranged if by_range else None,
                )
        return verdict, self._gate.learns(series.gate, score, score >= self._episodes.threshold)

    @staticmethod
    def _count_learned(
        engine: Engine[Any],
        series: Series,
        room: dict[int, int],
        full: set[int],
        learn: list[int],
        at: int,
    ) -> None:
        """Mark pending point ``at`` for learning; a series whose window it fills stops here."""
        learn.append(at)
        key = id(series)
        left = room.get(key, engine.window_size - series.masses.counter) - 1
        room[key] = left
        if left == 0:
            full.add(key)

    def _learn_gathered(self, series: Series, rows: list[list[float]]) -> None:
        """Learn the rows a series gathered before its features were ready (all warm-up)."""
        low, high = series.scaling.low, series.scaling.high
        assert low is not None and high is not None  # the context features' fixed box
        points = scale(np.array(rows, dtype=np.float64), low, high)
        self.engine(series.features).learn_many(series.masses, points)

    def _blame(self, parts: EngineParts, series: Series, scaled: FloatArray) -> str | None:
        """The field that drove an anomalous metric's score (a derived feature's source)."""
        return self._explanation.blame(
            parts.explainer, series.masses, scaled, series.features, series.context
        )

    def _raise_alert(
        self,
        kind: str,
        parts: EngineParts,
        series: Series,
        batch: _Batch,
        position: int,
        scaled: FloatArray,
        score: float,
        ranged: Ranged | None,
    ) -> None:
        """Build the alert (with what drove the score) and hand it to the notifier;
        ``ranged``: the range view's verdict when it drove the score."""
        assert self._notify is not None
        reasons: tuple[FeatureReason, ...] = ()
        low, high = series.scaling.low, series.scaling.high
        if kind != "resolve" and low is not None and high is not None:
            reasons = self._explanation.reasons(
                parts.explainer,
                series.masses,
                scaled,
                batch.rows[position],
                series.features,
                low,
                high,
                squashed=series.context is not None,
            )
        ranges = series.ranges
        if kind != "resolve" and ranged is not None and ranges is not None:
            # The field out of its long-run range first, with that range (its quartiles).
            name = series.inputs[ranged.field]
            low_quartile = None if ranges.low is None else ranges.low[ranged.field]
            high_quartile = None if ranges.high is None else ranges.high[ranged.field]
            others = [reason for reason in reasons if source_of(reason.name) != name]
            reasons = (FeatureReason(name, ranged.value, low_quartile, high_quartile), *others)
        self._notify(
            assemble_alert(
                kind,
                series.key,
                batch.times[position],
                score,
                self.config.detection.threshold,
                series.alert,
                reasons,
                self.config.alerts.link_template,
            )
        )

    @staticmethod
    def _seconds(metric: Metric, untimed: float | None = None) -> float:
        """A metric's time in seconds (Telegraf always writes nanoseconds); one without a time
        is ``untimed``, or "now" when that is None."""
        if metric.timestamp is not None:
            return metric.timestamp / 1e9
        return time.time() if untimed is None else untimed

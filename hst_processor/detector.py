"""Per-series models and the decision for each metric: warm-up, score, anomalous or not.

The detector is pure bookkeeping over parsed metrics: no I/O, no formatting. For a batch of
metrics it returns one :class:`Verdict` (or ``None``: pass through untouched) per metric, in
order. Each series (measurement plus its ``group_by`` tag values) owns its feature list, its
last known values, its scaling limits, its masses and its run of anomalous metrics; the tree
structure is shared by every series with the same features.

Per metric, in order: the fields (missing ones carried forward); the features the trees see
(the default context features of :mod:`.context`, or configured derived features); scaling into
the box; the model's mass total; the score (rarity among the series' own recent metrics, see
:mod:`.rarity`); the episode the tag marks (it opens at the threshold and ends only after the
score stayed below a lower level for a few metrics); the learn gate; the alert policy.

A lasting fault must stay flagged long enough to be seen, yet a genuine change of normal must
become normal. So a metric at or above the threshold is not learned (unless ``learn_anomalies``),
which keeps the reference window on normal data, but only for ``relearn_after`` anomalous metrics
in a row (one window by default): then the series learns again and the new level becomes normal.
"""

from __future__ import annotations

import importlib
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
from hst_processor.config import MIB, Config, series_bytes, trees_bytes
from hst_processor.context import LIMIT, ContextFeatures, context_names
from hst_processor.decision import EpisodeRule, LearnGate
from hst_processor.derived import DerivedState
from hst_processor.engine import Engine, EngineParts, WindowMasses, make_engine
from hst_processor.explanation import Explanation
from hst_processor.forest import FloatArray
from hst_processor.lineproto import Metric, is_numeric
from hst_processor.log import Log
from hst_processor.rarity import Rarity
from hst_processor.scaling import fixed_limits, learned_limits, scale
from hst_processor.series import Series, SeriesKey, describe_series, key_bytes, series_key_of
from hst_processor.trees import node_count

__all__ = ["Counters", "Detector", "Series", "SeriesKey", "Verdict", "describe_series"]

# The lookup cache from a metric's series text to its key: bounded in entries and in text.
_KEY_CACHE_LIMIT = 100_000
_KEY_CACHE_TEXT = 16 * MIB


MIN_KEPT_ENGINES = 32  # feature sets whose trees are kept without a sweep for unused ones
CHUNK_METRICS = 512  # metrics scored together: enough for the batch code to pay off


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
    not_scored: int = 0  # a configured feature never seen yet
    already_scored: int = 0
    non_numeric: int = 0
    evicted: int = 0
    key_too_long: int = 0  # metrics whose series key exceeds limits.max_key_bytes


@dataclass
class _Batch:
    """The metrics of one batch that share a feature set, in input order."""

    indices: list[int] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    rows: list[list[float]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # seconds, for alerts

    def add(self, index: int, series: Series, row: list[float], when: float) -> None:
        self.indices.append(index)
        self.series.append(series)
        self.rows.append(row)
        self.times.append(when)


class Detector:
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
        self.series: OrderedDict[SeriesKey, Series] = OrderedDict()
        self._engines: dict[tuple[str, ...], EngineParts] = {}
        self._released: list[Series] = []
        self._engines_allowed = MIN_KEPT_ENGINES
        self._keys: dict[str, SeriesKey] = {}
        self._keys_text = 0  # characters of series text in ``_keys``
        self._budget = config.limits.memory_mb * MIB
        self.footprint = 0  # estimated bytes of every live series
        self._scored_measurements = frozenset(config.measurements)
        self._own_fields = {config.output.score_field, config.output.raw_score_field} - {""}
        self._warmup = Verdict(config.output.warmup_value)
        self._explanation = Explanation(bool(config.output.feature_field), config.feature_sources())
        self._orders: dict[tuple[str, ...], list[int]] = {}
        # The statistic calibrated is log(typical / total); no total is below the isolated one.
        nodes = node_count(config.model.height)  # max_total / isolated_total
        self.rarity = Rarity(upper=math.log(nodes) + 1e-6)
        by_rarity = config.detection.calibration == "rarity"
        self._calibration = Calibration(self.rarity if by_rarity else None)
        self._episodes = EpisodeRule.of(config.detection)
        self._gate = LearnGate.of(config.detection)
        self.context_fit = config.model.window_size
        if config.model.engine == "river":
            importlib.import_module("river.anomaly")  # fail at start, not at the first metric

    def engine(self, features: tuple[str, ...]) -> Engine[Any]:
        """The engine of one feature set (built on first use)."""
        return self.engine_parts(features).engine

    def engine_parts(self, features: tuple[str, ...]) -> EngineParts:
        """The engine of one feature set with what else it can do (explain, persist)."""
        parts = self._engines.get(features)
        if parts is None:
            model = self.config.model
            parts = make_engine(
                model.engine, features, model.n_trees, model.height, model.window_size, model.seed
            )
            self._engines[features] = parts
        return parts

    def process(self, metrics: Sequence[Metric | None]) -> list[Verdict | None]:
        """One verdict per metric (``None``: leave it as it is), in order.

        Scored in slices of CHUNK_METRICS (the verdicts are the same for any slicing): what
        the series forgotten in a slice held, their trees included, is let go before the next,
        so a read of ever-new series never holds more than a slice's worth of them."""
        verdicts: list[Verdict | None] = []
        for start in range(0, len(metrics), CHUNK_METRICS):
            verdicts += self._process_slice(metrics[start : start + CHUNK_METRICS])
        return verdicts

    def _process_slice(self, metrics: Sequence[Metric | None]) -> list[Verdict | None]:
        verdicts: list[Verdict | None] = [None] * len(metrics)
        groups: dict[tuple[str, ...], _Batch] = {}
        for index, metric in enumerate(metrics):
            if metric is None or not self._is_scored(metric):
                continue
            series = self._series_for(metric)
            if series is None:
                self.counters.not_scored += 1
                continue
            series.last_seen = metric.timestamp
            row = self._row(series, metric)
            if row is None:
                self.counters.not_scored += 1
                continue
            if series.context is not None:
                rows = series.context.update(row)
                if not rows:  # the context features gather their first metrics
                    verdicts[index] = self._warmup
                    self.counters.warmup += 1
                    continue
                if len(rows) > 1:  # the gathered metrics, already answered as warm-up
                    self._learn_gathered(series, rows[:-1])
                row = rows[-1]
            elif series.derived is not None:
                extra = series.derived.update(row)
                if extra is None:  # a derived feature still gathers its history
                    verdicts[index] = self._warmup
                    self.counters.warmup += 1
                    continue
                row += extra
            if series.context is None and series.features is not series.inputs:
                row = [row[i] for i in self._model_order(series)]
            batch = groups.get(series.features)
            if batch is None:
                batch = groups[series.features] = _Batch()
            batch.add(index, series, row, self._seconds(metric) if self._policy else 0.0)
        for features, batch in groups.items():
            self._score(self.engine_parts(features), batch, verdicts)
        # Rows of series forgotten during this batch are reused only now that it is scored.
        for series in self._released:
            self.engine(series.features).release(series.masses)
        self._released.clear()
        if len(self._engines) > self._engines_allowed:
            self._drop_unused_engines()
        return verdicts

    def _engine_cost(self, features: tuple[str, ...]) -> int:
        """What a series adds by bringing a feature set of its own: its trees (shared by
        every later series of the same fields, so counted once, with the first)."""
        return 0 if features in self._engines else trees_bytes(self.config.model, len(features))

    def _drop_unused_engines(self) -> None:
        """Forget the trees of feature sets no live series has any more: a stream of ever-new
        field names would otherwise keep a set of trees for each, for ever. Run when the
        engines have doubled since the last time, so it costs little per new one."""
        in_use = {series.features for series in self.series.values()}
        for features in [features for features in self._engines if features not in in_use]:
            del self._engines[features]
        self._engines_allowed = max(MIN_KEPT_ENGINES, 2 * len(self._engines))

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

    def series_key(self, metric: Metric) -> SeriesKey:
        """The series a metric belongs to: its measurement and ``group_by`` tag values."""
        # The key is a function of the measurement and tags, that is of the text before the
        # fields, which repeats for every metric of a series: look it up by that text.
        series_text = metric.text[: metric.series_end]
        key = self._keys.get(series_text)
        if key is None:
            group_by = self.config.group_by
            if group_by is None:
                own_tag = self.config.output.tag
                tags = tuple(sorted((k, v) for k, v in metric.tags.items() if k != own_tag))
            else:
                tags = tuple((name, metric.tags.get(name, "")) for name in group_by)
            key = (metric.measurement, tags)
            if len(series_text) > self.config.limits.max_key_bytes:
                return key  # not cached: such a key is not modelled anyway, or is short
            if len(self._keys) >= _KEY_CACHE_LIMIT or self._keys_text >= _KEY_CACHE_TEXT:
                self._keys.clear()
                self._keys_text = 0
            self._keys[series_text] = key
            self._keys_text += len(series_text)
        return key

    def _series_for(self, metric: Metric) -> Series | None:
        key = self.series_key(metric)
        series = self.series.get(key)
        if series is not None:
            self.series.move_to_end(key)
            return series
        features = self.config.features or tuple(
            name
            for name, value in metric.fields.items()
            if is_numeric(value) and name not in self._own_fields
        )
        if not features:
            self.log.warn_repeated(
                "no-features",
                f"{describe_series(key)} has no numeric field to score; passed through",
            )
            return None
        raw = tuple(sorted(features))
        features = self.model_features_for(raw)
        size = key_bytes(key)
        if size > self.config.limits.max_key_bytes:
            self.counters.key_too_long += 1
            self.log.warn_repeated(
                "key-too-long",
                f"a series key of {size} bytes is longer than limits.max_key_bytes="
                f"{self.config.limits.max_key_bytes}: not modelled, passed through "
                f"({describe_series(key)[:120]}...)",
            )
            return None
        footprint = self.footprint_of(key, len(raw), len(features)) + self._engine_cost(features)
        if not self.make_room(footprint):
            return None
        series = self._new_series(key, features, raw, self.engine(features).new_masses())
        series.footprint = footprint
        self.adopt(series)
        return series

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
        context = (
            ContextFeatures(inputs, fit=self.context_fit) if self.config.uses_context else None
        )
        series = Series(
            key=key,
            features=features,
            masses=masses,
            last_values=[None] * len(inputs),
            derived=DerivedState(self.config.derived, inputs) if self.config.derived else None,
            inputs=inputs,
            context=context,
            rarity=self._calibration.new_state(),
        )
        if context is not None:  # context features are squashed into one fixed box
            series.low = np.full(len(features), -LIMIT)
            series.high = np.full(len(features), LIMIT)
        elif self.config.scaling.mode == "fixed":
            series.low, series.high = fixed_limits(features, self.config.scaling.limits)
        return series

    def restore_series(self, saved: Mapping[str, Any], features: tuple[str, ...]) -> bool:
        """Adopt a series from a snapshot entry (checked, and matching this configuration),
        with room made for it within ``max_series`` and ``limits.memory_mb`` as for a new
        one; False if it can never fit. Each stage restores its own part."""
        key = series_key_of(saved)
        inputs = tuple(saved.get("inputs") or features)
        footprint = self.footprint_of(key, len(inputs), len(features))
        footprint += self._engine_cost(features)
        if not self.make_room(footprint):
            return False
        parts = self.engine_parts(features)
        if parts.persistence is None:
            raise ValueError("state can only be kept with the built-in engine (model.engine: hst)")
        masses = parts.engine.new_masses()
        parts.persistence.import_masses(masses, saved["masses"])
        series = self._new_series(key, features, inputs, masses)
        series.restore(saved)
        series.footprint = footprint
        self.adopt(series)
        return True

    def export_series(self, series: Series) -> dict[str, Any]:
        """One series as plain data for a snapshot (see :meth:`Series.export`)."""
        persistence = self.engine_parts(series.features).persistence
        if persistence is None:
            raise ValueError("state can only be kept with the built-in engine (model.engine: hst)")
        return series.export(persistence)

    def forget_all(self) -> None:
        """Drop every series (a restore that failed halfway starts fresh)."""
        for series in self.series.values():
            self.engine(series.features).release(series.masses)
        self.series.clear()
        self.footprint = 0

    def make_room(self, footprint: int) -> bool:
        """Forget the least recently seen series until one more of ``footprint`` bytes fits
        both ``max_series`` and ``limits.memory_mb``; False (with a warning) if it never can."""
        if footprint > self._budget:
            self.log.warn_repeated(
                "series-too-big",
                f"a series would need about {footprint // MIB} MiB, more than limits.memory_mb="
                f"{self.config.limits.memory_mb}: not modelled, passed through",
            )
            return False
        while self.series and (
            len(self.series) >= self.config.max_series or self.footprint + footprint > self._budget
        ):
            bound = (
                f"max_series={self.config.max_series}"
                if len(self.series) >= self.config.max_series
                else f"limits.memory_mb={self.config.limits.memory_mb}"
            )
            evicted, forgotten = self.series.popitem(last=False)
            self.footprint -= forgotten.footprint
            self._released.append(forgotten)
            self.counters.evicted += 1
            self.log.warn_repeated(
                "evicted",
                f"{bound} reached: forgot the least recently seen series "
                f"{describe_series(evicted)}",
            )
        return True

    def footprint_of(self, key: SeriesKey, n_inputs: int, n_features: int) -> int:
        """The bytes a series may come to hold (see :func:`~hst_processor.config.series_bytes`)."""
        return series_bytes(self.config.model, n_inputs, n_features, key_bytes(key))

    def adopt(self, series: Series) -> None:
        """Add a new (or restored) series, with room made for it, as the most recently seen."""
        self.series[series.key] = series
        self.footprint += series.footprint

    def model_features_for(self, raw: tuple[str, ...]) -> tuple[str, ...]:
        """What the trees see for a series whose fields read are ``raw`` (sorted)."""
        if self.config.uses_context:
            return context_names(raw)
        features = self.config.model_features() if self.config.features else raw
        return raw if features == raw else features  # the same object: no reordering needed

    def _row(self, series: Series, metric: Metric) -> list[float] | None:
        """The metric's features, missing ones filled with their last known values."""
        values = series.last_values
        fields = metric.fields
        for position, name in enumerate(series.inputs):
            value = fields.get(name)
            if value.__class__ is float:
                values[position] = value
            elif value is None:
                continue
            elif is_numeric(value):
                values[position] = float(value)
            else:
                self.counters.non_numeric += 1
                self.log.warn_repeated(
                    f"non-numeric:{name}",
                    f"field {name!r} of {describe_series(series.key)} is not a number "
                    f"({type(value).__name__}); using its last known value",
                )
        if not series.complete:
            if any(value is None for value in values):
                return None
            series.complete = True
        return values.copy()  # type: ignore[return-value]

    # -- scoring -----------------------------------------------------------------------------

    def _score(self, parts: EngineParts, batch: _Batch, verdicts: list[Verdict | None]) -> None:
        """Verdicts for one feature set's metrics, every series of the batch at once."""
        engine = parts.engine
        scorable = _Batch()
        for index, series, row, when in zip(
            batch.indices, batch.series, batch.rows, batch.times, strict=True
        ):
            if series.low is None:
                # Learned scaling: collect the first window raw, then fix the limits, learn it.
                series.warmup_rows.append(row)
                verdicts[index] = self._warmup
                self.counters.warmup += 1
                if len(series.warmup_rows) == engine.window_size:
                    self._freeze_limits(series, engine)
                continue
            scorable.add(index, series, row, when)
        if not scorable.rows:
            return
        scaled = self._scale(scorable.series, scorable.rows)
        pending = list(range(len(scorable.rows)))
        while pending:
            pending = self._score_pass(parts, pending, scorable, scaled, verdicts)

    def _scale(self, owners: list[Series], rows: list[list[float]]) -> FloatArray:
        position: dict[int, int] = {}
        lows: list[FloatArray] = []
        highs: list[FloatArray] = []
        which = np.empty(len(owners), dtype=np.intp)
        for i, series in enumerate(owners):
            at = position.get(id(series))
            if at is None:
                at = position[id(series)] = len(lows)
                assert series.low is not None and series.high is not None
                lows.append(series.low)
                highs.append(series.high)
            which[i] = at
        low, high = np.array(lows)[which], np.array(highs)[which]
        return scale(np.array(rows, dtype=np.float64), low, high)

    def _score_pass(
        self,
        parts: EngineParts,
        pending: list[int],
        batch: _Batch,
        scaled: FloatArray,
        verdicts: list[Verdict | None],
    ) -> list[int]:
        """Score every pending point against its series' current reference window, in order.

        A series whose window fills in this pass stops there: its later points are returned,
        to be scored against the next reference window in another pass.
        """
        indices, owners, policy = batch.indices, batch.series, self._policy
        engine = parts.engine
        calibration, episodes, gate = self._calibration, self._episodes, self._gate
        routed = engine.route(scaled[pending])
        totals = engine.totals_multi([owners[p].masses for p in pending], routed)
        isolated = engine.isolated_total
        room: dict[int, int] = {}
        full: set[int] = set()
        deferred: list[int] = []
        learn: list[int] = []  # positions in ``pending``
        for at, (p, total) in enumerate(zip(pending, totals.tolist(), strict=True)):
            series = owners[p]
            if id(series) in full:
                deferred.append(p)
                continue
            masses = series.masses
            if masses.first_window:
                score = None
                learning = True
            else:
                score = calibration.score(
                    series.rarity, total, engine.typical_total(masses), isolated
                )
                learning = score is None  # the calibration gathers its first scores
            if score is None:
                verdicts[indices[p]] = self._warmup
                self.counters.warmup += 1
            else:
                anomalous, flagged = episodes.decide(series.episode, score)
                learning = gate.learns(series.gate, score, anomalous)
                verdicts[indices[p]] = Verdict(
                    "true" if flagged else "false",
                    score,
                    1 - total / engine.max_total,
                    self._blame(parts, series, scaled[p]) if anomalous else None,
                )
                self.counters.scored += 1
                self.counters.anomalous += flagged
                if policy is not None:
                    kind = policy.observe(series.alert, score, batch.times[p])
                    if kind is not None:
                        self._raise_alert(kind, parts, series, batch, p, scaled[p], score)
            if learning:
                self._count_learned(engine, series, room, full, learn, at)
        if learn:
            engine.learn_multi([owners[pending[at]].masses for at in learn], routed.select(learn))
        return deferred

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
        assert series.low is not None and series.high is not None
        points = scale(np.array(rows, dtype=np.float64), series.low, series.high)
        self.engine(series.features).learn_many(series.masses, points)

    def _model_order(self, series: Series) -> list[int]:
        """Where each model feature sits in ``inputs + derived`` (cached per feature set)."""
        order = self._orders.get(series.features)
        if order is None:
            derived = series.derived.specs if series.derived is not None else ()
            combined = series.inputs + tuple(spec.name for spec in derived)
            order = self._orders[series.features] = [combined.index(f) for f in series.features]
        return order

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
    ) -> None:
        """Build the alert (with what drove the score) and hand it to the notifier."""
        assert self._notify is not None
        reasons: tuple[FeatureReason, ...] = ()
        if kind != "resolve" and series.low is not None:
            assert series.high is not None
            reasons = self._explanation.reasons(
                parts.explainer,
                series.masses,
                scaled,
                batch.rows[position],
                series.features,
                series.low,
                series.high,
                squashed=series.context is not None,
            )
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
    def _seconds(metric: Metric) -> float:
        # Telegraf always writes nanoseconds; a metric without a time is "now".
        return metric.timestamp / 1e9 if metric.timestamp is not None else time.time()

    def _freeze_limits(self, series: Series, engine: Engine[Any]) -> None:
        warmup = np.array(series.warmup_rows, dtype=np.float64)
        low, high = learned_limits(warmup, self.config.scaling.margin)
        for position, name in enumerate(series.features):
            if name in self.config.scaling.limits:
                low[position], high[position] = self.config.scaling.limits[name]
        series.low, series.high = low, high
        engine.learn_many(series.masses, scale(warmup, low, high))
        series.warmup_rows = []

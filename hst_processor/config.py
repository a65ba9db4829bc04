"""Configuration: typed dataclasses, YAML loading, ``${ENV}`` interpolation, validation.

Every option has a default, so an empty file (or none) is a working configuration. Validation
happens once, at start, and a bad value raises :class:`~hst_processor.errors.ConfigError`
naming the dotted key and the problem::

    model.height: must be an integer from 1 to 20, got "x"

String values may reference the environment as ``${NAME}`` or ``${NAME:-default}``. A value
that is a single reference is read as YAML after substitution, so ``height: ${HST_HEIGHT}``
with ``HST_HEIGHT=10`` gives the integer 10.

>>> config = parse_config({"model": {"height": 6}, "features": ["load"]})
>>> config.model.height, config.model.n_trees, config.features
(6, 10, ('load',))
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from hst_processor.derived import KINDS, DerivedFeature
from hst_processor.errors import ConfigError
from hst_processor.lineproto import is_numeric

__all__ = [
    "MAX_WORKERS",
    "MODEL_RANGES",
    "RANGE_SAMPLE_EVERY",
    "AlertsConfig",
    "Config",
    "DetectionConfig",
    "LimitsConfig",
    "LogConfig",
    "ModelConfig",
    "OutputConfig",
    "ScalingConfig",
    "SelfMetricsConfig",
    "StateConfig",
    "available_cores",
    "load_config",
    "parse_config",
    "range_rows",
    "sampled_rows",
    "series_bytes",
    "trees_bytes",
]

ENGINES = ("hst", "river")
SCALING_MODES = ("fixed", "learned")
CALIBRATIONS = ("rarity", "landmarks")
LOG_LEVELS = ("error", "warn", "info", "debug")


@dataclass(frozen=True)
class ModelConfig:
    """The Half-Space Trees model every series gets."""

    engine: str = "hst"
    """``hst``: the built-in engine; ``river``: river's HalfSpaceTrees (needs river)."""
    n_trees: int = 10
    height: int = 8
    window_size: int = 250
    """Metrics per window; the first window of each series is its warm-up."""
    seed: int = 42
    """Same seed, same trees: scores are reproducible, and all series share one structure."""
    features: tuple[str, ...] = ()
    """The features (fields and derived features) the trees see; empty: all of them. Fields
    left out are still read, for the derived features made from them."""


@dataclass(frozen=True)
class ScalingConfig:
    """How each feature's raw values map into the model's unit box."""

    mode: str = "learned"
    """``fixed``: the ``limits`` below; ``learned``: the range seen during warm-up, frozen."""
    margin: float = 1.0
    """``learned``: widen the warm-up range by this fraction of it on each side. HST cannot
    tell a value far beyond the box from one at its edge, so the box needs empty room around
    normal data: at 1.0 the warm-up range fills the middle third of it."""
    limits: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """``{field: [low, high]}``; required for every feature in ``fixed`` mode, and in
    ``learned`` mode a fixed range for the fields listed."""


@dataclass(frozen=True)
class DetectionConfig:
    threshold: float = 0.5
    """An ``anomaly_score`` at or above this opens an episode: ``anomaly=true``. With the
    ``rarity`` calibration, 0.5 means rarer than 1 in 1,000 of the series' recent metrics."""
    calibration: str = "rarity"
    """``rarity``: the score is how rare the metric is among its series' recent metrics
    (``-log10(share) / 6``); ``landmarks``: the mass total between the model's typical and
    isolated totals (the scale moves with features and trees; for hand-tuned thresholds)."""
    resolve_threshold: float | None = None
    """An episode ends once the score stays below this for ``resolve_after`` metrics (unset:
    0.7 times the threshold: 0.35, rarer than 1 in about 125, at the default)."""
    resolve_after: int = 5
    """Metrics in a row below ``resolve_threshold`` that end an episode (the tag goes back to
    ``false``)."""
    learn_anomalies: bool = False
    """``false``: a metric tagged anomalous is not learned, so a lasting fault is not
    absorbed into the model (river's QuantileFilter idea)."""
    learn_threshold: float | None = None
    """Metrics scoring at or above this are not learned (unset: ``threshold``). Set it below
    the threshold so that a fault scoring just under it is not learned into the model either:
    a weak anomaly learned for a window becomes normal."""
    relearn_after: int = 250
    """After this many anomalous metrics in a row (one window by default) the series accepts
    the new level as normal and learns again: the way out when the change is a genuine new
    operating point. 0: never."""
    range_reference: int = 1000
    """With the default features: the metrics whose fields' medians and quartiles are each
    field's long-run range (every fourth is kept), against which the range view scores every
    later metric (see :mod:`hst_processor.ranges`). 0: no range view, the trees' score alone."""

    @property
    def episode_end(self) -> float:
        """The level below which an episode counts towards its end."""
        if self.resolve_threshold is not None:
            return self.resolve_threshold
        return round(0.7 * self.threshold, 9)


@dataclass(frozen=True)
class OutputConfig:
    score_field: str = "anomaly_score"
    raw_score_field: str = ""
    """Also emit river's raw score under this field name (empty: off)."""
    feature_field: str = "anomaly_feature"
    """On an anomalous metric, the field(s) that drove the score, most to blame first, as a
    string field (``"vibration"``, ``"power,load"``; empty option: off). A derived feature is
    named by its source field. Built-in engine only."""
    tag: str = "anomaly"
    warmup_value: str = "warmup"


@dataclass(frozen=True)
class StateConfig:
    """Where the models are kept between runs (see the README's "State")."""

    file: str = ""
    """Snapshot file; empty: nothing is persisted (``--state-file`` overrides)."""
    interval: float = 60.0
    """Seconds between periodic snapshots (taken in a forked child, off the metric path)."""


@dataclass(frozen=True)
class SelfMetricsConfig:
    """The processor's report on itself, written among its output (see the README's
    "Self-metrics")."""

    interval: float = 10.0
    """Seconds between two reports while the processor runs under Telegraf (0: off). Never
    written by ``replay`` or ``evaluate``."""
    measurement: str = "hst_processor"
    """The reports' measurement."""


@dataclass(frozen=True)
class LimitsConfig:
    """Memory bounds in bytes, beside ``max_series`` (a count): series differ in size."""

    memory_mb: int = 2048
    """MiB for the trees and the series' state (leaf counts, warm-up buffers, keys), as
    estimated by :func:`trees_bytes` and :func:`series_bytes`. A configuration whose trees and
    one series cannot fit is refused at start; at run time the least recently seen series are
    forgotten, with a warning, to stay within it."""
    max_key_bytes: int = 4096
    """A series whose key (measurement and ``group_by`` tag values, in UTF-8) is longer is not
    modelled: its metrics pass through unscored, with a counted warning."""


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    repeat_interval: float = 60.0
    """Seconds during which a repeated warning of one kind is counted, not printed."""


@dataclass(frozen=True)
class AlertsConfig:
    """When a series' anomaly becomes a message, and where the message goes."""

    enabled: bool = True
    consecutive: int = 3
    """Open an alert after this many metrics in a row at or above the threshold..."""
    alone_days: float = 3.0
    """...or at one metric whose range score (a field far out of its long-run range, see
    ``detection.range_reference``) is rarer than normal operation reaches once in this many
    days at the series' own cadence (1 in 4,320 metrics at one a minute). 0: never."""
    duration: float = 0.0
    """...or once the score has stayed at or above it for this many seconds (0: off)."""
    resolve_threshold: float = 0.35
    """Resolve when the score stays below this (lower than the threshold: hysteresis)...
    Unset: ``detection.resolve_threshold``, the level that ends an episode (0.35 by default)."""
    resolve_after: int = 30
    """...for this many metrics in a row."""
    reminder_interval: float = 0.0
    """Seconds between reminders while an alert stays open (0: none)."""
    cooldown: float = 300.0
    """Seconds after a resolve during which the series opens no new alert."""
    link_template: str = ""
    """A link added to each message, filled from the series' tags: ``{machineID}``."""
    slack_webhook_env: str = "SLACK_WEBHOOK_URL"
    """Environment variable holding the Slack incoming-webhook URL (unset or empty: no Slack)."""
    webhook_env: str = "HST_ALERT_WEBHOOK_URL"
    """Environment variable holding a generic JSON webhook URL (unset or empty: none)."""
    log: bool | None = None
    """Also log alerts to stderr; unset: only when no webhook is configured."""
    queue_size: int = 1000
    messages_per_second: float = 1.0
    """At most this many messages per second per webhook (Slack allows about one)."""
    digest_after: int = 3
    """When more alerts than this wait for one webhook, send one digest message instead."""
    timeout: float = 5.0
    max_retries: int = 5
    shutdown_grace: float = 2.0
    """Seconds pending alerts get to go out when the processor stops."""


@dataclass(frozen=True)
class Config:
    measurements: tuple[str, ...] = ()
    """Measurements to score; others pass through untouched. Empty: all."""
    group_by: tuple[str, ...] | None = None
    """Tags that identify a series, with the measurement. Unset: all tags."""
    features: tuple[str, ...] = ()
    """Fields used as features. Empty: the numeric fields of each series' first metric."""
    derived: tuple[DerivedFeature, ...] = ()
    """Features computed from the fields over time (see ``hst_processor.derived``)."""
    context_features: bool = True
    """Without ``derived``, ``model.features`` or fixed scaling: give the trees each field's
    level, deviation from its recent level and residual against the other fields
    (:mod:`hst_processor.context`) instead of the raw fields."""
    max_series: int = 10_000
    """Live series bound; the least recently seen is evicted, with a warning."""
    workers: int = 1
    """Scoring processes, each owning a fixed share of the series (``auto`` in the file: one
    per core this process may run on). One: everything in this process."""
    model: ModelConfig = field(default_factory=ModelConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    log: LogConfig = field(default_factory=LogConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    state: StateConfig = field(default_factory=StateConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    self_metrics: SelfMetricsConfig = field(default_factory=SelfMetricsConfig)

    @property
    def uses_context(self) -> bool:
        """Whether series get the default context features (a hand-made config turns them off)."""
        return (
            self.context_features
            and not self.derived
            and not self.model.features
            and self.scaling.mode != "fixed"
        )

    @property
    def uses_ranges(self) -> bool:
        """Whether series get the range view beside the trees: with the default features and
        the rarity score (its scores are rarities too, so the rarer of the two can be taken)."""
        return (
            self.uses_context
            and self.detection.calibration == "rarity"
            and self.detection.range_reference > 0
        )

    def model_features(self) -> tuple[str, ...]:
        """What the trees see, sorted: ``model.features``, else the fields and derived features."""
        chosen = self.model.features or self.features + tuple(spec.name for spec in self.derived)
        return tuple(sorted(chosen))

    def feature_sources(self) -> dict[str, str]:
        """Each model feature's source field (a raw feature is its own source)."""
        sources = {name: name for name in self.features}
        sources.update({spec.name: spec.field for spec in self.derived})
        return sources


# ---------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate a YAML config file; ``None`` gives the defaults."""
    if path is None:
        return Config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"{path} is not UTF-8 text (byte {exc.start})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError("", f"{path} is not valid YAML{where}") from None
    except RecursionError:  # PyYAML recurses once per nesting level
        raise ConfigError("", f"{path} is nested too deeply to be a config") from None
    if document is None:
        document = {}
    return parse_config(document)


def parse_config(document: Any, environ: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed YAML document into a :class:`Config`."""
    if not isinstance(document, dict):
        raise ConfigError("", f"the config must be a mapping of options, got {_kind(document)}")
    expansion = _Expansion(os.environ if environ is None else environ)
    document = expansion.walk(document, "", 0)
    try:
        return _parse_expanded(document)
    except ConfigError as error:
        raise expansion.hide_values(error) from None


def _parse_expanded(document: dict[str, Any]) -> Config:
    _reject_unknown(document, Config, "")
    model = _model(document.get("model", {}))
    features = _names(document, "features", default=())
    derived = _derived(document.get("derived", []), features, model.window_size)
    available = features + tuple(spec.name for spec in derived)
    detection = _detection(document.get("detection", {}))
    unknown = [name for name in model.features if name not in available]
    if unknown:
        raise ConfigError("model.features", f"{unknown} are neither features nor derived features")
    config = Config(
        measurements=_names(document, "measurements", default=()),
        group_by=_names(document, "group_by", default=None),
        features=features,
        derived=derived,
        context_features=_boolean(document, "context_features", Config.context_features, ""),
        max_series=_integer(document, "max_series", Config.max_series, 1, 10_000_000),
        workers=_workers(document),
        model=model,
        scaling=_scaling(document.get("scaling", {}), model.features or available),
        detection=detection,
        output=_output(document.get("output", {})),
        log=_log(document.get("log", {})),
        alerts=_alerts(document.get("alerts", {}), resolve=detection.episode_end),
        state=_state(document.get("state", {})),
        limits=_limits(document.get("limits", {})),
        self_metrics=_self_metrics(document.get("self_metrics", {})),
    )
    _check_memory(config)
    if config.alerts.resolve_threshold > config.detection.threshold:
        raise ConfigError(
            "alerts.resolve_threshold",
            f"must not exceed detection.threshold ({config.detection.threshold:g}), "
            f"got {config.alerts.resolve_threshold:g}",
        )
    return config


MODEL_RANGES: dict[str, tuple[int, int]] = {
    "n_trees": (1, 1000),
    "height": (1, 20),
    "window_size": (2, 1_000_000),
    "seed": (0, 2**63 - 1),
}
"""The integer model options and the ranges they may take (a snapshot's model is held to
the same ranges)."""


def _model(section: Any) -> ModelConfig:
    _require_mapping(section, "model")
    _reject_unknown(section, ModelConfig, "model")
    engine = _choice(section, "engine", ModelConfig.engine, ENGINES, "model")
    sizes = {
        name: _integer(section, name, getattr(ModelConfig, name), low, high, "model")
        for name, (low, high) in MODEL_RANGES.items()
    }
    return ModelConfig(
        engine=engine, features=_names(section, "features", default=(), prefix="model"), **sizes
    )


def _scaling(section: Any, features: tuple[str, ...]) -> ScalingConfig:
    _require_mapping(section, "scaling")
    _reject_unknown(section, ScalingConfig, "scaling")
    mode = _choice(section, "mode", ScalingConfig.mode, SCALING_MODES, "scaling")
    margin = _number(section, "margin", ScalingConfig.margin, 0.0, 100.0, "scaling")
    raw_limits = section.get("limits", {})
    if raw_limits is None:
        raw_limits = {}
    _require_mapping(raw_limits, "scaling.limits")
    limits: dict[str, tuple[float, float]] = {}
    for name, pair in raw_limits.items():
        key = f"scaling.limits.{name}"
        if (
            not isinstance(pair, list | tuple)
            or len(pair) != 2
            or not all(is_numeric(v) and math.isfinite(v) for v in pair)
        ):
            raise ConfigError(key, f"must be a list [low, high] of two numbers, got {_show(pair)}")
        low, high = float(pair[0]), float(pair[1])
        if not low < high:
            raise ConfigError(key, f"low must be below high, got [{pair[0]}, {pair[1]}]")
        limits[str(name)] = (low, high)
    if mode == "fixed":
        if not features:
            raise ConfigError("scaling.mode", "fixed limits need an explicit features list")
        missing = [name for name in features if name not in limits]
        if missing:
            raise ConfigError("scaling.limits", f"fixed mode needs limits for {missing}")
    return ScalingConfig(mode=mode, margin=margin, limits=limits)


def _derived(
    section: Any, features: tuple[str, ...], window_size: int
) -> tuple[DerivedFeature, ...]:
    if section is None:
        return ()
    if not isinstance(section, list):
        raise ConfigError("derived", f"must be a list of derived features, got {_kind(section)}")
    if section and not features:
        raise ConfigError("derived", "derived features need an explicit features list")
    specs: list[DerivedFeature] = []
    for index, entry in enumerate(section):
        prefix = f"derived[{index}]"
        _require_mapping(entry, prefix)
        _reject_unknown(entry, DerivedFeature, prefix)
        name = _identifier(entry, "name", "", prefix)
        if name in features or name in {spec.name for spec in specs}:
            raise ConfigError(f"{prefix}.name", f"{name!r} is already a feature")
        kind = _choice(entry, "kind", "", KINDS, prefix)
        field = _identifier(entry, "field", "", prefix)
        if field not in features:
            raise ConfigError(f"{prefix}.field", f"{field!r} is not one of the features")
        of = ""
        if kind in ("ratio", "residual"):
            of = _identifier(entry, "of", "", prefix)
            if of not in features or of == field:
                raise ConfigError(f"{prefix}.of", f"must be another of the features, got {of!r}")
        elif "of" in entry:
            raise ConfigError(f"{prefix}.of", f"only ratio and residual take 'of', not {kind}")
        window = 0
        if kind in ("deviation", "spread"):
            window = _integer(entry, "window", 10, 2, 100_000, prefix)
        elif kind == "residual":
            window = _integer(entry, "window", 1, 1, 100_000, prefix)
        elif "window" in entry:
            raise ConfigError(
                f"{prefix}.window", "only deviation, spread and residual take a window"
            )
        fit = 0
        if kind == "residual":
            fit = _integer(entry, "fit", min(120, window_size), 3, 1_000_000, prefix)
        elif "fit" in entry:
            raise ConfigError(f"{prefix}.fit", "only residual takes 'fit'")
        specs.append(DerivedFeature(name, kind, field, of, window, fit))
    return tuple(specs)


def _detection(section: Any) -> DetectionConfig:
    _require_mapping(section, "detection")
    _reject_unknown(section, DetectionConfig, "detection")
    threshold = _number(section, "threshold", DetectionConfig.threshold, 0.0, 1.0, "detection")
    learn_threshold = None
    if section.get("learn_threshold") is not None:
        learn_threshold = _number(section, "learn_threshold", 0.0, 0.0, threshold, "detection")
    resolve_threshold = None
    if section.get("resolve_threshold") is not None:
        resolve_threshold = _number(section, "resolve_threshold", 0.0, 0.0, threshold, "detection")
    return DetectionConfig(
        threshold=threshold,
        calibration=_choice(
            section, "calibration", DetectionConfig.calibration, CALIBRATIONS, "detection"
        ),
        resolve_threshold=resolve_threshold,
        resolve_after=_integer(
            section, "resolve_after", DetectionConfig.resolve_after, 1, 1_000_000, "detection"
        ),
        learn_threshold=learn_threshold,
        learn_anomalies=_boolean(
            section, "learn_anomalies", DetectionConfig.learn_anomalies, "detection"
        ),
        relearn_after=_integer(
            section, "relearn_after", DetectionConfig.relearn_after, 0, 10**9, "detection"
        ),
        range_reference=_integer(
            section, "range_reference", DetectionConfig.range_reference, 0, 10**6, "detection"
        ),
    )


def _output(section: Any) -> OutputConfig:
    _require_mapping(section, "output")
    _reject_unknown(section, OutputConfig, "output")
    output = OutputConfig(
        score_field=_identifier(section, "score_field", OutputConfig.score_field, "output"),
        feature_field=_identifier(
            section, "feature_field", OutputConfig.feature_field, "output", allow_empty=True
        ),
        raw_score_field=_identifier(
            section, "raw_score_field", OutputConfig.raw_score_field, "output", allow_empty=True
        ),
        tag=_identifier(section, "tag", OutputConfig.tag, "output"),
        warmup_value=_identifier(section, "warmup_value", OutputConfig.warmup_value, "output"),
    )
    if output.raw_score_field == output.score_field:
        raise ConfigError("output.raw_score_field", "must differ from output.score_field")
    if output.feature_field in (output.score_field, output.raw_score_field):
        raise ConfigError("output.feature_field", "must differ from the score fields")
    return output


def _alerts(section: Any, resolve: float = AlertsConfig.resolve_threshold) -> AlertsConfig:
    _require_mapping(section, "alerts")
    _reject_unknown(section, AlertsConfig, "alerts")
    d = AlertsConfig
    log = section.get("log", d.log)
    if log is not None and not isinstance(log, bool):
        raise ConfigError("alerts.log", f"must be true, false or unset, got {_show(log)}")
    return AlertsConfig(
        enabled=_boolean(section, "enabled", d.enabled, "alerts"),
        consecutive=_integer(section, "consecutive", d.consecutive, 1, 1_000_000, "alerts"),
        alone_days=_number(section, "alone_days", d.alone_days, 0.0, 3650.0, "alerts"),
        duration=_number(section, "duration", d.duration, 0.0, 86_400.0, "alerts"),
        resolve_threshold=_number(section, "resolve_threshold", resolve, 0.0, 1.0, "alerts"),
        resolve_after=_integer(section, "resolve_after", d.resolve_after, 1, 1_000_000, "alerts"),
        reminder_interval=_number(
            section, "reminder_interval", d.reminder_interval, 0.0, 7 * 86_400.0, "alerts"
        ),
        cooldown=_number(section, "cooldown", d.cooldown, 0.0, 7 * 86_400.0, "alerts"),
        link_template=_text(section, "link_template", d.link_template, "alerts"),
        slack_webhook_env=_text(section, "slack_webhook_env", d.slack_webhook_env, "alerts"),
        webhook_env=_text(section, "webhook_env", d.webhook_env, "alerts"),
        log=log,
        queue_size=_integer(section, "queue_size", d.queue_size, 1, 1_000_000, "alerts"),
        messages_per_second=_number(
            section, "messages_per_second", d.messages_per_second, 0.01, 100.0, "alerts"
        ),
        digest_after=_integer(section, "digest_after", d.digest_after, 1, 10_000, "alerts"),
        timeout=_number(section, "timeout", d.timeout, 0.1, 300.0, "alerts"),
        max_retries=_integer(section, "max_retries", d.max_retries, 0, 100, "alerts"),
        shutdown_grace=_number(section, "shutdown_grace", d.shutdown_grace, 0.0, 4.0, "alerts"),
    )


def _state(section: Any) -> StateConfig:
    _require_mapping(section, "state")
    _reject_unknown(section, StateConfig, "state")
    return StateConfig(
        file=_text(section, "file", StateConfig.file, "state"),
        interval=_number(section, "interval", StateConfig.interval, 0.1, 86_400.0, "state"),
    )


def _self_metrics(section: Any) -> SelfMetricsConfig:
    _require_mapping(section, "self_metrics")
    _reject_unknown(section, SelfMetricsConfig, "self_metrics")
    interval = _number(
        section, "interval", SelfMetricsConfig.interval, 0.0, 86_400.0, "self_metrics"
    )
    if 0 < interval < 0.1:
        raise ConfigError(
            "self_metrics.interval", f"must be 0 (off) or at least 0.1, got {interval:g}"
        )
    measurement = _identifier(section, "measurement", SelfMetricsConfig.measurement, "self_metrics")
    if measurement.startswith("#"):  # the report would be a comment, which Telegraf skips
        raise ConfigError("self_metrics.measurement", "must not start with #")
    return SelfMetricsConfig(interval=interval, measurement=measurement)


def _limits(section: Any) -> LimitsConfig:
    _require_mapping(section, "limits")
    _reject_unknown(section, LimitsConfig, "limits")
    return LimitsConfig(
        memory_mb=_integer(section, "memory_mb", LimitsConfig.memory_mb, 16, 2**24, "limits"),
        max_key_bytes=_integer(
            section, "max_key_bytes", LimitsConfig.max_key_bytes, 64, 10_000_000, "limits"
        ),
    )


# ---------------------------------------------------------------------------------------------
# Memory: estimates on the generous side, so that what is accepted fits.

MIB = 1 << 20
_BRANCH_BYTES = 64  # per tree node: split feature and threshold, and their lists for the walk
_BOX_BYTES = 16  # per leaf and feature: a leaf's cell (two floats), for explanations
_LEAF_BYTES = 16  # per series and leaf: live and reference counts, and the leaf's score sum
_RIVER_LEAF_BYTES = 1000  # river keeps each series' every node as Python objects
RANGE_SAMPLE_EVERY = 4
"""The range view keeps one metric in this many of its reference (:mod:`hst_processor.ranges`)."""
_ROW_BYTES = 64  # a Python list of a warm-up row, without its floats
_FLOAT_BYTES = 32  # a float in a Python list: its object and the pointer to it
_SERIES_BYTES = 8192  # the calibration histogram, context statistics, alert state, objects
_KEY_COPIES = 3  # a key is held in the series, its key tuple and the lookup cache


def trees_bytes(model: ModelConfig, n_features: int) -> int:
    """The tree structure one feature set shares across its series."""
    leaves = model.n_trees << model.height  # about as many branches as leaves
    return leaves * (_BRANCH_BYTES + _BOX_BYTES * n_features)


def series_bytes(
    model: ModelConfig, n_inputs: int, n_features: int, key_bytes: int, range_rows: int = 0
) -> int:
    """One series at its largest: its leaf counts, a full warm-up buffer (raw fields gathered
    for the context fit, or features for learned limits) and the range view's reference rows
    (``range_rows``, gathered at the same time), its other state and its key."""
    leaves = model.n_trees << model.height
    per_leaf = _RIVER_LEAF_BYTES if model.engine == "river" else _LEAF_BYTES
    warmup = _warmup_bytes(model, n_inputs, n_features)
    # Each kept row and its time; then each field's median, quartiles and unit.
    ranges = range_rows * (_ROW_BYTES + _FLOAT_BYTES * (n_inputs + 1))
    if range_rows:
        ranges += _SERIES_BYTES // 2 + 4 * _FLOAT_BYTES * n_inputs  # and the calibration
    return leaves * per_leaf + warmup + ranges + _SERIES_BYTES + _KEY_COPIES * key_bytes


def range_rows(config: Config) -> int:
    """The reference rows a series' range view keeps at most (0: no range view)."""
    return sampled_rows(config.detection.range_reference) if config.uses_ranges else 0


def sampled_rows(metrics: int) -> int:
    """The rows the range view keeps of its first ``metrics``: the first, then one in
    ``RANGE_SAMPLE_EVERY``."""
    return -(-metrics // RANGE_SAMPLE_EVERY)


def _warmup_bytes(model: ModelConfig, n_inputs: int, n_features: int) -> int:
    return model.window_size * (_ROW_BYTES + _FLOAT_BYTES * max(n_inputs, n_features))


def _check_memory(config: Config) -> None:
    """Refuse at start a model whose trees and one series cannot fit in ``limits.memory_mb``
    (else it would crash at the first metric, and Telegraf restart it in a loop). Fields not
    listed count as one, the least a series has."""
    model, budget = config.model, config.limits.memory_mb * MIB
    n_inputs = len(config.features) or 1
    n_features = 2 * n_inputs if config.uses_context else len(config.model_features()) or 1
    trees = trees_bytes(model, n_features)
    one = series_bytes(model, n_inputs, n_features, 0, range_rows(config))
    if trees + one <= budget:
        return
    # Name the size that weighs most: the window (warm-up buffers) or the trees.
    warmup = _warmup_bytes(model, n_inputs, n_features)
    key = "model.window_size" if 2 * warmup > trees + one else "model.height"
    raise ConfigError(
        key,
        f"{model.n_trees} trees of height {model.height} and a window of {model.window_size} "
        f"need about {_mebibytes(trees + one)} for the trees and one series, more than "
        f"limits.memory_mb allows ({config.limits.memory_mb} MiB); lower model.height, "
        "model.n_trees or model.window_size, or raise limits.memory_mb",
    )


def _mebibytes(size: int) -> str:
    return f"{size / MIB:,.0f} MiB" if size < 10 * 1024 * MIB else f"{size / 1024 / MIB:,.0f} GiB"


def _text(section: Mapping[str, Any], name: str, default: str, prefix: str) -> str:
    value = section.get(name, default)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(_path(prefix, name), f"must be a string, got {_show(value)}")
    return value


def _log(section: Any) -> LogConfig:
    _require_mapping(section, "log")
    _reject_unknown(section, LogConfig, "log")
    return LogConfig(
        level=_choice(section, "level", LogConfig.level, LOG_LEVELS, "log"),
        repeat_interval=_number(
            section, "repeat_interval", LogConfig.repeat_interval, 0.0, 86_400.0, "log"
        ),
    )


# ---------------------------------------------------------------------------------------------
# Value checks. Each names the key and says what was expected and what was found.


def _path(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value) if not isinstance(value, bool) else str(value).lower()


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return _show(value)


def _require_mapping(value: Any, key: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a mapping of options, got {_kind(value)}")


def _reject_unknown(section: Mapping[str, Any], schema: type, prefix: str) -> None:
    assert is_dataclass(schema)
    known = [f.name for f in fields(schema)]
    for name in section:
        if name not in known:
            raise ConfigError(
                _path(prefix, str(name)), f"unknown option (known: {', '.join(known)})"
            )


def _integer(
    section: Mapping[str, Any], name: str, default: int, low: int, high: int, prefix: str = ""
) -> int:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            _path(prefix, name), f"must be an integer from {low} to {high}, got {_show(value)}"
        )
    return value


def _number(
    section: Mapping[str, Any],
    name: str,
    default: float,
    low: float,
    high: float,
    prefix: str = "",
) -> float:
    value = section.get(name, default)
    if not is_numeric(value) or not low <= value <= high:
        raise ConfigError(
            _path(prefix, name), f"must be a number from {low:g} to {high:g}, got {_show(value)}"
        )
    return float(value)


MAX_WORKERS = 64


def available_cores() -> int:
    """The cores this process may run on (its affinity, which a container's CPU set limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _workers(document: Mapping[str, Any]) -> int:
    if document.get("workers") == "auto":
        return min(available_cores(), MAX_WORKERS)
    value = document.get("workers", Config.workers)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        raise ConfigError(
            "workers", f'must be an integer from 1 to {MAX_WORKERS} or "auto", got {_show(value)}'
        )
    return value


def _boolean(section: Mapping[str, Any], name: str, default: bool, prefix: str) -> bool:
    value = section.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(_path(prefix, name), f"must be true or false, got {_show(value)}")
    return value


def _choice(
    section: Mapping[str, Any], name: str, default: str, choices: tuple[str, ...], prefix: str
) -> str:
    value = section.get(name, default)
    if value not in choices:
        raise ConfigError(
            _path(prefix, name), f"must be one of {', '.join(choices)}, got {_show(value)}"
        )
    return str(value)


_UNSAFE_NAME = re.compile(r"[\x00-\x1f\\\"]")


def _identifier(
    section: Mapping[str, Any], name: str, default: str, prefix: str, allow_empty: bool = False
) -> str:
    value = section.get(name, default)
    if value is None and allow_empty:
        return ""
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ConfigError(_path(prefix, name), f"must be a non-empty string, got {_show(value)}")
    if _UNSAFE_NAME.search(value):
        raise ConfigError(
            _path(prefix, name), "must not contain control characters, quotes or backslashes"
        )
    return value


def _names(section: Mapping[str, Any], name: str, default: Any, prefix: str = "") -> Any:
    if name not in section or section[name] is None:
        return default
    value = section[name]
    if isinstance(value, str):
        value = [value]
    key = _path(prefix, name)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(key, f"must be a list of non-empty names, got {_show(value)}")
    if len(set(value)) != len(value):
        raise ConfigError(key, "lists a name twice")
    return tuple(value)


# ---------------------------------------------------------------------------------------------
# ${ENV} interpolation


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# YAML aliases let a small file describe a huge document (a "billion laughs" bomb of nested
# aliases, or an alias that contains itself). The loader shares the aliased objects, but every
# walk over the document expands them, so the walk below is bounded: far beyond any real config.
MAX_VALUES = 100_000
MAX_DEPTH = 32
MAX_TEXT = 1 << 20  # characters of text, after ${ENV} substitution


@dataclass
class _Expansion:
    """One walk substituting ``${ENV}`` references, within the bounds above. It remembers
    which keys took a value from the environment, and those values, so that no error quotes
    them: a variable may hold a secret (a webhook URL, a token)."""

    environ: Mapping[str, str]
    values: int = 0
    text: int = 0
    keys_from_environment: set[str] = field(default_factory=set)
    used: set[str] = field(default_factory=set)

    def hide_values(self, error: ConfigError) -> ConfigError:
        """The error with every value that came from the environment left out."""
        reason = error.reason
        key = error.key
        if any(key == k or key.startswith((f"{k}.", f"{k}[")) for k in self.keys_from_environment):
            head, got, _ = reason.partition(", got ")
            reason = head + (", got a value from the environment (not shown)" if got else "")
        for value in sorted(self.used, key=len, reverse=True):
            if len(value) >= 4:  # shorter texts are not secrets and would garble the message
                reason = reason.replace(value, "<a value from the environment>")
                key = key.replace(value, "<a key from the environment>")
        changed = (key, reason) != (error.key, error.reason)
        return ConfigError(key, reason) if changed else error

    def walk(self, value: Any, key: str, depth: int, substitute: bool = True) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise ConfigError(
                "", f"the config expands to more than {MAX_VALUES:,} values (a YAML alias bomb?)"
            )
        if depth > MAX_DEPTH:
            raise ConfigError(
                key, f"nested deeper than {MAX_DEPTH} levels (a YAML alias inside itself?)"
            )
        # Walked without substitution: a value read from a variable, whose keys and values
        # are as secret as its text.
        from_environment = not substitute
        if isinstance(value, dict):
            if from_environment:
                self.used.update(str(k) for k in value)
            return {
                k: self.walk(v, _path(key, str(k)), depth + 1, substitute) for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.walk(v, f"{key}[{i}]", depth + 1, substitute) for i, v in enumerate(value)]
        if from_environment:
            self.used.add(str(value))
        if not isinstance(value, str) or not substitute:
            return value
        result = _substitute(value, self.environ, key, self.used)
        if result is not value:
            self.keys_from_environment.add(key)
        self.text += len(result) if isinstance(result, str) else len(value)
        if self.text > MAX_TEXT:
            raise ConfigError(
                key, f"the config's text expands to more than {MAX_TEXT:,} characters"
            )
        if isinstance(result, dict | list):  # YAML read from a variable: bounded alike, as is
            return self.walk(result, key, depth, substitute=False)
        return result


def _substitute(value: str, environ: Mapping[str, str], key: str, used: set[str]) -> Any:
    """``value`` with its references replaced (the same object when it has none); each
    environment value taken is added to ``used``."""
    if "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            used.add(environ[name])
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(key, f"environment variable {name} is not set")

    result = _REFERENCE.sub(substitute, value)
    if _REFERENCE.fullmatch(value):
        # A whole-value reference takes the type its text has in YAML (a number, a boolean).
        try:
            parsed = yaml.safe_load(result) if result else result
        except yaml.YAMLError:
            return result
        except RecursionError:
            raise ConfigError(key, "the environment variable's YAML is nested too deeply") from None
        return parsed
    return result

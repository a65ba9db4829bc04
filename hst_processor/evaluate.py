"""Detection measured against ground truth: event-level recall, precision, delay, false alerts.

An *event* is one labelled fault window on one machine; an *alert* is an alert opening (the
message an operator would get). A fault is detected when an alert opens on its machine inside
its window or up to ``grace`` seconds after it (a machine takes a moment to settle after a
fault); an alert is a true one when it falls in such a window, a false one otherwise. Delays run
from the fault's start to the alert's opening, in seconds and in the machine's metrics.

The HST detector's alerts are the processor's own (a replay of the file with the config); each
baseline's flags go through the same alert policy, so every detector is judged by one rule.
"""

from __future__ import annotations

import dataclasses
import io
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hst_processor.alerts import OPEN, AlertPolicy, AlertState
from hst_processor.baselines import BASELINES, Flags
from hst_processor.config import Config
from hst_processor.detector import SeriesKey
from hst_processor.labels import FaultLabel
from hst_processor.log import Log
from hst_processor.replay import Replay, Scored, replay

__all__ = [
    "Alarm",
    "Evaluation",
    "KindResult",
    "baseline_alarms",
    "combine",
    "evaluate_alarms",
    "evaluate_file",
    "format_table",
    "hst_alarms",
    "machine_tag_of",
    "suggest_threshold",
]

DAY = 86400.0


@dataclass(frozen=True)
class Alarm:
    """An alert opening: on which machine, when (seconds), and the top feature it named."""

    machine: str
    time: float
    feature: str | None = None


@dataclass
class KindResult:
    events: int = 0
    detected: int = 0
    delays_s: list[float] = field(default_factory=list)
    delays_metrics: list[int] = field(default_factory=list)
    explained: int = 0  # detected with the faulty field named first
    explainable: int = 0  # detected, of a single-field fault, with a named feature

    @property
    def recall(self) -> float:
        return self.detected / self.events if self.events else 0.0


@dataclass
class Evaluation:
    detector: str
    threshold: float | None
    kinds: dict[str, KindResult]
    alerts: int
    true_alerts: int
    machine_days: float

    @property
    def events(self) -> int:
        return sum(kind.events for kind in self.kinds.values())

    @property
    def recall(self) -> float:
        detected = sum(kind.detected for kind in self.kinds.values())
        return detected / self.events if self.events else 0.0

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else 0.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    @property
    def false_alerts(self) -> int:
        return self.alerts - self.true_alerts

    @property
    def false_per_machine_day(self) -> float:
        return self.false_alerts / self.machine_days if self.machine_days else 0.0

    def delays(self, unit: str = "metrics") -> list[float]:
        return [
            float(delay)
            for kind in self.kinds.values()
            for delay in (kind.delays_metrics if unit == "metrics" else kind.delays_s)
        ]

    @property
    def explanation_accuracy(self) -> float | None:
        explainable = sum(kind.explainable for kind in self.kinds.values())
        explained = sum(kind.explained for kind in self.kinds.values())
        return explained / explainable if explainable else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "threshold": self.threshold,
            "events": self.events,
            "recall": self.recall,
            "precision": self.precision,
            "f1": self.f1,
            "alerts": self.alerts,
            "false_alerts": self.false_alerts,
            "false_alerts_per_machine_day": self.false_per_machine_day,
            "delay_metrics": _quantiles(self.delays("metrics")),
            "delay_seconds": _quantiles(self.delays("seconds")),
            "explanation_accuracy": self.explanation_accuracy,
            "kinds": {
                name: {
                    "events": kind.events,
                    "detected": kind.detected,
                    "recall": kind.recall,
                    "delay_metrics": _quantiles([float(d) for d in kind.delays_metrics]),
                    "delay_seconds": _quantiles(kind.delays_s),
                }
                for name, kind in sorted(self.kinds.items())
            },
        }


def combine(evaluations: Sequence[Evaluation]) -> Evaluation:
    """One evaluation of several runs of the same detector (say, a suite of scenarios)."""
    kinds: dict[str, KindResult] = defaultdict(KindResult)
    for evaluation in evaluations:
        for name, part in evaluation.kinds.items():
            total = kinds[name]
            total.events += part.events
            total.detected += part.detected
            total.delays_s += part.delays_s
            total.delays_metrics += part.delays_metrics
            total.explained += part.explained
            total.explainable += part.explainable
    first = evaluations[0]
    return Evaluation(
        first.detector,
        first.threshold,
        dict(kinds),
        sum(e.alerts for e in evaluations),
        sum(e.true_alerts for e in evaluations),
        sum(e.machine_days for e in evaluations),
    )


def _quantiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p90": None}
    return {
        "median": float(statistics.median(values)),
        "p90": float(np.percentile(np.array(values), 90)),
    }


def evaluate_alarms(
    detector: str,
    threshold: float | None,
    alarms: Iterable[Alarm],
    labels: Sequence[FaultLabel],
    timelines: Mapping[str, np.ndarray],
    grace: float = 60.0,
    field_of: Mapping[str, str] | None = None,
) -> Evaluation:
    """Score ``alarms`` against ``labels``; ``timelines`` holds each machine's metric times in
    seconds (sorted), for delays in metrics and for the length of the run.

    ``field_of`` maps a feature name to the field it comes from (derived features to their
    source), for checking explanations.
    """
    by_machine: dict[str, list[Alarm]] = defaultdict(list)
    for alarm in sorted(alarms, key=lambda a: a.time):
        by_machine[alarm.machine].append(alarm)
    true_alarms: set[Alarm] = set()
    kinds: dict[str, KindResult] = defaultdict(KindResult)
    for label in labels:
        times = timelines.get(label.machine)
        if times is None or len(times) == 0:
            continue
        start = label.start_ns / 1e9
        end = label.end_ns / 1e9 if label.end_ns is not None else float(times[-1]) + 1.0
        if start > times[-1]:
            continue  # the run ended before the fault began
        result = kinds[label.kind]
        result.events += 1
        inside = [a for a in by_machine.get(label.machine, []) if start <= a.time < end + grace]
        true_alarms.update(inside)
        if not inside:
            continue
        first = inside[0]
        result.detected += 1
        result.delays_s.append(first.time - start)
        before = int(np.searchsorted(times, first.time, side="left"))
        result.delays_metrics.append(before - int(np.searchsorted(times, start, side="left")))
        if label.kind != "overload" and first.feature is not None:
            result.explainable += 1
            source = (field_of or {}).get(first.feature, first.feature)
            result.explained += source == label.field
    all_alarms = [alarm for machine in by_machine.values() for alarm in machine]
    machine_days = sum(
        (float(times[-1]) - float(times[0])) / DAY for times in timelines.values() if len(times)
    )
    return Evaluation(
        detector, threshold, dict(kinds), len(all_alarms), len(true_alarms), machine_days
    )


def machine_tag_of(config: Config) -> str:
    """The tag that names a machine: the first ``group_by`` tag (``machineID`` without one)."""
    return config.group_by[0] if config.group_by else "machineID"


def _machine(series: SeriesKey, machine_tag: str) -> str:
    return dict(series[1]).get(machine_tag, "")


def hst_alarms(result: Replay, machine_tag: str) -> list[Alarm]:
    """The alert openings of a replay."""
    return [
        Alarm(
            event.tags.get(machine_tag, ""),
            event.time,
            event.reasons[0].name if event.reasons else None,
        )
        for event in result.openings
    ]


def _by_series(records: Sequence[Scored]) -> dict[SeriesKey, list[Scored]]:
    grouped: dict[SeriesKey, list[Scored]] = defaultdict(list)
    for record in records:
        grouped[record.series].append(record)
    return grouped


def timelines(records: Sequence[Scored], machine_tag: str) -> dict[str, np.ndarray]:
    """Each machine's metric times in seconds, sorted."""
    times: dict[str, list[float]] = defaultdict(list)
    for record in records:
        times[_machine(record.series, machine_tag)].append(record.time_ns / 1e9)
    return {machine: np.sort(np.array(values)) for machine, values in times.items()}


def _alarms_from_flags(
    flags: Flags, series: list[Scored], policy: AlertPolicy, machine: str
) -> list[Alarm]:
    state = AlertState()
    alarms = []
    for flag, record in zip(flags, series, strict=True):
        if flag is None:
            continue
        when = record.time_ns / 1e9
        if policy.observe(state, 1.0 if flag else 0.0, when) == OPEN:
            alarms.append(Alarm(machine, when))
    return alarms


def baseline_alarms(
    records: Sequence[Scored], config: Config, machine_tag: str
) -> dict[str, list[Alarm]]:
    """Every baseline's alert openings on the same metrics, through the same alert policy."""
    features = tuple(config.features)
    policy = AlertPolicy(config.alerts, 0.5)
    results: dict[str, list[Alarm]] = {}
    for name, detector in BASELINES.items():
        alarms: list[Alarm] = []
        try:
            for key, series in _by_series(records).items():
                values = np.array(
                    [[record.fields.get(f, np.nan) for f in features] for record in series]
                )
                # A missing field carries its last value, as the processor does.
                for column in range(values.shape[1]):
                    mask = np.isnan(values[:, column])
                    if mask.any() and not mask.all():
                        index = np.where(~mask, np.arange(len(mask)), 0)
                        np.maximum.accumulate(index, out=index)
                        values[:, column] = values[index, column]
                flags = detector(values, features)
                alarms.extend(_alarms_from_flags(flags, series, policy, _machine(key, machine_tag)))
        except ImportError:
            continue  # the seed's detector needs river
        results[name] = alarms
    return results


def evaluate_file(
    text: str,
    labels: Sequence[FaultLabel],
    config: Config,
    *,
    thresholds: Sequence[float] = (),
    baselines: bool = True,
    grace: float = 60.0,
    machine_tag: str | None = None,
    field_of: Mapping[str, str] | None = None,
) -> tuple[list[Evaluation], list[Evaluation]]:
    """HST at the config's threshold plus the baselines, and HST at each of ``thresholds``.

    Each threshold is a full replay: with ``learn_anomalies: false`` the threshold also decides
    what the models learn, so scores from one run cannot be re-thresholded honestly.
    """
    tag = machine_tag or machine_tag_of(config)
    log = Log(io.StringIO())
    main = replay(config, io.StringIO(text), None, log, keep_records=True)
    lines = timelines(main.records, tag)
    threshold = config.detection.threshold
    results = [
        evaluate_alarms(
            "HST (hst-processor)",
            threshold,
            hst_alarms(main, tag),
            labels,
            lines,
            grace,
            field_of,
        )
    ]
    if baselines:
        for name, alarms in baseline_alarms(main.records, config, tag).items():
            results.append(evaluate_alarms(name, None, alarms, labels, lines, grace))
    sweep = []
    for value in thresholds:
        learn = config.detection.learn_threshold
        detection = dataclasses.replace(
            config.detection,
            threshold=value,
            # A learn threshold above the threshold would learn flagged metrics: keep it below.
            learn_threshold=None if learn is None else min(learn, value),
        )
        swept = dataclasses.replace(config, detection=detection)
        run = main if value == threshold else replay(swept, io.StringIO(text), None, log)
        sweep.append(
            evaluate_alarms(
                "HST (hst-processor)", value, hst_alarms(run, tag), labels, lines, grace, field_of
            )
        )
    return results, sweep


def suggest_threshold(sweep: Sequence[Evaluation], budget: float) -> Evaluation | None:
    """The threshold with the best F1 among those within ``budget`` false alerts per machine
    per day (ties: the higher threshold, the quieter pager)."""
    within = [e for e in sweep if e.false_per_machine_day <= budget]
    if not within:
        return None
    return max(within, key=lambda e: (round(e.f1, 9), e.threshold or 0.0))


def _kind_delays(result: Evaluation, kind: str) -> list[float]:
    found = result.kinds.get(kind)
    return [float(delay) for delay in found.delays_metrics] if found else []


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(results: Sequence[Evaluation], sweep: Sequence[Evaluation], budget: float) -> str:
    """The evaluation as text tables: detectors, fault kinds, and the threshold sweep."""
    lines = [
        "detector                     recall precision    F1  alerts false/machine-day "
        "delay median (p90) metrics  seconds",
    ]
    for result in results:
        metrics = _quantiles(result.delays("metrics"))
        seconds = _quantiles(result.delays("seconds"))
        lines.append(
            f"{result.detector:<28} {result.recall:6.2f} {result.precision:9.2f} "
            f"{result.f1:5.2f} {result.alerts:7d} {result.false_per_machine_day:17.2f} "
            f"{_number(metrics['median'], 0):>7} ({_number(metrics['p90'], 0)})"
            f"{_number(seconds['median'], 0):>14} ({_number(seconds['p90'], 0)})"
        )
    kinds = sorted({kind for result in results for kind in result.kinds})
    lines += ["", "recall by fault kind (events) " + "".join(f"{k:>12}" for k in kinds)]
    for result in results:
        cells = "".join(
            f"{_number(result.kinds[k].recall) if k in result.kinds else '-':>12}" for k in kinds
        )
        lines.append(f"{result.detector:<30}{cells}")
    hst = results[0]
    events = "".join(f"{hst.kinds[k].events if k in hst.kinds else 0:>12}" for k in kinds)
    lines.append(f"{'events':<30}{events}")
    delays = "".join(f"{_number(_quantiles(_kind_delays(hst, k))['median'], 0):>12}" for k in kinds)
    lines.append(f"{'HST median delay (metrics)':<30}{delays}")
    accuracy = hst.explanation_accuracy
    lines.append(
        "HST explanations: top feature is the faulty field in "
        + ("- (no explained alerts)" if accuracy is None else f"{accuracy:.0%}")
        + " of alerts on single-field faults"
    )
    if sweep:
        lines += ["", "threshold  recall precision    F1  alerts false/machine-day"]
        for result in sweep:
            lines.append(
                f"{result.threshold or 0:9.2f} {result.recall:7.2f} {result.precision:9.2f} "
                f"{result.f1:5.2f} {result.alerts:7d} {result.false_per_machine_day:17.2f}"
            )
        best = suggest_threshold(sweep, budget)
        lines.append(
            f"suggested threshold: {best.threshold:.2f} (best F1 within {budget:g} false "
            "alerts per machine per day)"
            if best is not None and best.threshold is not None
            else f"no threshold stays within {budget:g} false alerts per machine per day"
        )
    return "\n".join(lines)

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
import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hst_processor.alerts import OPEN, AlertPolicy, AlertState
from hst_processor.arrays import FloatArray
from hst_processor.config import Config
from hst_processor.context import source_of
from hst_processor.detector import SeriesKey
from hst_processor.errors import MissingExtra
from hst_processor.log import Log
from hst_processor.offline.baselines import BASELINES, EXTRAS, Flags
from hst_processor.offline.labels import FaultLabel
from hst_processor.offline.replay import Replay, Scored, replay

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
    "machine_of",
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
    normal_scored: int = 0  # scored metrics outside labelled windows (counted part only)
    normal_flagged: int = 0  # of those, at or above the threshold
    normal_tagged: int = 0  # of those, tagged anomalous (inside an episode)
    window_tag_changes: list[int] = field(default_factory=list)  # per labelled window

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
    def normal_flag_rate(self) -> float | None:
        """The share of normal metrics scored at or above the threshold."""
        return self.normal_flagged / self.normal_scored if self.normal_scored else None

    @property
    def normal_tag_rate(self) -> float | None:
        return self.normal_tagged / self.normal_scored if self.normal_scored else None

    @property
    def tag_changes(self) -> float | None:
        """How often the tag changed state inside a labelled window, on average."""
        changes = self.window_tag_changes
        return sum(changes) / len(changes) if changes else None

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
            "normal_flag_rate": self.normal_flag_rate,
            "normal_tag_rate": self.normal_tag_rate,
            "tag_changes_per_window": self.tag_changes,
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
        sum(e.normal_scored for e in evaluations),
        sum(e.normal_flagged for e in evaluations),
        sum(e.normal_tagged for e in evaluations),
        [change for e in evaluations for change in e.window_tag_changes],
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
    counted_from: Mapping[str, float] | None = None,
) -> Evaluation:
    """Score ``alarms`` against ``labels``; ``timelines`` holds each machine's metric times in
    seconds (sorted), for delays in metrics and for the length of the run.

    ``field_of`` maps a feature name to the field it comes from (derived features to their
    source), for checking explanations: an alert is explained when its top feature's field is
    one of the fields its label names (comma-separated). ``counted_from`` gives, per machine,
    the time (seconds) from which alerts, labels and days count (a published training part
    before it is left out).
    """
    if counted_from:
        timelines = {
            machine: times[times >= counted_from.get(machine, -math.inf)]
            for machine, times in timelines.items()
        }
        alarms = [a for a in alarms if a.time >= counted_from.get(a.machine, -math.inf)]
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
        if start > times[-1] or end <= times[0]:
            continue  # the fault lies outside the counted part of the run
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
        if label.field and first.feature is not None:
            result.explainable += 1
            source = (field_of or {}).get(first.feature) or source_of(first.feature)
            result.explained += source in label.field.split(",")
    all_alarms = [alarm for machine in by_machine.values() for alarm in machine]
    machine_days = sum(
        (float(times[-1]) - float(times[0])) / DAY for times in timelines.values() if len(times)
    )
    return Evaluation(
        detector, threshold, dict(kinds), len(all_alarms), len(true_alarms), machine_days
    )


def machine_tag_of(config: Config) -> str | None:
    """The tag that names a machine in labels: the first ``group_by`` tag; without one, a
    machine is named by all its series' tags (``host=a,rack=b``)."""
    return config.group_by[0] if config.group_by else None


def machine_of(tags: Mapping[str, str], machine_tag: str | None) -> str:
    if machine_tag is None:
        return ",".join(f"{key}={value}" for key, value in tags.items())
    return tags.get(machine_tag, "")


def _machine(series: SeriesKey, machine_tag: str | None) -> str:
    return machine_of(dict(series[1]), machine_tag)


def hst_alarms(result: Replay, machine_tag: str | None) -> list[Alarm]:
    """The alert openings of a replay."""
    return [
        Alarm(
            machine_of(event.tags, machine_tag),
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


def timelines(records: Sequence[Scored], machine_tag: str | None) -> dict[str, np.ndarray]:
    """Each machine's metric times in seconds, sorted."""
    times: dict[str, list[float]] = defaultdict(list)
    for record in records:
        times[_machine(record.series, machine_tag)].append(record.time_ns / 1e9)
    return {machine: np.sort(np.array(values)) for machine, values in times.items()}


def counting_starts(
    lines: Mapping[str, np.ndarray], start_ns: int | None = None, skip: int = 0
) -> dict[str, float]:
    """Per machine, the time (seconds) from which detection is counted: ``start_ns``, or after
    each machine's first ``skip`` metrics (whichever is later)."""
    starts: dict[str, float] = {}
    for machine, times in lines.items():
        begin = start_ns / 1e9 if start_ns is not None else -math.inf
        if skip and len(times):
            begin = max(begin, float(times[min(skip, len(times) - 1)]))
        starts[machine] = begin
    return starts


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


def _field_matrix(series: Sequence[Scored]) -> FloatArray:
    """A series' numeric fields (those of its first metric) as columns, a missing value
    carrying the field's last one forward, as the processor does."""
    names = tuple(sorted(series[0].fields))
    values = np.array([[record.fields.get(f, np.nan) for f in names] for record in series])
    for column in range(values.shape[1]):
        mask = np.isnan(values[:, column])
        if mask.any() and not mask.all():
            index = np.where(~mask, np.arange(len(mask)), 0)
            np.maximum.accumulate(index, out=index)
            values[:, column] = values[index, column]
    filled: FloatArray = np.nan_to_num(values)
    return filled


def baseline_alarms(
    records: Sequence[Scored],
    config: Config,
    machine_tag: str | None,
    counted_from: Mapping[str, float] | None = None,
    log: Log | None = None,
) -> dict[str, list[Alarm]]:
    """Every baseline's alert openings on the same metrics, through the same alert policy.
    Each sees all numeric fields of each series; the metrics before the counting start (at
    least 250) are what it may train on."""
    policy = AlertPolicy(config.alerts, 0.5)
    grouped = _by_series(records)
    results: dict[str, list[Alarm]] = {}
    for name, detector in BASELINES.items():
        alarms: list[Alarm] = []
        try:
            for key, series in grouped.items():
                machine = _machine(key, machine_tag)
                values = _field_matrix(series)
                begin = (counted_from or {}).get(machine, -math.inf)
                training = sum(1 for record in series if record.time_ns / 1e9 < begin)
                flags = detector(values, max(250, training))
                alarms.extend(_alarms_from_flags(flags, series, policy, machine))
        except ImportError as error:
            if log is not None:
                package, extra = EXTRAS.get(name, (error.name or "a package", "baselines"))
                missing = MissingExtra(f"baseline {name!r}", package, extra)
                log.warn(f"evaluate: left out {missing}")
            continue
        results[name] = alarms
    return results


def score_statistics(
    evaluation: Evaluation,
    records: Sequence[Scored],
    labels: Sequence[FaultLabel],
    threshold: float,
    machine_tag: str | None,
    counted_from: Mapping[str, float] | None = None,
) -> None:
    """Fill in how the score and the tag behave: on normal metrics (outside labelled windows,
    scored, in the counted part) the share at or above the threshold and the share tagged;
    inside each labelled window, how often the tag changed state."""
    windows: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for label in labels:
        windows[label.machine].append((label.start_ns, label.end_ns or 2**63 - 1))
    for key, series in _by_series(records).items():
        machine = _machine(key, machine_tag)
        begin_ns = (counted_from or {}).get(machine, -math.inf) * 1e9
        spans = windows.get(machine, [])
        times = np.array([record.time_ns for record in series])
        flags = [record.flagged for record in series]
        inside = np.zeros(len(series), dtype=bool)
        for start, end in spans:
            inside |= (times >= start) & (times < end)
            first, last = np.searchsorted(times, [start, end])
            if end <= begin_ns or first == last:
                continue
            # Changes into and within the window: from the metric just before it to its last.
            around = flags[max(0, int(first) - 1) : int(last)]
            evaluation.window_tag_changes.append(sum(a != b for a, b in itertools.pairwise(around)))
        for record, labelled in zip(series, inside.tolist(), strict=True):
            if labelled or record.score is None or record.time_ns < begin_ns:
                continue
            evaluation.normal_scored += 1
            evaluation.normal_flagged += record.score >= threshold
            evaluation.normal_tagged += record.flagged


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
    start_ns: int | None = None,
    skip: int = 0,
    log: Log | None = None,
) -> tuple[list[Evaluation], list[Evaluation]]:
    """HST at the config's threshold plus the baselines, and HST at each of ``thresholds``.

    Detection is counted from ``start_ns`` or after each machine's first ``skip`` metrics
    (the models see everything before it, as they would in production). Each threshold is a
    full replay: the threshold also decides what the models learn, so scores from one run
    cannot be re-thresholded honestly.
    """
    tag = machine_tag if machine_tag is not None else machine_tag_of(config)
    quiet = Log(io.StringIO())
    main = replay(config, io.StringIO(text), None, quiet, keep_records=True)
    lines = timelines(main.records, tag)
    starts = counting_starts(lines, start_ns, skip)
    threshold = config.detection.threshold

    def judge(name: str, value: float | None, alarms: list[Alarm], explain: bool) -> Evaluation:
        sources = field_of if explain else None
        return evaluate_alarms(name, value, alarms, labels, lines, grace, sources, starts)

    hst = judge("HST (hst-processor)", threshold, hst_alarms(main, tag), True)
    score_statistics(hst, main.records, labels, threshold, tag, starts)
    results = [hst]
    if baselines:
        for name, alarms in baseline_alarms(main.records, config, tag, starts, log).items():
            results.append(judge(name, None, alarms, False))
    sweep = []
    for value in thresholds:
        learn = config.detection.learn_threshold
        resolve = config.detection.resolve_threshold
        detection = dataclasses.replace(
            config.detection,
            threshold=value,
            # A learn threshold above the threshold would learn flagged metrics: keep it below.
            learn_threshold=None if learn is None else min(learn, value),
            resolve_threshold=None if resolve is None else min(resolve, value),
        )
        swept = dataclasses.replace(config, detection=detection)
        run = main if value == threshold else replay(swept, io.StringIO(text), None, quiet)
        sweep.append(judge("HST (hst-processor)", value, hst_alarms(run, tag), True))
    return results, sweep


def suggest_threshold(sweep: Sequence[Evaluation], budget: float) -> Evaluation | None:
    """The threshold with the best F1 among those within ``budget`` false alerts per machine
    per day (ties: the higher threshold, the quieter pager)."""
    within = _within(sweep, budget)
    if not within:
        return None
    return max(within, key=lambda e: (round(e.f1, 9), e.threshold or 0.0))


def _within(sweep: Sequence[Evaluation], budget: float) -> list[Evaluation]:
    """The thresholds a suggestion chooses from: within the false-alert budget."""
    return [e for e in sweep if e.false_per_machine_day <= budget]


FEW_WINDOWS = 10
"""Below this many labelled windows a suggested threshold says it stands on little."""


def suggestion_text(best: Evaluation, sweep: Sequence[Evaluation], budget: float) -> str:
    """The suggestion, with what it stands on: how many thresholds tie with it, on how many
    labelled windows (two faults that every threshold finds suggest nothing).

    >>> found = {"bearing": KindResult(events=2, detected=2)}
    >>> sweep = [Evaluation("HST", t, found, 2, 2, 1.0) for t in (0.1, 0.2)]
    >>> print(suggestion_text(sweep[1], sweep, 1.0))  # doctest: +NORMALIZE_WHITESPACE
    suggested threshold: 0.20 (best F1 within 1 false alert per machine per day, on 2
    labelled windows; 2 thresholds tie, the highest is suggested; few windows: label more
    faults before changing the threshold)
    """
    ties = sum(1 for e in _within(sweep, budget) if round(e.f1, 9) == round(best.f1, 9))
    alerts = "alert" if budget == 1 else "alerts"
    text = (
        f"suggested threshold: {best.threshold:.2f} (best F1 within {budget:g} false {alerts} "
        f"per machine per day, on {best.events} labelled windows"
    )
    if ties > 1:
        text += f"; {ties} thresholds tie, the highest is suggested"
    if best.events < FEW_WINDOWS:
        text += "; few windows: label more faults before changing the threshold"
    return text + ")"


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
        + " of explained alerts (its field is one the label names)"
    )
    if hst.normal_flag_rate is not None:
        changes = hst.tag_changes
        lines.append(
            f"HST on normal metrics: {hst.normal_flag_rate:.3%} at or above the threshold, "
            f"{hst.normal_tag_rate or 0.0:.3%} tagged anomalous; the tag changed "
            + ("-" if changes is None else f"{changes:.1f}")
            + " times per labelled window"
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
            suggestion_text(best, sweep, budget)
            if best is not None and best.threshold is not None
            else f"no threshold stays within {budget:g} false alerts per machine per day"
        )
    return "\n".join(lines)

"""Score a file of line protocol offline, through the live processor's own code path.

``replay`` feeds the file to a :class:`~hst_processor.processor.Processor` in the same chunks of
text stdin would bring, so the scores are the live ones to the bit. Alerts are collected instead
of sent, and every scored metric can be kept as a :class:`Scored` record for evaluation.

>>> import io
>>> from hst_processor.config import load_config
>>> from hst_processor.log import Log
>>> lines = "".join(f"m,host=a x={i % 7} {i}\\n" for i in range(500))
>>> result = replay(load_config(None), io.StringIO(lines), io.StringIO(), Log(io.StringIO()))
>>> summary = result.summaries["m,host=a"]
>>> (summary.metrics, summary.warmup, summary.scored)
(500, 350, 150)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from hst_processor.alerts import OPEN, AlertEvent
from hst_processor.config import Config
from hst_processor.detector import SeriesKey, Verdict, describe_series
from hst_processor.lineproto import Metric, is_numeric
from hst_processor.log import Log
from hst_processor.notify import AlertCounters, Notifier
from hst_processor.processor import Processor

__all__ = ["AlertCollector", "Replay", "Scored", "SeriesSummary", "replay"]

CHUNK = 1 << 20


class AlertCollector:
    """A notifier that keeps every alert event instead of sending it."""

    def __init__(self) -> None:
        self.events: list[AlertEvent] = []
        self.counters = AlertCounters()

    def enqueue(self, event: AlertEvent) -> None:
        self.events.append(event)
        self.counters.alerts_sent += 1

    def close(self, deadline: float = 0.0) -> None:
        del deadline


@dataclass
class SeriesSummary:
    metrics: int = 0
    warmup: int = 0
    scored: int = 0
    anomalous: int = 0
    alerts: int = 0  # alerts that would have opened

    @property
    def anomalous_share(self) -> float:
        return self.anomalous / self.scored if self.scored else 0.0


@dataclass(frozen=True)
class Scored:
    """One metric as the detector judged it (score None: still in warm-up)."""

    series: SeriesKey
    time_ns: int
    score: float | None
    fields: dict[str, float]
    flagged: bool = False  # the tag said anomalous (inside an episode)


@dataclass
class Replay:
    summaries: dict[str, SeriesSummary] = field(default_factory=dict)
    alerts: list[AlertEvent] = field(default_factory=list)
    records: list[Scored] = field(default_factory=list)
    metrics_in: int = 0

    @property
    def openings(self) -> list[AlertEvent]:
        return [event for event in self.alerts if event.kind == OPEN]


def replay(
    config: Config,
    source: TextIO,
    sink: TextIO | None,
    log: Log,
    *,
    keep_records: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Replay:
    """Score ``source`` into ``sink`` (None: discard) and summarise what happened."""
    result = Replay()
    collector = AlertCollector()
    # Keyed by series key on the metric path; named once, at the end.
    by_key: dict[SeriesKey, SeriesSummary] = {}

    def observe(metric: Metric, verdict: Verdict) -> None:
        key = processor.detector.series_key(metric)
        summary = by_key.get(key)
        if summary is None:
            summary = by_key[key] = SeriesSummary()
        summary.metrics += 1
        if verdict.score is None:
            summary.warmup += 1
        else:
            summary.scored += 1
            summary.anomalous += verdict.tag_value == "true"
        if keep_records:
            numeric = {
                field: float(value) for field, value in metric.fields.items() if is_numeric(value)
            }
            result.records.append(
                Scored(
                    key, metric.timestamp or 0, verdict.score, numeric, verdict.tag_value == "true"
                )
            )

    processor = Processor(config, log, notifier=Notifier([collector], 0.0), observer=observe)
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            break
        text = processor.feed(chunk)
        if sink is not None:
            sink.write(text)
        if progress is not None:
            progress(len(chunk))
    tail = processor.finish()
    if sink is not None:
        sink.write(tail)
    processor.close()
    result.alerts = collector.events
    result.metrics_in = processor.stats.metrics
    for event in result.openings:
        opened = by_key.get((event.measurement, tuple(event.tags.items())))
        if opened is not None:
            opened.alerts += 1
    result.summaries = {describe_series(key): summary for key, summary in by_key.items()}
    return result


def progress_bar(total_bytes: int, stream: TextIO | None = None) -> Callable[[int], None] | None:
    """A tqdm bar over the file's bytes when ``stream`` (stderr now) is a terminal, else None."""
    stream = stream if stream is not None else sys.stderr
    if not stream.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, file=stream, leave=False)

    def advance(size: int) -> None:
        bar.update(size)

    return advance

"""The processor's report on itself: one metric every ``self_metrics.interval``, among its output.

Telegraf reports on itself with its ``internal`` plugin; this is the same for the processor.
Every interval (10 s by default) the running processor writes one extra line of line protocol,
measurement ``hst_processor``, tags ``host`` and ``version``, whose fields are counters since the
process started and a few gauges (:func:`report_fields` lists them). Telegraf takes it like any
metric the processor prints and sends it on to the outputs.

The report never takes a metric's place: it is written between two batches' output, after the
last metric of one and before the first of the next, so every metric still comes out once, in
order. It is written by :func:`hst_processor.processor.serve` alone, the loop that runs under
Telegraf: ``replay`` and ``evaluate`` never write one.

>>> report = SelfReport(SelfMetricsConfig(interval=10.0), host="gw-1", clock=lambda: 0.0)
>>> report.timeout()  # seconds until the first report
10.0
>>> report.record_batch(0.002)
>>> fields = {"lines_in": 4, "batch_p99_ms": 2.0}
>>> print(report.format(fields, time_ns=1_700_000_000_000_000_000), end="")
hst_processor,host=gw-1,version=0.1.0 lines_in=4i,batch_p99_ms=2 1700000000000000000
"""

from __future__ import annotations

import os
import resource
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from hst_processor import __version__
from hst_processor.config import SelfMetricsConfig
from hst_processor.lineproto import format_metric
from hst_processor.notify import AlertCounters
from hst_processor.state import SaveCounters
from hst_processor.workers import WorkerPool

if TYPE_CHECKING:
    from hst_processor.processor import Processor

__all__ = ["SelfReport", "report_fields", "resident_bytes"]

# Batch latencies kept for one report's percentiles: the latest, if a report covers more.
MAX_LATENCIES = 10_000


class SelfReport:
    """When the next report is due, and the batch latencies since the last one."""

    def __init__(
        self,
        config: SelfMetricsConfig,
        host: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.tags = {"host": socket.gethostname() if host is None else host, "version": __version__}
        self._clock = clock
        self._next = clock() + config.interval
        self._latencies: deque[float] = deque(maxlen=MAX_LATENCIES)
        self.written = 0  # reports taken so far

    @property
    def enabled(self) -> bool:
        return self.config.interval > 0

    def record_batch(self, seconds: float) -> None:
        """One batch, from its read to its output written."""
        self._latencies.append(seconds)

    def timeout(self) -> float | None:
        """Seconds until the next report is due (``None``: reports are off)."""
        if not self.enabled:
            return None
        return max(0.0, self._next - self._clock())

    def due(self) -> bool:
        return self.enabled and self._clock() >= self._next

    def take(self, processor: Processor) -> str:
        """The report now, as one line; the next is due one interval later."""
        now = self._clock()
        # A late report (a long batch) does not bring the next one closer: at least one
        # interval after this one.
        self._next = max(self._next, now) + self.config.interval
        fields = report_fields(processor, list(self._latencies))
        self._latencies.clear()
        self.written += 1
        return self.format(fields, time.time_ns())

    def format(self, fields: Mapping[str, int | float], time_ns: int) -> str:
        return format_metric(self.config.measurement, self.tags, fields, time_ns)


def report_fields(processor: Processor, latencies: list[float]) -> dict[str, int | float]:
    """The report's fields: counters since the start (integers), then gauges.

    ``lines_in``/``lines_out`` count every line (a blank one and a comment too) and stay
    equal between batches; ``metrics_in`` the lines read as metrics; ``passed_through`` the
    lines that went out exactly as they came; the batch latencies are over the batches since
    the last report (absent when there were none)."""
    stats, counters = processor.stats, processor.detector.counters
    fields: dict[str, int | float] = {
        "lines_in": stats.lines_in,
        "lines_out": stats.lines_out,
        "metrics_in": stats.metrics,
        "scored": counters.scored,
        "anomalous": counters.anomalous,
        "warmup": counters.warmup,
        "unparseable": stats.unparseable,
        "passed_through": stats.passed_through,
        "series": processor.detector.series_count(),
        "evicted": counters.evicted,
        "lost": counters.lost,
        "open_episodes": processor.detector.open_episodes(),
    }
    # Without a webhook or a state file these stay 0: every report has the same fields.
    sent = processor.notifier.counters if processor.notifier is not None else AlertCounters()
    saves = processor.state.counters if processor.state is not None else SaveCounters()
    fields.update(
        alerts_sent=sent.alerts_sent,
        alerts_retried=sent.retried,
        alerts_dropped=sent.dropped,
        alerts_failed=sent.failed,
        state_saves=saves.saves,
        state_save_failures=saves.failed,
        state_save_seconds=saves.last_seconds,
        state_save_bytes=saves.last_bytes,
    )
    if latencies:
        p50, p99 = np.percentile(latencies, [50, 99])
        fields.update(batch_p50_ms=float(p50) * 1000, batch_p99_ms=float(p99) * 1000)
    fields["rss_bytes"] = resident_bytes()
    if isinstance(processor.detector, WorkerPool):  # the scoring workers' memory is ours too
        fields["rss_bytes"] += sum(map(resident_bytes, processor.detector.worker_pids()))
    return fields


def resident_bytes(process: int | None = None) -> int:
    """A process's resident memory now (Linux): this one's, else its peak so far; another's
    (a scoring worker), else 0."""
    try:
        with open(f"/proc/{process or 'self'}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        if process is not None:
            return 0  # it has just ended
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak * 1024  # kibibytes on Linux

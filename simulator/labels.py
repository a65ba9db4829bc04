"""Ground truth: every fault switch, written as it happens, read back as fault windows.

The labels file is JSON lines. A fault writes one record when it starts (``end`` null) and the
same record again, with its ``end``, when it stops, so a run that is killed still leaves every
fault it started on file. Times are the simulated clock's, the same nanoseconds as the metrics'
timestamps, so a labelled window lines up with the metrics exactly.

>>> import io, json
>>> sink = io.StringIO()
>>> log = LabelLog(sink)
>>> label_id = log.start("machine2", "bearing", "vibration", 1_000_000_000, source="api")
>>> log.end(label_id, 61_000_000_000)
>>> [label.end_ns for label in parse_labels(sink.getvalue())]
[61000000000]
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from typing import IO

from hst_processor.offline.labels import FaultLabel, parse_labels, read_labels
from hst_processor.times import iso_time

__all__ = ["FaultLabel", "LabelLog", "iso_time", "parse_labels", "read_labels"]


class LabelLog:
    """Appends label records to an open text stream; safe to call from the panel's threads."""

    def __init__(self, stream: IO[str] | None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._open: dict[int, FaultLabel] = {}
        self._next_id = 1

    def start(self, machine: str, kind: str, field: str, time_ns: int, source: str) -> int:
        """Record a fault's start; the id is what ``end`` takes."""
        with self._lock:
            label = FaultLabel(self._next_id, machine, kind, field, time_ns, None, source)
            self._next_id += 1
            self._open[label.id] = label
            self._write(label)
            return label.id

    def end(self, label_id: int, time_ns: int) -> None:
        """Record the end of a fault started with ``start``."""
        with self._lock:
            label = self._open.pop(label_id)
            self._write(replace(label, end_ns=max(time_ns, label.start_ns)))

    def _write(self, label: FaultLabel) -> None:
        if self._stream is not None:
            self._stream.write(json.dumps(label.record()) + "\n")
            self._stream.flush()

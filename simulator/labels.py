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
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

__all__ = ["FaultLabel", "LabelLog", "iso_time", "parse_labels", "read_labels"]


@dataclass(frozen=True)
class FaultLabel:
    """One fault window on one machine. ``end_ns`` is None while the fault lasts."""

    id: int
    machine: str
    kind: str
    field: str
    start_ns: int
    end_ns: int | None
    source: str

    def record(self) -> dict[str, Any]:
        """The JSON object written for this label, with readable times beside the numbers."""
        record = asdict(self)
        record["start"] = iso_time(self.start_ns)
        record["end"] = None if self.end_ns is None else iso_time(self.end_ns)
        return record


def iso_time(time_ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds, the way InfluxDB prints times.

    >>> iso_time(1_767_225_600_000_000_001)
    '2026-01-01T00:00:00.000000001Z'
    """
    seconds, nanoseconds = divmod(time_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{nanoseconds:09d}Z"


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


def parse_labels(text: str) -> list[FaultLabel]:
    """Fault windows from a labels file's text, one per fault, the latest record winning."""
    labels: dict[int, FaultLabel] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            label = FaultLabel(
                id=int(record["id"]),
                machine=str(record["machine"]),
                kind=str(record["kind"]),
                field=str(record["field"]),
                start_ns=int(record["start_ns"]),
                end_ns=None if record["end_ns"] is None else int(record["end_ns"]),
                source=str(record["source"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"labels line {number}: not a fault label ({error})") from None
        labels[label.id] = label
    return sorted(labels.values(), key=lambda label: (label.start_ns, label.id))


def read_labels(path: str | Path) -> list[FaultLabel]:
    """Fault windows from a labels file."""
    return parse_labels(Path(path).read_text(encoding="utf-8"))

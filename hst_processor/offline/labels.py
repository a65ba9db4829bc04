"""Fault labels: the ground truth a labelled run leaves beside its metrics.

Whatever makes a labelled run writes them (the bundled simulator's ``simulator.labels.LabelLog``
does); ``hst-processor evaluate`` and ``plot`` read them. A labels file is JSON lines: each
fault is written when it starts (``end_ns`` null) and again, with its end, when it stops; the
last record of an ``id`` wins. Windows are half-open, ``[start_ns, end_ns)``, in the metrics'
own nanoseconds.

>>> labels = parse_labels(
...     '{"id": 1, "machine": "m1", "kind": "spike", "field": "x", "start_ns": 5, '
...     '"end_ns": null, "source": "api"}\\n'
...     '{"id": 1, "machine": "m1", "kind": "spike", "field": "x", "start_ns": 5, '
...     '"end_ns": 8, "source": "api"}\\n')
>>> [(label.kind, label.start_ns, label.end_ns) for label in labels]
[('spike', 5, 8)]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hst_processor.times import iso_time

__all__ = ["FaultLabel", "parse_labels", "read_labels"]


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

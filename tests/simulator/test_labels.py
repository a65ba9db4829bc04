"""The labels file: written as faults switch, read back as fault windows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from simulator.labels import LabelLog, parse_labels, read_labels


def test_a_fault_is_on_file_from_its_start_and_closed_by_its_end() -> None:
    stream = io.StringIO()
    log = LabelLog(stream)
    first = log.start("machine1", "bearing", "vibration", 10, source="panel")
    second = log.start("machine2", "spike", "power", 20, source="scenario")
    # Killed here: the file already says both faults began, with no end yet.
    labels = parse_labels(stream.getvalue())
    assert [(label.machine, label.end_ns) for label in labels] == [
        ("machine1", None),
        ("machine2", None),
    ]
    log.end(second, 23)
    log.end(first, 50)
    labels = parse_labels(stream.getvalue())
    assert [(label.kind, label.start_ns, label.end_ns, label.source) for label in labels] == [
        ("bearing", 10, 50, "panel"),
        ("spike", 20, 23, "scenario"),
    ]
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert records[-1]["start"] == "1970-01-01T00:00:00.000000010Z"
    assert records[-1]["end"] == "1970-01-01T00:00:00.000000050Z"


def test_an_end_never_precedes_its_start() -> None:
    stream = io.StringIO()
    log = LabelLog(stream)
    log.end(log.start("machine1", "stuck", "temperature", 100, source="api"), 40)
    assert parse_labels(stream.getvalue())[0].end_ns == 100


def test_a_broken_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"id": 1, "machine": "m", "kind": "spike"}\n\n')
    with pytest.raises(ValueError, match="labels line 1: not a fault label"):
        read_labels(path)

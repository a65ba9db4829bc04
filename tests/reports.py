"""The processor's self-metric reports (``hst_processor``), told apart from the metrics.

A running processor writes a report every ``self_metrics.interval`` (10 s by default) between
two batches' output. A test that pipes a stream through the command and compares the output
metric for metric sets the reports aside first: how many come depends on how long the run took.
"""

from __future__ import annotations

__all__ = ["REPORT_PREFIX", "is_report", "metric_lines", "report_lines"]

REPORT_PREFIX = b"hst_processor,"


def is_report(line: bytes) -> bool:
    return line.startswith(REPORT_PREFIX)


def metric_lines(output: bytes) -> list[bytes]:
    """The output's lines (each with its newline) that are not reports."""
    return [line for line in output.splitlines(True) if not is_report(line)]


def report_lines(output: bytes) -> list[bytes]:
    return [line for line in output.splitlines(True) if is_report(line)]

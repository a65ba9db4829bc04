"""What went through the processor, line by line: the counts of its exit summary and reports."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["Stats", "add_counts"]

_Counts = TypeVar("_Counts", bound="DataclassInstance")


def add_counts(total: _Counts, more: _Counts) -> _Counts:
    """Add each count of ``more`` (a dataclass of numbers) to ``total``'s; return ``total``.

    >>> add_counts(Stats(lines_in=2), Stats(lines_in=3, blank=1)).lines_in
    5
    """
    for name, value in dataclasses.asdict(more).items():
        setattr(total, name, getattr(total, name) + value)
    return total


@dataclass
class Stats:
    """What went through, line by line ("line": one metric's text, a quoted string's newlines
    included, or a blank line or a comment)."""

    lines_in: int = 0
    lines_out: int = 0
    unparseable: int = 0  # not UTF-8, cut off and held too long included
    cut_off: int = 0  # the input ended inside a metric
    blank: int = 0
    comments: int = 0
    not_utf8: int = 0
    passed_through: int = 0  # lines that went out exactly as they came

    @property
    def metrics(self) -> int:
        """Lines read as metrics: neither blank, nor a comment, nor unparseable."""
        return self.lines_in - self.unparseable - self.blank - self.comments

    def add(self, more: Stats) -> None:
        """Count ``more`` in too (a scoring worker's batch)."""
        add_counts(self, more)

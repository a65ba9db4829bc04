"""What went through the processor, line by line: the counts of its exit summary and reports."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["Stats"]


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
        for name, value in dataclasses.asdict(more).items():
            setattr(self, name, getattr(self, name) + value)

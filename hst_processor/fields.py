"""Reading a metric's fields into a row: the first stage of the per-metric path.

A series reads a fixed, sorted list of fields (its ``inputs``). A metric need not carry all of
them (Telegraf merges and splits metrics freely): a missing field, or one that is not a number,
takes its last known value, and until every field has been seen once there is no row to score.
A metric that carries none of them as a number has no row either: scoring the last values
again would count one reading twice, and learning it would teach the model a point that was
never measured. :class:`LastValues` is one series' slice of this stage.

>>> values = LastValues.of(2)
>>> values.read({"load": 0.5}, ("load", "temp")) is None  # temp never seen
True
>>> values.read({"temp": 40, "load": 0.7}, ("load", "temp"))
[0.7, 40.0]
>>> values.read({"temp": "hot", "load": 0.8}, ("load", "temp")), values.rejected
([0.8, 40.0], [('temp', 'hot')])
>>> values.read({"status": "ok"}, ("load", "temp")) is None  # none of its fields
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hst_processor.lineproto import is_numeric

__all__ = ["LastValues"]


@dataclass
class LastValues:
    """The last known value of each field a series reads (``None``: never seen)."""

    values: list[float | None]
    complete: bool = False  # every field has been seen at least once
    # The fields of the last read that were not numbers, with their values (for a warning).
    rejected: list[tuple[str, Any]] = field(default_factory=list, compare=False)
    fresh: int = field(default=0, compare=False)  # numbers the last read found

    @classmethod
    def of(cls, count: int) -> LastValues:
        return cls([None] * count)

    def read(self, fields: Mapping[str, Any], inputs: Sequence[str]) -> list[float] | None:
        """The row of ``inputs`` for a metric's ``fields``, missing ones carried forward;
        ``None`` while some field has never been seen, and for a metric with none of them
        as a number. Values that are not numbers are carried forward too, and listed in
        :attr:`rejected` until the next read."""
        values = self.values
        if self.rejected:
            self.rejected = []
        fresh = 0
        for position, name in enumerate(inputs):
            value = fields.get(name)
            if value.__class__ is float:  # the common case first: it is most of the work
                values[position] = value
                fresh += 1
            elif value is None:
                continue
            elif is_numeric(value):
                values[position] = float(value)
                fresh += 1
            else:
                self.rejected.append((name, value))
        self.fresh = fresh
        if not fresh:
            return None
        if not self.complete:
            if any(value is None for value in values):
                return None
            self.complete = True
        return values.copy()  # type: ignore[return-value]

    def export(self) -> dict[str, Any]:
        """Plain data for the snapshot's series entry."""
        return {"last_values": self.values, "complete": self.complete}

    @classmethod
    def restore(cls, saved: Mapping[str, Any]) -> LastValues:
        """The values :meth:`export` wrote (the snapshot's check has vetted their shape)."""
        return cls(list(saved["last_values"]), bool(saved["complete"]))

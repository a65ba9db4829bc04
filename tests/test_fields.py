"""Reading a metric's fields: missing and non-numeric ones carried forward, a row once complete."""

from __future__ import annotations

import doctest

import hst_processor.fields
from hst_processor.fields import LastValues

INPUTS = ("load", "power", "temp")


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(hst_processor.fields).failed == 0


def test_no_row_until_every_field_was_seen_then_missing_ones_carry_forward() -> None:
    values = LastValues.of(len(INPUTS))
    assert values.read({"load": 1.0, "power": 2.0}, INPUTS) is None
    assert not values.complete
    assert values.read({"temp": 3}, INPUTS) == [1.0, 2.0, 3.0]
    assert values.complete
    assert values.read({"power": 5.5, "other": 9.0}, INPUTS) == [1.0, 5.5, 3.0]


def test_a_non_numeric_value_is_reported_and_the_last_known_value_kept() -> None:
    values = LastValues.of(len(INPUTS))
    values.read({"load": 1.0, "power": 2.0, "temp": 3.0}, INPUTS)
    row = values.read({"load": "high", "power": True, "temp": 4}, INPUTS)
    assert row == [1.0, 2.0, 4.0]  # neither a string nor a boolean is a number to the trees
    assert values.rejected == [("load", "high"), ("power", True)]
    values.read({"load": 5.0}, INPUTS)
    assert values.rejected == []  # only the last read's


def test_a_row_is_a_copy_the_caller_may_extend() -> None:
    values = LastValues.of(2)
    row = values.read({"load": 1.0, "power": 1.0}, ("load", "power"))
    assert row is not None
    row.append(99.0)
    assert values.read({"power": 2.0}, ("load", "power")) == [1.0, 2.0]


def test_a_metric_with_none_of_the_fields_has_no_row_and_changes_nothing() -> None:
    values = LastValues.of(len(INPUTS))
    assert values.read({"load": 1.0, "power": 2.0, "temp": 3.0}, INPUTS) is not None
    # Scoring the last values again would count one reading twice: no row.
    assert values.read({"status": "ok", "load": "high"}, INPUTS) is None
    assert values.rejected == [("load", "high")]
    assert values.read({"power": 5.0}, INPUTS) == [1.0, 5.0, 3.0]


def test_export_and_restore_round_trip_an_incomplete_series() -> None:
    values = LastValues.of(len(INPUTS))
    values.read({"load": 1.0}, INPUTS)
    restored = LastValues.restore(values.export())
    assert restored == values and not restored.complete
    assert restored.read({"power": 2.0, "temp": 3.0}, INPUTS) == [1.0, 2.0, 3.0]

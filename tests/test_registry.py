"""The live series within max_series and limits.memory_mb, and the trees they share."""

from __future__ import annotations

import io
from typing import Any

from hst_processor.config import MIB, parse_config
from hst_processor.fields import LastValues
from hst_processor.log import Log
from hst_processor.registry import MIN_KEPT_ENGINES, SeriesTable
from hst_processor.series import Series, SeriesKey


def make_table(**settings: Any) -> tuple[SeriesTable, io.StringIO]:
    stderr = io.StringIO()
    config = parse_config({"model": {"window_size": 20, "n_trees": 2, "height": 3}, **settings})
    return SeriesTable(config, Log(stderr)), stderr


def key(name: str) -> SeriesKey:
    return ("m", (("id", name),))


def add(table: SeriesTable, name: str, features: tuple[str, ...] = ("a",)) -> Series | None:
    """A new series as the detector adds one: room made for what it may hold, then adopted."""
    footprint = table.new_series_bytes(key(name), len(features), features)
    if table.make_room(footprint) is None:
        return None
    series = Series(
        key=key(name),
        features=features,
        masses=table.engine(features).new_masses(),
        fields=LastValues.of(len(features)),
        footprint=footprint,
    )
    table.adopt(series)
    return series


def test_the_least_recently_seen_series_goes_first_at_max_series() -> None:
    table, stderr = make_table(max_series=2)
    add(table, "a")
    add(table, "b")
    assert table.get(key("a")) is not None  # seen again: now the most recent
    add(table, "c")
    assert list(table.series) == [key("a"), key("c")]
    assert "max_series=2 reached: forgot the least recently seen series m,id=b" in (
        stderr.getvalue()
    )


def test_the_footprint_follows_the_series_and_bounds_them_by_bytes() -> None:
    table, stderr = make_table(limits={"memory_mb": 16}, max_series=1_000_000)
    long_id = "k" * 4000  # keys of 4 KB: about 4,000 series fill 16 MiB
    for i in range(10_000):
        add(table, f"{long_id}{i}")
        if "limits.memory_mb=16 reached" in stderr.getvalue():
            break
    assert "limits.memory_mb=16 reached" in stderr.getvalue()
    live = sum(series.footprint for series in table.series.values())
    assert table.footprint == live <= 16 * MIB


def test_a_series_bigger_than_the_budget_is_refused_and_nothing_is_forgotten() -> None:
    table, stderr = make_table(limits={"memory_mb": 16})
    add(table, "small")
    assert add(table, "k" * (17 * MIB)) is None  # its key alone passes the budget
    assert list(table.series) == [key("small")]
    assert "more than limits.memory_mb=16: not modelled" in stderr.getvalue()


def test_forgotten_rows_are_reused_only_after_settling() -> None:
    table, _ = make_table(max_series=1)
    first = add(table, "a")
    second = add(table, "b")  # forgets "a"
    assert first is not None and second is not None
    assert second.masses.slot != first.masses.slot  # "a" may still be scored in this batch
    table.settle()
    third = add(table, "c")  # forgets "b": its row is free only after the next settle
    table.settle()
    assert third is not None and third.masses.slot == first.masses.slot


def test_settling_lets_go_of_the_trees_no_live_series_uses() -> None:
    table, _ = make_table(max_series=1)
    for i in range(MIN_KEPT_ENGINES + 1):
        add(table, str(i), (f"field{i}",))
    assert len(table.engines) == MIN_KEPT_ENGINES + 1
    table.settle()
    assert list(table.engines) == [(f"field{MIN_KEPT_ENGINES}",)]


def test_forget_all_empties_the_table() -> None:
    table, _ = make_table()
    add(table, "a")
    table.forget_all()
    assert not table.series and table.footprint == 0

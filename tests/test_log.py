"""Telegraf-prefixed logging and the rate limit on repeated warnings."""

from __future__ import annotations

import io

from hst_processor.log import Log


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_levels_and_prefixes() -> None:
    stream = io.StringIO()
    log = Log(stream, level="warn")
    log.error("e")
    log.warn("w")
    log.info("hidden")
    log.debug("hidden")
    assert stream.getvalue() == "E! e\nW! w\n"


def test_one_event_is_one_line() -> None:
    stream = io.StringIO()
    Log(stream).info("two\nlines\r")
    assert stream.getvalue() == "I! two lines \n"


def test_repeated_warning_is_held_back_then_reported_with_a_count() -> None:
    stream, clock = io.StringIO(), Clock()
    log = Log(stream, repeat_interval=60, clock=clock)
    for _ in range(5):
        log.warn_repeated("bad", "bad metric")
    log.warn_repeated("other", "other kind")
    clock.now = 61
    log.warn_repeated("bad", "bad metric")
    assert stream.getvalue().splitlines() == [
        "W! bad metric",
        "W! other kind",
        "W! bad metric (4 more like it since the last report)",
    ]

"""Logging to stderr in the form Telegraf's execd reads: one line each, with a level prefix.

Telegraf (v1.37 and later) logs a child's stderr line at the level its prefix names (``E! ``,
``W! ``, ``I! ``, ``D! ``) and any other line as an error. Repeated warnings of one kind are
printed once per ``repeat_interval`` with a count of those held back, so bad data at a high
rate cannot flood Telegraf's log.

>>> import io
>>> stream = io.StringIO()
>>> log = Log(stream, level="info", repeat_interval=60, clock=lambda: 0.0)
>>> log.warn_repeated("bad-line", "unparseable metric")
>>> log.warn_repeated("bad-line", "unparseable metric")
>>> log.info("done")
>>> print(stream.getvalue(), end="")
W! unparseable metric
I! done
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

__all__ = ["Log"]

_RANK = {"error": 0, "warn": 1, "info": 2, "debug": 3}


@dataclass
class _Repeats:
    next_report: float
    held_back: int = 0


class Log:
    def __init__(
        self,
        stream: TextIO,
        level: str = "info",
        repeat_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._rank = _RANK[level]
        self._repeat_interval = repeat_interval
        self._clock = clock
        self._repeats: dict[str, _Repeats] = {}
        self._secrets: list[str] = []
        self._lock = threading.Lock()  # the alert threads log too

    def add_secret(self, secret: str) -> None:
        """Never print this text (a webhook URL): every line gets it replaced."""
        if secret and secret not in self._secrets:
            self._secrets.append(secret)

    def set_level(self, level: str, repeat_interval: float) -> None:
        self._rank = _RANK[level]
        self._repeat_interval = repeat_interval

    def error(self, message: str) -> None:
        self._write(0, "E! ", message)

    def warn(self, message: str) -> None:
        self._write(1, "W! ", message)

    def info(self, message: str) -> None:
        self._write(2, "I! ", message)

    def debug(self, message: str) -> None:
        self._write(3, "D! ", message)

    def warn_repeated(self, kind: str, message: str) -> None:
        """A warning that may recur at data rate: printed at most once per interval."""
        now = self._clock()
        repeats = self._repeats.get(kind)
        if repeats is not None and now < repeats.next_report:
            repeats.held_back += 1
            return
        if repeats is not None and repeats.held_back:
            message = f"{message} ({repeats.held_back} more like it since the last report)"
        self._repeats[kind] = _Repeats(next_report=now + self._repeat_interval)
        self.warn(message)

    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced: for a caller that must cut a text
        short before it logs it (a cut through a secret would no longer match)."""
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text

    def _write(self, rank: int, prefix: str, message: str) -> None:
        if rank > self._rank:
            return
        # One event, one line: Telegraf reads stderr line by line.
        message = self.redact(message)
        line = prefix + message.replace("\r", " ").replace("\n", " ") + "\n"
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                pass

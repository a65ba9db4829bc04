"""Stop signals: SIGTERM, SIGINT and SIGHUP ask the processor to finish, save and exit 0.

Telegraf stops its child with SIGTERM (after closing stdin and waiting 5 s), and kills it 5 s
later; a terminal hang-up or ``kill -HUP`` means the same here. The handlers only set a flag and
wake ``select`` through a self-pipe, so the streaming loop stops between batches. The console
command installs them before anything heavy is imported, and keeps them until the process ends:
a signal during start-up or during the final save is a stop request like any other, never the
default action that kills the process without a save. This module imports nothing heavy.
"""

from __future__ import annotations

import os
import signal
import time
import types

__all__ = ["STOP_SIGNALS", "StopSignals"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class StopSignals:
    """Catches the stop signals from construction until :meth:`restore`."""

    def __init__(self) -> None:
        self.requested = ""  # the name of the first stop signal, once one came
        self.requested_at = 0.0  # when it came (time.monotonic)
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._previous_wakeup = signal.set_wakeup_fd(self._write_fd)
        self._previous = {signum: signal.signal(signum, self._handle) for signum in STOP_SIGNALS}

    @property
    def wakeup_fd(self) -> int:
        """Readable once a signal came: for ``select``."""
        return self._read_fd

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        if not self.requested:  # a second signal neither changes nor ends anything
            self.requested = signal.Signals(signum).name
            self.requested_at = time.monotonic()

    def drain(self) -> None:
        """Empty the wake-up pipe (the flag stays)."""
        try:
            while os.read(self._read_fd, 512):
                pass
        except BlockingIOError:
            pass

    def restore(self, *, deliver: bool = False) -> None:
        """Put the previous handlers back. With ``deliver``, a stop signal that came meanwhile
        goes to them now (for a command that never looked at the flag)."""
        signal.set_wakeup_fd(self._previous_wakeup)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        os.close(self._read_fd)
        os.close(self._write_fd)
        if deliver and self.requested:
            signal.raise_signal(signal.Signals[self.requested])

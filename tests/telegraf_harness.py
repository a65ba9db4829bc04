"""A stand-in for Telegraf's ``processors.execd``, driving the real command as Telegraf does.

What it reproduces (``../shared/docs/telegraf-execd.md``, from Telegraf's execd.go and
internal/process/process.go):

* each metric is serialized and written to the child's stdin in a write of its own; stdin
  stays open between metrics;
* stdout is read continuously and cut into metrics (a quoted string may hold a newline);
* stderr is read line by line; Telegraf logs a line by its ``E! W! I! D! T!`` prefix, and any
  other line as an error, so the harness records which lines lacked a prefix;
* stop: close stdin, wait 5 s, SIGTERM, wait 5 s, SIGKILL;
* after the child exits, Telegraf starts a new one (``restart``).

What it does not: Telegraf's metric buffers, its 100-metric channel, its restart delay and
its parsing of our output into typed metrics (the tests parse with our own parser).

The processor's self-metric reports (``hst_processor``, every ``self_metrics.interval``) are
metrics to Telegraf like any other; the harness keeps them apart in ``reports`` so that a test
reading metric after metric does not depend on how long it ran.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tests.reports import is_report

STOP_GRACE_SECONDS = 5.0
KNOWN_PREFIX = re.compile(rb"^(E|W|I|D|T)! ")


@dataclass
class StopResult:
    exit_code: int | None
    needed: str  # "" (exited after stdin closed), "SIGTERM" or "SIGKILL"
    seconds: float


@dataclass
class Output:
    text: bytes
    arrived: float


@dataclass
class ExecdHarness:
    command: Sequence[str]
    env: Mapping[str, str] | None = None
    grace: float = STOP_GRACE_SECONDS
    process: subprocess.Popen[bytes] | None = None
    outputs: queue.Queue[Output] = field(default_factory=queue.Queue)
    stderr_lines: list[bytes] = field(default_factory=list)
    reports: list[Output] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> ExecdHarness:
        environment = dict(os.environ)
        environment.update(self.env or {})
        self.process = subprocess.Popen(
            list(self.command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
            bufsize=0,
        )
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def restart(self) -> ExecdHarness:
        """What Telegraf does after the child exited: a new child with empty memory."""
        self.outputs = queue.Queue()
        return self.start()

    # -- Telegraf's side of the pipes ------------------------------------------------------------

    def write_metric(self, line: bytes) -> float:
        """Write one serialized metric in one write, as Telegraf does; return the time."""
        assert self.process is not None and self.process.stdin is not None
        data = line if line.endswith(b"\n") else line + b"\n"
        sent = time.monotonic()
        os.write(self.process.stdin.fileno(), data)
        return sent

    def read_metric(self, timeout: float = 5.0) -> Output:
        return self.outputs.get(timeout=timeout)

    def drain(self, count: int, timeout: float = 10.0) -> list[Output]:
        deadline = time.monotonic() + timeout
        return [self.read_metric(max(0.01, deadline - time.monotonic())) for _ in range(count)]

    def _read_stdout(self) -> None:
        from hst_processor.lineproto import MetricSplitter

        assert self.process is not None and self.process.stdout is not None
        splitter = MetricSplitter()
        fd = self.process.stdout.fileno()
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            chunks = splitter.feed(data.decode("utf-8", "surrogateescape"))
            now = time.monotonic()
            for chunk in chunks:
                text = chunk.encode("utf-8", "surrogateescape")
                if is_report(text):
                    self.reports.append(Output(text, now))
                else:
                    self.outputs.put(Output(text, now))
        pending = splitter.held
        if pending:
            self.outputs.put(Output(pending.encode("utf-8", "surrogateescape"), time.monotonic()))

    def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_lines.append(line.rstrip(b"\n"))

    # -- stopping --------------------------------------------------------------------------------

    def stop(self) -> StopResult:
        """Close stdin, then SIGTERM after the grace period, then SIGKILL after another."""
        assert self.process is not None and self.process.stdin is not None
        started = time.monotonic()
        self.process.stdin.close()
        needed = ""
        for signum in (signal.SIGTERM, signal.SIGKILL):
            try:
                self.process.wait(timeout=self.grace)
                break
            except subprocess.TimeoutExpired:
                needed = signal.Signals(signum).name
                self.process.send_signal(signum)
        else:
            self.process.wait()
        self.join()
        return StopResult(self.process.returncode, needed, time.monotonic() - started)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=5)

    def unprefixed_stderr(self) -> list[bytes]:
        """Lines Telegraf would log as errors because they carry no level prefix."""
        return [line for line in self.stderr_lines if not KNOWN_PREFIX.match(line)]

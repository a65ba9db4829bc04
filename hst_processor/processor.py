"""The streaming loop: read what stdin has, process it as one batch, write, flush.

:class:`Processor` is the pure core, text in and text out: it cuts the text into metrics,
parses them, asks the :class:`~hst_processor.detector.Detector` for verdicts and inserts the
tag and fields. :func:`serve` is the I/O around it, the only place that touches stdin, stdout
and signals.

The contract with Telegraf (see ``ARCHITECTURE.md``):

* one metric in, one metric out, in order; anything we cannot parse passes through unchanged,
  with a counted, rate-limited warning;
* the original text is never re-formatted, only inserted into;
* whatever is available on stdin is answered at once: a lone line is never held back waiting
  for more input;
* EOF, SIGTERM or SIGINT: finish the batch in hand, flush, exit 0. A closed stdout ends the
  process quietly.
"""

from __future__ import annotations

import codecs
import errno
import os
import select
import stat
import time
from collections.abc import Callable

from hst_processor.config import Config
from hst_processor.detector import Detector, Verdict
from hst_processor.errors import ExitCode, LineProtocolError
from hst_processor.lineproto import (
    Metric,
    MetricSplitter,
    enrich_text,
    escape_field_key,
    escape_tag,
    format_float,
    format_string,
    is_blank,
    is_comment,
    line_body,
    parse_metric,
)
from hst_processor.log import Log
from hst_processor.notify import Notifier
from hst_processor.selfmetrics import SelfReport
from hst_processor.signals import StopSignals
from hst_processor.state import StateStore
from hst_processor.stats import Stats
from hst_processor.workers import WorkerPool

__all__ = ["Processor", "Stats", "serve"]

# How long a metric whose quoted string runs past a newline may hold back the lines after it,
# counted from when it began to (not from the last byte: a stream that goes on must not extend
# it), before its first line goes out as a metric of its own. Telegraf writes a metric in one
# write, so a real continuation arrives at once.
STALL_SECONDS = 0.2
# The most text such a metric may hold back: beyond it, the held lines go out as they are.
MAX_HELD_CHARS = 1 << 20
READ_SIZE = 1 << 20
# After a stop signal, how long output may wait for a reader that does not read before it is
# dropped: the save and the alerts' grace must still fit in Telegraf's 5 s.
DRAIN_SECONDS = 1.0
# A preview of a bad metric in a warning; the whole of a 1 MB line helps nobody.
_PREVIEW = 120
# First characters of a line that may be blank or a comment (anything else is neither).
_MAYBE_BLANK_OR_COMMENT = frozenset(" \t\v\f\r\n#")


class Processor:
    """Text in, enriched text out, metric by metric, keeping an incomplete tail for later."""

    def __init__(
        self,
        config: Config,
        log: Log,
        detector: Detector | WorkerPool | None = None,
        notifier: Notifier | None = None,
        state: StateStore | None = None,
        observer: Callable[[Metric, Verdict], None] | None = None,
        restored: int = 0,
    ) -> None:
        """``state`` is where saves go (already started, its snapshot restored into
        ``detector`` by the caller); ``restored`` is how many metrics that snapshot had seen.
        Nothing here touches a file: the processor is text in, text out."""
        self.config = config
        self._observer = observer  # offline tools (replay, evaluate) see every verdict
        self.log = log
        self.notifier = notifier
        self.state = state
        self._restored = restored  # metrics the restored snapshot had seen
        self.detector: Detector | WorkerPool = detector or Detector(
            config, log, notify=notifier.enqueue if notifier is not None else None
        )
        self.stats = Stats()
        self._splitter = MetricSplitter()
        self._settled_output = ""  # lines scoring workers finished early, not yet written
        # What we insert is the same for every metric but the score: escape it once.
        output = config.output
        self._tag_texts: dict[str, str] = {}
        self._score_prefix = f",{escape_field_key(output.score_field)}="
        self._raw_prefix = (
            f",{escape_field_key(output.raw_score_field)}=" if output.raw_score_field else ""
        )
        self._feature_prefix = (
            f",{escape_field_key(output.feature_field)}=" if output.feature_field else ""
        )

    @property
    def stalled(self) -> bool:
        """True when the held-back tail spans a newline: an open quoted string."""
        return self._splitter.holds_lines

    @property
    def held_start(self) -> int:
        """Where the held-back tail starts, in characters since the start of the stream."""
        return self._splitter.held_start

    def feed(self, text: str, more: bool = False) -> str:
        """Process the metrics ``text`` completes; keep the incomplete rest. ``more`` says
        that more input is already waiting: scoring workers may then keep the last lines
        to return with the next call's (one process returns every line at once)."""
        chunks = self._splitter.feed(text)
        give_up = self._splitter.holds_lines and len(self._splitter.held) > MAX_HELD_CHARS
        out = self._process(chunks, more and not give_up)  # the held lines go out after all
        if give_up:
            out += self._give_up_held()
        return out

    def release_stalled(self) -> str:
        """The open quoted string did not close in time: its first line goes out as a metric
        of its own (unparseable) and the lines after it are read afresh."""
        return self._process([self._splitter.release_first_line()]) + self.feed("")

    def finish(self) -> str:
        """End of input (EOF or a stop signal): the lines an open string held go out as when
        its hold ends. Text after the last newline was cut off mid-metric (Telegraf ends each
        one with a newline; a half-read line has no timestamp and maybe half a value): it goes
        out exactly as it came, neither scored nor learned."""
        # Lines scoring workers still hold come first: they came before everything below.
        out = self._process([]) if isinstance(self.detector, WorkerPool) else ""
        while self._splitter.holds_lines:
            out += self.release_stalled()
        tail = self._splitter.take_held()
        if tail:
            self.stats.lines_in += 1
            self.stats.lines_out += 1
            self.stats.unparseable += 1
            self.stats.passed_through += 1
            self.stats.cut_off += 1
            self.log.warn_repeated(
                "cut-off",
                f"the input ended inside a metric (no newline): passed through unchanged, "
                f"not scored: {_preview(tail)}",
            )
        return out + tail

    def _give_up_held(self) -> str:
        """A metric held back past MAX_HELD_CHARS: its lines go out as they are, each once,
        unparsed (parsing it again and again is the work the bound is there to stop)."""
        lines = self._splitter.release_lines()
        self.stats.lines_in += len(lines)
        self.stats.lines_out += len(lines)
        self.stats.unparseable += len(lines)
        self.stats.passed_through += len(lines)
        self.log.warn_repeated(
            "held-too-long",
            f"a quoted string ran on for {len(lines)} lines and more than {MAX_HELD_CHARS} "
            f"characters without closing: its lines passed through unchanged, unparsed: "
            f"{_preview(lines[0])}",
        )
        return "".join(lines) + self.feed("")

    def _process(self, chunks: list[str], more: bool = False) -> str:
        if isinstance(self.detector, WorkerPool):  # every line to its series' worker
            lines, stats = self.detector.process_lines(chunks, more)
            self.stats.add(stats)
            settled, self._settled_output = self._settled_output, ""
            return settled + "".join(lines)
        return "".join(self.process_lines(chunks))

    def settle(self) -> None:
        """Have the lines scoring workers still hold scored and counted now (they go out first
        with the next output), so that a state save's position and a report's counts match
        what the models have learned."""
        if isinstance(self.detector, WorkerPool):
            self._settled_output = self._process([])

    def process_lines(self, chunks: list[str]) -> list[str]:
        """Each line's output, in order (a scoring worker's part of :meth:`feed`)."""
        assert isinstance(self.detector, Detector)  # a pool's workers each have their own
        bodies: list[str] = []
        metrics: list[Metric | None] = []
        parse = self._parse
        for chunk in chunks:
            body = line_body(chunk)
            bodies.append(body)
            metrics.append(parse(body))
        verdicts = self.detector.process(metrics)
        if self._observer is not None:
            for metric, verdict in zip(metrics, verdicts, strict=True):
                if metric is not None and verdict is not None:
                    self._observer(metric, verdict)
        out: list[str] = []
        passed = 0
        for chunk, body, metric, verdict in zip(chunks, bodies, metrics, verdicts, strict=True):
            if metric is None or verdict is None:
                out.append(chunk)
                passed += 1
            else:
                out.append(self._enrich(metric, verdict) + chunk[len(body) :])
        stats = self.stats
        stats.lines_in += len(chunks)
        stats.lines_out += len(out)
        stats.passed_through += passed
        return out

    def _parse(self, body: str) -> Metric | None:
        if body and body[0] not in _MAYBE_BLANK_OR_COMMENT:
            pass  # the usual case: a metric starts with its measurement
        elif is_blank(body):
            self.stats.blank += 1
            self.log.warn_repeated("blank", "empty line passed through unchanged")
            return None
        elif is_comment(body):
            self.stats.comments += 1
            return None
        if not body.isascii() and _has_undecodable_bytes(body):
            self.stats.not_utf8 += 1
            self.stats.unparseable += 1
            self.log.warn_repeated(
                "not-utf8", f"metric is not valid UTF-8, passed through unchanged: {_preview(body)}"
            )
            return None
        try:
            return parse_metric(body)
        except LineProtocolError as error:
            self.stats.unparseable += 1
            self.log.warn_repeated(
                "unparseable",
                f"unparseable metric passed through unchanged ({error}): {_preview(body)}",
            )
            return None

    def _enrich(self, metric: Metric, verdict: Verdict) -> str:
        tag_text = self._tag_texts.get(verdict.tag_value)
        if tag_text is None:
            tag_text = self._tag_texts[verdict.tag_value] = (
                f",{escape_tag(self.config.output.tag)}={escape_tag(verdict.tag_value)}"
            )
        fields_text = ""
        if verdict.score is not None:
            fields_text = self._score_prefix + format_float(verdict.score)
            if self._raw_prefix and verdict.raw_score is not None:
                fields_text += self._raw_prefix + format_float(verdict.raw_score)
            if self._feature_prefix and verdict.feature is not None:
                fields_text += self._feature_prefix + format_string(verdict.feature)
        return enrich_text(metric, self.config.output.tag, tag_text, fields_text)

    @property
    def processed(self) -> int:
        """Metrics of the stream handled so far, counting those of a restored snapshot."""
        return self._restored + self.stats.lines_in

    def after_batch(self) -> None:
        """Between batches, once the output is written: the periodic state snapshot."""
        if self.state is not None:
            if self.state.due():
                self.settle()
            self.state.maybe_save(self.detector, self.processed)

    def close(self, stopped_at: float | None = None) -> None:
        """Save the state, then give pending alerts their short grace to go out: counted from
        ``stopped_at`` (the stop signal's ``time.monotonic``) when given, so that the output's
        drain and the save do not push the exit past Telegraf's 5 s."""
        if self.state is not None:
            self.state.save_now(self.detector, self.processed)
        if isinstance(self.detector, WorkerPool):
            self.detector.close()
        if self.notifier is not None:
            self.notifier.close(since=stopped_at)

    def summary(self) -> str:
        stats, counters = self.stats, self.detector.counters
        lost = f", {counters.lost} lost in a worker that died" if counters.lost else ""
        alerts = ""
        if self.notifier is not None:
            sent = self.notifier.counters
            alerts = (
                f"; alerts: {sent.alerts_sent} sent in {sent.sent} messages, "
                f"{sent.retried} retried, {sent.dropped} dropped, {sent.failed} failed"
            )
        return (
            f"hst-processor: {stats.lines_in} lines in, {stats.lines_out} out: "
            f"{stats.metrics} metrics, {stats.unparseable} unparseable "
            f"({stats.not_utf8} not UTF-8, {stats.cut_off} cut off), {stats.blank} blank, "
            f"{stats.comments} comments; of the metrics {counters.scored} scored, "
            f"{counters.anomalous} anomalous, {counters.warmup} in warm-up, "
            f"{counters.not_scored} missing features, {counters.no_fields} without a feature "
            f"field, {counters.non_numeric} non-numeric values, "
            f"{counters.already_scored} already scored, {counters.key_too_long} keys too long"
            f"{lost}; "
            f"{stats.passed_through} lines passed through unchanged; "
            f"{self.detector.series_count()} series, {counters.evicted} evicted{alerts}"
        )


def _has_undecodable_bytes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True  # a lone surrogate: surrogateescape kept a byte that was not UTF-8
    return False


def _preview(body: str) -> str:
    shown = body.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    return repr(shown[:_PREVIEW] + ("..." if len(shown) > _PREVIEW else ""))


# ---------------------------------------------------------------------------------------------
# I/O


class _Output:
    """Writes everything it is given to a file descriptor, or notes that the reader left.

    A reader that stops reading must not make the process deaf to a stop signal: on a pipe or
    socket the writes do not block, and the wait for room also watches for a stop. After a
    stop, the output still waiting gets DRAIN_SECONDS, then is dropped (with a warning), so
    the state is saved and the process exits within Telegraf's grace.
    """

    def __init__(self, fd: int, stop: StopSignals) -> None:
        self.fd = fd
        self.closed = False
        self.dropped = 0  # bytes never written: the reader stopped reading at a stop
        self._stop = stop
        self._was_blocking = os.get_blocking(fd)
        # Only pipes and sockets: a terminal's or a file's flags are shared with others.
        mode = os.fstat(fd).st_mode
        self._nonblocking = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
        if self._nonblocking:
            os.set_blocking(fd, False)

    def write(self, text: str) -> None:
        if not text or self.closed:
            return
        data = memoryview(text.encode("utf-8", "surrogateescape"))
        while data:
            try:
                data = data[os.write(self.fd, data) :]
            except BlockingIOError:
                if not self._wait_for_room():
                    self.dropped += len(data)
                    self.closed = True
                    return
            except BrokenPipeError:
                self.closed = True
                return
            except OSError as error:
                if error.errno != errno.EPIPE:
                    raise
                self.closed = True
                return

    def _wait_for_room(self) -> bool:
        """Wait until the reader makes room; after a stop signal, only until the drain ends."""
        while True:
            timeout = None
            if self._stop.requested:
                timeout = self._stop.requested_at + DRAIN_SECONDS - time.monotonic()
                if timeout <= 0:
                    return False
            _, writable, _ = select.select([self._stop.wakeup_fd], [self.fd], [], timeout)
            if writable:
                return True
            self._stop.drain()

    def close(self) -> None:
        if self._nonblocking:
            os.set_blocking(self.fd, self._was_blocking)


def serve(
    processor: Processor,
    log: Log,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    stop: StopSignals | None = None,
    report: SelfReport | None = None,
) -> int:
    """Run the processor over stdin until EOF or a stop signal; return the exit code.

    ``stop`` is the command's own, installed at its start and kept to the end; without one,
    serve catches the stop signals itself while it runs. ``report``, when given, writes the
    processor's self-metrics between batches, and while the input is idle."""
    own_stop = stop is None
    stop = stop or StopSignals()
    output = _Output(stdout_fd, stop)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
    hold = _Hold()
    try:
        while not stop.requested and not output.closed:
            timeout = _earliest(hold.timeout(), report.timeout() if report else None)
            ready, _, _ = select.select([stdin_fd, stop.wakeup_fd], [], [], timeout)
            stop.drain()
            if stop.requested:
                break
            if stdin_fd in ready:
                read_at = time.monotonic()
                data = os.read(stdin_fd, READ_SIZE)
                if not data:
                    break
                # While more input waits, workers may go on scoring the end of this read
                # while the next is read and cut (their lines come out with the next one's).
                # One process answers every line at once: it need not ask.
                more = isinstance(processor.detector, WorkerPool) and bool(
                    select.select([stdin_fd], [], [], 0)[0]
                )
                output.write(processor.feed(decoder.decode(data), more))
                if report is not None:
                    report.record_batch(time.monotonic() - read_at)
                hold.after_feed(processor, read_at)
                processor.after_batch()
            elif hold.expired():
                output.write(processor.release_stalled())
                hold.after_release(processor)
            if report is not None and report.due():
                processor.settle()
                if processor.state is not None:
                    processor.state.poll()  # a save that ended while the input was idle
                output.write(report.take(processor))
        if stop.requested and not output.closed:
            # What Telegraf wrote before the signal is in hand too: take what is there now.
            output.write(processor.feed(decoder.decode(_available(stdin_fd))))
        output.write(processor.feed(decoder.decode(b"", final=True)) + processor.finish())
    finally:
        output.close()
        # A stop signal now is caught and changes nothing: the save goes on.
        processor.close(stop.requested_at if stop.requested else None)
        if own_stop:
            stop.restore()
    if output.dropped:
        log.warn(
            f"stdout was not read for {DRAIN_SECONDS:g} s after {stop.requested}: "
            f"{output.dropped} bytes of output were dropped"
        )
    elif output.closed:
        log.debug("stdout closed by the reader; exiting")
    if stop.requested:
        log.info(f"received {stop.requested}, stopping")
    reports = f"; {report.written} self-metric reports besides" if report is not None else ""
    log.info(processor.summary() + reports)
    return ExitCode.OK


def _earliest(*timeouts: float | None) -> float | None:
    """The shortest of the waits that are set (``None``: wait for input alone)."""
    waits = [timeout for timeout in timeouts if timeout is not None]
    return min(waits) if waits else None


def _available(fd: int) -> bytes:
    """What can be read from ``fd`` without waiting (one read at most)."""
    ready, _, _ = select.select([fd], [], [], 0)
    return os.read(fd, READ_SIZE) if ready else b""


class _Hold:
    """When the metric holding back lines (an open quoted string) began to, and so when its
    hold ends: a stream that goes on does not extend it."""

    def __init__(self) -> None:
        self.since: float | None = None
        self._start = -1  # the held metric's place in the stream, to tell a new one

    def after_feed(self, processor: Processor, read_at: float) -> None:
        if not processor.stalled:
            self.since = None
        elif self.since is None or processor.held_start != self._start:
            self.since, self._start = read_at, processor.held_start

    def after_release(self, processor: Processor) -> None:
        # What the released line held back has waited since the hold began: no fresh hold.
        if not processor.stalled:
            self.since = None
        self._start = processor.held_start

    def timeout(self) -> float | None:
        if self.since is None:
            return None
        return max(0.0, self.since + STALL_SECONDS - time.monotonic())

    def expired(self) -> bool:
        return self.since is not None and time.monotonic() >= self.since + STALL_SECONDS

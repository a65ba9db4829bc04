r"""Every core: the series shared among scoring processes (``workers: N``).

Python scores on one core at a time. With ``workers`` above one, :class:`WorkerPool` stands in
for the :class:`~hst_processor.detector.Detector`: the main process still reads stdin, cuts it
into lines and writes them out in order, but each line is scored by the worker that owns its
series, a fixed share of the series chosen by a stable hash of the series key
(:func:`worker_of`). A line is routed by a lookup of the text before its first space (parsed
only the first time a series is met). Every series' metrics reach one detector, in order, so
its verdicts are exactly those one process would give (the bounds aside: each worker keeps
``max_series / N``).

A read goes in parts of ``_PART_LINES`` lines; a part goes to every worker that has lines in
it at once, and while they score it the main process routes and sends the next. When more
input is already waiting, a read's last part is not waited for: the workers score it while
the main process reads and cuts the next read, and its lines come out first with that read's.
The answers are put back in the lines' order. A worker answers with its lines, enriched, the
alerts they raised (sent on by the main process's notifier, so the messages' rate limits hold
for the whole processor), and its counters.

A worker that dies (killed, out of memory, a defect) loses nothing of the stream: the metrics
it held pass through unscored, counted as ``lost``, and a new worker takes its share, restored
from the last state save (without a state file, its series warm up again). A save gathers every
worker's series into the one state file; which worker owns a series is not saved, so a file
restores under any number of workers.

>>> from hst_processor.config import Config
>>> from hst_processor.log import Log
>>> import io
>>> pool = WorkerPool(Config(measurements=("m",), group_by=("id",), workers=2), Log(io.StringIO()))
>>> lines, stats = pool.process_lines([f"m,id=a x={i} {i}\n" for i in range(3)])
>>> lines[0]
'm,anomaly=warmup,id=a x=0 0\n'
>>> pool.series_count(), pool.counters.warmup, stats.metrics
(1, 3, 3)
>>> pool.close()
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgpack

from hst_processor.alerts import AlertEvent
from hst_processor.config import Config
from hst_processor.detector import Counters, Detector
from hst_processor.errors import LineProtocolError
from hst_processor.lineproto import Metric, line_body, parse_metric
from hst_processor.log import Log
from hst_processor.runtime import tune_garbage_collector
from hst_processor.series import SeriesKey, SeriesKeys, describe_series, series_key_of
from hst_processor.state import StateError, assemble, model_section, packed_series, restore
from hst_processor.stats import Stats, add_counts

__all__ = ["WorkerPool", "worker_of"]

_Share = tuple[list[str], list[int]]  # a worker's lines of a part, and their places
_RESTART_PAUSE = 10.0  # seconds before a worker that could not start is tried again
_ANSWER_SECONDS = 60.0
"""A worker that has not answered a part in this long is taken as hung: killed and replaced
(a part of 2,048 lines takes some tens of milliseconds; a fresh worker's start, under a
second)."""
_PART_LINES = 2048  # lines routed and sent at a time (see WorkerPool.process_lines)
_PARTS_AHEAD = 1  # parts sent before the oldest is collected (2 or 3 measured no faster)
_PIPE_BYTES = 1 << 20  # asked of the kernel for each pipe (Linux's default most for anyone)
_MESSAGE_SLACK = 8192
"""Room in a pipe a request takes beyond its bytes: its length header, and the kernel's pipe
buffers filled a page at a time (two requests 4 KB short of a 1 MB pipe's size did not fit)."""
_ROUTES_KEPT = 100_000  # series texts whose worker is remembered (then the memory starts over)


def worker_of(series_text: str, workers: int) -> int:
    """The worker that owns a series, from its key's text (:func:`describe_series`): CRC-32
    of its UTF-8 bytes, modulo the number of workers. The same in every process and run.

    >>> worker_of("machine_data,machineID=machine2", 2)
    1
    """
    return zlib.crc32(series_text.encode("utf-8", "surrogateescape")) % workers


@dataclass
class _Sent:
    """A part of a batch sent to a worker, not yet answered."""

    worker: _Worker  # the one it went to (a replacement never answers for it)
    index: int
    places: list[int]  # where its lines' outputs go
    size: int  # room in the pipe the request takes (see _room_taken)


@dataclass
class _Answer:
    """A worker's answer to a batch."""

    lines: list[str]  # each line's output, in the order given
    stats: Stats  # what went through, in this batch
    alerts: list[AlertEvent]
    counters: Counters
    series: int
    open_episodes: int


class _Worker:
    """One scoring process and the main process's ends of its two pipes.

    A fresh interpreter (``python -c``), not a fork: the main process has threads (the alert
    senders) by the time a worker is replaced, and a fork of a threaded process may inherit a
    lock some thread held. Its stdin and stdout are ``/dev/null`` (Telegraf must see our stdout
    close when we exit); its stderr is ours, so its warnings reach Telegraf's log."""

    def __init__(self, config: Config, alerting: bool) -> None:
        request_read, request_write = os.pipe()
        answer_read, answer_write = os.pipe()
        package_root = str(Path(__file__).resolve().parent.parent)
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [package_root] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_MAIN, str(request_read), str(answer_write)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            pass_fds=(request_read, answer_write),
            env=environment,
        )
        os.close(request_read)  # the worker's ends: its EOF on ours tells it to leave
        os.close(answer_write)
        self.room = _enlarge(request_write)  # bytes a request can wait in without blocking
        self.requests = Connection(request_write, readable=False)
        self.answers = Connection(answer_read, writable=False)
        self.requests.send(("start", config, alerting))
        self.counters = Counters()  # the worker's, as of its last answer
        self.before = Counters()  # what the workers it replaced had counted
        self.series = 0
        self.open_episodes = 0
        self.saved: tuple[int, bytes] = (0, b"")  # its series in the last save
        self.answered = False  # it has answered a request: it started
        self.hung = False  # it did not answer a part in _ANSWER_SECONDS

    def stop(self) -> int | None:
        """End the worker (it reads EOF and returns) and return its exit code."""
        self.requests.close()
        self.answers.close()
        try:
            return self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


class _Watchdog:
    """Kills a worker that the main process waits on for too long, whatever the wait: for an
    answer to begin, for the rest of an answer that stopped halfway, or for room in a pipe
    that a request larger than the pipe must wait for (a state restore, a very long line).

    One thread for the pool. :meth:`watching` marks the wait; the thread counts the seconds
    it lasts as 1-second waits of its own, each counted once however long it took: a pause of
    the whole process group (Ctrl-Z, `docker pause`) stops this thread too, and must not make a
    healthy worker look hung when it resumes. After ``_ANSWER_SECONDS`` the worker is marked
    hung and killed, so the main process's read or write returns with an error."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._watched: _Worker | None = None
        self._wait = 0  # numbers each wait: a new one starts its count afresh
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="hst-worker-watchdog", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def watching(self, worker: _Worker) -> Iterator[None]:
        with self._condition:
            self._watched = worker
            self._wait += 1
            self._condition.notify()
        try:
            yield
        finally:
            with self._condition:
                self._watched = None
                self._condition.notify()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._thread.join()

    def _run(self) -> None:
        condition = self._condition
        with condition:
            while not self._closed:
                worker, wait = self._watched, self._wait
                if worker is None:
                    condition.wait()
                    continue
                waited = 0
                while self._still_on(worker, wait):
                    if condition.wait(1.0):
                        continue  # woken: the wait ended, or another began
                    if not self._still_on(worker, wait):
                        break  # it ended as the second did
                    waited += 1
                    if waited >= _ANSWER_SECONDS:
                        worker.hung = True
                        worker.process.kill()
                        while self._still_on(worker, wait):
                            condition.wait()  # until the main process lets go of it

    def _still_on(self, worker: _Worker, wait: int) -> bool:
        """Whether wait number ``wait``, on ``worker``, is still going (the lock held)."""
        return self._watched is worker and self._wait == wait and not self._closed


def _enlarge(pipe: int) -> int:
    """Ask for a bigger pipe buffer (fewer, larger writes); return the size it has."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or over the user's limit
        fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    try:
        size: int = fcntl.fcntl(pipe, fcntl.F_GETPIPE_SZ)
    except (OSError, AttributeError):
        return 4096  # POSIX guarantees a pipe this much (PIPE_BUF)
    return size


# ``python -c`` puts the working directory first on sys.path: a folder named hst_processor
# there would be imported instead of the code the main process runs. Drop it.
_WORKER_MAIN = """
import sys
del sys.path[0]
try:
    from hst_processor.workers import serve_pipes
except BaseException as error:  # said with Telegraf's error prefix, not as a traceback
    print(f"E! hst-processor: a scoring worker cannot start: {error!r}", file=sys.stderr)
    sys.exit(1)
serve_pipes()
"""


class WorkerPool:
    """The detector's work over ``config.workers`` processes (see the module's text)."""

    def __init__(
        self, config: Config, log: Log, notify: Callable[[AlertEvent], None] | None = None
    ) -> None:
        self.config = config
        self.log = log
        self._notify = notify
        self._count = config.workers
        # Each worker keeps its share of the series bound; the rest of the config is the same.
        share = -(-config.max_series // self._count)
        self._worker_config = dataclasses.replace(config, max_series=share, workers=1)
        self._keys = SeriesKeys(config.group_by, config.output.tag, config.limits.max_key_bytes)
        self._routes: dict[str, int] = {}
        self._paused: dict[int, float] = {}  # workers that could not start: until when
        self._raised: list[AlertEvent] = []  # by the workers, in the batch being processed
        self._lost = 0
        # Lines given but not yet returned (see process_lines' ``more``), the parts of them
        # still being scored, and what the parts collected between two calls counted.
        self._carried: list[str] = []
        self._in_flight: list[list[_Sent]] = []
        self._settled = Stats()
        self.restarts = 0
        self._watchdog = _Watchdog()
        self._workers = [self._start(index) for index in range(self._count)]

    def _start(self, index: int) -> _Worker:
        return _Worker(self._worker_config, self._notify is not None)

    # -- the detector's surface ------------------------------------------------------------------

    @property
    def counters(self) -> Counters:
        """Every worker's counters added up, with the metrics lost in workers that died."""
        total = Counters(lost=self._lost)
        for worker in self._workers:
            add_counts(total, worker.before)
            add_counts(total, worker.counters)
        return total

    def series_key(self, metric: Metric) -> SeriesKey:
        """The series a metric belongs to (as its worker's detector keys it)."""
        return self._keys.key_of(metric)

    def worker_pids(self) -> list[int]:
        """The process ids of the workers running now."""
        return [worker.process.pid for worker in self._workers if worker.process.poll() is None]

    def series_count(self) -> int:
        return sum(worker.series for worker in self._workers)

    def open_episodes(self) -> int:
        return sum(worker.open_episodes for worker in self._workers)

    def process_lines(self, chunks: list[str], more: bool = False) -> tuple[list[str], Stats]:
        """The outputs of the lines given, in order, and what went through: every line
        processed by the worker that owns its series (a line that is no metric by the one
        that owns none).

        The lines go in parts of ``_PART_LINES``: while the workers score one part, this
        process routes the next and sends it, so neither side waits for the other's share of
        the work. With ``more`` (the caller has more input in hand), the last parts are not
        waited for: their lines, and any after them, come out at the front of the next call's
        outputs, and the workers score them while this process reads and cuts that input."""
        base = len(self._carried)
        outputs = self._carried + chunks  # a line lost in a dying worker goes out unchanged
        stats, self._settled = self._settled, Stats()
        ahead = self._in_flight  # parts sent and not yet collected, oldest first
        for start in range(0, len(chunks), _PART_LINES):
            part = self._route(chunks, start, min(start + _PART_LINES, len(chunks)), base)
            messages = [
                (index, pickle.dumps(("process", lines), pickle.HIGHEST_PROTOCOL), places)
                for index, (lines, places) in part.items()
            ]
            # A request must never wait for room in a full pipe: the worker may itself be
            # waiting to write an answer that nobody reads meanwhile. Older parts are
            # collected until the new one fits beside what is still unanswered.
            while ahead and any(
                _unanswered(ahead, index) + _room_taken(data) > self._workers[index].room
                for index, data, _ in messages
            ):
                self._collect_part(ahead.pop(0), outputs, stats)
            sending = []
            for index, data, places in messages:
                if self._down(index):
                    self._lost += len(places)
                    stats.add(_passed_through(len(places)))
                    continue
                worker = self._workers[index]
                if self._send(worker, data):
                    sending.append(_Sent(worker, index, places, _room_taken(data)))
                else:
                    self._lose(index, len(places))
                    stats.add(_passed_through(len(places)))
            ahead.append(sending)
            while len(ahead) > _PARTS_AHEAD:
                self._collect_part(ahead.pop(0), outputs, stats)
        if more and any(ahead):
            # Every line before the first one still being scored is done.
            done = min(sent.places[0] for sent_part in ahead for sent in sent_part)
            for sent_part in ahead:
                for sent in sent_part:
                    sent.places = [place - done for place in sent.places]
            self._carried, self._in_flight = outputs[done:], ahead
            outputs = outputs[:done]
        else:
            for sent_part in ahead:
                self._collect_part(sent_part, outputs, stats)
            self._carried, self._in_flight = [], []
        self._alert()
        return outputs, stats

    def _alert(self) -> None:
        """Send the alerts raised in the parts collected so far."""
        if self._notify is not None:
            # Each series' alerts are in order (one worker raised them); across series, in the
            # order of their metrics' times, not worker by worker.
            for alert in sorted(self._raised, key=lambda alert: alert.time):
                self._notify(alert)
        self._raised = []

    def _settle(self) -> None:
        """Wait for the parts still being scored (their outputs stay for the next call), so
        that a worker's next answer is to the request about to be made."""
        stats = Stats()
        for part in self._in_flight:
            self._collect_part(part, self._carried, stats)
        self._in_flight = []
        self._settled.add(stats)
        self._alert()

    def _route(self, chunks: list[str], start: int, end: int, base: int) -> dict[int, _Share]:
        """The lines ``chunks[start:end]`` by worker, with their places (after ``base``).

        A line is looked up by the text before its first space. That is its series' text
        whenever it is a key here: keys are series texts that parsing found, a series text
        ends at a space the parser does not read as escaped, and the parser reads the same
        characters the same way in any line that starts with them. Anything else is parsed."""
        lines = chunks[start:end]
        known = self._routes.get
        found = [known(line.partition(" ")[0]) for line in lines]
        owners: list[int] = [
            self._owner(line) if owner is None else owner
            for line, owner in zip(lines, found, strict=True)
        ]
        part: dict[int, _Share] = {}
        for index in set(owners):
            at = [start + at for at, owner in enumerate(owners) if owner == index]
            part[index] = ([chunks[place] for place in at], [base + place for place in at])
        return part

    def _collect_part(self, part: list[_Sent], outputs: list[str], stats: Stats) -> None:
        for sent in part:
            self._collect(sent, outputs, stats)

    def _collect(self, sent: _Sent, outputs: list[str], stats: Stats) -> None:
        """A sent part's answer put in place; a worker that died loses its lines."""
        lost = len(sent.places)
        if self._workers[sent.index] is not sent.worker:  # died since: the part is gone
            self._lost += lost
            stats.add(_passed_through(lost))
            return
        answer = self._receive(sent.worker)
        if answer is None:
            self._lose(sent.index, lost)
            stats.add(_passed_through(lost))
            return
        sent.worker.answered = True
        for place, output in zip(sent.places, answer.lines, strict=True):
            outputs[place] = output
        stats.add(answer.stats)
        worker = sent.worker
        worker.counters, worker.series = answer.counters, answer.series
        worker.open_episodes = answer.open_episodes
        self._raised += answer.alerts

    def _owner(self, chunk: str) -> int:
        """The worker of a line's series not looked up yet: the line parsed, its series'
        text remembered."""
        try:
            metric = parse_metric(line_body(chunk))
        except LineProtocolError:
            return 0  # not a metric: any worker passes it through; the first does
        owner = self._owner_of(self.series_key(metric))
        if len(self._routes) >= _ROUTES_KEPT:
            self._routes.clear()
        self._routes[metric.text[: metric.series_end]] = owner
        return owner

    def _owner_of(self, key: SeriesKey) -> int:
        return worker_of(describe_series(key), self._count)

    # -- state -----------------------------------------------------------------------------------

    def snapshot(self, processed: int) -> bytes:
        """Every worker's series in one snapshot (see :func:`hst_processor.state.assemble`);
        each worker's part is kept, to restore it should the worker die."""
        for index, worker in enumerate(self._workers):
            answer = self._call(index, ("export",))
            if isinstance(answer, StateError):
                raise answer
            if answer is not None:
                worker.saved = answer
        return assemble(self.config, processed, [worker.saved for worker in self._workers])

    def restore(self, document: Mapping[str, Any]) -> list[str]:
        """Give each worker its series of a parsed snapshot; the warnings of the restore."""
        shares: list[list[Any]] = [[] for _ in self._workers]
        for saved in document["series"]:
            shares[self._owner_of(series_key_of(saved))].append(saved)
        warnings: list[str] = []
        for index, share in enumerate(shares):
            part = dict(document, series=share)
            answer = self._call(index, ("restore", part))
            if answer is not None:
                warnings += [w for w in answer[0] if w not in warnings]
                self._workers[index].series = answer[1]
        return warnings

    def forget_all(self) -> None:
        for index in range(self._count):
            if self._call(index, ("forget",)) is not None:
                self._workers[index].series = 0

    def close(self) -> None:
        self._settle()
        for worker in self._workers:
            worker.stop()
        self._watchdog.close()

    # -- a worker that dies ----------------------------------------------------------------------

    def _send(self, worker: _Worker, data: bytes) -> bool:
        """Write a request; False if the worker died, or hangs (killed, and marked so). The
        writing is watched: a request may be larger than what the pipe has room for (a
        restore, or a part of long lines)."""
        with self._watchdog.watching(worker):
            try:
                worker.requests.send_bytes(data)
            except OSError:
                return False
        return True

    def _receive(self, worker: _Worker) -> Any:
        """The worker's next answer; None if it died, or hangs (killed, and marked so). Only
        the reading is watched: decoding it is this process's own time."""
        with self._watchdog.watching(worker):
            try:
                data = worker.answers.recv_bytes()
            except (EOFError, OSError):
                return None
        return pickle.loads(data)

    def _ask(self, worker: _Worker, message: tuple[Any, ...]) -> Any:
        """A request other than scoring and its answer; None if the worker died or hangs."""
        if not self._send(worker, pickle.dumps(message, pickle.HIGHEST_PROTOCOL)):
            return None
        return self._receive(worker)

    def _call(self, index: int, message: tuple[Any, ...]) -> Any:
        """A request other than scoring (export, restore, forget); None if the worker is down,
        died or hangs: a state save then keeps that worker's part of the last save, and a new
        worker takes its series from there."""
        self._settle()
        if self._down(index):
            return None
        worker = self._workers[index]
        answer = self._ask(worker, message)
        if answer is None:
            self._lose(index, 0)
            return None
        worker.answered = True
        return answer

    def _down(self, index: int) -> bool:
        """Whether a worker that could not start still waits out its pause (its lines pass
        through unscored meanwhile); once the pause is over, a new one is started."""
        until = self._paused.get(index)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        del self._paused[index]
        self._replace(index)
        return False

    def _lose(self, index: int, in_flight: int) -> None:
        """A worker died or hangs: its metrics in flight pass through unscored; a new one takes its
        series, as the last save left them. One that died before it ever answered cannot
        start (a broken installation, say): its share waits ``_RESTART_PAUSE`` seconds before
        the next try, rather than a new interpreter being started for every batch."""
        dead = self._workers[index]
        if dead.hung:  # it would not read the end of its pipe either
            dead.process.kill()
        code = dead.stop()
        self._lost += in_flight
        self.restarts += 1
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
        if dead.hung:
            how = f"no answer in {_ANSWER_SECONDS:g} s: killed"
        if not dead.answered:
            self._paused[index] = time.monotonic() + _RESTART_PAUSE
            self.log.warn_repeated(
                f"worker-start:{index}",
                f"scoring worker {index} ended before answering ({how}): its series pass "
                f"through unscored; another is tried in {_RESTART_PAUSE:g} s",
            )
            return
        restored = self._replace(index)
        self.log.warn(
            f"scoring worker {index} died ({how}): {in_flight} metrics passed through unscored; "
            f"restarted with {restored} series from the last state save"
        )

    def _replace(self, index: int) -> int:
        """A new worker in place of a stopped one, with its series as the last save left
        them; how many it restored."""
        dead = self._workers[index]
        worker = self._workers[index] = self._start(index)
        # What the dead one and those before it counted stays in the totals.
        worker.before = add_counts(add_counts(Counters(), dead.before), dead.counters)
        count, entries = worker.saved = dead.saved
        if count:
            unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
            unpacker.feed(entries)
            document = {"model": model_section(self.config), "series": list(unpacker)}
            answer = self._ask(worker, ("restore", document))
            if answer is not None:  # else the next batch finds it dead
                worker.series = answer[1]
                worker.answered = True
        return worker.series


# ---------------------------------------------------------------------------------------------
# The worker's side


def _room_taken(request: bytes) -> int:
    """Room in a worker's pipe a request takes: its bytes and _MESSAGE_SLACK."""
    return len(request) + _MESSAGE_SLACK


def _unanswered(parts: list[list[_Sent]], index: int) -> int:
    """Bytes of requests sent to worker ``index`` in ``parts`` (at most what its pipe holds)."""
    return sum(sent.size for part in parts for sent in part if sent.index == index)


def _passed_through(count: int) -> Stats:
    """The count of lines that went out as they came, unscored."""
    return Stats(lines_in=count, lines_out=count, passed_through=count)


def serve_pipes() -> None:
    """A worker process's entry: its two pipes' descriptors are its arguments."""
    # Stop signals are the main process's to handle (a terminal sends them to the group); the
    # worker leaves when its request pipe closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    tune_garbage_collector()
    requests = Connection(int(sys.argv[1]), writable=False)
    answers = Connection(int(sys.argv[2]), readable=False)
    try:
        _, config, alerting = requests.recv()
    except (EOFError, OSError):
        return
    _serve(requests, answers, config, alerting)


def _serve(requests: Connection, answers: Connection, config: Config, alerting: bool) -> None:
    """A worker's life: answer the main process's requests until its end of the pipe closes."""
    log = Log(sys.stderr, config.log.level, config.log.repeat_interval)
    alerts: list[AlertEvent] = []
    detector = Detector(config, log, notify=alerts.append if alerting else None)
    from hst_processor.processor import Processor  # which imports this module for the pool

    processor = Processor(config, log, detector=detector)
    while True:
        try:
            message = requests.recv()
        except (EOFError, OSError):
            return
        kind = message[0]
        if kind == "process":
            processor.stats = Stats()  # this batch's
            lines = processor.process_lines(message[1])
            answer: Any = _Answer(
                lines,
                processor.stats,
                list(alerts),
                detector.counters,
                detector.series_count(),
                detector.open_episodes(),
            )
            alerts.clear()
        elif kind == "export":
            try:
                answer = packed_series(detector)
            except StateError as error:  # an engine that cannot keep its models
                answer = error
        elif kind == "restore":
            answer = (restore(detector, message[1]), detector.series_count())
        else:  # "forget"
            detector.forget_all()
            answer = True
        try:
            answers.send(answer)
        except OSError:
            return

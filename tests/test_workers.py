"""``workers: N``: the series shared among scoring processes, and nothing else changed."""

from __future__ import annotations

import copy
import dataclasses
import io
import itertools
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from hst_processor import workers
from hst_processor.alerts import AlertEvent
from hst_processor.config import Config, available_cores, load_config, parse_config
from hst_processor.detector import Detector
from hst_processor.errors import ConfigError
from hst_processor.lineproto import parse_metric
from hst_processor.log import Log
from hst_processor.processor import Processor
from hst_processor.selfmetrics import report_fields, resident_bytes
from hst_processor.series import describe_series, series_key_of
from hst_processor.state import StateStore
from hst_processor.workers import _WORKER_MAIN as _REAL_WORKER_MAIN
from hst_processor.workers import WorkerPool, worker_of
from simulator.run import simulate
from simulator.scenario import ScheduledFault
from tests.test_processor import GOLDEN, GOLDEN_CASES, process_bytes

ROOT = Path(__file__).resolve().parent.parent
START_NS = 1_767_225_600_000_000_000
# A short window, so that most of a few minutes of metrics are scored, not warm-up.
SMALL_DEFAULTS = {
    "measurements": ["machine_data"],
    "group_by": ["machineID"],
    "model": {"window_size": 40},
}


def demo_config(workers: int) -> Config:
    """The shipped demo configuration, with ``workers`` scoring processes."""
    return dataclasses.replace(load_config(ROOT / "hst-processor.yaml"), workers=workers)


def machines_text(machines: int = 7, seconds: int = 200) -> str:
    faults = [ScheduledFault("machine2", "overload", seconds * 0.6, 40)]
    text, _ = simulate(machines, 3, START_NS, seconds, faults)
    return text


def pieces(text: str, seed: int) -> Iterator[str]:
    """``text`` cut at random places, lines split mid-way included, as reads come."""
    chooser = random.Random(seed)
    start = 0
    while start < len(text):
        size = chooser.choice([1, 50, 700, 5_000, 40_000])
        yield text[start : start + size]
        start += size


def run(processor: Processor, text: str, seed: int = 0) -> str:
    """The processor's output for ``text`` in random reads, each said at random to have more
    input waiting behind it or not (workers then keep the last lines for the next read)."""
    waiting = random.Random(seed + 1)
    out = [processor.feed(piece, waiting.random() < 0.7) for piece in pieces(text, seed)]
    return "".join(out) + processor.finish()


@pytest.fixture
def pools() -> Iterator[list[WorkerPool]]:
    """Pools made by a test, closed however it ends (no worker outlives its test)."""
    made: list[WorkerPool] = []
    yield made
    for pool in made:
        pool.close()


def pooled(config: Config, pools: list[WorkerPool], **kwargs: object) -> Processor:
    pool = WorkerPool(config, Log(io.StringIO()), **kwargs)  # type: ignore[arg-type]
    pools.append(pool)
    return Processor(config, Log(io.StringIO()), detector=pool)


@pytest.mark.parametrize("document", ["defaults", "demo"])
def test_two_workers_write_what_one_process_writes_byte_for_byte(
    document: str, pools: list[WorkerPool]
) -> None:
    if document == "demo":
        one, two = demo_config(1), demo_config(2)
    else:
        one, two = parse_config(SMALL_DEFAULTS), parse_config({**SMALL_DEFAULTS, "workers": 2})
    text = machines_text(seconds=400 if document == "demo" else 200)  # past each warm-up
    alone = Processor(one, Log(io.StringIO()))
    expected = run(alone, text)
    shared = pooled(two, pools)
    assert run(shared, text, seed=1) == expected
    assert "anomaly_score=" in expected  # the comparison covers scored metrics, not warm-up only
    assert shared.stats == alone.stats
    assert shared.detector.counters == alone.detector.counters
    assert shared.detector.series_count() == alone.detector.series_count() == 7
    assert shared.summary() == alone.summary()


def test_with_more_input_waiting_the_end_of_a_read_comes_out_with_the_next(
    pools: list[WorkerPool],
) -> None:
    """The workers score a read's last parts while the next is read: their lines come out
    first with the next read's, in order, and a request in between (a state save) waits for
    them to be scored."""
    lines = machines_text(machines=7, seconds=1000).splitlines(keepends=True)
    head, tail = "".join(lines[:5000]), "".join(lines[5000:])
    alone = Processor(parse_config(SMALL_DEFAULTS), Log(io.StringIO()))
    expected = alone.feed(head) + alone.feed(tail)
    shared = pooled(parse_config({**SMALL_DEFAULTS, "workers": 2}), pools)
    pool = shared.detector
    assert isinstance(pool, WorkerPool)
    first = shared.feed(head, more=True)
    assert 0 < first.count("\n") < 5000  # the read's end is still being scored
    saved = msgpack.unpackb(pool.snapshot(processed=5000), raw=False, strict_map_key=False)
    assert len(saved["series"]) == 7  # every worker answered the save, not with a part's lines
    second = shared.feed(tail, more=True)
    assert first + second + shared.finish() == expected
    assert shared.stats == alone.stats
    assert pool.counters == alone.detector.counters


def test_a_save_or_report_while_lines_are_carried_counts_what_the_models_learned(
    tmp_path: Path, pools: list[WorkerPool]
) -> None:
    """A periodic save between two reads records the position the models have learned up to
    (a resume there learns nothing twice), and a report's counts agree with each other."""
    config = parse_config({**SMALL_DEFAULTS, "workers": 2})
    lines = machines_text(machines=7, seconds=1000).splitlines(keepends=True)
    path = tmp_path / "state.msgpack"
    store = StateStore(path, 0.01, Log(io.StringIO()))
    pool = WorkerPool(config, Log(io.StringIO()))
    pools.append(pool)
    store.start(pool)
    processor = Processor(config, Log(io.StringIO()), detector=pool, state=store)
    time.sleep(0.02)  # the save's interval is up
    first = processor.feed("".join(lines[:5000]), more=True)
    processor.after_batch()
    store.poll(wait=True)
    fields = report_fields(processor, [])
    assert fields["metrics_in"] == fields["scored"] + fields["warmup"] == 5000
    saved = msgpack.unpackb(path.read_bytes(), raw=False, strict_map_key=False)
    assert saved["processed"] == 5000
    rest = processor.feed("".join(lines[5000:]))
    assert first.count("\n") < 5000 and (first + rest).count("\n") == len(lines)
    store.release()


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_cases_with_three_workers(case: str, pools: list[WorkerPool]) -> None:
    """Bad lines, blank lines, comments, strings with newlines, a cut-off end: the same bytes."""
    directory = GOLDEN / case
    config = dataclasses.replace(load_config(directory / "config.yaml"), workers=3)
    for piece in (None, 7):
        processor = pooled(config, pools)
        output = process_bytes(processor, (directory / "input.lp").read_bytes(), piece)
        assert output == (directory / "expected.lp").read_bytes()


def test_each_series_is_scored_by_the_worker_its_key_hashes_to(pools: list[WorkerPool]) -> None:
    config = parse_config({**SMALL_DEFAULTS, "workers": 2})
    processor = pooled(config, pools)
    text = machines_text(machines=12, seconds=2)
    processor.feed(text)
    pool = processor.detector
    assert isinstance(pool, WorkerPool)
    owners = {
        worker_of(describe_series(pool.series_key(parse_metric(line))), 2)
        for line in text.splitlines()
    }
    assert owners == {0, 1}  # twelve machines land on both
    assert [worker.series for worker in pool._workers] == [
        sum(worker_of(f"machine_data,machineID=machine{m}", 2) == index for m in range(1, 13))
        for index in range(2)
    ]


def test_alerts_raised_in_workers_reach_the_main_process_as_one_process_raises_them(
    pools: list[WorkerPool],
) -> None:
    text = machines_text(machines=5, seconds=600)  # the overload after the warm-up
    alone_alerts: list[AlertEvent] = []
    detector = Detector(demo_config(1), Log(io.StringIO()), notify=alone_alerts.append)
    alone = Processor(demo_config(1), Log(io.StringIO()), detector)
    run(alone, text)
    pooled_alerts: list[AlertEvent] = []
    shared = pooled(demo_config(2), pools, notify=pooled_alerts.append)
    run(shared, text)
    assert any(alert.kind == "open" for alert in alone_alerts)  # the overload alerts

    # Each worker raises its machines' alerts; the main process sends them in the order of
    # their metrics' times, which is the order one process meets them in a stream in time order.
    assert pooled_alerts == alone_alerts


def owned_by(text: str, pool: WorkerPool, index: int) -> list[bool]:
    return [
        worker_of(describe_series(pool.series_key(parse_metric(line))), 2) == index
        for line in text.splitlines()
    ]


def two_workers_1200_lines_in(
    pools: list[WorkerPool], save: bool
) -> tuple[WorkerPool, Processor, io.StringIO, list[str], list[str]]:
    """A pool of two that scored 1,200 lines of 6 machines (and saved them, if ``save``,
    as a periodic save gathers and keeps them); its log, and 60 lines and the rest to come."""
    config = parse_config({**SMALL_DEFAULTS, "workers": 2})
    log = io.StringIO()
    pool = WorkerPool(config, Log(log))
    pools.append(pool)
    processor = Processor(config, Log(io.StringIO()), detector=pool)
    lines = machines_text(machines=6, seconds=300).splitlines(keepends=True)
    processor.feed("".join(lines[:1200]))
    if save:
        pool.snapshot(processed=1200)
    return pool, processor, log, lines[1200:1260], lines[1260:]


@pytest.mark.parametrize("saved", [True, False])
def test_a_killed_worker_loses_no_line_and_its_successor_starts_from_the_last_save(
    saved: bool, pools: list[WorkerPool]
) -> None:
    pool, processor, log, during, after = two_workers_1200_lines_in(pools, save=saved)
    victim = pool._workers[0].process
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    out = processor.feed("".join(during)).splitlines(keepends=True)
    mine = owned_by("".join(during), pool, 0)
    assert 0 < sum(mine) < len(during)
    for line, output, lost in zip(during, out, mine, strict=True):
        if lost:
            assert output == line  # passed through unchanged
        else:
            assert "anomaly_score=" in output  # the other worker's series go on
    assert pool.counters.lost == sum(mine)
    assert pool.restarts == 1
    assert "scoring worker 0 died (killed by signal 9)" in log.getvalue()

    out = processor.feed("".join(after)).splitlines(keepends=True)
    assert len(out) == len(after)
    restarted = [o for o, m in zip(out, owned_by("".join(after), pool, 0), strict=True) if m]
    if saved:  # its series scored at once, from the state the save kept
        assert all("anomaly_score=" in line for line in restarted)
    else:  # nothing kept: they warm up again
        assert all("anomaly=warmup" in line for line in restarted[:20])
    assert processor.stats.lines_in == processor.stats.lines_out == 1200 + len(during) + len(after)
    assert pool.series_count() == 6


def test_a_worker_that_hangs_is_killed_and_replaced_and_its_lines_pass_through(
    pools: list[WorkerPool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that stops answering (here: stopped by SIGSTOP) must not stop the stream."""
    pool, processor, log, during, after = two_workers_1200_lines_in(pools, save=True)
    hung = pool._workers[0].process
    hung.send_signal(signal.SIGSTOP)
    # The other worker answers 60 lines in milliseconds: two seconds leave it room to spare.
    monkeypatch.setattr(workers, "_ANSWER_SECONDS", 2.0)
    out = processor.feed("".join(during)).splitlines(keepends=True)
    monkeypatch.undo()
    mine = owned_by("".join(during), pool, 0)
    assert 0 < sum(mine) < len(during)
    for line, output, lost in zip(during, out, mine, strict=True):
        assert (output == line) if lost else ("anomaly_score=" in output)
    assert hung.wait(timeout=10) == -signal.SIGKILL
    assert pool.counters.lost == sum(mine) and pool.restarts == 1
    assert "scoring worker 0 died (no answer in 2 s: killed)" in log.getvalue()
    out = processor.feed("".join(after)).splitlines(keepends=True)
    restarted = [o for o, m in zip(out, owned_by("".join(after), pool, 0), strict=True) if m]
    assert restarted and all("anomaly_score=" in line for line in restarted)  # from the save


def test_a_worker_that_hangs_during_a_state_save_is_replaced_and_the_save_keeps_its_last_part(
    pools: list[WorkerPool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save asks every worker for its series: one that stopped answering must not stop the
    processor (and Telegraf's stream) for good. Its part of the last save is kept."""
    pool, processor, log, during, after = two_workers_1200_lines_in(pools, save=True)
    first = msgpack.unpackb(pool.snapshot(processed=1200), raw=False, strict_map_key=False)
    processor.feed("".join(during))  # both workers learn more after that save
    hung = pool._workers[0].process
    hung.send_signal(signal.SIGSTOP)
    monkeypatch.setattr(workers, "_ANSWER_SECONDS", 2.0)
    second = msgpack.unpackb(pool.snapshot(processed=1260), raw=False, strict_map_key=False)
    monkeypatch.undo()
    assert hung.wait(timeout=10) == -signal.SIGKILL
    assert pool.restarts == 1
    assert "scoring worker 0 died (no answer in 2 s: killed)" in log.getvalue()

    assert by_owner(second, 0) == by_owner(first, 0) != {}  # the hung worker's: the last save
    assert by_owner(second, 1) != by_owner(first, 1) != {}  # the other's: as it is now
    out = processor.feed("".join(after)).splitlines(keepends=True)
    restarted = [o for o, m in zip(out, owned_by("".join(after), pool, 0), strict=True) if m]
    assert restarted and all("anomaly_score=" in line for line in restarted)


def with_worker_zero_larger_than_its_pipe(document: dict) -> dict:
    """A snapshot whose series owned by worker 0 (of two) take more bytes than a pipe holds:
    copies of its entries under new keys."""
    series = list(document["series"])
    for number in itertools.count():
        entry = copy.deepcopy(series[number % len(series)])
        entry["tags"] = [["machineID", f"copy{number}"]]
        if worker_of(describe_series(series_key_of(entry)), 2) == 0:
            series.append(entry)
        if number % 200 == 0:  # the restore request worker 0 would get, as it is sent
            larger = {**document, "series": series}
            share = {**larger, "series": list(by_owner(larger, 0).values())}
            if len(pickle.dumps(("restore", share), pickle.HIGHEST_PROTOCOL)) > 2 << 20:
                return larger
    raise AssertionError("unreachable")


def test_a_restore_larger_than_the_pipe_does_not_wait_for_a_hung_worker_without_limit(
    pools: list[WorkerPool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request itself must wait for room in the pipe, which a hung worker never makes."""
    pool, _, log, _, _ = two_workers_1200_lines_in(pools, save=False)
    saved = msgpack.unpackb(pool.snapshot(processed=1200), raw=False, strict_map_key=False)
    document = with_worker_zero_larger_than_its_pipe(saved)
    hung = pool._workers[0].process
    hung.send_signal(signal.SIGSTOP)
    monkeypatch.setattr(workers, "_ANSWER_SECONDS", 2.0)
    pool.restore(document)
    monkeypatch.undo()
    assert hung.wait(timeout=10) == -signal.SIGKILL
    assert "scoring worker 0 died (no answer in 2 s: killed)" in log.getvalue()
    assert pool.restarts == 1
    assert pool._workers[1].series == len(by_owner(document, 1)) > 0  # the other one restored


def test_a_worker_that_hangs_halfway_through_its_answer_is_killed_and_replaced(
    pools: list[WorkerPool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export larger than the pipe comes in pieces: waiting for the rest is watched too."""
    pool, _, log, _, _ = two_workers_1200_lines_in(pools, save=True)
    saved = msgpack.unpackb(pool.snapshot(processed=1200), raw=False, strict_map_key=False)
    pool.restore(with_worker_zero_larger_than_its_pipe(saved))
    victim = pool._workers[0]
    answers = victim.answers

    class StopsOnceTheAnswerBegins:
        def recv_bytes(self) -> bytes:
            answers.poll(None)
            victim.process.send_signal(signal.SIGSTOP)
            return answers.recv_bytes()

        def __getattr__(self, name: str) -> Any:
            return getattr(answers, name)

    victim.answers = StopsOnceTheAnswerBegins()  # type: ignore[assignment]
    monkeypatch.setattr(workers, "_ANSWER_SECONDS", 2.0)
    second = msgpack.unpackb(pool.snapshot(processed=1300), raw=False, strict_map_key=False)
    monkeypatch.undo()
    assert victim.process.wait(timeout=10) == -signal.SIGKILL
    assert "scoring worker 0 died (no answer in 2 s: killed)" in log.getvalue()
    assert by_owner(second, 0) == by_owner(saved, 0)  # its part of the save before


def test_a_part_larger_than_the_pipe_does_not_wait_for_a_hung_worker_without_limit(
    pools: list[WorkerPool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts are sent no further ahead than a pipe holds, but one long line is larger than
    that by itself: writing it to a worker that stopped is watched as well."""
    pool, _, log, during, _ = two_workers_1200_lines_in(pools, save=True)
    mine = owned_by("".join(during), pool, 0)
    line = next(text for text, owned in zip(during, mine, strict=True) if owned)
    series, fields, stamp = line.split(" ")
    long_line = f'{series} {fields},note="{"x" * (3 * workers._PIPE_BYTES // 2)}" {stamp}'
    hung = pool._workers[0].process
    hung.send_signal(signal.SIGSTOP)
    monkeypatch.setattr(workers, "_ANSWER_SECONDS", 2.0)
    lines, stats = pool.process_lines([long_line])
    monkeypatch.undo()
    assert lines == [long_line] and stats.passed_through == 1  # unchanged, counted
    assert hung.wait(timeout=10) == -signal.SIGKILL
    assert "scoring worker 0 died (no answer in 2 s: killed)" in log.getvalue()


def by_owner(document: dict, owner: int) -> dict[str, dict]:
    """A snapshot's series entries owned by worker ``owner`` of two, by their key's text."""
    entries = {describe_series(series_key_of(s)): s for s in document["series"]}
    return {key: e for key, e in entries.items() if worker_of(key, 2) == owner}


@pytest.mark.parametrize("workers_after", [1, 3])
def test_a_state_file_written_by_two_workers_resumes_byte_identically_under_any_count(
    workers_after: int, tmp_path: Path, pools: list[WorkerPool]
) -> None:
    """With no series forgotten (the file orders series worker by worker, see the README)."""
    text = machines_text(machines=6, seconds=200)
    lines = text.splitlines(keepends=True)
    head, tail = "".join(lines[:700]), "".join(lines[700:])
    reference = Processor(parse_config(SMALL_DEFAULTS), Log(io.StringIO()))
    reference.feed(head)
    expected_tail = reference.feed(tail)  # the uninterrupted run's

    path = tmp_path / "state.msgpack"
    before = parse_config({**SMALL_DEFAULTS, "workers": 2})
    store = StateStore(path, 60, Log(io.StringIO()))
    first = pooled(before, pools)
    assert store.start(first.detector) == 0
    first.state = store
    first.feed(head)
    first.close()
    store.release()

    after = parse_config({**SMALL_DEFAULTS, "workers": workers_after})
    resumed_store = StateStore(path, 60, Log(io.StringIO()))
    resumed = pooled(after, pools) if workers_after > 1 else Processor(after, Log(io.StringIO()))
    assert resumed_store.start(resumed.detector) == 700
    assert resumed.detector.series_count() == 6
    assert resumed.feed(tail) == expected_tail
    resumed_store.release()


def test_closing_the_pool_ends_every_worker(pools: list[WorkerPool]) -> None:
    pool = WorkerPool(parse_config({**SMALL_DEFAULTS, "workers": 3}), Log(io.StringIO()))
    processes = [worker.process for worker in pool._workers]
    assert all(process.poll() is None for process in processes)
    pool.close()
    assert [process.poll() for process in processes] == [0, 0, 0]


def test_workers_auto_is_one_per_core_and_a_bad_count_names_the_key() -> None:
    assert parse_config({"workers": "auto"}).workers == min(available_cores(), 64)
    assert parse_config({}).workers == 1
    for bad in (0, 65, "two", True, 1.5):
        with pytest.raises(ConfigError) as raised:
            parse_config({"workers": bad})
        assert raised.value.key == "workers"
        assert "from 1 to 64" in str(raised.value)


def test_a_worker_holds_no_descriptor_of_telegrafs_stdout(pools: list[WorkerPool]) -> None:
    """Telegraf sees the processor's stdout close when the main process exits: a worker that
    kept a copy would hold it open."""
    pool = WorkerPool(parse_config({**SMALL_DEFAULTS, "workers": 2}), Log(io.StringIO()))
    pools.append(pool)
    for worker in pool._workers:
        descriptors = Path(f"/proc/{worker.process.pid}/fd")
        assert os.readlink(descriptors / "0") == os.readlink(descriptors / "1") == os.devnull


def test_parts_bigger_than_a_pipe_neither_block_nor_change_a_byte(pools: list[WorkerPool]) -> None:
    """Lines are sent in parts while the workers score the part before; a part that could
    not wait in its pipe (lines of 400 kB here) is sent only once the workers are idle, or
    both sides would wait on full pipes for ever."""
    config = parse_config({**SMALL_DEFAULTS, "workers": 2})
    lines = machines_text(machines=6, seconds=1_000).splitlines(keepends=True)
    big = 'machine_data,machineID=machine{n} load=1,note="{text}" 1767226000000000000\n'
    for place in (100, 2_500, 2_501, 2_502, 2_503, 4_000):  # 1.6 MB for one worker in a part
        lines.insert(place, big.format(n=1, text="x" * 400_000))
    text = "".join(lines)
    expected = Processor(parse_config(SMALL_DEFAULTS), Log(io.StringIO())).feed(text)
    processor = pooled(config, pools)
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(processor.feed(text)), daemon=True)
    worker.start()
    worker.join(timeout=300)  # a deadlock fails here rather than hanging the suite
    assert not worker.is_alive()
    assert result == [expected]
    pool = processor.detector
    assert isinstance(pool, WorkerPool)
    assert all(w.room >= 65_536 for w in pool._workers)  # Linux's default pipe at least


def test_crlf_lines_go_to_their_series_worker(pools: list[WorkerPool]) -> None:
    """A line ending in CRLF is routed by its series like any other (it was parsed with its
    carriage return, failed, and went to the first worker, over that worker's bound)."""
    document = {"measurements": ["m"], "group_by": ["id"], "max_series": 8}
    text = "".join(f"m,id=s{i % 8} x={i % 5} {i}\r\n" for i in range(400))
    text += "".join(f"m,id=s{i % 8} x={i % 5} {i}\n" for i in range(400, 500))
    alone = Processor(parse_config(document), Log(io.StringIO()))
    shared = pooled(parse_config({**document, "workers": 2}), pools)
    assert shared.feed(text) == alone.feed(text)
    assert shared.summary() == alone.summary()
    assert shared.detector.counters.evicted == 0
    assert shared.detector.series_count() == 8


def test_a_worker_that_cannot_start_passes_its_share_through_and_is_retried_after_a_pause(
    pools: list[WorkerPool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a new interpreter for every batch: its share's lines go out unscored, counted,
    and another start is tried once the pause is over."""
    monkeypatch.setattr(workers, "_WORKER_MAIN", "import sys; sys.exit(1)")
    log = io.StringIO()
    config = parse_config({**SMALL_DEFAULTS, "workers": 2})
    pool = WorkerPool(config, Log(log))
    pools.append(pool)
    processor = Processor(config, Log(io.StringIO()), detector=pool)
    text = machines_text(machines=6, seconds=5)
    for _ in range(3):
        assert processor.feed(text) == text  # every line unchanged
    assert pool.counters.lost == 3 * len(text.splitlines())
    assert pool.restarts == 2  # each worker once, not once per batch
    assert "ended before answering (exit 1)" in log.getvalue()

    monkeypatch.setattr(workers, "_WORKER_MAIN", _REAL_WORKER_MAIN)
    monkeypatch.setattr(workers, "_RESTART_PAUSE", 0.0)
    for index in list(pool._paused):
        pool._paused[index] = 0.0  # the pause is over
    out = processor.feed(text)
    assert out.count("anomaly=warmup") == len(text.splitlines())  # scored again
    assert pool.series_count() == 6


def test_workers_run_the_processors_code_whatever_the_working_directory_holds(
    tmp_path: Path,
) -> None:
    """``python -c`` puts the working directory first on the import path: a folder named
    like the package there must not be what the workers import."""
    shadow = tmp_path / "hst_processor"
    shadow.mkdir()
    (shadow / "__init__.py").write_text('raise ImportError("the shadow package")\n')
    config = tmp_path / "two.yaml"
    config.write_text("measurements: [m]\ngroup_by: [id]\nworkers: 2\n")
    lines = "".join(f"m,id=s{i % 4} x={i % 5} {i}\n" for i in range(40))
    script = Path(sys.executable).with_name("hst-processor")
    done = subprocess.run(
        [str(script), "--config", str(config)],
        input=lines.encode(),
        capture_output=True,
        cwd=tmp_path,
        timeout=120,
        check=True,
    )
    assert done.stdout.decode().count("anomaly=warmup") == 40
    assert b"shadow" not in done.stderr and b"died" not in done.stderr


def test_series_keys_with_escapes_are_each_scored_by_one_worker(pools: list[WorkerPool]) -> None:
    """A line is routed by the text before its first space when that text is a series text
    already parsed; escaped spaces, commas and equals signs, and backslashes before a space,
    must neither split a series between workers nor merge two; nor may a tag that is not in
    ``group_by``."""
    keys = [
        r"m,id=a\ b",
        r"m,id=a\ c",
        r"m,id=a\\",
        r"m,id=a\,b",
        r"m,id=a\=b",
        r"m\ x,id=a",
        r"m\,x,id=a",
        "m,id=a",
        "m,id=b",
    ]
    document = {"measurements": [], "group_by": ["id"], "model": {"window_size": 20}}
    # A tag outside group_by changes the text before the fields, not the series.
    lines = [f"{keys[i % len(keys)]},host=h{i % 4} x={i % 7},y={i % 3} {i}\n" for i in range(2_700)]
    text = "".join(lines)
    alone = Processor(parse_config(document), Log(io.StringIO()))
    shared = pooled(parse_config({**document, "workers": 3}), pools)
    assert run(shared, text, seed=2) == run(alone, text)
    assert shared.detector.series_count() == alone.detector.series_count()
    assert shared.summary() == alone.summary()
    assert "anomaly_score=" in run(Processor(parse_config(document), Log(io.StringIO())), text)


def test_the_memory_reported_includes_the_workers(pools: list[WorkerPool]) -> None:
    config = parse_config({**SMALL_DEFAULTS, "workers": 2})
    processor = pooled(config, pools)
    processor.feed(machines_text(machines=4, seconds=50))
    pool = processor.detector
    assert isinstance(pool, WorkerPool)
    workers = [resident_bytes(pid) for pid in pool.worker_pids()]
    assert len(workers) == 2 and min(workers) > 10 << 20  # an interpreter with NumPy
    reported = report_fields(processor, [])["rss_bytes"]
    assert abs(reported - resident_bytes() - sum(workers)) < 16 << 20

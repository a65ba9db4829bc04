"""The real ``hst-processor`` command under a Telegraf ``processors.execd`` stand-in."""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.telegraf_harness import KNOWN_PREFIX, ExecdHarness

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = ROOT / "hst-processor.yaml"
ADDED = re.compile(
    rb",anomaly=(?:warmup|true|false)|,anomaly_score=[0-9.]+|,anomaly_feature=\"[a-z_]+\""
)


def command(*args: str) -> list[str]:
    """The installed console script, as a Telegraf config would name it."""
    script = shutil.which("hst-processor")
    assert script is not None, "hst-processor is not installed: pip install -e '.[test]'"
    return [script, *args]


def machine_line(i: int, machine: str = "machine1", load: float = 70.0) -> bytes:
    power = 200 + (i * 7) % 20
    return (
        f"machine_data,machineID={machine},provider=Acme load={load + (i % 5)},"
        f"power={power},temperature={35 + i % 5},vibration={80 + i % 10} "
        f"{1767225600000000000 + i * 1_000_000_000}"
    ).encode()


def with_value(line: bytes, field: bytes, value: bytes) -> bytes:
    return re.sub(rb"\b" + field + rb"=[^, ]+", field + b"=" + value, line)


@pytest.fixture
def harness() -> ExecdHarness:
    return ExecdHarness(command("--config", str(DEMO_CONFIG))).start()


def test_each_metric_is_answered_while_stdin_stays_open(harness: ExecdHarness) -> None:
    for i in range(30):
        line = machine_line(i)
        harness.write_metric(line)
        out = harness.read_metric(timeout=5)
        assert ADDED.sub(b"", out.text) == line + b"\n"
        assert b"anomaly=warmup" in out.text
    result = harness.stop()
    assert result.exit_code == 0
    assert result.needed == ""


def test_closing_stdin_stops_cleanly_before_sigterm(harness: ExecdHarness) -> None:
    for i in range(450):
        harness.write_metric(machine_line(i))
    outputs = harness.drain(450)
    assert [ADDED.sub(b"", o.text) for o in outputs] == [
        machine_line(i) + b"\n" for i in range(450)
    ]
    assert b"anomaly_score=" in outputs[-1].text
    result = harness.stop()
    assert (result.exit_code, result.needed) == (0, "")
    assert result.seconds < 5
    assert harness.unprefixed_stderr() == []
    assert any(
        line.startswith(b"I! hst-processor: 450 lines in, 450 out") for line in harness.stderr_lines
    )


def test_sigterm_with_stdin_open_finishes_and_exits_zero(harness: ExecdHarness) -> None:
    for i in range(20):
        harness.write_metric(machine_line(i))
    harness.drain(20)
    assert harness.process is not None
    harness.process.send_signal(signal.SIGTERM)
    assert harness.process.wait(timeout=5) == 0
    harness.join()
    assert any(b"received SIGTERM" in line for line in harness.stderr_lines)
    assert harness.unprefixed_stderr() == []


def test_bad_input_passes_through_unchanged_and_the_stream_goes_on(
    harness: ExecdHarness,
) -> None:
    bad = [
        b"machine_data,machineID=machine1 load=not-a-number 1",
        b'machine_data,machineID=machine1 note="caf\xe9\xff" 1',
        b"",
        b"machine_data,machineID=machine1 load=" + b"9" * (1 << 20),
        b"just some words",
    ]
    for i, line in enumerate(bad):
        harness.write_metric(line)
        out = harness.read_metric(timeout=10)
        assert out.text == line + b"\n", i
        harness.write_metric(machine_line(i))
        good = harness.read_metric(timeout=5)
        assert ADDED.sub(b"", good.text) == machine_line(i) + b"\n"
    result = harness.stop()
    assert (result.exit_code, result.needed) == (0, "")
    summary = [line for line in harness.stderr_lines if b"lines in" in line][-1]
    assert b"10 lines in, 10 out" in summary
    assert b"5 metrics, 4 unparseable (1 not UTF-8, 0 cut off), 1 blank" in summary
    assert harness.unprefixed_stderr() == []
    warnings = [line for line in harness.stderr_lines if line.startswith(b"W! ")]
    assert any(b"unparseable metric" in line for line in warnings)
    assert max(len(line) for line in harness.stderr_lines) < 1000  # no 1 MB warning


def test_open_string_at_the_end_of_input_is_released_after_a_pause() -> None:
    """A quoted string may hold a newline, so a line ending inside one waits for more input,
    but only briefly: then it goes out unchanged as a metric of its own. (Telegraf never
    writes such a line; a person piping a broken file might.) Read raw, since a line-protocol
    reader like Telegraf's would itself wait for the string to close."""
    process = subprocess.Popen(
        command("--config", str(DEMO_CONFIG)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdin is not None and process.stdout is not None
    broken = b'machine_data,machineID=machine1 note="never closed\n'
    os.write(process.stdin.fileno(), broken)
    ready, _, _ = select.select([process.stdout], [], [], 5)
    assert ready, "the open string was held back"
    assert os.read(process.stdout.fileno(), 1 << 16) == broken
    os.write(process.stdin.fileno(), machine_line(0) + b"\n")
    ready, _, _ = select.select([process.stdout], [], [], 5)
    assert ready
    assert ADDED.sub(b"", os.read(process.stdout.fileno(), 1 << 16)) == machine_line(0) + b"\n"
    process.stdin.close()
    assert process.wait(timeout=5) == 0


def test_values_at_the_float_limits_keep_the_process_and_its_state_alive(tmp_path: Path) -> None:
    """Issue 12, class 1: with the demo config a huge value in the residuals' fit raised
    OverflowError, and the poisoned fit, saved in the state, crashed every restart."""
    state = tmp_path / "state.msgpack"
    run = command("--config", str(DEMO_CONFIG), "--state-file", str(state))
    huge = [b"1e200", b"1.7976931348623157e308", b"-1.7976931348623157e308"]
    first = [machine_line(i) for i in range(60)]
    first[10] = with_value(first[10], b"power", huge[0])
    first[11] = with_value(first[11], b"load", huge[1])
    before_restart = subprocess.run(
        run, input=b"\n".join(first) + b"\n", capture_output=True, timeout=60
    )
    assert before_restart.returncode == 0, before_restart.stderr[-2000:]
    assert state.exists()
    second = [machine_line(i) for i in range(60, 460)]
    for i, value in zip((200, 201, 300, 301), [*huge, b"1e-300"], strict=True):
        # After warm-up, and a huge value followed by small ones in the residual's window.
        second[i] = with_value(second[i], b"power", value)
    after_restart = subprocess.run(
        run, input=b"\n".join(second) + b"\n", capture_output=True, timeout=60
    )
    assert after_restart.returncode == 0, after_restart.stderr[-2000:]
    outputs = after_restart.stdout.splitlines(keepends=True)
    assert [ADDED.sub(b"", line) for line in outputs] == [line + b"\n" for line in second]
    assert b"anomaly_score=" in outputs[-1]
    assert b"Traceback" not in after_restart.stderr


class RawReader:
    """Everything the child writes to stdout, as it comes, with when it came: for output a
    line-protocol reader would itself hold back (an unclosed string)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self._fd = process.stdout.fileno()
        self.data = b""
        self.lines_at: list[float] = []  # when each newline arrived
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while chunk := os.read(self._fd, 1 << 20):
            self.data += chunk
            self.lines_at += [time.monotonic()] * chunk.count(b"\n")

    def wait_for_lines(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.lines_at) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(self.lines_at) >= count

    def join(self) -> None:
        self._thread.join(timeout=10)


Started = Callable[..., tuple["subprocess.Popen[bytes]", RawReader]]


@pytest.fixture
def started() -> Iterator[Started]:
    """Starts the command with the demo config and returns it once it has answered a first
    line (so no check counts its start-up); kills what is still running at the end."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> tuple[subprocess.Popen[bytes], RawReader]:
        process = subprocess.Popen(
            command("--config", str(DEMO_CONFIG), *args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        processes.append(process)
        reader = RawReader(process)
        assert process.stdin is not None
        os.write(process.stdin.fileno(), machine_line(0) + b"\n")
        assert reader.wait_for_lines(1, timeout=60), "the command did not start"
        return process, reader

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def write_in_background(fd: int, data: bytes) -> None:
    """Write more than the pipe holds without blocking the test (the child may stop first)."""

    def write() -> None:
        with contextlib.suppress(BrokenPipeError):
            os.write(fd, data)

    threading.Thread(target=write, daemon=True).start()


UNCLOSED = b'machine_data,machineID=machine1 note="never closed\n'


def test_an_unclosed_string_holds_the_stream_briefly_even_while_lines_keep_coming(
    started: Started,
) -> None:
    """Issue 12, class 2: the 0.2 s hold was really "until 0.2 s of silence", so a stream
    that went on was held back as long as it went on."""
    process, reader = started()
    assert process.stdin is not None
    os.write(process.stdin.fileno(), UNCLOSED)
    written_at = []
    for i in range(1, 101):  # 5 s of lines, a new one every 50 ms: never 0.2 s of silence
        os.write(process.stdin.fileno(), machine_line(i) + b"\n")
        written_at.append(time.monotonic())
        time.sleep(0.05)
    # Generous: the first half of the stream was answered before its end (not at once).
    assert reader.wait_for_lines(2 + 50, timeout=10)
    assert reader.lines_at[2 + 50 - 1] < written_at[-1], "output waited for the stream to pause"
    process.stdin.close()
    assert process.wait(timeout=10) == 0
    reader.join()
    expected = machine_line(0) + b"\n" + UNCLOSED
    expected += b"".join(machine_line(i) + b"\n" for i in range(1, 101))
    assert ADDED.sub(b"", reader.data) == expected


def test_an_unclosed_string_before_many_lines_costs_no_more_than_the_lines(
    started: Started,
) -> None:
    """Each newline once re-parsed the whole held text: 4,000 lines took 30 s (quadratic)."""
    process, reader = started()
    assert process.stdin is not None
    lines = [machine_line(i) + b"\n" for i in range(1, 4001)]
    write_in_background(process.stdin.fileno(), UNCLOSED + b"".join(lines))
    # Generous: the lines themselves take well under a second; the quadratic held text took 30.
    assert reader.wait_for_lines(2 + 4000, timeout=15), f"{len(reader.lines_at)} lines out"
    process.stdin.close()
    assert process.wait(timeout=10) == 0
    reader.join()
    expected = machine_line(0) + b"\n" + UNCLOSED + b"".join(lines)
    assert ADDED.sub(b"", reader.data) == expected


def test_a_string_field_with_thousands_of_newlines_is_one_metric_in_linear_time(
    started: Started,
) -> None:
    """A valid metric may hold newlines in a string field; each one re-parsed it all."""
    process, reader = started()
    assert process.stdin is not None
    metric = (
        b'machine_data,machineID=machine1,provider=Acme note="'
        + b"a line\n" * 20_000
        + b'",load=70,power=210,temperature=36,vibration=85 1767225601000000000\n'
    )
    write_in_background(process.stdin.fileno(), metric)
    # Generous: one pass over 140 kB; the re-parse per newline took minutes.
    assert reader.wait_for_lines(1 + 20_001, timeout=15), f"{len(reader.lines_at)} lines out"
    process.stdin.close()
    assert process.wait(timeout=10) == 0
    reader.join()
    assert ADDED.sub(b"", reader.data) == machine_line(0) + b"\n" + metric
    assert reader.data.count(b"anomaly=") == 2  # the long metric was parsed and answered


def test_sigterm_while_an_unclosed_string_holds_many_lines_is_honoured_at_once(
    started: Started,
) -> None:
    process, reader = started()
    assert process.stdin is not None
    lines = b"".join(machine_line(i) + b"\n" for i in range(1, 4001))
    os.write(process.stdin.fileno(), UNCLOSED)
    write_in_background(process.stdin.fileno(), lines)
    time.sleep(0.1)  # not a bound: only to let some lines be read before the signal
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 0
    reader.join()
    # Whatever was read was answered, in order, each line once; the rest was never read.
    received = ADDED.sub(b"", reader.data)
    sent = machine_line(0) + b"\n" + UNCLOSED + lines
    assert sent.startswith(received) and received.endswith(b"\n")


@pytest.mark.parametrize("stop", ["eof", "sigterm"])
def test_a_line_cut_off_at_the_stop_goes_out_unchanged_and_unlearned(
    harness: ExecdHarness, stop: str
) -> None:
    """Issue 12, class 9: a half-read last line (no newline) went out as if complete, with a
    wrong value and no timestamp, and was learned."""
    for i in range(4):
        harness.write_metric(machine_line(i))
    harness.drain(4)
    cut = machine_line(4)[:-21]  # "vibration=8" of "vibration=84 <timestamp>": it parses
    assert cut.endswith(b"vibration=8")
    assert harness.process is not None and harness.process.stdin is not None
    os.write(harness.process.stdin.fileno(), cut)
    if stop == "eof":
        harness.process.stdin.close()
    else:
        harness.process.send_signal(signal.SIGTERM)
    assert harness.process.wait(timeout=5) == 0
    harness.join()
    assert harness.read_metric(timeout=1).text == cut  # byte for byte, no newline added
    summary = [line for line in harness.stderr_lines if b"lines in" in line][-1]
    assert b"5 lines in, 5 out: 4 metrics, 1 unparseable (0 not UTF-8, 1 cut off)" in summary
    assert b"of the metrics 0 scored, 0 anomalous, 4 in warm-up" in summary
    assert b"1 cut off" in summary


def queued(fd: int) -> int:
    """Bytes waiting in the pipe behind ``fd`` (either end)."""
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


def saved_state_is_loadable(state: Path) -> bool:
    result = subprocess.run(command("inspect-state", str(state)), capture_output=True, timeout=60)
    return result.returncode == 0


def test_sigterm_with_stdout_blocked_saves_and_exits_within_the_grace(tmp_path: Path) -> None:
    """Issue 12, class 10: a reader that stopped reading left the process in a blocked write,
    deaf to SIGTERM until SIGKILL, with nothing saved."""
    state = tmp_path / "state.msgpack"
    process = subprocess.Popen(
        command("--config", str(DEMO_CONFIG), "--state-file", str(state)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,  # never read
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        write_in_background(
            process.stdin.fileno(), b"".join(machine_line(i) + b"\n" for i in range(20_000))
        )
        # Both pipes full: the child is stuck writing, not reading (no time bound involved).
        deadline = time.monotonic() + 60
        while queued(process.stdout.fileno()) < 60_000 or queued(process.stdin.fileno()) < 60_000:
            assert time.monotonic() < deadline, "the pipes never filled"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = process.stderr.read() if process.stderr else b""
    assert b"received SIGTERM" in stderr and b"bytes of output were dropped" in stderr
    assert saved_state_is_loadable(state)


def test_sighup_saves_and_exits_zero(tmp_path: Path) -> None:
    """SIGHUP killed the process without a save; it now stops like SIGTERM."""
    state = tmp_path / "state.msgpack"
    harness = ExecdHarness(
        command("--config", str(DEMO_CONFIG), "--state-file", str(state))
    ).start()
    for i in range(5):
        harness.write_metric(machine_line(i))
    harness.drain(5)
    assert harness.process is not None
    harness.process.send_signal(signal.SIGHUP)
    assert harness.process.wait(timeout=5) == 0
    harness.join()
    assert any(b"received SIGHUP" in line for line in harness.stderr_lines)
    assert saved_state_is_loadable(state)


def test_sigterm_during_start_up_is_a_clean_stop(tmp_path: Path) -> None:
    """A SIGTERM before the streaming loop ran killed the process by the signal. The config
    is a named pipe here, so the start-up waits, without any timing, for the test to give it."""
    config = tmp_path / "config.yaml"
    os.mkfifo(config)
    process = subprocess.Popen(
        command("--config", str(config)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Opening the pipe for writing waits until the command opens it to read its config.
        with open(config, "w") as pipe:
            process.send_signal(signal.SIGTERM)
            pipe.write(DEMO_CONFIG.read_text())
        stdout, stderr = process.communicate(machine_line(0) + b"\n", timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert b"received SIGTERM" in stderr
    assert ADDED.sub(b"", stdout) in (b"", machine_line(0) + b"\n")  # nothing half done


def test_restart_after_a_crash_starts_with_an_empty_model(harness: ExecdHarness) -> None:
    harness.write_metric(machine_line(0))
    harness.read_metric()
    assert harness.process is not None
    harness.process.kill()
    harness.process.wait(timeout=5)
    harness.restart()
    harness.write_metric(machine_line(1))
    assert b"anomaly=warmup" in harness.read_metric().text
    assert harness.stop().exit_code == 0


def test_closed_stdout_ends_the_process_quietly() -> None:
    process = subprocess.Popen(
        command("--config", str(DEMO_CONFIG)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdout.close()
    try:
        for i in range(2000):
            process.stdin.write(machine_line(i) + b"\n")
            process.stdin.flush()
    except BrokenPipeError:
        pass  # the child left, as it should
    exit_code = process.wait(timeout=10)
    stderr = process.stderr.read() if process.stderr else b""
    assert exit_code == 0
    assert b"Traceback" not in stderr
    assert all(KNOWN_PREFIX.match(line) for line in stderr.splitlines())


def test_lone_line_latency_is_small(harness: ExecdHarness) -> None:
    """A generous sanity bound only; exact figures belong to the benchmarks."""
    gaps = []
    for i in range(50):
        sent = harness.write_metric(machine_line(i))
        gaps.append(harness.read_metric().arrived - sent)
        time.sleep(0.002)
    harness.stop()
    assert sorted(gaps)[len(gaps) // 2] < 0.5


def test_bad_config_stops_at_start_with_key_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  height: x\n")
    result = subprocess.run(
        command("--config", str(config)), input=b"", capture_output=True, timeout=30
    )
    assert result.returncode == 2
    assert (
        result.stderr
        == b'E! config error: model.height: must be an integer from 1 to 20, got "x"\n'
    )
    assert result.stdout == b""


def test_config_from_environment_variable(tmp_path: Path) -> None:
    config = tmp_path / "env.yaml"
    config.write_text("output:\n  tag: state\n")
    env = {**os.environ, "HST_PROCESSOR_CONFIG": str(config)}
    result = subprocess.run(command(), input=b"m v=1 1\n", capture_output=True, timeout=30, env=env)
    assert result.returncode == 0
    assert result.stdout == b"m,state=warmup v=1 1\n"


def test_check_config(tmp_path: Path) -> None:
    good = subprocess.run(
        command("check-config", str(DEMO_CONFIG)), capture_output=True, timeout=30
    )
    assert good.returncode == 0
    assert good.stderr.startswith(b"I! ") and b"OK" in good.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("detection: {threshold: 2}\n")
    result = subprocess.run(command("check-config", str(bad)), capture_output=True, timeout=30)
    assert result.returncode == 2
    assert b"detection.threshold: must be a number from 0 to 1, got 2" in result.stderr


def test_start_up_does_not_import_river() -> None:
    probe = (
        "import sys, io, os\n"
        "from hst_processor.cli import main\n"
        "r, w = os.pipe(); os.write(w, b'm v=1 1\\n'); os.close(w)\n"
        "out_r, out_w = os.pipe()\n"
        f"code = main(['--config', {str(DEMO_CONFIG)!r}], stdin_fd=r, stdout_fd=out_w,"
        " stderr=io.StringIO())\n"
        "print(code, 'river' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30)
    assert result.stdout.split() == [b"0", b"False"], result.stderr


def test_with_two_workers_each_lone_metric_is_answered_and_a_stop_saves_and_ends_them(
    tmp_path: Path,
) -> None:
    """``workers: 2`` under Telegraf: a lone metric is answered at once (no batch is waited
    for), SIGTERM saves every worker's series into the one state file and exits 0, and no
    worker outlives the processor."""
    config = tmp_path / "two-workers.yaml"
    config.write_text(DEMO_CONFIG.read_text() + "\nworkers: 2\n")
    state = tmp_path / "state.msgpack"
    harness = ExecdHarness(command("--config", str(config), "--state-file", str(state))).start()
    assert harness.process is not None
    machines = [f"machine{m}" for m in range(1, 7)]
    for i in range(20):
        for machine in machines:
            line = machine_line(i, machine)
            harness.write_metric(line)
            assert ADDED.sub(b"", harness.read_metric(timeout=5).text) == line + b"\n"
    children = Path(f"/proc/{harness.process.pid}/task/{harness.process.pid}/children")
    workers = [int(pid) for pid in children.read_text().split()]
    assert len(workers) == 2
    harness.process.send_signal(signal.SIGTERM)
    assert harness.process.wait(timeout=5) == 0
    harness.join()
    assert harness.unprefixed_stderr() == []
    assert any(b"I! hst-processor: 120 lines in, 120 out" in line for line in harness.stderr_lines)
    for pid in workers:  # reaped by the processor: no such process any more
        assert not Path(f"/proc/{pid}").exists()
    inspected = subprocess.run(
        command("inspect-state", str(state)), capture_output=True, timeout=60, check=True
    )
    assert b"6 series" in inspected.stdout


def test_with_two_workers_a_file_piped_through_comes_out_as_one_process_writes_it(
    tmp_path: Path,
) -> None:
    """A file read faster than it is scored: each read's last lines are still being scored
    when the next read comes (the workers keep them, see ``WorkerPool.process_lines``), and
    the output is still every line once, in order, as one process writes it."""
    from simulator.run import simulate

    text, _ = simulate(12, 3, 1_767_225_600_000_000_000, 1500, [])
    source = tmp_path / "machines.lp"
    source.write_text(text)
    config = tmp_path / "two-workers.yaml"
    config.write_text(DEMO_CONFIG.read_text() + "\nworkers: 2\n")
    outputs = []
    for config_file in (DEMO_CONFIG, config):
        with source.open("rb") as stdin:
            result = subprocess.run(
                command("--config", str(config_file)), stdin=stdin, capture_output=True, timeout=120
            )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert len(text) > 2 * (1 << 20)  # several reads of a mebibyte
    assert outputs[0].count(b"anomaly_score=") > 10_000
    assert outputs[1] == outputs[0]

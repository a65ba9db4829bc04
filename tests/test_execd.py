"""The real ``hst-processor`` command under a Telegraf ``processors.execd`` stand-in."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
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
        line.startswith(b"I! hst-processor: 450 metrics in, 450 out")
        for line in harness.stderr_lines
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
    summary = [line for line in harness.stderr_lines if b"metrics in" in line][-1]
    assert b"10 metrics in, 10 out" in summary
    assert b"3 unparseable, 1 not UTF-8, 1 blank" in summary
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

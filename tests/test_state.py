"""State that survives restarts and crashes, through the real command."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from hst_processor.state import FORMAT, parse, write_atomic
from simulator.run import simulate
from simulator.scenario import ScheduledFault

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """
measurements: [machine_data]
group_by: [machineID]
features: [load, vibration, power, temperature]
derived:  # every kind, so that resuming must restore each one's running state exactly
  - {name: power_residual, kind: residual, field: power, of: load, window: 3, fit: 50}
  - {name: temperature_repeats, kind: repeats, field: temperature}
  - {name: load_change, kind: change, field: load}
  - {name: vibration_deviation, kind: deviation, field: vibration, window: 20}
  - {name: power_spread, kind: spread, field: power, window: 10}
  - {name: power_per_load, kind: ratio, field: power, of: load}
model:
  window_size: 100
  height: 8
  features: [load, vibration, power_residual, temperature_repeats, load_change,
             vibration_deviation, power_spread, power_per_load]
scaling: {mode: learned}
# The landmark score: the rarity score claims no 1-in-1,000 before a series has 1,000 scores,
# more than each machine gets here, and the resumes must carry open alerts and episodes.
detection: {calibration: landmarks}
alerts: {log: true}
state: {interval: 0.2}
self_metrics: {interval: 0}  # outputs are compared line for line; reports: test_selfmetrics
"""


@pytest.fixture(scope="module")
def stream() -> list[bytes]:
    """20,000 metrics: 20 machines for 1,000 s, two of them overloaded in the middle."""
    faults = [ScheduledFault(m, "overload", 480, 180) for m in ("machine3", "machine17")]
    text, _ = simulate(20, seed=1, start_ns=1_767_225_600_000_000_000, duration_s=1000,
                       faults=faults)  # fmt: skip
    lines = text.encode().splitlines(True)
    assert len(lines) == 20_000
    return lines


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return path


def command(config: Path, state: Path | None) -> list[str]:
    script = shutil.which("hst-processor")
    assert script is not None
    return [script, "--config", str(config)] + (["--state-file", str(state)] if state else [])


def run(
    config: Path, state: Path | None, lines: list[bytes], preexec: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        command(config, state),
        input=b"".join(lines),
        capture_output=True,
        timeout=120,
        preexec_fn=preexec,
    )


@pytest.fixture(scope="module")
def reference(stream: list[bytes], tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    config = tmp_path_factory.mktemp("reference") / "config.yaml"
    config.write_text(CONFIG)
    result = run(config, None, stream)
    assert result.returncode == 0
    out = result.stdout.splitlines(True)
    assert len(out) == len(stream)
    assert sum(b"anomaly=true" in line for line in out) > 100
    return out


def test_stopping_at_eof_and_resuming_gives_identical_output(
    stream: list[bytes], reference: list[bytes], config: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state.msgpack"
    outputs: list[bytes] = []
    for start, end in [(0, 3_000), (3_000, 11_111), (11_111, 20_000)]:
        result = run(config, state, stream[start:end])
        assert result.returncode == 0
        outputs.extend(result.stdout.splitlines(True))
        if start:
            assert b"I! restored 20 series" in result.stderr
    assert outputs == reference


class Running:
    """The command with stdin kept open and stdout drained by a thread, so that writing a lot
    never deadlocks against output nobody reads."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.output = bytearray()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        while chunk := os.read(self.process.stdout.fileno(), 1 << 20):
            self.output += chunk

    def write(self, lines: list[bytes]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"".join(lines))
        self.process.stdin.flush()

    def wait_for_lines(self, count: int, timeout: float = 30) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while bytes(self.output).count(b"\n") < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return bytes(self.output).splitlines(True)

    def finish(self) -> list[bytes]:
        self._reader.join(timeout=30)
        return bytes(self.output).splitlines(True)


def test_sigterm_then_resume_gives_identical_output(
    stream: list[bytes], reference: list[bytes], config: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state.msgpack"
    cut = 9_000
    running = Running(command(config, state))
    running.write(stream[:cut])
    running.wait_for_lines(cut)
    running.process.send_signal(signal.SIGTERM)  # stdin still open, as when Telegraf gives up
    assert running.process.wait(timeout=10) == 0
    first = running.finish()
    second = run(config, state, stream[cut:])
    assert first + second.stdout.splitlines(True) == reference


def test_kill_9_resumes_from_the_last_periodic_snapshot(
    stream: list[bytes], reference: list[bytes], config: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state.msgpack"
    running = Running(command(config, state))
    written = 0
    for start in range(0, 12_000, 1_000):
        running.write(stream[start : start + 1_000])
        written += 1_000
        time.sleep(0.3)  # periodic saves every 0.2 s, in a forked child
    running.wait_for_lines(written)
    deadline = time.monotonic() + 10
    while not state.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    running.process.kill()
    running.process.wait(timeout=10)
    saved = parse(state.read_bytes())
    position = saved["processed"]
    assert 0 < position <= written
    resumed = run(config, state, stream[position:])
    assert resumed.returncode == 0
    assert resumed.stdout.splitlines(True) == reference[position:]


def test_missing_file_starts_fresh_quietly(
    stream: list[bytes], reference: list[bytes], config: Path, tmp_path: Path
) -> None:
    result = run(config, tmp_path / "none.msgpack", stream[:2_000])
    assert result.stdout.splitlines(True) == reference[:2_000]
    assert b"W! state" not in result.stderr and b"restored" not in result.stderr
    assert (tmp_path / "none.msgpack").exists()  # saved at exit


@pytest.mark.parametrize("damage", ["truncated", "garbage", "version"])
def test_bad_file_is_set_aside_with_one_warning(
    stream: list[bytes], reference: list[bytes], config: Path, tmp_path: Path, damage: str
) -> None:
    state = tmp_path / "state.msgpack"
    assert run(config, state, stream[:2_000]).returncode == 0
    good = state.read_bytes()
    if damage == "truncated":
        state.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        state.write_bytes(b"\x00not a snapshot\xff" * 10)
    else:
        document = msgpack.unpackb(good, raw=False)
        document["version"] = 99
        state.write_bytes(msgpack.packb(document, use_bin_type=True))
    result = run(config, state, stream[:2_000])
    assert result.returncode == 0
    assert result.stdout.splitlines(True) == reference[:2_000]  # a fresh start
    warnings = [line for line in result.stderr.splitlines() if b"state file" in line]
    assert len(warnings) == 1 and warnings[0].startswith(b"W! ")
    assert list(tmp_path.glob("state.msgpack.corrupt-*"))
    assert parse(state.read_bytes())["format"] == FORMAT  # a good snapshot was saved again


def test_changed_model_restarts_every_series_and_says_why(
    stream: list[bytes], config: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state.msgpack"
    assert run(config, state, stream[:3_000]).returncode == 0
    changed = tmp_path / "changed.yaml"
    changed.write_text(CONFIG.replace("height: 8", "height: 6"))
    result = run(changed, state, stream[3_000:5_000])
    fresh = run(changed, None, stream[3_000:5_000])
    assert result.stdout == fresh.stdout
    assert b"W! state file" in result.stderr
    assert (
        b"model configuration changed (height 8 -> 6): all 20 series start fresh" in result.stderr
    )


def test_changed_features_restart_only_the_affected_series(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "model: {window_size: 5}\nalerts: {enabled: false}\ncontext_features: false\n"
        "detection: {calibration: landmarks}\n"
    )
    lines = [f"a,id=1 x={i % 7},y={i % 3} {i}\n".encode() for i in range(20)]
    lines += [f"b,id=2 x={i % 5},z={i % 4} {i}\n".encode() for i in range(20)]
    state = tmp_path / "state.msgpack"
    assert run(config, state, lines).returncode == 0
    config.write_text(
        "model: {window_size: 5}\nalerts: {enabled: false}\nfeatures: [x, y]\n"
        "context_features: false\ndetection: {calibration: landmarks}\n"
    )
    result = run(config, state, [b"a,id=1 x=1,y=1 99\n", b"b,id=2 x=1,y=1 99\n"])
    out = result.stdout.splitlines()
    assert b"anomaly_score=" in out[0]  # measurement a resumed past its warm-up
    assert b"anomaly=warmup" in out[1]  # b's features changed: it starts over
    assert b"features changed: 1 series start fresh" in result.stderr


def test_named_features_with_the_default_context_features_resume(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("model: {window_size: 20}\nalerts: {enabled: false}\nfeatures: [x, y]\n")
    lines = [f"a,id=1 x={i % 7},y={i % 3} {i}\n".encode() for i in range(300)]
    state = tmp_path / "state.msgpack"
    assert run(config, state, lines[:150]).returncode == 0
    resumed = run(config, state, lines[150:])
    assert b"start fresh" not in resumed.stderr
    whole = run(config, tmp_path / "other.msgpack", lines)
    assert whole.stdout.splitlines()[150:] == resumed.stdout.splitlines()


@pytest.mark.parametrize("failure", ["no-directory", "disk-full"])
def test_failed_saves_warn_and_processing_goes_on(
    stream: list[bytes], reference: list[bytes], config: Path, tmp_path: Path, failure: str
) -> None:
    if failure == "no-directory":
        state, preexec = tmp_path / "missing-dir" / "state.msgpack", None
        (tmp_path / "missing-dir").write_text("a file where a directory should be")
    else:
        state = tmp_path / "state.msgpack"

        def preexec() -> None:  # files may not grow past 10 kB: writes fail like a full disk
            resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))

    result = run(config, state, stream[:4_000], preexec)
    assert result.returncode == 0
    assert result.stdout.splitlines(True) == reference[:4_000]
    assert b"could not save state" in result.stderr or b"cannot lock state file" in result.stderr


def test_second_process_on_the_same_file_runs_without_persisting(
    stream: list[bytes], reference: list[bytes], config: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state.msgpack"
    first = Running(command(config, state))
    first.write(stream[:500])
    first.wait_for_lines(500)
    second = run(config, state, stream[:1_000])
    assert second.returncode == 0
    assert second.stdout.splitlines(True) == reference[:1_000]
    assert b"is in use by another hst-processor: running without persisting" in second.stderr
    assert first.process.stdin is not None
    first.process.stdin.close()
    assert first.process.wait(timeout=10) == 0
    assert parse(state.read_bytes())["processed"] == 500  # only the first one wrote


def test_a_save_that_dies_halfway_leaves_the_last_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.msgpack"
    write_atomic(path, b"complete snapshot")

    def crash(fd: int) -> None:
        raise KeyboardInterrupt  # dies after writing, before the rename

    monkeypatch.setattr("hst_processor.state.os.fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, b"a newer snapshot, never completed")
    assert path.read_bytes() == b"complete snapshot"
    assert [p.name for p in tmp_path.iterdir()] == ["state.msgpack"]


def test_leftovers_of_a_killed_save_are_cleared_and_the_snapshot_loads(
    stream: list[bytes], reference: list[bytes], config: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state.msgpack"
    assert run(config, state, stream[:3_000]).returncode == 0
    leftover = tmp_path / "state.msgpack.tmp.99999"
    leftover.write_bytes(b"half a snapsh")  # what kill -9 during a save leaves behind
    result = run(config, state, stream[3_000:4_000])
    assert result.stdout.splitlines(True) == reference[3_000:4_000]
    assert not leftover.exists()


def test_inspect_state_shows_series_warmup_and_alerts(
    stream: list[bytes], config: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state.msgpack"
    assert run(config, state, stream[:10_000]).returncode == 0
    script = shutil.which("hst-processor")
    assert script is not None
    shown = subprocess.run([script, "inspect-state", str(state)], capture_output=True, text=True)
    assert shown.returncode == 0
    assert shown.stdout.startswith("format hst-processor-state version 1")
    assert "after 10000 metrics" in shown.stdout
    assert "20 series" in shown.stdout
    assert "machine_data,machineID=machine3:" in shown.stdout
    assert "ALERT OPEN" in shown.stdout  # machine3 and machine17 are 20 s into their fault
    assert "last seen 2026-01-01" in shown.stdout


def test_forget_series_resets_one_machine(
    stream: list[bytes], config: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state.msgpack"
    # 300 metrics per machine: past the warm-up (50 to fit, a window of 100, 100 to calibrate).
    assert run(config, state, stream[:6_000]).returncode == 0
    script = shutil.which("hst-processor")
    assert script is not None
    forgot = subprocess.run(
        [script, "forget-series", str(state), "machineID=machine5"], capture_output=True
    )
    assert forgot.returncode == 0 and b"I! forgot 1 series" in forgot.stderr
    result = run(config, state, stream[6_000:6_020])
    out = result.stdout.splitlines()
    assert all((b"anomaly=warmup" in line) == (b"machineID=machine5," in line) for line in out)


# ---------------------------------------------------------------------------------------------
# Files that decode but are not what this version writes, and the file's neighbours


SMALL = "model: {window_size: 20}\nalerts: {enabled: false}\nstate: {interval: 0.1}\n"


def small_lines(count: int, series: int = 3) -> list[bytes]:
    return [f"m,id={i % series} x={i % 7},y={i % 5} {i}\n".encode() for i in range(count)]


def damaged(document: dict[str, Any], damage: str) -> dict[str, Any]:
    """One way a snapshot can decode yet be the wrong shape, applied to its first series."""
    saved = document["series"][0]
    if damage == "series without masses":
        del saved["masses"]
    elif damage == "extra key":
        saved["surprise"] = 1
    elif damage == "short leaf counts":
        saved["masses"]["live"] = saved["masses"]["live"][:3]
    elif damage == "unexpected dtype":
        saved["masses"]["dtype"] = "complex128"
    elif damage == "tags not a list":
        saved["tags"] = 5
    elif damage == "alert with an extra key":
        saved["alert"]["bogus"] = 1
    elif damage == "rarity counts as text":
        saved["rarity"]["counts"] = "x"
    elif damage == "range unit zero":
        fitted = {"median": [0.0, 0.0], "low": [0.0, 0.0], "high": [0.0, 0.0], "unit": [0.0, 1.0]}
        saved["ranges"].update(fitted, sample=[], times=[])  # a distance is divided by it
    elif damage == "range sample short":
        saved["ranges"].update(seen=99, sample=[], times=[])  # its fit would have no rows
    elif damage == "range half fitted":
        saved["ranges"]["median"] = [0.0, 0.0]
    elif damage == "context array too short":
        saved["context"]["arrays"]["level"] = [1.0]
    elif damage == "model size as text":
        document["model"]["n_trees"] = "ten"
    elif damage == "series not a mapping":
        document["series"][0] = 3
    elif damage == "the same series twice":
        document["series"].append(saved)
    return document


DAMAGES = [
    ("series without masses", "series[0]: missing masses"),
    ("extra key", "series[0]: unexpected 'surprise'"),
    ("short leaf counts", "series[0].masses.live: 3 bytes, expected 2560"),
    ("unexpected dtype", "series[0].masses.dtype: expected one of uint8, uint16, int32"),
    ("tags not a list", "series[0].tags: expected a list"),
    ("alert with an extra key", "series[0].alert: unexpected 'bogus'"),
    ("rarity counts as text", "series[0].rarity.counts: expected a list"),
    ("range unit zero", "series[0].ranges.unit[0]: must be above 0"),
    ("range sample short", "series[0].ranges.sample: 0 rows for 99 metrics seen, expected 25"),
    ("range half fitted", "series[0].ranges: median, low, high and unit must all be set"),
    ("context array too short", "series[0].context.arrays.level: 1 items, expected 2"),
    ("model size as text", "model.n_trees: expected an integer from 1 to 1000"),
    ("series not a mapping", "series[0]: expected a mapping"),
    ("the same series twice", "series[3]: the same series as series[0]"),
]


def wrong_shape_file(tmp_path: Path, damage: str) -> tuple[Path, Path]:
    config = tmp_path / "config.yaml"
    config.write_text(SMALL)
    state = tmp_path / "state.msgpack"
    assert run(config, state, small_lines(300)).returncode == 0
    document = msgpack.unpackb(state.read_bytes(), raw=False)
    state.write_bytes(msgpack.packb(damaged(document, damage), use_bin_type=True))
    return config, state


@pytest.mark.parametrize(("damage", "named"), DAMAGES, ids=[d for d, _ in DAMAGES])
def test_a_wrong_shape_file_is_set_aside_and_the_processor_starts_fresh(
    tmp_path: Path, damage: str, named: str
) -> None:
    config, state = wrong_shape_file(tmp_path, damage)
    result = run(config, state, small_lines(100))
    assert result.returncode == 0
    assert b"Traceback" not in result.stderr
    assert result.stdout == run(config, None, small_lines(100)).stdout  # a fresh start
    warnings = [line for line in result.stderr.decode().splitlines() if "state file" in line]
    assert len(warnings) == 1 and warnings[0].startswith("W! ") and named in warnings[0]
    assert len(list(tmp_path.glob("state.msgpack.corrupt-*"))) == 1
    assert parse(state.read_bytes())["processed"] == 100  # and it persists again


@pytest.mark.parametrize(("damage", "named"), DAMAGES[:4], ids=[d for d, _ in DAMAGES[:4]])
def test_inspect_and_forget_name_what_is_wrong_without_a_traceback(
    tmp_path: Path, damage: str, named: str
) -> None:
    _, state = wrong_shape_file(tmp_path, damage)
    script = shutil.which("hst-processor")
    assert script is not None
    for argv in (["inspect-state", str(state)], ["forget-series", str(state), "id=1"]):
        result = subprocess.run([script, *argv], capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        assert result.stderr.startswith("E! ") and named in result.stderr
        assert "Traceback" not in result.stderr


def test_forget_series_matching_nothing_says_so_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(SMALL)
    state = tmp_path / "state.msgpack"
    assert run(config, state, small_lines(60)).returncode == 0
    before = state.read_bytes()
    script = shutil.which("hst-processor")
    assert script is not None
    result = subprocess.run(
        [script, "forget-series", str(state), "id=7"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert (
        result.stderr == f"E! forget-series: no series in {state} matches id=7; nothing changed\n"
    )
    assert state.read_bytes() == before


def test_a_restored_state_keeps_only_the_most_recently_seen_max_series(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(SMALL)
    state = tmp_path / "state.msgpack"
    assert run(config, state, small_lines(100, series=10)).returncode == 0  # id=9 seen last
    config.write_text(SMALL + "max_series: 4\n")
    result = run(config, state, [])
    assert result.returncode == 0
    assert b"I! restored 4 series" in result.stderr
    assert b"W! state file" in result.stderr
    assert b"max_series=4: forgot the 6 least recently seen of 10 saved series" in result.stderr
    kept = [(s["measurement"], s["tags"]) for s in parse(state.read_bytes())["series"]]
    assert kept == [("m", [["id", str(i)]]) for i in (6, 7, 8, 9)]


def test_a_planted_link_never_redirects_the_save(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(SMALL.replace("interval: 0.1", "interval: 3600"))  # only the final save
    state = tmp_path / "state.msgpack"
    victim = tmp_path / "elsewhere" / "precious.txt"
    victim.parent.mkdir()
    victim.write_bytes(b"not yours to overwrite")
    running = Running(command(config, state))
    running.write(small_lines(10))
    running.wait_for_lines(10)  # started, locked, leftovers cleared: the links stay now
    # Someone who can write to the state directory plants links at every name a save of
    # this process could predictably use.
    for name in (f"state.msgpack.tmp.{running.process.pid}", "state.msgpack"):
        (tmp_path / name).symlink_to(victim)
    assert running.process.stdin is not None
    running.process.stdin.close()
    assert running.process.wait(timeout=30) == 0
    assert victim.read_bytes() == b"not yours to overwrite"
    assert not state.is_symlink() and parse(state.read_bytes())["processed"] == 10


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_an_orphaned_save_does_not_keep_the_restarted_processor_from_persisting(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(SMALL)
    state = tmp_path / "state.msgpack"
    # Enough series that a save takes a while, and a save starts every 0.1 s.
    lines = small_lines(6_000, series=2_000)
    running = Running(command(config, state))
    orphan = None
    try:
        deadline = time.monotonic() + 120
        while orphan is None and time.monotonic() < deadline:
            running.write(lines[:200])
            for child in _children(running.process.pid):
                os.kill(child, signal.SIGSTOP)  # a save that hangs, as a save may
                orphan = child
        assert orphan is not None, "no periodic save was seen"
        running.process.kill()  # Telegraf's SIGKILL, or the OOM killer
        running.process.wait(timeout=30)
        restarted = run(config, state, lines[:50])
        assert restarted.returncode == 0
        assert b"in use by another" not in restarted.stderr
        assert parse(state.read_bytes())["processed"] >= 50  # the restarted one saved
        deadline = time.monotonic() + 30
        while _alive(orphan) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(orphan), "the save outlived the processor that started it"
    finally:
        if orphan is not None and _alive(orphan):
            os.kill(orphan, signal.SIGKILL)
        if running.process.poll() is None:
            running.process.kill()


def test_a_state_directory_missing_at_start_is_created_by_a_later_save(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(SMALL)
    state = tmp_path / "not-yet" / "state.msgpack"
    first = run(config, state, small_lines(300))
    assert first.returncode == 0
    assert b"W! cannot lock state file" in first.stderr
    assert parse(state.read_bytes())["processed"] == 300
    resumed = run(config, state, small_lines(10))
    assert b"I! restored 3 series" in resumed.stderr


@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero", "container bomb"])
def test_a_state_path_that_is_no_snapshot_file_never_blocks_or_fills_the_start(
    tmp_path: Path, kind: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(SMALL)
    state = tmp_path / "state.msgpack"
    if kind == "fifo":
        os.mkfifo(state)  # opening it to read would wait for a writer for ever
    elif kind == "link to /dev/zero":
        state.symlink_to("/dev/zero")  # reading it would never end
    else:  # valid msgpack: a million empty maps in 1 MB, some 60 MB once decoded
        state.write_bytes(b"\xdd\x00\x0f\x42\x40" + b"\x80" * 1_000_000)
    result = run(config, state, small_lines(5), preexec=_cap_address_space)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout.count(b"\n") == 5
    assert b"starting fresh" in result.stderr and b"Traceback" not in result.stderr
    assert parse(state.read_bytes())["processed"] == 5  # a snapshot of its own now


def _cap_address_space() -> None:
    # Generous for the processor, far too little for a state read without bound.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_what_is_not_a_leftover_of_ours_is_left_alone(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(SMALL)
    state = tmp_path / "s*"  # a glob pattern as a name must match only itself
    (tmp_path / "s*.tmp.gone").write_bytes(b"a killed save")
    (tmp_path / "s*.tmp.dir").mkdir()  # not a file: never ours
    other = tmp_path / "sother.tmp.keep"
    other.write_bytes(b"someone else's")
    result = run(config, state, small_lines(5))
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert not (tmp_path / "s*.tmp.gone").exists()
    assert (tmp_path / "s*.tmp.dir").is_dir() and other.read_bytes() == b"someone else's"

"""``python -m simulator --stdout`` end to end, alone and piped through ``hst-processor``."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from hst_processor.lineproto import parse_metric
from simulator.labels import read_labels
from tests.simulator.running import SimulatorProcess

ROOT = Path(__file__).resolve().parents[2]
START = "2026-01-01T00:00:00Z"
START_NS = 1_767_225_600_000_000_000
NS = 1_000_000_000


def simulate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "simulator", "--stdout", *args],
        capture_output=True,
        timeout=timeout,
    )


def test_stdout_is_line_protocol_as_telegraf_prints_it_and_a_seed_repeats_it() -> None:
    args = ("--speed", "0", "--duration", "5m", "--seed", "3", "--start", START, "--machines", "4")
    first, second = simulate(*args), simulate(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    lines = first.stdout.decode().splitlines()
    assert len(lines) == 4 * 300
    metrics = [parse_metric(line) for line in lines]
    assert {m.tags["machineID"] for m in metrics} == {f"machine{n}" for n in range(1, 5)}
    assert all(list(m.tags) == sorted(m.tags) for m in metrics)  # Telegraf sorts tags
    assert all(set(m.fields) == {"load", "power", "temperature", "vibration"} for m in metrics)
    assert all(isinstance(value, float) for m in metrics for value in m.fields.values())
    assert [m.timestamp for m in metrics[::4]] == [START_NS + s * NS for s in range(300)]
    assert len({m.tags["provider"] for m in metrics}) == 1
    assert len({m.tags["barcode"] for m in metrics}) == 4
    assert simulate("--speed", "0", "--duration", "5m", "--seed", "4").stdout != first.stdout


def test_speed_paces_simulated_time() -> None:
    started = time.monotonic()
    result = simulate("--duration", "120", "--speed", "60", "--machines", "1")
    elapsed = time.monotonic() - started
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 120
    assert 1.8 <= elapsed < 30  # two seconds of pacing, with room for a busy machine


def test_sigterm_ends_the_run_and_closes_running_faults(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "simulator", "--stdout", "--rate", "10", "--start", START,
            "--fault", "machine1:bearing:0", "--labels", str(labels),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    for _ in range(15):  # 1.5 s of a live run
        process.stdout.readline()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    rest = process.stdout.read().decode().splitlines()
    (label,) = read_labels(labels)
    assert (label.machine, label.kind, label.source, label.start_ns) == (
        "machine1", "bearing", "scenario", START_NS,
    )  # fmt: skip
    last_time = int(rest[-1].rsplit(" ", 1)[1]) if rest else START_NS
    assert label.end_ns is not None and label.end_ns > last_time


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fault", "machine9:spike:1m"], "faults[0].machine: machine9 is not simulated"),
        (["--fault", "machine1:melt:1m"], "--fault.kind: 'melt' is not one of overload"),
        (["--duration", "forever"], "--duration: 'forever' is not a duration"),
        (["--start", "noon"], "--start: 'noon' is not a time"),
        (["--scenario", "/nonexistent.yaml"], "scenario: cannot read /nonexistent.yaml"),
        (["--speed", "-1"], "--speed: 0 or more"),
    ],
)
def test_bad_arguments_stop_with_exit_2_and_say_why(args: list[str], message: str) -> None:
    result = simulate("--duration", "1", *args)
    assert result.returncode == 2
    assert message in result.stderr.decode()
    assert result.stdout == b""


def test_piped_through_hst_processor_the_faulty_machine_is_flagged_in_its_window(
    tmp_path: Path,
) -> None:
    """The README's one-liner, with a labelled overload: every metric comes out once, in
    order, and the anomalies fall inside the labelled window."""
    labels = tmp_path / "labels.jsonl"
    script = shutil.which("hst-processor")
    assert script is not None
    simulator = subprocess.Popen(
        [
            sys.executable, "-m", "simulator", "--stdout", "--speed", "0", "--duration", "20m",
            "--seed", "2", "--start", START, "--fault", "machine2:overload:10m:3m",
            "--labels", str(labels),
        ],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    processed = subprocess.run(
        [script, "--config", str(ROOT / "hst-processor.yaml")],
        stdin=simulator.stdout,
        capture_output=True,
        timeout=120,
        env={**os.environ, "SLACK_WEBHOOK_URL": "", "HST_ALERT_WEBHOOK_URL": ""},
    )
    assert simulator.wait(timeout=60) == 0
    assert processed.returncode == 0, processed.stderr
    metrics = [parse_metric(line) for line in processed.stdout.decode().splitlines()]
    assert len(metrics) == 3 * 1200
    (label,) = read_labels(labels)
    assert label.end_ns is not None
    flagged = [m for m in metrics if m.tags["anomaly"] == "true"]
    assert flagged, "the overload went unnoticed"
    assert {m.tags["machineID"] for m in flagged} == {"machine2"}
    assert all(label.start_ns <= m.timestamp < label.end_ns + 60 * NS for m in flagged)
    assert b"alert: Anomaly: machine_data machineID=machine2" in processed.stderr


def _status(panel: str, host: str, method: str = "GET", body: bytes | None = None) -> int:
    """The status the running panel gives a request with this Host header: a GET of the
    machines, or a PUT switching machine1's bearing fault."""
    address = urllib.parse.urlsplit(panel)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    path = "/api/machines" if method == "GET" else "/api/machines/machine1/faults/bearing"
    try:
        connection.request(method, path, body, {"Host": host, "Content-Type": "application/json"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_panel_answers_only_to_its_own_names_and_small_bodies() -> None:
    process = SimulatorProcess(
        ["--stdout", "--panel", "--rate", "10", "--panel-allowed-host", "gateway.local"]
    )
    try:
        port = urllib.parse.urlsplit(process.panel).port
        assert _status(process.panel, f"127.0.0.1:{port}") == 200
        assert _status(process.panel, f"localhost:{port}") == 200
        assert _status(process.panel, f"gateway.local:{port}") == 200
        # A DNS-rebinding page reaches the panel under its own name: refused, read or write.
        assert _status(process.panel, f"attacker.example:{port}") == 400
        on = json.dumps({"active": True}).encode()
        assert _status(process.panel, "attacker.example", "PUT", on) == 400
        assert not process.api("GET", "/api/machines")["machines"][0]["faults"]
        # A body far beyond what the API takes is refused, and the panel goes on.
        huge = json.dumps({"active": True, "pad": "x" * 1_000_000}).encode()
        assert _status(process.panel, f"127.0.0.1:{port}", "PUT", huge) == 413
        assert _status(process.panel, f"127.0.0.1:{port}", "PUT", on) == 200
    finally:
        assert process.stop() == 0

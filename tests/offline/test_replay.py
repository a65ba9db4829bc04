"""``replay``: a file through the live code path, with a summary per series and its alerts."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hst_processor.config import load_config
from hst_processor.log import Log
from hst_processor.offline.replay import replay
from tests.reports import metric_lines

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "hst-processor.yaml"


def simulated(tmp_path: Path, *faults: str) -> tuple[Path, Path]:
    data, labels = tmp_path / "run.lp", tmp_path / "labels.jsonl"
    command = [
        sys.executable, "-m", "simulator", "--stdout", "--speed", "0", "--duration", "30m",
        "--seed", "8", "--start", "2026-03-01T00:00:00Z", "--labels", str(labels),
    ]  # fmt: skip
    for fault in faults:
        command += ["--fault", fault]
    with data.open("wb") as out:
        subprocess.run(command, stdout=out, check=True, timeout=120)
    return data, labels


def test_replay_writes_what_the_live_command_writes(tmp_path: Path) -> None:
    data, _ = simulated(tmp_path, "machine2:bearing:15m:5m")
    script = shutil.which("hst-processor")
    assert script is not None
    run = subprocess.run(
        [script, "--config", str(CONFIG)],
        stdin=data.open("rb"),
        capture_output=True,
        timeout=120,
        env={**os.environ, "SLACK_WEBHOOK_URL": ""},
    )
    live = b"".join(metric_lines(run.stdout))
    replayed = tmp_path / "replayed.lp"
    report = subprocess.run(
        [script, "--config", str(CONFIG), "replay", str(data), "-o", str(replayed)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    assert replayed.read_bytes() == live
    rows = {line.split()[0]: line.split() for line in report.stdout.splitlines()[1:4]}
    assert set(rows) == {f"machine_data,machineID=machine{n}" for n in (1, 2, 3)}
    metrics, warmup, scored, share, alerts = rows["machine_data,machineID=machine2"][1:]
    assert (int(metrics), int(warmup), int(scored)) == (1800, 369, 1431)
    assert float(share.rstrip("%")) > 15 and int(alerts) == 1
    assert int(rows["machine_data,machineID=machine1"][5]) == 0
    assert "alert machineID=machine2 at 2026-03-01 00:15:02 UTC" in report.stdout
    # The live alert and the replay's report show the values alike ("vibration_residual =
    # 37.43", where the report said 37.432 before).
    (live_alert,) = [line for line in run.stderr.decode().splitlines() if "Anomaly:" in line]
    (reported,) = [line for line in report.stdout.splitlines() if line.startswith("alert ")]
    reasons = live_alert.split("driven by ")[1].split(" http")[0].split("; ")
    assert reasons
    for reason in reasons:
        assert reason.split(" (normal")[0] in reported


def test_replay_to_stdout_keeps_the_summary_on_stderr(tmp_path: Path) -> None:
    data, _ = simulated(tmp_path)
    script = shutil.which("hst-processor")
    assert script is not None
    result = subprocess.run(
        [script, "--config", str(CONFIG), "replay", "-"],
        stdin=data.open("rb"),
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == len(data.read_bytes().splitlines())
    assert b"series" in result.stderr and b"series" not in result.stdout


def test_replay_collects_alerts_and_records_without_sending_anything(tmp_path: Path) -> None:
    data, _ = simulated(tmp_path, "machine3:overload:20m:3m")
    result = replay(
        load_config(CONFIG),
        data.open(),
        None,
        Log(io.StringIO()),
        keep_records=True,
    )
    assert result.metrics_in == 5400
    assert [(e.kind, e.tags["machineID"]) for e in result.alerts] == [
        ("open", "machine3"),
        ("resolve", "machine3"),
    ]
    assert len(result.records) == 5400
    scored = [r for r in result.records if r.score is not None]
    assert len(scored) == 3 * 1431
    assert set(scored[0].fields) == {"load", "power", "temperature", "vibration"}


def test_a_progress_bar_only_on_a_terminal() -> None:
    from hst_processor.offline.replay import progress_bar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert progress_bar(1000, io.StringIO()) is None
    terminal = Terminal()
    advance = progress_bar(1000, terminal)
    assert advance is not None
    advance(500)
    advance(500)
    assert "/1.00k" in terminal.getvalue()  # the bar drawn, sized to the file

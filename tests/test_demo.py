"""The README's demo, end to end: the simulator piped through the real command."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.reports import metric_lines

ROOT = Path(__file__).resolve().parent.parent
START_NS = 1_767_225_600_000_000_000
ADDED = re.compile(
    rb",anomaly=(?:warmup|true|false)|,anomaly_score=[0-9.]+|,anomaly_feature=\"[a-z_]+\""
)


def test_demo_flags_the_faulty_machine_during_its_fault_only() -> None:
    fault_start, fault_minutes = 25, 5
    sample = subprocess.run(
        [
            sys.executable, "-m", "simulator", "--stdout", "--speed", "0", "--duration", "40m",
            "--seed", "1", "--start", "2026-01-01T00:00:00Z",
            "--fault", f"machine2:overload:{fault_start}m:{fault_minutes}m",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout  # fmt: skip
    script = shutil.which("hst-processor")
    assert script is not None
    result = subprocess.run(
        [script, "--config", str(ROOT / "hst-processor.yaml")],
        input=sample,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0
    inputs = sample.splitlines()
    outputs = [line.rstrip(b"\n") for line in metric_lines(result.stdout)]
    assert len(outputs) == len(inputs)
    assert [ADDED.sub(b"", line) for line in outputs] == inputs

    fault_from = fault_start * 60
    fault_to = (fault_start + fault_minutes) * 60
    flagged_in_fault = in_fault = 0
    for line in outputs:
        seconds = (int(line.rsplit(b" ", 1)[1]) - START_NS) // 1_000_000_000
        anomalous = b"anomaly=true" in line
        if b"machineID=machine2" in line and fault_from <= seconds < fault_to:
            in_fault += 1
            flagged_in_fault += anomalous
        elif anomalous:
            # Besides the fault itself, only machine2's return to normal load may be flagged.
            assert b"machineID=machine2" in line, line
            assert fault_to <= seconds < fault_to + 60, line
    assert in_fault == 300
    assert flagged_in_fault == in_fault
    assert b"I! hst-processor: 7200 lines in, 7200 out" in result.stderr
    assert result.stderr.count(b"W! alert: ") == 2

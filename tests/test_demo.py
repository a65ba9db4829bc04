"""The README's demo, end to end: the sample generator piped through the real command."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_NS = 1_767_225_600_000_000_000
ADDED = re.compile(
    rb",anomaly=(?:warmup|true|false)|,anomaly_score=[0-9.]+|,anomaly_feature=\"[a-z_]+\""
)


def test_demo_flags_the_faulty_machine_during_its_fault_only() -> None:
    fault_start, fault_minutes = 25, 5
    sample = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "generate_sample.py"),
            "--minutes",
            "40",
            "--fault",
            "machine2",
            "--fault-start",
            str(fault_start),
            "--fault-minutes",
            str(fault_minutes),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    script = shutil.which("hst-processor")
    assert script is not None
    result = subprocess.run(
        [script, "--config", str(ROOT / "hst-processor.yaml")],
        input=sample,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0
    inputs, outputs = sample.splitlines(), result.stdout.splitlines()
    assert len(outputs) == len(inputs)
    assert [ADDED.sub(b"", line) for line in outputs] == inputs

    fault_from = fault_start * 60
    fault_to = (fault_start + fault_minutes) * 60
    flagged_in_fault = in_fault = 0
    for line in outputs:
        seconds = (int(line.rsplit(b" ", 1)[1]) - START_NS) // 1_000_000_000
        anomalous = b"anomaly=true" in line
        if b"machineID=machine2" in line and fault_from + 15 <= seconds < fault_to:
            in_fault += 1
            flagged_in_fault += anomalous
        elif anomalous:
            # Besides the fault itself, only machine2's return to normal load may be flagged.
            assert b"machineID=machine2" in line, line
            assert fault_from <= seconds < fault_to + 60, line
    assert in_fault > 250
    assert flagged_in_fault == in_fault
    assert b"I! hst-processor: 7200 metrics in, 7200 out" in result.stderr

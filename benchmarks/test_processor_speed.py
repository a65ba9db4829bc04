"""The whole processor, file to /dev/null, against the naive river processor (the seed's way).

Both read the same file of machine metrics (4 features) and write to /dev/null; we time the
whole process, start-up included, with the shipped configuration (hst-processor.yaml).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import BENCH_LINES, ROOT

from simulator.run import simulate
from simulator.scenario import ScheduledFault

MACHINES = [3, 1000]


@pytest.fixture(scope="module", params=MACHINES, ids=lambda m: f"{m}machines")
def metrics_file(request: Any, tmp_path_factory: Any) -> tuple[int, Path]:
    machines = request.param
    seconds = BENCH_LINES // machines
    path = tmp_path_factory.mktemp("bench") / f"machines-{machines}.lp"
    fault = ScheduledFault("machine2", "overload", seconds / 2, 300)
    text, _ = simulate(machines, 1, 1_767_225_600_000_000_000, seconds, [fault])
    path.write_text(text)
    return machines, path


def run_command(command: list[str], source: Path) -> None:
    with source.open("rb") as stdin:
        subprocess.run(
            command, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )


def test_naive_river_processor(benchmark: Any, metrics_file: tuple[int, Path]) -> None:
    machines, path = metrics_file
    command = [sys.executable, str(ROOT / "benchmarks" / "naive_processor.py")]
    benchmark.group = f"processor {machines} machines"
    benchmark.extra_info.update(
        baseline_key=f"naive river, {machines} machines", units="metrics", per_round=BENCH_LINES
    )
    # One round: at about 20k metrics/s a million lines take a minute.
    benchmark.pedantic(run_command, args=(command, path), rounds=1)


def test_hst_processor(benchmark: Any, metrics_file: tuple[int, Path]) -> None:
    machines, path = metrics_file
    script = shutil.which("hst-processor")
    assert script is not None
    command = [script, "--config", str(ROOT / "hst-processor.yaml")]
    benchmark.group = f"processor {machines} machines"
    benchmark.extra_info.update(
        row=f"processor, {machines} machines",
        baseline=f"naive river, {machines} machines",
        units="metrics",
        per_round=BENCH_LINES,
    )
    benchmark.pedantic(run_command, args=(command, path), rounds=3)

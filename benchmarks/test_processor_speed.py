"""The whole processor, file to /dev/null, against the naive river processor (the seed's way).

Both read the same file of machine metrics (4 features) and write to /dev/null; we time the
whole process, start-up included, with the shipped demo configuration (hst-processor.yaml) and
with the defaults a Telegraf user starts from (only ``measurements`` and ``group_by``). At the
default ``HST_BENCH_LINES`` (1,000,000) each of 1,000 machines sends 1,000 metrics, so most
are scored past the warm-up (250 metrics with the demo config, 350 with the defaults).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import BENCH_LINES, ROOT
from revisions import DEFAULTS

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


@pytest.mark.parametrize("config", ["demo", "defaults", "workers"])
def test_hst_processor(
    benchmark: Any, metrics_file: tuple[int, Path], config: str, tmp_path: Path
) -> None:
    """The demo config and the defaults against the naive processor; the demo config with
    ``workers: 2`` against one worker. Three machines share two workers two to one or worse
    (the simulator's all hash to one): the 1,000 machines' row is the one that tells."""
    machines, path = metrics_file
    script = shutil.which("hst-processor")
    assert script is not None
    config_file = ROOT / "hst-processor.yaml"
    row = f"processor ({config} config), {machines} machines"
    baseline = f"naive river, {machines} machines"
    one_worker = f"demo, one worker, {machines} machines"
    if config == "defaults":
        config_file = tmp_path / "defaults.yaml"
        config_file.write_text(DEFAULTS)
    elif config == "workers":
        config_file = tmp_path / "two-workers.yaml"
        config_file.write_text((ROOT / "hst-processor.yaml").read_text() + "\nworkers: 2\n")
        row = f"processor (demo config, workers: 2), {machines} machines"
        baseline = one_worker
    command = [script, "--config", str(config_file)]
    benchmark.group = f"processor {machines} machines"
    benchmark.extra_info.update(row=row, baseline=baseline, units="metrics", per_round=BENCH_LINES)
    if config == "demo":  # the one-worker figure the workers' row is read against
        benchmark.extra_info["baseline_key"] = one_worker
    benchmark.pedantic(run_command, args=(command, path), rounds=3)

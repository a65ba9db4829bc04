"""Memory per series, cold start, and the latency of a lone line at 1,000 metrics/s."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

DEMO_CONFIG = ROOT / "hst-processor.yaml"
NAIVE = [sys.executable, str(ROOT / "benchmarks" / "naive_processor.py")]
LINE = (
    b"machine_data,machineID=m1 load=70,power=210,temperature=36,vibration=85 1767225600000000000\n"
)


def ours(*extra: str) -> list[str]:
    script = shutil.which("hst-processor")
    assert script is not None
    return [script, "--config", str(DEMO_CONFIG), *extra]


def ours_with_two_workers(folder: Path) -> list[str]:
    """The demo config with ``workers: 2``."""
    config = folder / "two-workers.yaml"
    config.write_text(DEMO_CONFIG.read_text() + "\nworkers: 2\n")
    return [*ours()[:2], str(config)]


# -- memory -------------------------------------------------------------------------------------


def probe_memory(engine: str, n_series: int) -> float:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "memory_probe.py"), engine, str(n_series)],
        capture_output=True,
        check=True,
        text=True,
    )
    return float(result.stdout.strip())


def test_memory_per_series_river(benchmark: Any) -> None:
    value = benchmark.pedantic(probe_memory, args=("river", 200), rounds=1)
    benchmark.extra_info.update(
        baseline_key="river, 200 models", value=value / 1024, unit="KiB/series"
    )


def test_memory_per_series_ours(benchmark: Any) -> None:
    value = benchmark.pedantic(probe_memory, args=("hst", 10_000), rounds=1)
    benchmark.extra_info.update(
        row="memory, 10,000 series (RSS growth)",
        baseline="river, 200 models",
        value=value / 1024,
        unit="KiB/series",
    )


# -- cold start ---------------------------------------------------------------------------------


def first_output_seconds(command: list[str], env: dict[str, str] | None = None) -> float:
    """Process start to the first output line, for a line written at once."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert process.stdin is not None and process.stdout is not None
    os.write(process.stdin.fileno(), LINE)
    process.stdout.readline()
    elapsed = time.perf_counter() - started
    process.stdin.close()
    process.wait(timeout=10)
    return elapsed


def without_river(tmp: Path) -> dict[str, str]:
    """An environment in which `import river` fails, as on a machine without river."""
    shadow = tmp / "no-river"
    (shadow / "river").mkdir(parents=True, exist_ok=True)
    (shadow / "river" / "__init__.py").write_text("raise ImportError('river is not installed')\n")
    return {**os.environ, "PYTHONPATH": str(shadow)}


def test_cold_start_naive(benchmark: Any) -> None:
    benchmark.pedantic(first_output_seconds, args=(NAIVE,), rounds=7)
    benchmark.extra_info.update(
        baseline_key="naive river processor", value=benchmark.stats.stats.median, unit="s"
    )


def test_cold_start_ours_without_river(benchmark: Any, tmp_path: Path) -> None:
    benchmark.pedantic(first_output_seconds, args=(ours(), without_river(tmp_path)), rounds=7)
    benchmark.extra_info.update(
        row="cold start to first output, river not installed",
        baseline="naive river processor",
        value=benchmark.stats.stats.median,
        unit="s",
    )


def test_cold_start_ours_two_workers(benchmark: Any, tmp_path: Path) -> None:
    """The first line waits for its worker to start (a fresh interpreter importing NumPy)."""
    command = ours_with_two_workers(tmp_path)
    benchmark.pedantic(first_output_seconds, args=(command,), rounds=7)
    benchmark.extra_info.update(
        row="cold start to first output, workers: 2",
        baseline="naive river processor",
        value=benchmark.stats.stats.median,
        unit="s",
    )


def test_cold_start_ours_with_river_engine(benchmark: Any, tmp_path: Path) -> None:
    config = tmp_path / "river.yaml"
    config.write_text(DEMO_CONFIG.read_text().replace("engine: hst", "engine: river"))
    script = shutil.which("hst-processor")
    assert script is not None
    benchmark.pedantic(first_output_seconds, args=([script, "--config", str(config)],), rounds=7)
    benchmark.extra_info.update(
        row="cold start to first output, engine: river",
        baseline="naive river processor",
        value=benchmark.stats.stats.median,
        unit="s",
    )


# -- latency of lone lines ----------------------------------------------------------------------


def lone_line_latencies(command: list[str], count: int = 3000, rate: float = 1000.0) -> list[float]:
    """Write one metric per write at ``rate`` per second; time each line's answer."""
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdin is not None and process.stdout is not None
    out_fd = process.stdout.fileno()
    latencies = []
    pending = b""
    next_send = time.perf_counter()
    for i in range(count):
        machine = f"m{i % 50}"
        line = LINE.replace(b"m1", machine.encode())
        while time.perf_counter() < next_send:
            pass
        sent = time.perf_counter()
        os.write(process.stdin.fileno(), line)
        while b"\n" not in pending:
            select.select([out_fd], [], [], 5)
            pending += os.read(out_fd, 65536)
        latencies.append(time.perf_counter() - sent)
        pending = pending.split(b"\n", 1)[1]
        next_send = sent + 1 / rate
    process.stdin.close()
    process.wait(timeout=10)
    return sorted(latencies)


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@pytest.mark.parametrize("q", [0.5, 0.99], ids=["p50", "p99"])
@pytest.mark.parametrize("subject", ["naive", "ours", "workers"])
def test_lone_line_latency(benchmark: Any, subject: str, q: float, tmp_path: Path) -> None:
    """Each row is its own run of 3,000 lines (3 s), as the two percentiles come from it;
    ``workers``: the demo config with ``workers: 2`` (a line goes to a worker and back)."""
    commands = {"naive": NAIVE, "ours": ours(), "workers": ours_with_two_workers(tmp_path)}
    command = commands[subject]
    ordered = benchmark.pedantic(lone_line_latencies, args=(command,), rounds=1)
    label = "p50" if q == 0.5 else "p99"
    value = percentile(ordered, q) * 1000
    if subject == "naive":
        benchmark.extra_info.update(baseline_key=f"naive, latency {label}", value=value, unit="ms")
    else:
        benchmark.extra_info.update(
            row=f"lone-line latency {label}, 1,000 metrics/s"
            + (", workers: 2" if subject == "workers" else ""),
            baseline=f"naive, latency {label}",
            value=value,
            unit="ms",
        )

"""Shared fixtures and the summary table: our code against its baseline, same run, as ratios.

Every benchmark records in ``extra_info`` either ``baseline_key`` (it is a baseline) or
``row`` and ``baseline`` (it is ours, compared with that baseline), and how to read it: ``units``
and ``per_round`` (units one round processes, so a rate comes from the median time), or
``value`` and ``unit`` for figures where lower is better (bytes per series, latency).

Run all of them with ``python -m pytest benchmarks``; set ``HST_BENCH_LINES`` to shorten the
whole-processor runs (default 1,000,000 lines).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

BENCH_LINES = int(os.environ.get("HST_BENCH_LINES", "1000000"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    session = getattr(terminalreporter.config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    baselines = {
        b.extra_info["baseline_key"]: b
        for b in session.benchmarks
        if "baseline_key" in b.extra_info
    }
    ours = [b for b in session.benchmarks if "row" in b.extra_info]
    if not ours:
        return
    write = terminalreporter.write_line
    write("")
    write("hst-processor against its baselines (medians, same run)")
    write(f"{'ours':46} {'figure':>18}   {'baseline':30} {'figure':>18} {'ratio':>7}")
    for bench in ours:
        baseline = baselines.get(bench.extra_info["baseline"])
        write(
            f"{bench.extra_info['row']:46} {_figure(bench):>18}   "
            f"{bench.extra_info['baseline']:30} {_figure(baseline):>18} "
            f"{_ratio(bench, baseline):>7}"
        )


def _figure(bench: Any) -> str:
    if bench is None:
        return "-"
    info = bench.extra_info
    if "value" in info:
        return f"{info['value']:,.4g} {info['unit']}"
    return f"{info['per_round'] / bench.stats.median:,.0f} {info['units']}/s"


def _ratio(ours: Any, baseline: Any) -> str:
    """How many times better ours is: a higher rate, or a lower value."""
    if baseline is None:
        return "-"
    if "value" in ours.extra_info:
        return f"{baseline.extra_info['value'] / ours.extra_info['value']:.1f}x"
    ours_rate = ours.extra_info["per_round"] / ours.stats.median
    baseline_rate = baseline.extra_info["per_round"] / baseline.stats.median
    return f"{ours_rate / baseline_rate:.1f}x"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT

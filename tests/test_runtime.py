"""The processor's own processes collect reference cycles rarely; a library's user is left alone."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from hst_processor.runtime import GC_THRESHOLDS, tune_garbage_collector

# A process that runs ``entry`` and says at exit whether its thresholds moved, and to what.
_REPORT_AT_EXIT = """
import atexit, gc, sys
start = gc.get_threshold()
atexit.register(lambda: print("thresholds", start, gc.get_threshold(), file=sys.stderr))
sys.argv = ["hst-processor", "--version"]
{entry}
"""


@pytest.fixture
def thresholds_kept() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_tuning_sets_the_documented_thresholds(thresholds_kept: None) -> None:
    gc.set_threshold(700, 10, 10)  # CPython 3.11's defaults
    tune_garbage_collector()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > 700


def at_exit(entry: str) -> tuple[str, str]:
    """The thresholds a process started with and ended with, having run ``entry``."""
    result = subprocess.run(
        [sys.executable, "-c", _REPORT_AT_EXIT.format(entry=entry)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    line = next(line for line in result.stderr.splitlines() if line.startswith("thresholds"))
    start, _, end = line.removeprefix("thresholds ").partition(") ")
    return start + ")", end


def test_the_command_tunes_its_own_process() -> None:
    _, end = at_exit("from hst_processor.cli import console; console()")
    assert end == str(GC_THRESHOLDS)


def test_importing_the_package_leaves_the_collector_alone() -> None:
    start, end = at_exit("import hst_processor.cli, hst_processor.processor, hst_processor.workers")
    assert start == end != str(GC_THRESHOLDS)

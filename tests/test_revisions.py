"""``python -m benchmarks.revisions``: two revisions' speed side by side, outputs compared."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.revisions import ROOT, same_metrics


def test_the_working_tree_against_head_is_timed_and_found_identical() -> None:
    """Against HEAD, whose code is the working tree's at a clean checkout (CI's), every
    output matches; the table has a row per config and machine count."""
    changed = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "hst_processor"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    command = [sys.executable, "-m", "benchmarks.revisions", "HEAD"]
    options = ["--lines", "900", "--rounds", "1", "--machines", "3"]
    done = subprocess.run(command + options, cwd=ROOT, capture_output=True, text=True, check=False)
    rows = [line.split() for line in done.stdout.splitlines()[2:]]
    assert [row[:2] for row in rows] == [["demo", "3"], ["defaults", "3"]], done.stdout
    if not changed:  # a developer's edits may rightly change the output
        assert done.returncode == 0, done.stdout + done.stderr
        assert all(row[-1] == "identical" for row in rows)
    worktrees = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert "hst-revisions-" not in worktrees  # the old revision's checkout is gone


def test_outputs_differ_by_a_metric_but_not_by_a_report(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(b"m,id=a x=1 1\nhst_processor,host=h lines_in=1i 5\nm,id=a x=2 2\n")
    second.write_bytes(b"m,id=a x=1 1\nm,id=a x=2 2\nhst_processor,host=h lines_in=2i 9\n")
    assert same_metrics(first, second)
    second.write_bytes(b"m,id=a x=1 1\nm,id=a x=2.0 2\n")
    assert not same_metrics(first, second)

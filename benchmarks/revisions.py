"""Two revisions of the whole processor side by side: how fast each is, and whether their
outputs are byte-identical.

    python -m benchmarks.revisions 664ad7a                  # the working tree against 664ad7a
    python -m benchmarks.revisions 664ad7a --rounds 5 --machines 3,1000 --lines 300000

The old revision is checked out in a temporary git worktree. Both read the same files of the
simulator's healthy machines, with the shipped demo config and with the defaults (only
``measurements`` and ``group_by``), file to file, the whole process timed. The runs alternate
(old, new, old, new...) so that a busy machine slows both alike, and the table gives the
median of each. The first round's outputs are compared byte for byte, the processor's own
reports (``hst_processor`` lines) set aside, since they come at times that differ between runs.
Each process runs outside the repository, so that ``python -m`` imports the revision asked
for and not the working tree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from simulator.run import simulate

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = "measurements: [machine_data]\ngroup_by: [machineID]\n"
REPORTS = b"hst_processor,"  # self-metric lines: kept out of the byte comparison
START_NS = 1_767_225_600_000_000_000


def checkout(revision: str, into: Path) -> Path:
    """A worktree of ``revision`` at ``into`` (removed by :func:`remove`)."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(into), revision],
        check=True,
    )
    return into


def remove(worktree: Path) -> None:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False
    )


def run_once(tree: Path, config: Path, source: Path, output: Path | None, workdir: Path) -> float:
    """Seconds for one whole process of the tree's processor, ``source`` to ``output``."""
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", "hst_processor", "--config", str(config)]
    with source.open("rb") as stdin, (output or Path(os.devnull)).open("wb") as stdout:
        started = time.perf_counter()
        subprocess.run(
            command,
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            cwd=workdir,
            env=environment,
            check=True,
        )
        return time.perf_counter() - started


def same_metrics(first: Path, second: Path) -> bool:
    """Whether two outputs hold the same bytes, self-metric report lines aside."""

    def metrics(path: Path) -> list[bytes]:
        return [line for line in path.read_bytes().splitlines(True) if not line.startswith(REPORTS)]

    return metrics(first) == metrics(second)


def compare(
    old_tree: Path,
    new_tree: Path,
    machines: Sequence[int],
    lines: int,
    rounds: int,
    workdir: Path,
) -> list[tuple[str, int, float, float, bool]]:
    """Per config and machine count: the old and new medians (s) and whether the outputs match."""
    configs = {"demo": ROOT / "hst-processor.yaml", "defaults": workdir / "defaults.yaml"}
    configs["defaults"].write_text(DEFAULTS)
    results = []
    for count in machines:
        source = workdir / f"machines-{count}.lp"
        text, _ = simulate(count, 1, START_NS, lines // count, [])
        source.write_text(text)
        for name, config in configs.items():
            times: dict[str, list[float]] = {"old": [], "new": []}
            outputs = {side: workdir / f"{name}-{count}-{side}.out" for side in times}
            for round_number in range(rounds):
                for side, tree in (("old", old_tree), ("new", new_tree)):
                    output = outputs[side] if round_number == 0 else None
                    times[side].append(run_once(tree, config, source, output, workdir))
            identical = same_metrics(outputs["old"], outputs["new"])
            results.append(
                (
                    name,
                    count,
                    statistics.median(times["old"]),
                    statistics.median(times["new"]),
                    identical,
                )
            )
    return results


def table(results: Sequence[tuple[str, int, float, float, bool]], lines: int) -> str:
    rows = [
        f"{'config':10s} {'machines':>8s} {'old s':>8s} {'new s':>8s} {'new metrics/s':>14s} "
        f"{'new/old speed':>13s}  outputs"
    ]
    for name, count, old, new, identical in results:
        metrics = lines // count * count
        rows.append(
            f"{name:10s} {count:8d} {old:8.2f} {new:8.2f} {metrics / new:14,.0f} "
            f"{old / new:12.2f}x  {'identical' if identical else 'DIFFER'}"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", help="the revision to compare with (a commit, tag or branch)")
    parser.add_argument("--new", default="", help="a revision instead of the working tree")
    parser.add_argument("--machines", default="3,1000", help="machine counts (default 3,1000)")
    parser.add_argument("--lines", type=int, default=300_000, help="lines per file")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side (median)")
    args = parser.parse_args(argv)
    machines = [int(count) for count in args.machines.split(",")]
    with tempfile.TemporaryDirectory(prefix="hst-revisions-") as scratch:
        workdir = Path(scratch)
        old_tree = checkout(args.old, workdir / "old")
        new_tree = checkout(args.new, workdir / "new") if args.new else ROOT
        try:
            results = compare(old_tree, new_tree, machines, args.lines, args.rounds, workdir)
        finally:
            remove(old_tree)
            if args.new:
                remove(new_tree)
    new_name = args.new or "working tree"
    print(f"{new_name} against {args.old}: {args.lines:,} lines per file, median of {args.rounds}")
    print(table(results, args.lines))
    return 0 if all(identical for *_, identical in results) else 1


if __name__ == "__main__":
    sys.exit(main())

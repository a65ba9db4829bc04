"""What one stage of the processor costs: the processor's time with that stage made free.

    python -m benchmarks.stage_bounds                      # 3 and 1,000 machines, demo config
    python -m benchmarks.stage_bounds --machines 3 --lines 300000 --rounds 3 --config x.yaml

The upper bound of what a faster stage (a compiled parser, say) could give: ``Processor.feed``
timed in this process (no start-up, no pipes; the command's collector settings) on the
simulator's healthy machines, 1 MB reads as ``serve`` makes them, as it is and with one stage
at a time made free:

* ``parse free``: each line's parsed metric is looked up, parsed beforehand;
* ``enrich free``: the output line is the input line, nothing added;
* ``detect free``: no measurement is scored, so every line is cut, parsed and passed through
  unchanged: what reading and parsing cost with nothing else.

The variants alternate round by round (so that a busy machine slows all alike); the table gives
each one's median, its rate, and its speed against the processor as it is.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import io
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.revisions import ROOT, START_NS
from hst_processor import processor as processor_module
from hst_processor.config import Config, load_config
from hst_processor.lineproto import parse_metric
from hst_processor.log import Log
from hst_processor.processor import READ_SIZE, Processor
from hst_processor.runtime import tune_garbage_collector
from simulator.run import simulate

VARIANTS = ("as it is", "parse free", "enrich free", "detect free")


def seconds_to_feed(config: Config, reads: list[str]) -> float:
    processor = Processor(config, Log(io.StringIO()))
    gc.collect()
    start = time.perf_counter()
    for read in reads:
        processor.feed(read)
    processor.finish()
    return time.perf_counter() - start


@contextmanager
def stage_made_free(variant: str, text: str) -> Iterator[None]:
    """The processor module's view of one stage replaced for the time of a run."""
    replaced: dict[str, Callable[..., object]] = {}
    if variant == "parse free":
        parsed = {line: parse_metric(line) for line in text.splitlines()}
        replaced["parse_metric"] = parsed.__getitem__
    elif variant == "enrich free":
        replaced["enrich_text"] = lambda metric, *_: metric.text
    saved = {name: getattr(processor_module, name) for name in replaced}
    for name, stand_in in replaced.items():
        setattr(processor_module, name, stand_in)
    try:
        yield
    finally:
        for name, original in saved.items():
            setattr(processor_module, name, original)


def measure(config: Config, machines: int, lines: int, rounds: int) -> dict[str, list[float]]:
    text, _ = simulate(machines, 1, START_NS, lines // machines, [])
    reads = [text[at : at + READ_SIZE] for at in range(0, len(text), READ_SIZE)]
    unscored = dataclasses.replace(config, measurements=("nothing scored",))
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for _ in range(rounds):
        for variant in VARIANTS:
            with stage_made_free(variant, text):
                chosen = unscored if variant == "detect free" else config
                times[variant].append(seconds_to_feed(chosen, reads))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--machines", default="3,1000", help="machine counts (default 3,1000)")
    parser.add_argument("--lines", type=int, default=300_000, help="lines per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant (median)")
    parser.add_argument("--config", type=Path, default=ROOT / "hst-processor.yaml")
    arguments = parser.parse_args()
    tune_garbage_collector()  # as the command does
    config = load_config(arguments.config)
    print(f"{arguments.config.name}, {arguments.lines:,} lines, median of {arguments.rounds}")
    print(f"{'machines':>8} {'variant':12} {'seconds':>8} {'metrics/s':>10} {'speed':>7}")
    for machines in (int(count) for count in arguments.machines.split(",")):
        times = measure(config, machines, arguments.lines, arguments.rounds)
        baseline = statistics.median(times["as it is"])
        for variant in VARIANTS:
            median = statistics.median(times[variant])
            print(
                f"{machines:>8} {variant:12} {median:8.2f} {arguments.lines / median:10,.0f} "
                f"{baseline / median:6.2f}x"
            )


if __name__ == "__main__":
    main()

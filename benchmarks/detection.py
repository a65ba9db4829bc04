"""The detection benchmark: the default config, its documented alternatives and the baselines,
on the simulator suite and on every labelled dataset in a folder.

    python -m benchmarks.detection ../shared/data/benchmarks            # every dataset
    python -m benchmarks.detection ../shared/data/benchmarks --sets asd,sim --json out.json

The folder holds ``<name>-dev.lp.gz`` and ``<name>-dev.labels.jsonl`` per dataset (SMD, ASD and
NAB as ``../shared/data/benchmarks/README.md`` describes them); the data is read in place, never
copied into the project. ``sim`` is the simulator suite (``tests/scenarios/``), made in process.

Every HST configuration sets only ``measurements`` and ``group_by`` (and the one option that
makes it an alternative); alerts and labels are counted over the whole stream, a published
training part included (it is normal operation: an alert there is a false one). One table per
dataset, then one over all of them: the mean F1 across datasets, the worst false-alert rate and
the flag rate on normal metrics against the threshold's documented rate (1 in 1,000).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from hst_processor.config import parse_config
from hst_processor.log import Log
from hst_processor.offline.evaluate import Evaluation, combine, evaluate_file
from hst_processor.offline.labels import parse_labels

DOCUMENTED_RATE = 0.001  # what the default threshold (0.5) means: rarer than 1 in 1,000
ALTERNATIVES: dict[str, dict[str, Any]] = {
    "HST default": {},
    "HST learn everything": {"detection": {"learn_anomalies": True}},
    "HST raw fields": {"context_features": False},
    "HST landmark score": {"detection": {"calibration": "landmarks"}},
}
"""Each configuration: the options it sets beside ``measurements`` and ``group_by``."""


def _datasets(folder: Path, wanted: list[str]) -> list[tuple[str, list[tuple[str, str]], str]]:
    """(name, [(line protocol, labels)], measurement) for each wanted dataset."""
    found = []
    for name in wanted:
        if name == "sim":
            from tests.scenario_suite import SCENARIOS, simulate_scenario

            found.append((name, [simulate_scenario(path) for path in SCENARIOS], "machine_data"))
            continue
        lines = folder / f"{name}-dev.lp.gz"
        labels = folder / f"{name}-dev.labels.jsonl"
        if not lines.exists():
            print(f"W! {lines} not found: {name} left out", file=sys.stderr)
            continue
        with gzip.open(lines, "rt", encoding="utf-8") as source:
            text = source.read()
        found.append((name, [(text, labels.read_text(encoding="utf-8"))], name))
    return found


def run(folder: Path, wanted: list[str], configs: list[str]) -> dict[str, list[Evaluation]]:
    results: dict[str, list[Evaluation]] = {}
    log = Log(sys.stderr)
    for name, runs, measurement in _datasets(folder, wanted):
        started = time.perf_counter()
        per_detector: dict[str, list[Evaluation]] = defaultdict(list)
        for label in configs:
            document = {"measurements": [measurement], "group_by": ["machineID"]}
            document.update(ALTERNATIVES[label])
            config = parse_config(document)
            for text, labels in runs:
                found, _ = evaluate_file(
                    text, parse_labels(labels), config, baselines=label == configs[0], log=log
                )
                found[0].detector = label
                for evaluation in found:
                    per_detector[evaluation.detector].append(evaluation)
        results[name] = [combine(parts) for parts in per_detector.values()]
        print(f"I! {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return results


def _cell(value: float | None, form: str) -> str:
    return "-" if value is None else format(value, form)


def format_tables(results: dict[str, list[Evaluation]]) -> str:
    header = (
        f"{'detector':<24} {'F1':>5} {'recall':>6} {'prec.':>5} {'alerts':>6} "
        f"{'false/m-day':>11} {'normal flag rate':>16} {'tag changes/window':>18}"
    )
    out: list[str] = []
    for name, evaluations in results.items():
        events = evaluations[0].events
        days = evaluations[0].machine_days
        out += [f"## {name}: {events} labelled windows, {days:.1f} machine-days", header]
        for e in evaluations:
            out.append(
                f"{e.detector:<24} {e.f1:5.2f} {e.recall:6.2f} {e.precision:5.2f} {e.alerts:6d} "
                f"{e.false_per_machine_day:11.2f} {_cell(e.normal_flag_rate, '16.3%')} "
                f"{_cell(e.tag_changes, '18.1f')}"
            )
        out.append("")
    by_detector: dict[str, list[Evaluation]] = defaultdict(list)
    for evaluations in results.values():
        for e in evaluations:
            by_detector[e.detector].append(e)
    out += [
        f"## overall: {len(results)} datasets ({', '.join(results)})",
        f"{'detector':<24} {'mean F1':>7} {'min F1':>6} {'worst false/m-day':>17} "
        f"{'normal flag rate (range)':>26}",
    ]
    for detector, parts in by_detector.items():
        rates = [e.normal_flag_rate for e in parts if e.normal_flag_rate is not None]
        span = f"{min(rates):.3%} to {max(rates):.3%}" if rates else "-"
        out.append(
            f"{detector:<24} {sum(e.f1 for e in parts) / len(parts):7.2f} "
            f"{min(e.f1 for e in parts):6.2f} "
            f"{max(e.false_per_machine_day for e in parts):17.2f} {span:>26}"
        )
    out.append(
        f"(the default threshold's documented rate: {DOCUMENTED_RATE:.1%} of normal metrics; "
        "target: a third to three times that)"
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection", description=__doc__)
    parser.add_argument("folder", type=Path, help="labelled datasets (*-dev.lp.gz, *.labels.jsonl)")
    parser.add_argument("--sets", default="sim,smd,asd,nab", help="datasets (default: all)")
    parser.add_argument(
        "--configs",
        default=",".join(ALTERNATIVES),
        help="HST configurations, comma-separated; the first runs with the baselines",
    )
    parser.add_argument("--json", type=Path, help="also write every figure as JSON here")
    args = parser.parse_args(argv)
    configs = args.configs.split(",")
    unknown = [name for name in configs if name not in ALTERNATIVES]
    if unknown:
        parser.error(f"unknown configurations {unknown}; choose from {list(ALTERNATIVES)}")
    results = run(args.folder, args.sets.split(","), configs)
    print(format_tables(results))
    if args.json:
        document = {name: [e.as_dict() for e in found] for name, found in results.items()}
        args.json.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

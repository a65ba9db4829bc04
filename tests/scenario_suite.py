"""The detection suite: labelled simulator runs scored by the evaluator, HST beside baselines.

``tests/scenarios/suite-*.yaml`` are four six-hour runs of five machines (24 simulated hours,
120 machine-hours), every fault kind on every machine. Each run is simulated in process, replayed
through the shipped config, and evaluated; the results of the four runs are combined.

    python -m tests.scenario_suite            # the table in the README
    python -m tests.scenario_suite --json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from hst_processor.config import Config, load_config
from hst_processor.offline.evaluate import Evaluation, combine, evaluate_file, format_table
from hst_processor.offline.labels import parse_labels
from simulator.run import simulate
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "tests" / "scenarios").glob("suite-*.yaml"))
SHIPPED_CONFIG = ROOT / "hst-processor.yaml"


def simulate_scenario(path: Path) -> tuple[str, str]:
    """The scenario's line protocol and labels, as ``python -m simulator --stdout`` makes them."""
    scenario = load_scenario(path)
    assert scenario.seed is not None and scenario.start_ns is not None
    assert scenario.duration_s is not None
    return simulate(
        scenario.machines or 3,
        scenario.seed,
        scenario.start_ns,
        scenario.duration_s,
        scenario.faults,
        scenario.rate or 1.0,
    )


def evaluate_suite(config: Config) -> list[Evaluation]:
    """HST and every baseline, each combined over the suite's runs."""
    per_detector: dict[str, list[Evaluation]] = defaultdict(list)
    for path in SCENARIOS:
        text, labels = simulate_scenario(path)
        results, _ = evaluate_file(
            text, parse_labels(labels), config, field_of=config.feature_sources()
        )
        for result in results:
            per_detector[result.detector].append(result)
    return [combine(results) for results in per_detector.values()]


def main() -> None:
    results = evaluate_suite(load_config(SHIPPED_CONFIG))
    if "--json" in sys.argv:
        print(json.dumps([result.as_dict() for result in results], indent=2))
    else:
        print(format_table(results, [], 1.0))


if __name__ == "__main__":
    main()

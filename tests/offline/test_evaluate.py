"""``evaluate``: event-level results against labels, the sweep, and the command end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hst_processor.offline.evaluate import (
    Alarm,
    Evaluation,
    KindResult,
    combine,
    evaluate_alarms,
    suggest_threshold,
    suggestion_text,
)
from hst_processor.offline.labels import FaultLabel
from tests.offline.test_replay import CONFIG, simulated

NS = 1_000_000_000


def label(machine: str, kind: str, field: str, start: int, end: int | None) -> FaultLabel:
    return FaultLabel(0, machine, kind, field, start * NS, None if end is None else end * NS, "t")


# One machine-day for two machines: one metric a second from 0 to 43,200 s each.
TIMELINES = {m: np.arange(0.0, 43_201.0) for m in ("m1", "m2")}
LABELS = [
    label("m1", "bearing", "vibration", 1000, 1600),
    label("m1", "spike", "power", 5000, 5003),
    label("m2", "stuck", "temperature", 2000, 2900),
    label("m2", "bearing", "vibration", 9000, 9600),
]


def test_events_alerts_delays_and_false_alerts_are_counted_as_documented() -> None:
    alarms = [
        Alarm("m1", 1002.0, "vibration"),  # bearing, 2 metrics in
        Alarm("m1", 1300.0, "vibration"),  # a second alert on the same fault: still true
        Alarm("m1", 5040.0, "power"),  # after the spike, inside the 60 s grace
        Alarm("m2", 2020.0, "vibration"),  # stuck found, but the explanation is wrong
        Alarm("m2", 20_000.0, "power"),  # nothing there: false
        Alarm("m1", 9100.0, "vibration"),  # m2's fault, on the wrong machine: false
    ]
    result = evaluate_alarms("hst", 0.5, alarms, LABELS, TIMELINES, grace=60)
    assert (result.events, result.alerts, result.true_alerts) == (4, 6, 4)
    assert result.recall == 0.75 and result.precision == pytest.approx(4 / 6)
    assert result.f1 == pytest.approx(2 * 0.75 * (4 / 6) / (0.75 + 4 / 6))
    assert result.machine_days == 1.0 and result.false_per_machine_day == 2.0
    assert result.kinds["bearing"].detected == 1 and result.kinds["bearing"].events == 2
    assert result.kinds["bearing"].delays_metrics == [2]
    assert result.kinds["spike"].delays_s == [40.0]
    assert result.kinds["stuck"].delays_metrics == [20]
    assert result.explanation_accuracy == pytest.approx(2 / 3)
    document = result.as_dict()
    assert document["delay_metrics"] == {"median": 20.0, "p90": pytest.approx(36.0)}
    assert document["kinds"]["bearing"]["recall"] == 0.5


def test_derived_features_are_checked_by_their_source_field() -> None:
    alarms = [Alarm("m2", 2005.0, "temperature_repeats")]
    result = evaluate_alarms(
        "hst", 0.5, alarms, LABELS[2:3], TIMELINES, field_of={"temperature_repeats": "temperature"}
    )
    assert result.explanation_accuracy == 1.0


def test_a_fault_after_the_end_of_the_data_is_not_an_event() -> None:
    late = [label("m1", "spike", "power", 50_000, 50_003)]
    assert evaluate_alarms("hst", 0.5, [], late, TIMELINES).events == 0


def test_the_suggestion_is_the_best_f1_within_the_false_alert_budget() -> None:
    def run(threshold: float, detected: int, alerts: int, true: int) -> Evaluation:
        kinds = {"bearing": KindResult(events=4, detected=detected)}
        return Evaluation("hst", threshold, kinds, alerts, true, 1.0)

    # F1: 0.3 is best but 8 false alerts; 0.4 gives 0.75 with 1; 0.5 gives 0.67 with none.
    sweep = [run(0.3, 4, 12, 4), run(0.4, 3, 4, 3), run(0.5, 2, 2, 2), run(0.6, 1, 1, 1)]
    assert suggest_threshold(sweep, budget=1.0).threshold == 0.4  # type: ignore[union-attr]
    assert suggest_threshold(sweep, budget=0.5).threshold == 0.5  # type: ignore[union-attr]
    assert suggest_threshold(sweep[:1], budget=1.0) is None


def test_the_suggestion_counts_as_ties_only_the_thresholds_it_chose_from() -> None:
    def run(threshold: float, alerts: int, machine_days: float) -> Evaluation:
        kinds = {"bearing": KindResult(events=4, detected=4)}
        return Evaluation("hst", threshold, kinds, alerts, 4, machine_days)

    # The same F1 at 0.2 and 0.3 (one false alert in five), but at 0.2 it is two per
    # machine-day: over the budget, not a tie. 0.4 is over the budget too.
    sweep = [run(0.2, 5, 0.5), run(0.3, 5, 1.0), run(0.4, 6, 1.0)]
    assert sweep[0].f1 == sweep[1].f1
    best = suggest_threshold(sweep, budget=1.0)
    assert best is not None and best.threshold == 0.3
    assert "tie" not in suggestion_text(best, sweep, 1.0)
    assert "on 4 labelled windows" in suggestion_text(best, sweep, 1.0)


def test_combining_runs_adds_their_events_alerts_and_days() -> None:
    one = evaluate_alarms("hst", 0.5, [Alarm("m1", 1010.0)], LABELS, TIMELINES)
    both = combine([one, one])
    assert (both.events, both.alerts, both.machine_days) == (8, 2, 2.0)
    assert both.kinds["bearing"].delays_metrics == [10, 10]


def test_the_command_compares_hst_with_the_baselines_and_sweeps(tmp_path: Path) -> None:
    data, labels = simulated(tmp_path, "machine1:bearing:10m:5m", "machine3:stuck:20m:5m")
    script = shutil.which("hst-processor")
    assert script is not None
    result = subprocess.run(
        [script, "--config", str(CONFIG), "evaluate", str(data), "--labels", str(labels),
         "--json", "--sweep", "0.1,0.12,0.3"],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    detectors = {d["detector"]: d for d in document["detectors"]}
    assert set(detectors) == {
        "HST (hst-processor)", "static threshold", "robust z-score", "river HST (defaults)",
        "IsolationForest",
    }  # fmt: skip
    hst = detectors["HST (hst-processor)"]
    assert hst["events"] == 2 and hst["recall"] == 1.0 and hst["false_alerts"] == 0
    assert hst["kinds"]["stuck"]["detected"] == 1
    assert [s["threshold"] for s in document["sweep"]] == [0.1, 0.12, 0.3]
    assert document["suggested_threshold"] in (0.1, 0.12, 0.3)
    table = subprocess.run(
        [script, "--config", str(CONFIG), "evaluate", str(data), "--labels", str(labels),
         "--no-baselines"],
        capture_output=True, text=True, timeout=300,
    ).stdout  # fmt: skip
    assert table.splitlines()[1].startswith("HST (hst-processor)")
    assert "static threshold" not in table


def test_the_command_says_what_is_wrong_with_its_inputs(tmp_path: Path) -> None:
    script = shutil.which("hst-processor")
    assert script is not None
    bad_labels = tmp_path / "labels.jsonl"
    bad_labels.write_text("{not json\n")
    data = tmp_path / "data.lp"
    data.write_text("")
    no_labels = tmp_path / "none-yet.jsonl"
    no_labels.write_text("")
    for args, code, message in [
        (["--labels", str(tmp_path / "none.jsonl")], 1, "cannot read"),
        (["--labels", str(bad_labels)], 2, "labels line 1: not a fault label"),
        (["--labels", str(no_labels), "--sweep", "high"], 2, "--sweep takes thresholds"),
    ]:
        result = subprocess.run(
            [script, "evaluate", str(data), *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == code and message in result.stderr, result.stderr

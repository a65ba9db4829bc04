"""Scenario files and --fault specs: what runs, and the errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.scenario import (
    ScenarioError,
    ScheduledFault,
    load_scenario,
    parse_duration,
    parse_fault_spec,
    parse_scenario,
)

SCENARIO = """
seed: 7
machines: 4
rate: 2
start: 2026-01-01T00:00:00Z
duration: 6h
faults:
  - {machine: machine2, kind: bearing, at: 30m, for: 10m}
  - {machine: machine3, kind: spike, at: 1h}
"""


def test_a_scenario_file_sets_the_run_and_its_faults(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path)
    assert (scenario.seed, scenario.machines, scenario.rate) == (7, 4, 2.0)
    assert scenario.start_ns == 1_767_225_600_000_000_000
    assert scenario.duration_s == 6 * 3600
    assert scenario.faults == (
        ScheduledFault("machine2", "bearing", 1800.0, 600.0),
        ScheduledFault("machine3", "spike", 3600.0, None),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("faults: [{machine: machine1, kind: meltdown, at: 1m}]", "faults[0].kind: 'meltdown'"),
        ("faults: [{machine: machine1, kind: stuck, at: soon}]", "faults[0].at: 'soon'"),
        ("faults: [{machine: machine1, kind: stuck, at: 1m, for: -5}]", "faults[0].for: -5"),
        ("faults: [{kind: stuck, at: 1m}]", "faults[0].machine: a machine ID"),
        ("faults: [{machine: m1, kind: stuck, when: 1m}]", "faults[0].when: unknown key"),
        ("faults: {machine: m1}", "faults: expected a list"),
        ("machines: 0", "machines: expected a whole number of at least 1"),
        ("rate: fast", "rate: expected metrics per second above 0"),
        ("start: yesterday", "start: 'yesterday' is not a time"),
        ("speed: 3", "speed: unknown key"),
        ("- just a list", "scenario: expected a mapping"),
        ("faults: [", "scenario: not valid YAML"),
    ],
)
def test_a_bad_scenario_names_the_key_and_the_reason(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text)
    assert str(caught.value).startswith(message)


def test_fault_specs_and_durations() -> None:
    assert parse_fault_spec("machine1:cooling:90s") == ScheduledFault(
        "machine1", "cooling", 90.0, None
    )
    assert parse_duration("1d", "duration") == 86400
    assert parse_duration(2.5, "duration") == 2.5
    with pytest.raises(ScenarioError, match="--fault: 'machine1:cooling' is not"):
        parse_fault_spec("machine1:cooling")
    with pytest.raises(ScenarioError, match="duration: True is not a duration"):
        parse_duration(True, "duration")

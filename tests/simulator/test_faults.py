"""Each fault kind against the same run without it: what changes, what does not, and when.

The machines draw healthy readings and fault noise from separate generators, so the run
without the fault is an exact control: every difference is the fault's doing.
"""

from __future__ import annotations

import statistics

import pytest

from simulator.faults import FAULTS
from simulator.labels import FaultLabel, LabelLog
from simulator.model import FIELDS
from simulator.scenario import ScheduledFault
from simulator.simulation import Simulation

NS = 1_000_000_000
FAULT_AT, FAULT_FOR, RUN = 120, 600, 900


class Labels(LabelLog):
    def __init__(self) -> None:
        super().__init__(None)
        self.ended: list[tuple[str, int, int]] = []

    def end(self, label_id: int, time_ns: int) -> None:
        label: FaultLabel = self._open[label_id]
        self.ended.append((label.kind, label.start_ns, time_ns))
        super().end(label_id, time_ns)


def run(kind: str | None, seconds: int = RUN) -> tuple[list[dict[str, float]], Labels]:
    """machine1's readings, second by second, with ``kind`` scripted on it (None: healthy)."""
    schedule = [] if kind is None else [ScheduledFault("machine1", kind, FAULT_AT, FAULT_FOR)]
    labels = Labels()
    simulation = Simulation(2, seed=11, start_ns=0, rate=1.0, labels=labels, schedule=schedule)
    readings = []
    for second in range(seconds):
        ticked = dict((m.machine_id, r) for m, r in simulation.tick(second * NS))
        readings.append(ticked["machine1"].fields())
    simulation.close()
    return readings, labels


@pytest.fixture(scope="module")
def healthy() -> list[dict[str, float]]:
    return run(None)[0]


def changed_fields(healthy: list[dict[str, float]], faulty: list[dict[str, float]]) -> set[str]:
    pairs = zip(healthy, faulty, strict=True)
    return {name for h, f in pairs for name in FIELDS if h[name] != f[name]}


def changed_seconds(healthy: list[dict[str, float]], faulty: list[dict[str, float]]) -> list[int]:
    return [second for second, (h, f) in enumerate(zip(healthy, faulty, strict=True)) if h != f]


def test_healthy_machines_stay_in_the_seed_bands(healthy: list[dict[str, float]]) -> None:
    assert all(50 <= r["load"] <= 99 for r in healthy)
    assert all(200 <= r["power"] <= 220 for r in healthy)
    assert all(35 <= r["temperature"] <= 40 for r in healthy)
    assert all(80 <= r["vibration"] <= 90 for r in healthy)
    # ...and follow load inside them, which is what a decoupling breaks.
    loads = [r["load"] for r in healthy]
    assert statistics.correlation(loads, [r["power"] for r in healthy]) > 0.8


@pytest.mark.parametrize("kind", ["bearing", "cooling", "stuck", "decoupling", "spike"])
def test_a_fault_changes_only_its_field_and_only_inside_its_label(
    kind: str, healthy: list[dict[str, float]]
) -> None:
    faulty, labels = run(kind)
    assert changed_fields(healthy, faulty) == {FAULTS[kind].field}
    (label_kind, start_ns, end_ns) = labels.ended[0]
    assert label_kind == kind
    seconds = changed_seconds(healthy, faulty)
    assert seconds, "the fault changed nothing"
    assert start_ns // NS <= seconds[0] and seconds[-1] < end_ns // NS


def test_bearing_raises_vibration_while_load_stays_normal(
    healthy: list[dict[str, float]],
) -> None:
    faulty, _ = run("bearing")
    window = faulty[FAULT_AT + 60 : FAULT_AT + FAULT_FOR]
    assert min(r["vibration"] for r in window) > 115  # normal tops out at 90
    assert max(r["vibration"] for r in window) < 150  # far below an overload's 300
    assert all(50 <= r["load"] <= 99 for r in window)


def test_cooling_drifts_slowly_and_a_band_threshold_sees_it_late(
    healthy: list[dict[str, float]],
) -> None:
    faulty, _ = run("cooling")
    rise = [f["temperature"] - h["temperature"] for h, f in zip(healthy, faulty, strict=True)]
    assert rise[FAULT_AT + 10] == pytest.approx(0.5, abs=0.011)
    assert rise[FAULT_AT + 300] == pytest.approx(15, abs=0.011)
    first_above_band = next(s for s, r in enumerate(faulty) if r["temperature"] > 40)
    assert first_above_band - FAULT_AT > 20


def test_a_spike_lasts_three_metrics_and_labels_exactly_those(
    healthy: list[dict[str, float]],
) -> None:
    faulty, labels = run("spike")
    assert changed_seconds(healthy, faulty) == [FAULT_AT, FAULT_AT + 1, FAULT_AT + 2]
    for second in range(FAULT_AT, FAULT_AT + 3):
        ratio = faulty[second]["power"] / healthy[second]["power"]
        assert 1.59 <= ratio <= 1.91
    assert labels.ended == [("spike", FAULT_AT * NS, (FAULT_AT + 3) * NS)]


def test_a_stuck_sensor_repeats_the_last_value_before_the_fault(
    healthy: list[dict[str, float]],
) -> None:
    faulty, _ = run("stuck")
    frozen = {r["temperature"] for r in faulty[FAULT_AT : FAULT_AT + FAULT_FOR]}
    assert frozen == {healthy[FAULT_AT - 1]["temperature"]}
    assert faulty[FAULT_AT + FAULT_FOR] == healthy[FAULT_AT + FAULT_FOR]


def test_decoupled_power_no_longer_follows_load() -> None:
    faulty, _ = run("decoupling")
    window = faulty[FAULT_AT : FAULT_AT + FAULT_FOR]
    assert all(200 <= r["power"] <= 204 for r in window)
    loads = [r["load"] for r in window]
    assert max(loads) - min(loads) >= 10  # load kept walking
    assert abs(statistics.correlation(loads, [r["power"] for r in window])) < 0.3


def test_overload_drives_load_to_200_and_recovers_after() -> None:
    faulty, labels = run("overload")
    window = faulty[FAULT_AT : FAULT_AT + FAULT_FOR]
    assert max(r["load"] for r in window) == 200
    assert window[60]["power"] >= 400 and window[60]["vibration"] >= 400
    after = faulty[FAULT_AT + FAULT_FOR + 60 :]
    assert all(r["load"] <= 99 and r["power"] <= 220 for r in after)
    assert labels.ended == [("overload", FAULT_AT * NS, (FAULT_AT + FAULT_FOR) * NS)]


def test_a_fault_on_one_machine_leaves_the_others_untouched() -> None:
    def machine2(schedule: list[ScheduledFault]) -> list[str]:
        simulation = Simulation(2, 5, 0, 1.0, LabelLog(None), schedule)
        return [
            str(reading)
            for second in range(300)
            for machine, reading in simulation.tick(second * NS)
            if machine.machine_id == "machine2"
        ]

    broken = [ScheduledFault("machine1", kind, 10, 100) for kind in FAULTS]
    assert machine2(broken) == machine2([])

"""The fleet: machines, their clock, the fault schedule and the labels, behind one lock.

The run loop calls :meth:`Simulation.tick` once per interval; the panel's threads call
:meth:`Simulation.set_fault` and :meth:`Simulation.snapshot` in between. A fault window is
half-open, ``[start, end)`` in metric time: a fault switched on between two ticks starts with the
next one, so the label covers exactly the metrics the fault changed.

>>> import io
>>> from simulator.labels import LabelLog, parse_labels
>>> labels = io.StringIO()
>>> simulation = Simulation(
...     machines=2, seed=1, start_ns=0, rate=1.0, labels=LabelLog(labels),
...     schedule=[ScheduledFault("machine2", "spike", at_s=3)])
>>> for second in range(10):
...     _ = simulation.tick(second * 1_000_000_000)
>>> [(label.machine, label.kind, label.start_ns, label.end_ns) for label in
...  parse_labels(labels.getvalue())]
[('machine2', 'spike', 3000000000, 6000000000)]
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from simulator.faults import FAULTS
from simulator.labels import LabelLog, iso_time
from simulator.machine import Machine
from simulator.model import Reading
from simulator.scenario import ScenarioError, ScheduledFault

__all__ = ["PROVIDERS", "Simulation", "Switch"]

PROVIDERS = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
)
"""Provider names; the simulator picks one at each start, as the seed did."""


@dataclass(frozen=True, order=True)
class Switch:
    """A scheduled change: at ``time_ns``, switch ``kind`` on ``machine`` on or off."""

    time_ns: int
    active: bool
    machine: str
    kind: str


def _barcode(rng: random.Random) -> str:
    """An EAN-13 number with a valid check digit."""
    digits = [rng.randrange(10) for _ in range(12)]
    check = (10 - sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10) % 10
    return "".join(map(str, digits)) + str(check)


class Simulation:
    """Machines that step together, with faults switched by schedule, API or panel."""

    def __init__(
        self,
        machines: int,
        seed: int,
        start_ns: int,
        rate: float,
        labels: LabelLog,
        schedule: Sequence[ScheduledFault] = (),
    ) -> None:
        rng = random.Random(seed)
        provider = rng.choice(PROVIDERS)
        self.machines = {
            f"machine{number}": Machine(
                f"machine{number}", provider, _barcode(rng), seed=rng.getrandbits(64)
            )
            for number in range(1, machines + 1)
        }
        self.start_ns = start_ns
        self.interval_ns = round(1e9 / rate)
        self._labels = labels
        self._open_labels: dict[tuple[str, str], int] = {}
        self._lock = threading.RLock()
        self._last_tick_ns: int | None = None
        self._pending = sorted(self._switches(schedule))

    def _switches(self, schedule: Sequence[ScheduledFault]) -> list[Switch]:
        switches = []
        for index, fault in enumerate(schedule):
            if fault.machine not in self.machines:
                raise ScenarioError(
                    f"faults[{index}].machine: {fault.machine} is not simulated "
                    f"(machines are machine1 to machine{len(self.machines)})"
                )
            start_ns = self.start_ns + round(fault.at_s * 1e9)
            switches.append(Switch(start_ns, True, fault.machine, fault.kind))
            if fault.for_s is not None:
                end_ns = start_ns + round(fault.for_s * 1e9)
                # Stops sort before starts at the same time: back-to-back windows stay apart.
                switches.append(Switch(end_ns, False, fault.machine, fault.kind))
        return switches

    @property
    def next_tick_ns(self) -> int:
        """The simulated time of the next metric: where a switch made now takes effect."""
        with self._lock:
            if self._last_tick_ns is None:
                return self.start_ns
            return self._last_tick_ns + self.interval_ns

    def set_fault(self, machine_id: str, kind: str, active: bool, source: str) -> bool:
        """Switch a fault from outside the schedule; True when that changed anything.

        Raises KeyError for an unknown machine or fault kind.
        """
        if kind not in FAULTS:
            raise KeyError(kind)
        machine = self.machines[machine_id]
        with self._lock:
            return self._switch(machine, kind, active, self.next_tick_ns, source)

    def _switch(self, machine: Machine, kind: str, active: bool, time_ns: int, source: str) -> bool:
        key = (machine.machine_id, kind)
        if active:
            if not machine.start_fault(kind, time_ns):
                return False
            field = FAULTS[kind].field
            self._open_labels[key] = self._labels.start(
                machine.machine_id, kind, field, time_ns, source
            )
            return True
        if not machine.stop_fault(kind):
            return False
        self._labels.end(self._open_labels.pop(key), time_ns)
        return True

    def tick(self, time_ns: int) -> list[tuple[Machine, Reading]]:
        """Every machine's reading at ``time_ns``, after the switches due by then."""
        with self._lock:
            while self._pending and self._pending[0].time_ns <= time_ns:
                switch = self._pending.pop(0)
                machine = self.machines[switch.machine]
                self._switch(machine, switch.kind, switch.active, switch.time_ns, "scenario")
            readings = [(machine, machine.step(time_ns)) for machine in self.machines.values()]
            self._last_tick_ns = time_ns
            for machine, _ in readings:
                for kind in machine.expired_faults():
                    self._switch(machine, kind, False, time_ns + self.interval_ns, "expired")
            return readings

    def close(self) -> None:
        """End every fault still running, one interval after the last metric."""
        with self._lock:
            end_ns = self.next_tick_ns
            for machine in self.machines.values():
                for kind in list(machine.faults):
                    self._switch(machine, kind, False, end_ns, "end of run")

    def snapshot(self) -> dict[str, Any]:
        """What the panel shows: each machine's identity, last values and running faults."""
        with self._lock:
            return {
                "time": None if self._last_tick_ns is None else iso_time(self._last_tick_ns),
                "machines": [
                    {
                        "id": machine.machine_id,
                        "provider": machine.provider,
                        "barcode": machine.barcode,
                        "state": "faulty" if machine.faults else "normal",
                        "faults": sorted(machine.faults),
                        "values": None if machine.last is None else machine.last.fields(),
                    }
                    for machine in self.machines.values()
                ],
            }

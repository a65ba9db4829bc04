"""One simulated machine: its identity, its load walk, the faults it suffers right now.

Each machine draws from its own random generators, one for its healthy behaviour and one for its
faults, so switching a fault leaves every other machine's data, and this machine's healthy
readings, exactly as they would have been: a fault's effect is the difference from the same run
without it, and a run with the same seed and the same fault schedule is the same run.

>>> machine = Machine("machine1", provider="Acme", barcode="4006381333931", seed=7)
>>> first = machine.step(0)
>>> 50 <= first.load <= 99
True
>>> machine.start_fault("bearing", 1_000_000_000)
True
>>> machine.step(61_000_000_000).vibration > first.vibration + 20
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from simulator.faults import FAULTS
from simulator.model import LOAD_STEP_SECONDS, Reading, healthy_reading, next_load

__all__ = ["ActiveFault", "Machine"]

_NS = 1_000_000_000


@dataclass
class ActiveFault:
    """A fault in progress on one machine."""

    kind: str
    started_ns: int
    samples_left: int = 0
    """For faults that end by themselves: metrics still to be affected (0: no limit)."""


class Machine:
    """A machine's state between two metrics."""

    def __init__(self, machine_id: str, provider: str, barcode: str, seed: int) -> None:
        self.machine_id = machine_id
        self.provider = provider
        self.barcode = barcode
        self._rng = random.Random(seed)
        self._fault_rng = random.Random(seed + 1)
        self.load = self._rng.uniform(60.0, 90.0)
        self.faults: dict[str, ActiveFault] = {}
        self.last: Reading | None = None
        self.last_time_ns: int | None = None
        self._load_step_due_ns: int | None = None

    def start_fault(self, kind: str, time_ns: int) -> bool:
        """Start ``kind`` at ``time_ns``; False when it is running already."""
        if kind in self.faults:
            return False
        self.faults[kind] = ActiveFault(kind, time_ns, FAULTS[kind].samples)
        return True

    def stop_fault(self, kind: str) -> bool:
        """Stop ``kind``; False when it was not running."""
        return self.faults.pop(kind, None) is not None

    def step(self, time_ns: int) -> Reading:
        """The reading at ``time_ns`` (which only moves forward)."""
        if self._load_step_due_ns is None:
            self._load_step_due_ns = time_ns
        while time_ns >= self._load_step_due_ns:
            self.load = next_load(self.load, "overload" in self.faults, self._rng)
            self._load_step_due_ns += int(LOAD_STEP_SECONDS * _NS)
        reading = healthy_reading(self.load, self._rng)
        previous = self.last or reading
        for active in self.faults.values():
            elapsed = (time_ns - active.started_ns) / _NS
            reading = FAULTS[active.kind].apply(reading, elapsed, previous, self._fault_rng)
            if active.samples_left:
                active.samples_left -= 1
        self.last, self.last_time_ns = reading, time_ns
        return reading

    def expired_faults(self) -> list[str]:
        """Faults that ended by themselves with the last step (a spike's last sample)."""
        return [
            kind
            for kind, active in self.faults.items()
            if FAULTS[kind].samples and active.samples_left == 0
        ]

"""The fault kinds a simulated machine can suffer, each named and switchable on its own.

Every fault changes the readings a healthy machine would have produced; none needs to know about
another, so several can run at once. Most of them are built to slip past a plain per-field
threshold, or to be caught by one late: that is what the detector is measured against.

>>> from simulator.model import Reading
>>> healthy = Reading(load=70.0, power=210.0, temperature=37.0, vibration=85.0)
>>> FAULTS["bearing"].apply(healthy, 60.0, healthy, random.Random(1)).vibration > 110
True
>>> FAULTS["bearing"].apply(healthy, 60.0, healthy, random.Random(1)).load
70.0
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from simulator.model import Reading

__all__ = ["FAULTS", "Fault"]


@dataclass(frozen=True)
class Fault:
    """One fault kind: what it does to a reading, ``elapsed`` seconds after it started.

    ``field`` is the reading the fault shows up in first: the one an explanation should name.
    ``samples`` ends the fault by itself after that many metrics (0: it lasts until switched off).
    """

    kind: str
    field: str
    description: str
    samples: int = 0

    def apply(
        self, reading: Reading, elapsed: float, previous: Reading, rng: random.Random
    ) -> Reading:
        return reading


@dataclass(frozen=True)
class Overload(Fault):
    """The seed demo's fault: load climbs by 20 every 5 s up to 200 and everything follows.

    The load itself is driven by the machine (it has to keep walking from where it is); here
    the readings only pass through.
    """


@dataclass(frozen=True)
class Bearing(Fault):
    """A worn bearing: vibration climbs over a minute to 35-50 above normal while load, power
    and temperature stay where they were."""

    def apply(
        self, reading: Reading, elapsed: float, previous: Reading, rng: random.Random
    ) -> Reading:
        rise = 15.0 + min(25.0, elapsed * 0.5) + rng.uniform(0.0, 10.0)
        return dataclasses.replace(reading, vibration=reading.vibration + rise)


@dataclass(frozen=True)
class Cooling(Fault):
    """A failing cooler: temperature drifts up by 3 degrees a minute, to at most 45 above
    normal. The first minutes stay inside the normal band."""

    def apply(
        self, reading: Reading, elapsed: float, previous: Reading, rng: random.Random
    ) -> Reading:
        drift = min(45.0, elapsed * 0.05)
        return dataclasses.replace(reading, temperature=reading.temperature + drift)


@dataclass(frozen=True)
class PowerSpike(Fault):
    """A short spike: power jumps to 1.6-1.9 times its value for three samples, then the fault
    ends by itself."""

    def apply(
        self, reading: Reading, elapsed: float, previous: Reading, rng: random.Random
    ) -> Reading:
        factor = rng.uniform(1.6, 1.9)
        return dataclasses.replace(reading, power=reading.power * factor)


@dataclass(frozen=True)
class StuckSensor(Fault):
    """A frozen sensor: the temperature reading repeats its last value, whatever the machine
    does. Every value it shows is a normal one."""

    def apply(
        self, reading: Reading, elapsed: float, previous: Reading, rng: random.Random
    ) -> Reading:
        return dataclasses.replace(reading, temperature=previous.temperature)


@dataclass(frozen=True)
class Decoupling(Fault):
    """Power stops following load: a slipping drive, its motor drawing idle power (200-204)
    whatever the load. Each field alone still looks normal; only at low load is the pair
    normal too."""

    def apply(
        self, reading: Reading, elapsed: float, previous: Reading, rng: random.Random
    ) -> Reading:
        return dataclasses.replace(reading, power=200.0 + rng.uniform(0.0, 4.0))


FAULTS: dict[str, Fault] = {
    fault.kind: fault
    for fault in (
        Overload(
            "overload",
            "load,power,temperature,vibration",
            "load climbs to 200 and drags every reading up (the seed's)",
        ),
        Bearing("bearing", "vibration", "vibration rises while load stays normal"),
        Cooling("cooling", "temperature", "temperature drifts up slowly"),
        PowerSpike("spike", "power", "power jumps for a few samples", samples=3),
        StuckSensor("stuck", "temperature", "the temperature sensor freezes"),
        Decoupling("decoupling", "power", "power stops following load"),
    )
}
"""Every fault kind by name, in the order the panel shows them."""

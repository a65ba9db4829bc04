"""How a healthy machine behaves: the seed demo's machines, made a little more physical.

Load walks by +-5 every 5 s between 50 and 99. Power, temperature and vibration follow load
inside the seed's normal bands (power 200-220, temperature 35-40, vibration 80-90) instead of
jumping at random within them, so that a fault which breaks the relation between two readings
(power no longer following load) exists to be found. Above a load of 100, reached only in an
overload, the readings take the seed's overload steps.

>>> import random
>>> reading = healthy_reading(load=74.5, rng=random.Random(1))
>>> 200 <= reading.power <= 220 and 35 <= reading.temperature <= 40
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = [
    "FIELDS",
    "LOAD_STEP_SECONDS",
    "Reading",
    "healthy_reading",
    "next_load",
]

FIELDS = ("load", "power", "temperature", "vibration")
"""The readings every machine sends, in the order they are printed."""

LOAD_STEP_SECONDS = 5.0
"""Load changes this often (simulated seconds), as in the seed."""


@dataclass(frozen=True)
class Reading:
    """One metric's worth of sensor values."""

    load: float
    power: float
    temperature: float
    vibration: float

    def fields(self) -> dict[str, float]:
        """The values as a sensor reports them: two decimals, in ``FIELDS`` order."""
        return {name: round(getattr(self, name), 2) for name in FIELDS}


def healthy_reading(load: float, rng: random.Random) -> Reading:
    """Power, temperature and vibration for ``load``, with noise."""
    if load < 100:
        # Position of the load in its normal range drives the other readings within theirs;
        # the noise keeps each one spread over its band as in the seed.
        position = min(1.0, max(0.0, (load - 50.0) / 49.0))
        return Reading(
            load=load,
            power=200.0 + 16.0 * position + rng.uniform(0.0, 4.0),
            temperature=35.0 + 4.0 * position + rng.uniform(0.0, 1.0),
            vibration=80.0 + 8.0 * position + rng.uniform(0.0, 2.0),
        )
    if load < 150:
        return Reading(
            load=load,
            power=rng.uniform(300.0, 320.0),
            temperature=rng.uniform(80.0, 100.0),
            vibration=rng.uniform(300.0, 400.0),
        )
    return Reading(
        load=load,
        power=rng.uniform(400.0, 500.0),
        temperature=rng.uniform(100.0, 120.0),
        vibration=rng.uniform(400.0, 600.0),
    )


def next_load(load: float, overloaded: bool, rng: random.Random) -> float:
    """The load after one 5 s step: a walk in 50-99, a climb to 200 in an overload, and a
    descent back into the normal range after one.

    >>> next_load(190.0, overloaded=True, rng=random.Random(1))
    200.0
    >>> next_load(150.0, overloaded=False, rng=random.Random(1))
    130.0
    """
    if overloaded:
        return min(200.0, load + 20.0)
    if load > 99.0:
        return max(75.0, load - 20.0)
    return min(99.0, max(50.0, load + rng.choice((-5.0, 5.0))))

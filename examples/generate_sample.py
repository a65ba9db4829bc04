"""Write machine metrics as Telegraf would hand them to hst-processor, with one fault.

The machines behave like the seed demo's: load walks by +-5 every 5 s between 50 and 99;
power, temperature and vibration follow load in steps, with noise. During the fault window one
machine's load climbs by 20 every 5 s up to 200, dragging the other readings with it.

    python examples/generate_sample.py --minutes 60 --fault machine2 --fault-start 30 \\
        --fault-minutes 5 > sample.lp

Standard library only, so the demo runs anywhere Python does.
"""

from __future__ import annotations

import argparse
import random
import sys

START_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def readings(load: float, rng: random.Random) -> tuple[float, float, float]:
    """Power, temperature and vibration for a load, as the seed's machines step them."""
    if load < 100:
        return rng.uniform(200, 220), rng.uniform(35, 40), rng.uniform(80, 90)
    if load < 150:
        return rng.uniform(300, 320), rng.uniform(80, 100), rng.uniform(300, 400)
    return rng.uniform(400, 500), rng.uniform(100, 120), rng.uniform(400, 600)


def generate(
    machines: int, minutes: float, fault: str, fault_start: float, fault_minutes: float, seed: int
) -> list[str]:
    """Line protocol for ``machines`` machines over ``minutes``; ``fault`` names the machine
    that breaks (several: comma-separated)."""
    faulty_machines = set(fault.split(","))
    rng = random.Random(seed)
    names = [f"machine{i + 1}" for i in range(machines)]
    load = {name: rng.uniform(60, 90) for name in names}
    lines = []
    for second in range(int(minutes * 60)):
        faulty = fault_start * 60 <= second < (fault_start + fault_minutes) * 60
        for name in names:
            if second % 5 == 0:
                if name in faulty_machines and faulty:
                    load[name] = min(200.0, load[name] + 20)
                elif load[name] > 99:
                    load[name] = max(75.0, load[name] - 20)  # recovery after a fault
                else:
                    load[name] = min(99.0, max(50.0, load[name] + rng.choice((-5, 5))))
            power, temperature, vibration = readings(load[name], rng)
            timestamp = START_NS + second * 1_000_000_000
            lines.append(
                f"machine_data,machineID={name},provider=Acme "
                f"load={round(load[name], 2)},power={round(power, 2)},"
                f"temperature={round(temperature, 2)},vibration={round(vibration, 2)} {timestamp}"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=40)
    parser.add_argument(
        "--fault", default="machine2", help="machine that breaks (several: comma-separated)"
    )
    parser.add_argument("--fault-start", type=float, default=25, help="minute the fault starts")
    parser.add_argument("--fault-minutes", type=float, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    lines = generate(
        args.machines, args.minutes, args.fault, args.fault_start, args.fault_minutes, args.seed
    )
    sys.stdout.write("".join(line + "\n" for line in lines))


if __name__ == "__main__":
    main()

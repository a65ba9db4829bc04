"""The run loop: tick the fleet on a simulated clock, hand every tick's readings to a sink.

The clock runs ``speed`` simulated seconds per real second (0: as fast as the sink takes them),
so six simulated hours of labelled data take a few seconds, and a live demo runs at 1.
"""

from __future__ import annotations

import io
import sys
import threading
import time
from collections.abc import Sequence
from typing import Protocol, TextIO

from simulator.labels import LabelLog
from simulator.machine import Machine
from simulator.model import Reading
from simulator.payload import line_protocol
from simulator.scenario import ScheduledFault
from simulator.simulation import Simulation

__all__ = ["LineProtocolSink", "Sink", "run", "simulate"]


class Sink(Protocol):
    """Where a tick's readings go: MQTT, or line protocol on stdout."""

    def emit(self, time_ns: int, readings: list[tuple[Machine, Reading]]) -> None: ...

    def close(self) -> None: ...


class LineProtocolSink:
    """Prints each reading as the line Telegraf would hand the processor."""

    def __init__(self, stream: TextIO = sys.stdout, measurement: str = "machine_data") -> None:
        self._stream = stream
        self._measurement = measurement

    def emit(self, time_ns: int, readings: list[tuple[Machine, Reading]]) -> None:
        self._stream.write(
            "".join(
                line_protocol(
                    self._measurement,
                    machine.machine_id,
                    machine.provider,
                    machine.barcode,
                    reading,
                    time_ns,
                )
                + "\n"
                for machine, reading in readings
            )
        )
        # A live reader (the processor, a terminal) sees each tick as it happens.
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()


def run(
    simulation: Simulation,
    sink: Sink,
    *,
    speed: float,
    duration_ns: int | None,
    stop: threading.Event,
) -> int:
    """Tick until ``duration_ns`` of simulated time has passed or ``stop`` is set; returns the
    number of ticks."""
    wall_start = time.monotonic()
    ticks = 0
    while not stop.is_set():
        offset_ns = ticks * simulation.interval_ns
        if duration_ns is not None and offset_ns >= duration_ns:
            break
        if speed > 0:
            delay = wall_start + offset_ns / 1e9 / speed - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
        time_ns = simulation.start_ns + offset_ns
        sink.emit(time_ns, simulation.tick(time_ns))
        ticks += 1
    return ticks


def simulate(
    machines: int,
    seed: int,
    start_ns: int,
    duration_s: float,
    faults: Sequence[ScheduledFault] = (),
    rate: float = 1.0,
) -> tuple[str, str]:
    """A whole run in memory, as fast as it computes: its line protocol and its labels (JSON
    lines), exactly what ``python -m simulator --stdout --speed 0`` would write.

    >>> text, labels = simulate(2, seed=1, start_ns=0, duration_s=3,
    ...                         faults=[ScheduledFault("machine1", "spike", 1)])
    >>> len(text.splitlines()), labels.count("\\n")
    (6, 2)
    """
    metrics, labels = io.StringIO(), io.StringIO()
    simulation = Simulation(machines, seed, start_ns, rate, LabelLog(labels), faults)
    run(
        simulation,
        LineProtocolSink(metrics),
        speed=0,
        duration_ns=round(duration_s * 1e9),
        stop=threading.Event(),
    )
    simulation.close()
    return metrics.getvalue(), labels.getvalue()

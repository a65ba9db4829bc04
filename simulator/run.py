"""The run loop: tick the fleet on a simulated clock, hand every tick's readings to a sink.

The clock runs ``speed`` simulated seconds per real second (0: as fast as the sink takes them),
so six simulated hours of labelled data take a few seconds, and a live demo runs at 1.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Protocol, TextIO

from simulator.machine import Machine
from simulator.model import Reading
from simulator.payload import line_protocol
from simulator.simulation import Simulation

__all__ = ["LineProtocolSink", "Sink", "run"]


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

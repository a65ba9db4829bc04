"""Fixtures shared by the simulator's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mosquitto_broker import Broker, free_port, test_config


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto with the shipped config, on a free loopback port."""
    port = free_port()
    running = Broker(test_config(tmp_path, port), port).start()
    yield running
    running.stop()

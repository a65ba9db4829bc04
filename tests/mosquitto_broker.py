"""A real Mosquitto broker for the tests, started from the repository's own mosquitto.conf.

The shipped config listens on 1883 on every interface; the tests move the listener to a free
port on 127.0.0.1 and keep every other line, so the file users run is the file tested.
Mosquitto missing is a failure, not a skip: ``.ci/run`` installs it (Debian's ``mosquitto``).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CONFIG = ROOT / "mosquitto" / "mosquitto.conf"


def mosquitto_binary(name: str = "mosquitto") -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        pytest.fail(f"{name} is not installed: `apt-get install mosquitto` (.ci/run does)")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def test_config(directory: Path, port: int, extra: str = "") -> Path:
    """The shipped config with its listener on ``port`` (loopback only)."""
    text = SHIPPED_CONFIG.read_text()
    assert "\nlistener 1883\n" in text
    path = directory / "mosquitto.conf"
    path.write_text(text.replace("\nlistener 1883\n", f"\nlistener {port} 127.0.0.1\n") + extra)
    return path


test_config.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@dataclass
class Broker:
    config: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.process.kill()
            _, errors = self.process.communicate()
            pytest.fail(f"mosquitto did not start: {errors.decode(errors='replace')}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@dataclass
class Message:
    topic: str
    payload: dict[str, Any]
    arrived: float


@dataclass
class Subscriber:
    """Collects every message on ``topic`` from the broker on ``port``."""

    port: int
    topic: str = "machine/#"
    username: str | None = None
    password: str | None = None
    messages: list[Message] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _subscribed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        if self.username:
            self._client.username_pw_set(self.username, self.password)
        self._client.on_connect = lambda client, *_: client.subscribe(self.topic)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(
                Message(message.topic, json.loads(message.payload), time.monotonic())
            )

    def start(self) -> Subscriber:
        self._client.connect("127.0.0.1", self.port)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            self.stop()
            raise TimeoutError("no subscription acknowledged")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def received(self, since: float = 0.0, topic: str | None = None) -> list[Message]:
        with self._lock:
            return [
                m
                for m in self.messages
                if m.arrived >= since and (topic is None or m.topic == topic)
            ]

    def wait_for(self, count: int, since: float = 0.0, topic: str | None = None,
                 timeout: float = 15.0) -> list[Message]:  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.received(since, topic)
            if len(messages) >= count:
                return messages
            time.sleep(0.05)
        raise TimeoutError(f"{len(self.received(since, topic))} of {count} messages arrived")

"""The simulator against a real Mosquitto broker: topics, payloads, rate, faults, restarts, auth."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.labels import read_labels
from tests.mosquitto_broker import ROOT, Broker, Subscriber, free_port, test_config, wait_for_port

from .running import SimulatorProcess

FIELDS = {"load", "power", "temperature", "vibration"}


@pytest.fixture
def subscriber(broker: Broker) -> Iterator[Subscriber]:
    listening = Subscriber(broker.port).start()
    yield listening
    listening.stop()


def simulator(broker: Broker, *args: str, env: dict[str, str] | None = None) -> SimulatorProcess:
    return SimulatorProcess(["--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port), *args],
                            env=env)  # fmt: skip


def test_each_machine_publishes_flat_json_on_its_topic_at_the_rate(
    broker: Broker, subscriber: Subscriber
) -> None:
    process = simulator(broker, "--machines", "3", "--rate", "10")
    try:
        process.wait_for_log("connected to MQTT broker")
        subscriber.wait_for(30)  # running
        since = time.monotonic()
        time.sleep(2.0)
        window = subscriber.received(since)
    finally:
        assert process.stop() == 0
    # A normal stop disconnects on purpose: it is not an outage.
    assert not [line for line in process.log if "lost the MQTT broker" in line]
    topics = {m.topic for m in window}
    assert topics == {"machine/machine1", "machine/machine2", "machine/machine3"}
    for topic in topics:
        count = sum(m.topic == topic for m in window)
        assert 14 <= count <= 26, f"{topic}: {count} messages in 2 s at 10/s"
    for message in window:
        payload = message.payload
        assert set(payload) == {"machineID", "provider", "barcode", "time", *FIELDS}
        assert message.topic == f"machine/{payload['machineID']}"
        assert all(isinstance(payload[name], float) for name in FIELDS)
        assert len(payload["barcode"]) == 13 and payload["barcode"].isdigit()
    times = [m.payload["time"] for m in window if m.topic == "machine/machine1"]
    assert {b - a for a, b in itertools.pairwise(times)} == {100}  # milliseconds, every 0.1 s


def test_the_seed_payload_nests_readings_in_a_data_array(
    broker: Broker, subscriber: Subscriber
) -> None:
    process = simulator(broker, "--machines", "1", "--rate", "5", "--payload", "seed")
    try:
        (message, *_) = subscriber.wait_for(3)
    finally:
        process.stop()
    data = message.payload["data"]
    assert [list(item) for item in data] == [["load"], ["power"], ["temperature"], ["vibration"]]
    assert message.payload["machineID"] == "machine1"


def test_a_fault_switched_through_the_api_changes_the_data_and_is_labelled(
    broker: Broker, subscriber: Subscriber, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.jsonl"
    process = simulator(broker, "--machines", "2", "--rate", "10", "--labels", str(labels))
    try:
        before = subscriber.wait_for(20, topic="machine/machine2")
        answer = process.api("PUT", "/api/machines/machine2/faults/bearing", {"active": True})
        assert answer["state"] == "faulty" and answer["faults"] == ["bearing"]
        switched = time.monotonic()
        during = subscriber.wait_for(20, since=switched, topic="machine/machine2")
        untouched = subscriber.received(since=switched, topic="machine/machine1")
        (label,) = read_labels(labels)
        assert (label.machine, label.kind, label.field, label.end_ns) == (
            "machine2", "bearing", "vibration", None,
        )  # fmt: skip
        process.api("PUT", "/api/machines/machine2/faults/bearing", {"active": False})
        assert process.api("GET", "/api/machines")["machines"][1]["state"] == "normal"
    finally:
        assert process.stop() == 0
    assert max(m.payload["vibration"] for m in before) <= 90
    affected = [m for m in during if m.payload["time"] * 1_000_000 >= label.start_ns]
    assert affected and all(m.payload["vibration"] > 94 for m in affected)
    # The label starts exactly at the first metric the fault changed.
    unaffected = [m for m in during if m.payload["time"] * 1_000_000 < label.start_ns]
    assert all(m.payload["vibration"] <= 90 for m in unaffected)
    assert max(m.payload["vibration"] for m in untouched) <= 90
    (closed,) = read_labels(labels)
    assert closed.end_ns is not None and closed.end_ns > closed.start_ns


def test_a_broker_restart_is_survived_and_reported(broker: Broker, tmp_path: Path) -> None:
    process = simulator(broker, "--machines", "1", "--rate", "10")
    try:
        process.wait_for_log("connected to MQTT broker")
        broker.stop()
        process.wait_for_log("lost the MQTT broker")
        time.sleep(1.5)
        assert process.process.poll() is None, "the simulator died with the broker"
        status = process.api("GET", "/api/machines")["mqtt"]
        assert status["connected"] is False and status["outages"] == 1
        broker.start()
        back = Subscriber(broker.port).start()
        try:
            back.wait_for(10, timeout=40)  # paho's backoff is at most 30 s
        finally:
            back.stop()
        status = process.api("GET", "/api/machines")["mqtt"]
        assert status["connected"] is True and status["dropped"] > 0
    finally:
        assert process.stop() == 0


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """Where the entrypoint writes the password file: Mosquitto reads it after dropping root,
    so unlike pytest's private tmp_path it must be reachable by the mosquitto user."""
    directory = Path(tempfile.mkdtemp(prefix="mosquitto-run-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_with_credentials_the_broker_refuses_anonymous_clients(
    tmp_path: Path, run_dir: Path
) -> None:
    """mosquitto/entrypoint.sh with MQTT_USERNAME and MQTT_PASSWORD: a password file is made at
    start, anonymous clients are refused, the simulator gets in with the same variables."""
    port = free_port()
    config = test_config(tmp_path, port)
    secrets = {"MQTT_USERNAME": "sim", "MQTT_PASSWORD": "correct horse battery staple"}
    env = {
        **os.environ,
        **secrets,
        "MOSQUITTO_CONFIG": str(config),
        "MOSQUITTO_RUN_DIR": str(run_dir),
        "PATH": os.environ.get("PATH", "") + ":/usr/sbin",
    }
    entrypoint = subprocess.Popen(
        ["sh", str(ROOT / "mosquitto" / "entrypoint.sh")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    broker = Broker(config, port, entrypoint)
    try:
        try:
            wait_for_port(port)
        except TimeoutError:
            entrypoint.kill()
            pytest.fail(entrypoint.communicate()[1].decode(errors="replace"))
        with pytest.raises(TimeoutError):
            Subscriber(port).start()  # refused: never subscribed
        authorised = Subscriber(port, username="sim", password=secrets["MQTT_PASSWORD"]).start()
        process = simulator(broker, "--machines", "1", "--rate", "10", env=secrets)
        try:
            authorised.wait_for(5)
        finally:
            assert process.stop() == 0
            authorised.stop()
        assert not any(secrets["MQTT_PASSWORD"] in line for line in process.log)
    finally:
        broker.stop()
    assert "anonymous access off, user sim required" in entrypoint.stderr.read().decode()  # type: ignore[union-attr]


def test_the_entrypoint_without_credentials_runs_the_shipped_config_unchanged(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = test_config(tmp_path, port)
    env = {**os.environ, "MQTT_USERNAME": "", "MOSQUITTO_CONFIG": str(config),
           "PATH": os.environ.get("PATH", "") + ":/usr/sbin"}  # fmt: skip
    entrypoint = subprocess.Popen(["sh", str(ROOT / "mosquitto" / "entrypoint.sh")], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    broker = Broker(config, port, entrypoint)
    try:
        wait_for_port(port)
        anonymous = Subscriber(port).start()
        anonymous.stop()
    finally:
        broker.stop()
    assert not (tmp_path / "run").exists()

"""The scale-out stack (deploy/scale-out/): NATS partitions the machines, one agent per partition.

What runs for real: nats-server (2.9, from the shipped nats.conf with only its listen addresses
and store directory moved), the simulator's own MQTT publisher (simulator.mqtt.MqttSink), a
NATS client reading each partition as the agents do (nats-py, standing in for Telegraf's
inputs.nats_consumer), the hst-processor command from the agents' telegraf.conf and
``hst-processor repartition``. What stands in: Telegraf's JSON parser (tests/telegraf_json.py)
with the nats_consumer settings of deploy/scale-out/telegraf.conf. What does not run here:
Telegraf itself, Docker and the containers (the compose file is parsed and cross-checked).

The claims: every message the simulator publishes arrives, each machine's in exactly one
partition, the one ``hst_processor.partition.nats_partition`` computes (so our FNV-1a is the
server's); three processors fed their partitions score every metric exactly as one processor
fed them all; and after stopping the three and re-partitioning their state files into two,
every machine resumes byte for byte.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml

from hst_processor.lineproto import parse_metric
from hst_processor.partition import nats_partition
from simulator.labels import LabelLog
from simulator.machine import Machine
from simulator.model import Reading
from simulator.mqtt import MqttSink
from simulator.payload import flat_payload
from simulator.run import run
from simulator.scenario import ScheduledFault
from simulator.simulation import Simulation
from tests.mosquitto_broker import free_port, wait_for_port
from tests.stack_files import (
    REFERENCE,
    assert_secrets_from_the_environment,
    parse_telegraf,
    read_compose,
    read_telegraf,
)
from tests.telegraf_json import telegraf_line

ROOT = Path(__file__).resolve().parent.parent
SCALE_OUT = ROOT / "deploy" / "scale-out"
SHIPPED_NATS = SCALE_OUT / "nats.conf"
MAPPING = re.compile(r'^\s*"([^"]+)"\s*:\s*"([^"]+)"\s*$', re.MULTILINE)
PARTITION_DEST = re.compile(
    r"^machine\.\{\{\s*partition\(\s*(\d+)\s*,\s*1\s*\)\s*\}\}\.\{\{\s*wildcard\(\s*1\s*\)\s*\}\}$"
)
PARTITION_REFERENCE = re.compile(r"\$\{PARTITION(?::\?[^}]*)?\}")

# The stream the tests publish: 8 machines, 800 simulated seconds at one metric a second (past
# the demo config's 369-metric warm-up), with faults before and after the cut where (d) stops
# the agents; machine5's episode is open across it.
MACHINES = 8
SECONDS = 800
CUT_S = 500
START_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
FAULTS = (
    ScheduledFault("machine5", "bearing", 450, 100),
    ScheduledFault("machine3", "overload", 620, 60),
)
SPEED = 200  # simulated seconds per real second: 4 s of publishing, 32,000 messages a minute


# --- the files ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return read_compose(SCALE_OUT / "docker-compose.yml")


@pytest.fixture(scope="module")
def main_telegraf() -> dict[str, Any]:
    return read_telegraf()


def agents(compose: dict[str, Any]) -> dict[int, str]:
    """The Telegraf agents of the compose file, by the partition each reads."""
    found: dict[int, str] = {}
    for name, service in compose["services"].items():
        partition = (service.get("environment") or {}).get("PARTITION")
        if partition is not None:
            assert int(partition) not in found, f"{name} reads partition {partition} again"
            found[int(partition)] = name
    return found


def agent_telegraf(partition: int) -> dict[str, Any]:
    """deploy/scale-out/telegraf.conf as agent ``partition`` reads it: ${PARTITION} (with or
    without its error message) substituted, as Telegraf does with its environment."""
    text = (SCALE_OUT / "telegraf.conf").read_text()
    assert PARTITION_REFERENCE.search(text)
    return parse_telegraf(PARTITION_REFERENCE.sub(str(partition), text))


def nats_mapping(text: str) -> tuple[str, int]:
    """The one subject mapping of nats.conf: its source and the partition count N of
    machine.{{partition(N,1)}}.{{wildcard(1)}}."""
    block = re.search(r"^mappings\s*=\s*\{(.*?)^\}", text, re.MULTILINE | re.DOTALL)
    assert block, "nats.conf has no mappings block"
    ((source, destination),) = MAPPING.findall(block.group(1))
    partitions = PARTITION_DEST.match(destination)
    assert partitions, f"{destination} is not machine.{{{{partition(N,1)}}}}.{{{{wildcard(1)}}}}"
    return source, int(partitions.group(1))


def bind_mount(compose: dict[str, Any], service: str, path: str) -> Path | None:
    """The repository file that ``service`` mounts at ``path`` (None: not a bind mount)."""
    for volume in compose["services"][service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if target == path and source.startswith("."):
            return (SCALE_OUT / source).resolve()
    return None


# --- (a) the configs, checked against each other ---------------------------------------------


def test_nats_maps_each_machine_into_one_of_as_many_partitions_as_there_are_agents(
    compose: dict[str, Any],
) -> None:
    text = SHIPPED_NATS.read_text()
    source, partitions = nats_mapping(text)
    # The simulator publishes MQTT topic <prefix>/<machineID>, which NATS sees as the subject
    # <prefix>.<machineID>: the mapping must take exactly that.
    prefix = inspect.signature(MqttSink).parameters["topic_prefix"].default
    assert source == f"{prefix}.*"
    assert sorted(agents(compose)) == list(range(partitions)) and partitions == 3
    assert re.search(r"^server_name:\s*\S+", text, re.MULTILINE)  # JetStream wants one
    jetstream = re.search(r"^jetstream\s*\{(.*?)^\}", text, re.MULTILINE | re.DOTALL)
    assert jetstream and re.search(r'store_dir:\s*"/data/', jetstream.group(1))
    mqtt = re.search(r"^mqtt\s*\{(.*?)^\}", text, re.MULTILINE | re.DOTALL)
    assert mqtt and 'listen: "0.0.0.0:1883"' in mqtt.group(1)
    assert re.search(r'^listen: "0\.0\.0\.0:4222"$', text, re.MULTILINE)


def test_each_agent_reads_its_own_partition_and_keeps_its_own_state_file(
    compose: dict[str, Any],
) -> None:
    by_partition = agents(compose)
    _, partitions = nats_mapping(SHIPPED_NATS.read_text())
    assert sorted(by_partition) == list(range(partitions))
    state_files = set()
    for partition, service in by_partition.items():
        telegraf = agent_telegraf(partition)
        (consumer,) = telegraf["inputs"]["nats_consumer"]
        assert consumer["subjects"] == [f"machine.{partition}.>"]
        assert consumer["servers"] == ["nats://nats:4222"]
        (execd,) = telegraf["processors"]["execd"]
        command = execd["command"]
        state_file = command[command.index("--state-file") + 1]
        assert str(partition) in Path(state_file).name
        state_files.add(state_file)
        # The state directory is the shared volume, mounted alike in every agent.
        volumes = compose["services"][service]["volumes"]
        assert f"hst-state:{Path(state_file).parent}" in volumes
        assert compose["services"][service]["hostname"] == service
    assert len(state_files) == partitions


def test_an_agent_parses_scores_and_writes_as_the_demo_stack_does(
    main_telegraf: dict[str, Any],
) -> None:
    """The same JSON parsing as the demo stack's mqtt_consumer, the same processor command
    apart from the state file, the same output and agent settings."""
    (mqtt,) = main_telegraf["inputs"]["mqtt_consumer"]
    (main_execd,) = main_telegraf["processors"]["execd"]
    for partition in range(3):
        telegraf = agent_telegraf(partition)
        (consumer,) = telegraf["inputs"]["nats_consumer"]
        parsing = ("data_format", "tag_keys", "json_time_key", "json_time_format", "name_override")
        assert {key: consumer[key] for key in parsing} == {key: mqtt[key] for key in parsing}
        assert "machineID" in consumer["tag_keys"]
        # nats_consumer tags each metric with its subject; the machine is in the payload.
        assert consumer["tagexclude"] == ["subject"]
        # No queue group: two agents on one partition must not split its machines' metrics.
        assert consumer["queue_group"] == ""
        (execd,) = telegraf["processors"]["execd"]
        command, main_command = execd["command"], main_execd["command"]
        at = command.index("--state-file") + 1
        assert at == main_command.index("--state-file") + 1
        assert command[:at] + command[at + 1 :] == main_command[:at] + main_command[at + 1 :]
        assert {k: v for k, v in execd.items() if k != "command"} == {
            k: v for k, v in main_execd.items() if k != "command"
        }
        assert telegraf["outputs"] == main_telegraf["outputs"]
        assert telegraf["agent"] == main_telegraf["agent"]
        assert list(telegraf["processors"]) == ["execd"]


def test_compose_services_images_volumes_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    by_partition = agents(compose)
    assert set(services) == {
        "nats",
        "simulator",
        "influxdb3-token",
        "influxdb3",
        *by_partition.values(),
    }
    # NATS 2.9, the version Debian ships and the tests run; its config is the shipped file.
    nats_service = services["nats"]
    assert re.fullmatch(r"nats:2\.9(\.\d+)?-alpine", nats_service["image"])
    config_path = nats_service["command"][nats_service["command"].index("--config") + 1]
    assert bind_mount(compose, "nats", config_path) == SHIPPED_NATS
    store = re.search(r'store_dir:\s*"([^"]+)"', SHIPPED_NATS.read_text())
    assert store and any(
        v.startswith("nats-data:") and store.group(1).startswith(v.split(":")[1])
        for v in nats_service["volumes"]
    )
    http = re.search(r'^http: "0\.0\.0\.0:(\d+)"$', SHIPPED_NATS.read_text(), re.MULTILINE)
    health_url = f"http://127.0.0.1:{http.group(1)}/healthz" if http else None
    assert health_url in nats_service["healthcheck"]["test"]
    # The simulator publishes to NATS's MQTT listener (its default port, 1883).
    simulator = services["simulator"]
    assert "--mqtt-host=nats" in simulator["command"]
    assert not any(a.startswith("--mqtt-port") for a in simulator["command"])
    assert (SCALE_OUT / simulator["build"]["context"]).resolve() == ROOT
    assert simulator["build"]["dockerfile"] == "simulator/Dockerfile"
    assert simulator["depends_on"]["nats"]["condition"] == "service_healthy"
    # The agents: built from the repository's Dockerfile, the config and processor config
    # mounted from the repository, the state volume shared, started once NATS and InfluxDB are.
    for partition, name in by_partition.items():
        agent = services[name]
        assert (SCALE_OUT / agent["build"]["context"]).resolve() == ROOT
        assert agent["build"]["dockerfile"] == "Dockerfile"
        telegraf_conf = bind_mount(compose, name, "/etc/telegraf/telegraf.conf")
        assert telegraf_conf == SCALE_OUT / "telegraf.conf"
        (execd,) = agent_telegraf(partition)["processors"]["execd"]
        config = execd["command"][execd["command"].index("--config") + 1]
        assert bind_mount(compose, name, config) == ROOT / "hst-processor.yaml"
        assert "influxdb3-token:/var/lib/influxdb3-token:ro" in agent["volumes"]
        assert agent["depends_on"]["nats"]["condition"] == "service_healthy"
        assert agent["depends_on"]["influxdb3"]["condition"] == "service_healthy"
        assert agent["restart"] == "unless-stopped"
    # InfluxDB 3 and its token job exactly as in the demo stack, file paths apart.
    demo = read_compose()["services"]
    for name in ("influxdb3-token", "influxdb3"):
        ours = {k: v for k, v in services[name].items() if k != "volumes"}
        assert ours == {k: v for k, v in demo[name].items() if k != "volumes"}
        assert [v.replace("../../", "./") for v in services[name]["volumes"]] == demo[name][
            "volumes"
        ]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (SCALE_OUT / source).exists(), f"{name} mounts {source}, which is missing"
            else:
                assert source in compose["volumes"], f"volume {source} is not declared"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to the network"
    assert "ports" not in nats_service  # MQTT and NATS on the stack's network only


def test_no_secret_is_written_into_the_scale_out_files(compose: dict[str, Any]) -> None:
    assert_secrets_from_the_environment(compose)
    for name in ("nats.conf", "telegraf.conf", "docker-compose.yml"):
        text = (SCALE_OUT / name).read_text()
        assert "apiv3_" not in text and "hooks.slack.com" not in text, name
    (output,) = agent_telegraf(0)["outputs"]["influxdb_v3"]
    assert REFERENCE.match(output["token"])


# --- (b) the real server: every message, each machine in its one partition -------------------


def nats_server_binary() -> str:
    found = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/bin")
    if found is None:
        pytest.fail("nats-server is not installed: `apt-get install nats-server` (.ci/run does)")
    return found


@dataclass(frozen=True)
class Ports:
    client: int
    mqtt: int
    http: int


def test_nats_config(directory: Path, ports: Ports) -> Path:
    """The shipped nats.conf with its three listeners on free loopback ports and its store in
    ``directory``; every other line as shipped."""
    text = SHIPPED_NATS.read_text()
    moved = {
        'listen: "0.0.0.0:4222"': f'listen: "127.0.0.1:{ports.client}"',
        'listen: "0.0.0.0:1883"': f'listen: "127.0.0.1:{ports.mqtt}"',
        'http: "0.0.0.0:8222"': f'http: "127.0.0.1:{ports.http}"',
        'store_dir: "/data/jetstream"': f'store_dir: "{directory / "jetstream"}"',
    }
    for shipped, ours in moved.items():
        assert text.count(shipped) == 1, shipped
        text = text.replace(shipped, ours)
    path = directory / "nats.conf"
    path.write_text(text)
    return path


test_nats_config.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@dataclass
class Delivery:
    """What the simulator published (in order) and what each partition's reader received."""

    partitions: int
    published: list[tuple[str, bytes]]  # (topic, payload)
    received: dict[int, list[tuple[str, bytes]]]  # partition -> (subject, payload), in order
    everything: list[tuple[str, bytes]]  # a reader of machine.> : what else got there
    health: dict[str, Any]
    config_diff: list[tuple[str, str]]


class Recording:
    """A sink that hands every tick to MqttSink and keeps the topic and payload it publishes."""

    def __init__(self, sink: MqttSink, prefix: str = "machine") -> None:
        self.sink, self.prefix = sink, prefix
        self.published: list[tuple[str, bytes]] = []

    def emit(self, time_ns: int, readings: list[tuple[Machine, Reading]]) -> None:
        self.sink.emit(time_ns, readings)
        for machine, reading in readings:
            body = flat_payload(
                machine.machine_id, machine.provider, machine.barcode, reading, time_ns
            )
            topic = f"{self.prefix}/{machine.machine_id}"
            self.published.append((topic, json.dumps(body).encode()))  # as MqttSink sends it

    def close(self) -> None:
        self.sink.close()


def publish_the_simulation(mqtt_port: int) -> Recording:
    """The simulation, published by the simulator's MqttSink (left open: QoS 0 messages still
    in its queue would be lost by closing it before they arrive)."""
    sink = MqttSink("127.0.0.1", mqtt_port, client_id="hst-scale-out-test")
    deadline = time.monotonic() + 30
    while not sink.status()["connected"]:
        if time.monotonic() > deadline:
            sink.close()
            pytest.fail("the simulator did not connect to NATS's MQTT listener")
        time.sleep(0.05)
    recording = Recording(sink)
    simulation = Simulation(MACHINES, 11, START_NS, 1.0, LabelLog(io.StringIO()), FAULTS)
    try:
        run(
            simulation,
            recording,
            speed=SPEED,
            duration_ns=SECONDS * 1_000_000_000,
            stop=threading.Event(),
        )
    finally:
        simulation.close()
    return recording


async def read_partitions(
    client_port: int, partitions: int, publish: Callable[[], Recording]
) -> tuple[list[tuple[str, bytes]], dict[int, list[tuple[str, bytes]]], list[tuple[str, bytes]]]:
    """Subscribe to each partition as agent k does (machine.k.>) and to machine.> , run
    ``publish`` in a thread, and wait (generously) until everything published has arrived."""
    connection = await nats.connect(f"nats://127.0.0.1:{client_port}", connect_timeout=10)
    received: dict[int, list[tuple[str, bytes]]] = {k: [] for k in range(partitions)}
    everything: list[tuple[str, bytes]] = []

    def keep(into: list[tuple[str, bytes]]) -> Callable[[Any], Any]:
        async def callback(message: Any) -> None:
            into.append((message.subject, message.data))

        return callback

    for partition in range(partitions):
        await connection.subscribe(f"machine.{partition}.>", cb=keep(received[partition]))
    await connection.subscribe("machine.>", cb=keep(everything))
    await connection.flush()
    recording = await asyncio.to_thread(publish)
    published = recording.published
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (
            sum(map(len, received.values())) < len(published) or len(everything) < len(published)
        ):
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # a duplicate or a stray message would be here by now
    finally:
        await asyncio.to_thread(recording.close)
        await connection.drain()
    status = recording.sink.status()
    assert status["published"] == len(published) and status["dropped"] == 0, status
    return published, received, everything


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> Delivery:
    binary = nats_server_binary()
    directory = tmp_path_factory.mktemp("nats")
    ports = Ports(free_port(), free_port(), free_port())
    config = test_nats_config(directory, ports)
    shipped_lines = SHIPPED_NATS.read_text().splitlines()
    our_lines = config.read_text().splitlines()
    assert len(shipped_lines) == len(our_lines)
    config_diff = [(a, b) for a, b in zip(shipped_lines, our_lines, strict=True) if a != b]
    _, partitions = nats_mapping(config.read_text())
    log = (directory / "nats-server.log").open("wb")
    server = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=log)
    try:
        for port in (ports.client, ports.mqtt, ports.http):
            try:
                wait_for_port(port, timeout=30)
            except TimeoutError:
                pytest.fail(
                    f"nats-server did not start: {(directory / 'nats-server.log').read_text()}"
                )
        with urllib.request.urlopen(f"http://127.0.0.1:{ports.http}/healthz", timeout=10) as r:
            health = json.loads(r.read())
        published, received, everything = asyncio.run(
            read_partitions(ports.client, partitions, lambda: publish_the_simulation(ports.mqtt))
        )
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    errors = [
        line
        for line in (directory / "nats-server.log").read_text().splitlines()
        if "[ERR]" in line or "[FTL]" in line
    ]
    assert errors == [], errors
    return Delivery(partitions, published, received, everything, health, config_diff)


def test_the_test_server_runs_the_shipped_config_with_only_its_addresses_and_store_moved(
    delivery: Delivery,
) -> None:
    changed = {shipped.split(":")[0].strip() for shipped, _ in delivery.config_diff}
    assert len(delivery.config_diff) == 4 and changed == {"listen", "http", "store_dir"}
    for shipped, ours in delivery.config_diff:
        assert shipped.split(":")[0] == ours.split(":")[0]
    assert delivery.health == {"status": "ok"}  # what the compose health check asks


def test_every_message_arrives_once_each_machine_in_the_partition_nats_partition_gives(
    delivery: Delivery,
) -> None:
    published = delivery.published
    assert len(published) == MACHINES * SECONDS
    # Every subject is machine.<k>.<machineID>: nothing reaches machine.> unpartitioned.
    for subject, _ in delivery.everything:
        prefix, partition, machine = subject.split(".")
        assert prefix == "machine" and 0 <= int(partition) < delivery.partitions
    assert Counter(delivery.everything) == Counter(
        subject for messages in delivery.received.values() for subject in messages
    )
    # All of them, once: per machine the payloads published, in the order published.
    by_machine: dict[str, list[bytes]] = defaultdict(list)
    for topic, payload in published:
        by_machine[topic.split("/")[1]].append(payload)
    assert len(by_machine) == MACHINES
    seen: dict[str, set[int]] = defaultdict(set)
    arrived: dict[str, list[bytes]] = defaultdict(list)
    for partition, messages in delivery.received.items():
        for subject, payload in messages:
            _, token, machine = subject.split(".")
            assert int(token) == partition
            seen[machine].add(partition)
            arrived[machine].append(payload)
            assert json.loads(payload)["machineID"] == machine
    assert arrived == by_machine
    # Each machine in exactly one partition, the one our FNV-1a computes.
    for machine in by_machine:
        assert seen[machine] == {nats_partition(machine, delivery.partitions)}, machine
    assert all(delivery.received.values()), "a partition got no machine: too few to tell"


# --- (c) sharding does not change a single score ---------------------------------------------


def nats_consumer_line(subject: str, payload: bytes, consumer: dict[str, Any]) -> str:
    """The line an agent's Telegraf hands the processor: the JSON parser's metric with the
    ``subject`` tag nats_consumer adds, unless tagexclude removes it."""
    tag = "" if "subject" in consumer.get("tagexclude", []) else "subject"
    return telegraf_line(subject, payload, {**consumer, "topic_tag": tag})


def processor_command(state_file: Path, config: Path) -> list[str]:
    """The agents' execd command, with the processor config and state file moved here."""
    (execd,) = agent_telegraf(0)["processors"]["execd"]
    command = list(execd["command"])
    command[command.index("--config") + 1] = str(config)
    command[command.index("--state-file") + 1] = str(state_file)
    command[0] = shutil.which(command[0]) or command[0]
    return command


def score(command: list[str], lines: list[str]) -> list[str]:
    result = subprocess.run(
        command,
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SLACK_WEBHOOK_URL": ""},
    )
    assert result.returncode == 0, result.stderr
    outputs = result.stdout.splitlines()
    assert len(outputs) == len(lines), result.stderr
    return outputs


def per_machine(outputs: list[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for line in outputs:
        grouped[parse_metric(line).tags["machineID"]].append(line)
    return dict(grouped)


@dataclass
class Sharded:
    config: Path
    lines: dict[int, list[str]]  # partition -> the lines its agent's processor gets, in order
    outputs: dict[int, list[str]]
    single: list[str]  # one processor fed every line, in the order they arrived


@pytest.fixture(scope="module")
def sharded(delivery: Delivery, tmp_path_factory: pytest.TempPathFactory) -> Sharded:
    directory = tmp_path_factory.mktemp("sharded")
    document = yaml.safe_load((ROOT / "hst-processor.yaml").read_text())
    document["self_metrics"] = {"interval": 0}  # the output holds the metrics alone
    config = directory / "hst-processor.yaml"
    config.write_text(yaml.safe_dump(document))
    lines: dict[int, list[str]] = {}
    outputs: dict[int, list[str]] = {}
    for partition, messages in delivery.received.items():
        (consumer,) = agent_telegraf(partition)["inputs"]["nats_consumer"]
        lines[partition] = [nats_consumer_line(s, p, consumer) for s, p in messages]
        command = processor_command(directory / f"state-{partition}.msgpack", config)
        outputs[partition] = score(command, lines[partition])
    (consumer,) = agent_telegraf(0)["inputs"]["nats_consumer"]
    everything = [nats_consumer_line(s, p, consumer) for s, p in delivery.everything]
    single = score(processor_command(directory / "single.msgpack", config), everything)
    return Sharded(config, lines, outputs, single)


def test_three_processors_on_their_partitions_score_exactly_as_one_on_everything(
    sharded: Sharded,
) -> None:
    single = per_machine(sharded.single)
    together: dict[str, list[str]] = {}
    for partition, outputs in sharded.outputs.items():
        mine = per_machine(outputs)
        assert all(nats_partition(machine, 3) == partition for machine in mine)
        together.update(mine)
    assert together.keys() == single.keys() and len(single) == MACHINES
    for machine, lines in single.items():
        assert together[machine] == lines, machine
    # What was compared: scores past warm-up, and the faults' anomalies among them.
    tags = Counter(parse_metric(line).tags["anomaly"] for line in sharded.single)
    assert tags["false"] > 0 and tags["true"] > 0 and tags["warmup"] > 0, tags
    # The machineID tag came from the payload; no subject tag reached the processor.
    assert all("subject=" not in line for lines in sharded.lines.values() for line in lines)


# --- (d) 3 agents become 2: their state re-partitioned, every machine resumes exactly -------


def test_three_agents_repartitioned_into_two_resume_every_machine_byte_for_byte(
    sharded: Sharded, tmp_path: Path
) -> None:
    cut_ns = START_NS + CUT_S * 1_000_000_000
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    before: dict[str, list[str]] = defaultdict(list)
    rest: list[str] = []
    for partition, lines in sharded.lines.items():
        first = [line for line in lines if parse_metric(line).timestamp < cut_ns]
        rest.extend(line for line in lines if parse_metric(line).timestamp >= cut_ns)
        command = processor_command(old / f"state-{partition}.msgpack", sharded.config)
        for machine, outputs in per_machine(score(command, first)).items():
            before[machine].extend(outputs)
    # The documented step between stopping 3 agents and starting 2.
    hst_processor = shutil.which("hst-processor") or "hst-processor"
    moved = subprocess.run(
        [hst_processor, "repartition", *(str(old / f"state-{k}.msgpack") for k in range(3)),
         "--by", "machineID", "--partitions", "2",
         "--output", str(new / "state-{partition}.msgpack")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert sorted(p.name for p in new.glob("state-*.msgpack")) == [
        "state-0.msgpack",
        "state-1.msgpack",
    ]
    # NATS with {{partition(2,1)}} would route each machine to nats_partition(machine, 2).
    routed: dict[int, list[str]] = defaultdict(list)
    rest.sort(key=lambda line: parse_metric(line).timestamp)  # per machine: arrival order
    for line in rest:
        routed[nats_partition(parse_metric(line).tags["machineID"], 2)].append(line)
    assert sorted(routed) == [0, 1]
    after: dict[str, list[str]] = defaultdict(list)
    for partition, lines in routed.items():
        command = processor_command(new / f"state-{partition}.msgpack", sharded.config)
        for machine, outputs in per_machine(score(command, lines)).items():
            after[machine].extend(outputs)
    single = per_machine(sharded.single)
    for machine, lines in single.items():
        assert before[machine] + after[machine] == lines, machine
    # The cut fell after warm-up, and inside machine5's fault: scores and an open episode moved.
    resumed = Counter(parse_metric(line).tags["anomaly"] for line in after["machine5"])
    assert resumed["warmup"] == 0 and resumed["true"] > 0, resumed

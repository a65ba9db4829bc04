"""The demo stack's files: telegraf.conf, docker-compose.yml, the Dockerfiles and their scripts.

No Docker engine and no Telegraf run here, so these tests check what can be checked without
them, and say so: the configs are parsed and cross-checked against each other and against the
code (the topics the simulator publishes, the payload it sends, the command and paths the
processor needs), the shell scripts the containers run are run for real, and the chain
simulator -> broker -> Telegraf's JSON parser (stand-in) -> the execd command from telegraf.conf
is driven end to end. Images are not built and containers are not started. Grafana's
provisioning and dashboards have their own checks: tests/test_dashboard.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hst_processor.lineproto import parse_metric
from tests.mosquitto_broker import Broker, Subscriber, free_port, test_config
from tests.stack_files import (
    REFERENCE,
    SECRET_NAME,
    assert_secrets_from_the_environment,
    read_compose,
    read_telegraf,
    repo_path_at,
)
from tests.telegraf_harness import ExecdHarness
from tests.telegraf_json import telegraf_line

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def telegraf() -> dict[str, Any]:
    return read_telegraf()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return read_compose()


@pytest.fixture(scope="module")
def processor_config() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "hst-processor.yaml").read_text())
    return document


# --- telegraf.conf -------------------------------------------------------------------------


def test_mqtt_input_reads_what_the_simulator_publishes(
    telegraf: dict[str, Any], processor_config: dict[str, Any]
) -> None:
    (mqtt,) = telegraf["inputs"]["mqtt_consumer"]
    assert mqtt["topics"] == ["machine/#"]
    assert mqtt["servers"] == ["tcp://mosquitto:1883"]
    assert mqtt["startup_error_behavior"] == "retry"
    assert mqtt["data_format"] == "json"
    assert "machineID" in mqtt["tag_keys"]
    assert mqtt["json_time_key"] == "time" and mqtt["json_time_format"] == "unix_ms"
    assert mqtt["name_override"] in processor_config["measurements"]
    assert processor_config["group_by"] == ["machineID"]
    assert mqtt["username"] == "${MQTT_USERNAME:-}" and mqtt["password"] == "${MQTT_PASSWORD:-}"
    # The seed payload's parser is offered, commented.
    text = (ROOT / "telegraf.conf").read_text()
    assert '# data_format = "json_v2"' in text and '#     path = "data"' in text


def test_the_processor_runs_on_machine_data_with_config_and_state_in_place(
    telegraf: dict[str, Any], compose: dict[str, Any], processor_config: dict[str, Any]
) -> None:
    (execd,) = telegraf["processors"]["execd"]
    assert execd["namepass"] == processor_config["measurements"] == ["machine_data"]
    command = execd["command"]
    assert command[0] == "hst-processor"
    config_path = command[command.index("--config") + 1]
    state_path = command[command.index("--state-file") + 1]
    assert repo_path_at(compose, "telegraf", config_path) == ROOT / "hst-processor.yaml"
    state_volume = [
        v for v in compose["services"]["telegraf"]["volumes"] if v.startswith("hst-state:")
    ]
    assert state_volume == [f"hst-state:{Path(state_path).parent}"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"chown telegraf:telegraf {Path(state_path).parent}" in dockerfile
    assert telegraf["agent"]["skip_processors_after_aggregators"] is True


def test_output_is_influxdb3_core_with_token_and_database_from_the_environment(
    telegraf: dict[str, Any], compose: dict[str, Any]
) -> None:
    (output,) = telegraf["outputs"]["influxdb_v3"]
    assert output["urls"] == ["http://influxdb3:8181"]
    assert "influxdb3" in compose["services"]
    assert REFERENCE.match(output["token"]) and REFERENCE.match(output["database"])
    assert "influxdb_v2" not in telegraf["outputs"]
    assert "# [[outputs.influxdb_v2]]" in (ROOT / "telegraf.conf").read_text()


def test_the_processors_self_metrics_reach_the_output(telegraf: dict[str, Any]) -> None:
    """The processor's reports (measurement hst_processor) leave it among the metrics; no
    filter between it and InfluxDB may keep them out, nor a processor after it."""
    from hst_processor.config import load_config

    measurement = load_config(ROOT / "hst-processor.yaml").self_metrics.measurement
    (output,) = telegraf["outputs"]["influxdb_v3"]
    filters = ("namepass", "namedrop", "tagpass", "tagdrop", "fieldpass", "fielddrop")
    assert not any(name in output for name in filters)
    assert list(telegraf["processors"]) == ["execd"]  # nothing after it to drop them
    assert load_config(ROOT / "hst-processor.yaml").self_metrics.interval > 0
    assert measurement == "hst_processor"


# --- the chain, with a Telegraf stand-in -----------------------------------------------------


def test_simulator_to_broker_to_telegraf_parser_to_the_execd_command(
    tmp_path: Path, telegraf: dict[str, Any], compose: dict[str, Any]
) -> None:
    """Real broker, real simulator, the real command line from telegraf.conf (container paths
    mapped to the files compose mounts there); Telegraf's JSON parser is the stand-in."""
    (mqtt,) = telegraf["inputs"]["mqtt_consumer"]
    (execd,) = telegraf["processors"]["execd"]
    state_file = tmp_path / "state.msgpack"
    command = []
    for argument in execd["command"]:
        mounted = repo_path_at(compose, "telegraf", argument)
        if mounted is not None:
            argument = str(mounted)
        elif argument.startswith("/var/lib/hst-processor/"):
            argument = str(state_file)
        command.append(shutil.which(argument) or argument)

    port = free_port()
    broker = Broker(test_config(tmp_path, port), port).start()
    subscriber = Subscriber(port).start()
    simulator = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--mqtt-host", "127.0.0.1", "--mqtt-port", str(port),
         "--no-panel", "--rate", "20", "--machines", "2"],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        messages = subscriber.wait_for(60, timeout=30)[:60]
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
        subscriber.stop()
        broker.stop()

    harness = ExecdHarness(command, env={"SLACK_WEBHOOK_URL": ""}).start()
    sent = [telegraf_line(m.topic, json.dumps(m.payload).encode(), mqtt) for m in messages]
    for line in sent:
        harness.write_metric(line.encode() + b"\n")
    outputs = harness.drain(len(sent))
    stopped = harness.stop()
    assert stopped.exit_code == 0 and stopped.needed == ""
    assert harness.unprefixed_stderr() == []
    for line, output in zip(sent, outputs, strict=True):
        metric = parse_metric(output.text.decode().rstrip("\n"))
        original = parse_metric(line)
        assert metric.measurement == "machine_data"
        assert metric.tags["anomaly"] == "warmup"  # 30 metrics per machine: still warming up
        assert {k: v for k, v in metric.tags.items() if k != "anomaly"} == original.tags
        assert metric.timestamp == original.timestamp
        assert set(original.fields) == {"load", "power", "temperature", "vibration"}
    assert state_file.stat().st_size > 0


# --- docker-compose.yml --------------------------------------------------------------------


def test_compose_has_its_services_with_their_images_and_build_files(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert {"mosquitto", "simulator", "telegraf", "influxdb3", "grafana"} <= set(services)
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert services["influxdb3"]["image"] == "influxdb:3-core"
    # Grafana OSS at a pinned major, not latest (the InfluxDB data source has SQL since 10.3).
    grafana = re.fullmatch(r"grafana/grafana(?:-oss)?:(\d+)(\.\d+)*", services["grafana"]["image"])
    assert grafana and int(grafana.group(1)) >= 11
    assert services["simulator"]["build"]["dockerfile"] == "simulator/Dockerfile"
    assert services["telegraf"]["build"]["dockerfile"] == "Dockerfile"
    (base,) = re.findall(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert re.fullmatch(r"telegraf:1\.(3[89]|[4-9]\d)\S*", base)  # outputs.influxdb_v3: 1.38+
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{source} is mounted but missing"
            else:
                assert source in compose["volumes"], f"volume {source} is not declared"


def test_start_order_waits_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("mosquitto", "simulator", "influxdb3"):
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"
    assert services["simulator"]["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    telegraf_needs = services["telegraf"]["depends_on"]
    assert telegraf_needs["mosquitto"]["condition"] == "service_healthy"
    assert telegraf_needs["influxdb3"]["condition"] == "service_healthy"
    grafana_needs = services["grafana"]["depends_on"]
    assert grafana_needs["influxdb3"]["condition"] == "service_healthy"  # the token is there
    influx_needs = services["influxdb3"]["depends_on"]["influxdb3-token"]["condition"]
    assert influx_needs == "service_completed_successfully"
    serve = services["influxdb3"]["command"]
    assert serve[0] == "serve" and "--object-store=file" in serve
    assert any(a.startswith("--data-dir=/var/lib/influxdb3") for a in serve)
    assert "--admin-token-file=/var/lib/influxdb3-token/admin-token.json" in serve


def test_no_secret_is_written_into_the_compose_file(compose: dict[str, Any]) -> None:
    assert_secrets_from_the_environment(compose)
    text = (ROOT / "docker-compose.yml").read_text()
    assert "apiv3_" not in text and "hooks.slack.com" not in text


def test_env_example_has_no_values_for_secrets_and_env_stays_out_of_git_and_images() -> None:
    for line in (ROOT / ".env.example").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            if SECRET_NAME.search(key):
                assert value == "", f"{key} has a value in .env.example"
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_published_ports_listen_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to the network"
    assert "--panel-host=0.0.0.0" in compose["services"]["simulator"]["command"]


@pytest.mark.parametrize(
    ("dockerfile", "needed"),
    [
        ("Dockerfile", ["hst_processor/cli.py"]),
        ("simulator/Dockerfile", ["simulator/templates/panel.html", "simulator/static/panel.js"]),
    ],
)
def test_what_a_dockerfile_copies_is_enough_to_install_the_package(
    dockerfile: str, needed: list[str], tmp_path: Path
) -> None:
    """Each COPY of the repository is replayed into an empty folder, and the package is built
    from that folder alone: a file the build needs but the Dockerfile forgets fails here."""
    context = tmp_path / "context"
    install_root = None
    for line in (ROOT / dockerfile).read_text().splitlines():
        if line.startswith("COPY ") and not line.startswith("COPY docker/"):
            *sources, target = line.split()[1:]
            for source in sources:
                destination = context / target.lstrip("/")
                if target.endswith("/"):
                    destination = destination / Path(source).name
                if (ROOT / source).is_dir():
                    shutil.copytree(
                        ROOT / source, destination, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / source, destination)
        if "pip install" in line:
            install_root = re.search(r"pip install --no-cache-dir '?(/[a-z]+)", line)
    assert install_root is not None
    source_dir = context / install_root.group(1).lstrip("/")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
         "-w", str(tmp_path / "wheels"), str(source_dir)],
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr.decode()
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    names = subprocess.run(
        [sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True, text=True
    ).stdout
    assert all(name in names for name in needed)


# --- the scripts the containers run ---------------------------------------------------------


def run_script(path: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(ROOT / path), *args],
        env={"PATH": os.environ["PATH"] + ":/usr/sbin", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_influxdb3_token_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = run_script("docker/influxdb3-token.sh", {"TOKEN_DIR": str(tmp_path)})
    assert first.returncode == 0, first.stderr
    token = (tmp_path / "token").read_text().strip()
    assert re.fullmatch(r"apiv3_[A-Za-z0-9_-]{40,}", token)
    assert json.loads((tmp_path / "admin-token.json").read_text()) == {
        "token": token,
        "name": "_admin",
    }
    assert token not in first.stdout + first.stderr
    again = run_script(
        "docker/influxdb3-token.sh",
        {"TOKEN_DIR": str(tmp_path), "INFLUXDB3_ADMIN_TOKEN": "apiv3_other"},
    )
    assert again.returncode == 0 and "already provisioned" in again.stdout
    assert (tmp_path / "token").read_text().strip() == token


def test_a_token_from_env_is_used_and_a_malformed_one_refused(tmp_path: Path) -> None:
    given = run_script(
        "docker/influxdb3-token.sh",
        {"TOKEN_DIR": str(tmp_path / "a"), "INFLUXDB3_ADMIN_TOKEN": "apiv3_from-env"},
    )
    assert given.returncode == 0
    assert (tmp_path / "a" / "token").read_text().strip() == "apiv3_from-env"
    wrong = run_script(
        "docker/influxdb3-token.sh",
        {"TOKEN_DIR": str(tmp_path / "b"), "INFLUXDB3_ADMIN_TOKEN": "hunter2"},
    )
    assert wrong.returncode == 2 and "must start with apiv3_" in wrong.stderr
    assert "hunter2" not in wrong.stderr
    assert not (tmp_path / "b" / "token").exists()


TOKEN_SCRIPT = "docker/with-influxdb3-token.sh"


def test_the_token_entrypoint_hands_the_token_file_to_the_command_it_runs(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("apiv3_abc\n")
    env = {"TOKEN_FILE": str(token_file)}
    result = run_script(TOKEN_SCRIPT, env, "env")
    assert result.returncode == 0
    assert "INFLUXDB3_TOKEN=apiv3_abc" in result.stdout.splitlines()
    assert "apiv3_abc" not in result.stderr
    given = run_script(TOKEN_SCRIPT, {**env, "INFLUXDB3_TOKEN": "apiv3_given"}, "env")
    assert "INFLUXDB3_TOKEN=apiv3_given" in given.stdout.splitlines()
    missing = run_script(TOKEN_SCRIPT, {"TOKEN_FILE": "/nonexistent"}, "env")
    assert missing.returncode == 2 and "no token file" in missing.stderr
    nothing = run_script(TOKEN_SCRIPT, env)
    assert nothing.returncode == 2 and "no command to run" in nothing.stderr
    # Without the variable and with the default path, the script reads the volume's file.
    assert "/var/lib/influxdb3-token/token" in (ROOT / TOKEN_SCRIPT).read_text()


def test_telegraf_and_grafana_start_through_the_token_entrypoint(compose: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"COPY {TOKEN_SCRIPT} /usr/local/bin/with-influxdb3-token.sh" in dockerfile
    # Telegraf's image: the official entrypoint next, which drops root.
    assert 'ENTRYPOINT ["/usr/local/bin/with-influxdb3-token.sh", "/entrypoint.sh"]' in dockerfile
    grafana = compose["services"]["grafana"]
    shell, script, command = grafana["entrypoint"]
    assert (shell, command) == ("/bin/sh", "/run.sh")  # Grafana's own entrypoint next
    assert repo_path_at(compose, "grafana", script) == ROOT / TOKEN_SCRIPT
    assert "influxdb3-token:/var/lib/influxdb3-token:ro" in grafana["volumes"]


def test_the_mosquitto_health_check_tells_up_from_down(tmp_path: Path) -> None:
    port = free_port()
    broker = Broker(test_config(tmp_path, port), port).start()
    env = {"MQTT_PORT": str(port)}
    try:
        assert run_script("mosquitto/healthcheck.sh", env).returncode == 0
    finally:
        broker.stop()
    assert run_script("mosquitto/healthcheck.sh", env).returncode != 0

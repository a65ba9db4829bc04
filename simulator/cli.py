"""``python -m simulator``: machines over MQTT with a control panel, or line protocol on stdout."""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import IO

from simulator.faults import FAULTS
from simulator.labels import LabelLog
from simulator.payload import PAYLOADS
from simulator.run import LineProtocolSink, Sink, run
from simulator.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
    parse_duration,
    parse_fault_spec,
    parse_start,
)
from simulator.simulation import Simulation

__all__ = ["main"]

log = logging.getLogger("simulator")

NEEDS_EXTRA = "the MQTT and panel modes need pip install 'hst-processor[simulator]'"

EPILOG = f"""
fault kinds: {", ".join(FAULTS)}

examples:
  python -m simulator                                  # MQTT to localhost:1883, panel on :5005
  python -m simulator --stdout --duration 600 --speed 60 | hst-processor --config hst-processor.yaml
  python -m simulator --stdout --speed 0 --duration 6h --seed 7 --start 2026-01-01T00:00:00Z \\
      --fault machine2:bearing:2h:20m --labels labels.jsonl > run.lp

environment: MQTT_HOST, MQTT_PORT, MQTT_USERNAME and MQTT_PASSWORD (the password is read only
from the environment, so it never shows in a process list).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Simulated machines sending load, power, temperature and vibration.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fleet = parser.add_argument_group("machines and time")
    fleet.add_argument("--machines", type=int, help="how many machines (default 3)")
    fleet.add_argument("--rate", type=float, help="metrics per machine per second (default 1)")
    fleet.add_argument("--seed", type=int, help="random seed for a reproducible run")
    fleet.add_argument("--start", help="simulated time of the first metric (default: now)")
    fleet.add_argument("--duration", help="simulated time to run: 600, 10m, 6h (default: forever)")
    fleet.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated seconds per real second; 0 runs as fast as possible (default 1)",
    )
    faults = parser.add_argument_group("faults and ground truth")
    faults.add_argument("--scenario", help="YAML file of settings and scripted faults")
    faults.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="MACHINE:KIND:AT[:FOR]",
        help="script a fault, e.g. machine2:overload:25m:5m (repeatable)",
    )
    faults.add_argument("--labels", help="write every fault switch to this JSON lines file")
    output = parser.add_argument_group("output")
    output.add_argument(
        "--stdout", action="store_true", help="print line protocol instead of publishing to MQTT"
    )
    output.add_argument("--measurement", default="machine_data", help="for --stdout")
    output.add_argument(
        "--payload", choices=PAYLOADS, default="flat", help="MQTT JSON shape (default flat)"
    )
    output.add_argument("--mqtt-host", default=os.environ.get("MQTT_HOST", "localhost"))
    output.add_argument("--mqtt-port", type=int, default=int(os.environ.get("MQTT_PORT", "1883")))
    output.add_argument("--topic-prefix", default="machine")
    output.add_argument("--qos", type=int, choices=(0, 1, 2), default=0)
    panel = parser.add_argument_group("control panel")
    panel.add_argument(
        "--panel",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve the control panel (default: on with MQTT, off with --stdout)",
    )
    panel.add_argument("--panel-host", default="127.0.0.1")
    panel.add_argument("--panel-port", type=int, default=5005)
    panel.add_argument(
        "--panel-allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the panel answers to besides localhost and 127.0.0.1 (repeatable); "
        "other Host headers get 400",
    )
    return parser


def _allowed_hosts(args: argparse.Namespace) -> list[str]:
    """The names the panel answers to: the flag's, and the address it is bound to unless
    that is a wildcard (a request never names 0.0.0.0)."""
    bound = [] if args.panel_host in ("0.0.0.0", "::", "") else [args.panel_host]
    return [*bound, *args.panel_allowed_host]


def _settings(args: argparse.Namespace, scenario: Scenario) -> tuple[int, float, int, int]:
    """Machines, rate, seed and start time: the flag, else the scenario, else the default."""
    machines = args.machines or scenario.machines or 3
    rate = args.rate or scenario.rate or 1.0
    if machines < 1:
        raise ScenarioError("--machines: at least 1")
    if rate <= 0:
        raise ScenarioError("--rate: above 0")
    seed = args.seed if args.seed is not None else scenario.seed
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    if args.start is not None:
        start_ns = parse_start(args.start, "--start")
    elif scenario.start_ns is not None:
        start_ns = scenario.start_ns
    else:
        start_ns = time.time_ns() // 1_000_000 * 1_000_000
    return machines, rate, seed, start_ns


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        scenario = load_scenario(args.scenario) if args.scenario else Scenario()
        machines, rate, seed, start_ns = _settings(args, scenario)
        schedule = [*scenario.faults, *(parse_fault_spec(spec) for spec in args.fault)]
        duration_s = (
            parse_duration(args.duration, "--duration")
            if args.duration is not None
            else scenario.duration_s
        )
        if args.speed < 0:
            raise ScenarioError("--speed: 0 or more")
    except ScenarioError as error:
        print(f"simulator: {error}", file=sys.stderr)
        return 2

    with ExitStack() as stack:
        labels_stream: IO[str] | None = None
        if args.labels:
            labels_stream = stack.enter_context(open(args.labels, "w", encoding="utf-8"))
        try:
            simulation = Simulation(
                machines, seed, start_ns, rate, LabelLog(labels_stream), schedule
            )
        except ScenarioError as error:
            print(f"simulator: {error}", file=sys.stderr)
            return 2
        stack.callback(simulation.close)

        sink: Sink
        mqtt_status = None
        if args.stdout:
            sink = LineProtocolSink(sys.stdout, args.measurement)
        else:
            try:
                from simulator.mqtt import MqttSink
            except ImportError:
                print(f"simulator: {NEEDS_EXTRA} (paho-mqtt), or use --stdout", file=sys.stderr)
                return 2
            mqtt_sink = MqttSink(
                args.mqtt_host,
                args.mqtt_port,
                payload=args.payload,
                topic_prefix=args.topic_prefix,
                qos=args.qos,
                username=os.environ.get("MQTT_USERNAME") or None,
                password=os.environ.get("MQTT_PASSWORD") or None,
            )
            sink, mqtt_status = mqtt_sink, mqtt_sink.status
        stack.callback(sink.close)

        if args.panel if args.panel is not None else not args.stdout:
            try:
                from simulator.panel import PanelServer, create_app
            except ImportError:
                print(f"simulator: {NEEDS_EXTRA} (Flask), or use --no-panel", file=sys.stderr)
                return 2

            try:
                server = PanelServer(
                    create_app(simulation, mqtt_status, _allowed_hosts(args)),
                    args.panel_host,
                    args.panel_port,
                )
            except OSError as error:
                print(
                    f"simulator: cannot serve the panel on {args.panel_host}:{args.panel_port} "
                    f"({error.strerror})",
                    file=sys.stderr,
                )
                return 1
            server.start()
            stack.callback(server.close)
            log.info("control panel on http://%s:%d", args.panel_host, server.port)

        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        log.info(
            "%d machines, %g metrics/s each, seed %d, provider %s%s",
            machines,
            rate,
            seed,
            next(iter(simulation.machines.values())).provider,
            "" if args.stdout else f", publishing to {args.mqtt_host}:{args.mqtt_port}",
        )
        duration_ns = None if duration_s is None else round(duration_s * 1e9)
        try:
            run(simulation, sink, speed=args.speed, duration_ns=duration_ns, stop=stop)
        except BrokenPipeError:
            # The reader went away (`| head`): nothing left to write to, not an error.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
    return 0

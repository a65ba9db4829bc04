"""Scripted faults for a reproducible, labelled run.

A scenario is a YAML file; every key is optional and a command-line flag given explicitly wins
over it::

    seed: 7
    machines: 4
    rate: 1                      # metrics per machine per simulated second
    start: 2026-01-01T00:00:00Z  # simulated time of the first metric
    duration: 6h
    faults:
      - {machine: machine2, kind: bearing, at: 30m, for: 10m}
      - {machine: machine3, kind: spike, at: 1h}      # a spike ends by itself

Durations are seconds, or a number with ``s``, ``m``, ``h`` or ``d``. The same fault on the
command line: ``--fault machine2:bearing:30m:10m``.

>>> [(fault.machine, fault.kind, fault.at_s, fault.for_s) for fault in
...  parse_scenario("faults: [{machine: machine1, kind: stuck, at: 2m, for: 90s}]").faults]
[('machine1', 'stuck', 120.0, 90.0)]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from hst_processor.times import epoch_ns
from simulator.faults import FAULTS

__all__ = [
    "Scenario",
    "ScenarioError",
    "ScheduledFault",
    "load_scenario",
    "parse_duration",
    "parse_fault_spec",
    "parse_scenario",
    "parse_start",
]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*$")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[smhd])+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


class ScenarioError(ValueError):
    """A scenario or fault spec that cannot be run; the message names the key."""


@dataclass(frozen=True)
class ScheduledFault:
    """A fault to start ``at_s`` simulated seconds into the run and stop ``for_s`` later
    (None: it runs to the end, or, for a spike, ends by itself)."""

    machine: str
    kind: str
    at_s: float
    for_s: float | None = None


@dataclass(frozen=True)
class Scenario:
    """Settings and faults from a scenario file; None means "not set here"."""

    seed: int | None = None
    machines: int | None = None
    rate: float | None = None
    start_ns: int | None = None
    duration_s: float | None = None
    faults: tuple[ScheduledFault, ...] = field(default_factory=tuple)


def parse_duration(value: Any, key: str) -> float:
    """Seconds from ``90``, ``"90s"``, ``"1.5m"``, ``"2h"``, ``"1d"`` or ``"1h30m"``.

    >>> parse_duration("1.5m", "at"), parse_duration("1h30m", "at")
    (90.0, 5400.0)
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        if number := _NUMBER.match(value):
            return float(number.group(1))
        if _DURATION.match(value.replace(" ", "")):
            parts = _PART.findall(value.replace(" ", ""))
            return sum(float(amount) * _UNITS[unit] for amount, unit in parts)
    raise ScenarioError(f"{key}: {value!r} is not a duration (seconds, or 30s, 10m, 2h, 1h30m)")


def parse_start(value: Any, key: str = "start") -> int:
    """Nanoseconds since the epoch from an RFC 3339 time (a YAML timestamp works too).

    >>> parse_start("2026-01-01T00:00:00Z")
    1767225600000000000
    """
    problem = f"{key}: {value!r} is not a time like 2026-01-01T00:00:00Z"
    moment: datetime
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ScenarioError(problem) from None
    else:
        raise ScenarioError(problem)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return epoch_ns(moment)


def _fault(machine: Any, kind: Any, at: Any, duration: Any, key: str) -> ScheduledFault:
    if not isinstance(machine, str) or not machine:
        raise ScenarioError(f"{key}.machine: a machine ID such as machine1 is required")
    if kind not in FAULTS:
        raise ScenarioError(f"{key}.kind: {kind!r} is not one of {', '.join(FAULTS)}")
    at_s = parse_duration(at, f"{key}.at")
    for_s = None if duration is None else parse_duration(duration, f"{key}.for")
    return ScheduledFault(machine, kind, at_s, for_s)


def parse_fault_spec(spec: str) -> ScheduledFault:
    """A fault from ``MACHINE:KIND:AT[:FOR]``.

    >>> parse_fault_spec("machine2:overload:25m:5m")
    ScheduledFault(machine='machine2', kind='overload', at_s=1500.0, for_s=300.0)
    """
    parts = spec.split(":")
    if len(parts) not in (3, 4):
        raise ScenarioError(f"--fault: {spec!r} is not MACHINE:KIND:AT[:FOR]")
    duration = parts[3] if len(parts) == 4 else None
    return _fault(parts[0], parts[1], parts[2], duration, "--fault")


def parse_scenario(text: str) -> Scenario:
    """A scenario from YAML text."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ScenarioError(f"scenario: not valid YAML ({error})") from None
    document = {} if document is None else document
    if not isinstance(document, dict):
        raise ScenarioError("scenario: expected a mapping of settings and faults")
    unknown = set(document) - {"seed", "machines", "rate", "start", "duration", "faults"}
    if unknown:
        raise ScenarioError(f"{sorted(unknown)[0]}: unknown key")
    faults_section = document.get("faults") or []
    if not isinstance(faults_section, list):
        raise ScenarioError("faults: expected a list")
    faults = []
    for index, entry in enumerate(faults_section):
        key = f"faults[{index}]"
        if not isinstance(entry, dict):
            raise ScenarioError(f"{key}: expected a mapping with machine, kind, at, for")
        extra = set(entry) - {"machine", "kind", "at", "for"}
        if extra:
            raise ScenarioError(f"{key}.{sorted(extra)[0]}: unknown key")
        faults.append(
            _fault(
                entry.get("machine"), entry.get("kind"), entry.get("at", 0), entry.get("for"), key
            )
        )
    return Scenario(
        seed=_optional_int(document, "seed", minimum=0),
        machines=_optional_int(document, "machines", minimum=1),
        rate=_optional_rate(document),
        start_ns=None if document.get("start") is None else parse_start(document["start"]),
        duration_s=(
            None
            if document.get("duration") is None
            else parse_duration(document["duration"], "duration")
        ),
        faults=tuple(faults),
    )


def load_scenario(path: str | Path) -> Scenario:
    """A scenario from a YAML file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(f"scenario: cannot read {path} ({error.strerror})") from None
    return parse_scenario(text)


def _optional_int(document: dict[str, Any], key: str, minimum: int) -> int | None:
    value = document.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScenarioError(f"{key}: expected a whole number of at least {minimum}")
    return value


def _optional_rate(document: dict[str, Any]) -> float | None:
    value = document.get("rate")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ScenarioError("rate: expected metrics per second above 0")
    return float(value)

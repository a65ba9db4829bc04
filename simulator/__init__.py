"""Simulated machines for the hst-processor demo and its measurements.

Machines behave like the seed demo's (load walks; power, temperature and vibration follow it),
suffer named faults switched by a scenario, the API or the control panel, and every switch is
written to a labels file: the ground truth that detection is measured against. Output goes to an
MQTT broker as JSON (``simulator.mqtt``) or to stdout as line protocol (``simulator.run``).
"""

from simulator.faults import FAULTS, Fault
from simulator.labels import FaultLabel, LabelLog, read_labels
from simulator.machine import Machine
from simulator.model import FIELDS, Reading
from simulator.scenario import Scenario, ScenarioError, ScheduledFault, load_scenario
from simulator.simulation import Simulation

__all__ = [
    "FAULTS",
    "FIELDS",
    "Fault",
    "FaultLabel",
    "LabelLog",
    "Machine",
    "Reading",
    "Scenario",
    "ScenarioError",
    "ScheduledFault",
    "Simulation",
    "load_scenario",
    "read_labels",
]

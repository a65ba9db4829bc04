"""Alert assembly: the event a notifier sends, from the series and the policy's state."""

from __future__ import annotations

import doctest

import hst_processor.alert_assembly
from hst_processor.alert_assembly import assemble_alert
from hst_processor.alerts import AlertState, FeatureReason


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(hst_processor.alert_assembly).failed == 0


def test_the_event_carries_the_series_state_and_reasons() -> None:
    reason = FeatureReason("power", 210.0, 90.0, 120.0)
    state = AlertState(is_open=True, started=10.0, peak=0.8)
    event = assemble_alert(
        "reminder", ("m", (("id", "7"), ("site", "x"))), 70.0, 0.7, 0.5, state, [reason], ""
    )
    assert (event.kind, event.measurement, dict(event.tags)) == (
        "reminder",
        "m",
        {"id": "7", "site": "x"},
    )
    assert (event.time, event.score, event.threshold, event.started, event.peak) == (
        70.0, 0.7, 0.5, 10.0, 0.8
    )  # fmt: skip
    assert event.reasons == (reason,) and event.link == ""


def test_the_link_names_the_measurement_and_leaves_unknown_tags_empty() -> None:
    event = assemble_alert(
        "open", ("cpu", ()), 1.0, 0.9, 0.5, AlertState(), (), "/d/{measurement}?host={host}"
    )
    assert event.link == "/d/cpu?host="

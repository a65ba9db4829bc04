"""The alert policy and the messages it produces."""

from __future__ import annotations

from hst_processor.alerts import (
    AlertEvent,
    AlertPolicy,
    AlertState,
    FeatureReason,
    digest_text,
    event_text,
    format_link,
    json_payload,
    slack_payload,
)
from hst_processor.config import AlertsConfig


def run(policy: AlertPolicy, scores: list[float], step: float = 1.0) -> list[str | None]:
    state = AlertState()
    return [policy.observe(state, score, i * step) for i, score in enumerate(scores)]


def test_opens_after_consecutive_anomalous_metrics_only() -> None:
    policy = AlertPolicy(AlertsConfig(consecutive=3), threshold=0.5)
    assert run(policy, [0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9]) == [
        None, None, None, None, None, "open", None,
    ]  # fmt: skip


def test_one_metric_rare_enough_alone_opens_at_once_but_not_while_cooling_down() -> None:
    policy = AlertPolicy(AlertsConfig(consecutive=3, resolve_after=1, cooldown=10), 0.5)
    state = AlertState()
    assert policy.observe(state, 0.9, 0) is None  # one of three
    assert policy.observe(state, 0.1, 1, alone=True) is None  # alone, yet below the threshold
    assert policy.observe(state, 0.9, 2, alone=True) == "open"
    assert policy.observe(state, 0.1, 3) == "resolve"
    assert policy.observe(state, 0.9, 5, alone=True) is None  # cooling down
    assert policy.observe(state, 0.9, 14, alone=True) == "open"


def test_opens_after_a_duration() -> None:
    policy = AlertPolicy(AlertsConfig(consecutive=1000, duration=10), threshold=0.5)
    events = run(policy, [0.9] * 30, step=1.0)
    assert events.index("open") == 10
    assert events.count("open") == 1


def test_hysteresis_keeps_a_hovering_score_open() -> None:
    config = AlertsConfig(consecutive=1, resolve_threshold=0.3, resolve_after=3)
    policy = AlertPolicy(config, threshold=0.5)
    # Dipping under the threshold but not under the resolve threshold does not resolve.
    events = run(policy, [0.9, 0.45, 0.4, 0.45, 0.4, 0.2, 0.2, 0.2])
    assert events == ["open", None, None, None, None, None, None, "resolve"]


def test_cooldown_prevents_flapping_then_allows_a_new_alert() -> None:
    config = AlertsConfig(consecutive=1, resolve_after=1, cooldown=10)
    policy = AlertPolicy(config, threshold=0.5)
    state = AlertState()
    assert policy.observe(state, 0.9, 0) == "open"
    assert policy.observe(state, 0.1, 1) == "resolve"
    assert policy.observe(state, 0.9, 5) is None  # cooling down
    assert policy.observe(state, 0.9, 12) == "open"


def test_reminders_while_open() -> None:
    config = AlertsConfig(consecutive=1, reminder_interval=60)
    events = run(AlertPolicy(config, threshold=0.5), [0.9] * 200)
    assert events.count("open") == 1
    assert [i for i, e in enumerate(events) if e == "reminder"] == [60, 120, 180]


def test_peak_and_start_are_tracked() -> None:
    config = AlertsConfig(consecutive=2, resolve_after=1)
    policy = AlertPolicy(config, threshold=0.5)
    state = AlertState()
    for when, score in enumerate([0.6, 0.7, 0.95, 0.8, 0.1]):
        policy.observe(state, score, 100.0 + when)
    assert (state.started, state.peak, state.is_open) == (100.0, 0.95, False)


EVENT = AlertEvent(
    kind="open",
    measurement="machine_data",
    tags={"machineID": "machine2"},
    time=1_767_227_100.0,
    score=0.83,
    threshold=0.5,
    started=1_767_227_040.0,
    peak=0.9,
    reasons=(FeatureReason("load", 200.0, 48.5, 101.25), FeatureReason("power", 450.0, 190, 230)),
    link="https://grafana.example/d/machines?var-machine=machine2",
)


def test_text_says_what_where_when_how_much_and_why() -> None:
    text = event_text(EVENT)
    assert "machineID=machine2" in text and "machine_data" in text
    assert "2026-01-01 00:25:00 UTC" in text
    assert "0.83 (threshold 0.50)" in text
    assert "anomalous for 1 min 0 s" in text
    assert "load = 200 (normal 48.5 to 101.2)" in text
    assert text.endswith(EVENT.link)


def test_resolve_text_says_how_long_and_the_peak() -> None:
    resolved = AlertEvent(**{**EVENT.__dict__, "kind": "resolve", "time": 1_767_227_400.0})
    assert "back to normal after 6 min 0 s (peak score 0.90" in event_text(resolved)


def test_slack_payload_is_block_kit_with_text_fallback() -> None:
    payload = slack_payload(EVENT)
    assert payload["text"].startswith(":rotating_light: Anomaly:")
    kinds = [block["type"] for block in payload["blocks"]]
    assert kinds == ["header", "section", "section", "context"]
    fields = [f["text"] for f in payload["blocks"][1]["fields"]]
    assert "*Machine*\nmachineID=machine2" in fields
    assert any(f == "*Score*\n0.83 (threshold 0.50)" for f in fields)
    assert "*load* = 200" in payload["blocks"][2]["text"]["text"]


def test_digest_and_json_payload() -> None:
    events = [AlertEvent(**{**EVENT.__dict__, "tags": {"machineID": f"m{i}"}}) for i in range(20)]
    assert digest_text(events).startswith("Digest: 20 anomalous: machineID=m0 (0.83)")
    body = json_payload(events)
    assert len(body["events"]) == 20
    assert body["events"][3]["tags"] == {"machineID": "m3"}
    assert body["events"][0]["reasons"][0]["name"] == "load"


def test_link_template_is_filled_from_tags() -> None:
    tags = {"machineID": "m 7"}
    assert format_link("https://x/{machineID}/{measurement}", tags, "md") == "https://x/m%207/md"
    assert format_link("https://x/{unknown}", tags, "md") == "https://x/"
    hostile = {"machineID": "a|b>c&d=e/f"}
    assert (
        format_link("https://x?m={machineID}", hostile, "md") == "https://x?m=a%7Cb%3Ec%26d%3De%2Ff"
    )
    assert format_link("", tags, "md") == ""

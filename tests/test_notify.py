"""The notifier against a local server that answers like a Slack webhook."""

from __future__ import annotations

import dataclasses
import io
import itertools
import time
from collections.abc import Callable, Iterator

import pytest

from hst_processor.alerts import AlertEvent
from hst_processor.config import AlertsConfig
from hst_processor.log import Log
from hst_processor.notify import Notifier, build_notifier
from tests import slack_server
from tests.slack_server import SlackStandIn


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    stand_in = slack_server.start()
    yield stand_in
    stand_in.close()


def event(machine: str = "machine2", kind: str = "open") -> AlertEvent:
    return AlertEvent(
        kind=kind,
        measurement="machine_data",
        tags={"machineID": machine},
        time=1_767_227_100.0,
        score=0.9,
        threshold=0.5,
        started=1_767_227_090.0,
        peak=0.9,
    )


def notifier_for(url: str, stderr: io.StringIO, **options: float) -> tuple[Notifier, Log]:
    log = Log(stderr)
    config = AlertsConfig(**options)  # type: ignore[arg-type]
    notifier = build_notifier(config, {"SLACK_WEBHOOK_URL": url}, log)
    assert notifier is not None
    return notifier, log


def test_delivers_block_kit_to_slack(slack: SlackStandIn) -> None:
    stderr = io.StringIO()
    notifier, _ = notifier_for(slack.url("ok"), stderr)
    notifier.enqueue(event())
    (received,) = slack.wait_for(1)
    assert received.body["text"].startswith(":rotating_light: Anomaly: machine_data")
    assert received.body["blocks"][0]["type"] == "header"
    notifier.close()
    counters = notifier.counters
    assert (counters.sent, counters.failed, counters.dropped) == (1, 0, 0)


def test_429_waits_for_retry_after_and_delivers_once(slack: SlackStandIn) -> None:
    stderr = io.StringIO()
    notifier, _ = notifier_for(slack.url("ratelimit"), stderr)
    notifier.enqueue(event())
    delivered = slack.wait_for(1, timeout=10)
    assert len(delivered) == 1
    first, second = slack.received[0], slack.received[1]
    assert first.status == 429 and second.status == 200
    assert 1.8 <= second.at - first.at <= 3.5  # Retry-After: 2
    notifier.close()
    assert notifier.counters.retried == 1
    assert len(slack.delivered()) == 1


def test_twenty_machines_at_once_make_a_digest_not_a_flood(slack: SlackStandIn) -> None:
    stderr = io.StringIO()
    notifier, _ = notifier_for(slack.url("ok"), stderr)
    for i in range(20):
        notifier.enqueue(event(f"machine{i}"))
    time.sleep(2.5)
    notifier.close()
    messages = slack.delivered()
    assert 1 <= len(messages) <= 3
    gaps = [b.at - a.at for a, b in itertools.pairwise(messages)]
    assert all(gap >= 0.9 for gap in gaps)  # at most one message per second
    text = " ".join(m.body["text"] for m in messages)
    assert all(f"machineID=machine{i}" in text for i in range(20))
    assert any("Digest:" in m.body["text"] for m in messages)


def test_permanent_4xx_is_logged_once_with_slacks_reason(slack: SlackStandIn) -> None:
    stderr = io.StringIO()
    notifier, _ = notifier_for(slack.url("notfound"), stderr)
    for i in range(3):
        notifier.enqueue(event(f"m{i}"))
        time.sleep(1.1)
    notifier.close()
    errors = [line for line in stderr.getvalue().splitlines() if line.startswith("E! ")]
    assert len(errors) == 1
    assert "HTTP 404 (channel_not_found)" in errors[0]
    assert notifier.counters.failed == 3
    assert notifier.counters.retried == 0


def test_5xx_is_retried_with_backoff_then_given_up(slack: SlackStandIn) -> None:
    stderr = io.StringIO()
    notifier, _ = notifier_for(slack.url("error"), stderr, max_retries=2)
    notifier.enqueue(event())
    deadline = time.monotonic() + 10
    while notifier.counters.failed == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    attempts = [r.at for r in slack.received]
    assert len(attempts) == 3  # the first try and two retries
    assert attempts[2] - attempts[1] > attempts[1] - attempts[0] > 0.3  # backing off
    assert "HTTP 500 (rollup_error)" in stderr.getvalue()
    notifier.close()


def test_hanging_webhook_is_bounded_at_shutdown(slack: SlackStandIn) -> None:
    stderr = io.StringIO()
    notifier, _ = notifier_for(slack.url("slow"), stderr, timeout=30, shutdown_grace=1)
    for i in range(5):
        notifier.enqueue(event(f"m{i}"))
    time.sleep(0.2)
    started = time.monotonic()
    notifier.close()
    assert time.monotonic() - started < 2.5
    counters = notifier.counters
    assert counters.sent == 0
    assert counters.dropped + counters.failed >= 1


def test_full_queue_drops_the_oldest(slack: SlackStandIn) -> None:
    stderr = io.StringIO()
    notifier, _ = notifier_for(slack.url("slow"), stderr, queue_size=2, shutdown_grace=0.2)
    for i in range(6):
        notifier.enqueue(event(f"m{i}"))
    assert notifier.counters.dropped >= 3
    notifier.close()


@pytest.mark.parametrize(
    "behaviour", ["notfound", "error", "echo", "echojson", "echolong", "slow", "refused"]
)
def test_the_webhook_url_never_reaches_the_log(slack: SlackStandIn, behaviour: str) -> None:
    stderr = io.StringIO()
    url = slack_server.refused_url() if behaviour == "refused" else slack.url(behaviour)
    notifier, log = notifier_for(url, stderr, max_retries=1, timeout=0.5, shutdown_grace=1)
    notifier.enqueue(event())
    log.error(f"a careless message that names {url}")
    time.sleep(1.5)
    notifier.close()
    output = stderr.getvalue()
    assert "SECRET" not in output and url not in output
    assert "<redacted>" in output


def test_without_a_webhook_alerts_go_to_the_log() -> None:
    stderr = io.StringIO()
    notifier = build_notifier(AlertsConfig(), {}, Log(stderr))
    assert notifier is not None
    notifier.enqueue(event())
    notifier.close()
    assert stderr.getvalue().startswith("W! alert: Anomaly: machine_data machineID=machine2")


def test_alerts_can_be_switched_off() -> None:
    assert build_notifier(AlertsConfig(enabled=False), {}, Log(io.StringIO())) is None


def wait_until(done: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.parametrize(
    "retry_after",
    ["-5", "0", "nan", "soon", "", "Thu, 01 Jan 1970 00:00:00 GMT"],
)
def test_429_with_an_odd_retry_after_still_pauses_and_gives_up(
    slack: SlackStandIn, retry_after: str
) -> None:
    stderr = io.StringIO()
    notifier, _ = notifier_for(slack.url("retry429", retry_after), stderr, max_retries=1)
    notifier.enqueue(event())
    wait_until(lambda: notifier.counters.failed == 1)
    attempts = [r.at for r in slack.received]
    assert len(attempts) == 2  # the first try and one retry: never a retry without end
    assert attempts[1] - attempts[0] >= 0.9  # never sooner than messages_per_second allows
    notifier.close()
    assert (notifier.counters.sent, notifier.counters.failed, notifier.counters.retried) == (
        0,
        1,
        1,
    )


@pytest.mark.parametrize("retry_after", ["inf", "1e308", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_429_with_an_endless_retry_after_is_bounded_and_counted(
    slack: SlackStandIn, retry_after: str
) -> None:
    stderr = io.StringIO()
    notifier, _ = notifier_for(slack.url("retry429", retry_after), stderr, shutdown_grace=1)
    notifier.enqueue(event())
    wait_until(lambda: notifier.counters.retried == 1)
    started = time.monotonic()
    notifier.close()
    assert time.monotonic() - started < 3.0  # the grace, not the header, bounds the wait
    counters = notifier.counters
    # The sender lived to the end: the alert is accounted for, not silently lost.
    assert (counters.sent, counters.failed + counters.dropped) == (0, 1)


def test_a_redirect_is_a_failure_not_a_delivery(slack: SlackStandIn) -> None:
    stderr = io.StringIO()
    notifier, _ = notifier_for(slack.url("redirect"), stderr)
    notifier.enqueue(event())
    notifier.enqueue(event("machine3"))
    wait_until(lambda: notifier.counters.failed == 2)
    notifier.close()
    assert (notifier.counters.sent, notifier.counters.failed) == (0, 2)
    assert [r.path.split("/")[1] for r in slack.received] == ["redirect", "redirect"]
    assert stderr.getvalue().count("HTTP 307") == 1  # a configuration error: said once


@pytest.mark.parametrize("behaviour", ["endless", "trickle"])
def test_an_endless_or_trickling_body_costs_neither_time_nor_memory(
    slack: SlackStandIn, behaviour: str
) -> None:
    stderr = io.StringIO()
    notifier, _ = notifier_for(slack.url(behaviour), stderr, timeout=1)
    notifier.enqueue(event())
    wait_until(lambda: notifier.counters.sent == 1)
    notifier.close()
    assert (notifier.counters.sent, notifier.counters.failed) == (1, 0)
    # Whatever the server managed to push into the socket buffers, far less than it offered.
    assert slack.body_bytes_sent < 50_000_000


@pytest.mark.parametrize("host", ["a..b", "a" * 70 + ".example", "exa mple.com", "[::1"])
def test_an_invalid_webhook_host_fails_each_alert_and_keeps_the_sender(host: str) -> None:
    stderr = io.StringIO()
    notifier, _ = notifier_for(f"http://{host}/services/T0SECRET/B0SECRET/XTOKEN", stderr)
    notifier.enqueue(event())
    notifier.enqueue(event("machine3"))
    wait_until(lambda: notifier.counters.failed == 2)
    notifier.close()
    assert (notifier.counters.sent, notifier.counters.failed) == (0, 2)
    assert stderr.getvalue().count("invalid URL") == 1
    assert "SECRET" not in stderr.getvalue()


def test_tag_values_cannot_inject_mentions_or_links_into_slack(slack: SlackStandIn) -> None:
    stderr = io.StringIO()
    notifier, _ = notifier_for(slack.url("ok"), stderr)
    hostile = "m1 <!channel> <https://evil.example|Open dashboard> & more"
    notifier.enqueue(dataclasses.replace(event(), tags={"machineID": hostile}))
    (received,) = slack.wait_for(1)
    notifier.close()
    texts = [received.body["text"]] + [
        part["text"]
        for block in received.body["blocks"]
        for part in [block.get("text", {}), *block.get("fields", [])]
        if part.get("type") == "mrkdwn"
    ]
    for text in texts:
        assert "<!channel>" not in text and "<https://evil" not in text
        assert "& " not in text  # a bare ampersand would start an entity
    assert "&lt;!channel&gt;" in received.body["text"]


def test_the_grace_counts_from_the_stop_not_from_the_close(slack: SlackStandIn) -> None:
    stderr = io.StringIO()
    notifier, _ = notifier_for(slack.url("slow"), stderr, timeout=30, shutdown_grace=4)
    notifier.enqueue(event())
    wait_until(lambda: slack.arrived == 1)
    # The stop came 3.5 s ago (the output's drain and the save took that long): 0.5 s remain.
    started = time.monotonic()
    notifier.close(since=started - 3.5)
    assert time.monotonic() - started < 2.5  # not the whole 4 s again
    assert notifier.counters.dropped + notifier.counters.failed == 1


def test_a_token_of_plain_lowercase_letters_is_redacted_too(slack: SlackStandIn) -> None:
    stderr = io.StringIO()
    url = f"{slack.base}/echojson/hooks/incoming/sharedsecrettoken"
    notifier, _ = notifier_for(url, stderr, max_retries=0)
    notifier.enqueue(event())
    wait_until(lambda: notifier.counters.failed == 1)
    notifier.close()
    assert "shared" not in stderr.getvalue()  # not the token, nor a piece of it
    assert "HTTP 404" in stderr.getvalue()  # the failure itself is still said


def test_headers_that_never_end_are_given_up_on_and_retried(slack: SlackStandIn) -> None:
    stderr = io.StringIO()
    notifier, _ = notifier_for(slack.url("slowheaders"), stderr, timeout=1, max_retries=1)
    notifier.enqueue(event())
    wait_until(lambda: notifier.counters.failed == 1, timeout=30)
    notifier.close()
    assert (notifier.counters.failed, notifier.counters.retried) == (1, 1)
    assert slack.arrived == 2  # tried again, not stuck in the first answer
    assert "no complete answer" in stderr.getvalue()


@pytest.mark.parametrize(("behaviour", "sent", "retried"), [("reset", 1, 0), ("reset503", 0, 1)])
def test_a_reset_in_the_body_leaves_the_status_to_count(
    slack: SlackStandIn, behaviour: str, sent: int, retried: int
) -> None:
    stderr = io.StringIO()
    notifier, _ = notifier_for(slack.url(behaviour), stderr, max_retries=1)
    notifier.enqueue(event())
    wait_until(lambda: notifier.counters.sent + notifier.counters.failed == 1)
    notifier.close()
    counters = notifier.counters
    assert (counters.sent, counters.retried, counters.failed) == (sent, retried, 1 - sent)

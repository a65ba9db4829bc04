"""Sending alerts without ever holding up the metrics.

The stdin path only calls :meth:`Notifier.enqueue`, which appends to a bounded queue per sink
and returns at once. Each webhook sink has its own thread that:

* sends at most ``messages_per_second`` messages (Slack allows about one per second);
* when more than ``digest_after`` alerts are waiting, sends one digest instead of a flood;
* retries timeouts, refused connections and 5xx with exponential backoff, and a 429 after the
  ``Retry-After`` it names; treats any other 4xx as permanent and logs it once, with the body
  Slack sends (``channel_not_found``, ``invalid_payload``...);
* drops the oldest alert, counted, when its queue is full;
* on shutdown, gets ``shutdown_grace`` seconds to send what is pending.

Webhook URLs are secrets: they are registered with the log, which replaces them in every line,
and no error message is built from an exception's text (which would name the URL).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hst_processor.alerts import (
    AlertEvent,
    event_text,
    json_payload,
    slack_digest,
    slack_payload,
)
from hst_processor.config import AlertsConfig
from hst_processor.log import Log

__all__ = ["AlertCounters", "LogSink", "Notifier", "Transport", "WebhookSink", "build_notifier"]


@dataclass
class AlertCounters:
    sent: int = 0  # messages delivered
    alerts_sent: int = 0  # alerts in them (a digest carries several)
    retried: int = 0
    dropped: int = 0
    failed: int = 0

    def add(self, other: AlertCounters) -> None:
        for name in ("sent", "alerts_sent", "retried", "dropped", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class Response:
    status: int  # 0: no HTTP answer (timeout, refused)
    body: str = ""
    retry_after: float | None = None
    problem: str = ""  # for status 0: what went wrong, never the URL


class Transport(Protocol):
    """Posts JSON; swappable in tests, ``requests`` in production."""

    def post(self, url: str, payload: Mapping[str, Any], timeout: float) -> Response: ...


class RequestsTransport:
    def __init__(self) -> None:
        import requests  # only when a webhook is configured: it costs start-up time

        self._requests = requests
        self._session = requests.Session()

    def post(self, url: str, payload: Mapping[str, Any], timeout: float) -> Response:
        requests = self._requests
        try:
            answer = self._session.post(url, json=payload, timeout=timeout)
        except requests.Timeout:
            return Response(0, problem="timed out")
        except requests.ConnectionError:
            return Response(0, problem="connection failed")
        except requests.RequestException as error:
            return Response(0, problem=type(error).__name__)
        retry_after = None
        header = answer.headers.get("Retry-After")
        if header is not None:
            try:
                retry_after = float(header)
            except ValueError:
                retry_after = None
        return Response(answer.status_code, answer.text[:200], retry_after)


class LogSink:
    """Alerts as ``W!`` lines on stderr, for a setup with no webhook."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.counters = AlertCounters()

    def enqueue(self, event: AlertEvent) -> None:
        self.log.warn(f"alert: {event_text(event)}")
        self.counters.sent += 1
        self.counters.alerts_sent += 1

    def close(self, deadline: float) -> None:
        del deadline


class WebhookSink:
    """One webhook (Slack or generic JSON), its queue and its sender thread."""

    def __init__(
        self,
        name: str,
        url: str,
        config: AlertsConfig,
        log: Log,
        transport: Transport,
        slack: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.counters = AlertCounters()
        self._url = url
        self._config = config
        self._log = log
        self._transport = transport
        self._slack = slack
        self._clock = clock
        self._pending: deque[AlertEvent] = deque()
        self._wakeup = threading.Condition()
        self._deadline: float | None = None  # set when closing
        self._next_send = 0.0
        self._in_flight = 0
        self._abandoned = False
        self._reported: set[tuple[int, str]] = set()
        self._thread = threading.Thread(target=self._run, name=f"alerts-{name}", daemon=True)
        self._thread.start()

    def enqueue(self, event: AlertEvent) -> None:
        with self._wakeup:
            if self._deadline is not None:
                self.counters.dropped += 1
                return
            self._pending.append(event)
            if len(self._pending) > self._config.queue_size:
                self._pending.popleft()
                self.counters.dropped += 1
            self._wakeup.notify()

    def close(self, deadline: float) -> None:
        with self._wakeup:
            self._deadline = deadline
            self._wakeup.notify()
        self._thread.join(max(0.0, deadline - self._clock()) + 0.2)
        with self._wakeup:
            if self._thread.is_alive():
                # Stuck in a request past the grace: what it holds and what waits are lost.
                self._abandoned = True
                self.counters.dropped += len(self._pending) + self._in_flight
                self._pending.clear()

    # -- the sender thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._pending and self._deadline is None:
                    self._wakeup.wait()
                if not self._pending:
                    return
            if not self._pause_until(self._next_send):
                break
            with self._wakeup:
                if len(self._pending) > self._config.digest_after:
                    batch = list(self._pending)
                    self._pending.clear()
                else:
                    batch = [self._pending.popleft()]
            self._in_flight = len(batch)
            self._deliver(batch)
            self._in_flight = 0
            self._next_send = self._clock() + 1 / self._config.messages_per_second
        with self._wakeup:
            self.counters.dropped += len(self._pending)
            self._pending.clear()

    def _pause_until(self, moment: float) -> bool:
        """Wait until ``moment``; False if the shutdown deadline comes first."""
        with self._wakeup:
            while True:
                now = self._clock()
                if now >= moment:
                    return self._deadline is None or now < self._deadline
                if self._deadline is not None and moment > self._deadline:
                    return False
                self._wakeup.wait(moment - now)

    def _payload(self, batch: Sequence[AlertEvent]) -> dict[str, Any]:
        if not self._slack:
            return json_payload(batch)
        return slack_payload(batch[0]) if len(batch) == 1 else slack_digest(batch)

    def _deliver(self, batch: Sequence[AlertEvent]) -> None:
        payload = self._payload(batch)
        failures = 0
        while True:
            timeout = self._config.timeout
            if self._deadline is not None:
                timeout = min(timeout, max(0.1, self._deadline - self._clock()))
            response = self._transport.post(self._url, payload, timeout)
            if self._abandoned:
                return  # counted as dropped when the processor stopped
            if 200 <= response.status < 300:
                self.counters.sent += 1
                self.counters.alerts_sent += len(batch)
                return
            if response.status == 429:
                delay = response.retry_after if response.retry_after is not None else 1.0
            elif response.status == 0 or response.status >= 500:
                failures += 1
                if failures > self._config.max_retries:
                    self._give_up(batch, response)
                    return
                delay = min(30.0, 0.5 * 2 ** (failures - 1))
            else:
                self._give_up(batch, response)
                return
            self.counters.retried += 1
            if not self._pause_until(self._clock() + delay):
                self._give_up(batch, response)
                return

    def _give_up(self, batch: Sequence[AlertEvent], response: Response) -> None:
        self.counters.failed += 1
        what = response.problem if response.status == 0 else f"HTTP {response.status}"
        detail = response.body.strip().replace("\n", " ")[:100]
        key = (response.status, detail)
        message = f"{self.name} webhook: could not deliver {len(batch)} alert(s): {what}" + (
            f" ({detail})" if detail else ""
        )
        if 400 <= response.status < 500 and response.status != 429:
            if key in self._reported:
                return  # a permanent error: said once
            self._reported.add(key)
            message += "; check the webhook configuration"
        self._log.error(message)


class AlertSink(Protocol):
    """Where alerts go: a webhook, the log, or (offline) a list."""

    counters: AlertCounters

    def enqueue(self, event: AlertEvent) -> None: ...

    def close(self, deadline: float) -> None: ...


class Notifier:
    """Fans each alert out to every configured sink."""

    def __init__(self, sinks: Sequence[AlertSink], shutdown_grace: float) -> None:
        self.sinks = list(sinks)
        self.shutdown_grace = shutdown_grace

    def enqueue(self, event: AlertEvent) -> None:
        for sink in self.sinks:
            sink.enqueue(event)

    def close(self) -> None:
        deadline = time.monotonic() + self.shutdown_grace
        for sink in self.sinks:
            sink.close(deadline)

    @property
    def counters(self) -> AlertCounters:
        total = AlertCounters()
        for sink in self.sinks:
            total.add(sink.counters)
        return total


def build_notifier(
    config: AlertsConfig,
    environ: Mapping[str, str],
    log: Log,
    transport: Transport | None = None,
) -> Notifier | None:
    """The sinks the config and the environment ask for; None when alerts are off."""
    if not config.enabled:
        return None
    sinks: list[AlertSink] = []
    webhooks = [
        (
            "Slack",
            environ.get(config.slack_webhook_env, "") if config.slack_webhook_env else "",
            True,
        ),
        ("JSON", environ.get(config.webhook_env, "") if config.webhook_env else "", False),
    ]
    for name, url, slack in webhooks:
        if not url:
            continue
        log.add_secret(url)
        transport = transport or RequestsTransport()
        sinks.append(WebhookSink(name, url, config, log, transport, slack))
    if config.log or (config.log is None and not sinks):
        sinks.append(LogSink(log))
    return Notifier(sinks, config.shutdown_grace)

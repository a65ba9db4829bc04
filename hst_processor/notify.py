"""Sending alerts without ever holding up the metrics.

The stdin path only calls :meth:`Notifier.enqueue`, which appends to a bounded queue per sink
and returns at once. Each webhook sink has its own thread that:

* sends at most ``messages_per_second`` messages (Slack allows about one per second);
* when more than ``digest_after`` alerts are waiting, sends one digest instead of a flood;
* retries timeouts, refused connections and 5xx with exponential backoff, and a 429 after the
  ``Retry-After`` it names (seconds or an HTTP date, held to 0-60 s; at most ``max_retries``
  times, like any retry); treats any other 4xx, a redirect and an invalid URL as permanent and
  logs each once, with the start of the body Slack sends (``channel_not_found``...);
* reads at most 4 KB of an answer's body, for at most ``timeout`` seconds: a server that
  answers with an endless or trickling body costs neither memory nor time;
* drops the oldest alert, counted, when its queue is full;
* on shutdown, gets ``shutdown_grace`` seconds to send what is pending.

Webhook URLs are secrets: the URL and each of its secret-looking parts (the path, its longer
segments, the query, a user or password) are registered with the log, which replaces them in
every line; no error message is built from an exception's text (which would name the URL).
A server that echoes the path in its error body is redacted by the same rule.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
import urllib.parse
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

__all__ = [
    "AlertCounters",
    "LogSink",
    "Notifier",
    "Transport",
    "WebhookSink",
    "build_notifier",
    "retry_after_seconds",
    "secret_parts",
]

BODY_LIMIT = 4096  # bytes of an answer's body read: enough for Slack's error words
RETRY_AFTER_LIMIT = 60.0  # seconds: a longer Retry-After would hold every alert behind it


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
    permanent: bool = False  # for status 0: retrying cannot help (an invalid URL)


def retry_after_seconds(header: str | None, now: float) -> float | None:
    """The wait a ``Retry-After`` header asks for, held to 0-60 s; None when absent or
    unreadable. ``now`` is the wall clock (seconds since the epoch), for the HTTP-date form.

    >>> retry_after_seconds("2", 0.0), retry_after_seconds("1e9", 0.0)
    (2.0, 60.0)
    >>> retry_after_seconds("Thu, 01 Jan 1970 00:00:30 GMT", 0.0)
    30.0
    >>> retry_after_seconds("nan", 0.0) is None, retry_after_seconds("-5", 0.0)
    (True, 0.0)
    """
    if header is None:
        return None
    text = header.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if moment.tzinfo is None:
            return None
        seconds = moment.timestamp() - now
    if math.isnan(seconds):
        return None
    return min(RETRY_AFTER_LIMIT, max(0.0, seconds))


def secret_parts(url: str) -> list[str]:
    r"""The texts of a webhook URL that must never be printed, longest first: the URL, its
    path, the path's segments and query values that may be a token (12 characters or more,
    or 6 or more that are not a lowercase word: Slack's ``T.../B.../token``), the query and
    any user or password; each also percent-decoded and with ``/`` escaped as JSON may
    escape it (a server that echoes the URL in a JSON error).

    >>> parts = secret_parts("https://hooks.slack.com/services/T0AB12/B0CD34/xyzTOKEN99")
    >>> "xyzTOKEN99" in parts, "T0AB12" in parts, "services" in parts
    (True, True, False)
    >>> r"\/services\/T0AB12\/B0CD34\/xyzTOKEN99" in parts  # as a JSON error may echo it
    True
    >>> "sharedsecrettoken" in secret_parts("https://h.example/incoming/sharedsecrettoken")
    True
    """
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError:
        return []
    pieces = [parsed.path, parsed.path.lstrip("/"), parsed.query, parsed.fragment]
    pieces += [parsed.username or "", parsed.password or ""]
    words = parsed.path.split("/") + [
        value for _, value in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
    ]
    pieces += [w for w in words if len(w) >= 12 or (len(w) >= 6 and not _is_word(w))]
    pieces += [urllib.parse.unquote(p) for p in pieces]
    found: list[str] = []
    for piece in pieces + [p.replace("/", "\\/") for p in pieces] + [url.replace("/", "\\/")]:
        if len(piece) >= 6 and piece not in found and piece != url:
            found.append(piece)
    return sorted(found, key=len, reverse=True)


class Transport(Protocol):
    """Posts JSON; swappable in tests, ``requests`` in production."""

    def post(self, url: str, payload: Mapping[str, Any], timeout: float) -> Response: ...


def _is_word(text: str) -> bool:
    """A path word such as ``services`` or ``incoming-webhooks``, not a token."""
    return all(c.islower() or c == "-" for c in text)


MAX_HANGING_REQUESTS = 4  # requests given up on that may still be waiting for their server


class RequestsTransport:
    """``requests``, with a bound on the whole answer: ``requests`` bounds each read by the
    timeout, so a server that sends its headers a byte at a time would hold a request for
    ever. Each request runs in a thread of its own, and the answer must be complete within
    twice the timeout; a request given up on keeps its thread (and a session of its own)
    until its server lets go, and no more than MAX_HANGING_REQUESTS of them wait at once."""

    def __init__(self) -> None:
        import requests  # only when a webhook is configured: it costs start-up time

        self._requests = requests
        self._session = requests.Session()
        self._hanging: list[threading.Thread] = []

    def post(self, url: str, payload: Mapping[str, Any], timeout: float) -> Response:
        self._hanging = [thread for thread in self._hanging if thread.is_alive()]
        if len(self._hanging) >= MAX_HANGING_REQUESTS:
            return Response(0, problem="earlier requests still wait for an answer")
        answers: list[Response] = []
        session = self._session
        worker = threading.Thread(
            target=lambda: answers.append(self._exchange(session, url, payload, timeout)),
            name="webhook-request",
            daemon=True,
        )
        worker.start()
        worker.join(2 * timeout)
        if answers:
            return answers[0]
        self._hanging.append(worker)
        self._session = self._requests.Session()  # the hanging request keeps the old one
        return Response(0, problem=f"no complete answer within {2 * timeout:g} s")

    def _exchange(
        self, session: Any, url: str, payload: Mapping[str, Any], timeout: float
    ) -> Response:
        requests = self._requests
        try:
            # A webhook that redirects is misconfigured (and requests would turn the POST
            # into a GET); the body is streamed so that only its start is ever read.
            answer = session.post(
                url, json=payload, timeout=timeout, allow_redirects=False, stream=True
            )
        except requests.Timeout:
            return Response(0, problem="timed out")
        except requests.ConnectionError:
            return Response(0, problem="connection failed")
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as error:
            return Response(0, problem=f"invalid URL ({type(error).__name__})", permanent=True)
        except requests.RequestException as error:
            return Response(0, problem=type(error).__name__)
        except ValueError as error:  # urllib3's LocationParseError: a host it cannot parse
            return Response(0, problem=f"invalid URL ({type(error).__name__})", permanent=True)
        except Exception as error:  # any other failure before an answer: worth a retry
            return Response(0, problem=type(error).__name__)
        try:
            body = _read_start(answer.raw, BODY_LIMIT, time.monotonic() + timeout)
        except Exception:  # a reset mid-body (urllib3's ProtocolError), a bad encoding...
            body = b""  # the status is what counts; a broken body changes nothing
        finally:
            answer.close()
        retry_after = retry_after_seconds(answer.headers.get("Retry-After"), time.time())
        return Response(answer.status_code, body.decode("utf-8", "replace"), retry_after)


def _read_start(raw: Any, limit: int, deadline: float) -> bytes:
    """At most ``limit`` bytes of a streamed body, read until ``deadline``: each read returns
    what has arrived (the socket's timeout bounds one read), so a trickle cannot hold on."""
    chunks: list[bytes] = []
    size = 0
    while size < limit and time.monotonic() < deadline:
        chunk = raw.read1(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


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
            try:
                self._deliver(batch)
            except Exception as error:
                # Counted and said, never the exception's text: it could name the URL.
                self.counters.failed += 1
                self._log.error(
                    f"{self.name} webhook: could not deliver {len(batch)} alert(s): "
                    f"unexpected {type(error).__name__}"
                )
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
            transient = response.status == 429 or response.status >= 500
            if not (transient or (response.status == 0 and not response.permanent)):
                self._give_up(batch, response)  # 3xx, other 4xx, an invalid URL
                return
            failures += 1
            if failures > self._config.max_retries:
                self._give_up(batch, response)
                return
            delay = min(30.0, 0.5 * 2 ** (failures - 1))
            if response.status == 429:
                # Never sooner than the configured rate, whatever the header says.
                asked = response.retry_after if response.retry_after is not None else delay
                delay = max(asked, 1 / self._config.messages_per_second)
            self.counters.retried += 1
            if not self._pause_until(self._clock() + delay):
                self._give_up(batch, response)
                return

    def _give_up(self, batch: Sequence[AlertEvent], response: Response) -> None:
        self.counters.failed += 1
        what = response.problem if response.status == 0 else f"HTTP {response.status}"
        # Redacted before it is cut short (a cut through the secret would hide it from the
        # log's own redaction), and only printable characters reach Telegraf's log.
        printable = "".join(c if c.isprintable() else " " for c in self._log.redact(response.body))
        detail = " ".join(printable.split())[:100]
        key = (response.status, detail or what)
        message = f"{self.name} webhook: could not deliver {len(batch)} alert(s): {what}" + (
            f" ({detail})" if detail else ""
        )
        if 300 <= response.status < 400:
            message += " (a redirect: set the webhook's final URL)"
        if response.permanent or (300 <= response.status < 500 and response.status != 429):
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

    def close(self, since: float | None = None) -> None:
        """Give pending alerts ``shutdown_grace`` seconds from ``since`` (``time.monotonic``;
        default now) to go out."""
        deadline = (time.monotonic() if since is None else since) + self.shutdown_grace
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
        for part in secret_parts(url):
            log.add_secret(part)
        transport = transport or RequestsTransport()
        sinks.append(WebhookSink(name, url, config, log, transport, slack))
    if config.log or (config.log is None and not sinks):
        sinks.append(LogSink(log))
    return Notifier(sinks, config.shutdown_grace)

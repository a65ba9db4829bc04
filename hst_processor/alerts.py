"""When a series' anomaly becomes an alert, and what the alert says.

:class:`AlertPolicy` is a small state machine per series, fed one calibrated score at a time:

* an alert **opens** when the score stays at or above the threshold for ``consecutive`` metrics
  (or for ``duration`` seconds);
* while open nothing repeats, except a **reminder** every ``reminder_interval`` seconds;
* it **resolves** when the score stays below the lower ``resolve_threshold`` for
  ``resolve_after`` metrics (hysteresis: a score hovering at the threshold does not flap);
* after a resolve the series opens no new alert for ``cooldown`` seconds.

Times are the metrics' own timestamps (so a replayed file alerts as the live stream did), or the
wall clock for a metric without one. The policy only decides; :mod:`.notify` sends.

>>> from hst_processor.config import AlertsConfig
>>> policy = AlertPolicy(AlertsConfig(consecutive=2, resolve_after=2, cooldown=0), threshold=0.5)
>>> state = AlertState()
>>> [policy.observe(state, score, when) for when, score in enumerate([0.9, 0.8, 0.9, 0.1, 0.1])]
[None, 'open', None, None, 'resolve']
"""

from __future__ import annotations

import string
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hst_processor.config import AlertsConfig
from hst_processor.times import utc_text

__all__ = [
    "AlertEvent",
    "AlertPolicy",
    "AlertState",
    "FeatureReason",
    "digest_text",
    "event_text",
    "json_payload",
    "reason_text",
    "report_line",
    "slack_payload",
]

OPEN, RESOLVE, REMINDER = "open", "resolve", "reminder"


@dataclass
class AlertState:
    """One series' alert state (kept with the series, so it survives with its model)."""

    above: int = 0  # metrics in a row at or above the threshold
    above_since: float | None = None
    below: int = 0  # while open: metrics in a row below the resolve threshold
    is_open: bool = False
    started: float = 0.0  # the first anomalous metric of the current (or last) alert
    peak: float = 0.0
    last_notified: float = 0.0
    quiet_until: float = 0.0  # cooldown end


class AlertPolicy:
    def __init__(self, config: AlertsConfig, threshold: float) -> None:
        self.config = config
        self.threshold = threshold

    def observe(
        self, state: AlertState, score: float, when: float, alone: bool = False
    ) -> str | None:
        """Feed one scored metric; return ``"open"``, ``"resolve"``, ``"reminder"`` or None.
        ``alone``: the metric is enough to open an alert by itself (see ``alone_days``)."""
        config = self.config
        if state.is_open:
            state.peak = max(state.peak, score)
            if score < config.resolve_threshold:
                state.below += 1
                if state.below >= config.resolve_after:
                    state.is_open = False
                    state.above, state.above_since, state.below = 0, None, 0
                    state.quiet_until = when + config.cooldown
                    return RESOLVE
            else:
                state.below = 0
            if config.reminder_interval and when - state.last_notified >= config.reminder_interval:
                state.last_notified = when
                return REMINDER
            return None
        if score < self.threshold:
            state.above, state.above_since = 0, None
            return None
        state.above += 1
        if state.above_since is None:
            state.above_since = when
        if when < state.quiet_until:
            return None
        lasted = config.duration and when - state.above_since >= config.duration
        if state.above >= config.consecutive or lasted or alone:
            state.is_open = True
            state.started = state.above_since
            state.peak = score
            state.below = 0
            state.last_notified = when
            return OPEN
        return None


@dataclass(frozen=True)
class FeatureReason:
    """A feature that drove the score: its value and the range the model takes as normal
    (``None``: no range narrower than the model's whole box, as for a feature the trees
    rarely split on; the box's edges would read as a range that means nothing)."""

    name: str
    value: float
    normal_low: float | None
    normal_high: float | None


@dataclass(frozen=True)
class AlertEvent:
    kind: str  # "open", "resolve" or "reminder"
    measurement: str
    tags: Mapping[str, str]  # the series' identifying tags
    time: float  # of the metric, seconds since the epoch
    score: float
    threshold: float
    started: float  # when the anomaly began
    peak: float
    reasons: Sequence[FeatureReason] = field(default_factory=tuple)
    link: str = ""

    @property
    def machine(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.tags.items()) or self.measurement

    @property
    def lasted(self) -> float:
        return max(0.0, self.time - self.started)


def format_link(template: str, tags: Mapping[str, str], measurement: str) -> str:
    """Fill ``{tag}`` fields from the series' tags (and ``{measurement}``), percent-encoded so
    that a value stays one part of the URL (and cannot end a Slack link); unknown names stay
    empty rather than failing an alert."""
    if not template:
        return ""
    values = {name: "" for _, name, _, _ in string.Formatter().parse(template) if name}
    values.update({name: urllib.parse.quote(value, safe="") for name, value in tags.items()})
    values["measurement"] = urllib.parse.quote(measurement, safe="")
    try:
        return template.format(**values)
    except (ValueError, IndexError, KeyError):
        return ""


# ---------------------------------------------------------------------------------------------
# Messages


def _duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def _number(value: float) -> str:
    return f"{value:.4g}"


def reason_text(reason: FeatureReason, *, name: str | None = None, normal: bool = True) -> str:
    """What one feature said, the one builder every message uses: ``load = 71.5 (normal 60 to
    80)``. ``name`` replaces the feature's name (Slack's escaped bold one); ``normal=False`` is
    the replay report's short form, the value alone. Every channel shows a value the same way,
    to four significant digits.

    >>> reason = FeatureReason("load", 71.54321, 60.0, 80.0)
    >>> reason_text(reason), reason_text(reason, normal=False)
    ('load = 71.54 (normal 60 to 80)', 'load = 71.54')
    >>> reason_text(FeatureReason("load.deviation", 15.49, None, None))
    'load.deviation = 15.49'
    """
    shown = reason.name if name is None else name
    if not normal or reason.normal_low is None or reason.normal_high is None:
        return f"{shown} = {_number(reason.value)}"
    return (
        f"{shown} = {_number(reason.value)} (normal {_number(reason.normal_low)} to "
        f"{_number(reason.normal_high)})"
    )


def event_text(event: AlertEvent) -> str:
    """One line, the plain-text fallback and the log sink's message."""
    if event.kind == RESOLVE:
        text = (
            f"Resolved: {event.measurement} {event.machine} is back to normal after "
            f"{_duration(event.lasted)} (peak score {event.peak:.2f}, at {utc_text(event.time)})"
        )
    else:
        label = "Still anomalous" if event.kind == REMINDER else "Anomaly"
        text = (
            f"{label}: {event.measurement} {event.machine} scored {event.score:.2f} "
            f"(threshold {event.threshold:.2f}) at {utc_text(event.time)}, anomalous for "
            f"{_duration(event.lasted)}"
        )
        if event.reasons:
            text += "; driven by " + "; ".join(reason_text(r) for r in event.reasons)
    if event.link:
        text += f" {event.link}"
    return text


def report_line(event: AlertEvent) -> str:
    """An alert opening as one line of ``hst-processor replay``'s report."""
    reasons = "; ".join(reason_text(r, normal=False) for r in event.reasons)
    return f"alert {event.machine} at {utc_text(event.time)}: score {event.score:.2f} {reasons}"


def slack_escape(text: str) -> str:
    """Text that Slack shows as written: its three control characters as the entities its
    formatting rules ask for, so a tag value cannot become a mention (``<!channel>``) or a
    disguised link.

    >>> slack_escape("<!channel> & <https://x|y>")
    '&lt;!channel&gt; &amp; &lt;https://x|y&gt;'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(event: AlertEvent) -> dict[str, Any]:
    """Slack Block Kit, with ``text`` as the notification fallback. Everything that came
    from the data (tags, measurement, feature names) is escaped before any markup is added."""
    icon = {OPEN: ":rotating_light:", REMINDER: ":warning:", RESOLVE: ":white_check_mark:"}
    title = {OPEN: "Anomaly", REMINDER: "Still anomalous", RESOLVE: "Resolved"}[event.kind]
    machine, measurement = slack_escape(event.machine), slack_escape(event.measurement)
    facts = [
        f"*Machine*\n{machine}",
        f"*Measurement*\n{measurement}",
        f"*Time*\n{utc_text(event.time)}",
    ]
    if event.kind == RESOLVE:
        facts += [f"*Lasted*\n{_duration(event.lasted)}", f"*Peak score*\n{event.peak:.2f}"]
    else:
        facts += [
            f"*Score*\n{event.score:.2f} (threshold {event.threshold:.2f})",
            f"*Anomalous for*\n{_duration(event.lasted)}",
        ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"{title}: {event.machine}"[:150]},
        },
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in facts]},
    ]
    if event.reasons and event.kind != RESOLVE:
        lines = [f"• {reason_text(r, name=f'*{slack_escape(r.name)}*')}" for r in event.reasons]
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "*Driven by*\n" + "\n".join(lines)},
            }
        )
    if event.link:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"<{slack_escape(event.link)}|Open dashboard>"}
                ],
            }
        )
    return {"text": f"{icon[event.kind]} {slack_escape(event_text(event))}", "blocks": blocks}


def digest_text(events: Sequence[AlertEvent]) -> str:
    opened = [e for e in events if e.kind != RESOLVE]
    resolved = [e for e in events if e.kind == RESOLVE]
    parts = []
    if opened:
        parts.append(
            f"{len(opened)} anomalous: "
            + ", ".join(f"{e.machine} ({e.score:.2f})" for e in opened[:20])
            + (" and more" if len(opened) > 20 else "")
        )
    if resolved:
        parts.append(
            f"{len(resolved)} resolved: "
            + ", ".join(e.machine for e in resolved[:20])
            + (" and more" if len(resolved) > 20 else "")
        )
    return "Digest: " + "; ".join(parts)


def slack_digest(events: Sequence[AlertEvent]) -> dict[str, Any]:
    text = slack_escape(digest_text(events))
    lines = [f"• {slack_escape(event_text(e))}" for e in events[:40]]
    return {
        "text": f":rotating_light: {text}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"[:3000]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}},
        ],
    }


def json_payload(events: Sequence[AlertEvent]) -> dict[str, Any]:
    """The generic webhook's body: every event in full, and a one-line summary."""
    return {
        "text": event_text(events[0]) if len(events) == 1 else digest_text(events),
        "events": [
            {**asdict(e), "tags": dict(e.tags), "machine": e.machine, "lasted": e.lasted}
            for e in events
        ],
    }

"""The alert for one series: the policy's verdict, the series, the reasons and the link,
put together into the :class:`~hst_processor.alerts.AlertEvent` a notifier sends.

>>> from hst_processor.alerts import AlertState
>>> event = assemble_alert(
...     "open", ("m", (("id", "a b"),)), 60.0, 0.9, 0.5, AlertState(started=58.0, peak=0.9),
...     (), "https://grafana/d?var-id={id}")
>>> event.tags, event.started, event.link
({'id': 'a b'}, 58.0, 'https://grafana/d?var-id=a%20b')
"""

from __future__ import annotations

from collections.abc import Sequence

from hst_processor.alerts import AlertEvent, AlertState, FeatureReason, format_link

__all__ = ["assemble_alert"]


def assemble_alert(
    kind: str,
    key: tuple[str, tuple[tuple[str, str], ...]],
    when: float,
    score: float,
    threshold: float,
    state: AlertState,
    reasons: Sequence[FeatureReason],
    link_template: str,
) -> AlertEvent:
    """The event of ``kind`` (``open``, ``resolve``, ``reminder``) for the series ``key`` at
    ``when`` (seconds), with the alert ``state`` after the policy saw this metric."""
    measurement, tags = key
    tag_map = dict(tags)
    return AlertEvent(
        kind=kind,
        measurement=measurement,
        tags=tag_map,
        time=when,
        score=score,
        threshold=threshold,
        started=state.started,
        peak=state.peak,
        reasons=tuple(reasons),
        link=format_link(link_template, tag_map, measurement),
    )

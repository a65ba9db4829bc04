"""Times as people read them, always in UTC, and times read back: one way each.

Metrics carry nanoseconds since the epoch; alerts, reports and ``inspect-state`` show seconds
to the second (``2026-01-01 00:00:00 UTC``); labels files show nanoseconds the way InfluxDB
prints them (RFC 3339). A server's local zone never enters: a report must read the same
wherever it was made.

>>> utc_text(1_767_225_600.0)
'2026-01-01 00:00:00 UTC'
>>> iso_time(1_767_225_600_000_000_001)
'2026-01-01T00:00:00.000000001Z'
>>> parse_time("2026-01-01T00:00:00Z") == parse_time("1767225600000000000") == 1767225600000000000
True
"""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["epoch_ns", "file_stamp", "iso_time", "parse_time", "utc_datetime", "utc_text"]


def utc_datetime(seconds: float) -> datetime:
    """An aware UTC time from seconds since the epoch (rounded to the microsecond)."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def utc_text(seconds: float) -> str:
    """Seconds since the epoch as ``YYYY-MM-DD HH:MM:SS UTC``; a time no calendar shows (a
    damaged snapshot's, say) is written as the number, never an error.

    >>> utc_text(float("nan"))
    'nan s after 1970'
    """
    try:
        return f"{utc_datetime(seconds):%Y-%m-%d %H:%M:%S} UTC"
    except (OverflowError, OSError, ValueError):
        return f"{seconds!r} s after 1970"


def file_stamp(seconds: float) -> str:
    """A moment as part of a file name, in UTC (``20260101T000000Z``): sorts as it happened.

    >>> file_stamp(1_767_225_600.0)
    '20260101T000000Z'
    """
    return f"{utc_datetime(seconds):%Y%m%dT%H%M%S}Z"


def iso_time(time_ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds, the way InfluxDB prints times."""
    seconds, nanoseconds = divmod(time_ns, 1_000_000_000)
    return f"{utc_datetime(seconds):%Y-%m-%dT%H:%M:%S}.{nanoseconds:09d}Z"


def epoch_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch of an aware time, exact to its microsecond.

    >>> epoch_ns(datetime(2026, 1, 1, tzinfo=timezone.utc))
    1767225600000000000
    """
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def parse_time(text: str) -> int:
    """Nanoseconds since the epoch from digits or an RFC 3339 time (``Z`` or an offset); a
    time without a zone is refused rather than guessed.

    >>> parse_time("2026-01-01T01:00:00+01:00")
    1767225600000000000
    """
    if text.isdigit():
        return int(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return epoch_ns(moment)

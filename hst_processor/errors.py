"""Every exception hst-processor raises on purpose, drawn in one place.

::

    HstProcessorError
    ├── ConfigError            a bad configuration: names the key and the reason (exit code 2)
    └── LineProtocolError      a metric that does not parse under Telegraf's grammar
        └── UnterminatedString the text ended inside a quoted string field (it may go on
                               after the next newline)
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "HstProcessorError",
    "LineProtocolError",
    "UnterminatedString",
]


class HstProcessorError(Exception):
    """Base class of every error hst-processor raises deliberately."""


class ConfigError(HstProcessorError):
    """A configuration value is missing, of the wrong type or out of range.

    ``key`` is the dotted path of the offending option (``model.height``), so the message
    tells the operator exactly what to fix.
    """

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}" if key else reason)


class LineProtocolError(HstProcessorError):
    """A metric does not follow Telegraf's line-protocol grammar.

    ``position`` is the 0-based character offset in the metric's text where parsing stopped.
    """

    def __init__(self, reason: str, position: int) -> None:
        self.reason = reason
        self.position = position
        super().__init__(f"{reason} at column {position + 1}")


class UnterminatedString(LineProtocolError):
    """The text ended inside a quoted string field.

    Telegraf allows a raw newline inside a string field, so a splitter that sees this at the
    end of a physical line must join the next line before deciding.
    """

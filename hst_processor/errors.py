"""Every exception hst-processor raises on purpose, drawn in one place, and the exit codes the
command ends with.

::

    HstProcessorError
    ├── ConfigError            a bad configuration: names the key and the reason (exit code 2)
    ├── MissingExtra           an optional dependency is not installed: names the extra that
    │                          brings it (exit code 2)
    ├── state.StateError       a snapshot file that cannot be used (truncated, corrupt, another
    │                          format or version)
    ├── partition.PartitionError  snapshots that cannot be re-partitioned together
    └── LineProtocolError      a metric that does not parse under Telegraf's grammar
        └── UnterminatedString the text ended inside a quoted string field (it may go on
                               after the next newline)

    ExitCode                   0 done, 1 the work could not be done, 2 bad usage (the table
                               the README documents)
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ConfigError",
    "ExitCode",
    "HstProcessorError",
    "LineProtocolError",
    "MissingExtra",
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


class MissingExtra(HstProcessorError):
    """What was asked for needs an optional dependency that is not installed.

    The message is one line that names the extra to install:

    >>> print(MissingExtra("plot", "matplotlib", "plot"))
    plot needs matplotlib, which is not installed: pip install 'hst-processor[plot]'
    """

    def __init__(self, needed_by: str, package: str, extra: str) -> None:
        self.needed_by, self.package, self.extra = needed_by, package, extra
        super().__init__(
            f"{needed_by} needs {package}, which is not installed: "
            f"pip install 'hst-processor[{extra}]'"
        )


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


class ExitCode(IntEnum):
    """How every ``hst-processor`` command ends: one table for the processor and the tools.

    Telegraf restarts a processor that exits at all, so the codes are for people and scripts
    running the commands: 1 says "try again with what the message asks for", 2 says "the command
    line or the config is wrong" (argparse exits 2 for a bad argument too).
    """

    OK = 0
    """Done: the stream ended or a stop signal came (the state saved), or a tool finished."""
    FAILED = 1
    """The work could not be done: a file that cannot be read or written, a state file in use or
    damaged, a selector that matches nothing, a file with nothing to score."""
    USAGE = 2
    """A bad configuration or argument, or an optional dependency that is not installed."""

"""InfluxDB line protocol in Telegraf's dialect: a light view over a metric's text.

Telegraf reads what we print, so where implementations of line protocol disagree this module
follows Telegraf's parser (``plugins/parsers/influx/machine.go.rl``):

* leading spaces and tabs before the measurement are accepted;
* ``\\\\`` in a measurement, tag key or tag value stays two characters;
* integers with leading zeros (``01i``) are rejected, while ``00.42`` is a valid float;
* a duplicate tag key is not an error: the later value wins;
* in a string field only ``\\"`` and ``\\\\`` are escapes.

We never re-format what we were given. :func:`parse_metric` records where the tag set and the
field set end, and :func:`enrich` adds tags and fields by inserting text at those offsets, so
every character of the input survives in the output.

Text is handled as ``str``. The processor decodes stdin with ``surrogateescape``, which makes
any byte sequence round-trip exactly; a metric holding a lone surrogate was not UTF-8.

>>> m = parse_metric("machine,machineID=m1 load=71.5,power=210i 1700000000")
>>> m.measurement, m.tags, m.fields["power"], m.timestamp
('machine', {'machineID': 'm1'}, 210, 1700000000)
>>> enrich(m, tags=[("anomaly", "false")], fields=[("anomaly_score", format_float(0.25))])
'machine,anomaly=false,machineID=m1 load=71.5,power=210i,anomaly_score=0.25 1700000000'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from hst_processor.errors import LineProtocolError, UnterminatedString

__all__ = [
    "FieldValue",
    "Metric",
    "MetricSplitter",
    "Unsigned",
    "enrich",
    "enrich_text",
    "escape_field_key",
    "escape_tag",
    "format_float",
    "format_metric",
    "format_string",
    "insert_position",
    "is_blank",
    "is_comment",
    "is_numeric",
    "line_body",
    "parse_metric",
    "split_metrics",
]


class Unsigned(int):
    """An unsigned integer field (``42u``), kept apart from a signed one (``42i``)."""

    __slots__ = ()


FieldValue = float | int | bool | str

# Telegraf's `ws`: the separators between measurement/tags, fields and timestamp.
_WS = " \t\v\f"
# Characters that end a tag key or value, or a field key, unless escaped.
_KEY_STOP = "\t\n\f\r ,=\\"
_MEASUREMENT_STOP = "\t\n\f\r ,\\"
# A backslash may escape anything but these (in tags, `\\` is special: see _scan_token).
_NOT_ESCAPABLE = "\t\n\f\r"
# Characters that end an unquoted field value.
_VALUE_STOP = ", \t\v\f\r\n"

_INT_RE = re.compile(r"-?(?:0|[1-9][0-9]*)i")
_UINT_RE = re.compile(r"(?:0|[1-9][0-9]*)u")
_FLOAT_ENDINGS = frozenset("0123456789.")
_TIMESTAMP_RE = re.compile(r"-?[0-9]{1,19}")
_TRUE = frozenset({"true", "TRUE", "True", "T", "t"})
_FALSE = frozenset({"false", "FALSE", "False", "F", "f"})

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT64_MAX = 2**64 - 1


@dataclass(slots=True)
class Metric:
    """One parsed metric and the offsets where new tags and fields can be inserted.

    ``text`` is the metric exactly as received, without its line terminator.
    ``tag_starts`` holds, for each tag in input order, its unescaped key and the offset of the
    comma that introduces it; ``series_end`` is the offset just past the last tag (or the
    measurement), and ``fields_end`` the offset just past the last field value.
    """

    text: str
    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    timestamp: int | None
    tag_starts: list[tuple[str, int]]
    series_end: int
    fields_end: int


# ---------------------------------------------------------------------------------------------
# Parsing


def parse_metric(text: str) -> Metric:
    """Parse one metric (no line terminator) or raise :class:`LineProtocolError`."""
    # Six substring tests are several times faster than one regex search for these characters.
    if not (
        '"' in text or "\\" in text or "\t" in text or "\v" in text or "\f" in text or "\r" in text
    ):
        parts = text.split(" ")
        if 2 <= len(parts) <= 3 and all(parts):
            return _parse_simple(text, parts)
    return _parse_careful(text)


# Telegraf writes the same measurement and tags for every metric of a series, so the parsed
# series part is cached by its text. Cached tag dicts are shared: Metric.tags is read-only.
_SERIES_CACHE: dict[str, tuple[str, dict[str, str], list[tuple[str, int]]]] = {}
_SERIES_CACHE_LIMIT = 100_000
# A series text longer than this is parsed each time rather than kept: the cache holds at most
# 100,000 of them, and measured at 4 KB each that was 280 MB for metrics nobody even scores.
_SERIES_CACHE_MAX_TEXT = 512  # so the cache holds at most about 50 MB of text


def _parse_simple(text: str, parts: list[str]) -> Metric:
    """The common case: no quotes, escapes or odd whitespace, single spaces between sections."""
    series, field_set = parts[0], parts[1]
    cached = _SERIES_CACHE.get(series)
    if cached is None:
        cached = _parse_simple_series(series)
        if len(series) <= _SERIES_CACHE_MAX_TEXT:
            if len(_SERIES_CACHE) >= _SERIES_CACHE_LIMIT:
                _SERIES_CACHE.clear()
            _SERIES_CACHE[series] = cached
    measurement, tags, tag_starts = cached
    series_end = len(series)
    fields: dict[str, FieldValue] = {}
    for pair in field_set.split(","):
        key, equals, value = pair.partition("=")
        if not key or not equals or "=" in value:
            raise LineProtocolError("expected field", series_end + 1 + field_set.find(pair))
        # Floats are most fields: take them here; _field_value has the rules for the rest.
        if (
            value[-1:] in _FLOAT_ENDINGS
            and value.isascii()
            and value[0] != "+"
            and "_" not in value
        ):
            try:
                number = float(value)
            except ValueError:
                pass
            else:
                if number - number == 0:
                    fields[key] = number
                    continue
        fields[key] = _field_value(value, series_end + 1 + field_set.find(pair) + len(key) + 1)
    fields_end = series_end + 1 + len(field_set)
    timestamp = None
    if len(parts) == 3:
        stamp = parts[2]
        if stamp.isdigit() and stamp.isascii() and len(stamp) <= 19:
            timestamp = int(stamp)  # the usual case: a positive number of nanoseconds
            if timestamp > _INT64_MAX:
                raise LineProtocolError("expected timestamp", fields_end + 1)
        else:
            timestamp = _timestamp(stamp, fields_end + 1)
    return Metric(text, measurement, tags, fields, timestamp, tag_starts, series_end, fields_end)


def _parse_simple_series(series: str) -> tuple[str, dict[str, str], list[tuple[str, int]]]:
    names = series.split(",")
    measurement = names[0]
    if not measurement:
        raise LineProtocolError("expected measurement name", 0)
    tags: dict[str, str] = {}
    tag_starts: list[tuple[str, int]] = []
    offset = len(measurement)
    for pair in names[1:]:
        key, equals, value = pair.partition("=")
        if not key or not equals or not value or "=" in value:
            raise LineProtocolError("expected tag", offset + 1)
        tags[key] = value
        tag_starts.append((key, offset))
        offset += len(pair) + 1
    return measurement, tags, tag_starts


def _parse_careful(text: str) -> Metric:
    """Telegraf's grammar character by character, for escapes, quotes and odd whitespace."""
    n = len(text)
    i = _skip(text, 0, _WS)
    start = i
    i = _scan_token(text, start, _MEASUREMENT_STOP)
    if i == start:
        raise LineProtocolError("expected measurement name", start)
    measurement = _unescape_name(text[start:i])

    tags: dict[str, str] = {}
    tag_starts: list[tuple[str, int]] = []
    while i < n and text[i] == ",":
        comma = i
        key_end = _scan_token(text, i + 1, _KEY_STOP, in_tag=True)
        if key_end == i + 1 or key_end >= n or text[key_end] != "=":
            raise LineProtocolError("expected tag", key_end)
        value_end = _scan_token(text, key_end + 1, _KEY_STOP, in_tag=True)
        if value_end == key_end + 1:
            raise LineProtocolError("expected tag", value_end)
        key = _unescape_key(text[i + 1 : key_end])
        tags[key] = _unescape_key(text[key_end + 1 : value_end])
        tag_starts.append((key, comma))
        i = value_end
    series_end = i

    if i >= n or text[i] not in _WS:
        raise LineProtocolError("expected tag" if i >= n else "expected field", i)
    i = _skip(text, i, _WS)
    fields: dict[str, FieldValue] = {}
    while True:
        key_end = _scan_token(text, i, _KEY_STOP)
        if key_end == i or key_end >= n or text[key_end] != "=":
            raise LineProtocolError("expected field", key_end)
        key = _unescape_key(text[i:key_end])
        i = key_end + 1
        if i < n and text[i] == '"':
            i, fields[key] = _string_value(text, i)
        else:
            value_end = i
            while value_end < n and text[value_end] not in _VALUE_STOP:
                value_end += 1
            fields[key] = _field_value(text[i:value_end], i)
            i = value_end
        if i < n and text[i] == ",":
            i += 1
            continue
        break
    fields_end = i

    timestamp = None
    if i < n:
        if text[i] not in _WS:
            raise LineProtocolError("expected field", i)
        i = _skip(text, i, _WS)
        if i < n:
            ts_end = i
            while ts_end < n and text[ts_end] not in _WS:
                ts_end += 1
            timestamp = _timestamp(text[i:ts_end], i)
            i = _skip(text, ts_end, _WS)
            if i < n:
                raise LineProtocolError("expected timestamp", i)
    return Metric(text, measurement, tags, fields, timestamp, tag_starts, series_end, fields_end)


def _skip(text: str, i: int, chars: str) -> int:
    n = len(text)
    while i < n and text[i] in chars:
        i += 1
    return i


def _scan_token(text: str, i: int, stop: str, *, in_tag: bool = False) -> int:
    """Return the end of a measurement, tag key, tag value or field key starting at ``i``."""
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n or text[i + 1] in _NOT_ESCAPABLE:
                raise LineProtocolError("invalid escape", i)
            # In tags, Telegraf reads `\\` as one backslash followed by a fresh character, so
            # the second backslash may itself escape what follows (`two\\ words`).
            i += 1 if in_tag and text[i + 1] == "\\" else 2
        elif c in stop:
            break
        else:
            i += 1
    return i


def _string_value(text: str, quote: int) -> tuple[int, str]:
    """Scan a quoted string field starting at ``quote``; return the end offset and value."""
    n = len(text)
    i = quote + 1
    has_escape = False
    while i < n:
        c = text[i]
        if c == '"':
            raw = text[quote + 1 : i]
            value = raw.replace('\\"', '"').replace("\\\\", "\\") if has_escape else raw
            return i + 1, value
        if c == "\\":
            if i + 1 < n and text[i + 1] in '\\"':
                has_escape = True
                i += 2
                continue
            if i + 1 >= n:
                break
            raise LineProtocolError("invalid escape in string field", i)
        if c == "\f":
            raise LineProtocolError("invalid character in string field", i)
        i += 1
    raise UnterminatedString("unterminated string field", quote)


def _field_value(token: str, position: int) -> FieldValue:
    if not token:
        raise LineProtocolError("expected field value", position)
    last = token[-1]
    if last in _FLOAT_ENDINGS:
        # float() accepts a superset of Telegraf's floats: also `+1`, `1_0`, non-ASCII digits
        # and inf/nan (which end in a letter, so never get here). Exclude the rest up front.
        if token.isascii() and token[0] != "+" and "_" not in token:
            try:
                number = float(token)
            except ValueError:
                pass
            else:
                if number - number == 0:  # finite: Telegraf rejects an overflow to inf
                    return number
                raise LineProtocolError("float out of range", position)
    elif last == "i":
        if _INT_RE.fullmatch(token):
            value = int(token[:-1])
            if _INT64_MIN <= value <= _INT64_MAX:
                return value
            raise LineProtocolError("integer out of range", position)
    elif last == "u":
        if _UINT_RE.fullmatch(token):
            unsigned = int(token[:-1])
            if unsigned <= _UINT64_MAX:
                return Unsigned(unsigned)
            raise LineProtocolError("unsigned integer out of range", position)
    elif token in _TRUE:
        return True
    elif token in _FALSE:
        return False
    raise LineProtocolError("invalid field value", position)


def _timestamp(token: str, position: int) -> int:
    if _TIMESTAMP_RE.fullmatch(token):
        value = int(token)
        if _INT64_MIN <= value <= _INT64_MAX:
            return value
    raise LineProtocolError("expected timestamp", position)


def _unescape_name(raw: str) -> str:
    if "\\" in raw:
        return raw.replace("\\,", ",").replace("\\ ", " ")
    return raw


# Telegraf's `unescape` only rewrites a token that holds a space, comma or equals sign; its
# replacer works left to right in one pass, which a regex alternation reproduces.
_KEY_ESCAPE_RE = re.compile(r'\\([, ="])')


def _unescape_key(raw: str) -> str:
    if "\\" in raw and any(c in raw for c in " ,="):
        return _KEY_ESCAPE_RE.sub(r"\1", raw)
    return raw


# ---------------------------------------------------------------------------------------------
# Splitting a stream into metrics


def is_numeric(value: object) -> bool:
    """An integer or float (a boolean is neither, though Python says otherwise): a field value
    the model can read, and the one test of a number in config and snapshot values too."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def line_body(line: str) -> str:
    r"""A line without its ending, ``\n`` or ``\r\n``: the text a metric is parsed from.

    >>> line_body("m x=1 1\r\n"), line_body("m x=1 1\n"), line_body("m x=1 1")
    ('m x=1 1', 'm x=1 1', 'm x=1 1')
    """
    body = line[:-1] if line[-1:] == "\n" else line
    return body[:-1] if body[-1:] == "\r" else body


def is_blank(text: str) -> bool:
    """True for a line holding only whitespace (Telegraf skips it)."""
    return not text.strip(_WS + "\r\n")


def is_comment(text: str) -> bool:
    """True for a comment line: optional whitespace, then ``#`` (Telegraf skips it)."""
    return text.lstrip(_WS).startswith("#")


def split_metrics(buffer: str) -> tuple[list[str], str]:
    """Cut ``buffer`` into complete metrics, each with its own line terminator.

    A newline ends a metric unless it falls inside a quoted string field, which Telegraf's
    grammar allows; such a metric runs on to a later newline. Returns the metrics and the
    incomplete rest of the buffer (to be completed by later input, or flushed as it is).
    """
    splitter = MetricSplitter()
    return splitter.feed(buffer), splitter.held


# Where the search for the end of the held (first incomplete) metric stands: on its first line,
# inside a string field that ran past a newline, or in the field set after such a string.
_FIRST_LINE, _STRING, _AFTER_STRING, _KEY_START, _KEY, _VALUE_START, _VALUE, _TO_NEWLINE = range(8)
# The longest runs each state can skip at once (C speed, not a Python loop per character).
_STRING_BODY = re.compile(r'[^"\\\f]*(?:\\[\\"][^"\\\f]*)*')
_KEY_BODY = re.compile(r"[^\t\n\f\r ,=\\]*(?:\\[^\t\n\f\r][^\t\n\f\r ,=\\]*)*")
_VALUE_BODY = re.compile(r"[^, \t\v\f\r\n]*")
_LINES = re.compile(r"[^\n]*\n")


class MetricSplitter:
    """:func:`split_metrics` for a stream: text goes in piece by piece, complete metrics come out.

    The held metric keeps where its scan stopped, so each character is read about once however
    the text arrives: a metric whose string field holds thousands of newlines, or a line that
    opens a string and never closes it, costs time in proportion to its length, not its square.
    Only the first line of each metric is parsed (to tell a string field from a quote in a tag);
    past a newline inside a string, a small scanner follows the field set to the metric's end.

    >>> splitter = MetricSplitter()
    >>> splitter.feed('m s="two\\nlines" 1\\nm s="open\\nm v=1 2\\n'), splitter.holds_lines
    (['m s="two\\nlines" 1\\n'], True)
    >>> splitter.release_first_line(), splitter.feed("")
    ('m s="open\\n', ['m v=1 2\\n'])
    """

    def __init__(self) -> None:
        self._buffer = ""  # the held metric and whatever follows it; the metric starts at 0
        self._state = _FIRST_LINE
        self._scan = 0  # in _buffer: where the search for the held metric's end resumes
        self._consumed = 0  # characters of the stream before _buffer

    @property
    def held(self) -> str:
        """The text not yet returned: an incomplete metric."""
        return self._buffer

    @property
    def held_start(self) -> int:
        """Where the held text starts, in characters since the first :meth:`feed`."""
        return self._consumed

    @property
    def holds_lines(self) -> bool:
        """True when the held metric spans a newline (a string field is still open)."""
        return self._state != _FIRST_LINE

    def feed(self, text: str) -> list[str]:
        """The metrics that ``text`` completes, in order, each with its line terminator."""
        buffer = self._buffer
        self._buffer = ""  # the only reference left: CPython extends a held metric in place
        buffer += text
        metrics: list[str] = []
        start = 0
        # Where the text's complete lines end (-1: none). The held text has no newline that
        # matters before ``_scan``, so this search, like those after it, stays within the new
        # text: a long line arriving in small pieces costs time in proportion to its length.
        last_newline = buffer.rfind("\n", self._scan)
        while True:
            if self._state == _FIRST_LINE and last_newline >= start:
                start = self._plain_lines(buffer, start, last_newline, metrics)
            end = self._end_of_metric(buffer, start)
            if end < 0:
                break
            metrics.append(buffer[start : end + 1])
            start = end + 1
            self._state, self._scan = _FIRST_LINE, start
        if start:
            buffer = buffer[start:]
            self._scan -= start
            self._consumed += start
        self._buffer = buffer
        return metrics

    def _plain_lines(self, buffer: str, start: int, last_newline: int, metrics: list[str]) -> int:
        """The lines from ``start`` up to the first with a quote added to ``metrics``, cut in
        one C call (a line without a quote holds no string field: it ends at its newline,
        and most streams never quote at all); where the scan goes on."""
        quote = buffer.find('"', start, last_newline)
        end = last_newline + 1 if quote < 0 else buffer.rfind("\n", start, quote) + 1
        if end > start:
            metrics += _LINES.findall(buffer, start, end)
            self._scan = end
            return end
        return start

    def release_first_line(self) -> str:
        """Give up on the held metric's first line (it opened a string that never closed): it
        is returned alone, and the text after it is scanned afresh by the next :meth:`feed`."""
        line, newline, rest = self._buffer.partition("\n")
        self._buffer, self._state, self._scan = rest, _FIRST_LINE, 0
        self._consumed += len(line) + len(newline)
        return line + newline

    def release_lines(self) -> list[str]:
        """Give up on every complete line held: each is returned as it is, and the text after
        the last newline is scanned afresh by the next :meth:`feed`."""
        last = self._buffer.rfind("\n") + 1
        lines = [line + "\n" for line in self._buffer[: last - 1].split("\n")] if last else []
        self._buffer, self._state, self._scan = self._buffer[last:], _FIRST_LINE, 0
        self._consumed += last
        return lines

    def take_held(self) -> str:
        """The held text, which is no longer held."""
        held, self._buffer, self._state, self._scan = self._buffer, "", _FIRST_LINE, 0
        self._consumed += len(held)
        return held

    def _end_of_metric(self, buffer: str, start: int) -> int:
        """The newline that ends the metric starting at ``start``, or -1 (the scan's place
        kept) when ``buffer`` ends before it."""
        state, i, n = self._state, self._scan, len(buffer)
        while True:
            if state in (_FIRST_LINE, _TO_NEWLINE):
                newline = buffer.find("\n", i)
                if newline < 0:
                    self._state, self._scan = state, n
                    return -1
                if state == _TO_NEWLINE or buffer.find('"', start, newline) < 0:
                    return newline
                try:
                    _parse_careful(buffer[start:newline].rstrip("\r"))
                except UnterminatedString as error:  # the newline is inside a string field
                    state, i = _STRING, start + error.position + 1
                    continue
                except LineProtocolError:
                    pass
                return newline
            if state == _STRING:
                i = _STRING_BODY.match(buffer, i).end()  # type: ignore[union-attr]
                if i >= n or (buffer[i] == "\\" and i + 1 >= n):
                    break
                # The closing quote; else an escape or character no string may hold.
                state, i = (_AFTER_STRING, i + 1) if buffer[i] == '"' else (_TO_NEWLINE, i)
            elif i >= n:
                break
            elif state == _AFTER_STRING:
                state = _KEY_START if buffer[i] == "," else _TO_NEWLINE
                i += state == _KEY_START
            elif state == _KEY_START:
                state = _KEY if buffer[i] != "=" else _TO_NEWLINE  # a key may not be empty
            elif state == _KEY:
                i = _KEY_BODY.match(buffer, i).end()  # type: ignore[union-attr]
                if i >= n or (buffer[i] == "\\" and i + 1 >= n):
                    break
                state = _VALUE_START if buffer[i] == "=" else _TO_NEWLINE
                i += state == _VALUE_START
            elif state == _VALUE_START:
                state = _STRING if buffer[i] == '"' else _VALUE
                i += state == _STRING
            else:  # _VALUE: a number or boolean, then another field or the timestamp
                i = _VALUE_BODY.match(buffer, i).end()  # type: ignore[union-attr]
                if i >= n:
                    break
                state = _KEY_START if buffer[i] == "," else _TO_NEWLINE
                i += state == _KEY_START
        self._state, self._scan = state, i
        return -1


# ---------------------------------------------------------------------------------------------
# Writing


def escape_tag(text: str) -> str:
    """Escape a tag key or value the way Telegraf's serializer does."""
    return text.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def escape_field_key(text: str) -> str:
    """Escape a field key the way Telegraf's serializer does."""
    return escape_tag(text)


def format_float(value: float) -> str:
    """Format a finite float as Telegraf does: shortest exact digits, no exponent, no ``.0``."""
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    if text.endswith(".0"):
        text = text[:-2]
    return text


def format_string(value: str) -> str:
    """A string field value as Telegraf writes it: double-quoted, ``\\`` and ``"`` escaped.

    >>> print(format_string('say "hi"'))
    "say \\"hi\\""
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def escape_measurement(text: str) -> str:
    """Escape a measurement the way Telegraf's serializer does (``=`` needs none)."""
    return text.replace(",", "\\,").replace(" ", "\\ ")


def format_metric(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, int | float | str],
    time_ns: int,
) -> str:
    """A new metric's line as Telegraf writes one: tags sorted by key, empty tag values
    dropped, integers with ``i``; a float that is not finite is dropped, as the serializer does.

    >>> print(format_metric("hst processor", {"host": "gw-1"}, {"n": 3, "p99_ms": 1.5}, 7), end="")
    hst\\ processor,host=gw-1 n=3i,p99_ms=1.5 7
    """
    # A tag ending in a backslash would escape the separator after it: it loses that end.
    trimmed = {key.rstrip("\\"): value.rstrip("\\") for key, value in tags.items()}
    tag_text = "".join(
        f",{escape_tag(key)}={escape_tag(value)}" for key, value in sorted(trimmed.items()) if value
    )
    field_texts = []
    for key, value in fields.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = f"{value}i"
        elif isinstance(value, float):
            if not math.isfinite(value):
                continue
            text = format_float(value)
        else:
            text = format_string(value)
        field_texts.append(f"{escape_field_key(key)}={text}")
    return f"{escape_measurement(measurement)}{tag_text} {','.join(field_texts)} {time_ns}\n"


def insert_position(metric: Metric, key: str) -> int:
    """Where a tag with this (unescaped) key goes: before the first existing tag whose key
    sorts after it, so sorted input stays sorted, and after an existing tag of the same key,
    so that ours wins under Telegraf's later-wins rule."""
    for existing_key, comma in metric.tag_starts:
        if existing_key > key:
            return comma
    return metric.series_end


def enrich_text(metric: Metric, tag_key: str, tag_text: str, fields_text: str) -> str:
    """The hot path of :func:`enrich` for one tag: the pieces come escaped and formatted
    (``tag_text`` is ``,key=value``; ``fields_text`` is ``,key=value...`` or empty)."""
    text = metric.text
    position = insert_position(metric, tag_key)
    end = metric.fields_end
    return text[:position] + tag_text + text[position:end] + fields_text + text[end:]


def enrich(
    metric: Metric,
    *,
    tags: Sequence[tuple[str, str]] = (),
    fields: Sequence[tuple[str, str]] = (),
) -> str:
    """Insert tags and fields into a metric's text, leaving every original character in place.

    ``tags`` are ``(key, value)`` pairs, unescaped; each goes before the first existing tag
    whose key sorts after it (so sorted input stays sorted), and after an existing tag of the
    same key, so that ours wins under Telegraf's later-wins rule. ``fields`` are
    ``(key, formatted value)`` pairs appended after the last field.
    """
    insertions: list[tuple[int, str]] = []
    for key, value in tags:
        insertions.append((insert_position(metric, key), f",{escape_tag(key)}={escape_tag(value)}"))
    if fields:
        added = ",".join(f"{escape_field_key(key)}={value}" for key, value in fields)
        insertions.append((metric.fields_end, "," + added))
    insertions.sort(key=lambda insertion: insertion[0])
    text = metric.text
    pieces: list[str] = []
    cursor = 0
    for position, addition in insertions:
        pieces.append(text[cursor:position])
        pieces.append(addition)
        cursor = position
    pieces.append(text[cursor:])
    return "".join(pieces)

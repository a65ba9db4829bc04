"""Hypothesis strategies for metrics as Telegraf's influx serializer writes them."""

from __future__ import annotations

from hypothesis import strategies as st

from hst_processor.lineproto import escape_tag, format_float

# No `z` anywhere, so the markers the tests add (`zz_...`) can never occur in generated text.
_NAME_ALPHABET = st.sampled_from("abcdefghijklmnopqrstuvwxy_0123456789 ,=-.é☺")
_STRING_ALPHABET = st.sampled_from('abcxy 09,=\\"\n\t.é')


def _name(min_size: int = 1) -> st.SearchStrategy[str]:
    return st.text(_NAME_ALPHABET, min_size=min_size, max_size=8).filter(
        lambda s: not s.startswith("#")
    )


def _measurement() -> st.SearchStrategy[str]:
    return _name().map(lambda s: s.replace(",", "\\,").replace(" ", "\\ "))


def _field_value() -> st.SearchStrategy[str]:
    floats = st.floats(allow_nan=False, allow_infinity=False, width=64).map(format_float)
    ints = st.integers(-(2**63), 2**63 - 1).map(lambda i: f"{i}i")
    uints = st.integers(0, 2**64 - 1).map(lambda i: f"{i}u")
    bools = st.sampled_from(["true", "false"])
    strings = st.text(_STRING_ALPHABET, max_size=12).map(
        lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    )
    return st.one_of(floats, ints, uints, bools, strings)


@st.composite
def metric_lines(draw: st.DrawFn) -> str:
    """One metric line (no terminator) in the shape Telegraf writes to a processor."""
    measurement = draw(_measurement())
    tags = draw(st.dictionaries(_name(), _name(), max_size=4))
    fields = draw(st.dictionaries(_name(), _field_value(), min_size=1, max_size=5))
    line = measurement
    for key in sorted(tags):
        line += f",{escape_tag(key)}={escape_tag(tags[key])}"
    line += " " + ",".join(f"{escape_tag(key)}={value}" for key, value in fields.items())
    if draw(st.booleans()):
        line += f" {draw(st.integers(-(2**63), 2**63 - 1))}"
    return line

"""Line protocol: Telegraf's and InfluxData's conformance cases, insertion, splitting."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hst_processor import lineproto
from hst_processor.errors import LineProtocolError
from hst_processor.lineproto import (
    FieldValue,
    Metric,
    MetricSplitter,
    Unsigned,
    enrich,
    format_float,
    format_metric,
    is_blank,
    is_comment,
    parse_metric,
    split_metrics,
)
from tests.strategies import metric_lines

DATA = Path(__file__).parent / "data"
DECODE_CASES = json.loads((DATA / "decode-cases.json").read_text())
SERIALIZER_CASES = json.loads((DATA / "telegraf-serializer-cases.json").read_text())
PRECISION_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}

# Corpus cases whose verdict contradicts Telegraf's grammar. Telegraf reads our output, so we
# follow Telegraf and list each disagreement with its reason.
EXPECTED_DIFFERENCES = {
    "lpcorpus-03cb61144c5d": "duplicate tag key: Telegraf keeps the later value, corpus rejects",
    "lpcorpus-1b46b50f3a1e": "duplicate tag key: Telegraf keeps the later value, corpus rejects",
    "lpcorpus-a82631a07f2a": "duplicate tag key: Telegraf keeps the later value, corpus rejects",
    "lpcorpus-2be024ca7016": "leading tab: Telegraf's `ws* metric` accepts it",
    "lpcorpus-054f6ebe962d": r"string escape `\,`: Telegraf allows only \\ and \" in strings",
    "lpcorpus-a35be0f02cc9": r"string escape `\,`: Telegraf allows only \\ and \" in strings",
    "lpcorpus-0d72bd69a58f": r"string escape `\r`: Telegraf allows only \\ and \" in strings",
    "lpcorpus-909116df4d30": r"string escape `\t`: Telegraf allows only \\ and \" in strings",
    "lpcorpus-ea7ad6289581": r"string escape `\n`: Telegraf allows only \\ and \" in strings",
    "lpcorpus-7e13908609ae": "integer with leading zeros: Telegraf's grammar rejects it",
    "lpcorpus-0a8f26758f52": "integer with leading zeros: Telegraf's grammar rejects it",
    "lpcorpus-98692f7aa255": "integer with leading zeros: Telegraf's grammar rejects it",
    "lpcorpus-851cebafb8da": "unsigned with leading zeros: Telegraf's grammar rejects it",
    "lpcorpus-d00f6348ff30": "unsigned with leading zeros: Telegraf's grammar rejects it",
    "lpcorpus-a1ff4186b3c8": "control character in measurement: Telegraf's grammar allows it",
    "lpcorpus-ddaec4474adb": "control character in field key: Telegraf's grammar allows it",
    "lpcorpus-fcbf36a02fff": "control character in tag key: Telegraf's grammar allows it",
}


def parse_text(text: str) -> list[Metric]:
    """Parse every metric in ``text`` the way the processor meets them, skipping blank lines
    and comments as Telegraf does."""
    chunks, rest = split_metrics(text)
    if rest:
        chunks.append(rest)
    metrics = []
    for chunk in chunks:
        body = chunk.removesuffix("\n").removesuffix("\r") if chunk.endswith("\n") else chunk
        if is_blank(body) or is_comment(body):
            continue
        metrics.append(parse_metric(body))
    return metrics


def field_type(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Unsigned):
        return "uint"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "string"


def same_value(expected: Any, got: FieldValue) -> bool:
    if isinstance(got, float) and not isinstance(got, bool):
        return math.isclose(float(expected), got, rel_tol=0, abs_tol=0) or float(expected) == got
    return bool(expected == got)


def assert_metric_matches(
    metric: Metric, expected: dict[str, Any], precision: str, default_time_ns: int | None
) -> None:
    assert metric.measurement == expected["measurement"]
    assert metric.tags == dict(map(tuple, expected["tags"]))
    got = {key: (field_type(value), value) for key, value in metric.fields.items()}
    want = {f["key"]: (f["type"], f["value"]) for f in expected["fields"]}
    assert got.keys() == want.keys()
    for key, (kind, value) in want.items():
        assert got[key][0] == kind, key
        assert same_value(value, got[key][1]), key
    unit = PRECISION_NS[precision]
    if metric.timestamp is not None:
        assert metric.timestamp * unit == expected["timestamp"]
    elif expected.get("timestamp") is not None:
        # No timestamp in the line: the consumer fills in "now", truncated to the precision.
        assert default_time_ns is not None
        assert expected["timestamp"] == default_time_ns // unit * unit


@pytest.mark.parametrize("case", DECODE_CASES, ids=[c["id"] for c in DECODE_CASES])
def test_decode_conformance(case: dict[str, Any]) -> None:
    valid = case["valid"] != (case["id"] in EXPECTED_DIFFERENCES)
    if not valid:
        with pytest.raises(LineProtocolError):
            parse_text(case["line"])
        return
    metrics = parse_text(case["line"])
    if case["id"] in EXPECTED_DIFFERENCES:
        return  # the corpus has no expected values for a line it rejects
    expected_points = case.get("points", [case])
    assert len(metrics) == len(expected_points)
    for metric, expected in zip(metrics, expected_points, strict=True):
        assert_metric_matches(metric, expected, case["precision"], case.get("default_time_ns"))


def test_expected_differences_are_real_cases() -> None:
    ids = {case["id"] for case in DECODE_CASES}
    assert set(EXPECTED_DIFFERENCES) <= ids


@pytest.mark.parametrize(
    "case",
    [c for c in SERIALIZER_CASES if c["expected_output"]],
    ids=[c["id"] for c in SERIALIZER_CASES if c["expected_output"]],
)
def test_everything_telegraf_writes_parses(case: dict[str, Any]) -> None:
    output = case["expected_output"]
    chunks, rest = split_metrics(output)
    assert rest == ""
    assert "".join(chunks) == output
    for chunk in chunks:
        metric = parse_metric(chunk[:-1])
        assert metric.text == chunk[:-1]
        # Adding nothing gives back the text exactly.
        assert enrich(metric) == metric.text


def test_split_keeps_newline_inside_quoted_string_in_one_metric() -> None:
    text = 'cpu value="x\ny" 0\ncpu value=1 0\n'
    chunks, rest = split_metrics(text)
    assert chunks == ['cpu value="x\ny" 0\n', "cpu value=1 0\n"]
    assert rest == ""


def test_split_waits_for_the_rest_of_an_open_string() -> None:
    chunks, rest = split_metrics('cpu value="x\ny')
    assert chunks == []
    assert rest == 'cpu value="x\ny'


def test_split_treats_quote_in_tag_as_literal() -> None:
    chunks, rest = split_metrics('m,k=a"b v=1\nm v=2\n')
    assert chunks == ['m,k=a"b v=1\n', "m v=2\n"]
    assert rest == ""


def test_split_returns_partial_line_as_rest() -> None:
    chunks, rest = split_metrics("m v=1\nm v=")
    assert chunks == ["m v=1\n"]
    assert rest == "m v="


def test_enrich_inserts_tag_in_sorted_position_and_field_at_end() -> None:
    metric = parse_metric("m,a=1,z=2 f=1,g=2i 5")
    out = enrich(metric, tags=[("b", "x y")], fields=[("score", "0.5")])
    assert out == r"m,a=1,b=x\ y,z=2 f=1,g=2i,score=0.5 5"


def test_enrich_places_our_tag_after_an_existing_tag_of_the_same_key() -> None:
    metric = parse_metric("m,anomaly=old v=1")
    out = enrich(metric, tags=[("anomaly", "true")])
    assert out == "m,anomaly=old,anomaly=true v=1"
    assert parse_metric(out).tags["anomaly"] == "true"


def test_enrich_keeps_escaped_and_quoted_text() -> None:
    text = 'c\\ pu,host=two\\ words\tv="a \\"q\\" b",w=1  17'
    metric = parse_metric(text)
    out = enrich(metric, tags=[("anomaly", "false")], fields=[("s", "1")])
    assert out == 'c\\ pu,anomaly=false,host=two\\ words\tv="a \\"q\\" b",w=1,s=1  17'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.5, "0.5"),
        (1e-07, "0.0000001"),
        (1.5e20, "150000000000000000000"),
        (0.1 + 0.2, "0.30000000000000004"),
        (-2.0, "-2"),
    ],
)
def test_format_float_is_shortest_exact_without_exponent(value: float, text: str) -> None:
    assert format_float(value) == text
    assert float(text) == value


def test_fast_and_careful_paths_agree() -> None:
    from hst_processor.lineproto import _parse_careful

    for text in ["m,a=1,b=2 f=1.5,g=-3i,h=4u,t=true 123", "m f=0", "m,k=v f=F -5"]:
        assert parse_metric(text) == _parse_careful(text)


@given(metric_lines())
def test_generated_metrics_round_trip_through_enrich(line: str) -> None:
    metric = parse_metric(line)
    added_tag, added_field = ("zz_added", "1"), ("zz_score", "0.5")
    out = enrich(metric, tags=[added_tag], fields=[added_field])
    reparsed = parse_metric(out)
    assert reparsed.tags == {**metric.tags, "zz_added": "1"}
    assert reparsed.fields == {**metric.fields, "zz_score": 0.5}
    assert reparsed.timestamp == metric.timestamp
    # Removing what we added gives back the input character for character.
    assert out.replace(",zz_added=1", "", 1).replace(",zz_score=0.5", "", 1) == line


@given(st.lists(metric_lines(), min_size=1, max_size=8))
def test_split_finds_every_generated_metric(lines: list[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    chunks, rest = split_metrics(text)
    assert rest == ""
    assert chunks == [line + "\n" for line in lines]


# Telegraf's float grammar (machine.go.rl: number, scientific), as a reference for the parser's
# faster float() based check.
TELEGRAF_FLOAT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


# U+0661 is an Arabic-Indic digit, which Python's float() accepts and Telegraf does not.
@given(st.text(st.sampled_from("0123456789.-+eE_x\u0661"), min_size=1, max_size=8))
def test_float_fields_follow_telegrafs_grammar(token: str) -> None:
    line = f"m v={token}"
    expected_valid = TELEGRAF_FLOAT.fullmatch(token) is not None and math.isfinite(float(token))
    try:
        value = parse_metric(line).fields["v"]
    except LineProtocolError:
        assert not expected_valid
    else:
        assert expected_valid, token
        assert value == float(token)


def fed_in_pieces(splitter: MetricSplitter, text: str, pieces: list[int]) -> tuple[list[str], str]:
    """The metrics and the held rest when ``text`` comes in reads of the sizes ``pieces``
    cycles through."""
    got: list[str] = []
    position = 0
    for size in itertools.cycle(pieces):
        if position >= len(text):
            break
        got += splitter.feed(text[position : position + size])
        position += size
    return got, splitter.held


SPLIT_ALPHABET = ["m", " ", ",", "=", '"', "\\", "\n", "1", "a", "\r", "\f", "\t"]


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from(SPLIT_ALPHABET), max_size=40).map("".join),
    st.lists(st.integers(1, 6), min_size=1, max_size=40),
)
@example('m s="a\nb" 1\nm v=1\n', [1])
@example('m s="open\\', [9, 1])  # a backslash that may escape what comes next
def test_the_splitter_cuts_text_in_pieces_as_it_cuts_the_whole(
    text: str, pieces: list[int]
) -> None:
    full = 'm,t=1 a="' + text  # often inside a string field, where it gets interesting
    assert fed_in_pieces(MetricSplitter(), full, pieces) == split_metrics(full)


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from([*SPLIT_ALPHABET, "\n", "\n", "m v=1 1\n"]), max_size=60).map("".join),
    st.lists(st.integers(1, 12), min_size=1, max_size=40),
)
@example('m v=1\nm s="a\nb" 1\nm v=2\nm t="x" 2\nm v=3\n', [100])
def test_lines_without_quotes_are_cut_as_the_careful_scan_cuts_them(
    text: str, pieces: list[int]
) -> None:
    """The quick path (whole lines before a quote, in one call) against the scan alone."""
    careful = MetricSplitter()
    careful._plain_lines = lambda buffer, start, last, metrics: start  # type: ignore[method-assign]
    assert fed_in_pieces(MetricSplitter(), text, pieces) == fed_in_pieces(careful, text, pieces)


def test_the_splitter_reads_a_string_that_runs_on_for_many_lines_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each newline inside an open string used to re-parse all the text held (quadratic)."""
    parses = []
    careful = lineproto._parse_careful
    monkeypatch.setattr(lineproto, "_parse_careful", lambda text: parses.append(1) or careful(text))
    splitter = MetricSplitter()
    assert splitter.feed('m s="') == []
    for _ in range(5000):
        assert splitter.feed("a line\n") == []
    assert splitter.holds_lines
    assert splitter.feed('",v=1 1\nm v=2 2\n') == [
        'm s="' + "a line\n" * 5000 + '",v=1 1\n',
        "m v=2 2\n",
    ]
    assert len(parses) == 1  # only the first line, to tell a string field from a quoted tag


def test_a_released_line_is_given_up_and_the_rest_read_afresh() -> None:
    splitter = MetricSplitter()
    assert splitter.feed('m s="open\nm v=1 1\nm v=2 2\n') == []
    assert splitter.release_first_line() == 'm s="open\n'
    assert splitter.feed("") == ["m v=1 1\n", "m v=2 2\n"]
    assert splitter.feed('m s="open\nm v=1 1\nm v=') == []
    assert splitter.release_lines() == ['m s="open\n', "m v=1 1\n"]
    assert (splitter.feed("3 3\n"), splitter.held) == (["m v=3 3\n"], "")


def test_long_series_texts_are_not_kept_in_the_parse_cache() -> None:
    from hst_processor import lineproto

    short = parse_metric("m,host=a v=1 1")
    long_text = "m,host=" + "x" * 4000
    parsed = parse_metric(long_text + " v=1 1")
    assert short.tags == {"host": "a"} and parsed.tags == {"host": "x" * 4000}
    assert "m,host=a" in lineproto._SERIES_CACHE and long_text not in lineproto._SERIES_CACHE


def test_a_new_metric_parses_back_whatever_its_tags_hold() -> None:
    """A tag value ending in a backslash would escape the comma after it: it loses that end
    (a host name "gw\\" made a report Telegraf could not parse)."""
    tags = {"host": "gw\\", "site": "a b,c=d", "empty": "", "only": "\\\\"}
    text = format_metric("m", tags, {"n": 1, "x": 0.5, "s": 'say "hi"'}, 5)
    metric = parse_metric(text.rstrip("\n"))
    assert metric.tags == {"host": "gw", "site": "a b,c=d"}
    assert metric.fields == {"n": 1, "x": 0.5, "s": 'say "hi"'}

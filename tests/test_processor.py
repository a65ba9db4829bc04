"""The processor core: golden cases, the one-in-one-out invariant, and chunked input."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hst_processor import processor as processor_module
from hst_processor.config import load_config, parse_config
from hst_processor.log import Log
from hst_processor.processor import Processor
from tests.strategies import metric_lines

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())


def process_bytes(processor: Processor, data: bytes, piece: int | None = None) -> bytes:
    """Feed bytes the way serve() does: decoded with surrogateescape, in pieces."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
    out = []
    step = piece or max(len(data), 1)
    for start in range(0, len(data), step):
        out.append(processor.feed(decoder.decode(data[start : start + step])))
    out.append(processor.feed(decoder.decode(b"", final=True)) + processor.finish())
    return "".join(out).encode("utf-8", "surrogateescape")


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_case(case: str) -> None:
    directory = GOLDEN / case
    config = load_config(directory / "config.yaml")
    processor = Processor(config, Log(io.StringIO()))
    output = process_bytes(processor, (directory / "input.lp").read_bytes())
    assert output == (directory / "expected.lp").read_bytes()


@pytest.mark.parametrize("case", GOLDEN_CASES)
@pytest.mark.parametrize("piece", [1, 3, 64])
def test_golden_case_in_small_reads(case: str, piece: int) -> None:
    directory = GOLDEN / case
    config = load_config(directory / "config.yaml")
    processor = Processor(config, Log(io.StringIO()))
    output = process_bytes(processor, (directory / "input.lp").read_bytes(), piece)
    assert output == (directory / "expected.lp").read_bytes()


# The generated metrics never contain a `z` (tests/strategies.py), so names with one mark
# exactly what we added.
ADDED = re.compile(r',zz_tag=(?:warmup|true|false)|,zz_score=[0-9.]+|,zz_feature="(?:[^"\\]|\\.)*"')


@settings(max_examples=60, deadline=None)
@given(st.lists(metric_lines(), min_size=1, max_size=40), st.integers(1, 5))
@example(["0 0=0,anomaly=true"], 1)  # a field that looks like the default tag: found by CI
def test_output_minus_additions_is_the_input(lines: list[str], window: int) -> None:
    """One metric out per metric in, in order, and nothing but our additions changed."""
    config = parse_config(
        {
            "model": {"window_size": window + 1, "n_trees": 3, "height": 3},
            "output": {"tag": "zz_tag", "score_field": "zz_score", "feature_field": "zz_feature"},
        }
    )
    processor = Processor(config, Log(io.StringIO()))
    text = "".join(line + "\n" for line in lines)
    output = processor.feed(text) + processor.finish()
    out_lines = output.split("\n")[:-1] if "\n" not in "".join(lines) else None
    assert processor.stats.lines_in == processor.stats.lines_out == len(lines)
    assert ADDED.sub("", output) == text
    if out_lines is not None:
        assert len(out_lines) == len(lines)


def test_a_lone_line_is_answered_at_once() -> None:
    processor = Processor(parse_config({}), Log(io.StringIO()))
    assert processor.feed("m v=1 1\n").startswith("m,anomaly=warmup v=1 1")


def test_partial_line_waits_for_its_end_then_goes_out() -> None:
    processor = Processor(parse_config({}), Log(io.StringIO()))
    assert processor.feed("m v=1") == ""
    assert processor.feed(" 1\n") == "m,anomaly=warmup v=1 1\n"


def test_stalled_open_string_is_released_line_by_line() -> None:
    stderr = io.StringIO()
    processor = Processor(parse_config({}), Log(stderr))
    assert processor.feed('m s="open\nm v=2 2\n') == ""
    assert processor.stalled
    released = processor.release_stalled()
    assert released == 'm s="open\nm,anomaly=warmup v=2 2\n'
    assert processor.stats.unparseable == 1


def test_final_partial_line_passes_through_unchanged_at_eof() -> None:
    processor = Processor(parse_config({}), Log(io.StringIO()))
    assert processor.feed("m v=1 1\nm v=") == "m,anomaly=warmup v=1 1\n"
    assert processor.finish() == "m v="
    assert processor.stats.lines_in == processor.stats.lines_out == 2


def test_summary_counts_everything() -> None:
    config = {
        "model": {"window_size": 2},
        "context_features": False,
        "detection": {"calibration": "landmarks"},
    }
    processor = Processor(parse_config(config), Log(io.StringIO()))
    processor.feed('m v=1 1\nm v=2 2\nm v=1 3\nbad\n\n# a comment\nm s="x" 4\n')
    summary = processor.summary()
    # Metrics apart from the lines that are not: 7 lines, of which 4 metrics.
    assert "7 lines in, 7 out: 4 metrics, 1 unparseable (0 not UTF-8, 0 cut off)" in summary
    assert "1 blank, 1 comments; of the metrics 1 scored, 0 anomalous, 2 in warm-up" in summary
    assert "1 without a feature field" in summary  # s="x": none of the series' fields
    assert "4 lines passed through unchanged; 1 series" in summary


def test_a_string_held_past_the_bound_lets_its_lines_go_unparsed_each_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(processor_module, "MAX_HELD_CHARS", 100)
    stderr = io.StringIO()
    processor = Processor(parse_config({}), Log(stderr))
    lines = ['m s="open\n'] + [f"m v={i} {i}\n" for i in range(20)]
    out = processor.feed("".join(lines[:5]))
    assert out == "" and processor.stalled  # held, while under the bound
    out += processor.feed("".join(lines[5:]) + "m v=")
    assert out == "".join(lines)  # every line once, unchanged: none parsed, none scored
    assert not processor.stalled
    assert processor.feed("1 1\n") == "m,anomaly=warmup v=1 1\n"  # the stream goes on
    assert processor.stats.unparseable == len(lines)
    assert processor.stats.lines_in == processor.stats.lines_out == len(lines) + 1
    assert "quoted string ran on for" in stderr.getvalue()


def test_a_cut_off_last_line_is_neither_scored_nor_learned() -> None:
    processor = Processor(parse_config({}), Log(io.StringIO()))
    assert processor.feed("m v=1 1\nm v=12") == "m,anomaly=warmup v=1 1\n"
    assert processor.finish() == "m v=12"  # "m v=123 3" cut short: no tag, no newline
    assert processor.detector.counters.warmup == 1
    assert processor.stats.cut_off == 1


def test_at_the_end_an_open_string_lets_the_lines_it_held_go_as_its_hold_would() -> None:
    processor = Processor(parse_config({}), Log(io.StringIO()))
    assert processor.feed('m s="open\nm v=1 1\nm v=2') == ""
    assert processor.finish() == 'm s="open\nm,anomaly=warmup v=1 1\nm v=2'
    # The released line and the cut-off tail: both unparseable, one of them cut off.
    assert (processor.stats.unparseable, processor.stats.cut_off) == (2, 1)

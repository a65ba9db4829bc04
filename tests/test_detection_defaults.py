"""The defaults on metrics nobody tuned for: only ``measurements`` and ``group_by`` set.

Series generated here (related fields with noise, a level shift, a cycle longer than the warm-up,
a spike) and one scenario of the simulator suite, replayed through the live code path. The full
measurement, on real labelled data too, is ``python -m benchmarks.detection``; these are its
floors, small enough for CI.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from hst_processor.config import Config, parse_config
from hst_processor.log import Log
from hst_processor.offline.evaluate import evaluate_file
from hst_processor.offline.labels import parse_labels
from hst_processor.offline.replay import Replay, replay
from hst_processor.processor import Processor
from hst_processor.ranges import FieldRanges
from hst_processor.state import parse, restore, snapshot
from tests.scenario_suite import SCENARIOS, simulate_scenario

START = 1_767_225_600
STEP = 60  # one metric a minute
DOCUMENTED_RATE = 0.001  # the default threshold: rarer than 1 in 1,000


def defaults(measurement: str = "m", tag: str = "host") -> Config:
    return parse_config({"measurements": [measurement], "group_by": [tag]})


def to_lines(values: np.ndarray) -> str:
    return "".join(
        "m,host=a " + ",".join(f"f{j}={float(v)!r}" for j, v in enumerate(row))
        + f" {(START + i * STEP) * 10**9}\n"
        for i, row in enumerate(values)
    )  # fmt: skip


def run(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, Replay]:
    result = replay(defaults(), io.StringIO(to_lines(values)), None, Log(io.StringIO()),
                    keep_records=True)  # fmt: skip
    scores = np.array([np.nan if r.score is None else r.score for r in result.records])
    tagged = np.array([r.flagged for r in result.records])
    return scores, tagged, result


def alert_rows(result: Replay) -> list[int]:
    return [round((event.time - START) / STEP) for event in result.openings]


@pytest.fixture(scope="module")
def related() -> np.ndarray:
    """20,000 metrics of three fields: two follow a common driver, one is independent."""
    rng = np.random.default_rng(1)
    driver = rng.normal(0, 1, 20_000)
    return np.column_stack([
        driver + rng.normal(0, 0.3, 20_000),
        2 * driver + rng.normal(0, 0.3, 20_000),
        rng.normal(5, 1, 20_000),
    ])  # fmt: skip


def test_normal_metrics_are_flagged_at_about_the_documented_rate(related: np.ndarray) -> None:
    scores, _, result = run(related)
    scored = scores[~np.isnan(scores)]
    assert len(scored) == 20_000 - 350  # warm-up: one window of 250 and 100 to calibrate
    rate = float(np.mean(scored >= 0.5))
    # Each of the two views flags about 1 in 1,000: the rarer of them, up to 2 in 1,000.
    assert DOCUMENTED_RATE / 3 <= rate <= DOCUMENTED_RATE * 3, rate
    # 14 days of one metric a minute: a metric alone opens an alert when normal operation
    # reaches it once in three days (about 4.6 of them here), the trees' view a few more.
    assert len(result.openings) <= 10


def test_a_level_shift_is_alerted_at_its_onset_then_becomes_normal(related: np.ndarray) -> None:
    shifted = related.copy()
    shifted[10_000:, 2] += 10  # a new operating point, ten standard deviations away
    _, tagged, result = run(shifted)
    assert tagged[10_000:10_010].sum() >= 5
    assert any(10_000 <= row <= 10_010 for row in alert_rows(result))
    # Adapted within the documented bound (relearn_after plus a window): flagged no more
    # than normal metrics are.
    assert tagged[11_000:].mean() < 0.01


def test_a_cycle_longer_than_the_warmup_is_not_an_anomaly() -> None:
    rng = np.random.default_rng(2)
    phase = 2 * np.pi * np.arange(20_000) / 2_000  # one cycle per 2,000 metrics
    cycle = np.column_stack([
        3 * np.sin(phase) + rng.normal(0, 0.3, 20_000),
        3 * np.cos(phase) + rng.normal(0, 0.3, 20_000),
    ])  # fmt: skip
    scores, _, result = run(cycle)
    scored = scores[~np.isnan(scores)]
    assert float(np.mean(scored >= 0.5)) <= DOCUMENTED_RATE * 3
    assert len(result.openings) <= 1


def test_a_spike_in_one_field_is_flagged_alerted_and_blamed(related: np.ndarray) -> None:
    spiked = related.copy()
    spiked[15_000:15_003, 1] += 8
    _, tagged, result = run(spiked)
    assert tagged[15_000:15_003].all()
    openings = [e for e in result.openings if 15_000 <= round((e.time - START) / STEP) <= 15_005]
    # Named by its field, far beyond its long-run range (the middle half of its reference),
    # and not named again by the trees' features of the same field.
    first, *others = openings[0].reasons
    assert first.name == "f1" and first.value in spiked[15_000:15_003, 1]
    assert first.normal_low is not None and first.normal_high is not None
    assert first.value - first.normal_high > 2 * (first.normal_high - first.normal_low)
    assert not [reason for reason in others if reason.name.startswith("f1.")]


def test_the_tag_marks_an_episode_without_flicker(related: np.ndarray) -> None:
    spiked = related.copy()
    spiked[15_000:15_010, 1] += 8
    _, tagged, _ = run(spiked)
    window = tagged[14_999:15_030]
    assert int(np.sum(window[1:] != window[:-1])) == 2  # on at the onset, off once, after it


def test_a_resumed_run_scores_byte_identically(related: np.ndarray) -> None:
    text = to_lines(related[:3_000])
    cut = text.index("\n", len(text) // 2) + 1
    whole = Processor(defaults(), Log(io.StringIO()))
    expected = whole.feed(text) + whole.finish()
    first = Processor(defaults(), Log(io.StringIO()))
    head = first.feed(text[:cut]) + first.finish()
    saved = snapshot(first.detector, 0)
    second = Processor(defaults(), Log(io.StringIO()))
    assert restore(second.detector, parse(saved)) == []
    assert head + second.feed(text[cut:]) + second.finish() == expected


def test_the_simulator_faults_are_found_without_a_hand_made_config() -> None:
    text, labels = simulate_scenario(Path(SCENARIOS[0]))
    results, _ = evaluate_file(text, parse_labels(labels), defaults("machine_data", "machineID"),
                               baselines=False, machine_tag="machineID")  # fmt: skip
    hst = results[0]
    assert hst.f1 >= 0.5, hst.as_dict()
    assert hst.false_per_machine_day <= 1.0
    assert hst.normal_flag_rate is not None
    assert DOCUMENTED_RATE / 3 <= hst.normal_flag_rate <= DOCUMENTED_RATE * 3


def test_one_metric_far_out_of_its_long_run_range_opens_an_alert_alone(
    related: np.ndarray,
) -> None:
    spiked = related.copy()
    spiked[15_000, 2] += 12  # one minute, twelve standard deviations out
    _, tagged, result = run(spiked)
    assert tagged[15_000]
    openings = [e for e in result.openings if 14_990 <= round((e.time - START) / STEP) <= 15_010]
    assert [round((e.time - START) / STEP) for e in openings] == [15_000]
    first = openings[0].reasons[0]
    # Named by its field, with its value and its long-run range (the reference's quartiles).
    assert first.name == "f2" and first.value == spiked[15_000, 2]
    assert first.normal_low is not None and first.normal_high is not None
    assert 3.5 < first.normal_low < 5 < first.normal_high < 6.5
    # Without the range view, one metric is not enough: an alert needs three in a row.
    config = parse_config({"measurements": ["m"], "group_by": ["host"],
                           "detection": {"range_reference": 0}})  # fmt: skip
    alone = replay(config, io.StringIO(to_lines(spiked)), None, Log(io.StringIO()))
    assert not [e for e in alone.openings if 14_990 <= round((e.time - START) / STEP) <= 15_010]


def test_the_score_is_the_rarer_of_the_trees_and_the_range_view(related: np.ndarray) -> None:
    with_ranges, _, _ = run(related[:6_000])
    config = parse_config({"measurements": ["m"], "group_by": ["host"],
                           "detection": {"range_reference": 0}})  # fmt: skip
    trees = replay(config, io.StringIO(to_lines(related[:6_000])), None, Log(io.StringIO()),
                   keep_records=True)  # fmt: skip
    trees_only = np.array([np.nan if r.score is None else r.score for r in trees.records])
    scored = ~np.isnan(trees_only)
    assert (with_ranges[scored] >= trees_only[scored]).all()
    # The range view starts once its reference (1,000 metrics) and 100 scores are in.
    assert (with_ranges[350:1_100] == trees_only[350:1_100]).all()
    assert (with_ranges[1_100:] > trees_only[1_100:]).mean() > 0.2


def test_at_a_slow_cadence_only_the_range_view_opens_an_alert_alone(
    related: np.ndarray,
) -> None:
    # One metric every three days: every metric is "once in three days", so the alone rule
    # would take any flagged metric; it takes only those the range view itself flags.
    step = 3 * 86_400
    values = related[:6_000]
    text = "".join(
        "m,host=a " + ",".join(f"f{j}={float(v)!r}" for j, v in enumerate(row))
        + f" {(START + i * step) * 10**9}\n"
        for i, row in enumerate(values)
    )  # fmt: skip
    result = replay(defaults(), io.StringIO(text), None, Log(io.StringIO()), keep_records=True)
    scores = [record.score or 0.0 for record in result.records]
    ranges = FieldRanges(reference=1_000)
    state = ranges.new_state()
    by_range = [ranges.observe(state, list(row), float(START + i * step))[0] or 0.0
                for i, row in enumerate(values)]  # fmt: skip
    openings = [round((event.time - START) / step) for event in result.openings]
    assert openings  # the trees alone flag a few metrics in 6,000
    for row in openings:
        three_in_a_row = min(scores[row - 2 : row + 1]) >= 0.5
        assert three_in_a_row or by_range[row] >= 0.5, (row, scores[row - 2 : row + 1])

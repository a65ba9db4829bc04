"""A series' state: every stage's slice exported and restored, and restored within the bounds."""

from __future__ import annotations

import doctest
import random
from typing import Any

import msgpack

import hst_processor.series
from hst_processor.lineproto import Metric, parse_metric
from hst_processor.series import SeriesKeys, series_key_of
from tests.test_detector import make_detector


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(hst_processor.series).failed == 0


def metrics(rng: random.Random, machines: str, n: int) -> list[Metric | None]:
    return [
        parse_metric(f"m,id={rng.choice(machines)} load={rng.uniform(60, 90):.2f},power="
                     f"{rng.uniform(200, 220) if rng.random() > 0.02 else 500:.2f} 1")
        for _ in range(n)
    ]  # fmt: skip


def exported(detector: Any) -> list[dict[str, Any]]:
    # Through msgpack, as a snapshot is: tuples become lists, arrays were lists already.
    data = msgpack.packb([detector.export_series(s) for s in detector.series.values()])
    return list(msgpack.unpackb(data, strict_map_key=False))


def test_a_restored_series_exports_what_it_restored_and_scores_the_same() -> None:
    rng = random.Random(11)
    stream = metrics(rng, "abc", 400)
    for defaults in (False, True):
        overrides: dict[str, Any] = {}
        if defaults:  # context features and the rarity score
            overrides = {"features": [], "scaling": {"mode": "learned"}, "detection": {}}
        original, _ = make_detector(**overrides)
        original.process(stream)
        copy, _ = make_detector(**overrides)
        for saved in exported(original):
            assert copy.restore_series(saved, tuple(saved["features"]))
        assert exported(copy) == exported(original)
        more = metrics(rng, "abc", 200)
        assert copy.process(more) == original.process(more)


def test_restoring_respects_max_series_most_recent_last() -> None:
    original, _ = make_detector()
    original.process(metrics(random.Random(12), "abcd", 200))
    bounded, stderr = make_detector(max_series=2)
    saved = exported(original)
    for entry in saved:
        bounded.restore_series(entry, tuple(entry["features"]))
    assert list(bounded.series) == [series_key_of(entry) for entry in saved[-2:]]
    assert "max_series=2 reached" in stderr.getvalue()


def test_forget_all_leaves_an_empty_detector() -> None:
    detector, _ = make_detector()
    detector.process(metrics(random.Random(13), "ab", 50))
    detector.forget_all()
    assert not detector.series and detector.table.footprint == 0


def test_a_key_is_the_measurement_and_the_group_by_values_absent_ones_empty() -> None:
    keys = SeriesKeys(("id", "site"), "anomaly", 4096)
    assert keys.key_of(_metric("m,id=a,zone=1 x=1 1")) == ("m", (("id", "a"), ("site", "")))
    assert keys.key_of(_metric("m,id=a,zone=2 x=1 1")) == ("m", (("id", "a"), ("site", "")))


def test_without_group_by_every_tag_but_ours_makes_the_key() -> None:
    keys = SeriesKeys(None, "anomaly", 4096)
    assert keys.key_of(_metric("m,b=2,anomaly=true,a=1 x=1 1")) == ("m", (("a", "1"), ("b", "2")))


def test_the_lookup_cache_keeps_no_text_longer_than_a_modelled_key() -> None:
    keys = SeriesKeys(("id",), "anomaly", 100)
    short, long = _metric("m,id=a x=1 1"), _metric(f"m,id={'x' * 200} x=1 1")
    assert keys.key_of(long) == ("m", (("id", "x" * 200),))
    keys.key_of(short)
    assert list(keys.cache) == ["m,id=a"]
    assert keys.key_of(short) is keys.key_of(short)  # looked up, not built again


def _metric(line: str) -> Metric:
    metric = parse_metric(line)
    assert metric is not None
    return metric

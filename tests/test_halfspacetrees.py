"""``HalfSpaceTrees``: river's interface, answered as river answers it.

The scores on long mixed streams are checked in tests/test_forest.py and
tests/test_forest_exactness.py; here, what the interface itself promises.
"""

from __future__ import annotations

import random

import river.anomaly as river_anomaly

from hst_processor.halfspacetrees import HalfSpaceTrees

PARAMS = {"n_trees": 6, "height": 5, "window_size": 20, "seed": 7}


def test_an_untrained_model_scores_zero_as_rivers_does() -> None:
    assert HalfSpaceTrees(**PARAMS).score_one({"a": 0.3}) == 0.0
    assert river_anomaly.HalfSpaceTrees(**PARAMS).score_one({"a": 0.3}) == 0.0


def test_features_are_fixed_by_the_first_point_learned_as_in_river() -> None:
    rng = random.Random(1)
    ours, theirs = HalfSpaceTrees(**PARAMS), river_anomaly.HalfSpaceTrees(**PARAMS)
    first = {"b": 0.5, "a": 0.5}  # unsorted keys: both build over sorted(x)
    ours.learn_one(first)
    theirs.learn_one(first)
    for _ in range(200):
        # "c" was absent from the first point: neither model ever splits on it.
        x = {"a": rng.random(), "b": rng.random(), "c": rng.random() * 100}
        assert ours.score_one(x) == theirs.score_one(x)
        ours.learn_one(x)
        theirs.learn_one(x)


def test_score_learn_many_is_score_one_then_learn_one() -> None:
    rng = random.Random(2)
    points = [{"a": rng.random(), "b": rng.random()} for _ in range(300)]
    points[150] = {"a": 0.9}  # a missing feature in the middle of a batch
    one_by_one = HalfSpaceTrees(**PARAMS)
    expected = []
    for x in points:
        expected.append(one_by_one.score_one(x))
        one_by_one.learn_one(x)
    assert HalfSpaceTrees(**PARAMS).score_learn_many(points) == expected

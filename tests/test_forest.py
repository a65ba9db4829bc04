"""The HST engine against river, the oracle: same trees, same scores to the last bit."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
import river.anomaly as river_anomaly

from hst_processor.forest import Forest
from hst_processor.halfspacetrees import HalfSpaceTrees
from hst_processor.trees import tree_structure

FEATURES = ("load", "power", "temperature", "vibration")


def mixed_stream(n: int, seed: int, missing: float = 0.05, nan: float = 0.01) -> list[dict]:
    """Points in the unit box with rare outliers, some features missing and some NaN."""
    rng = random.Random(seed)
    points: list[dict] = [{name: rng.random() for name in FEATURES}]
    for i in range(1, n):
        point = {}
        for name in FEATURES:
            draw = rng.random()
            if draw < missing:
                continue
            if draw < missing + nan:
                point[name] = float("nan")
            else:
                point[name] = rng.random() * (1.8 if i % 97 == 0 else 1.0)
        points.append(point)
    return points


def river_scores(points: list[dict], **params: int) -> list[float]:
    model = river_anomaly.HalfSpaceTrees(**params)
    scores = []
    for x in points:
        scores.append(model.score_one(x))
        model.learn_one(x)
    return scores


@pytest.mark.parametrize(
    ("n_trees", "height", "window_size", "n_points"),
    [(5, 2, 250, 30_000), (10, 8, 250, 30_000), (25, 15, 50, 1_500), (3, 4, 7, 2_000)],
)
def test_batch_scores_equal_river(
    n_trees: int, height: int, window_size: int, n_points: int
) -> None:
    points = mixed_stream(n_points, seed=n_trees * 1000 + height)
    params = {"n_trees": n_trees, "height": height, "window_size": window_size, "seed": 11}
    expected = river_scores(points, **params)
    got = HalfSpaceTrees(**params).score_learn_many(points)
    assert got == expected


def test_single_point_api_equals_river_with_limits() -> None:
    limits = {"load": (0.0, 250.0), "power": (0.0, 600.0)}
    rng = random.Random(3)
    points = [{"load": rng.uniform(40, 120), "power": rng.uniform(150, 500)} for _ in range(3000)]
    ours = HalfSpaceTrees(n_trees=10, height=8, window_size=100, seed=5, limits=limits)
    theirs = river_anomaly.HalfSpaceTrees(
        n_trees=10, height=8, window_size=100, seed=5, limits=limits
    )
    for x in points:
        assert ours.score_one(x) == theirs.score_one(x)
        ours.learn_one(x)
        theirs.learn_one(x)


def test_complete_batches_equal_river_at_every_batch_size() -> None:
    rng = random.Random(9)
    points = [{name: rng.random() for name in FEATURES} for _ in range(5_000)]
    expected = river_scores(points, n_trees=10, height=8, window_size=250, seed=1)
    for batch in (1, 7, 10, 100, 1000):
        model = HalfSpaceTrees(n_trees=10, height=8, window_size=250, seed=1)
        got: list[float] = []
        for start in range(0, len(points), batch):
            got.extend(model.score_learn_many(points[start : start + batch]))
        assert got == expected, batch


def test_structure_is_shared_between_models_of_one_configuration() -> None:
    a = tree_structure(10, 8, 42, FEATURES)
    b = tree_structure(10, 8, 42, FEATURES)
    assert a is b
    assert tree_structure(10, 8, 43, FEATURES) is not a


def test_window_ends_exactly_where_it_fills_across_calls() -> None:
    structure = tree_structure(4, 3, 1, ("a",))
    forest = Forest(structure, window_size=10)
    masses = forest.new_masses()
    points = np.linspace(0, 1, 15)[:, None]
    forest.learn_many(masses, points[:9])
    assert (masses.counter, masses.first_window, masses.windows) == (9, True, 0)
    forest.learn_many(masses, points[:12])  # 21 points: two windows and one
    assert (masses.counter, masses.first_window, masses.windows) == (1, False, 2)
    live, reference = masses.arrays()
    leaves_per_tree = 2**3
    assert reference[:leaves_per_tree].sum() == 10 and live[:leaves_per_tree].sum() == 1


def test_memory_per_series_stays_small() -> None:
    forest = Forest(tree_structure(10, 8, 42, FEATURES), window_size=250)
    masses = forest.new_masses()
    assert masses.nbytes == 3 * 4 * 10 * 256 <= 64 * 1024  # live, reference, leaf totals


def test_typical_total_matches_the_mean_over_the_reference_window() -> None:
    rng = np.random.default_rng(0)
    forest = Forest(tree_structure(6, 5, 3, ("a", "b")), window_size=200)
    masses = forest.new_masses()
    window = rng.normal(0.5, 0.1, size=(200, 2))
    forest.score_learn_many(masses, window)
    measured = np.mean([forest.total_one(masses, row.tolist()) for row in window])
    assert forest.typical_total(masses) == pytest.approx(measured, rel=1e-9)


@pytest.mark.parametrize("spread", [1, 97])
def test_batch_learning_equals_point_by_point_for_near_and_far_rows(spread: int) -> None:
    """learn_multi adds visits into a contiguous block of rows or into scattered rows,
    depending on how far apart the batch's series sit; both equal learning one by one."""
    structure = tree_structure(5, 4, 7, ("a", "b"))
    batch_forest, single_forest = Forest(structure, 500), Forest(structure, 500)
    batch_owners = [batch_forest.new_masses() for _ in range(300)]
    single_owners = [single_forest.new_masses() for _ in range(300)]
    rng = np.random.default_rng(spread)
    chosen = (np.arange(40) * spread) % 300
    points = rng.random((40, 2))
    batch_forest.learn_multi([batch_owners[i] for i in chosen], points)
    for i, row in zip(chosen, points.tolist(), strict=True):
        single_forest.learn_one(single_owners[i], row)
    assert np.array_equal(batch_forest.store.live, single_forest.store.live)
    assert [o.counter for o in batch_owners] == [o.counter for o in single_owners]


@pytest.mark.parametrize("batch", [1, 3])
def test_small_batches_with_missing_features_equal_river(batch: int) -> None:
    """Small batches take the single walk that scores and learns at once, missing
    features and NaN included."""
    points = mixed_stream(6_000, seed=77, missing=0.1, nan=0.02)
    params = {"n_trees": 10, "height": 8, "window_size": 100, "seed": 3}
    expected = river_scores(points, **params)
    model = HalfSpaceTrees(**params)
    got: list[float] = []
    for start in range(0, len(points), batch):
        got.extend(model.score_learn_many(points[start : start + batch]))
    assert got == expected


def _explain_by_walking(forest: Forest, masses: Any, point: list[float]) -> list[int]:
    """The explanation by its definition, one tree and one node at a time: in each tree, the
    first node on the point's path whose reference mass is below the size limit; the split
    just above it gets a vote; features ranked by votes, ties by position."""
    s = forest.structure
    _, reference = masses.arrays()
    per_tree = reference.reshape(s.n_trees, forest.n_leaves)
    votes = [0] * len(s.features)
    for tree, leaf in enumerate(forest._leaves_one(point)):
        for depth in range(1, s.height + 1):
            span = 1 << (s.height - depth)
            first = (leaf >> (s.height - depth)) * span
            if per_tree[tree, first : first + span].sum() < forest.size_limit:
                parent = ((leaf + forest.n_leaves) >> (s.height - depth + 1)) - 1
                votes[s.flat_feature[tree * s.n_branches + parent]] += 1
                break
    ranked = sorted(range(len(votes)), key=lambda f: -votes[f])
    return [f for f in ranked if votes[f]]


@pytest.mark.parametrize(
    ("n_trees", "height", "window", "width"),
    [(25, 8, 250, 4), (10, 8, 250, 40), (3, 2, 10, 2), (1, 1, 2, 1), (10, 12, 1000, 3)],
)
def test_explanations_follow_their_definition_node_by_node(
    n_trees: int, height: int, window: int, width: int
) -> None:
    names = tuple(f"f{i:03d}" for i in range(width))
    forest = Forest(tree_structure(n_trees, height, 7, names), window)
    masses = forest.new_masses()
    rng = np.random.default_rng(width)
    forest.learn_many(masses, rng.normal(0.5, 0.1, size=(3 * window, width)))
    usual = rng.normal(0.5, 0.1, size=(100, width))
    odd = rng.uniform(-0.5, 1.5, size=(100, width))
    for point in np.concatenate([usual, odd]).tolist():
        assert forest.explain(masses, point) == _explain_by_walking(forest, masses, point)

"""The trees river would build: split features and thresholds, node for node."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import river.anomaly as river_anomaly
from hypothesis import given
from hypothesis import strategies as st

from hst_processor.trees import PADDING, tree_structure


def river_splits(tree: Any, height: int) -> tuple[list[str], list[float]]:
    """A river tree's split features and thresholds in heap order (breadth first)."""
    features: list[str] = []
    thresholds: list[float] = []
    level = [tree]
    for _ in range(height):
        features += [node.feature for node in level]
        thresholds += [node.threshold for node in level]
        level = [child for node in level for child in (node.left, node.right)]
    return features, thresholds


@given(
    n_trees=st.integers(1, 4),
    height=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
    n_features=st.integers(1, 5),
)
def test_splits_equal_rivers_for_any_seed_and_size(
    n_trees: int, height: int, seed: int, n_features: int
) -> None:
    names = tuple(f"f{i}" for i in range(n_features))
    theirs = river_anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=5, seed=seed)
    theirs.learn_one(dict.fromkeys(names, 0.5))  # river builds its trees on the first point
    ours = tree_structure(n_trees, height, seed, names)
    for tree in range(n_trees):
        features, thresholds = river_splits(theirs.trees[tree], height)
        assert [names[f] for f in ours.split_feature[tree]] == features
        assert ours.split_threshold[tree].tolist() == thresholds  # to the last bit


def test_splits_keep_the_padding_inside_each_cell() -> None:
    structure = tree_structure(20, 6, 3, ("a", "b"), ((0.0, 10.0), (-1.0, 1.0)))
    low, high = structure.leaf_boxes
    # Every leaf cell lies inside the root box, and no split came closer to a cell's edge
    # than the padding allows: the narrowest cell is at least PADDING**height of the root.
    assert (low >= np.array([0.0, -1.0]) - 1e-12).all() and (high <= np.array([10.0, 1.0])).all()
    widths = (high - low) / np.array([10.0, 2.0])
    assert widths.min() >= PADDING**structure.height - 1e-12


def test_each_leaf_box_contains_exactly_the_points_that_reach_it() -> None:
    structure = tree_structure(3, 4, 11, ("a", "b", "c"))
    low, high = structure.leaf_boxes
    rng = np.random.default_rng(0)
    for point in rng.random((200, 3)):
        for tree in range(structure.n_trees):
            node = 0
            for _ in range(structure.height):
                feature = structure.split_feature[tree, node]
                go_left = point[feature] < structure.split_threshold[tree, node]
                node = 2 * node + (1 if go_left else 2)
            leaf = node - structure.n_branches
            inside = (low[tree] <= point).all(axis=1) & (point < high[tree]).all(axis=1)
            assert np.flatnonzero(inside).tolist() == [leaf]


def test_one_structure_per_configuration_and_features_must_be_sorted() -> None:
    assert tree_structure(5, 3, 1, ("a", "b")) is tree_structure(5, 3, 1, ("a", "b"))
    assert not tree_structure(5, 3, 1, ("a", "b")).split_threshold.flags.writeable
    with pytest.raises(ValueError, match="sorted"):
        tree_structure(5, 3, 1, ("b", "a"))

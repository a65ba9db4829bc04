"""The trees of a Half-Space Trees model, exactly as river builds them.

For the same seed, feature names and limits, :func:`tree_structure` replays river's use of
:class:`random.Random` (river 0.26, ``river/tree/padded.py``) and so draws the very same split
features and thresholds. They are kept as flat arrays in heap order (node ``k`` has children
``2k + 1`` and ``2k + 2``; the ``2**height`` leaves come last). The structure depends only on the
model configuration, so one instance, cached, serves every series.

>>> structure = tree_structure(n_trees=2, height=2, seed=1, features=("a", "b"))
>>> structure.n_nodes, structure.n_branches, structure.split_feature.shape
(7, 3, (2, 3))
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["PADDING", "TreeStructure", "node_count", "tree_structure"]

# river's magic constant: splits keep 15 % of the range on either side.
PADDING = 0.15


def node_count(height: int) -> int:
    """Nodes in a complete binary tree of ``height`` (a root alone has height 0).

    >>> node_count(0), node_count(8)
    (1, 511)
    """
    return (1 << (height + 1)) - 1


@dataclass(frozen=True)
class TreeStructure:
    """The split features and thresholds of every tree, shared by all series of a model."""

    n_trees: int
    height: int
    features: tuple[str, ...]
    split_feature: npt.NDArray[np.intp]  # (n_trees, n_branches): index into ``features``
    split_threshold: npt.NDArray[np.float64]  # (n_trees, n_branches)
    limits: tuple[tuple[float, float], ...]  # each feature's (low, high) at the root

    @property
    def n_nodes(self) -> int:
        return node_count(self.height)

    @property
    def n_branches(self) -> int:
        return (1 << self.height) - 1

    @functools.cached_property
    def flat_feature(self) -> list[int]:
        """Split features as one Python list, for the per-point walk."""
        return [int(f) for f in self.split_feature.ravel()]

    @functools.cached_property
    def flat_threshold(self) -> list[float]:
        return [float(t) for t in self.split_threshold.ravel()]

    @functools.cached_property
    def leaf_boxes(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Each leaf's cell: lower and upper bound per feature, shape (n_trees, 2**height,
        n_features). Built on first use (explanations only), level by level."""
        n_features = len(self.features)
        root_low = np.array([low for low, _ in self.limits], dtype=np.float64)
        root_high = np.array([high for _, high in self.limits], dtype=np.float64)
        low = np.broadcast_to(root_low, (self.n_trees, 1, n_features)).copy()
        high = np.broadcast_to(root_high, (self.n_trees, 1, n_features)).copy()
        trees = np.arange(self.n_trees)[:, None]
        for depth in range(self.height):
            level = np.arange((1 << depth) - 1, (2 << depth) - 1)
            feature = self.split_feature[:, level]  # (n_trees, 2**depth)
            threshold = self.split_threshold[:, level]
            width = 1 << depth
            low = np.repeat(low, 2, axis=1)
            high = np.repeat(high, 2, axis=1)
            left, right = np.arange(0, 2 * width, 2), np.arange(1, 2 * width, 2)
            high[trees, left[None, :], feature] = threshold
            low[trees, right[None, :], feature] = threshold
        return low, high


@functools.lru_cache(maxsize=64)
def tree_structure(
    n_trees: int,
    height: int,
    seed: int,
    features: tuple[str, ...],
    limits: tuple[tuple[float, float], ...] | None = None,
) -> TreeStructure:
    """Build (once per configuration) the trees river would build for this seed.

    ``features`` must be sorted, as river sorts the first point's keys; ``limits`` gives each
    feature's ``(low, high)`` in the same order and defaults to the unit box.
    """
    if list(features) != sorted(features):
        raise ValueError("features must be sorted, as river builds its trees over sorted(x)")
    rng = random.Random(seed)
    n_branches = 2**height - 1
    split_feature = np.zeros((n_trees, n_branches), dtype=np.intp)
    split_threshold = np.zeros((n_trees, n_branches), dtype=np.float64)
    root = tuple(limits) if limits is not None else ((0.0, 1.0),) * len(features)
    bounds = list(root)
    for tree in range(n_trees):
        _build_padded(bounds, height, rng, split_feature[tree], split_threshold[tree], 0)
    split_feature.setflags(write=False)
    split_threshold.setflags(write=False)
    return TreeStructure(n_trees, height, features, split_feature, split_threshold, root)


def _build_padded(
    bounds: list[tuple[float, float]],
    height: int,
    rng: random.Random,
    split_feature: npt.NDArray[np.intp],
    split_threshold: npt.NDArray[np.float64],
    node: int,
) -> None:
    """river's ``make_padded_tree``, preorder, writing into heap-ordered arrays."""
    if height == 0:
        return
    on = rng.choices(range(len(bounds)), weights=[high - low for low, high in bounds])[0]
    low, high = bounds[on]
    at = rng.uniform(low + PADDING * (high - low), high - PADDING * (high - low))
    split_feature[node] = on
    split_threshold[node] = at
    bounds[on] = (low, at)
    _build_padded(bounds, height - 1, rng, split_feature, split_threshold, 2 * node + 1)
    bounds[on] = (at, high)
    _build_padded(bounds, height - 1, rng, split_feature, split_threshold, 2 * node + 2)
    bounds[on] = (low, high)

"""The interface the detector scores with, and the two engines behind it.

``hst`` (the default) is :class:`~hst_processor.forest.Forest`, which already speaks this
interface. ``river`` wraps river's own ``HalfSpaceTrees``, one instance per series: slower and
heavier, but the reference itself, for users who want exactly river's code in the loop. river
is imported only when that engine is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from hst_processor.forest import SIZE_LIMIT_FRACTION, FloatArray, Forest, Routed
from hst_processor.trees import tree_structure

__all__ = ["Engine", "RiverEngine", "make_engine"]


class ModelState(Protocol):
    """What the detector reads of a series' model."""

    counter: int
    first_window: bool
    windows: int


class Engine(Protocol):
    """Scores and learns rows of scaled features for many series' models."""

    window_size: int
    max_total: int

    def new_masses(self) -> Any: ...

    def release(self, masses: Any) -> None: ...

    def route(self, points: FloatArray) -> Routed:
        """Prepare a batch once for both scoring and learning."""

    def totals_multi(self, owners: Sequence[Any], points: Routed) -> FloatArray:
        """Each point's mass total against its own series' reference window."""

    def learn_multi(self, owners: Sequence[Any], points: Routed) -> None:
        """Learn each point into its own series (never past the end of a window)."""

    def learn_many(self, masses: Any, points: FloatArray) -> None: ...

    def typical_total(self, masses: Any) -> float: ...


def make_engine(
    name: str, features: tuple[str, ...], n_trees: int, height: int, window_size: int, seed: int
) -> Engine:
    """The engine for one feature set; ``hst`` engines share their trees across series."""
    if name == "river":
        return RiverEngine(features, n_trees, height, window_size, seed)
    return Forest(tree_structure(n_trees, height, seed, features), window_size)


class _RiverModel:
    def __init__(self, model: Any) -> None:
        self.model = model
        self.windows = 0
        self.typical: tuple[int, float] | None = None  # (windows, typical total)

    @property
    def counter(self) -> int:
        return int(self.model.counter)

    @property
    def first_window(self) -> bool:
        return bool(self.model._first_window)


class RiverEngine:
    """river's ``HalfSpaceTrees`` per series, behind the engine interface."""

    def __init__(
        self, features: Sequence[str], n_trees: int, height: int, window_size: int, seed: int
    ) -> None:
        from river.anomaly import HalfSpaceTrees  # imported only when asked for

        self._factory = HalfSpaceTrees
        self.features = tuple(features)
        self.n_trees = n_trees
        self.height = height
        self.seed = seed
        self.window_size = window_size
        self.max_total = n_trees * window_size * (2 ** (height + 1) - 1)

    def new_masses(self) -> _RiverModel:
        return _RiverModel(
            self._factory(
                n_trees=self.n_trees,
                height=self.height,
                window_size=self.window_size,
                seed=self.seed,
            )
        )

    def release(self, masses: _RiverModel) -> None:
        del masses  # each river model is its own object: nothing to give back

    def route(self, points: FloatArray) -> Routed:
        return Routed(points)

    def totals_multi(self, owners: Sequence[_RiverModel], points: Routed) -> FloatArray:
        scores = [
            0.0 if owner.first_window else owner.model.score_one(self._point(row))
            for owner, row in zip(owners, points.points.tolist(), strict=True)
        ]
        # Totals are whole numbers; rounding undoes the float error of going through the score.
        totals: FloatArray = np.round((1 - np.array(scores, dtype=np.float64)) * self.max_total)
        return totals

    def learn_multi(self, owners: Sequence[_RiverModel], points: Routed) -> None:
        for owner, row in zip(owners, points.points.tolist(), strict=True):
            owner.model.learn_one(self._point(row))
            if owner.model.counter == 0:
                owner.windows += 1

    def learn_many(self, masses: _RiverModel, points: FloatArray) -> None:
        self.learn_multi([masses] * len(points), Routed(points))

    def _point(self, row: list[float]) -> dict[str, float]:
        return dict(zip(self.features, row, strict=True))

    def typical_total(self, masses: _RiverModel) -> float:
        # Walking river's node objects is slow: once per reference window is enough.
        if masses.typical is None or masses.typical[0] != masses.windows:
            masses.typical = (masses.windows, self._walk_typical(masses))
        return masses.typical[1]

    def _walk_typical(self, masses: _RiverModel) -> float:
        size_limit = SIZE_LIMIT_FRACTION * self.window_size

        def weighted(node: Any, weight: int) -> float:
            mass = node.r_mass
            total = float(mass * mass * weight)
            children = getattr(node, "children", None)
            if children and mass >= size_limit:
                total += weighted(children[0], 2 * weight) + weighted(children[1], 2 * weight)
            return total

        return sum(weighted(tree, 1) for tree in masses.model.trees) / self.window_size

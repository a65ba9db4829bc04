"""The interface the detector scores with, and the two engines behind it.

``hst`` (the default) is :class:`~hst_processor.forest.Forest`, which already speaks this
interface. ``river`` wraps river's own ``HalfSpaceTrees``, one instance per series: slower and
heavier, but the reference itself, for users who want exactly river's code in the loop. river
is imported only when that engine is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from hst_processor.errors import MissingExtra
from hst_processor.forest import (
    SIZE_LIMIT_FRACTION,
    FloatArray,
    Forest,
    Masses,
    Routed,
    isolated_total,
)
from hst_processor.trees import node_count, tree_structure

__all__ = [
    "Engine",
    "EngineParts",
    "Explaining",
    "Persistent",
    "RiverEngine",
    "RiverModel",
    "WindowMasses",
    "engine_persists",
    "make_engine",
]


class WindowMasses(Protocol):
    """What the detector reads of a series' masses: where its window stands."""

    @property
    def counter(self) -> int:
        """Points learned into the window being filled."""

    @property
    def first_window(self) -> bool:
        """Whether the first window is still filling (no reference to score against)."""


M = TypeVar("M", bound=WindowMasses)
M_contra = TypeVar("M_contra", bound=WindowMasses, contravariant=True)


class Engine(Protocol[M]):
    """Scores and learns rows of scaled features for many series' masses of type ``M``."""

    window_size: int
    max_total: int
    isolated_total: float  # see :func:`~hst_processor.forest.isolated_total`

    def new_masses(self) -> M: ...

    def release(self, masses: M) -> None: ...

    def route(self, points: FloatArray) -> Routed:
        """Prepare a batch once for both scoring and learning."""

    def totals_multi(self, owners: Sequence[M], points: Routed) -> FloatArray:
        """Each point's mass total against its own series' reference window."""

    def learn_multi(self, owners: Sequence[M], points: Routed) -> None:
        """Learn each point into its own series (never past the end of a window)."""

    def learn_many(self, masses: M, points: FloatArray) -> None: ...

    def typical_total(self, masses: M) -> float: ...


@runtime_checkable
class Explaining(Protocol[M_contra]):
    """An engine that can say which features set a point apart, and what is normal."""

    def explain(self, masses: M_contra, point: Sequence[float]) -> list[int]:
        """Feature indices, most responsible first (none: nothing stood out)."""

    def normal_box(self, masses: M_contra) -> tuple[FloatArray, FloatArray]:
        """Per feature, the scaled range the model treats as normal."""


@runtime_checkable
class Persistent(Protocol[M_contra]):
    """An engine whose masses can be saved in a snapshot and rebuilt exactly."""

    def export_masses(self, masses: M_contra) -> dict[str, Any]: ...

    def import_masses(self, masses: M_contra, saved: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class EngineParts:
    """An engine and the optional parts of its contract, looked up once when it is built.

    The detector keeps each series' masses beside the engine that made them, so it can hold
    engines of any masses type (``Engine[Any]``); each engine's own masses type is checked
    statically below (``_conforms``).
    """

    engine: Engine[Any]
    explainer: Explaining[Any] | None
    persistence: Persistent[Any] | None

    @classmethod
    def of(cls, engine: Engine[Any]) -> EngineParts:
        return cls(
            engine,
            engine if isinstance(engine, Explaining) else None,
            engine if isinstance(engine, Persistent) else None,
        )


def make_engine(
    name: str, features: tuple[str, ...], n_trees: int, height: int, window_size: int, seed: int
) -> EngineParts:
    """The engine for one feature set; ``hst`` engines share their trees across series."""
    if name == "river":
        return EngineParts.of(RiverEngine(features, n_trees, height, window_size, seed))
    return EngineParts.of(Forest(tree_structure(n_trees, height, seed, features), window_size))


def require_engine(name: str) -> None:
    """Fail at start, not at the first metric, when the engine ``model.engine`` names needs
    a package that is not installed (:class:`MissingExtra`, naming the extra)."""
    if name == "river":
        try:
            importlib.import_module("river.anomaly")
        except ImportError as error:
            raise MissingExtra("model.engine: river", "river", "river") from error


def engine_persists(name: str) -> bool:
    """Whether the engine ``model.engine`` names can keep its masses in a snapshot, checked
    at start on the class (``Persistent``), so the command can say so before any metric."""
    engine_class = RiverEngine if name == "river" else Forest
    return issubclass(engine_class, Persistent)


class RiverModel:
    """One series' river ``HalfSpaceTrees``, with the window count its typical total needs."""

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
        require_engine("river")
        from river.anomaly import HalfSpaceTrees  # imported only when asked for

        self._factory = HalfSpaceTrees
        self.features = tuple(features)
        self.n_trees = n_trees
        self.height = height
        self.seed = seed
        self.window_size = window_size
        self.isolated_total = isolated_total(n_trees, window_size)
        self.max_total = n_trees * window_size * node_count(height)

    def new_masses(self) -> RiverModel:
        return RiverModel(
            self._factory(
                n_trees=self.n_trees,
                height=self.height,
                window_size=self.window_size,
                seed=self.seed,
            )
        )

    def release(self, masses: RiverModel) -> None:
        del masses  # each river model is its own object: nothing to give back

    def route(self, points: FloatArray) -> Routed:
        return Routed(points)

    def totals_multi(self, owners: Sequence[RiverModel], points: Routed) -> FloatArray:
        scores = [
            0.0 if owner.first_window else owner.model.score_one(self._point(row))
            for owner, row in zip(owners, points.points.tolist(), strict=True)
        ]
        # Totals are whole numbers; rounding undoes the float error of going through the score.
        totals: FloatArray = np.round((1 - np.array(scores, dtype=np.float64)) * self.max_total)
        return totals

    def learn_multi(self, owners: Sequence[RiverModel], points: Routed) -> None:
        for owner, row in zip(owners, points.points.tolist(), strict=True):
            owner.model.learn_one(self._point(row))
            if owner.model.counter == 0:
                owner.windows += 1

    def learn_many(self, masses: RiverModel, points: FloatArray) -> None:
        self.learn_multi([masses] * len(points), Routed(points))

    def _point(self, row: list[float]) -> dict[str, float]:
        return dict(zip(self.features, row, strict=True))

    def typical_total(self, masses: RiverModel) -> float:
        # Walking river's node objects is slow: once per reference window is enough.
        if masses.typical is None or masses.typical[0] != masses.windows:
            masses.typical = (masses.windows, self._walk_typical(masses))
        return masses.typical[1]

    def _walk_typical(self, masses: RiverModel) -> float:
        size_limit = SIZE_LIMIT_FRACTION * self.window_size

        def weighted(node: Any, weight: int) -> float:
            mass = node.r_mass
            total = float(mass * mass * weight)
            children = getattr(node, "children", None)
            if children and mass >= size_limit:
                total += weighted(children[0], 2 * weight) + weighted(children[1], 2 * weight)
            return total

        return sum(weighted(tree, 1) for tree in masses.model.trees) / self.window_size


if TYPE_CHECKING:

    def _conforms(forest: Forest, river: RiverEngine) -> None:
        """Type-checked only: each engine honours the contract for its own masses."""
        _forest: Engine[Masses] = forest
        _explaining: Explaining[Masses] = forest
        _persistent: Persistent[Masses] = forest
        _river: Engine[RiverModel] = river

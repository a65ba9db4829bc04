"""Half-Space Trees with river's exact scores, shared tree structure and batch scoring.

river's ``HalfSpaceTrees`` is the reference: for the same seed, feature names and limits this
module builds the very same trees (it replays river's use of :class:`random.Random`) and gives
the same scores to the last bit. What differs is the layout:

* :class:`TreeStructure` holds the split features and thresholds of every tree as flat arrays
  in heap order (node ``k`` has children ``2k + 1`` and ``2k + 2``). It depends only on the
  model configuration, so one instance serves every series (:func:`tree_structure` caches it).
* :class:`Masses` is what one series owns: a row of two integer arrays (``l_mass``, the window
  being filled; ``r_mass``, the reference window) in the forest's :class:`MassStore`, and the
  window counter.
* :class:`Forest` scores and learns batches. Within one window a complete point's score
  depends only on the reference masses, so a batch is scored in one vectorised step and split
  only at window boundaries; single points take a plain-Python walk, which beats NumPy's
  per-call overhead there.

:class:`HalfSpaceTrees` wraps these in river's interface.

>>> hst = HalfSpaceTrees(n_trees=5, height=3, window_size=3, seed=42)
>>> for x in [0.5, 0.45, 0.43]:
...     hst.learn_one({"x": x})
>>> [round(s, 3) for s in hst.score_learn_many([{"x": x} for x in [0.5, 0.45, 0.0]])]
[0.107, 0.071, 0.853]
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "Forest",
    "HalfSpaceTrees",
    "MassStore",
    "Masses",
    "Routed",
    "TreeStructure",
    "tree_structure",
]

# river's magic constants: splits keep 15 % of the range on either side, and the score walk
# stops at the first node whose reference mass is below 10 % of the window.
PADDING = 0.15
SIZE_LIMIT_FRACTION = 0.1

# Below this many points NumPy's fixed cost per call loses to walking the trees in Python.
_VECTOR_MIN_POINTS = 8

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TreeStructure:
    """The split features and thresholds of every tree, shared by all series of a model."""

    n_trees: int
    height: int
    features: tuple[str, ...]
    split_feature: npt.NDArray[np.intp]  # (n_trees, n_branches): index into ``features``
    split_threshold: FloatArray  # (n_trees, n_branches)

    @property
    def n_nodes(self) -> int:
        return (1 << (self.height + 1)) - 1

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
    def node_depth(self) -> npt.NDArray[np.int64]:
        return np.floor(np.log2(np.arange(self.n_nodes) + 1)).astype(np.int64)


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
    bounds = list(limits) if limits is not None else [(0.0, 1.0)] * len(features)
    for tree in range(n_trees):
        _build_padded(bounds, height, rng, split_feature[tree], split_threshold[tree], 0)
    split_feature.setflags(write=False)
    split_threshold.setflags(write=False)
    return TreeStructure(n_trees, height, features, split_feature, split_threshold)


def _build_padded(
    bounds: list[tuple[float, float]],
    height: int,
    rng: random.Random,
    split_feature: npt.NDArray[np.intp],
    split_threshold: FloatArray,
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


class MassStore:
    """The masses of every series of one forest, one row per series, in two 2-D arrays.

    Keeping all series in one array lets a batch that mixes many series be scored and learned
    with one fancy-indexing step instead of a NumPy call per series. Rows are allocated as
    series appear, reused after a series is released, and the arrays grow by half when full
    (fresh rows come from ``np.zeros``, whose pages cost no memory until touched).
    """

    def __init__(self, row_size: int, capacity: int = 16) -> None:
        self.row_size = row_size
        self.live = np.zeros((capacity, row_size), dtype=np.int32)  # l_mass
        self.reference = np.zeros((capacity, row_size), dtype=np.int32)  # r_mass
        self.version = 0  # bumped when the arrays are reallocated
        self._free: list[int] = []
        self._used = 0

    def allocate(self) -> int:
        if self._free:
            return self._free.pop()
        if self._used == len(self.live):
            capacity = max(16, len(self.live) + len(self.live) // 2)
            for name in ("live", "reference"):
                grown = np.zeros((capacity, self.row_size), dtype=np.int32)
                grown[: self._used] = getattr(self, name)[: self._used]
                setattr(self, name, grown)
            self.version += 1
        self._used += 1
        return self._used - 1

    def release(self, slot: int) -> None:
        self.live[slot] = 0
        self.reference[slot] = 0
        self._free.append(slot)


@dataclass(frozen=True)
class Routed:
    """A batch of points and, for a batch large enough to vectorise, the node each point
    reaches at each depth of each tree (shape ``(n_trees, height + 1, n)``)."""

    points: FloatArray
    paths: npt.NDArray[np.intp] | None = None

    def select(self, positions: Sequence[int]) -> Routed:
        """The routed subset at ``positions`` (routing depends only on the point)."""
        points = self.points[positions]
        if self.paths is None or len(positions) < _VECTOR_MIN_POINTS:
            return Routed(points)
        return Routed(points, self.paths[:, :, positions])


@dataclass(eq=False)
class Masses:
    """What one series owns: its row in the store, the window counter and the window state.

    ``l_mass`` (the window being filled) and ``r_mass`` (the reference window) are memoryviews
    on that row for the per-point walk, where indexing a memoryview is several times faster
    than indexing a NumPy array; :meth:`views` gives the same memory as NumPy arrays.
    """

    store: MassStore
    slot: int
    counter: int = 0
    first_window: bool = True
    windows: int = 0
    """Windows completed so far; identifies the reference window in force."""
    _lists: tuple[int, memoryview, memoryview] | None = field(default=None, repr=False)

    def views(self) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        return self.store.live[self.slot], self.store.reference[self.slot]

    def lists(self) -> tuple[memoryview, memoryview]:
        if self._lists is None or self._lists[0] != self.store.version:
            live, reference = self.views()
            self._lists = (
                self.store.version,
                memoryview(live),  # type: ignore[arg-type]
                memoryview(reference),  # type: ignore[arg-type]
            )
        return self._lists[1], self._lists[2]

    @property
    def l_mass(self) -> memoryview:
        return self.lists()[0]

    @property
    def r_mass(self) -> memoryview:
        return self.lists()[1]

    @property
    def nbytes(self) -> int:
        """Memory of this series' masses."""
        return 2 * self.store.row_size * self.store.live.itemsize


class Forest:
    """Scores and learns points for any number of series that share one tree structure.

    Points are rows of floats in the order of ``structure.features``; a missing feature is
    ``None`` in the per-point API and cannot occur in the array API. The ``*_multi`` methods
    take one :class:`Masses` per point, so one call serves a batch that mixes series.
    """

    def __init__(self, structure: TreeStructure, window_size: int) -> None:
        self.structure = structure
        self.window_size = window_size
        self.size_limit = SIZE_LIMIT_FRACTION * window_size
        self.max_total = structure.n_trees * window_size * structure.n_nodes
        self.store = MassStore(structure.n_trees * structure.n_nodes)
        self._tree_offsets = (np.arange(structure.n_trees) * structure.n_nodes)[:, None, None]
        self._branch_offsets = (np.arange(structure.n_trees) * structure.n_branches)[:, None]
        self._flat_split_feature = structure.split_feature.reshape(-1)
        self._flat_split_threshold = structure.split_threshold.reshape(-1)
        self._depth_weights = (1 << np.arange(structure.height + 1, dtype=np.int64))[None, :, None]

    def new_masses(self) -> Masses:
        return Masses(self.store, self.store.allocate())

    def release(self, masses: Masses) -> None:
        """Give a forgotten series' row back to the store."""
        self.store.release(masses.slot)

    def to_score(self, total: float) -> float:
        """river's score from a mass total: higher means more anomalous."""
        return 1 - total / self.max_total

    # -- one point at a time (plain Python over flat arrays) ---------------------------------

    # total_one and learn_one repeat the step to the next node on purpose: it is the hot loop of
    # single-point scoring, and a function call per node would cost more than the walk itself.

    def total_one(self, masses: Masses, point: Sequence[float | None]) -> float:
        """The mass total river's ``score_one`` is built from (``max_total`` in the first
        window, which scores 0)."""
        if masses.first_window:
            return float(self.max_total)
        s = self.structure
        features, thresholds = s.flat_feature, s.flat_threshold
        l_mass, r_mass = masses.lists()
        n_nodes, n_branches, height = s.n_nodes, s.n_branches, s.height
        size_limit = self.size_limit
        total = 0
        for tree in range(s.n_trees):
            base, branch_base = tree * n_nodes, tree * n_branches
            node = 0
            weight = 1
            for _ in range(height):
                mass = r_mass[base + node]
                total += mass * weight
                if mass < size_limit:
                    break
                value = point[features[branch_base + node]]
                if value is None:
                    left = 2 * node + 1
                    node = left + 1 if l_mass[base + left] < l_mass[base + left + 1] else left
                else:
                    node = 2 * node + 1 if value < thresholds[branch_base + node] else 2 * node + 2
                weight <<= 1
            else:
                total += r_mass[base + node] * weight
        return float(total)

    def learn_one(self, masses: Masses, point: Sequence[float | None]) -> None:
        s = self.structure
        features, thresholds = s.flat_feature, s.flat_threshold
        l_mass, _ = masses.lists()
        n_nodes, n_branches, height = s.n_nodes, s.n_branches, s.height
        for tree in range(s.n_trees):
            base, branch_base = tree * n_nodes, tree * n_branches
            node = 0
            for _ in range(height):
                l_mass[base + node] += 1
                value = point[features[branch_base + node]]
                if value is None:
                    left = 2 * node + 1
                    node = left + 1 if l_mass[base + left] < l_mass[base + left + 1] else left
                else:
                    node = 2 * node + 1 if value < thresholds[branch_base + node] else 2 * node + 2
            l_mass[base + node] += 1
        self._count_learned(masses, 1)

    def score_learn_one(self, masses: Masses, point: Sequence[float | None]) -> float:
        """``total_one`` then ``learn_one`` in a single walk down each tree.

        Exact: scoring reads only ``r_mass``, and where a missing feature routes by the
        children's ``l_mass`` they have not been incremented yet, just as in separate walks.
        """
        if masses.first_window:
            self.learn_one(masses, point)
            return float(self.max_total)
        s = self.structure
        features, thresholds = s.flat_feature, s.flat_threshold
        l_mass, r_mass = masses.lists()
        n_nodes, n_branches, height = s.n_nodes, s.n_branches, s.height
        size_limit = self.size_limit
        total = 0
        for tree in range(s.n_trees):
            base, branch_base = tree * n_nodes, tree * n_branches
            node = 0
            weight = 1  # 0 once the score walk has stopped
            for _ in range(height):
                l_mass[base + node] += 1
                if weight:
                    mass = r_mass[base + node]
                    total += mass * weight
                    weight = 0 if mass < size_limit else weight << 1
                value = point[features[branch_base + node]]
                if value is None:
                    left = 2 * node + 1
                    node = left + 1 if l_mass[base + left] < l_mass[base + left + 1] else left
                else:
                    node = 2 * node + 1 if value < thresholds[branch_base + node] else 2 * node + 2
            l_mass[base + node] += 1
            if weight:
                total += r_mass[base + node] * weight
        self._count_learned(masses, 1)
        return float(total)

    def _count_learned(self, masses: Masses, n: int) -> None:
        masses.counter += n
        if masses.counter == self.window_size:
            live, reference = masses.views()
            reference[:] = live
            live[:] = 0
            masses.first_window = False
            masses.counter = 0
            masses.windows += 1

    # -- batches -------------------------------------------------------------------------------

    def score_learn_many(self, masses: Masses, points: FloatArray) -> FloatArray:
        """Mass totals of one series' complete points, each taken just before it is learned.

        ``points`` is an ``(n, n_features)`` array. Returns the totals (``max_total`` while
        the first window fills). The batch is routed down the trees once and split only
        where a window ends.
        """
        n = len(points)
        if n < _VECTOR_MIN_POINTS:
            totals = [self.score_learn_one(masses, row) for row in points.tolist()]
            return np.array(totals, dtype=np.float64).reshape(n)
        paths = self._paths(points)
        result = np.empty(n, dtype=np.float64)
        start = 0
        while start < n:
            end = min(n, start + self.window_size - masses.counter)
            part = paths[:, :, start:end]
            if masses.first_window:
                result[start:end] = self.max_total
            else:
                result[start:end] = self._totals(np.full(end - start, masses.slot), part)
            self._learn_single(masses, part)
            start = end
        return result

    def _learn_single(self, masses: Masses, paths: npt.NDArray[np.intp]) -> None:
        """Learn one series' routed points, which fit in its current window."""
        visits = np.bincount(
            (paths + self._tree_offsets).reshape(-1), minlength=self.store.row_size
        )
        live = self.store.live[masses.slot]
        np.add(live, visits, out=live, casting="unsafe")
        self._count_learned(masses, paths.shape[2])

    def totals_many(self, masses: Masses, points: FloatArray) -> FloatArray:
        """Totals of one series' complete points against its current reference window."""
        return self.totals_multi([masses] * len(points), points)

    def learn_many(self, masses: Masses, points: FloatArray) -> None:
        """Learn one series' complete points in order, ending windows where they fill."""
        start = 0
        while start < len(points):
            chunk = points[start : start + self.window_size - masses.counter]
            self.learn_multi([masses] * len(chunk), chunk)
            start += len(chunk)

    def route(self, points: FloatArray) -> Routed:
        """Walk a batch of complete points down every tree once, for scoring and learning."""
        if len(points) < _VECTOR_MIN_POINTS:
            return Routed(points)
        return Routed(points, self._paths(points))

    def totals_multi(self, owners: Sequence[Masses], points: FloatArray | Routed) -> FloatArray:
        """Totals of complete points, each against its own series' reference window.

        Exact as long as no window ends in between, which callers ensure by scoring at most
        ``window_size - counter`` points of a series before they learn.
        """
        routed = points if isinstance(points, Routed) else self.route(points)
        n = len(routed.points)
        if routed.paths is None:
            return np.array(
                [self.total_one(owner, row) for owner, row in zip(owners, routed.points.tolist())],
                dtype=np.float64,
            ).reshape(n)
        totals = self._totals(self._slots(owners), routed.paths)
        first = [i for i, owner in enumerate(owners) if owner.first_window]
        if first:
            totals[first] = self.max_total
        return totals

    def learn_multi(self, owners: Sequence[Masses], points: FloatArray | Routed) -> None:
        """Learn complete points, each into its own series.

        No series may receive more points than its window has room for
        (``window_size - counter``); a window that fills exactly is ended.
        """
        routed = points if isinstance(points, Routed) else self.route(points)
        if routed.paths is None:
            for owner, row in zip(owners, routed.points.tolist()):
                self.learn_one(owner, row)
            return
        slot_of_point = self._slots(owners)
        slots, first, local, counts = np.unique(
            slot_of_point, return_index=True, return_inverse=True, return_counts=True
        )
        self._add_visits(routed.paths, slot_of_point, slots, local.reshape(-1))
        for position, count in zip(first.tolist(), counts.tolist(), strict=True):
            owner = owners[position]
            if owner.counter + count > self.window_size:
                raise ValueError("more points than the window has room for")
            self._count_learned(owner, count)

    def _add_visits(
        self,
        paths: npt.NDArray[np.intp],
        slot_of_point: npt.NDArray[np.intp],
        slots: npt.NDArray[np.intp],
        local: npt.NDArray[np.intp],
    ) -> None:
        """Add one to ``l_mass`` of every node on every path: a bincount per batch, which is
        several times faster than ``np.add.at``.

        When the batch's rows lie close together (the usual case: series get rows in order of
        appearance) the counts go straight into that contiguous block of the store; otherwise
        into the touched rows only, through fancy indexing.
        """
        row_size = self.store.row_size
        flat = paths + self._tree_offsets
        low, high = int(slots[0]), int(slots[-1]) + 1
        if (high - low) * row_size <= 8 * flat.size:
            flat += ((slot_of_point - low) * row_size)[None, None, :]
            visits = np.bincount(flat.ravel(), minlength=(high - low) * row_size)
            block = self.store.live[low:high].reshape(-1)
            np.add(block, visits, out=block, casting="unsafe")
        else:
            flat += (local * row_size)[None, None, :]
            visits = np.bincount(flat.ravel(), minlength=len(slots) * row_size)
            self.store.live[slots] += visits.reshape(len(slots), row_size).astype(np.int32)

    def _slots(self, owners: Sequence[Masses]) -> npt.NDArray[np.intp]:
        return np.fromiter((owner.slot for owner in owners), dtype=np.intp, count=len(owners))

    def _paths(self, points: FloatArray) -> npt.NDArray[np.intp]:
        """Node index at each depth for each tree and point: shape (n_trees, height + 1, n)."""
        s = self.structure
        n = len(points)
        # Flat arrays and take() instead of multi-dimensional fancy indexing: same result,
        # a third of the time.
        values = np.ascontiguousarray(points.T).reshape(-1)
        column = np.arange(n)
        node = np.zeros((s.n_trees, n), dtype=np.intp)
        paths = np.empty((s.n_trees, s.height + 1, n), dtype=np.intp)
        for depth in range(s.height):
            paths[:, depth] = node
            branch = node + self._branch_offsets
            value = values.take(self._flat_split_feature.take(branch) * n + column)
            # river goes left iff value < threshold, so NaN goes right.
            go_right = ~(value < self._flat_split_threshold.take(branch))
            node = 2 * node + 1
            node += go_right
        paths[:, s.height] = node
        return paths

    def _totals(self, slots: npt.NDArray[np.intp], paths: npt.NDArray[np.intp]) -> FloatArray:
        flat = paths + self._tree_offsets
        flat += (slots * self.store.row_size)[None, None, :]
        mass = self.store.reference.reshape(-1).take(flat)
        # A node counts only if every node above it on the path had enough mass.
        enough = mass >= self.size_limit
        weighted = mass * self._depth_weights
        weighted[:, 1:] *= np.logical_and.accumulate(enough, axis=1)[:, :-1]
        result: FloatArray = weighted.sum(axis=(0, 1)).astype(np.float64)
        return result

    def typical_total(self, masses: Masses) -> float:
        """The mean mass total of a point drawn from the reference window.

        A reference point reaches node ``k`` with probability ``r_mass[k] / window_size``, so
        the mean is a sum over nodes; it is what the calibrated score compares a point with.
        """
        s = self.structure
        _, reference = masses.views()
        mass = reference.reshape(s.n_trees, s.n_nodes).astype(np.float64)
        enough = mass >= self.size_limit
        reached = np.ones_like(enough)
        for depth in range(1, s.height + 1):
            level = np.arange((1 << depth) - 1, (1 << (depth + 1)) - 1)
            parents = (level - 1) // 2
            reached[:, level] = reached[:, parents] & enough[:, parents]
        weights = np.exp2(s.node_depth)[None, :]
        return float((reached * mass * mass * weights).sum() / self.window_size)


class HalfSpaceTrees:
    """river's ``HalfSpaceTrees`` interface and scores, without river.

    Parameters match river's: ``limits`` maps a feature to its ``(low, high)`` range (default
    ``(0, 1)``); the trees are built on the first ``learn_one`` over the sorted keys of that
    point, so a feature absent then is never used.
    """

    def __init__(
        self,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        seed: int | None = None,
        limits: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed if seed is not None else random.randrange(2**32)
        self.limits = dict(limits or {})
        self._forest: Forest | None = None
        self._masses: Masses | None = None

    def _build(self, first: Mapping[str, float]) -> tuple[Forest, Masses]:
        features = tuple(sorted(first))
        limits = tuple(self.limits.get(name, (0.0, 1.0)) for name in features)
        structure = tree_structure(self.n_trees, self.height, self.seed, features, limits)
        self._forest = Forest(structure, self.window_size)
        self._masses = self._forest.new_masses()
        return self._forest, self._masses

    def _row(self, forest: Forest, x: Mapping[str, float]) -> list[float | None]:
        return [x.get(name) for name in forest.structure.features]

    def learn_one(self, x: Mapping[str, float]) -> None:
        forest, masses = (
            (self._forest, self._masses) if self._forest and self._masses else self._build(x)
        )
        forest.learn_one(masses, self._row(forest, x))

    def score_one(self, x: Mapping[str, float]) -> float:
        if self._forest is None or self._masses is None:
            return 0.0
        # In the first window total_one gives max_total, which scores 0 as river does.
        return self._forest.to_score(
            self._forest.total_one(self._masses, self._row(self._forest, x))
        )

    def score_learn_many(self, points: Sequence[Mapping[str, float]]) -> list[float]:
        """For each point in order, its score just before it is learned."""
        scores: list[float] = []
        start = 0
        while start < len(points):
            if self._forest is None or self._masses is None:
                self._build(points[start])
            assert self._forest is not None and self._masses is not None
            forest, masses = self._forest, self._masses
            names = forest.structure.features
            if len(points) - start < _VECTOR_MIN_POINTS:
                for point in points[start:]:
                    row = [point.get(name) for name in names]
                    scores.append(forest.to_score(forest.score_learn_one(masses, row)))
                return scores
            # Gather the longest run of complete points and score it as one array.
            rows: list[list[float]] = []
            for point in points[start:]:
                try:
                    rows.append([point[name] for name in names])
                except KeyError:
                    break
            if rows:
                totals = forest.score_learn_many(masses, np.array(rows, dtype=np.float64))
                scores.extend(forest.to_score(total) for total in totals.tolist())
                start += len(rows)
            else:
                scores.append(self.score_one(points[start]))
                self.learn_one(points[start])
                start += 1
        return scores

"""``HalfSpaceTrees``: river's interface and river's exact scores, without river.

>>> hst = HalfSpaceTrees(n_trees=5, height=3, window_size=3, seed=42)
>>> for x in [0.5, 0.45, 0.43]:
...     hst.learn_one({"x": x})
>>> [round(s, 3) for s in hst.score_learn_many([{"x": x} for x in [0.5, 0.45, 0.0]])]
[0.107, 0.071, 0.853]
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import numpy as np

from hst_processor.forest import VECTOR_MIN_POINTS, Forest, Masses
from hst_processor.trees import tree_structure

__all__ = ["HalfSpaceTrees"]


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
            if len(points) - start < VECTOR_MIN_POINTS:
                for point in points[start:]:
                    total = forest.score_learn_one(masses, self._row(forest, point))
                    scores.append(forest.to_score(total))
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
                total = forest.score_learn_one(masses, self._row(forest, points[start]))
                scores.append(forest.to_score(total))
                start += 1
        return scores

"""Exactness on long streams: 100,000 points per configuration, every raw score equal to river's.

The streams mix in 5 % missing features and 1 % NaN, and are fed to our engine in batches of
mixed sizes, so the vectorised path, the single-point walk and the missing-feature routing all
take their share. This is the slowest module of the suite: river needs minutes at (25, 15).
"""

from __future__ import annotations

import random

import pytest

from hst_processor.halfspacetrees import HalfSpaceTrees
from tests.test_forest import mixed_stream, river_scores

N_POINTS = 100_000


@pytest.mark.parametrize(
    ("n_trees", "height", "window_size"),
    [(10, 8, 250), (25, 15, 250), (5, 2, 250)],
    ids=["10x8x250", "25x15x250", "5x2x250"],
)
def test_100k_point_stream_equals_river(n_trees: int, height: int, window_size: int) -> None:
    points = mixed_stream(N_POINTS, seed=height, missing=0.05, nan=0.01)
    params = {"n_trees": n_trees, "height": height, "window_size": window_size, "seed": 2026}
    expected = river_scores(points, **params)
    model = HalfSpaceTrees(**params)
    sizes = random.Random(height)
    got: list[float] = []
    start = 0
    while start < len(points):
        size = sizes.choice((1, 3, 10, 100, 1000))
        got.extend(model.score_learn_many(points[start : start + size]))
        start += size
    assert len(got) == len(expected)
    mismatches = [i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b]
    assert mismatches == [], f"{len(mismatches)} scores differ, first at point {mismatches[:1]}"
    # The stream did exercise what it claims to: varied scores, missing features and NaN.
    assert len(set(expected)) > 1_000
    assert sum(len(p) < 4 for p in points) > 0.1 * N_POINTS
    assert sum(any(v != v for v in p.values()) for p in points) > 0.02 * N_POINTS

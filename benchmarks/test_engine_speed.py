"""Engine points/s against river's HalfSpaceTrees: same stream, score then learn each point.

Each round starts from a model whose first window is already learned (not timed), so every
timed point is scored and learned, window swaps included.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import river.anomaly as river_anomaly

from hst_processor.halfspacetrees import HalfSpaceTrees

FEATURES = ("load", "power", "temperature", "vibration")
CONFIGS = [(10, 8, 250), (25, 15, 250), (5, 2, 250)]
BATCHES = [1, 10, 100, 1000]


def stream(n: int, seed: int = 1) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{name: rng.random() for name in FEATURES} for _ in range(n)]


def timed_points(config: tuple[int, int, int]) -> int:
    # River at (25, 15) learns about a thousand points a second: keep its rounds short.
    return 2_000 if config[1] >= 15 else 20_000


def warmed(factory: Any, config: tuple[int, int, int], warmup: list[dict[str, float]]) -> Any:
    n_trees, height, window = config
    model = factory(n_trees=n_trees, height=height, window_size=window, seed=42)
    for x in warmup:
        model.learn_one(x)
    return model


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "x".join(map(str, c)))
def test_river_score_then_learn(benchmark: Any, config: tuple[int, int, int]) -> None:
    points = stream(config[2] + timed_points(config))
    warmup, timed = points[: config[2]], points[config[2] :]

    def run(model: Any) -> None:
        for x in timed:
            model.score_one(x)
            model.learn_one(x)

    rounds = 1 if config[1] >= 15 else 3
    benchmark.group = f"engine {config}"
    benchmark.extra_info.update(
        baseline_key=f"river {config}", units="points", per_round=len(timed)
    )
    benchmark.pedantic(
        run,
        setup=lambda: ((warmed(river_anomaly.HalfSpaceTrees, config, warmup),), {}),
        rounds=rounds,
    )


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "x".join(map(str, c)))
def test_ours_score_learn_many(benchmark: Any, config: tuple[int, int, int], batch: int) -> None:
    points = stream(config[2] + timed_points(config))
    warmup, timed = points[: config[2]], points[config[2] :]
    batches = [timed[i : i + batch] for i in range(0, len(timed), batch)]

    def run(model: HalfSpaceTrees) -> None:
        for chunk in batches:
            model.score_learn_many(chunk)

    benchmark.group = f"engine {config}"
    benchmark.extra_info.update(
        row=f"engine {config} batch {batch}",
        baseline=f"river {config}",
        units="points",
        per_round=len(timed),
    )
    benchmark.pedantic(run, setup=lambda: ((warmed(HalfSpaceTrees, config, warmup),), {}), rounds=3)

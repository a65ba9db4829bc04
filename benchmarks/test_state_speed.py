"""Saving state: 10,000 series at (10, 8, 250), against pickling river models (the obvious
way to persist the naive processor), per series, in the same run."""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path
from typing import Any

import pytest
import river.anomaly as river_anomaly

from hst_processor.config import parse_config
from hst_processor.detector import Detector
from hst_processor.lineproto import parse_metric
from hst_processor.log import Log
from hst_processor.state import snapshot, write_atomic

N_SERIES = 10_000
LIMITS = {"load": [0, 250], "power": [0, 600], "temperature": [0, 150], "vibration": [0, 700]}


@pytest.fixture(scope="module")
def detector() -> Detector:
    config = parse_config(
        {
            "measurements": ["machine_data"],
            "group_by": ["machineID"],
            "features": list(LIMITS),
            "max_series": N_SERIES,
            "scaling": {"mode": "fixed", "limits": LIMITS},
            "alerts": {"enabled": False},
        }
    )
    detector = Detector(config, Log(io.StringIO()))
    rng = random.Random(1)
    metrics = [
        parse_metric(
            f"machine_data,machineID=m{i} load={rng.uniform(50, 99):.2f},"
            f"power={rng.uniform(200, 220):.2f},temperature={rng.uniform(35, 40):.2f},"
            f"vibration={rng.uniform(80, 90):.2f} 1"
        )
        for i in range(N_SERIES)
    ]
    for _ in range(260):  # every series past its first window
        detector.process(metrics)
    return detector


def test_save_river_models(benchmark: Any, tmp_path: Path) -> None:
    rng = random.Random(2)
    models = []
    for _ in range(200):
        model = river_anomaly.HalfSpaceTrees(n_trees=10, height=8, window_size=250, seed=42)
        for _ in range(260):
            model.learn_one({name: rng.random() for name in LIMITS})
        models.append(model)
    path = tmp_path / "river.pickle"

    def save() -> int:
        data = pickle.dumps(models, protocol=pickle.HIGHEST_PROTOCOL)
        write_atomic(path, data)
        return len(data)

    size = benchmark.pedantic(save, rounds=3)
    per_series_seconds = benchmark.stats.stats.median / len(models)
    benchmark.extra_info.update(
        baseline_key="pickled river models", value=per_series_seconds * N_SERIES, unit="s/10k"
    )
    benchmark.extra_info["bytes_per_series"] = size / len(models)


def test_save_state_10k_series(benchmark: Any, detector: Detector, tmp_path: Path) -> None:
    path = tmp_path / "state.msgpack"

    def save() -> int:
        data = snapshot(detector, processed=0)
        write_atomic(path, data)
        return len(data)

    size = benchmark.pedantic(save, rounds=3)
    benchmark.extra_info.update(
        row="state save, 10,000 series",
        baseline="pickled river models",
        value=benchmark.stats.stats.median,
        unit="s/10k",
    )
    benchmark.extra_info["bytes_per_series"] = size / N_SERIES
    print(f"\nstate file: {size / N_SERIES / 1024:.1f} KiB per series")

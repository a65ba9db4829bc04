"""The baselines judge what they are meant to judge, and nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from hst_processor.baselines import robust_zscore, seed_detector, static_threshold


def normal_rows(count: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(50, 99, count), rng.uniform(200, 220, count)])


def test_static_threshold_flags_values_outside_the_widened_warmup_range() -> None:
    rows = np.vstack([normal_rows(300), [[70, 250]], [[70, 221]]])
    flags = static_threshold(rows, warmup=250, margin=0.1)
    assert flags[:250] == [None] * 250
    assert flags[-2:] == [True, False]  # 221 is inside 200-220 widened by 2
    assert not any(flags[250:300])


def test_robust_zscore_flags_a_jump_and_a_frozen_change_but_not_noise() -> None:
    rows = normal_rows(400)
    flags = robust_zscore(rows, window=60)
    assert flags[:60] == [None] * 60
    assert sum(bool(f) for f in flags[60:]) <= 4
    jumped = np.vstack([rows, [[70, 300]]])
    assert robust_zscore(jumped, window=60)[-1] is True


def test_seed_detector_watches_power_only() -> None:
    pytest.importorskip("river")
    rows = normal_rows(600)
    rows[500:510, 0] = 500  # a load excursion the seed cannot see
    rows[550:560, 1] = 900  # a power excursion it can
    flags = seed_detector(rows, ("load", "power"))
    assert not any(flags[500:510])
    assert sum(bool(f) for f in flags[550:560]) >= 5

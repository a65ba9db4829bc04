"""The baselines judge what they are meant to judge, and nothing else."""

from __future__ import annotations

import numpy as np

from hst_processor.offline.baselines import (
    BASELINES,
    isolation_forest,
    river_hst,
    robust_zscore,
    static_threshold,
)


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


def test_river_hst_flags_a_visit_to_an_empty_part_of_the_range_after_its_first_window() -> None:
    rng = np.random.default_rng(3)
    # Load covers 50-99 at first (the scaler's range), then stays in 50-55 for 900 metrics.
    load = np.concatenate([rng.uniform(50, 99, 300), rng.uniform(50, 55, 900)])
    rows = np.column_stack([load, rng.uniform(200, 220, 1200)])
    rows[1100:1110, 0] = 97
    flags = river_hst(rows)
    assert flags[:250] == [None] * 250
    assert sum(bool(f) for f in flags[1100:1110]) >= 5
    assert not any(flags[600:1100])


def test_river_hst_cannot_tell_far_beyond_its_scaler_range_from_the_edge() -> None:
    # Why the processor squashes its features instead (hst_processor.context): behind a
    # MinMaxScaler, a value ten times beyond the range lands in the same outermost cells.
    rows = normal_rows(1200)
    rows[1000:1010, 0] = 500
    flags = river_hst(rows)
    assert not any(flags[1000:1010])


def test_isolation_forest_trains_on_the_warmup_and_flags_what_it_never_saw() -> None:
    rows = np.vstack([normal_rows(600), [[300, 900]]])
    flags = isolation_forest(rows, warmup=500)
    assert flags[:500] == [None] * 500
    assert flags[-1] is True
    assert sum(bool(f) for f in flags[500:600]) <= 2


def test_every_baseline_takes_any_number_of_fields() -> None:
    for width in (1, 5):
        rows = np.random.default_rng(width).normal(size=(400, width))
        for name, detector in BASELINES.items():
            flags = detector(rows, 300)
            assert len(flags) == len(rows), name

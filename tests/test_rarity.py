"""The rarity score means the same share of a series' metrics whatever their scale and shape."""

from __future__ import annotations

import numpy as np
import pytest

from hst_processor.rarity import Rarity, RarityState, rarity_of, score_of


def scores_of(values: np.ndarray, rarity: Rarity) -> list[float | None]:
    state = rarity.new_state()
    scores: list[float | None] = []
    for value in values.tolist():
        scores.append(rarity.score(state, value) if rarity.ready(state) else None)
        rarity.learn(state, value)
    return scores


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng, n: rng.normal(0.0, 0.3, n),  # a light tail
        lambda rng, n: rng.exponential(0.4, n) - 1.0,  # a heavier one
    ],
    ids=["normal", "exponential"],
)
def test_the_default_threshold_flags_about_one_in_a_thousand(draw: object) -> None:
    rng = np.random.default_rng(5)
    values = draw(rng, 60_000)  # type: ignore[operator]
    scored = [s for s in scores_of(values, Rarity(upper=6.0)) if s is not None]
    share = sum(s >= 0.5 for s in scored) / len(scored)
    assert 0.001 / 3 <= share <= 0.001 * 3, share


def test_a_bounded_statistic_is_flagged_rarely_not_more_often() -> None:
    # The Pareto fit sees a tail that ends: it extrapolates conservatively, never loosely.
    values = np.random.default_rng(4).uniform(-1.0, 2.0, 60_000)
    scored = [s for s in scores_of(values, Rarity(upper=6.0)) if s is not None]
    assert sum(s >= 0.5 for s in scored) / len(scored) <= 0.001 * 3


def test_the_score_does_not_depend_on_where_the_statistic_sits() -> None:
    rng = np.random.default_rng(6)
    values = rng.normal(0.0, 0.3, 20_000)
    low = scores_of(values, Rarity(upper=6.0))
    high = scores_of(values + 2.0, Rarity(upper=6.0))
    pairs = [(a, b) for a, b in zip(low, high, strict=True) if a is not None and b is not None]
    assert max(abs(a - b) for a, b in pairs) < 0.1


def test_common_values_score_low_and_values_beyond_all_seen_score_high() -> None:
    rarity = Rarity(upper=6.0)
    state = rarity.new_state()
    for value in np.random.default_rng(7).normal(0.0, 0.3, 5_000).tolist():
        rarity.learn(state, value)
    assert rarity.score(state, 0.0) < 0.1
    assert rarity.score(state, 3.0) > 0.8
    assert rarity.score(state, 1.0) < rarity.score(state, 1.5) < rarity.score(state, 2.0)


def test_nothing_is_scored_before_enough_scores_were_seen() -> None:
    rarity = Rarity(upper=6.0, min_scores=100)
    assert scores_of(np.zeros(150), rarity)[:100] == [None] * 100


def test_the_calibration_follows_a_series_whose_scores_move() -> None:
    rarity = Rarity(upper=6.0, half_life=500)
    state = rarity.new_state()
    rng = np.random.default_rng(8)
    for value in rng.normal(0.0, 0.1, 5_000).tolist():
        rarity.learn(state, value)
    assert rarity.score(state, 1.0) > 0.8
    for value in rng.normal(1.0, 0.1, 5_000).tolist():  # a new normal, ten half-lives long
        rarity.learn(state, value)
    assert rarity.score(state, 1.0) < 0.2


def test_an_exported_state_scores_exactly_as_the_original() -> None:
    rarity = Rarity(upper=6.0)
    rng = np.random.default_rng(9)
    first, second = rng.normal(0.0, 0.3, 3_001), rng.normal(0.0, 0.3, 2_000)
    state = rarity.new_state()
    for value in first.tolist():
        rarity.learn(state, value)
    copy = RarityState.restore(state.export())
    for value in second.tolist():
        assert rarity.score(copy, value) == rarity.score(state, value)
        rarity.learn(state, value)
        rarity.learn(copy, value)


def test_non_finite_statistics_do_not_break_the_calibration() -> None:
    rarity = Rarity(upper=6.0)
    state = rarity.new_state()
    for value in [*np.linspace(-1, 1, 1_500).tolist(), float("nan"), float("inf")]:
        rarity.learn(state, value)
    assert rarity.score(state, float("inf")) == 1.0
    assert 0.0 <= rarity.score(state, 0.5) <= 1.0


def test_score_and_rarity_are_inverse() -> None:
    for score in (0.0, 0.25, 0.5, 0.75, 1.0):
        assert score_of(rarity_of(score)) == pytest.approx(score)


def test_before_the_tail_holds_enough_scores_a_value_beyond_all_is_the_rank_bound() -> None:
    """On its first hundred scores the Pareto fit flagged normal metrics three to twenty
    times as often as the threshold says (the simulator, SMD, ASD, NAB)."""
    rarity = Rarity(upper=6.0)
    rng = np.random.default_rng(4)
    state = rarity.new_state()
    for value in rng.normal(0.0, 0.3, 200).tolist():
        rarity.learn(state, value)
    assert rarity.share(state, 5.0) == 1 / 201  # beyond all 200: the newest is the largest
    assert rarity.score(state, 5.0) < 0.5  # no claim of 1 in 1,000 on 200 scores
    for value in rng.normal(0.0, 0.3, rarity.extrapolate_after - 200).tolist():
        rarity.learn(state, value)
    assert rarity.extrapolate_after == 1_000  # 20 values in the top 2 %
    assert rarity.score(state, 5.0) > 0.9  # the tail extrapolates now


@pytest.mark.parametrize("draw", ["normal", "gumbel", "lognormal"])
def test_the_first_thousand_scores_flag_no_more_than_the_threshold_says(draw: str) -> None:
    """Fitted on its first hundred scores, the tail flagged about twice the threshold's rate
    on the next thousand of such series (three to twenty times on real data)."""
    rarity = Rarity(upper=6.0)
    flagged = scored = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        state = rarity.new_state()
        values = getattr(rng, draw)(0.0, 0.3, 1_100)
        for value in values.tolist():
            if rarity.ready(state):
                scored += 1
                flagged += rarity.score(state, value) >= 0.5
            rarity.learn(state, value)
    assert flagged / scored <= 0.001  # rarer than 1 in 1,000 means that from the start


@pytest.mark.parametrize("extrapolate_after", [None, 150])
def test_observe_is_score_then_learn_to_the_bit(extrapolate_after: int | None) -> None:
    """The processor's one call per metric gives what score-then-learn gives, tail and
    histogram, before and after the tail may extrapolate, values beyond both ends included."""
    rng = np.random.default_rng(8)
    values = np.concatenate([rng.normal(0.0, 0.4, 3000), [-5.0, 40.0, np.inf, np.nan]])
    rng.shuffle(values)
    rarity = Rarity(upper=9.0, extrapolate_after=extrapolate_after)
    state = rarity.new_state()
    observed = [rarity.observe(state, value) for value in values.tolist()]
    expected = scores_of(values, Rarity(upper=9.0, extrapolate_after=extrapolate_after))
    assert [None if s is None else s.hex() for s in observed] == [
        None if s is None else s.hex() for s in expected
    ]
    assert sum(s is not None and s >= 0.5 for s in observed) >= 1

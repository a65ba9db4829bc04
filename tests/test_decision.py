"""The decision stages: the episode the tag marks and the learn gate."""

from __future__ import annotations

import doctest

import hst_processor.decision
from hst_processor.config import DetectionConfig
from hst_processor.decision import EpisodeRule, EpisodeState, GateState, LearnGate


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(hst_processor.decision).failed == 0


def test_an_episode_ends_only_after_enough_calm_metrics_in_a_row() -> None:
    rule = EpisodeRule(threshold=0.5, end=0.3, resolve_after=3)
    state = EpisodeState()
    # 0.4 is below the threshold but not calm: it restarts the count.
    scores = [0.1, 0.6, 0.2, 0.2, 0.4, 0.2, 0.2, 0.2, 0.2]
    flagged = [rule.decide(state, score)[1] for score in scores]
    assert flagged == [False, True, True, True, True, True, True, False, False]


def test_the_rule_follows_the_detection_config() -> None:
    rule = EpisodeRule.of(DetectionConfig(threshold=0.5, resolve_after=7))
    assert rule == EpisodeRule(0.5, 0.35, 7)


def test_the_episode_state_survives_export_and_restore() -> None:
    state = EpisodeState(True, 4)
    assert EpisodeState.restore(state.export()) == state
    assert EpisodeState.restore(None) == EpisodeState()  # snapshots of 0.1


def test_an_anomaly_is_not_learned_until_it_lasted_relearn_after_metrics() -> None:
    gate = LearnGate(learn_below=0.5, learn_anomalies=False, relearn_after=3)
    state = GateState()
    learned = [gate.learns(state, 0.9, True) for _ in range(5)]
    assert learned == [False, False, False, True, True]
    assert gate.learns(state, 0.1, False) and state.anomalous_run == 0


def test_a_weak_anomaly_below_the_threshold_is_kept_out_by_the_learn_threshold() -> None:
    gate = LearnGate.of(DetectionConfig(threshold=0.5, learn_threshold=0.3, relearn_after=0))
    state = GateState()
    assert not gate.learns(state, 0.4, False)
    assert not any(gate.learns(state, 0.9, True) for _ in range(1000))  # 0: never relearn


def test_learn_anomalies_learns_everything() -> None:
    gate = LearnGate.of(DetectionConfig(learn_anomalies=True))
    assert gate.learns(GateState(), 1.0, True)

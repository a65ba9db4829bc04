"""The decision for one scored metric: is it anomalous, is it inside an episode, is it learned.

Two small stages, each with its own per-series state:

* :class:`EpisodeRule` turns scores into the tag. An episode opens at the threshold and ends only
  once the score stayed below a lower end level for ``resolve_after`` metrics in a row, so the
  tag does not flicker while a fault hovers around the threshold (:class:`EpisodeState`).
* :class:`LearnGate` decides whether the metric is learned. A metric at or above the learn
  threshold is not (unless ``learn_anomalies``), which keeps the reference window on normal
  data, but only for ``relearn_after`` anomalous metrics in a row: then the series learns again
  and the new level becomes normal (:class:`GateState` counts that run).

>>> rule = EpisodeRule(threshold=0.5, end=0.35, resolve_after=2)
>>> state = EpisodeState()
>>> [rule.decide(state, score) for score in (0.6, 0.4, 0.3, 0.3, 0.3)]
[(True, True), (False, True), (False, True), (False, False), (False, False)]
>>> gate = LearnGate(learn_below=0.5, learn_anomalies=False, relearn_after=2)
>>> run = GateState()
>>> [gate.learns(run, score, score >= 0.5) for score in (0.1, 0.9, 0.9, 0.9)]
[True, False, False, True]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hst_processor.config import DetectionConfig

__all__ = ["EpisodeRule", "EpisodeState", "GateState", "LearnGate"]


@dataclass
class EpisodeState:
    """One series' episode: whether one is open, and the calm metrics counting to its end."""

    in_episode: bool = False
    calm: int = 0  # in an episode: metrics in a row below the episode's end level

    def export(self) -> list[Any]:
        return [self.in_episode, self.calm]

    @classmethod
    def restore(cls, saved: list[Any] | None) -> EpisodeState:
        """From :meth:`export`; snapshots of 0.1 had no episodes (``None``)."""
        in_episode, calm = saved or [False, 0]
        return cls(bool(in_episode), int(calm))


@dataclass(frozen=True)
class EpisodeRule:
    """When a score is anomalous, and when the episode it opened ends."""

    threshold: float
    end: float  # below this, a metric counts towards the episode's end
    resolve_after: int

    @classmethod
    def of(cls, detection: DetectionConfig) -> EpisodeRule:
        return cls(detection.threshold, detection.episode_end, detection.resolve_after)

    def decide(self, state: EpisodeState, score: float) -> tuple[bool, bool]:
        """``(anomalous, flagged)``: the score is at or above the threshold; the metric is
        inside an episode (what the tag says)."""
        if score >= self.threshold:
            state.in_episode, state.calm = True, 0
            return True, True
        if state.in_episode:
            if score < self.end:
                state.calm += 1
                if state.calm >= self.resolve_after:
                    state.in_episode, state.calm = False, 0
            else:
                state.calm = 0
        return False, state.in_episode


@dataclass
class GateState:
    """One series' run of anomalous metrics in a row."""

    anomalous_run: int = 0


@dataclass(frozen=True)
class LearnGate:
    """Whether a scored metric is learned into its series' model."""

    learn_below: float
    learn_anomalies: bool
    relearn_after: int  # 0: never

    @classmethod
    def of(cls, detection: DetectionConfig) -> LearnGate:
        learn_below = (
            detection.threshold if detection.learn_threshold is None else detection.learn_threshold
        )
        return cls(learn_below, detection.learn_anomalies, detection.relearn_after)

    def learns(self, state: GateState, score: float, anomalous: bool) -> bool:
        state.anomalous_run = state.anomalous_run + 1 if anomalous else 0
        return (
            score < self.learn_below
            or self.learn_anomalies
            or 0 < self.relearn_after < state.anomalous_run
        )

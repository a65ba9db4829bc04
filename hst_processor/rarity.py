"""A score with one meaning everywhere: how rare a metric is for its own series.

HST's mass total (and any fixed transform of it) moves with the number of features, trees and
the data, so no single threshold suits every series. :class:`Rarity` calibrates each series
against that series' own recent raw scores instead: it keeps a decayed histogram of the
statistic ``log(typical / total)`` (higher: sparser, more anomalous) and turns a new value into
the share ``p`` of recent metrics that scored at least as high. Beyond the histogram's upper
tail it extrapolates with a Generalized Pareto fit of the excesses (the idea of SPOT, Siffer et
al., KDD 2017), so "one in a million" has a value even after a few thousand metrics. The score
is ``p`` on a log scale:

    anomaly_score = min(1, -log10(p) / 6)

0.5 is "rarer than 1 in 1,000 of this series' recent metrics", 0.667 is 1 in 10,000, 1.0 is 1 in
a million or rarer. Work per metric is constant (one bin added, one suffix sum), the state is a
few hundred numbers per series, and it is exported with the series, so a resumed run scores
byte-identically.

>>> rarity = Rarity(upper=8.0)
>>> state = rarity.new_state()
>>> for value in [0.1 * (i % 10) for i in range(1000)]:
...     rarity.learn(state, value)
>>> round(rarity.score(state, 0.45), 2)  # about half of the values reach 0.45: common
0.05
>>> rarity.score(state, 3.0) > 0.5  # far beyond anything seen: rarer than 1 in 1,000
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SCORE_DECADES", "Rarity", "RarityState", "rarity_of", "score_of"]

SCORE_DECADES = 6.0
"""A score of 1 is a tail share of 10**-6 (one in a million) or less."""
_LOWER = -2.0  # log(typical / total) below this is "denser than typical": the first bin
_BINS = 128
_TAIL_SHARE = 0.02  # the upper tail modelled by the Pareto fit
_TAIL_EXCESSES = 20  # values a Pareto fit of the tail needs before it may extrapolate
_REFIT_EVERY = 32  # metrics between refits of the tail (deterministic: by count)
_RENORMALISE_AT = 1e150


def score_of(share: float) -> float:
    """The score of a tail share: ``-log10(share) / 6``, in [0, 1].

    >>> score_of(1e-3), score_of(1.0), score_of(0.0)
    (0.5, 0.0, 1.0)
    """
    if share <= 0.0:
        return 1.0
    return min(1.0, max(0.0, -math.log10(share) / SCORE_DECADES))


def rarity_of(score: float) -> float:
    """The tail share a score stands for (the inverse of :func:`score_of`).

    >>> rarity_of(0.5)
    0.001
    """
    return float(10.0 ** (-score * SCORE_DECADES))


@dataclass
class RarityState:
    """One series' calibration: decayed bin weights and the cached tail fit."""

    counts: list[float] = field(default_factory=lambda: [0.0] * _BINS)
    total: float = 0.0
    weight: float = 1.0  # the weight of the next observation (grows instead of decaying all)
    seen: int = 0
    tail: list[float] = field(default_factory=lambda: [math.inf, 0.0, 0.0, 1.0])
    """``[start, share, shape, scale]`` of the Pareto tail, refitted every few metrics."""

    def export(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "total": self.total,
            "weight": self.weight,
            "seen": self.seen,
            "tail": self.tail,
        }

    @classmethod
    def restore(cls, saved: dict[str, Any]) -> RarityState:
        counts = [float(value) for value in saved["counts"]]
        if len(counts) != _BINS:
            raise ValueError(f"a rarity histogram has {_BINS} bins, this one {len(counts)}")
        return cls(
            counts,
            float(saved["total"]),
            float(saved["weight"]),
            int(saved["seen"]),
            [float(value) for value in saved["tail"]],
        )


class Rarity:
    """Per-series calibration of a raw anomaly statistic into a rarity score.

    ``upper`` bounds the statistic (for HST, ``log`` of the most a point can fall below a typical
    one); ``half_life`` is how many metrics it takes for an observation to count half as much, so
    the calibration follows a series whose scores drift; ``min_scores`` is how many it must
    have seen before it scores at all; ``extrapolate_after`` how many before its tail
    extrapolates (below).

    A share is never claimed on less evidence than it needs. Until the tail holds
    ``_TAIL_EXCESSES`` values (1,000 scores at the top 2 %), the Pareto fit does not
    extrapolate, and a value beyond all ``n`` scores seen has the share ``1 / (n + 1)``: the
    chance that the newest of ``n + 1`` values from one distribution is the largest, whatever
    the distribution. So "rarer than 1 in 1,000" needs 1,000 scores; a fit on the first hundred
    flagged normal metrics three to twenty times as often as the threshold says.
    """

    def __init__(
        self,
        upper: float,
        half_life: float = 2000.0,
        min_scores: int = 100,
        tail_share: float = _TAIL_SHARE,
        max_shape: float = 0.1,
        extrapolate_after: int | None = None,
    ) -> None:
        self.tail_share = tail_share
        self.max_shape = max_shape
        self.lower = _LOWER
        self.upper = upper
        self.width = (upper - _LOWER) / _BINS
        self.growth = 2.0 ** (1.0 / half_life)
        self.min_scores = min_scores
        self.extrapolate_after = (
            math.ceil(_TAIL_EXCESSES / tail_share)
            if extrapolate_after is None
            else extrapolate_after
        )

    def new_state(self) -> RarityState:
        return RarityState()

    def ready(self, state: RarityState) -> bool:
        return state.seen >= self.min_scores

    def _bin(self, value: float) -> int:
        if not value > self.lower:  # NaN lands here too
            return 0
        if value >= self.upper:
            return _BINS - 1
        return min(_BINS - 1, int((value - self.lower) / self.width))

    def learn(self, state: RarityState, value: float) -> None:
        self._learn(state, self._bin(value))

    def _learn(self, state: RarityState, index: int) -> None:
        counts = state.counts
        counts[index] += state.weight
        state.total += state.weight
        state.weight *= self.growth
        state.seen += 1
        if state.weight > _RENORMALISE_AT:
            scale = 1.0 / state.weight
            state.counts = [count * scale for count in counts]
            state.total *= scale
            state.weight = 1.0
        if state.seen % _REFIT_EVERY == 0 or state.seen == self.min_scores:
            state.tail = self._fit_tail(state)

    def observe(self, state: RarityState, value: float) -> float | None:
        """The score of ``value`` against the series' metrics so far (None until it has
        ``min_scores``), then ``value`` learned: :meth:`score` and :meth:`learn` in one, which
        find its bin once (this runs for every scored metric)."""
        index = self._bin(value)
        score = score_of(self._share(state, value, index)) if self.ready(state) else None
        self._learn(state, index)
        return score

    def share(self, state: RarityState, value: float) -> float:
        """The share of recent metrics at or above ``value`` (extrapolated in the tail)."""
        return self._share(state, value, self._bin(value))

    def _share(self, state: RarityState, value: float, index: int) -> float:
        if state.total <= 0.0:
            return 1.0
        if state.seen < self.extrapolate_after:  # too few scores for the tail: the rank bound
            return max(self._histogram_share(state, value, index), 1.0 / (state.seen + 1))
        start, tail_share, shape, scale = state.tail
        if value > start:
            excess = (value - start) / scale
            if abs(shape) < 1e-9:
                return tail_share * math.exp(-excess)
            base = 1.0 + shape * excess
            return tail_share * base ** (-1.0 / shape) if base > 0.0 else 0.0
        return self._histogram_share(state, value, index)

    def _histogram_share(self, state: RarityState, value: float, index: int) -> float:
        upper_edge = self.lower + (index + 1) * self.width
        inside = state.counts[index] * min(1.0, max(0.0, (upper_edge - value) / self.width))
        return min(1.0, (sum(state.counts[index + 1 :]) + inside) / state.total)

    def score(self, state: RarityState, value: float) -> float:
        return score_of(self.share(state, value))

    def _fit_tail(self, state: RarityState) -> list[float]:
        """Where the top ``_TAIL_SHARE`` begins, and a Pareto fit (method of moments on the
        bin centres) of how far beyond it values go."""
        counts, total, width = state.counts, state.total, self.width
        wanted = self.tail_share * total
        above = 0.0
        index = _BINS - 1
        while index > 0 and above + counts[index] < wanted:
            above += counts[index]
            index -= 1
        # The tail starts inside bin ``index``, where the share above reaches the wanted one.
        need = wanted - above
        fraction = min(1.0, need / counts[index]) if counts[index] > 0 else 1.0
        start = self.lower + (index + 1 - fraction) * width
        share = (above + need) / total if counts[index] > 0 else above / total
        mass = sum_excess = sum_square = 0.0
        for position in range(index, _BINS):
            weight = counts[position] * (fraction if position == index else 1.0)
            if weight <= 0.0:
                continue
            centre = self.lower + (position + 0.5) * width
            excess = max(centre - start, 0.5 * width * fraction)
            mass += weight
            sum_excess += weight * excess
            sum_square += weight * excess * excess
        if mass <= 0.0 or share <= 0.0:
            return [start, max(share, 1.0 / max(total, 1.0)), 0.0, width]
        mean = sum_excess / mass
        variance = max(sum_square / mass - mean * mean, 0.0)
        # Bins blur the excesses by about a bin: keep the spread at least that wide.
        variance = max(variance, width * width / 12.0)
        ratio = mean * mean / variance
        shape = min(self.max_shape, max(-0.5, 0.5 * (1.0 - ratio)))
        scale = max(0.5 * mean * (1.0 + ratio), width / 2.0)
        return [start, share, shape, scale]

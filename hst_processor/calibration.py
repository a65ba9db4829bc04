"""The landmark score (``detection.calibration: landmarks``): a mass total placed in [0, 1].

The default score is :mod:`.rarity`'s, which means the same on every series; this one keeps
the scale of the model's own masses, which moves with the features and trees, and suits a
hand-made configuration with its own threshold (the demo's).

river's score, ``1 - total / max_total``, sits near 1 for any data (about 0.93 to 0.99 on
uniform data at 10 trees of height 8), so a threshold on it means little. What does carry
meaning is how a point's mass total compares with two landmarks of the same model:

* ``typical``: the mean total of a point drawn from the reference window itself, the density
  that is normal for this series right now (:meth:`Forest.typical_total`);
* ``isolated``: the smallest total any point can get, ``n_trees * window_size``, reached when
  every tree isolates the point right below its root.

The calibrated score is the point's position between the two on a log scale:

    score = log(typical / total) / log(typical / isolated), clipped to [0, 1]

0 means as dense as a typical normal point (or denser); 1 means isolated at the root of every
tree; 0.5 means the point's mass is the geometric mean of the two. It needs no extra state:
both landmarks come from the reference masses, so a resumed model calibrates identically.

>>> calibrated_score(total=1000.0, typical=1000.0, isolated=10.0)
0.0
>>> calibrated_score(total=10.0, typical=1000.0, isolated=10.0)
1.0
>>> calibrated_score(total=100.0, typical=1000.0, isolated=10.0)
0.5

:class:`Calibration` is the stage the detector runs: this score, or :mod:`.rarity`'s, whose
per-series state it makes and feeds.

>>> landmarks = Calibration(rarity=None)
>>> landmarks.new_state() is None, landmarks.score(None, 100.0, 1000.0, 10.0)
(True, 0.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hst_processor.rarity import Rarity, RarityState

__all__ = ["Calibration", "calibrated_score"]


def calibrated_score(total: float, typical: float, isolated: float) -> float:
    if typical <= isolated or total >= typical:
        return 0.0
    if total <= isolated:
        return 1.0
    return math.log(typical / total) / math.log(typical / isolated)


@dataclass(frozen=True)
class Calibration:
    """A mass total to a score in [0, 1]: by rarity (``rarity`` set, a state per series) or
    between the landmarks (``rarity`` None, no state)."""

    rarity: Rarity | None

    def new_state(self) -> RarityState | None:
        return self.rarity.new_state() if self.rarity is not None else None

    def score(
        self, state: RarityState | None, total: float, typical: float, isolated: float
    ) -> float | None:
        """The score of a point's ``total``; None while the rarity gathers its first scores.
        A rarity learns every statistic it sees, scored or not."""
        rarity = self.rarity
        if rarity is None or state is None:
            return calibrated_score(total, typical, isolated)
        statistic = math.log(typical / total) if total > 0 else math.inf
        return rarity.observe(state, statistic)

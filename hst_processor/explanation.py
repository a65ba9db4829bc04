"""What drove an anomalous metric's score, for the tag's field and for the alert.

The engine ranks the features that set a point apart (:class:`~hst_processor.engine.Explaining`);
this stage turns the ranking into what a person reads: the field to blame (a derived or default
feature's source field, not its internal name) and, for an alert, the two leading features with
their values and the range the model takes as normal, in the units of the feature (default
features unsquashed). An engine that cannot explain gets no blame and no reasons.

>>> import numpy as np
>>> class TopFirst:  # a stand-in engine: feature 1 stands out; normal is the middle half
...     def explain(self, masses, point): return [1, 0]
...     def normal_box(self, masses): return np.array([0.25, 0.25]), np.array([0.75, 0.75])
>>> explanation = Explanation(blames=True, sources={"power_residual": "power"})
>>> features = ("load", "power_residual")
>>> explanation.blame(TopFirst(), None, np.array([0.5, 2.0]), features, None)
'power'
>>> low, high = np.array([0.0, -4.0]), np.array([100.0, 4.0])
>>> explanation.reasons(TopFirst(), None, np.array([0.5, 2.0]), [50.0, 12.0], features,
...                     low, high, squashed=False)[0]
FeatureReason(name='power_residual', value=12.0, normal_low=-2.0, normal_high=2.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hst_processor.alerts import FeatureReason
from hst_processor.context import ContextFeatures, unsquash
from hst_processor.engine import Explaining
from hst_processor.forest import FloatArray

__all__ = ["REASONS_SHOWN", "Explanation"]

REASONS_SHOWN = 2  # features an alert names


@dataclass(frozen=True)
class Explanation:
    """``blames``: whether anomalous metrics name a field at all (``output.feature_field``);
    ``sources``: each derived feature's source field."""

    blames: bool
    sources: Mapping[str, str]

    def blame(
        self,
        explainer: Explaining[Any] | None,
        masses: Any,
        point: FloatArray,
        features: Sequence[str],
        context: ContextFeatures | None,
    ) -> str | None:
        """The field that drove a scaled ``point``'s score (a derived feature's source)."""
        if not self.blames or explainer is None:
            return None
        ranked = explainer.explain(masses, point.tolist())
        if not ranked:
            return None
        name = features[ranked[0]]
        if context is not None:
            return context.sources[name]
        return str(self.sources.get(name, name))

    @staticmethod
    def reasons(
        explainer: Explaining[Any] | None,
        masses: Any,
        point: FloatArray,
        row: Sequence[float],
        features: Sequence[str],
        low: FloatArray,
        high: FloatArray,
        squashed: bool,
    ) -> tuple[FeatureReason, ...]:
        """The leading features of a scaled ``point`` (``row`` unscaled, ``low``/``high`` the
        scaling limits) with the range the model takes as normal, in the feature's units."""
        if explainer is None:
            return ()
        box_low, box_high = explainer.normal_box(masses)
        span = high - low
        # Default features are squashed for the trees; a person reads them unsquashed, in
        # usual deviations (deviation) or standard deviations of the fit (residual).
        shown = unsquash if squashed else float
        reasons = []
        for feature in explainer.explain(masses, point.tolist())[:REASONS_SHOWN]:
            if box_low[feature] <= 0.0 and box_high[feature] >= 1.0:  # the whole box
                normal_low = normal_high = None
            else:
                normal_low = shown(float(low[feature] + box_low[feature] * span[feature]))
                normal_high = shown(float(low[feature] + box_high[feature] * span[feature]))
            reasons.append(
                FeatureReason(features[feature], shown(row[feature]), normal_low, normal_high)
            )
        return tuple(reasons)

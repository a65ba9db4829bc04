"""What the trees see: from a metric's row of fields to its row of model features.

One configuration gives every series the same kind of features, and :class:`FeaturePlan` is
that choice, made once: the default context features of :mod:`.context` (a field's recent level
and spread, its relation to the other fields), the derived features a person configured
(:mod:`.derived`), or the fields themselves, in the sorted order the trees were built in. A
series' own running state lives in its ``context`` or ``derived`` slice; the plan only routes.

>>> from hst_processor.config import Config
>>> plan = FeaturePlan(Config(context_features=False))
>>> plan.features_for(("load", "temp"))
('load', 'temp')
>>> context, derived = plan.stages_for(("load", "temp"))
>>> context is None and derived is None
True
"""

from __future__ import annotations

from collections.abc import Sequence

from hst_processor.config import Config
from hst_processor.context import ContextFeatures, context_names, features_of_series
from hst_processor.derived import DerivedState
from hst_processor.series import Series

__all__ = ["FeaturePlan", "describe_features"]


def describe_features(config: Config) -> str:
    """The fields read and what the trees see, in words, for the start line.

    >>> from hst_processor.config import Config
    >>> describe_features(Config())  # doctest: +NORMALIZE_WHITESPACE
    "fields read: each series' numeric fields; the trees see each field's deviation and
    residual, the range view each field against its first 1000 metrics"
    >>> describe_features(Config(features=("load", "power"), context_features=False))
    'fields read: load, power; the trees see the fields read'
    """
    read = ", ".join(config.features) or "each series' numeric fields"
    if config.uses_context:
        seen = "each field's deviation and residual"
    elif config.derived or config.model.features:
        seen = ", ".join(config.model_features())
    else:
        seen = "the fields read"
    ranges = (
        f", the range view each field against its first {config.detection.range_reference} metrics"
        if config.uses_ranges
        else ""
    )
    return f"fields read: {read}; the trees see {seen}{ranges}"


class FeaturePlan:
    """The features of every series of one configuration."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._orders: dict[tuple[str, ...], list[int]] = {}

    def features_for(self, raw: tuple[str, ...]) -> tuple[str, ...]:
        """What the trees see for a series whose fields read are ``raw`` (sorted)."""
        if self.config.uses_context:
            return context_names(raw)
        features = self.config.model_features() if self.config.features else raw
        return raw if features == raw else features  # the same object: no reordering needed

    def stages_for(
        self, inputs: tuple[str, ...]
    ) -> tuple[ContextFeatures | None, DerivedState | None]:
        """A new series' feature state: its context features, or its derived ones, or none."""
        if self.config.uses_context:
            return ContextFeatures(inputs, fit=self.config.model.window_size), None
        if self.config.derived:
            return None, DerivedState(self.config.derived, inputs)
        return None, None

    def rows(self, series: Series, row: list[float]) -> list[list[float]]:
        """The feature rows one metric's ``row`` of fields yields, in the model's order.

        No row while a feature still gathers its history (the metric is in warm-up). Otherwise
        the metric's own row comes last; any before it are earlier metrics' rows, gathered
        until the context features were fitted (answered as warm-up, still to be learned).
        Every metric of the series must come through here, in order: the state moves with it.
        """
        if series.context is not None:
            return series.context.update(row)
        if series.derived is not None:
            extra = series.derived.update(row)
            if extra is None:
                return []
            row += extra
        if series.features is not series.inputs:
            row = [row[i] for i in self._order(series)]
        return [row]

    @staticmethod
    def batched(series: Series) -> bool:
        """Whether a series' metrics can wait for :meth:`rows_of`, all of a batch's together:
        fitted context features give one row per metric, the same bits however grouped."""
        return series.context is not None and series.context.fitted

    @staticmethod
    def rows_of(
        waiting: Sequence[tuple[Series, list[list[float]]]],
    ) -> list[list[list[float]]]:
        """The feature rows of :meth:`batched` series' metrics, one per metric, in order:
        the series that read the same fields in the same order all computed together."""
        by_fields: dict[tuple[str, ...], list[int]] = {}
        for position, (series, _) in enumerate(waiting):
            by_fields.setdefault(series.inputs, []).append(position)
        results: list[list[list[float]]] = [[] for _ in waiting]
        for positions in by_fields.values():
            contexts: list[ContextFeatures] = []
            for position in positions:
                context = waiting[position][0].context
                assert context is not None  # batched() said so
                contexts.append(context)
            computed = features_of_series(contexts, [waiting[p][1] for p in positions])
            for position, rows in zip(positions, computed, strict=True):
                results[position] = rows
        return results

    def _order(self, series: Series) -> list[int]:
        """Where each model feature sits in ``inputs + derived`` (cached per feature set)."""
        order = self._orders.get(series.features)
        if order is None:
            derived = series.derived.specs if series.derived is not None else ()
            combined = series.inputs + tuple(spec.name for spec in derived)
            order = self._orders[series.features] = [combined.index(f) for f in series.features]
        return order

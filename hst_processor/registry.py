"""The live series and the trees they share, within the bounds the configuration sets.

A processor meets series it has never seen for as long as it runs (new machines, a tag with a
changing value). :class:`SeriesTable` keeps them least recently seen first and forgets the
oldest when one more would pass ``max_series`` or ``limits.memory_mb``, counting what each
series may come to hold (:func:`~hst_processor.config.series_bytes`) and, once, the trees of a
feature set it brings. Trees are shared by every series of the same features; those of feature
sets no live series uses any more are let go, so a stream of ever-new field names stays bounded
too.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from hst_processor.config import MIB, Config, range_rows, series_bytes, trees_bytes
from hst_processor.engine import Engine, EngineParts, make_engine
from hst_processor.log import Log
from hst_processor.series import Series, SeriesKey, describe_series, key_bytes

__all__ = ["MIN_KEPT_ENGINES", "SeriesTable"]

MIN_KEPT_ENGINES = 32  # feature sets whose trees are kept without a sweep for unused ones


class SeriesTable:
    """The live series, least recently seen first, and the engine of each feature set."""

    def __init__(self, config: Config, log: Log) -> None:
        self.config = config
        self.log = log
        self.series: OrderedDict[SeriesKey, Series] = OrderedDict()
        self.footprint = 0  # estimated bytes of every live series
        self.engines: dict[tuple[str, ...], EngineParts] = {}
        self._budget = config.limits.memory_mb * MIB
        self._forgotten: list[Series] = []  # their masses go back once the batch is scored
        self._live_by_features: dict[tuple[str, ...], int] = {}  # live series per feature set
        self._engines_allowed = MIN_KEPT_ENGINES

    def get(self, key: SeriesKey) -> Series | None:
        """The live series of ``key``, now the most recently seen; None if there is none."""
        series = self.series.get(key)
        if series is not None:
            self.series.move_to_end(key)
        return series

    def engine_parts(self, features: tuple[str, ...]) -> EngineParts:
        """The engine of one feature set with what else it can do (built on first use)."""
        parts = self.engines.get(features)
        if parts is None:
            model = self.config.model
            parts = make_engine(
                model.engine, features, model.n_trees, model.height, model.window_size, model.seed
            )
            self.engines[features] = parts
        return parts

    def engine(self, features: tuple[str, ...]) -> Engine[Any]:
        return self.engine_parts(features).engine

    def footprint_of(self, key: SeriesKey, n_inputs: int, n_features: int) -> int:
        """The bytes a series may come to hold (see :func:`~hst_processor.config.series_bytes`)."""
        return series_bytes(
            self.config.model, n_inputs, n_features, key_bytes(key), range_rows(self.config)
        )

    def new_series_bytes(self, key: SeriesKey, n_inputs: int, features: tuple[str, ...]) -> int:
        """What a new series of ``features`` brings: its own bytes, and the trees of its
        feature set if no live series has that set (shared by every later one, so counted
        once). Asked of the live series, not of the trees still kept: those are let go between
        slices, and the answer (so which series are forgotten, and the verdicts) must not
        depend on where the input was cut."""
        own = self.footprint_of(key, n_inputs, len(features))
        shared = features in self._live_by_features
        return own + (0 if shared else trees_bytes(self.config.model, len(features)))

    def make_room(self, footprint: int) -> int | None:
        """Forget the least recently seen series until one more of ``footprint`` bytes fits
        both ``max_series`` and ``limits.memory_mb``. The number forgotten, or None (with a
        warning) if it can never fit."""
        if footprint > self._budget:
            self.log.warn_repeated(
                "series-too-big",
                f"a series would need about {footprint // MIB} MiB, more than limits.memory_mb="
                f"{self.config.limits.memory_mb}: not modelled, passed through",
            )
            return None
        forgotten = 0
        while self.series and (
            len(self.series) >= self.config.max_series or self.footprint + footprint > self._budget
        ):
            bound = (
                f"max_series={self.config.max_series}"
                if len(self.series) >= self.config.max_series
                else f"limits.memory_mb={self.config.limits.memory_mb}"
            )
            key, series = self.series.popitem(last=False)
            self.footprint -= series.footprint
            self._count_live(series.features, -1)
            self._forgotten.append(series)
            forgotten += 1
            self.log.warn_repeated(
                "evicted",
                f"{bound} reached: forgot the least recently seen series {describe_series(key)}",
            )
        return forgotten

    def adopt(self, series: Series) -> None:
        """Add a new (or restored) series, with room made for it, as the most recently seen."""
        self.series[series.key] = series
        self.footprint += series.footprint
        self._count_live(series.features, +1)

    def _count_live(self, features: tuple[str, ...], change: int) -> None:
        count = self._live_by_features.get(features, 0) + change
        if count:
            self._live_by_features[features] = count
        else:
            del self._live_by_features[features]

    def settle(self) -> None:
        """After a batch is scored: the rows of series forgotten during it are reused only now,
        and the trees no live series uses are let go once they have doubled since the last
        sweep (so the sweep costs little per new feature set)."""
        for series in self._forgotten:
            self.engine(series.features).release(series.masses)
        self._forgotten.clear()
        if len(self.engines) > self._engines_allowed:
            in_use = {series.features for series in self.series.values()}
            for features in [features for features in self.engines if features not in in_use]:
                del self.engines[features]
            self._engines_allowed = max(MIN_KEPT_ENGINES, 2 * len(self.engines))

    def forget_all(self) -> None:
        """Drop every series (a restore that failed halfway starts fresh)."""
        for series in self.series.values():
            self.engine(series.features).release(series.masses)
        self.series.clear()
        self._live_by_features.clear()
        self.footprint = 0

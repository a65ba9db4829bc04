"""One series' state: its identity and each stage's slice, exported and restored together.

A series is a measurement plus its ``group_by`` tag values. What it holds belongs to the
stages of the per-metric path, in the order a metric meets them:

========================  ==========================================  ======================
stage                     state                                       module
========================  ==========================================  ======================
fields read               ``last_values``, ``complete``               :mod:`.detector`
features                  ``context`` or ``derived``                  :mod:`.context`,
                                                                      :mod:`.derived`
scaling                   ``low``, ``high``, ``warmup_rows``          :mod:`.scaling`
model                     ``masses`` (the engine's)                   :mod:`.engine`
calibration               ``rarity`` (landmarks keep none)            :mod:`.calibration`
decision and episode      ``episode``                                 :mod:`.decision`
learn gate                ``gate``                                    :mod:`.decision`
alert policy              ``alert``                                   :mod:`.alerts`
========================  ==========================================  ======================

:meth:`Series.export` writes them in the snapshot's series entry (the format
:mod:`.state` checks), and :meth:`Series.restore` reads them back into a series built fresh
for the same configuration, each stage its own part.

>>> describe_series(("cpu", (("host", "a"), ("dc", "x"))))
'cpu,host=a,dc=x'
>>> key_bytes(("cpu", (("host", "é"),)))
9
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hst_processor.alerts import AlertState
from hst_processor.context import ContextFeatures
from hst_processor.decision import EpisodeState, GateState
from hst_processor.derived import DerivedState
from hst_processor.engine import Persistent, WindowMasses
from hst_processor.forest import FloatArray
from hst_processor.rarity import RarityState

__all__ = ["Series", "SeriesKey", "describe_series", "key_bytes", "series_key_of"]

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class Series:
    key: SeriesKey
    features: tuple[str, ...]  # what the model sees, sorted (river builds its trees so)
    masses: WindowMasses  # made by, and only ever given to, the engine of ``features``
    last_values: list[float | None]  # one per field in ``inputs``
    low: FloatArray | None = None
    high: FloatArray | None = None
    warmup_rows: list[list[float]] = field(default_factory=list)
    gate: GateState = field(default_factory=GateState)  # the learn gate's run of anomalies
    complete: bool = False  # every feature has been seen at least once
    alert: AlertState = field(default_factory=AlertState)
    last_seen: int | None = None  # timestamp of the series' last metric, in nanoseconds
    derived: DerivedState | None = None  # running state of the derived features, if any
    inputs: tuple[str, ...] = ()  # the fields read from metrics, sorted; () means ``features``
    context: ContextFeatures | None = None  # the default features, when no derived ones are set
    rarity: RarityState | None = None  # the score's calibration (``rarity``)
    episode: EpisodeState = field(default_factory=EpisodeState)  # what the tag says
    footprint: int = 0  # estimated bytes at its largest (see config.series_bytes)

    def __post_init__(self) -> None:
        if not self.inputs:
            self.inputs = self.features

    def export(self, persistence: Persistent[Any]) -> dict[str, Any]:
        """Plain data for the snapshot's series entry (all but the configuration's part)."""
        measurement, tags = self.key
        return {
            "measurement": measurement,
            "tags": [list(pair) for pair in tags],
            "features": list(self.features),
            "inputs": list(self.inputs),
            "last_values": self.last_values,
            "low": None if self.low is None else self.low.tolist(),
            "high": None if self.high is None else self.high.tolist(),
            "warmup_rows": self.warmup_rows,
            "anomalous_run": self.gate.anomalous_run,
            "complete": self.complete,
            "alert": asdict(self.alert),
            "last_seen": self.last_seen,
            "derived": None if self.derived is None else self.derived.export(),
            "context": None if self.context is None else self.context.export(),
            "rarity": None if self.rarity is None else self.rarity.export(),
            "episode": self.episode.export(),
            "masses": persistence.export_masses(self.masses),
        }

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Load what :meth:`export` wrote into this series, built fresh for the same features
        (its masses already imported). A stage the configuration no longer has stays empty;
        a calibration the snapshot did not keep (another one was configured) starts afresh."""
        self.last_values = list(saved["last_values"])
        self.complete = bool(saved["complete"])
        self.low = None if saved["low"] is None else np.array(saved["low"], dtype=np.float64)
        self.high = None if saved["high"] is None else np.array(saved["high"], dtype=np.float64)
        self.warmup_rows = [list(row) for row in saved["warmup_rows"]]
        self.gate = GateState(int(saved["anomalous_run"]))
        self.alert = AlertState(**saved["alert"])
        self.last_seen = saved["last_seen"]
        if self.derived is not None and saved.get("derived"):
            self.derived.restore(saved["derived"])
        if self.context is not None and saved.get("context"):
            self.context.restore(saved["context"])
        if self.rarity is not None and saved.get("rarity"):
            self.rarity = RarityState.restore(saved["rarity"])
        self.episode = EpisodeState.restore(saved.get("episode"))


def series_key_of(saved: Mapping[str, Any]) -> SeriesKey:
    """The key of a snapshot's series entry."""
    return (saved["measurement"], tuple((name, value) for name, value in saved["tags"]))


def key_bytes(key: SeriesKey) -> int:
    """The bytes of a key's text, as ``limits.max_key_bytes`` counts them."""
    measurement, tags = key
    text = measurement + "".join(name + value for name, value in tags)
    return len(text.encode("utf-8", "surrogateescape"))


def describe_series(key: SeriesKey) -> str:
    measurement, tags = key
    return measurement + "".join(f",{k}={v}" for k, v in tags)

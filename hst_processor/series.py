"""One series' state: its identity and each stage's slice, exported and restored together.

A series is a measurement plus its ``group_by`` tag values. What it holds belongs to the
stages of the per-metric path, in the order a metric meets them:

========================  ==========================================  ======================
stage                     state                                       module
========================  ==========================================  ======================
fields read               ``fields`` (last values)                    :mod:`.fields`
features                  ``context`` or ``derived``                  :mod:`.features`,
                                                                      :mod:`.context`,
                                                                      :mod:`.derived`
scaling                   ``scaling`` (limits or warm-up rows)        :mod:`.scaling`
model                     ``masses`` (the engine's)                   :mod:`.engine`
range view                ``ranges`` (with the default features)      :mod:`.ranges`
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

from hst_processor.alerts import AlertState
from hst_processor.config import MIB
from hst_processor.context import ContextFeatures
from hst_processor.decision import EpisodeState, GateState
from hst_processor.derived import DerivedState
from hst_processor.engine import Persistent, WindowMasses
from hst_processor.fields import LastValues
from hst_processor.lineproto import Metric
from hst_processor.ranges import RangeState
from hst_processor.rarity import RarityState
from hst_processor.scaling import Scaling

__all__ = ["Series", "SeriesKey", "SeriesKeys", "describe_series", "key_bytes", "series_key_of"]

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]

# The lookup cache from a metric's series text to its key: bounded in entries and in text.
_KEY_CACHE_LIMIT = 100_000
_KEY_CACHE_TEXT = 16 * MIB


@dataclass
class Series:
    key: SeriesKey
    features: tuple[str, ...]  # what the model sees, sorted (river builds its trees so)
    masses: WindowMasses  # made by, and only ever given to, the engine of ``features``
    fields: LastValues  # one per field in ``inputs``
    scaling: Scaling = field(default_factory=Scaling)
    gate: GateState = field(default_factory=GateState)  # the learn gate's run of anomalies
    alert: AlertState = field(default_factory=AlertState)
    last_seen: int | None = None  # timestamp of the series' last metric, in nanoseconds
    derived: DerivedState | None = None  # running state of the derived features, if any
    inputs: tuple[str, ...] = ()  # the fields read from metrics, sorted; () means ``features``
    context: ContextFeatures | None = None  # the default features, when no derived ones are set
    rarity: RarityState | None = None  # the score's calibration (``rarity``)
    episode: EpisodeState = field(default_factory=EpisodeState)  # what the tag says
    ranges: RangeState | None = None  # the range view, with the default features
    footprint: int = 0  # estimated bytes at its largest (see config.series_bytes)

    def __post_init__(self) -> None:
        if not self.inputs:
            self.inputs = self.features

    def export(self, persistence: Persistent[Any]) -> dict[str, Any]:
        """Plain data for the snapshot's series entry (all but the configuration's part)."""
        measurement, tags = self.key
        read = self.fields.export()
        return {
            "measurement": measurement,
            "tags": [list(pair) for pair in tags],
            "features": list(self.features),
            "inputs": list(self.inputs),
            # Each stage's part, in the order snapshots have always had them.
            "last_values": read["last_values"],
            **self.scaling.export(),
            "anomalous_run": self.gate.anomalous_run,
            "complete": read["complete"],
            "alert": asdict(self.alert),
            "last_seen": self.last_seen,
            "derived": None if self.derived is None else self.derived.export(),
            "context": None if self.context is None else self.context.export(),
            "rarity": None if self.rarity is None else self.rarity.export(),
            "episode": self.episode.export(),
            "ranges": None if self.ranges is None else self.ranges.export(),
            "masses": persistence.export_masses(self.masses),
        }

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Load what :meth:`export` wrote into this series, built fresh for the same features
        (its masses already imported). A stage the configuration no longer has stays empty;
        a calibration the snapshot did not keep (another one was configured) starts afresh."""
        self.fields = LastValues.restore(saved)
        self.scaling = Scaling.restore(saved)
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
        if self.ranges is not None and saved.get("ranges"):
            self.ranges = RangeState.restore(saved["ranges"])


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


class SeriesKeys:
    """The series a metric belongs to: its measurement and ``group_by`` tag values (all its
    tags but ours when ``group_by`` is unset).

    The key is a function of the text before the fields, which repeats for every metric of a
    series, so it is looked up by that text in a cache bounded in entries and in characters;
    a text longer than ``max_text`` (a key too long to be modelled) is not kept.
    """

    def __init__(self, group_by: tuple[str, ...] | None, own_tag: str, max_text: int) -> None:
        self.group_by = group_by
        self.own_tag = own_tag
        self.max_text = max_text
        self.cache: dict[str, SeriesKey] = {}
        self._cached_text = 0  # characters of series text in ``cache``

    def key_of(self, metric: Metric) -> SeriesKey:
        series_text = metric.text[: metric.series_end]
        key = self.cache.get(series_text)
        if key is None:
            if self.group_by is None:
                own_tag = self.own_tag
                tags = tuple(sorted((k, v) for k, v in metric.tags.items() if k != own_tag))
            else:
                tags = tuple((name, metric.tags.get(name, "")) for name in self.group_by)
            key = (metric.measurement, tags)
            if len(series_text) > self.max_text:
                return key
            if len(self.cache) >= _KEY_CACHE_LIMIT or self._cached_text >= _KEY_CACHE_TEXT:
                self.cache.clear()
                self._cached_text = 0
            self.cache[series_text] = key
            self._cached_text += len(series_text)
        return key

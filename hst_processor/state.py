"""Model state that survives restarts, crashes and upgrades: msgpack snapshots.

A snapshot holds every series (its features, scaling limits, leaf counts, window counters,
warm-up buffer, last known values and alert state, in least-recently-seen order) and the model
configuration they were built with, under a format name and version. Restoring it makes a
stream stopped and resumed give exactly the scores and tags of the same stream run at once.

* **Writing** is atomic: a temporary file in the same directory, fsync, rename, fsync of the
  directory. A kill at any moment leaves the last complete snapshot in place.
* **Periodic saves** happen in a forked child, which serializes its copy-on-write view of the
  state while the parent goes on reading metrics: a save never delays the stdin path. The final
  save, on EOF or SIGTERM, is done in place, after the last output is flushed.
* **One writer**: an exclusive ``flock`` on ``FILE.lock``. A second process (Telegraf runs
  processors twice when aggregators are configured) warns and runs without persisting.
* **Failures lose nothing that can be kept**: a missing file starts fresh quietly; a truncated,
  corrupt or unknown-version file is moved aside (``FILE.corrupt-<time>``) with one warning; a
  changed model configuration restarts the affected series with a warning that says why; a
  failed save (disk full, directory not writable) warns and is retried at the next interval.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import msgpack
import numpy as np

from hst_processor.alerts import AlertState
from hst_processor.config import Config
from hst_processor.context import ContextFeatures
from hst_processor.derived import DerivedState
from hst_processor.detector import Detector, Series
from hst_processor.errors import HstProcessorError
from hst_processor.log import Log
from hst_processor.rarity import RarityState

__all__ = [
    "FORMAT",
    "VERSION",
    "StateError",
    "StateStore",
    "describe",
    "forget",
    "restore",
    "snapshot",
]

FORMAT = "hst-processor-state"
VERSION = 1
# Exit codes of a forked save, so the parent can say what went wrong.
_SAVE_FAILED = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded"}


class StateError(HstProcessorError):
    """A snapshot file that cannot be used (truncated, corrupt, another format or version)."""


# ---------------------------------------------------------------------------------------------
# Snapshot <-> detector


def _model_section(config: Config) -> dict[str, Any]:
    model = config.model
    return {
        "n_trees": model.n_trees,
        "height": model.height,
        "window_size": model.window_size,
        "seed": model.seed,
    }


def _scaling_for(config: Config, features: tuple[str, ...]) -> dict[str, Any]:
    scaling = config.scaling
    return {
        "mode": scaling.mode,
        "margin": scaling.margin if scaling.mode == "learned" else None,
        "limits": {name: list(scaling.limits[name]) for name in features if name in scaling.limits},
    }


def snapshot(detector: Detector, processed: int) -> bytes:
    """The detector's whole state as msgpack bytes. ``processed`` is how many metrics the
    stream had delivered when it was taken (where a replay after a crash should resume)."""
    series_list = []
    for series in detector.series.values():
        engine = detector.engine(series.features)
        export = getattr(engine, "export_masses", None)
        if export is None:
            raise StateError("state can only be kept with the built-in engine (model.engine: hst)")
        measurement, tags = series.key
        series_list.append(
            {
                "measurement": measurement,
                "tags": [list(pair) for pair in tags],
                "features": list(series.features),
                "inputs": list(series.inputs),
                "scaling": _scaling_for(detector.config, series.features),
                "last_values": series.last_values,
                "low": None if series.low is None else series.low.tolist(),
                "high": None if series.high is None else series.high.tolist(),
                "warmup_rows": series.warmup_rows,
                "anomalous_run": series.anomalous_run,
                "complete": series.complete,
                "alert": asdict(series.alert),
                "last_seen": series.last_seen,
                "derived": None if series.derived is None else series.derived.export(),
                "context": None if series.context is None else series.context.export(),
                "rarity": None if series.rarity is None else series.rarity.export(),
                "episode": [series.in_episode, series.calm],
                "masses": export(series.masses),
            }
        )
    document = {
        "format": FORMAT,
        "version": VERSION,
        "saved_at": time.time(),
        "processed": processed,
        "model": _model_section(detector.config),
        "series": series_list,
    }
    data: bytes = msgpack.packb(document, use_bin_type=True)
    return data


def parse(data: bytes) -> dict[str, Any]:
    """Decode and check a snapshot; raise :class:`StateError` saying what is wrong."""
    try:
        document = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as error:  # msgpack raises several unrelated types for bad input
        raise StateError(f"not a readable snapshot ({type(error).__name__})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StateError("not an hst-processor snapshot")
    if document.get("version") != VERSION:
        raise StateError(f"snapshot format version {document.get('version')!r} is not {VERSION}")
    if not isinstance(document.get("series"), list) or not isinstance(document.get("model"), dict):
        raise StateError("the snapshot is incomplete")
    return document


def restore(detector: Detector, document: Mapping[str, Any]) -> list[str]:
    """Load a parsed snapshot into an empty detector; return a warning per series (or group
    of series) that had to start fresh, saying why."""
    config = detector.config
    warnings: list[str] = []
    saved_model = document["model"]
    if saved_model != _model_section(config):
        changes = ", ".join(
            f"{name} {saved_model.get(name)} -> {value}"
            for name, value in _model_section(config).items()
            if saved_model.get(name) != value
        )
        return [f"model configuration changed ({changes}): all {len(document['series'])} series "
                "start fresh"]  # fmt: skip
    fresh_features = fresh_scaling = 0
    derived_specs = [spec.describe() for spec in config.derived]
    configured = detector.model_features_for(tuple(sorted(config.features)))
    for saved in document["series"]:
        features = tuple(saved["features"])
        if config.features and configured != features:
            fresh_features += 1
            continue
        saved_derived = saved.get("derived")
        if (saved_derived["specs"] if saved_derived else []) != derived_specs:
            fresh_features += 1
            continue
        if (saved.get("context") is not None) != config.uses_context:
            fresh_features += 1
            continue
        if saved["scaling"] != _scaling_for(config, features):
            fresh_scaling += 1
            continue
        _restore_series(detector, saved, features)
    if fresh_features:
        warnings.append(f"features changed: {fresh_features} series start fresh")
    if fresh_scaling:
        warnings.append(f"scaling changed: {fresh_scaling} series start fresh")
    return warnings


def _restore_series(
    detector: Detector, saved: Mapping[str, Any], features: tuple[str, ...]
) -> None:
    engine = detector.engine(features)
    masses = engine.new_masses()
    engine.import_masses(masses, saved["masses"])  # type: ignore[attr-defined]
    key = (saved["measurement"], tuple(tuple(pair) for pair in saved["tags"]))
    series = Series(
        key=key,
        features=features,
        masses=masses,
        last_values=list(saved["last_values"]),
        low=None if saved["low"] is None else np.array(saved["low"], dtype=np.float64),
        high=None if saved["high"] is None else np.array(saved["high"], dtype=np.float64),
        warmup_rows=[list(row) for row in saved["warmup_rows"]],
        anomalous_run=int(saved["anomalous_run"]),
        complete=bool(saved["complete"]),
        alert=AlertState(**saved["alert"]),
        last_seen=saved["last_seen"],
    )
    inputs = tuple(saved.get("inputs") or features)
    series.inputs = features if inputs == features else inputs
    if saved.get("derived"):
        series.derived = DerivedState(detector.config.derived, series.inputs)
        series.derived.restore(saved["derived"])
    if saved.get("context"):
        series.context = ContextFeatures(series.inputs, fit=detector.context_fit)
        series.context.restore(saved["context"])
    # A snapshot from another calibration starts its calibration afresh.
    if detector.config.detection.calibration == "rarity":
        saved_rarity = saved.get("rarity")
        series.rarity = (
            RarityState.restore(saved_rarity) if saved_rarity else detector.rarity.new_state()
        )
    episode = saved.get("episode") or [False, 0]  # snapshots of 0.1 had no episodes
    series.in_episode, series.calm = bool(episode[0]), int(episode[1])
    detector.series[key] = series


def forget(path: Path, match: Mapping[str, str]) -> int:
    """Remove the series whose tags include ``match`` from a snapshot file; return how many."""
    document = parse(path.read_bytes())
    kept = [
        saved
        for saved in document["series"]
        if not all(dict(map(tuple, saved["tags"])).get(k) == v for k, v in match.items())
    ]
    removed = len(document["series"]) - len(kept)
    document["series"] = kept
    write_atomic(path, msgpack.packb(document, use_bin_type=True))
    return removed


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def describe(document: Mapping[str, Any], window_size: int | None = None) -> str:
    """A human-readable account of a snapshot, for ``inspect-state``."""
    model = document["model"]
    window = window_size or int(model["window_size"])
    saved_at = _utc(document["saved_at"])
    lines = [
        f"format {document['format']} version {document['version']}, saved {saved_at}, "
        f"after {document['processed']} metrics",
        f"model: {model['n_trees']} trees, height {model['height']}, window {window}, "
        f"seed {model['seed']}",
        f"{len(document['series'])} series (least recently seen first):",
    ]
    for saved in document["series"]:
        masses = saved["masses"]
        points = masses["windows"] * window + masses["counter"] + len(saved["warmup_rows"])
        warm = "warming up" if masses["first_window"] else f"{masses['windows']} windows"
        seen = saved["last_seen"]
        last = _utc(seen / 1e9) if seen is not None else "no timestamp"
        alert = "ALERT OPEN" if saved["alert"]["is_open"] else "no alert"
        tags = ",".join(f"{k}={v}" for k, v in saved["tags"])
        lines.append(
            f"  {saved['measurement']},{tags}: {points} points learned, {warm}, last seen {last}, "
            f"{alert}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The file


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader, or a crash, sees the old or the new
    file, never a mix."""
    temporary = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class StateStore:
    """The snapshot file of one processor: lock, load, periodic and final saves."""

    def __init__(self, path: str | os.PathLike[str], interval: float, log: Log) -> None:
        self.path = Path(path)
        self.interval = interval
        self.log = log
        self.enabled = False
        self._lock_file: IO[bytes] | None = None
        self._child: int | None = None
        self._last_save = time.monotonic()

    def acquire(self) -> bool:
        """Take the lock; False (with a warning) if another process holds it."""
        try:
            # Held open for the life of the process: the lock lasts as long as the file is open.
            self._lock_file = open(self.path.with_name(self.path.name + ".lock"), "ab")  # noqa: SIM115
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.log.warn(
                f"state file {self.path} is in use by another hst-processor: running without "
                "persisting state (with aggregators, Telegraf runs processors twice; consider "
                "skip_processors_after_aggregators = true)"
            )
            return False
        except OSError as error:
            self.log.warn(f"cannot lock state file {self.path}: {error.strerror}; not persisting")
            return False
        self.enabled = True
        for leftover in self.path.parent.glob(self.path.name + ".tmp.*"):
            leftover.unlink(missing_ok=True)  # a save that was killed halfway
        return True

    def load_into(self, detector: Detector) -> int:
        """Restore the snapshot, if any; return how many metrics it had seen."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as error:
            self.log.warn(f"cannot read state file {self.path}: {error.strerror}; starting fresh")
            return 0
        try:
            document = parse(data)
        except StateError as error:
            aside = self.path.with_name(
                f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
            )
            try:
                os.replace(self.path, aside)
                kept = f"kept as {aside.name}"
            except OSError:
                kept = "left in place"
            self.log.warn(f"state file {self.path}: {error}; starting fresh ({kept})")
            return 0
        for warning in restore(detector, document):
            self.log.warn(f"state file {self.path}: {warning}")
        self.log.info(
            f"restored {len(detector.series)} series from {self.path} "
            f"(saved after {document['processed']} metrics)"
        )
        return int(document["processed"])

    def maybe_save(self, detector: Detector, processed: int) -> None:
        """After a batch: reap a finished save; fork a new one when the interval is up."""
        if not self.enabled:
            return
        self.poll()
        if self._child is not None or time.monotonic() - self._last_save < self.interval:
            return
        self._last_save = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: save and leave, touching nothing the parent shares
            os._exit(self._save_in_child(detector, processed))
        self._child = pid

    def _save_in_child(self, detector: Detector, processed: int) -> int:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.close(0)
            os.close(1)  # Telegraf must see our stdout close when the parent exits
            write_atomic(self.path, snapshot(detector, processed))
            return 0
        except OSError as error:
            return error.errno if error.errno in _SAVE_FAILED else 1
        except BaseException:
            return 1

    def poll(self, wait: bool = False) -> None:
        if self._child is None:
            return
        pid, status = os.waitpid(self._child, 0 if wait else os.WNOHANG)
        if pid == 0:
            return
        self._child = None
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            reason = _SAVE_FAILED.get(code, "the write failed")
            self.log.warn_repeated(
                "state-save", f"could not save state to {self.path}: {reason}; will retry"
            )

    def save_now(self, detector: Detector, processed: int) -> None:
        """The final save, in this process (after the output is flushed)."""
        if not self.enabled:
            return
        self.poll(wait=True)
        try:
            write_atomic(self.path, snapshot(detector, processed))
        except OSError as error:
            self.log.warn(f"could not save state to {self.path}: {error.strerror}")
        except StateError as error:
            self.log.warn(f"could not save state: {error}")

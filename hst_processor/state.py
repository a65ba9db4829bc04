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
* **One writer**: a POSIX record lock (``lockf``) on ``FILE.lock``. It belongs to this process
  alone: a forked save does not inherit it, and the kernel drops it when the process dies. A
  save child dies with its parent. A second process (Telegraf runs processors twice when
  aggregators are configured) warns and runs without persisting.
* **Failures lose nothing that can be kept**: a missing file starts fresh quietly; a truncated,
  corrupt, unknown-version or wrongly shaped file is moved aside (``FILE.corrupt-<time>``) with
  one warning; a changed model configuration restarts the affected series with a warning that
  says why; a failed save (disk full, directory missing or not writable, lock not taken for
  such a reason) warns and is retried at the next interval.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import glob
import math
import os
import secrets
import signal
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import msgpack
import numpy as np

from hst_processor.alerts import AlertState
from hst_processor.config import MIB, MODEL_RANGES, Config, sampled_rows
from hst_processor.context import (
    SAVED_MATRICES,
    SAVED_VECTORS,
    coefficient_width,
    context_names,
)
from hst_processor.detector import Detector
from hst_processor.errors import HstProcessorError
from hst_processor.lineproto import is_numeric
from hst_processor.log import Log
from hst_processor.rarity import RarityState
from hst_processor.times import file_stamp, utc_text

__all__ = [
    "FORMAT",
    "VERSION",
    "Models",
    "PooledModels",
    "SaveCounters",
    "StateError",
    "StateStore",
    "assemble",
    "describe",
    "forget",
    "model_section",
    "packed_series",
    "parse",
    "read_snapshot",
    "restore",
    "snapshot",
    "write_all_atomic",
    "write_atomic",
]

FORMAT = "hst-processor-state"
VERSION = 1
# Exit codes of a forked save, so the parent can say what went wrong.
_SAVE_FAILED = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded"}
_TEMPORARY = ".tmp."  # between the file's name and a unique part: a save's temporary file
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class StateError(HstProcessorError):
    """A snapshot file that cannot be used (truncated, corrupt, another format or version)."""


# ---------------------------------------------------------------------------------------------
# Snapshot <-> detector


def model_section(config: Config) -> dict[str, Any]:
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
    return assemble(detector.config, processed, [packed_series(detector)])


def packed_series(detector: Detector) -> tuple[int, bytes]:
    """How many series the detector holds and their snapshot entries, each packed, one after
    the other in least-recently-seen order: a part of a snapshot (see :func:`assemble`)."""
    packer = msgpack.Packer(use_bin_type=True)
    entries = []
    for series in detector.series.values():
        try:
            saved = detector.export_series(series)
        except ValueError as error:  # an engine without persistence
            raise StateError(str(error)) from None
        saved["scaling"] = _scaling_for(detector.config, series.features)
        entries.append(packer.pack(saved))
    return len(entries), b"".join(entries)


def assemble(config: Config, processed: int, parts: Sequence[tuple[int, bytes]]) -> bytes:
    """A snapshot of the series in ``parts`` (each from :func:`packed_series`, of detectors
    with this configuration), their packed entries joined as they are: the scoring workers'
    series make one file without being decoded again."""
    packer = msgpack.Packer(use_bin_type=True)
    head = {
        "format": FORMAT,
        "version": VERSION,
        "saved_at": time.time(),
        "processed": processed,
        "model": model_section(config),
    }
    chunks = [packer.pack_map_header(len(head) + 1)]
    for name, value in head.items():
        chunks += [packer.pack(name), packer.pack(value)]
    chunks += [packer.pack("series"), packer.pack_array_header(sum(n for n, _ in parts))]
    chunks += [entries for _, entries in parts]
    return b"".join(chunks)


class PooledModels(Protocol):
    """Models a :class:`StateStore` saves and restores that are not one :class:`Detector`
    in this process: the scoring workers' (:class:`hst_processor.workers.WorkerPool`)."""

    config: Config

    def snapshot(self, processed: int) -> bytes: ...

    def restore(self, document: Mapping[str, Any]) -> list[str]: ...

    def forget_all(self) -> None: ...

    def series_count(self) -> int: ...


Models = Detector | PooledModels
"""What a :class:`StateStore` keeps: the detector, or the workers' models."""


def _snapshot_of(models: Models, processed: int) -> bytes:
    if isinstance(models, Detector):
        return snapshot(models, processed)
    return models.snapshot(processed)


def parse(data: bytes) -> dict[str, Any]:
    """Decode and check a snapshot; raise :class:`StateError` saying what is wrong."""
    # A byte of msgpack can be an empty map, which costs Python some 60 bytes: a snapshot's
    # leaf counts are byte strings, so real ones hold few containers for their size, and a
    # file of little else is refused before it costs many times its size.
    budget = [len(data) // 8 + 10_000]

    def counted(container: Any) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise StateError("not a snapshot: far too many maps and lists for its size")
        return container

    try:
        document = msgpack.unpackb(
            data, raw=False, strict_map_key=False, object_hook=counted, list_hook=counted
        )
    except StateError:
        raise
    except Exception as error:  # msgpack raises several unrelated types for bad input
        raise StateError(f"not a readable snapshot ({type(error).__name__})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StateError("not an hst-processor snapshot")
    if document.get("version") != VERSION:
        raise StateError(f"snapshot format version {document.get('version')!r} is not {VERSION}")
    validate(document)
    return document


# ---------------------------------------------------------------------------------------------
# The snapshot's shape. A file that decodes is not yet one this code can load: a series without
# a field, an extra key, short leaf counts or a number where a list belongs must be refused
# here, with the place named, and never reach the restore (where it would crash the start and,
# the file being kept, every restart after it).

_TOP = {"format", "version", "saved_at", "processed", "model", "series"}
# The model section, with the ranges config.py accepts.
_MODEL = MODEL_RANGES
_SERIES = {
    *("measurement", "tags", "features", "scaling", "last_values", "low", "high"),
    *("warmup_rows", "anomalous_run", "complete", "alert", "last_seen", "masses"),
}
# Not written by 0.1, so a file without them still loads.
_SERIES_OPTIONAL = frozenset({"inputs", "derived", "context", "rarity", "episode", "ranges"})
_MASSES = {"counter", "first_window", "windows", "dtype", "live", "reference"}
_COUNT_DTYPES = ("uint8", "uint16", "int32")  # what export_masses writes
_DERIVED = {"specs", "previous", "history", "fit_points", "lines"}
_CONTEXT = {"fields", "pending", "fitted", "arrays"}
_RARITY = {"counts", "total", "weight", "seen", "tail"}
_RANGES = {"seen", "sample", "times", "median", "low", "high", "unit", "interval", "rarity"}
_INT64 = 2**63


def validate(document: Mapping[str, Any]) -> None:
    """Check that a decoded snapshot has exactly the shape :func:`snapshot` writes; raise
    :class:`StateError` naming the first place where it does not."""
    _keys(document, "snapshot", _TOP)
    _number(document["saved_at"], "saved_at")
    _integer(document["processed"], "processed", 0, _INT64)
    model = _keys(document["model"], "model", set(_MODEL))
    for name, (low, high) in _MODEL.items():
        _integer(model[name], f"model.{name}", low, high)
    series_list = document["series"]
    if not isinstance(series_list, list):
        raise StateError(f"series: expected a list, got {_kind(series_list)}")
    first_of: dict[tuple[Any, ...], int] = {}
    for index, saved in enumerate(series_list):
        _series(saved, f"series[{index}]", model)
        key = (saved["measurement"], *map(tuple, saved["tags"]))
        if first_of.setdefault(key, index) != index:
            raise StateError(f"series[{index}]: the same series as series[{first_of[key]}]")


def _series(saved: Any, where: str, model: Mapping[str, int]) -> None:
    _keys(saved, where, _SERIES, _SERIES_OPTIONAL)
    _text(saved["measurement"], f"{where}.measurement")
    tags = _list(saved["tags"], f"{where}.tags")
    for position, pair in enumerate(tags):
        pair = _list(pair, f"{where}.tags[{position}]", length=2)
        for part in pair:
            _text(part, f"{where}.tags[{position}]")
    features = _names(saved["features"], f"{where}.features")
    if not features:
        raise StateError(f"{where}.features: empty")
    inputs = _names(saved.get("inputs") or features, f"{where}.inputs")
    _scaling(saved["scaling"], f"{where}.scaling")
    last_values = _list(saved["last_values"], f"{where}.last_values", length=len(inputs))
    for position, value in enumerate(last_values):
        if value is not None:
            _number(value, f"{where}.last_values[{position}]")
    if (saved["low"] is None) != (saved["high"] is None):
        raise StateError(f"{where}: low and high must both be set or both be empty")
    for name in ("low", "high"):
        if saved[name] is not None:
            _numbers(saved[name], f"{where}.{name}", len(features), finite=True)
    window = model["window_size"]
    rows = _list(saved["warmup_rows"], f"{where}.warmup_rows")
    if len(rows) >= window:  # the window's last row freezes the limits: never saved full
        raise StateError(f"{where}.warmup_rows: {len(rows)} rows, a window is {window}")
    for position, row in enumerate(rows):
        _numbers(row, f"{where}.warmup_rows[{position}]", len(features))
    _integer(saved["anomalous_run"], f"{where}.anomalous_run", 0, _INT64)
    _boolean(saved["complete"], f"{where}.complete")
    _alert(saved["alert"], f"{where}.alert")
    if saved["last_seen"] is not None:
        _integer(saved["last_seen"], f"{where}.last_seen", -_INT64, _INT64)
    _masses(saved["masses"], f"{where}.masses", model)
    if saved.get("derived") is not None:
        _derived(saved["derived"], f"{where}.derived")
    if saved.get("context") is not None:
        _context(saved["context"], f"{where}.context", inputs, features, window)
    if saved.get("rarity") is not None:
        _rarity(saved["rarity"], f"{where}.rarity")
    if saved.get("ranges") is not None:
        _ranges(saved["ranges"], f"{where}.ranges", len(inputs))
    if saved.get("episode") is not None:
        episode = _list(saved["episode"], f"{where}.episode", length=2)
        _boolean(episode[0], f"{where}.episode[0]")
        _integer(episode[1], f"{where}.episode[1]", 0, _INT64)


def _scaling(saved: Any, where: str) -> None:
    _keys(saved, where, {"mode", "margin", "limits"})
    _text(saved["mode"], f"{where}.mode")
    if saved["margin"] is not None:
        _number(saved["margin"], f"{where}.margin")
    limits = _keys(saved["limits"], f"{where}.limits", set(), any_text=True)
    for name, pair in limits.items():
        _numbers(pair, f"{where}.limits.{name}", 2)


def _alert(saved: Any, where: str) -> None:
    # The kinds follow AlertState's defaults: a count, a flag, a time, or a time not yet set.
    defaults = asdict(AlertState())
    _keys(saved, where, set(defaults))
    for name, default in defaults.items():
        value = saved[name]
        if isinstance(default, bool):
            _boolean(value, f"{where}.{name}")
        elif isinstance(default, int):
            _integer(value, f"{where}.{name}", 0, _INT64)
        elif default is not None or value is not None:
            _number(value, f"{where}.{name}")


def _masses(saved: Any, where: str, model: Mapping[str, int]) -> None:
    _keys(saved, where, _MASSES)
    _integer(saved["counter"], f"{where}.counter", 0, model["window_size"] - 1)
    _boolean(saved["first_window"], f"{where}.first_window")
    _integer(saved["windows"], f"{where}.windows", 0, _INT64)
    dtype = saved["dtype"]
    if dtype not in _COUNT_DTYPES:
        raise StateError(f"{where}.dtype: expected one of {', '.join(_COUNT_DTYPES)}, "
                         f"got {_kind(dtype)}")  # fmt: skip
    # One count per leaf of every tree: the length follows from the model section.
    expected = model["n_trees"] * (1 << model["height"]) * np.dtype(dtype).itemsize
    for name in ("live", "reference"):
        counts = saved[name]
        if not isinstance(counts, bytes):
            raise StateError(f"{where}.{name}: expected bytes, got {_kind(counts)}")
        if len(counts) != expected:
            raise StateError(f"{where}.{name}: {len(counts)} bytes, expected {expected}")


def _derived(saved: Any, where: str) -> None:
    _keys(saved, where, _DERIVED)
    specs = _list(saved["specs"], f"{where}.specs")
    for position, spec in enumerate(specs):
        _keys(spec, f"{where}.specs[{position}]", {"name", "kind", "field", "of", "window", "fit"})
    count = len(specs)
    for position, value in enumerate(_list(saved["previous"], f"{where}.previous", count)):
        if value is not None:
            _number(value, f"{where}.previous[{position}]")
    for position, values in enumerate(_list(saved["history"], f"{where}.history", count)):
        _numbers(values, f"{where}.history[{position}]")
    for position, points in enumerate(_list(saved["fit_points"], f"{where}.fit_points", count)):
        for at, point in enumerate(_list(points, f"{where}.fit_points[{position}]")):
            _numbers(point, f"{where}.fit_points[{position}][{at}]", 2)
    for position, line in enumerate(_list(saved["lines"], f"{where}.lines", count)):
        if line is not None:
            _numbers(line, f"{where}.lines[{position}]", 3)


def _context(saved: Any, where: str, inputs: list[str], features: list[str], window: int) -> None:
    _keys(saved, where, _CONTEXT)
    if _names(saved["fields"], f"{where}.fields") != inputs:
        raise StateError(f"{where}.fields: not the series' inputs")
    if list(context_names(inputs)) != features:
        raise StateError(f"{where}: the series' features are not its context features")
    width = len(inputs)
    pending = _list(saved["pending"], f"{where}.pending")
    if len(pending) > window:  # the fit takes a window's metrics
        raise StateError(f"{where}.pending: {len(pending)} rows, more than a window ({window})")
    for position, row in enumerate(pending):
        _numbers(row, f"{where}.pending[{position}]", width)
    _boolean(saved["fitted"], f"{where}.fitted")
    arrays = _keys(
        saved["arrays"],
        f"{where}.arrays",
        {*SAVED_VECTORS, *SAVED_MATRICES},
    )
    for name in SAVED_VECTORS:
        _numbers(arrays[name], f"{where}.arrays.{name}", width)
    fitted_width = coefficient_width(width)
    for name in SAVED_MATRICES:
        rows = _list(arrays[name], f"{where}.arrays.{name}", fitted_width)
        for position, row in enumerate(rows):
            _numbers(row, f"{where}.arrays.{name}[{position}]", fitted_width)


def _rarity(saved: Any, where: str) -> None:
    _keys(saved, where, _RARITY)
    fresh = RarityState()
    _numbers(saved["counts"], f"{where}.counts", len(fresh.counts))
    _number(saved["total"], f"{where}.total")
    _number(saved["weight"], f"{where}.weight")
    _integer(saved["seen"], f"{where}.seen", 0, _INT64)
    _numbers(saved["tail"], f"{where}.tail", len(fresh.tail))


def _ranges(saved: Any, where: str, width: int) -> None:
    _keys(saved, where, _RANGES)
    _integer(saved["seen"], f"{where}.seen", 0, _INT64)
    sample = _list(saved["sample"], f"{where}.sample")
    for position, row in enumerate(sample):
        _numbers(row, f"{where}.sample[{position}]", width)
    _numbers(saved["times"], f"{where}.times", len(sample), finite=True)
    if saved["unit"] is None:  # still gathering: one row kept for every fourth metric seen
        expected = sampled_rows(saved["seen"])
        if len(sample) != expected:
            raise StateError(
                f"{where}.sample: {len(sample)} rows for {saved['seen']} metrics seen, "
                f"expected {expected}"
            )
    elif sample:
        raise StateError(f"{where}.sample: {len(sample)} rows kept after the ranges were fitted")
    _number(saved["interval"], f"{where}.interval", finite=True)
    if saved["interval"] < 0:
        raise StateError(f"{where}.interval: must not be negative, got {saved['interval']!r}")
    fitted = [saved[name] is not None for name in ("median", "low", "high", "unit")]
    if any(fitted) and not all(fitted):
        raise StateError(f"{where}: median, low, high and unit must all be set or all be empty")
    if all(fitted):
        for name in ("median", "low", "high"):
            _numbers(saved[name], f"{where}.{name}", width)
        _numbers(saved["unit"], f"{where}.unit", width, finite=True)
        for position, unit in enumerate(saved["unit"]):
            if not unit > 0:  # a distance is divided by it
                raise StateError(f"{where}.unit[{position}]: must be above 0, got {unit!r}")
    _rarity(saved["rarity"], f"{where}.rarity")


def _kind(value: Any) -> str:
    if isinstance(value, bytes | str) and len(value) > 40:
        return f"{type(value).__name__} of length {len(value)}"
    if isinstance(value, dict | list):
        return type(value).__name__
    return f"{type(value).__name__} {value!r}"


def _keys(
    value: Any,
    where: str,
    required: set[str],
    optional: frozenset[str] = frozenset(),
    any_text: bool = False,
) -> dict[str, Any]:
    """A mapping with every ``required`` key and nothing beyond ``optional`` (``any_text``:
    any text keys at all)."""
    if not isinstance(value, dict):
        raise StateError(f"{where}: expected a mapping, got {_kind(value)}")
    if any_text:
        for key in value:
            _text(key, f"{where} key")
        return value
    missing = sorted(required - value.keys())
    if missing:
        raise StateError(f"{where}: missing {', '.join(missing)}")
    extra = [key for key in value if key not in required and key not in optional]
    if extra:
        raise StateError(f"{where}: unexpected {', '.join(map(repr, extra))}")
    return value


def _list(value: Any, where: str, length: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise StateError(f"{where}: expected a list, got {_kind(value)}")
    if length is not None and len(value) != length:
        raise StateError(f"{where}: {len(value)} items, expected {length}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise StateError(f"{where}: expected text, got {_kind(value)}")
    return value


def _names(value: Any, where: str) -> list[str]:
    names = _list(value, where)
    for position, name in enumerate(names):
        _text(name, f"{where}[{position}]")
    return names


def _boolean(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise StateError(f"{where}: expected true or false, got {_kind(value)}")


def _integer(value: Any, where: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise StateError(f"{where}: expected an integer from {low} to {high}, got {_kind(value)}")


def _number(value: Any, where: str, finite: bool = False) -> None:
    if not is_numeric(value):
        raise StateError(f"{where}: expected a number, got {_kind(value)}")
    if finite and not math.isfinite(value):
        raise StateError(f"{where}: expected a finite number, got {value!r}")


def _numbers(value: Any, where: str, length: int | None = None, finite: bool = False) -> None:
    for position, item in enumerate(_list(value, where, length)):
        _number(item, f"{where}[{position}]", finite)


def restore(detector: Detector, document: Mapping[str, Any]) -> list[str]:
    """Load a parsed snapshot into an empty detector; return a warning per series (or group
    of series) that had to start fresh, saying why."""
    config = detector.config
    warnings: list[str] = []
    saved_model = document["model"]
    if saved_model != model_section(config):
        changes = ", ".join(
            f"{name} {saved_model.get(name)} -> {value}"
            for name, value in model_section(config).items()
            if saved_model.get(name) != value
        )
        return [f"model configuration changed ({changes}): all {len(document['series'])} series "
                "start fresh"]  # fmt: skip
    fresh_features = fresh_scaling = 0
    derived_specs = [spec.describe() for spec in config.derived]
    configured = tuple(sorted(config.features))
    kept: list[tuple[Mapping[str, Any], tuple[str, ...]]] = []
    for saved in document["series"]:
        features = tuple(saved["features"])
        inputs = tuple(saved.get("inputs") or features)
        # What a series created now from these fields would get: anything else is stale.
        expected = detector.model_features_for(inputs)
        if (config.features and inputs != configured) or features != expected:
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
        kept.append((saved, features))
    # The snapshot lists series least recently seen first: keep the most recent ones.
    dropped = max(0, len(kept) - config.max_series)
    for saved, features in kept[dropped:]:
        detector.restore_series(saved, features)  # limits.memory_mb: the most recent stay
    if fresh_features:
        warnings.append(f"features changed: {fresh_features} series start fresh")
    if fresh_scaling:
        warnings.append(f"scaling changed: {fresh_scaling} series start fresh")
    if dropped:
        warnings.append(
            f"max_series={config.max_series}: forgot the {dropped} least recently seen of "
            f"{len(kept)} saved series"
        )
    return warnings


def read_snapshot(path: Path, limit: int = 1 << 30) -> bytes:
    """The file's bytes, if it is a regular file of at most ``limit`` bytes: opened without
    waiting (a FIFO would block the start for ever) and checked before it is read (a link to
    ``/dev/zero`` would fill the memory)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as file:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise StateError("not a regular file")
        if status.st_size > limit:
            raise StateError(f"{status.st_size:,} bytes, more than the {limit:,} it may have")
        return file.read(limit + 1)


def forget(path: Path, match: Mapping[str, str]) -> int:
    """Remove the series whose tags include ``match`` from a snapshot file; return how many."""
    document = parse(read_snapshot(path))
    kept = [
        saved
        for saved in document["series"]
        if not all(dict(map(tuple, saved["tags"])).get(k) == v for k, v in match.items())
    ]
    removed = len(document["series"]) - len(kept)
    if removed:
        document["series"] = kept
        write_atomic(path, msgpack.packb(document, use_bin_type=True))
    return removed


def describe(document: Mapping[str, Any], window_size: int | None = None) -> str:
    """A human-readable account of a snapshot, for ``inspect-state``."""
    model = document["model"]
    window = window_size or int(model["window_size"])
    saved_at = utc_text(document["saved_at"])
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
        last = utc_text(seen / 1e9) if seen is not None else "no timestamp"
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
    write_all_atomic([(path, data)])


def write_all_atomic(files: Sequence[tuple[Path, bytes]]) -> None:
    """Replace several files, each atomically, and none unless every one could be written in
    full: all are written and synced beside their targets first, then renamed over them (a
    rename within a directory does not run out of room). An ``OSError`` names the target."""
    for path, _ in files:  # what no rename can replace, found before any file is touched
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "a directory is in the way", str(path))
    written: list[tuple[Path, Path]] = []
    try:
        for path, data in files:
            with _naming(path):
                descriptor, temporary = _create_temporary(path)
            written.append((temporary, path))
            with _naming(path), os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        for temporary, path in written:
            with _naming(path):  # renames the name itself: a link at ``path`` is replaced
                os.replace(temporary, path)
    except BaseException:
        for temporary, _ in written:
            temporary.unlink(missing_ok=True)
        raise
    for parent in dict.fromkeys(path.parent for _, path in written):
        directory = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An ``OSError`` inside names ``path``, the file being replaced, not a temporary one."""
    try:
        yield
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(path)) from None


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file beside ``path`` that this call created itself. Anyone who can write to the
    directory could plant a symbolic link at a name we are about to open; ``O_EXCL`` refuses
    any existing name (a link included, and ``O_NOFOLLOW`` says so twice), and a random part
    makes the name unguessable, so the write can never land in a file elsewhere."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        temporary = path.with_name(f"{path.name}{_TEMPORARY}{os.getpid()}.{secrets.token_hex(8)}")
        try:
            return os.open(temporary, flags, 0o666), temporary  # the umask applies, as for open()
        except FileExistsError:
            continue  # a name taken (by chance or on purpose): draw another


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this forked save when its parent dies. An orphaned save would
    otherwise go on and replace the snapshot of the processor Telegraf restarted with an
    older one."""
    # Not Linux (no prctl): the lock is still released with the parent.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


@dataclass
class SaveCounters:
    """The saves of one processor, for its self-metrics."""

    saves: int = 0
    failed: int = 0
    last_seconds: float = 0.0  # the last save that succeeded: from its start to its end
    last_bytes: int = 0


class StateStore:
    """The snapshot file of one processor: lock, load, periodic and final saves."""

    def __init__(self, path: str | os.PathLike[str], interval: float, log: Log) -> None:
        self.path = Path(path)
        self.interval = interval
        self.log = log
        self.enabled = False
        self._lock_fd: int | None = None
        self._retry = False  # the lock could not be taken for a reason that may pass
        self._child: int | None = None
        self._child_started = 0.0  # wall-clock time of the fork, to date the file it wrote
        self._last_save = time.monotonic()
        self.counters = SaveCounters()

    def start(self, detector: Models) -> int:
        """At start: take the lock and restore the snapshot; return how many metrics it had
        seen. A file another processor holds is left alone; a directory that is missing or
        not writable still lets a readable snapshot restore, and the saves retry."""
        if not self.acquire() and not self._retry:
            return 0
        return self.load_into(detector)

    def acquire(self, retrying: bool = False) -> bool:
        """Take the lock; False (with a warning) if another process holds it or the lock file
        cannot be opened (then later saves retry)."""
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            if retrying:  # the directory may be missing: create it, as for a first run
                self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as error:
            message = f"cannot lock state file {self.path}: {error.strerror}"
            if retrying:  # counted, printed at most once per log.repeat_interval
                self.log.warn_repeated("state-lock", f"{message}; still not persisting")
            else:
                self.log.warn(f"{message}; not persisting until it can be (retried at each save)")
            self._retry = True
            return False
        try:
            # A POSIX record lock belongs to this process alone: a forked save does not
            # inherit it, and the kernel releases it when this process dies, whatever its
            # children do. (flock's lock belongs to the open file, which a fork shares: an
            # orphaned save kept it, and the restarted processor never persisted again.)
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            self.log.warn(
                f"state file {self.path} is in use by another hst-processor: running without "
                "persisting state (with aggregators, Telegraf runs processors twice; consider "
                "skip_processors_after_aggregators = true)"
            )
            self._retry = False  # its owner saves; ours would overwrite its models
            return False
        self._lock_fd = descriptor  # held open for the life of the process, like the lock
        self.enabled, self._retry = True, False
        for leftover in self.path.parent.glob(glob.escape(self.path.name) + _TEMPORARY + "*"):
            try:  # a save that was killed halfway left it; anything else there is not ours
                if not leftover.is_dir() or leftover.is_symlink():
                    leftover.unlink(missing_ok=True)
            except OSError:
                pass
        if retrying:
            self.log.info(f"state file {self.path}: locked, persisting from now on")
        return True

    def release(self) -> None:
        """Let the lock go (a tool that edits the file in process, and is done with it); a
        processor keeps it for its whole life instead."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing it releases the record lock
            self._lock_fd = None
        self.enabled = False

    def _may_save(self) -> bool:
        """Whether saves can go on: the lock is ours, or could be taken now."""
        return self.enabled or (self._retry and self.acquire(retrying=True))

    def load_into(self, detector: Models) -> int:
        """Restore the snapshot, if any; return how many metrics it had seen."""
        try:
            data = read_snapshot(self.path, detector.config.limits.memory_mb * MIB // 2)
        except FileNotFoundError:
            return 0
        except StateError as error:
            self._set_aside(detector, str(error))
            return 0
        except OSError as error:
            self.log.warn(f"cannot read state file {self.path}: {error.strerror}; starting fresh")
            return 0
        try:
            document = parse(data)
            if isinstance(detector, Detector):
                warnings = restore(detector, document)
            else:
                warnings = detector.restore(document)
        except StateError as error:
            self._set_aside(detector, str(error))
            return 0
        except Exception as error:  # what validate() let through must not crash every start
            self._set_aside(detector, f"cannot be restored ({type(error).__name__}: {error})")
            return 0
        for warning in warnings:
            self.log.warn(f"state file {self.path}: {warning}")
        self.log.info(
            f"restored {detector.series_count()} series from {self.path} "
            f"(saved after {document['processed']} metrics)"
        )
        return int(document["processed"])

    def _set_aside(self, detector: Models, reason: str) -> None:
        """Start fresh from an unusable file, kept beside it for a person to look at."""
        detector.forget_all()  # anything a failed restore left behind
        aside = self.path.with_name(f"{self.path.name}.corrupt-{file_stamp(time.time())}")
        try:
            os.replace(self.path, aside)
            kept = f"kept as {aside.name}"
        except OSError:
            kept = "left in place"
        self.log.warn(f"state file {self.path}: {reason}; starting fresh ({kept})")

    def due(self) -> bool:
        """Whether :meth:`maybe_save` may save now (its interval is up)."""
        return (self.enabled or self._retry) and (
            time.monotonic() - self._last_save >= self.interval
        )

    def maybe_save(self, detector: Models, processed: int) -> None:
        """After a batch: reap a finished save; fork a new one when the interval is up."""
        if not (self.enabled or self._retry):
            return
        self.poll()
        if self._child is not None or not self.due():
            return
        self._last_save = time.monotonic()
        if not self._may_save():
            return
        self._child_started = time.time()
        gathered = None  # the workers' models are gathered here; a detector's in the child
        if not isinstance(detector, Detector):
            try:
                gathered = detector.snapshot(processed)
            except StateError as error:
                self.counters.failed += 1
                self.log.warn_repeated("state-save", f"could not save state: {error}")
                return
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: save and leave, touching nothing the parent shares
            _die_with_parent(parent)
            os._exit(self._save_in_child(detector, processed, gathered))
        self._child = pid

    def _save_in_child(self, detector: Models, processed: int, gathered: bytes | None) -> int:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.close(0)
            os.close(1)  # Telegraf must see our stdout close when the parent exits
            data = gathered if gathered is not None else _snapshot_of(detector, processed)
            write_atomic(self.path, data)
            os.utime(self.path)  # the save's end, synced and renamed: the parent dates it by it
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
        if code == 0:
            self._count_save(self._child_started)
        else:
            self.counters.failed += 1
            reason = _SAVE_FAILED.get(code, "the write failed")
            self.log.warn_repeated(
                "state-save", f"could not save state to {self.path}: {reason}; will retry"
            )

    def save_now(self, detector: Models, processed: int) -> None:
        """The final save, in this process (after the output is flushed)."""
        if not self._may_save():
            return
        self.poll(wait=True)
        started = time.time()
        try:
            write_atomic(self.path, _snapshot_of(detector, processed))
            os.utime(self.path)  # the save's end, as a forked save stamps it
        except OSError as error:
            self.counters.failed += 1
            self.log.warn(f"could not save state to {self.path}: {error.strerror}")
        except StateError as error:
            self.counters.failed += 1
            self.log.warn(f"could not save state: {error}")
        else:
            self._count_save(started)

    def _count_save(self, started: float) -> None:
        """A save went through: its size, and its duration up to the time its file was
        stamped with at its end, synced and renamed (a forked save is reaped only between
        batches, later than it ended)."""
        self.counters.saves += 1
        try:
            written = os.stat(self.path)
        except OSError:  # removed since: the count stands, the figures stay the last known
            return
        self.counters.last_bytes = written.st_size
        self.counters.last_seconds = max(0.0, written.st_mtime - started)

"""Series over N processors: NATS's partition function, and snapshots re-partitioned by it.

Scaled out (``deploy/scale-out/``), NATS maps each machine's subject ``machine.<id>`` into one
of N partitions with ``{{partition(N, 1)}}``: the FNV-1a 32-bit hash of the ``<id>`` token,
modulo N. Agent *k* reads partition *k*, so each machine's model lives in exactly one processor
and its state file. Going from N agents to M is: stop them, re-partition their snapshots by the
same function (:func:`repartition`, the ``repartition`` command), start M agents. No machine
warms up again.

>>> nats_partition("machine2", 3)
0
>>> [nats_partition(f"machine{n}", 2) for n in range(1, 5)]
[1, 0, 1, 0]
>>> hex(nats_partition("foobar", 2**32))  # FNV-1a's published test vector
'0xbf9cf968'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgpack

from hst_processor.errors import HstProcessorError

__all__ = [
    "PARTITION_FIELD",
    "PartitionError",
    "nats_partition",
    "partition_paths",
    "repartition",
    "repartition_files",
]

PARTITION_FIELD = "{partition}"
"""Where an output pattern of :func:`repartition_files` takes the partition's number."""

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


class PartitionError(HstProcessorError):
    """Snapshots that cannot be re-partitioned, and why."""


def nats_partition(token: str, partitions: int) -> int:
    """The partition NATS's ``{{partition(partitions, 1)}}`` gives a subject whose wildcard
    token is ``token``: FNV-1a (32 bits) of its UTF-8 bytes, modulo ``partitions``."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    digest = _FNV_OFFSET
    for byte in token.encode("utf-8"):
        digest = ((digest ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return digest % partitions


def repartition(
    documents: Sequence[Mapping[str, Any]], tag: str, partitions: int
) -> list[dict[str, Any]]:
    """The series of ``documents`` (parsed snapshots of one model configuration) spread over
    ``partitions`` new ones by ``nats_partition`` of each series' ``tag`` value.

    Each new snapshot keeps the series least recently seen first, as a processor writes them;
    ``processed`` is the sum of the inputs' (how many metrics the models saw, all together)."""
    if not documents:
        raise PartitionError("no snapshot to re-partition")
    model = documents[0]["model"]
    for index, document in enumerate(documents[1:], start=1):
        if document["model"] != model:
            raise PartitionError(
                f"snapshot {index + 1} has another model configuration than the first "
                f"({document['model']} against {model}): they are not partitions of one setup"
            )
    series: list[Mapping[str, Any]] = [
        saved for document in documents for saved in document["series"]
    ]
    untagged = [saved for saved in series if tag not in dict(map(tuple, saved["tags"]))]
    if untagged:
        raise PartitionError(
            f"{len(untagged)} series have no tag {tag!r} to partition by "
            f"(the first: {_describe(untagged[0])})"
        )
    seen_keys: set[tuple[Any, ...]] = set()
    for saved in series:
        key = (saved["measurement"], tuple(map(tuple, saved["tags"])))
        if key in seen_keys:
            raise PartitionError(f"{_describe(saved)} is in more than one snapshot")
        seen_keys.add(key)
    # Least recently seen first across all inputs (a series without a timestamp: first).
    series.sort(key=lambda saved: -1 if saved["last_seen"] is None else saved["last_seen"])
    spread: list[dict[str, Any]] = [
        {
            **{name: value for name, value in documents[0].items() if name != "series"},
            "saved_at": max(document["saved_at"] for document in documents),
            "processed": sum(int(document["processed"]) for document in documents),
            "series": [],
        }
        for _ in range(partitions)
    ]
    for saved in series:
        value = dict(map(tuple, saved["tags"]))[tag]
        spread[nats_partition(value, partitions)]["series"].append(saved)
    return spread


def _describe(saved: Mapping[str, Any]) -> str:
    tags = ",".join(f"{key}={value}" for key, value in saved["tags"])
    return f"{saved['measurement']},{tags}" if tags else str(saved["measurement"])


def repartition_files(
    inputs: Sequence[Path], tag: str, partitions: int, pattern: str
) -> list[tuple[Path, int]]:
    """Re-partition snapshot files: read and check every input, then write one snapshot per
    partition to ``pattern`` (``{partition}`` becomes 0 to ``partitions`` - 1); return each
    output with its number of series. Nothing is written unless every input is good, and no
    output replaces its file unless every output could be written in full, so an input may
    also be an output (the documented way: the agents' files, in place)."""
    from hst_processor.state import StateError, parse, read_snapshot, write_all_atomic

    if PARTITION_FIELD not in pattern:
        raise PartitionError(f"the output {pattern!r} must hold {PARTITION_FIELD}")
    seen: dict[str, Path] = {}
    for path in inputs:
        real = os.path.realpath(path)
        if real in seen:
            raise PartitionError(f"{path} is given twice (as {seen[real]} too)")
        seen[real] = path
    documents = []
    for path in inputs:
        try:
            documents.append(parse(read_snapshot(path)))
        except StateError as error:
            raise PartitionError(f"{path}: {error}") from None
        except OSError as error:
            raise PartitionError(f"{path}: {error.strerror}") from None
    spread = repartition(documents, tag, partitions)
    outputs = partition_paths(pattern, partitions)
    encoded = [msgpack.packb(document, use_bin_type=True) for document in spread]
    write_all_atomic(list(zip(outputs, encoded, strict=True)))
    return [(path, len(document["series"])) for path, document in zip(outputs, spread, strict=True)]


def partition_paths(pattern: str, partitions: int) -> list[Path]:
    """The file of each partition: ``pattern`` with ``{partition}`` its number."""
    return [Path(pattern.replace(PARTITION_FIELD, str(index))) for index in range(partitions)]

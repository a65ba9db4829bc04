"""Series over N processors: NATS's partition function, and ``repartition`` of state files.

The property that matters: models are per machine, so a machine's output does not depend on
which processor scores it, nor on the state files being split or merged between two runs.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from hst_processor.cli import main
from hst_processor.partition import PartitionError, nats_partition, repartition
from hst_processor.state import parse
from simulator.run import simulate

ROOT = Path(__file__).resolve().parent.parent
CONFIG = (ROOT / "hst-processor.yaml").read_text() + "\nself_metrics: {interval: 0}\n"
MACHINES = 12
SECONDS = 1_200
CUT = 700  # seconds into the stream where the agents stop and their state is re-partitioned


def fnv1a(data: bytes) -> int:
    """FNV-1a 32, written from its definition (offset basis, then xor and multiply per byte)."""
    digest = 2166136261
    for byte in data:
        digest = ((digest ^ byte) * 16777619) % 2**32
    return digest


@pytest.mark.parametrize("token", ["", "a", "foobar", "machine17", "maschine-ä", "x" * 300])
def test_the_partition_is_fnv1a_of_the_token_modulo_n(token: str) -> None:
    for partitions in (1, 2, 3, 7, 1000):
        assert nats_partition(token, partitions) == fnv1a(token.encode()) % partitions


def test_published_vectors() -> None:
    # From the FNV reference test suite (FNV-1a, 32 bits).
    assert nats_partition("a", 2**32) == 0xE40C292C
    assert nats_partition("foobar", 2**32) == 0xBF9CF968


def document(*series: tuple[str, int | None], model: str = "m") -> dict[str, object]:
    return {
        "format": "hst-processor-state",
        "version": 1,
        "saved_at": 1.0,
        "processed": 10,
        "model": {"name": model},
        "series": [
            {"measurement": "m", "tags": [["id", name]], "last_seen": seen} for name, seen in series
        ],
    }


def test_repartition_puts_each_series_in_its_partition_least_recently_seen_first() -> None:
    first = document(("a", 5), ("b", 1))
    second = document(("c", None), ("d", 3), ("e", 9))
    spread = repartition([first, second], "id", 2)
    assert [d["processed"] for d in spread] == [20, 20]
    placed = {s["tags"][0][1]: index for index, d in enumerate(spread) for s in d["series"]}
    assert placed == {name: nats_partition(name, 2) for name in "abcde"}
    for new in spread:
        seen = [s["last_seen"] for s in new["series"]]
        assert seen == sorted(seen, key=lambda value: -1 if value is None else value)
        assert new["model"] == {"name": "m"}


@pytest.mark.parametrize(
    ("documents", "problem"),
    [
        ([document(("a", 1)), document(("b", 1), model="other")], "another model configuration"),
        ([document(("a", 1)), document(("a", 2))], "m,id=a is in more than one snapshot"),
        ([], "no snapshot"),
    ],
)
def test_repartition_refuses_snapshots_that_are_not_partitions_of_one_setup(
    documents: list[dict[str, object]], problem: str
) -> None:
    with pytest.raises(PartitionError, match=problem):
        repartition(documents, "id", 2)


def test_repartition_refuses_a_series_without_the_tag() -> None:
    untagged = document(("a", 1))
    untagged["series"][0]["tags"] = [["host", "x"]]  # type: ignore[index]
    with pytest.raises(PartitionError, match="1 series have no tag 'id'"):
        repartition([untagged], "id", 2)


# ---------------------------------------------------------------------------------------------
# Through the command


@pytest.fixture(scope="module")
def stream() -> list[bytes]:
    text, _ = simulate(MACHINES, seed=3, start_ns=1_767_225_600_000_000_000, duration_s=SECONDS)
    return text.encode().splitlines(True)


def machine_of(line: bytes) -> str:
    return line.split(b"machineID=")[1].split(b",")[0].split(b" ")[0].decode()


def score(config: Path, lines: list[bytes], state: Path | None = None) -> list[bytes]:
    script = shutil.which("hst-processor")
    assert script is not None
    state_args = ["--state-file", str(state)] if state else []
    result = subprocess.run(
        [script, "--config", str(config), *state_args],
        input=b"".join(lines),
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines(True)


def per_machine(lines: list[bytes]) -> dict[str, list[bytes]]:
    machines: dict[str, list[bytes]] = defaultdict(list)
    for line in lines:
        machines[machine_of(line)].append(line)
    return dict(machines)


def shards(lines: list[bytes], partitions: int) -> list[list[bytes]]:
    routed: list[list[bytes]] = [[] for _ in range(partitions)]
    for line in lines:
        routed[nats_partition(machine_of(line), partitions)].append(line)
    return routed


@pytest.mark.parametrize(("before", "after"), [(3, 2), (1, 3), (2, 1)])
def test_agents_repartitioned_between_runs_score_as_one_uninterrupted_processor(
    stream: list[bytes], tmp_path: Path, before: int, after: int
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    whole = per_machine(score(config, stream))
    cut = CUT * MACHINES
    # N agents, each on its partition, each with its state file; then stopped.
    old = [tmp_path / f"old-{k}.msgpack" for k in range(before)]
    outputs: list[bytes] = []
    for k, lines in enumerate(shards(stream[:cut], before)):
        outputs += score(config, lines, old[k])
    pattern = str(tmp_path / "new-{partition}.msgpack")
    errors = io.StringIO()
    code = main(
        ["repartition", *map(str, old), "--by", "machineID", "--partitions", str(after),
         "--output", pattern],
        stderr=errors,
    )  # fmt: skip
    assert code == 0, errors.getvalue()
    new = [Path(pattern.format(partition=k)) for k in range(after)]
    counts = [len(parse(path.read_bytes())["series"]) for path in new]
    assert sum(counts) == MACHINES and f"{new[0]}: {counts[0]} series" in errors.getvalue()
    # M agents go on from the new files: no machine starts over.
    for k, lines in enumerate(shards(stream[cut:], after)):
        resumed = score(config, lines, new[k])
        assert not any(b"anomaly=warmup" in line for line in resumed)
        outputs += resumed
    assert per_machine(outputs) == whole  # every machine, metric for metric, byte for byte


def test_repartition_refuses_an_output_without_the_partition_and_a_file_in_use(
    tmp_path: Path,
) -> None:
    errors = io.StringIO()
    code = main(["repartition", "a", "--by", "id", "--partitions", "2", "-o", "x"], stderr=errors)
    assert code == 2 and "--output must hold {partition}" in errors.getvalue()
    config = tmp_path / "c.yaml"
    config.write_text("self_metrics: {interval: 0}\n")
    state = tmp_path / "s.msgpack"
    score(config, [b"m,id=a v=1 1\n"], state)  # a state file, saved at the end
    script = shutil.which("hst-processor")
    assert script is not None
    running = subprocess.Popen(
        [script, "--config", str(config), "--state-file", str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert running.stdin is not None and running.stdout is not None
        running.stdin.write(b"m,id=a v=1 1\n")
        running.stdin.flush()
        running.stdout.readline()  # started, and so holding the lock
        errors = io.StringIO()
        pattern = str(tmp_path / "n-{partition}")
        code = main(["repartition", str(state), "--by", "id", "--partitions", "2", "-o", pattern],
                    stderr=errors)  # fmt: skip
        assert code == 1 and f"stop the processor that uses {state} first" in errors.getvalue()
        assert not (tmp_path / "n-0").exists()
    finally:
        running.stdin.close()  # type: ignore[union-attr]
        running.wait(timeout=30)


@pytest.fixture
def three_files(stream: list[bytes], tmp_path: Path) -> list[Path]:
    """Three agents' state files, after their share of the stream's first 3,000 metrics."""
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    files = [tmp_path / f"s{k}.msgpack" for k in range(3)]
    for k, lines in enumerate(shards(stream[:3_000], 3)):
        score(config, lines, files[k])
    return files


def repartition_command(*args: str) -> tuple[int, str]:
    errors = io.StringIO()
    code = main(["repartition", *args], stderr=errors)
    return code, errors.getvalue()


def test_in_place_an_output_that_cannot_be_written_replaces_no_file(
    three_files: list[Path], tmp_path: Path
) -> None:
    """It replaced the outputs one by one: the first ones overwrote their inputs, and the
    machines of the partition that failed were in no file any more."""
    before = [path.read_bytes() for path in three_files]
    (tmp_path / "s3.msgpack").mkdir()  # in the way of partition 3
    pattern = str(tmp_path / "s{partition}.msgpack")
    files = [str(path) for path in three_files]
    code, errors = repartition_command(*files, "--by", "machineID", "--partitions", "4", "-o",
                                       pattern)  # fmt: skip
    assert code == 1 and f"{tmp_path / 's3.msgpack'}:" in errors and "nothing written" in errors
    assert [path.read_bytes() for path in three_files] == before
    (tmp_path / "s3.msgpack").rmdir()
    code, errors = repartition_command(*files, "--by", "machineID", "--partitions", "4", "-o",
                                       pattern)  # fmt: skip
    assert code == 0, errors
    counts = [len(parse((tmp_path / f"s{k}.msgpack").read_bytes())["series"]) for k in range(4)]
    assert sum(counts) == MACHINES


def test_the_files_to_remove_are_never_the_new_ones_however_they_are_written(
    three_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, errors = repartition_command(
        "./s0.msgpack", str(tmp_path / "s1.msgpack"), "s2.msgpack",
        "--by", "machineID", "--partitions", "2", "-o", "s{partition}.msgpack",
    )  # fmt: skip
    assert code == 0, errors
    (advice,) = [line for line in errors.splitlines() if "remove once" in line]
    assert advice.endswith(": s2.msgpack")  # s0 and s1 are the new partitions 0 and 1


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (None, ["missing.msgpack"], "missing.msgpack: no such file"),
        ("dir", ["adir"], "adir: not a file"),
        (None, ["s0.msgpack", "./s0.msgpack"], "s0.msgpack is given twice"),
    ],
)
def test_bad_inputs_say_what_is_wrong_write_nothing_and_leave_no_lock_behind(
    three_files: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make: str | None,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    if make == "dir":
        (tmp_path / "adir").mkdir()
    locks = set(tmp_path.glob("*.lock"))
    code, errors = repartition_command(
        *args, "--by", "machineID", "--partitions", "2", "-o", "new-{partition}.msgpack"
    )
    assert code == 1 and message in errors, errors
    assert not list(tmp_path.glob("new-*"))
    assert set(tmp_path.glob("*.lock")) == locks


def test_a_missing_output_folder_is_named(three_files: list[Path], tmp_path: Path) -> None:
    code, errors = repartition_command(
        str(three_files[0]), "--by", "machineID", "--partitions", "2",
        "-o", str(tmp_path / "nowhere" / "s{partition}.msgpack"),
    )  # fmt: skip
    assert code == 1 and f"the output folder {tmp_path / 'nowhere'} does not exist" in errors

"""Fuzzing the real command: random byte streams, random signal timing and random state files.

Whatever arrives, the promises hold: one line out per line in, in order, each line either
unchanged or the same line with our tag and fields inserted; exit 0; a state file that loads.
Each example starts the real ``hst-processor``, so the example counts are small and the whole
file stays within about a minute on a 2-core machine.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hst_processor.lineproto import MetricSplitter
from tests.strategies import metric_lines

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(
    max_examples=int(os.environ.get("HST_FUZZ_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# Outputs are compared line for line: no self-metric reports (tests/test_selfmetrics.py).
NO_REPORTS = "\nself_metrics: {interval: 0}\n"
CONFIGS = {
    "defaults": "measurements: [machine_data]\ngroup_by: [machineID]\n" + NO_REPORTS,
    "demo": (ROOT / "hst-processor.yaml").read_text() + NO_REPORTS,
}
START_NS = 1_767_225_600_000_000_000
# Values at and beyond the float limits, and the ones that made derived features overflow.
EXTREME = st.sampled_from(
    ["1e200", "1.7e308", "-1.7e308", "5e-324", "0", "-0", "1e-300", "123456789012345678i"]
)
ORDINARY = st.floats(0, 500, allow_nan=False).map(lambda v: f"{v:.6g}")


def command() -> list[str]:
    script = shutil.which("hst-processor")
    assert script is not None, "install the package: pip install -e '.[test]'"
    return [script]


def machine_line(index: int, machine: str, load: str, power: str) -> bytes:
    return (
        f"machine_data,machineID={machine},provider=Acme load={load},power={power},"
        f"temperature=60,vibration=3 {START_NS + index * 1_000_000_000}"
    ).encode()


def warm_up(count: int = 720) -> list[bytes]:
    """Enough ordinary metrics of two machines that both are past warm-up and scored."""
    return [machine_line(i, f"m{i % 2}", f"{70 + i % 7}", f"{200 + i % 5}") for i in range(count)]


@st.composite
def hostile_lines(draw: st.DrawFn) -> bytes:
    """One line (no newline) of what may come down the pipe."""
    kind = draw(st.sampled_from(["machine", "machine", "metric", "bytes", "open-string"]))
    if kind == "machine":
        index = draw(st.integers(720, 10_000))
        load = draw(st.one_of(ORDINARY, EXTREME))
        power = draw(st.one_of(ORDINARY, EXTREME))
        return machine_line(index, draw(st.sampled_from(["m0", "m1", "m2"])), load, power)
    if kind == "metric":
        return draw(metric_lines()).encode()
    if kind == "open-string":
        return b'machine_data,machineID=m1 note="opens and never closes'
    return draw(st.binary(max_size=80)).replace(b"\n", b" ")


@st.composite
def hostile_parts(draw: st.DrawFn) -> bytes:
    """What follows the warm-up: hostile lines, perhaps the last without its newline."""
    part = b"\n".join(draw(st.lists(hostile_lines(), min_size=1, max_size=40))) + b"\n"
    if draw(st.booleans()):
        part += draw(hostile_lines())
    return part


WARM_UP = b"\n".join(warm_up()) + b"\n"


def strip_ours(line: bytes) -> bytes:
    """A generated machine line as it was before we inserted our tag and fields (the
    generated lines never contain ``anomaly`` themselves)."""
    line = re.sub(rb",anomaly=[a-z]+", b"", line, count=1)
    return re.sub(rb',anomaly_score=[^, ]+|,anomaly_feature="[^"]*"', b"", line)


def machine_metric_lines(stream: bytes) -> set[int]:
    """The line numbers of the stream that belong to a generated machine metric, the only
    metrics we score: a metric whose string field runs past a newline spans several lines,
    and our fields go after its last one; a string that never closes holds the lines after
    it until the end, when they go out one by one (as the README's hold says)."""
    splitter = MetricSplitter()
    chunks = splitter.feed(stream.decode("utf-8", "surrogateescape"))
    while splitter.holds_lines:  # a string never closed: at the end, its lines go one by one
        chunks.append(splitter.release_first_line())
        chunks += splitter.feed("")
    lines: set[int] = set()
    first = 0
    for chunk in chunks:
        count = chunk.count("\n")
        if chunk.startswith("machine_data,machineID=m"):
            lines.update(range(first, first + count))
        first += count
    return lines


def assert_one_for_one(stream: bytes, output: bytes) -> None:
    given_lines, out_lines = stream.split(b"\n"), output.split(b"\n")
    assert len(out_lines) == len(given_lines)
    scored = machine_metric_lines(stream)
    for number, (given_line, out_line) in enumerate(zip(given_lines, out_lines, strict=True)):
        if out_line != given_line:
            assert number in scored, (given_line, out_line)
            assert b"\\" not in given_line and strip_ours(out_line) == given_line


def assert_clean_log(stderr: bytes) -> None:
    unprefixed = [line for line in stderr.splitlines() if not re.match(rb"^[EWID]! ", line)]
    assert unprefixed == [], b"\n".join(unprefixed).decode(errors="replace")


def assert_state_loads(state: Path) -> None:
    inspected = subprocess.run(
        [*command(), "inspect-state", str(state)], capture_output=True, timeout=60
    )
    assert inspected.returncode == 0, inspected.stderr.decode(errors="replace")


def run(config: Path, state: Path, stream: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*command(), "--config", str(config), "--state-file", str(state)],
        input=stream,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(params=sorted(CONFIGS))
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"{request.param}.yaml"
    path.write_text(CONFIGS[request.param])
    return path


@FUZZ
@given(hostile=hostile_parts())
def test_random_streams_come_out_line_for_line(
    config: Path, tmp_path_factory: pytest.TempPathFactory, hostile: bytes
) -> None:
    stream = WARM_UP + hostile
    state = tmp_path_factory.mktemp("state") / "state.msgpack"
    result = run(config, state, stream)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert_one_for_one(stream, result.stdout)
    assert_clean_log(result.stderr)
    assert_state_loads(state)
    # The saved state is one the next start takes up, and it scores on from it.
    again = run(config, state, stream)
    assert again.returncode == 0, again.stderr.decode(errors="replace")
    assert_one_for_one(stream, again.stdout)


@FUZZ
@given(
    hostile=hostile_parts(),
    pause=st.floats(0.0, 0.5),
    signal_number=st.sampled_from([signal.SIGTERM, signal.SIGHUP, signal.SIGINT]),
    split=st.floats(0.0, 1.0),
)
def test_a_signal_at_any_moment_ends_cleanly(
    config: Path,
    tmp_path_factory: pytest.TempPathFactory,
    hostile: bytes,
    pause: float,
    signal_number: int,
    split: float,
) -> None:
    stream = WARM_UP + hostile
    state = tmp_path_factory.mktemp("state") / "state.msgpack"
    process = subprocess.Popen(
        [*command(), "--config", str(config), "--state-file", str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    output, stderr = bytearray(), bytearray()
    started_up = threading.Event()

    def collect_output(pipe: IO[bytes]) -> None:
        for chunk in iter(lambda: pipe.read1(65536), b""):
            output.extend(chunk)

    def collect_log(pipe: IO[bytes]) -> None:
        for line in pipe:
            stderr.extend(line)
            started_up.set()  # the start line: the signal handlers are in place
        started_up.set()

    readers = [
        threading.Thread(target=collect_output, args=(process.stdout,), daemon=True),
        threading.Thread(target=collect_log, args=(process.stderr,), daemon=True),
    ]
    for reader in readers:
        reader.start()
    sent = stream[: int(len(stream) * split)]
    process.stdin.write(sent)
    process.stdin.flush()
    # Before the interpreter runs our first line no program can catch a signal; the start-up
    # itself is tested with a config that blocks (tests/test_execd.py).
    assert started_up.wait(30)
    time.sleep(pause)
    moment = time.monotonic()
    process.send_signal(signal_number)
    process.wait(timeout=30)
    # Telegraf waits 5 s after SIGTERM before it kills: the exit must come well inside that.
    assert time.monotonic() - moment < 5.0
    for reader in readers:
        reader.join(timeout=30)
    process.stdin.close()
    assert process.returncode == 0, stderr.decode(errors="replace")
    # Whatever was answered is a prefix of the answer to what was sent, line for line; a
    # line cut short by the signal goes out as it came (or not at all), never as a metric.
    out_lines, given_lines = bytes(output).split(b"\n"), sent.split(b"\n")
    assert len(out_lines) <= len(given_lines)
    for given_line, out_line in zip(given_lines, out_lines, strict=False):
        if out_line != given_line:
            assert strip_ours(out_line) == given_line, (given_line, out_line)
    assert_clean_log(bytes(stderr))
    if state.exists():  # a signal before the first save leaves none, and that is fine
        assert_state_loads(state)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a snapshot: the keys and indices leading to each node."""
    found = [path]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*path, index))
    return found


def _replaced(value: Any, path: tuple[Any, ...], new: Any, delete: bool) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        if delete and not rest:
            return {k: v for k, v in value.items() if k != head}
        return {**value, head: _replaced(value[head], rest, new, delete)}
    copy = list(value)
    copy[head] = _replaced(copy[head], rest, new, delete)
    return copy


# Every integer msgpack can hold, and no other: a file cannot hold what msgpack cannot write
# (an unbounded draw, 2**64 inside a list, once broke the test itself, not the processor).
MSGPACK_INTEGERS = st.integers(-(2**63), 2**64 - 1)
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    MSGPACK_INTEGERS,
    st.floats(),
    st.binary(max_size=20),
    st.text(max_size=10),
    st.lists(MSGPACK_INTEGERS, max_size=3),
    st.dictionaries(st.text(max_size=5), MSGPACK_INTEGERS, max_size=3),
)


def _mutate(snapshot: Any, data: st.DataObject) -> Any:
    """The snapshot with one node, any node with the same chance, replaced or removed."""
    path = data.draw(st.sampled_from(_paths(snapshot)))
    return _replaced(snapshot, path, data.draw(ANY_VALUE), delete=data.draw(st.booleans()))


@FUZZ
@given(data=st.data())
def test_any_state_file_is_set_aside_or_used_never_a_crash(
    config: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    state = tmp_path_factory.mktemp("state") / "state.msgpack"
    stream = WARM_UP
    first = run(config, state, stream)
    assert first.returncode == 0
    kind = data.draw(st.sampled_from(["mutated", "mutated", "random msgpack", "random bytes"]))
    if kind == "random bytes":
        state.write_bytes(data.draw(st.binary(max_size=2000)))
    elif kind == "random msgpack":
        leaves = st.one_of(
            st.none(), st.integers(-100, 100), st.binary(max_size=8), st.text(max_size=8)
        )
        nested = st.recursive(
            leaves,
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=8), inner, max_size=4)
            ),
            max_leaves=20,
        )
        state.write_bytes(msgpack.packb(data.draw(nested)))
    else:
        saved = msgpack.unpackb(state.read_bytes(), raw=False, strict_map_key=False)
        state.write_bytes(msgpack.packb(_mutate(saved, data)))
    result = run(config, state, stream)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert_one_for_one(stream, result.stdout)
    assert_clean_log(result.stderr)
    assert_state_loads(state)

"""The processor's self-metrics: the report's fields, its timing, and the real command's reports."""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import pytest

from hst_processor import __version__
from hst_processor.config import SelfMetricsConfig, parse_config
from hst_processor.lineproto import parse_metric
from hst_processor.log import Log
from hst_processor.processor import Processor
from hst_processor.selfmetrics import SelfReport, report_fields, resident_bytes
from tests.telegraf_harness import ExecdHarness

COUNTERS = (
    "lines_in", "lines_out", "metrics_in", "scored", "anomalous", "warmup", "unparseable",
    "passed_through", "series", "evicted", "lost", "open_episodes", "alerts_sent", "alerts_retried",
    "alerts_dropped", "alerts_failed", "state_saves", "state_save_failures", "state_save_bytes",
    "rss_bytes",
)  # fmt: skip


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(count: int, series: int = 2) -> str:
    return "".join(f"m,id={i % series} x={i % 7},y={i % 5} {i}\n" for i in range(count))


def test_a_report_is_due_each_interval_and_a_late_one_does_not_bring_the_next_closer() -> None:
    clock = FakeClock()
    report = SelfReport(SelfMetricsConfig(interval=10.0), host="h", clock=clock)
    processor = Processor(parse_config({}), Log(io.StringIO()))
    assert (report.timeout(), report.due()) == (10.0, False)
    clock.now = 110.0
    assert report.due() and report.timeout() == 0.0
    report.take(processor)
    assert (report.due(), report.timeout()) == (False, 10.0)
    clock.now = 145.0  # a long batch: more than two intervals late
    report.take(processor)
    assert (report.due(), report.timeout()) == (False, 10.0)  # one report, then an interval


def test_reports_are_off_at_interval_zero() -> None:
    report = SelfReport(SelfMetricsConfig(interval=0.0), host="h")
    assert (report.enabled, report.timeout(), report.due()) == (False, None, False)


def test_the_fields_count_what_the_processor_did() -> None:
    config = parse_config({"model": {"window_size": 10}, "detection": {"calibration": "landmarks"}})
    processor = Processor(config, Log(io.StringIO()))
    processor.feed(lines(40) + 'bad line\n\n# note\nm,id=0 s="x" 99\n')
    fields = report_fields(processor, [0.001, 0.002, 0.010])
    assert fields["lines_in"] == fields["lines_out"] == 44
    assert fields["metrics_in"] == 41  # neither the unparseable, the blank nor the comment
    assert (fields["unparseable"], fields["series"]) == (1, 2)
    assert fields["scored"] + fields["warmup"] == 40  # m s="x" has none of the fields
    assert fields["scored"] == processor.detector.counters.scored > 0
    assert fields["passed_through"] == 4
    assert fields["anomalous"] == processor.detector.counters.anomalous
    assert fields["open_episodes"] == processor.detector.open_episodes()
    assert fields["batch_p50_ms"] == pytest.approx(2.0)
    assert 2.0 < fields["batch_p99_ms"] <= 10.0
    assert fields["alerts_sent"] == fields["state_saves"] == 0  # neither configured: still there
    assert fields["rss_bytes"] > 10 << 20  # a Python process with numpy loaded
    assert set(COUNTERS) <= set(fields)
    assert all(isinstance(fields[name], int) for name in COUNTERS)


def test_without_batches_a_report_has_no_latency_fields() -> None:
    processor = Processor(parse_config({}), Log(io.StringIO()))
    fields = report_fields(processor, [])
    assert "batch_p50_ms" not in fields and "batch_p99_ms" not in fields


def test_a_report_is_one_line_of_line_protocol_with_host_and_version_tags() -> None:
    config = SelfMetricsConfig(interval=1.0, measurement="hst proc")
    report = SelfReport(config, host="gw,1")
    processor = Processor(parse_config({}), Log(io.StringIO()))
    processor.feed(lines(3))
    text = report.take(processor)
    assert text.endswith("\n") and text.count("\n") == 1
    metric = parse_metric(text[:-1])
    assert metric.measurement == "hst proc"
    assert metric.tags == {"host": "gw,1", "version": __version__}
    assert metric.fields["lines_in"] == 3
    assert abs(metric.timestamp - time.time_ns()) < 60 * 10**9


def test_resident_bytes_is_what_proc_says() -> None:
    with open("/proc/self/statm", "rb") as statm:
        pages = int(statm.read().split()[1])
    expected = pages * os.sysconf("SC_PAGE_SIZE")
    assert abs(resident_bytes() - expected) < 64 << 20


def command(config: Path, *extra: str) -> list[str]:
    script = shutil.which("hst-processor")
    assert script is not None
    return [script, "--config", str(config), *extra]


def wait_for_reports(harness: ExecdHarness, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while len(harness.reports) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(harness.reports) >= count


def test_the_command_reports_between_batches_and_while_idle(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model: {window_size: 10}\nself_metrics: {interval: 0.2}\n")
    state = tmp_path / "state.msgpack"
    harness = ExecdHarness(command(config, "--state-file", str(state))).start()
    sent = lines(30).encode().splitlines()
    for line in sent:
        harness.write_metric(line)
    outputs = harness.drain(30)
    wait_for_reports(harness, len(harness.reports) + 2)  # idle: the reports go on
    result = harness.stop()
    assert (result.exit_code, result.needed) == (0, "")
    # Every metric once, in order; the reports are extra lines, never in a metric's place.
    assert [output.text.split(b" ")[1] for output in outputs] == [
        line.split(b" ")[1] for line in sent
    ]
    reports = [parse_metric(report.text.decode().rstrip("\n")) for report in harness.reports]
    assert {report.measurement for report in reports} == {"hst_processor"}
    assert all(report.tags["version"] == __version__ for report in reports)
    assert all(report.fields["lines_in"] == report.fields["lines_out"] for report in reports)
    counts = [report.fields["lines_in"] for report in reports]
    assert counts == sorted(counts) and counts[-1] == 30  # counters since the start
    assert reports[-1].fields["series"] == 2
    assert "batch_p99_ms" not in reports[-1].fields  # idle since the last report
    assert any("batch_p99_ms" in report.fields for report in reports)
    assert harness.unprefixed_stderr() == []
    summary = [line for line in harness.stderr_lines if b"lines in" in line][-1]
    assert summary.endswith(f"; {len(reports)} self-metric reports besides".encode())


def test_the_command_reports_its_state_saves(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("state: {interval: 0.1}\nself_metrics: {interval: 0.3}\n")
    state = tmp_path / "state.msgpack"
    harness = ExecdHarness(command(config, "--state-file", str(state))).start()
    for line in lines(20).encode().splitlines():
        harness.write_metric(line)
        harness.read_metric()
        time.sleep(0.02)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        wait_for_reports(harness, len(harness.reports) + 1)
        last = parse_metric(harness.reports[-1].text.decode().rstrip("\n"))
        if last.fields["state_saves"]:
            break
    harness.stop()
    assert last.fields["state_saves"] >= 1 and last.fields["state_save_failures"] == 0
    # The size of the snapshot then on disk (the final save at the stop writes the same series).
    assert last.fields["state_save_bytes"] > 1000
    assert 0 <= last.fields["state_save_seconds"] < 60


def test_a_bad_interval_stops_the_command_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("self_metrics: {interval: 0.01}\n")
    stopped = ExecdHarness(command(bad)).start()
    assert stopped.process is not None and stopped.process.wait(timeout=30) == 2
    stopped.join()
    assert any(b"self_metrics.interval" in line for line in stopped.stderr_lines)


def test_a_report_is_never_scored_as_a_series() -> None:
    """With aggregators Telegraf runs two processors, and the second one saw the first one's
    reports (measurements empty: every measurement) as a series to model."""
    processor = Processor(parse_config({}), Log(io.StringIO()))
    report = SelfReport(SelfMetricsConfig(interval=1.0), host="h").take(processor)
    assert processor.feed(report * 3) == report * 3  # passed through, untouched
    assert len(processor.detector.series) == 0


def test_the_counters_tell_a_metric_without_a_feature_field_from_one_still_waiting() -> None:
    processor = Processor(parse_config({}), Log(io.StringIO()))
    processor.feed('s,id=a state="on" 1\n')  # a new series with no number: nothing to model
    processor.feed('m,id=a x=1 1\nm,id=a note="x" 2\n')  # a series, then none of its fields
    counters = processor.detector.counters
    assert (counters.no_fields, counters.not_scored) == (2, 0)

"""The offline commands behind the CLI: ``replay``, ``evaluate`` and ``plot`` (a file in, a report
out)."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from contextlib import ExitStack
from typing import TextIO

from hst_processor.alerts import report_line
from hst_processor.config import Config
from hst_processor.errors import ExitCode, MissingExtra
from hst_processor.log import Log
from hst_processor.offline.labels import FaultLabel
from hst_processor.times import parse_time

__all__ = ["run_evaluate", "run_plot", "run_replay"]


def _open_input(path: str) -> TextIO:
    if path == "-":
        return sys.stdin
    return open(path, encoding="utf-8", errors="surrogateescape", newline="")


def run_replay(config: Config, path: str, output: str | None, log: Log) -> int:
    from hst_processor.offline.replay import progress_bar, replay

    with ExitStack() as stack:
        try:
            source = stack.enter_context(_open_input(path))
            sink = (
                stack.enter_context(open(output, "w", encoding="utf-8", errors="surrogateescape"))
                if output
                else None
            )
        except OSError as error:
            log.error(f"replay: cannot open {error.filename}: {error.strerror}")
            return ExitCode.FAILED
        size = os.fstat(source.fileno()).st_size if path != "-" else 0
        result = replay(
            config, source, sink or sys.stdout, log, progress=progress_bar(size) if size else None
        )
    report = sys.stdout if sink else sys.stderr
    width = max([len(name) for name in result.summaries] + [6])
    print(f"{'series':<{width}}  metrics  warm-up  scored  anomalous  alerts", file=report)
    for name, summary in sorted(result.summaries.items()):
        print(
            f"{name:<{width}}  {summary.metrics:7d}  {summary.warmup:7d}  {summary.scored:6d}"
            f"  {summary.anomalous_share:8.2%}  {summary.alerts:6d}",
            file=report,
        )
    for event in result.openings:
        print(report_line(event), file=report)
    return ExitCode.OK


def run_evaluate(config: Config, args: argparse.Namespace, log: Log) -> int:
    from hst_processor.offline.evaluate import evaluate_file, format_table, suggest_threshold

    loaded = _load("evaluate", args.file, args.labels, log)
    if isinstance(loaded, int):
        return loaded
    labels, text = loaded
    try:
        thresholds = [float(t) for t in args.sweep.split(",")] if args.sweep else []
    except ValueError:
        log.error(f"evaluate: --sweep takes thresholds like 0.4,0.5,0.6, not {args.sweep!r}")
        return ExitCode.USAGE
    try:
        start_ns = parse_time(args.start) if args.start else None
    except ValueError:
        log.error(f"evaluate: --start takes an RFC 3339 time or nanoseconds, not {args.start!r}")
        return ExitCode.USAGE
    if args.skip < 0:
        log.error(f"evaluate: --skip takes a number of metrics, not {args.skip}")
        return ExitCode.USAGE
    results, sweep = evaluate_file(
        text,
        labels,
        config,
        thresholds=thresholds,
        baselines=not args.no_baselines,
        grace=args.grace,
        field_of=config.feature_sources(),
        start_ns=start_ns,
        skip=args.skip,
        log=log,
    )
    if args.json:
        best = suggest_threshold(sweep, args.max_false_alerts)
        document = {
            "file": args.file,
            "labels": args.labels,
            "counted_from": {"start_ns": start_ns, "skip": args.skip},
            "detectors": [result.as_dict() for result in results],
            "sweep": [result.as_dict() for result in sweep],
            "suggested_threshold": best.threshold if best else None,
        }
        print(json.dumps(document, indent=2))
    else:
        print(format_table(results, sweep, args.max_false_alerts))
    return ExitCode.OK


def run_plot(config: Config, args: argparse.Namespace, log: Log) -> int:
    try:
        # plot.py imports matplotlib only when it draws: ask for it here, before the replay.
        import matplotlib.figure  # noqa: F401
    except ImportError as error:
        raise MissingExtra("plot", "matplotlib", "plot") from error
    from hst_processor.offline.evaluate import machine_tag_of
    from hst_processor.offline.plot import build_figure, machines_in
    from hst_processor.offline.replay import replay

    loaded = _load("plot", args.file, args.labels, log)
    if isinstance(loaded, int):
        return loaded
    labels, text = loaded
    result = replay(config, io.StringIO(text), None, Log(io.StringIO()), keep_records=True)
    if not result.records:
        log.error(f"plot: {args.file} has no metric the config scores")
        return ExitCode.FAILED
    machines = args.machines.split(",") if args.machines else []
    present = machines_in(result, machine_tag_of(config))
    if machines and not present.intersection(machines):
        log.error(
            f"plot: --machines {args.machines} matches no machine in {args.file} "
            f"(it has {', '.join(sorted(present))})"
        )
        return ExitCode.USAGE
    figure = build_figure(
        result,
        labels,
        config.features,
        config.detection.threshold,
        machine_tag_of(config),
        machines,
    )
    try:
        figure.savefig(args.output, dpi=110)
    except OSError as error:
        log.error(f"plot: cannot write {args.output}: {error.strerror}")
        return ExitCode.FAILED
    log.info(f"plot: wrote {args.output}")
    return ExitCode.OK


def _load(
    command: str, path: str, labels_path: str | None, log: Log
) -> tuple[list[FaultLabel], str] | int:
    """The labels (none without a path) and the file's text, or the exit code of a failure."""
    from hst_processor.offline.labels import read_labels

    try:
        labels = read_labels(labels_path) if labels_path else []
        with _open_input(path) as source:
            return labels, source.read()
    except OSError as error:
        log.error(f"{command}: cannot read {error.filename}: {error.strerror}")
        return ExitCode.FAILED
    except ValueError as error:
        log.error(f"{command}: {labels_path}: {error}")
        return ExitCode.USAGE

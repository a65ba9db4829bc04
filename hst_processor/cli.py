"""The ``hst-processor`` command: a thin layer over the library.

::

    hst-processor [--config FILE] [--state-file FILE]   score stdin to stdout (Telegraf runs this)
    hst-processor check-config FILE                     validate a config file and exit
    hst-processor inspect-state FILE                    show what a state snapshot holds
    hst-processor forget-series FILE TAG=VALUE...       reset the matching series' models
    hst-processor repartition FILE... --by TAG --partitions M --output PATTERN
                                                        spread state files over M processors
    hst-processor replay FILE [-o OUT]                  score a file offline, summarise per series
    hst-processor evaluate FILE --labels LABELS         detection against ground truth
    hst-processor plot FILE [--labels LABELS] -o PNG    values, scores, faults and alerts

The config file comes from ``--config`` or the ``HST_PROCESSOR_CONFIG`` environment variable;
with neither, the defaults apply. A bad config stops the command at start with the key and the
reason on stderr and exit code 2; :class:`~hst_processor.errors.ExitCode` is the whole table.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from hst_processor import __version__
from hst_processor.errors import ConfigError, ExitCode, MissingExtra
from hst_processor.log import Log
from hst_processor.runtime import tune_garbage_collector
from hst_processor.signals import StopSignals

if TYPE_CHECKING:
    from hst_processor.config import Config

__all__ = ["main"]

CONFIG_ENV = "HST_PROCESSOR_CONFIG"
MAX_PARTITIONS = 1000  # each file is locked while repartition works: two per partition at most


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hst-processor",
        description="Score line-protocol metrics with per-series Half-Space Trees "
        "(a Telegraf processors.execd plugin). Without a command it is the processor itself: "
        "metrics from stdin, scored, to stdout, as Telegraf runs it.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", metavar="FILE", help=f"YAML config (or ${CONFIG_ENV})")
    parser.add_argument(
        "--state-file", metavar="FILE", help="keep the models in this file across restarts"
    )
    # The commands that run on a config take --config after their name too: the same option,
    # and left unset there it keeps what was given before the name.
    with_config = argparse.ArgumentParser(add_help=False)
    with_config.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"YAML config (or ${CONFIG_ENV}); also accepted before the command",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file", metavar="FILE")
    inspect = commands.add_parser("inspect-state", help="show what a state snapshot holds")
    inspect.add_argument("file", metavar="FILE")
    forget = commands.add_parser(
        "forget-series", help="drop the series matching TAG=VALUE from a state file"
    )
    forget.add_argument("file", metavar="FILE")
    forget.add_argument(
        "match", metavar="TAG=VALUE", nargs="+", help="a series matches when it has every one"
    )
    spread = commands.add_parser(
        "repartition",
        help="spread the series of state files over M new ones, by NATS's partition of a tag",
    )
    spread.add_argument("files", metavar="FILE", nargs="+", help="the state files of every agent")
    spread.add_argument("--by", required=True, metavar="TAG", help="the tag NATS partitions by")
    spread.add_argument(
        "--partitions", required=True, type=int, metavar="M", help="how many agents there will be"
    )
    spread.add_argument(
        "--output",
        "-o",
        required=True,
        metavar="PATTERN",
        help="where each new state file goes; {partition} becomes its number (0 to M-1)",
    )
    replay = commands.add_parser(
        "replay",
        parents=[with_config],
        help="score a file of line protocol offline, as the live processor would",
    )
    replay.add_argument("file", metavar="FILE", help="line protocol ('-': stdin)")
    replay.add_argument("-o", "--output", metavar="OUT", help="enriched lines (default stdout)")
    evaluate = commands.add_parser(
        "evaluate",
        parents=[with_config],
        help="measure detection against labelled faults, beside simple baselines",
    )
    evaluate.add_argument("file", metavar="FILE", help="line protocol of a labelled run")
    evaluate.add_argument(
        "--labels",
        required=True,
        help="labelled windows, JSON lines: id, machine, kind, field, start_ns, end_ns, source",
    )
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of tables")
    evaluate.add_argument(
        "--sweep",
        metavar="T1,T2,...",
        help="also evaluate these thresholds (one replay each) and suggest one",
    )
    evaluate.add_argument(
        "--max-false-alerts",
        type=float,
        default=1.0,
        help="false alerts per machine per day allowed for the suggestion (default 1)",
    )
    evaluate.add_argument(
        "--grace", type=float, default=60.0, help="seconds after a fault that still count (60)"
    )
    evaluate.add_argument("--no-baselines", action="store_true", help="HST only")
    evaluate.add_argument(
        "--start",
        metavar="TIME",
        help="count alerts and faults from this time on (RFC 3339 or nanoseconds); the models "
        "still see everything before it",
    )
    evaluate.add_argument(
        "--skip",
        type=int,
        default=0,
        metavar="N",
        help="count only after each machine's first N metrics (a published training part)",
    )
    plot = commands.add_parser(
        "plot",
        parents=[with_config],
        help="draw fields, scores, labelled faults and alerts per machine (matplotlib)",
    )
    plot.add_argument("file", metavar="FILE", help="line protocol")
    plot.add_argument("--labels", help="labelled windows (JSON lines), to shade them")
    plot.add_argument("-o", "--output", required=True, metavar="PNG", help="image to write")
    plot.add_argument("--machines", metavar="M1,M2", help="only these machines")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    stderr: TextIO | None = None,
    stop: StopSignals | None = None,
) -> int:
    """Entry point; returns the exit code (the console script passes it to ``sys.exit``).

    ``stop`` catches the stop signals from the command's first moment (see :func:`console`)."""
    from hst_processor.config import load_config

    args = _parser().parse_args(argv)
    log = Log(stderr or sys.stderr)
    if args.command is not None and args.state_file is not None:
        log.error(f"--state-file: applies only when scoring stdin, not to {args.command}")
        return ExitCode.USAGE
    if stop is not None and args.command is not None:
        stop.restore(deliver=True)  # an offline command stops as any program does
        stop = None
    if args.command == "check-config":
        return _check_config(args.file, log)
    if args.command == "inspect-state":
        return _inspect_state(args.file, log)
    if args.command == "forget-series":
        return _forget_series(args.file, args.match, log)
    if args.command == "repartition":
        return _repartition(args, log)
    config_path = args.config or os.environ.get(CONFIG_ENV) or None
    try:
        config = load_config(config_path)
    except ConfigError as error:
        log.error(f"config error: {error}")
        return ExitCode.USAGE
    log.set_level(config.log.level, config.log.repeat_interval)
    try:
        return _dispatch(args, config, log, stdin_fd, stdout_fd, stop)
    except MissingExtra as error:
        log.error(str(error))
        return ExitCode.USAGE


def _dispatch(
    args: argparse.Namespace,
    config: Config,
    log: Log,
    stdin_fd: int,
    stdout_fd: int,
    stop: StopSignals | None,
) -> int:
    """The commands that run on a config: replay, evaluate, plot, or scoring stdin."""
    if args.command == "replay":
        from hst_processor.offline.commands import run_replay

        return run_replay(config, args.file, args.output, log)
    if args.command == "evaluate":
        from hst_processor.offline.commands import run_evaluate

        return run_evaluate(config, args, log)
    if args.command == "plot":
        from hst_processor.offline.commands import run_plot

        return run_plot(config, args, log)
    return _run(config, log, stdin_fd, stdout_fd, args.state_file or config.state.file, stop)


def _check_config(path: str, log: Log) -> int:
    from hst_processor.config import load_config
    from hst_processor.engine import require_engine

    try:
        config = load_config(path)
        require_engine(config.model.engine)  # what the run would refuse, refused here too
    except (ConfigError, MissingExtra) as error:
        log.error(f"config error: {error}")
        return ExitCode.USAGE
    log.info(f"{path}: OK ({_describe(config)})")
    return ExitCode.OK


def _inspect_state(path: str, log: Log) -> int:
    from hst_processor.state import StateError, describe, parse, read_snapshot

    try:
        document = parse(read_snapshot(Path(path)))
    except OSError as error:
        log.error(f"cannot read {path}: {error.strerror}")
        return ExitCode.FAILED
    except StateError as error:
        log.error(f"{path}: {error}")
        return ExitCode.FAILED
    print(describe(document))
    return ExitCode.OK


def _forget_series(path: str, matches: list[str], log: Log) -> int:
    from hst_processor.state import StateError, StateStore, forget

    pairs = [tuple(match.split("=", 1)) for match in matches]
    if any(len(pair) != 2 for pair in pairs):
        log.error("forget-series: each match must be TAG=VALUE")
        return ExitCode.USAGE
    store = StateStore(path, interval=0, log=log)
    if not store.acquire():
        log.error("forget-series: stop the processor that uses this file first")
        return ExitCode.FAILED
    try:
        removed = forget(store.path, dict(pairs))  # type: ignore[arg-type]
    except (OSError, StateError) as error:
        log.error(f"forget-series: {path}: {error}")
        return ExitCode.FAILED
    finally:
        store.release()  # a caller in the same process may start a processor on it next
    if not removed:
        shown = " ".join(f"{tag}={value}" for tag, value in pairs)
        log.error(f"forget-series: no series in {path} matches {shown}; nothing changed")
        return ExitCode.FAILED
    log.info(f"forgot {removed} series; they start fresh on the next run")
    return ExitCode.OK


def _repartition(args: argparse.Namespace, log: Log) -> int:
    from hst_processor.partition import PARTITION_FIELD, partition_paths

    if not 1 <= args.partitions <= MAX_PARTITIONS:
        log.error(
            f"repartition: --partitions must be from 1 to {MAX_PARTITIONS}, got {args.partitions}"
        )
        return ExitCode.USAGE
    if PARTITION_FIELD not in args.output:
        log.error(f"repartition: --output must hold {PARTITION_FIELD}, got {args.output!r}")
        return ExitCode.USAGE
    outputs = partition_paths(args.output, args.partitions)
    for path in [Path(name) for name in args.files]:
        if not path.is_file():
            log.error(f"repartition: {path}: {'not a file' if path.exists() else 'no such file'}")
            return ExitCode.FAILED
    for folder in dict.fromkeys(path.parent for path in outputs):
        if not folder.is_dir():
            log.error(f"repartition: the output folder {folder} does not exist")
            return ExitCode.FAILED
    code = _repartition_locked([Path(name) for name in args.files], outputs, args, log)
    if code == ExitCode.OK:
        written = {os.path.realpath(path) for path in outputs}
        left = [name for name in args.files if os.path.realpath(name) not in written]
        if left:
            log.info(f"not a partition any more, remove once the new agents run: {' '.join(left)}")
    return code


def _repartition_locked(
    inputs: list[Path], outputs: list[Path], args: argparse.Namespace, log: Log
) -> int:
    """The files locked, as a processor locks its own, while they are read and written: no
    processor may run on any of them (its next save would undo the work)."""
    from hst_processor.partition import PartitionError, repartition_files
    from hst_processor.state import StateStore

    quiet = Log(io.StringIO())  # the store's own words are about a running processor
    locks: list[StateStore] = []
    created: list[Path] = []  # lock files this command made, removed again if it writes nothing
    code = ExitCode.FAILED
    try:
        for real in dict.fromkeys(os.path.realpath(path) for path in [*inputs, *outputs]):
            lock = Path(real + ".lock")
            if not lock.exists():
                created.append(lock)
            store = StateStore(real, interval=0, log=quiet)
            if not store.acquire():
                log.error(f"repartition: stop the processor that uses {real} first")
                return code
            locks.append(store)
        written = repartition_files(inputs, args.by, args.partitions, args.output)
        code = ExitCode.OK
    except PartitionError as error:
        log.error(f"repartition: {error}; nothing written")
        return code
    except OSError as error:
        where = error.filename if isinstance(error.filename, str) else "a state file"
        log.error(f"repartition: {where}: {error.strerror}; nothing written")
        return code
    finally:
        for store in locks:
            store.release()
        if code != ExitCode.OK:
            for lock in created:
                lock.unlink(missing_ok=True)
    for path, count in written:
        log.info(f"{path}: {count} series")
    return code


def _run(
    config: Config,
    log: Log,
    stdin_fd: int,
    stdout_fd: int,
    state_file: str,
    stop: StopSignals | None,
) -> int:
    from hst_processor.detector import Detector
    from hst_processor.engine import engine_persists
    from hst_processor.notify import build_notifier
    from hst_processor.processor import Processor, serve
    from hst_processor.selfmetrics import SelfReport
    from hst_processor.state import StateStore
    from hst_processor.workers import WorkerPool

    state = None
    if state_file and not engine_persists(config.model.engine):
        log.warn(
            f"model.engine: {config.model.engine} cannot keep its models in a state file "
            "(the built-in hst can); not persisting"
        )
    elif state_file:
        state = StateStore(state_file, config.state.interval, log)
    notifier = build_notifier(config.alerts, os.environ, log)
    notify = notifier.enqueue if notifier is not None else None
    detector = (
        WorkerPool(config, log, notify=notify)
        if config.workers > 1
        else Detector(config, log, notify=notify)
    )
    # The I/O of a start: the lock, and the snapshot read into the detector.
    restored = state.start(detector) if state is not None else 0
    processor = Processor(
        config, log, detector=detector, notifier=notifier, state=state, restored=restored
    )
    # A library warning printed as-is would reach Telegraf without a level prefix.
    warnings.showwarning = lambda message, category, *_args, **_kwargs: log.warn_repeated(
        f"python:{category.__name__}", f"{category.__name__}: {message}"
    )
    log.info(f"hst-processor {__version__} started: {_describe(config)}")
    report = SelfReport(config.self_metrics) if config.self_metrics.interval > 0 else None
    return serve(processor, log, stdin_fd=stdin_fd, stdout_fd=stdout_fd, stop=stop, report=report)


def _describe(config: Config) -> str:
    from hst_processor.features import describe_features

    # The context features are squashed into one fixed box: no scaling option applies.
    scaling = (
        "squashed into a fixed box" if config.uses_context else f"{config.scaling.mode} scaling"
    )
    model = config.model
    measurements = ", ".join(config.measurements) or "all measurements"
    group_by = ", ".join(config.group_by) if config.group_by is not None else "all tags"
    return (
        f"scoring {measurements} by {group_by}; {describe_features(config)}; engine {model.engine} "
        f"({model.n_trees} trees, height {model.height}, window {model.window_size}); "
        f"{scaling}; threshold {config.detection.threshold:g}"
        + (f"; {config.workers} scoring workers" if config.workers > 1 else "")
    )


def console() -> None:
    # First of all: a stop signal while the rest is imported and the state restored must not
    # kill the process (Telegraf would count a crash); serve() acts on it once it runs.
    stop = StopSignals()
    tune_garbage_collector()
    try:
        code = main(stop=stop)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left (``| head``): a tool ends quietly, as the processor does. Python
        # would still try to flush stdout at exit and print a traceback: point it at nothing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = ExitCode.OK
    sys.exit(code)

"""The `iis-portscan` command line: one subcommand per job, flags from streams.settings."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace

from streams import __version__
from streams.core.escape import printable
from streams.errors import JobError
from streams.io.sources import SourceOptions
from streams.settings import SECTIONS, ConfigError, Settings

# The settings each command takes as flags: sections of streams.settings.SECTIONS (all their settings)
# or single settings. Every command reads every PORTSCAN_* variable; a new setting reaches the commands
# of its section.
COMMANDS: dict[str, tuple[str, ...]] = {
    "replay": (
        "rule",
        "output",
        "input",
        "files",
        "allowlist",
        "alert_entities",
        "notify_by",
        "suppress_for",
        "notify_cap",
        "tenants",
        "engine",
    ),
    # Every section but the file bounds: a Kafka message is bounded by the broker (max.message.bytes, 1 MB
    # by default) before the worker sees it, and its dead letter keeps a prefix, its length and SHA-256.
    "worker": tuple(s for s in SECTIONS if s != "files"),
    "topics create": ("kafka", "topics", "store", "retention"),
    "produce": ("kafka", "input", "files", "input_topic", "tenant_field", "tenant_default"),
    "alerts": ("kafka", "app_id", "alert_topic"),
    "notifications": ("kafka", "app_id", "notify_topic"),
}


def add_settings(parser: argparse.ArgumentParser, command: str) -> None:
    """The flags of a command's settings, grouped by section in its --help."""
    Settings.add_arguments(parser, Settings.select(COMMANDS[command]))


def replay_engine(engine: str) -> str:
    """The engine `replay --engine` runs on (core.native.choose): its name."""
    from streams.core.native import EngineUnavailable, choose

    try:
        return choose(engine).name
    except EngineUnavailable as exc:
        raise ConfigError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iis-portscan",
        description="Port-scan detection over IIS logs: the Sentinel rule "
        "'High count of connections by client IP on many ports', offline or on Kafka.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    replay = sub.add_parser(
        "replay",
        help="run the rule over files (JSONL/JSON W3CIISLog, envelopes, W3C .log; gzip ok; '-' = stdin)",
        description="Run the rule over files in any event order and print the alerts as JSON lines, "
        "ordered by portCount descending. Bad records are reported on stderr and never stop the run.",
    )
    replay.add_argument("files", nargs="*", metavar="FILE", help="input files, '-' for stdin (default)")
    replay.add_argument("--output", "-o", metavar="FILE", help="write alerts here instead of stdout")
    replay.add_argument(
        "--notify",
        metavar="FILE",
        help="write the notifications (pages and summaries, as the worker's --notify-topic) here",
    )
    replay.add_argument(
        "--sweep",
        action="append",
        metavar="NAME=V1,V2",
        help="back-test: threshold=10,20,30 and/or bin=5m,10m (repeatable); prints a table of windows, "
        "clients and notifications per combination instead of alerts",
    )
    replay.add_argument(
        "--output-dir", metavar="DIR", help="with --sweep: write each combination's alerts to DIR"
    )
    add_settings(replay, "replay")

    sample = sub.add_parser(
        "sample",
        help="write generated, realistic W3CIISLog JSONL (benign traffic plus port scans)",
        description="Deterministic W3CIISLog traffic made by this project: benign requests over many "
        "clients, port scans of 30-2,000 ports (some straddling bin edges), and near misses of 29 ports.",
    )
    sample.add_argument("--events", type=int, default=100_000, help="number of events (default 100000)")
    sample.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    sample.add_argument("--hours", type=float, default=3.0, help="event-time span in hours (default 3)")
    sample.add_argument("--start", metavar="ISO8601", help="first event time (default 2026-01-01T00:00:00Z)")
    sample.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")

    worker = sub.add_parser(
        "worker",
        help="run the stream job: consume W3CIISLog events from Kafka, publish alerts as they happen",
        description="The faust worker. Creates missing topics, restores window state, and publishes early, "
        "final and late alerts keyed by AlertId; bad input goes to the dead-letter topic.",
    )
    add_settings(worker, "worker")

    topics = sub.add_parser("topics", help="manage the job's topics")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = topics_sub.add_parser(
        "create", help="create input, alert (compacted), dead-letter and internal topics"
    )
    add_settings(create, "topics create")

    produce = sub.add_parser(
        "produce", help="send JSONL/JSON or W3C .log files to the input topic, keyed for the worker"
    )
    produce.add_argument("files", nargs="*", metavar="FILE", help="input files, '-' for stdin (default)")
    add_settings(produce, "produce")

    alerts = sub.add_parser("alerts", help="follow the alert topic and print alerts")
    _viewer_arguments(alerts, "alert")
    add_settings(alerts, "alerts")

    notes = sub.add_parser("notifications", help="follow the notify topic (--notify-topic): pages, summaries")
    _viewer_arguments(notes, "record")
    add_settings(notes, "notifications")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `iis-portscan ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except JobError as exc:  # one line naming the cause, never a traceback
        sys.stderr.write(f"iis-portscan: {printable(str(exc))}\n")
        return 2


def _viewer_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """The options of a command that follows a topic (streams.cli.follow)."""
    parser.add_argument("--pretty", action="store_true", help="a readable table instead of JSON lines")
    parser.add_argument(
        "--idle-exit",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=f"stop after this long without a new {what} (default: follow forever)",
    )
    parser.add_argument("--max", type=int, default=0, metavar="N", help=f"stop after N {what}s")


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(args)
    except ConfigError as exc:
        parser.error(str(exc))
    if args.command == "replay":
        from streams.cli.replay import main_replay

        options = replace(SourceOptions.of(settings), engine=replay_engine(settings.engine))
        if args.sweep:
            from streams.cli.sweep import main_sweep

            return main_sweep(args.files, settings, options, args.sweep, args.output_dir)
        return main_replay(args.files, settings, options, args.output, args.notify)
    if args.command == "sample":
        return _sample(args)
    if args.command == "worker":
        from streams.kafka.runner import run_worker

        return run_worker(settings)
    if args.command in ("topics", "produce", "alerts", "notifications"):
        from streams.kafka.diagnosis import reach_kafka

        reach_kafka(settings)  # a clear line, not a hang or a traceback, when the brokers do not answer
    if args.command == "topics":
        from streams.kafka.topics import ensure_topics

        partitions = ensure_topics(settings)
        print(f"topics ready (detector source: {partitions} partitions)")
        return 0
    if args.command == "produce":
        from streams.cli.produce import run_produce

        return run_produce(args.files, settings, SourceOptions.of(settings))
    if args.command == "alerts":
        from streams.cli.alerts import run_follow

        return run_follow(settings, args.pretty, args.idle_exit, args.max)
    if args.command == "notifications":
        from streams.cli.notifications import run_notifications

        if not settings.notify_topic:
            parser.error("notifications: set --notify-topic (or PORTSCAN_NOTIFY_TOPIC)")
        return run_notifications(settings, args.pretty, args.idle_exit, args.max)
    parser.error(f"unknown command {args.command}")
    return 2


def _sample(args: argparse.Namespace) -> int:
    import orjson

    from streams.core.timefmt import parse_iso_ms
    from streams.io.sample import Workload, generate

    start = parse_iso_ms(args.start) if args.start else Workload().start_ms
    if start is None:
        sys.stderr.write(f"sample: --start is not an ISO-8601 time: {args.start}\n")
        return 2
    workload = Workload(
        events=args.events, seed=args.seed, start_ms=start, span_ms=int(args.hours * 3_600_000)
    )
    out = open(args.output, "wb") if args.output else sys.stdout.buffer
    try:
        for record in generate(workload):
            out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
    finally:
        if args.output:
            out.close()
        else:
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

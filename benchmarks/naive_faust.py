"""The naive faust baseline: the documented windowed-table idiom, one read-modify-write per event.

A plain agent keeps the distinct sPort values of each (cIP, Computer, sIP) in a 10-minute tumbling
window of a rocksdb-backed table (event time = the message timestamp), and counts the windows whose
set reaches 30. Prints one JSON line to stdout: events, seconds (first to last event), eps, alerts.

    python -m benchmarks.naive_faust --brokers 127.0.0.1:9092 --topic T --app-id A --data-dir D --events N
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import faust
from confluent_kafka.admin import AdminClient

THRESHOLD = 30
BIN = timedelta(minutes=10)
STOP_GRACE_S = 30.0  # after this long a hung faust shutdown is cut short with os._exit

OUT = sys.stdout  # the JSON line only; faust's banner and logs go to stderr


@dataclass
class Run:
    """What the agent has seen, and the result once there is one."""

    target: int
    processed: int = 0
    alerts: int = 0
    first: float = 0.0
    last: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    result: dict[str, Any] | None = None
    code: int = 1


def partition_count(brokers: str, topic: str) -> int:
    # list all topics: asking for one by name lets a broker with auto.create.topics.enable create it
    meta = AdminClient({"bootstrap.servers": brokers}).list_topics(timeout=30).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise SystemExit(emit({"error": f"topic {topic!r} not found"}, 1))
    return len(meta.partitions)


def emit(result: dict[str, Any], code: int) -> int:
    OUT.write(json.dumps(result) + "\n")
    OUT.flush()
    return code


def build(args: argparse.Namespace, run: Run, partitions: int) -> faust.App:
    """The app as the faust docs write it: windowed table, relative to the stream, per-event agent."""
    started = time.monotonic()
    app = faust.App(
        args.app_id,
        broker=[f"kafka://{b.strip()}" for b in args.brokers.split(",")],
        store="rocksdb://",
        datadir=args.data_dir,
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    topic = app.topic(args.topic, key_type=bytes, key_serializer="raw", value_serializer="json")
    ports = (
        app.Table("ports", default=list, partitions=partitions)
        .tumbling(BIN, expires=timedelta(days=2))
        .relative_to_stream()
    )

    @app.agent(topic, name="count")  # type: ignore[misc]
    async def count(stream: Any) -> None:
        async for event in stream:
            port = event.get("sPort")
            if port is not None:
                key = f"{event['cIP']}|{event['Computer']}|{event['sIP']}"
                seen = set(ports[key].value())
                if port not in seen:
                    seen.add(port)
                    ports[key] = sorted(seen)
                    if len(seen) == THRESHOLD:
                        run.alerts += 1
            run.last = time.monotonic()
            if not run.processed:
                run.first = run.last
            run.processed += 1
            if run.processed == run.target:
                run.done.set()

    @app.task  # type: ignore[misc]
    async def finish() -> None:
        remaining = None if args.timeout is None else max(0.0, args.timeout - (time.monotonic() - started))
        try:
            await asyncio.wait_for(run.done.wait(), remaining)
            seconds = run.last - run.first
            run.result = {
                "events": run.processed,
                "seconds": round(seconds, 3),
                "eps": round(run.processed / seconds, 1) if seconds > 0 else None,
                "alerts": run.alerts,
            }
            run.code = 0
        except TimeoutError:
            run.result = {"error": f"timeout after {args.timeout}s: {run.processed}/{run.target} events"}
        emit(run.result, run.code)
        watchdog = threading.Timer(STOP_GRACE_S, os._exit, (run.code,))  # if the clean stop hangs
        watchdog.daemon = True
        watchdog.start()
        os.kill(os.getpid(), signal.SIGTERM)  # the worker's own shutdown path

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", default="127.0.0.1:9092")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--events", type=int, required=True, help="stop after this many events")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before giving up")
    args = parser.parse_args(argv)
    run = Run(args.events)
    os.makedirs(args.data_dir, exist_ok=True)
    app = build(args, run, partition_count(args.brokers, args.topic))
    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False, stdout=sys.stderr)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass
    if run.result is None:
        return emit({"error": f"worker stopped after {run.processed}/{run.target} events"}, 1)
    return run.code


if __name__ == "__main__":
    sys.exit(main())

"""The changelog's send path alone, per record: what a checkpoint costs the event loop's thread.

    python -m benchmarks.producer [--records N] [--rounds R] [--brokers HOST:PORT]

Sends N changelog-shaped records to one partition of a fresh topic on the real broker and waits for
every acknowledgement, timing the calling thread's CPU (`time.thread_time`: librdkafka's own threads,
which compress and send, are not counted). Rows, each best of R, in one run:

- `AsyncProducer.send_items` + `deliver` with each report path (`reports="python"`: `_on_delivery`
  per record, the reference; `reports="native"`: the extension's DeliveryTally per partition);
- bare `produce` with a C-level `dict.__setitem__` as the callback (the least any callback costs) and
  with no callback at all (the floor: no report is seen, so not a usable path), and librdkafka's
  `produce_batch` with the tally: what is left to gain past the report.

Numbers are printed, nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.kafka.producer import AsyncProducer, native_tally, producer_config

# A one-request window's stored record and key, as the bench's workload writes most of them.
VALUE = (
    b'{"v":2,"n":1,"f":1767268800043,"l":1767268800043,"p":8080,"s":["-","name=J","W3SVC2",'
    b'"Mozilla/5.0 (Windows NT 10.0; Win64; x64)","GET","200.0","See - https://support.microsoft.com/'
    b'help/943891/the-http-status-code-in-iis-7-0-iis-7-5-and-iis-8-0","0x0","The operation completed '
    b'successfully."],"o":[[0,%d]],"r":0,"c":false}'
)


def items(n: int) -> list[tuple[bytes, bytes]]:
    return [
        (b'1767268800000["10.0.%d.%d","web1","10.1.1.1"]' % (i // 256, i % 256), VALUE % i) for i in range(n)
    ]


def timed(fn: Callable[[], Any], rounds: int, n: int) -> float:
    """Best µs of the calling thread's CPU per record over `rounds` calls."""
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        fn()
        best = min(best, time.thread_time() - started)
    return best / n * 1e6


def drain(producer: Producer) -> None:
    while len(producer):
        producer.poll(0.001)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--brokers", default=os.environ.get("PORTSCAN_BROKERS", "127.0.0.1:9092"))
    args = parser.parse_args(argv)
    n, brokers = args.records, args.brokers
    topic = f"bench-producer-{os.getpid()}"
    admin = AdminClient({"bootstrap.servers": brokers})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    records = items(n)
    rows: list[tuple[str, Callable[[], Any]]] = []
    for reports in ("python", "native"):
        if reports == "native" and native_tally() is None:
            print("reports=native: not measured, the native extension is not built")
            continue
        ours = AsyncProducer(brokers, reports=reports)

        def send(ours: AsyncProducer = ours) -> None:
            ours.send_items(topic, 0, records)
            asyncio.run(ours.deliver())

        rows.append((f"send_items + deliver, reports={reports}", send))
    bare = Producer(producer_config(brokers))

    def with_dict() -> None:
        produce, report = bare.produce, {}.__setitem__
        for key, value in records:
            produce(topic, value, key, partition=0, on_delivery=report)
        drain(bare)

    def without_report() -> None:
        produce = bare.produce
        for key, value in records:
            produce(topic, value, key, partition=0)
        drain(bare)

    rows += [
        ("produce + dict.__setitem__ (C-level bound)", with_dict),
        ("produce, no report (floor)", without_report),
    ]
    tally = native_tally()
    if tally is not None:

        def batched() -> None:
            report = tally(lambda err, msg: None)
            messages = [{"key": key, "value": value} for key, value in records]
            for i in range(0, n, 10_000):
                bare.produce_batch(topic, messages[i : i + 10_000], partition=0, on_delivery=report)
                bare.poll(0)
            drain(bare)

        rows.append(("produce_batch + DeliveryTally", batched))
    try:
        print(f"{n:,} records of {len(records[0][1])} bytes to one partition, best of {args.rounds}")
        print(f"{'path':50s} {'µs/record':>10s} {'x reference':>12s}")
        reference = None
        for name, fn in rows:
            us = timed(fn, args.rounds, n)
            reference = reference or us
            print(f"{name:50s} {us:10.2f} {us / reference:12.2f}", flush=True)
    finally:
        admin.delete_topics([topic])


if __name__ == "__main__":
    main()

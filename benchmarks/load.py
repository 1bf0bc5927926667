"""Benchmark input: generated W3CIISLog traffic produced into Kafka, with the answer `replay` gives.

The expected answer is computed in the same pass by the core's OfflineRule (what `replay` runs),
draining windows as event time passes them so that millions of events need little memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from streams.core.alerts import alert_id
from streams.core.offline import OfflineRule
from streams.core.parse import event_from_record
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.core.windows import WindowKey, bin_start, routing_key
from streams.kafka.producer import producer_config

# The Kafka client properties of every client of the bench (--kafka-config-file: TLS, SASL), in
# librdkafka names, as the job's own clients take them (streams.kafka.client_config).
CLIENT: dict[str, str] = {}


def producer(brokers: str, linger_ms: int = 20) -> Producer:
    """The worker's producer configuration: idempotent, lz4, murmur2 (the partitioner faust uses)."""
    return Producer(producer_config(brokers, linger_ms, CLIENT))


@dataclass
class Expected:
    """The rule's alerts over what was produced, by AlertId (replay's answer)."""

    params: RuleParams = field(default_factory=RuleParams)
    alert_ids: set[str] = field(default_factory=set)
    events: int = 0

    def __post_init__(self) -> None:
        self._detector = OfflineRule(self.params)
        self._drained_to = 0

    def add(self, event: IISEvent) -> None:
        self._detector.add(event)
        self.events += 1

    def drain(self, before_ms: int | None = None) -> None:
        """Settle the windows that end at or before `before_ms` (all when None)."""
        p = self.params
        windows = self._detector.windows
        done = [k for k in windows if before_ms is None or k.start_ms + p.bin_ms <= before_ms]
        for key in done:
            agg = windows.pop(key)
            if agg.port_count(p.max_set_size) >= p.threshold:
                self.alert_ids.add(alert_id(key, p.bin_ms))


@dataclass
class Crossing:
    """Finds the event that takes a window to the threshold (latency step)."""

    _ports: dict[WindowKey, set[int]] = field(default_factory=dict)

    def observe(self, event: IISEvent, params: RuleParams) -> str | None:
        """The AlertId of the window this event takes to the threshold, else None."""
        if event.sPort is None:
            return None
        key = WindowKey(bin_start(event.time_ms, params.bin_ms), event.cIP, event.Computer, event.sIP)
        ports = self._ports.setdefault(key, set())
        if event.sPort in ports:
            return None
        ports.add(event.sPort)
        return alert_id(key, params.bin_ms) if len(ports) == params.threshold else None


class Sender:
    """Produces records keyed by (cIP, Computer, sIP), message timestamp = event time."""

    def __init__(self, brokers: str, linger_ms: int = 20) -> None:
        self.producer = producer(brokers, linger_ms)
        self.failures: list[KafkaError] = []
        self.sent = 0

    def _delivered(self, error: KafkaError | None, _msg: Message) -> None:
        if error is not None:
            self.failures.append(error)

    def send(self, topic: str, key: bytes, value: bytes, timestamp_ms: int) -> None:
        while True:
            try:
                self.producer.produce(
                    topic, value=value, key=key, timestamp=timestamp_ms, on_delivery=self._delivered
                )
                break
            except BufferError:
                self.producer.poll(0.05)
        self.sent += 1
        if self.sent % 5_000 == 0:
            self.producer.poll(0)

    def flush(self) -> None:
        remaining = self.producer.flush(120)
        if remaining or self.failures:
            raise RuntimeError(f"{remaining} undelivered, {len(self.failures)} failed: {self.failures[:1]}")


def encoded(records: Iterable[dict[str, Any]]) -> Iterator[tuple[IISEvent, bytes, bytes]]:
    """(event, key, value) for each generated record; the generator only makes valid records."""
    for record in records:
        event = event_from_record(record)
        if not isinstance(event, IISEvent):
            raise ValueError(f"generator made an invalid record: {event}")
        yield event, routing_key(event), orjson.dumps(record)


def fill(
    brokers: str,
    topics: list[tuple[str, int]],
    records: Iterable[dict[str, Any]],
    params: RuleParams,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Expected], float]:
    """Produce `records` to each (topic, limit) (the first `limit` records; 0 = all); returns the
    expected answer per topic and the seconds spent."""
    sender = Sender(brokers)
    expected = [Expected(params) for _ in topics]
    started = time.perf_counter()
    drain_every = 200_000
    for n, (event, key, value) in enumerate(encoded(records), 1):
        for (topic, limit), exp in zip(topics, expected):
            if not limit or n <= limit:
                sender.send(topic, key, value, event.time_ms)
                exp.add(event)
        if n % drain_every == 0:
            for exp in expected:  # generated in event-time order: earlier windows are complete
                exp.drain(event.time_ms - params.bin_ms)
            if progress:
                progress(n)
    sender.flush()
    for exp in expected:
        exp.drain()
    return expected, time.perf_counter() - started

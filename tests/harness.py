"""The in-process pieces tests build the adapter from, without Kafka: fetched records and a producer that
records what it is asked to send (what the publisher and the stores' changelogs need of
streams.kafka.producer.AsyncProducer)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError

from streams.kafka.producer import Refused


@dataclass
class Msg:
    """A fetched record, as aiokafka hands it to the batch handlers."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class RecordingProducer:
    """Records every send; `deliver` acknowledges them with offsets per (topic, partition), as the broker
    would. Values over `too_large` bytes are refused (except on `never_refused`), as librdkafka refuses
    them: `on_refused` hears of each."""

    def __init__(self, too_large: int = 10**9, never_refused: str = "dlq") -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.partitions: list[int | None] = []  # of each send, in order
        self.too_large = too_large
        self.never_refused = never_refused
        self.on_refused: Callable[[Refused], None] = lambda r: None
        self.delivered = 0
        self.acked: dict[tuple[str, int], int] = {}

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None, **_: Any
    ) -> None:
        if topic != self.never_refused and value is not None and len(value) > self.too_large:
            self.on_refused(Refused(topic, key, value, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)))
            return
        self.sent.append((topic, key, value))
        self.partitions.append(partition)

    def send_items(self, topic: str, partition: int, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        for key, value in items:
            self.send(topic, key, value, partition)

    async def deliver(self) -> None:
        for (topic, _, _), partition in zip(self.sent[self.delivered :], self.partitions[self.delivered :]):
            if partition is not None:
                tp = (topic, partition)
                self.acked[tp] = self.acked.get(tp, -1) + 1
        self.delivered = len(self.sent)

    def on(self, topic: str) -> list[dict[str, Any]]:
        """The JSON values sent to `topic`."""
        return [orjson.loads(v) for t, _, v in self.sent if t == topic and v is not None]

    def to_partition(self, topic: str) -> list[tuple[int | None, bytes | None, bytes | None]]:
        """(partition, key, value) of every send to `topic`."""
        return [(p, k, v) for (t, k, v), p in zip(self.sent, self.partitions) if t == topic]

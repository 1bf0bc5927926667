"""The worker's output path: one librdkafka producer for alerts, dead letters, changelog and routing.

Why not faust's producer: it costs tens of microseconds of Python per record (futures, callbacks,
buffers), which made writing one changelog record per changed window the worker's bottleneck.
librdkafka batches and sends in C threads; we only enqueue, then wait for every acknowledgement of
a batch at once (`deliver`), without blocking the event loop. A failed delivery raises: the batch is not
acknowledged, so its input is read again after the restart (at-least-once; alerts carry stable ids
and state records carry positions, so a repeat is harmless).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

Headers = Sequence[tuple[str, bytes]]


class DeliveryError(RuntimeError):
    """Records the broker did not acknowledge."""


def producer_config(brokers: str, linger_ms: int = 5) -> dict[str, Any]:
    return {
        "bootstrap.servers": brokers,
        "enable.idempotence": True,  # acks=all, ordered, no duplicates from retries
        "acks": "all",
        "linger.ms": linger_ms,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "compression.type": "lz4",
        # Java's partitioner (murmur2), as faust, aiokafka and `iis-portscan produce` use.
        "partitioner": "murmur2_random",
    }


class AsyncProducer:
    """Enqueue records without blocking; `deliver()` waits until the broker acknowledged all of them.

    Offsets of acknowledged records are kept per (topic, partition) for the caller (the RocksDB store
    records the changelog offset it has written up to, as faust's table does).
    """

    def __init__(self, brokers: str, linger_ms: int = 5) -> None:
        self._producer = Producer(producer_config(brokers, linger_ms))
        self._errors: list[KafkaError] = []
        self._sent = 0
        self._done = 0
        self.acked: dict[tuple[str, int], int] = {}  # highest acknowledged offset per topic partition

    def _on_delivery(self, error: KafkaError | None, msg: Message) -> None:
        self._done += 1  # reports are served by poll() on the loop's thread only
        if error is not None:
            self._errors.append(error)
            return
        tp = (msg.topic(), msg.partition())
        offset = msg.offset()
        if offset > self.acked.get(tp, -1):
            self.acked[tp] = offset

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Enqueue one record (a None value is a tombstone). Never blocks the event loop for long."""
        kwargs: dict[str, Any] = {"on_delivery": self._on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        while True:
            try:
                self._producer.produce(topic, value, key, **kwargs)
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                self._producer.poll(0.05)
        self._sent += 1

    async def deliver(self, timeout_s: float = 120.0) -> None:
        """Wait until every record sent so far is acknowledged; raise DeliveryError if any failed.

        Delivery reports are served on the event loop's thread by non-blocking polls: serving them from
        another thread made each report wait for the GIL behind the loop and the consumer thread."""
        target = self._sent
        poll = self._producer.poll
        deadline = time.monotonic() + timeout_s
        pause = 0.0005
        while self._done < target:
            poll(0)
            if self._done >= target:
                break
            if time.monotonic() > deadline:
                raise DeliveryError(f"{target - self._done} records not acknowledged within {timeout_s}s")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.01)
        if self._errors:
            errors, self._errors = self._errors, []
            raise DeliveryError(f"{len(errors)} records failed: {errors[0]}")

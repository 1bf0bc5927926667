"""The worker's output path: one librdkafka producer for alerts, dead letters, changelog and routing.

Why not faust's producer: it costs tens of microseconds of Python per record (futures, callbacks,
buffers), which made writing one changelog record per changed window the worker's bottleneck.
librdkafka batches and sends in C threads; we only enqueue, then wait for every acknowledgement of
a batch at once (`deliver`), without blocking the event loop. A failed delivery raises: the batch is not
acknowledged, so its input is read again after the restart (at-least-once; alerts carry stable ids
and state records carry positions, so a repeat is harmless).

Delivery reports. librdkafka reports each record once, served by `poll` on the loop's thread. The
changelog's records (most of what the worker sends: one per changed window per checkpoint) are reported
to a C-level callable per topic partition when the native extension is there (`streams._native.
DeliveryTally`: counts successes, keeps their highest offset, hands every failure to `_on_delivery`), so
no Python function runs per delivered record; errors take the same path either way. Without the
extension (or `reports="python"`) every record's report is `_on_delivery`, the reference.

Except for records the broker will never take, whatever the retries (too large, invalid): replaying
their input would make the same record and fail again, a crash loop that the client being detected
could cause at will. Those are refused, not raised: each goes to `on_refused` (the worker turns it into
a dead letter), and the rest of the batch is delivered as usual.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streams.errors import JobError

Headers = Sequence[tuple[str, bytes]]
# Errors that no retry or restart can cure: the record itself is refused.
PERMANENT = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
    }
)


@dataclass(frozen=True, slots=True)
class Refused:
    """A record the broker (or the client, before sending it) refused for good, and why."""

    topic: str
    key: bytes | None
    value: bytes | None
    error: KafkaError


def _ignore(refused: Refused) -> None:
    return None


class DeliveryError(JobError):
    """Records the broker did not acknowledge (in time)."""

    retriable = True


def producer_config(
    brokers: str, linger_ms: int = 5, client: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Our producers' configuration; `client`: the job's Kafka client properties (TLS, SASL)."""
    return {
        **(client or {}),
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


def native_tally() -> Callable[[Callable[[KafkaError | None, Message], None]], Tally] | None:
    """The native extension's delivery-report counter (DeliveryTally), or None when it is not built."""
    try:
        from streams._native import DeliveryTally
    except ImportError:
        return None
    return DeliveryTally


class Tally(Protocol):
    """A delivery-report callable of one topic partition (see the module docstring)."""

    delivered: int  # successes counted
    offset: int  # the highest delivered offset, -1 before any

    def __call__(self, err: KafkaError | None, msg: Message) -> None: ...


class AsyncProducer:
    """Enqueue records without blocking; `deliver()` waits until the broker acknowledged all of them.

    Offsets of acknowledged records are kept per (topic, partition) for the caller (the RocksDB store
    records the changelog offset it has written up to, as faust's table does): complete once `deliver`
    returned. `reports`: how `send_items` records are reported, "native" (a DeliveryTally per topic
    partition, when the extension is built) or "python" (`_on_delivery` per record).
    """

    def __init__(
        self,
        brokers: str,
        linger_ms: int = 5,
        on_refused: Callable[[Refused], None] = _ignore,
        client: Mapping[str, str] | None = None,
        reports: str = "native",
    ) -> None:
        if reports not in ("native", "python"):
            raise ValueError(f"reports must be native or python, got {reports!r}")
        self._producer = Producer(producer_config(brokers, linger_ms, client))
        self._make_tally = native_tally() if reports == "native" else None
        self._tallies: dict[tuple[str, int], Tally] = {}
        self._errors: list[KafkaError] = []
        self._sent = 0
        self._done = 0
        self.acked: dict[tuple[str, int], int] = {}  # highest acknowledged offset per topic partition
        self.on_refused = on_refused  # may send (a dead letter) itself
        self.refused = 0
        self._abort_at: float | None = None

    def abort(self, grace_s: float = 5.0) -> None:
        """The worker is stopping: `deliver` waits at most `grace_s` more for the broker."""
        self._abort_at = time.monotonic() + grace_s

    def _refuse(self, refused: Refused) -> None:
        self.refused += 1
        self.on_refused(refused)

    def _on_delivery(self, error: KafkaError | None, msg: Message) -> None:
        self._done += 1  # reports are served by poll() on the loop's thread only
        if error is not None:
            if error.code() in PERMANENT:
                self._refuse(Refused(msg.topic() or "", msg.key(), msg.value(), error))
            else:
                self._errors.append(error)
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        if topic is None or partition is None or offset is None:  # a delivered message has all three
            return
        tp = (topic, partition)
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
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() not in PERMANENT:
                    raise
                self._refuse(Refused(topic, key, value, error))
                return
        self._sent += 1

    def send_items(self, topic: str, partition: int, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        """`send` of each (key, value) to one partition, in order: the changelog's path, one record per
        changed window per checkpoint, with the per-record work bound once rather than per call of
        `send`. A full local queue or a refusal takes `send` for that record."""
        produce = self._producer.produce
        report: Callable[[KafkaError | None, Message], None] = self._on_delivery
        if self._make_tally is not None:
            tally = self._tallies.get((topic, partition))
            if tally is None:
                tally = self._tallies[(topic, partition)] = self._make_tally(self._on_delivery)
            report = tally
        sent = 0
        for key, value in items:
            try:
                produce(topic, value, key, partition=partition, on_delivery=report)
            except (BufferError, KafkaException):
                self._sent += sent  # before `send` serves reports (and maybe sends dead letters)
                sent = 0
                self.send(topic, key, value, partition)
                continue
            sent += 1
        self._sent += sent

    async def deliver(self, timeout_s: float = 120.0) -> None:
        """Wait until every record sent so far is acknowledged; raise DeliveryError if any failed.

        Delivery reports are served on the event loop's thread by non-blocking polls: serving them from
        another thread made each report wait for the GIL behind the loop and the consumer thread."""
        poll = self._producer.poll
        deadline = time.monotonic() + timeout_s
        pause = 0.0005
        while self._count() < self._sent:  # a refusal served by poll may send (a dead letter): count it too
            poll(0)
            if self._count() >= self._sent:
                break
            now = time.monotonic()
            if now > deadline or (self._abort_at is not None and now > self._abort_at):
                raise DeliveryError(
                    f"{self._sent - self._count()} records not acknowledged by the broker "
                    f"{'before the worker stopped' if now <= deadline else f'within {timeout_s:.0f}s'}"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.01)
        acked = self.acked
        for tp, tally in self._tallies.items():
            if tally.offset > acked.get(tp, -1):
                acked[tp] = tally.offset
        if self._errors:
            errors, self._errors = self._errors, []
            raise DeliveryError(f"{len(errors)} records failed: {errors[0]}")

    def _count(self) -> int:
        """Records reported so far: by `_on_delivery`, and the successes the tallies counted."""
        return self._done + sum(tally.delivered for tally in self._tallies.values())

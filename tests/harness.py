"""The in-process kit the tests build the adapter from, without Kafka.

- `Msg`: a fetched record; `RecordingProducer`: records every send (what the publisher and the stores'
  changelogs need of streams.kafka.producer.AsyncProducer); `Monotonic`: a clock that moves when told.
- `make_detector`: a Detector over a store with a recording producer, the acknowledgements in a list.
- `EngineSim`: one PartitionEngine over a dict, doing what the detector does around it (load, write,
  spill, close spilled bins), for the core's tests.
- `InProcessWorker`: the router, the decoder, the detector and the publisher together, as `create_app`
  wires them: a `LoopbackProducer` hands what the router sends to the repartition topic back to the
  detector as fetches, with the headers the router wrote.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError
from faust.types import TP

from streams.core.engine import PartitionEngine, StreamParams
from streams.core.records import IISEvent, Reason
from streams.core.rule import RuleParams
from streams.core.shippers import MessageReader
from streams.core.state_records import Meta, encode_writes
from streams.core.windows import META_KEY, key_start_ms
from streams.kafka.detector import Detector
from streams.kafka.messages import MessageDecoder
from streams.kafka.metrics import Metrics
from streams.kafka.producer import Refused
from streams.kafka.publisher import Publisher
from streams.kafka.router import Router
from streams.state.base import WindowStore
from streams.state.memory import MemoryStore

T0 = 1_767_268_800_000  # 2026-01-01T12:00:00Z
NOW = T0 + 3_600_000  # the wall clock of every in-process component unless a test moves it


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
        self.headers: list[list[tuple[str, bytes]]] = []  # of each send, in order
        self.delivered = 0
        self.acked: dict[tuple[str, int], int] = {}

    def send(self, topic: str, key: bytes | None, value: bytes | None, *args: Any, **kw: Any) -> None:
        """AsyncProducer.send: (topic, key, value, partition=None, headers=None)."""
        partition = args[0] if args else kw.get("partition")
        headers = args[1] if len(args) > 1 else kw.get("headers")
        if topic != self.never_refused and value is not None and len(value) > self.too_large:
            self.on_refused(Refused(topic, key, value, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)))
            return
        partition = self.partition_of(topic, key, partition)
        self.sent.append((topic, key, value))
        self.partitions.append(partition)
        self.headers.append(list(headers or ()))
        self.recorded(topic, key, value, partition)

    def partition_of(self, topic: str, key: bytes | None, partition: int | None) -> int | None:
        """The partition a send lands in: the one asked for (None: the broker's choice, not modelled)."""
        return partition

    def recorded(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None) -> None:
        """Called after each recorded send."""

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


class Monotonic:
    """A monotonic clock (seconds) that moves only when a test says."""

    def __init__(self, start: float = 10_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_detector(
    trust_headers: bool,
    too_large: int = 10**9,
    rule: RuleParams | None = None,
    store: WindowStore | None = None,
    checkpoint_ms: int = 1,
    max_open_windows: int = 0,
    producer: RecordingProducer | None = None,
    reader: MessageReader | None = None,
) -> tuple[Detector, RecordingProducer, list[dict[Any, int]]]:
    """A Detector over `store` (a fresh MemoryStore) publishing to topics "alerts" and "dlq" through a
    recording producer; its wall clock stands at NOW, its monotonic clock is a `Monotonic`; the
    acknowledgements it makes are appended to the returned list."""
    producer = producer or RecordingProducer(too_large)
    acks: list[dict[Any, int]] = []
    params = StreamParams(rule=rule or RuleParams(), max_skew_ms=10**12)
    detector = Detector(
        params,
        store or MemoryStore(),
        Publisher(producer, "alerts", "dlq"),  # type: ignore[arg-type]
        acks.append,
        checkpoint_ms=checkpoint_ms,
        clock=lambda: NOW,
        monotonic=Monotonic(),
        trust_headers=trust_headers,
        max_open_windows=max_open_windows,
        reader=reader,
    )
    return detector, producer, acks


def later(detector: Detector, seconds: float) -> None:
    """Time passes on the detector's monotonic clock (make_detector gives it a Monotonic)."""
    clock = detector.monotonic
    assert isinstance(clock, Monotonic)
    clock.advance(seconds)


class EngineSim:
    """One partition's engine over a dict store, doing what the detector does around it: load what the
    plan asks for, step, close spilled bins from the store, write the step's records, spill past
    `max_open`. `crash` drops the engine and restores one from the store."""

    def __init__(self, params: StreamParams, max_open: int | None = None, now: int = NOW) -> None:
        self.params = params
        self.max_open = max_open
        self.now = now
        self.store: dict[bytes, bytes] = {}
        self.published: list[dict[str, Any]] = []
        self.rejected: list[tuple[int, Reason]] = []
        self.loads: list[bytes] = []  # every key a plan asked for
        self.engine = self._engine()

    def _engine(self) -> PartitionEngine:
        engine = PartitionEngine(self.params, Meta.from_bytes(self.store.get(META_KEY)), self.now)
        engine.restore(sorted(self.store.items()), self.max_open)
        return engine

    def feed(self, batch: list[tuple[int, IISEvent]], now: int | None = None, write: bool = True) -> None:
        plan = self.engine.plan(batch)
        self.loads.extend(plan.load)
        out = self.engine.step(
            plan, {k: self.store.get(k) for k in plan.load}, self.now if now is None else now
        )
        self._close_spilled(out)
        self.published.extend(out.alerts)
        self.rejected.extend((batch[i][0], e.reason) for i, e in out.rejected)
        if write:
            self._write(encode_writes(out.writes), out.expire_before_ms)
            self._spill()

    def tick(self, now: int) -> None:
        out = self.engine.tick(now)
        self._close_spilled(out)
        self.published.extend(out.alerts)
        self._write(encode_writes(out.writes), out.expire_before_ms)

    def _close_spilled(self, out: Any) -> None:
        """What the detector does (without pending writes: every spill is written at once here)."""
        for start, closed in out.closing.items():
            records = [
                (k, v) for k, v in sorted(self.store.items()) if k != META_KEY and key_start_ms(k) == start
            ]
            self.engine.close_spilled(out, [(k, v) for k, v in records if k not in closed])
        out.closing = {}

    def _spill(self) -> None:
        excess = self.engine.open_count() - (self.max_open if self.max_open is not None else 10**9)
        if excess > 0:
            self._write(encode_writes(self.engine.spill(excess).writes), None)

    def _write(self, writes: dict[bytes, bytes], expire_before: int | None) -> None:
        self.store.update(writes)
        if expire_before is not None:
            for k in [k for k in self.store if k != META_KEY and key_start_ms(k) < expire_before]:
                del self.store[k]

    def crash(self) -> None:
        self.engine = self._engine()

    def latest(self) -> dict[str, dict[str, Any]]:
        """The last revision of every alert published."""
        out: dict[str, dict[str, Any]] = {}
        for a in self.published:
            cur = out.get(a["AlertId"])
            if cur is None or a["Revision"] >= cur["Revision"]:
                out[a["AlertId"]] = a
        return out


class LoopbackProducer(RecordingProducer):
    """A RecordingProducer that is also the repartition topic: records sent to `loop_topic` without a
    partition land in one of `partitions` by their key (one key, one partition, as Kafka's partitioner
    does), with the next offset of that partition; `take` hands them out as a fetch."""

    def __init__(self, loop_topic: str, partitions: int, too_large: int = 10**9) -> None:
        super().__init__(too_large)
        self.loop_topic = loop_topic
        self.loop_partitions = partitions
        self.next_offset: Counter[int] = Counter()
        self.looped: dict[TP, list[Msg]] = {}

    def partition_of(self, topic: str, key: bytes | None, partition: int | None) -> int | None:
        if topic == self.loop_topic and partition is None:
            return zlib.crc32(key or b"") % self.loop_partitions
        return partition

    def recorded(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None) -> None:
        if topic == self.loop_topic and partition is not None:
            offset = self.next_offset[partition]
            self.next_offset[partition] += 1
            msg = Msg(topic, partition, offset, key, value, self.headers[-1])
            self.looped.setdefault(TP(topic, partition), []).append(msg)

    def take(self) -> dict[TP, list[Msg]]:
        """What reached the repartition topic since the last take, per partition: the next fetch."""
        fetch, self.looped = self.looped, {}
        return fetch


class InProcessWorker:
    """Router + decoder + detector + publisher as `create_app` wires them without `--input-keyed`,
    over a memory store, with no Kafka: `feed` routes messages of an input partition, then hands the
    repartition topic's new records to the detector as one fetch (headers and all). Alerts and dead
    letters are on `producer` ("alerts", "dlq"); acknowledged detector input on `acks`."""

    INPUT = "w3ciislog"
    BY_KEY = "app-w3ciislog-by-key"

    def __init__(
        self,
        params: StreamParams | None = None,
        partitions: int = 4,
        reader: MessageReader | None = None,
        store: WindowStore | None = None,
        checkpoint_ms: int = 1,
    ) -> None:
        self.producer = LoopbackProducer(self.BY_KEY, partitions)
        self.metrics = Metrics()
        self.publisher = Publisher(self.producer, "alerts", "dlq", self.metrics)  # type: ignore[arg-type]
        self.acks: list[dict[Any, int]] = []
        self.store = store or MemoryStore()
        self.detector = Detector(
            params or StreamParams(max_skew_ms=10**12),
            self.store,
            self.publisher,
            self.acks.append,
            checkpoint_ms=checkpoint_ms,
            clock=lambda: NOW,
            monotonic=Monotonic(),
            metrics=self.metrics,
            trust_headers=True,  # the app's own repartition topic
            reader=reader,
        )
        self.router = Router(
            MessageDecoder(reader), self.publisher, self.metrics, self.BY_KEY, clock=lambda: NOW
        )
        self.input_offsets: Counter[int] = Counter()

    def input(
        self, values: Iterable[bytes | None], partition: int = 0, key: bytes | None = None
    ) -> list[Msg]:
        """Messages of an input partition, with its next offsets."""
        msgs = []
        for value in values:
            msgs.append(Msg(self.INPUT, partition, self.input_offsets[partition], key, value))
            self.input_offsets[partition] += 1
        return msgs

    async def feed(self, values: Iterable[bytes | None], partition: int = 0) -> None:
        """Route one fetch of an input partition, then detect on what it sent to the repartition topic."""
        await self.route(self.input(values, partition))
        await self.detect()

    async def route(self, msgs: list[Msg]) -> None:
        if msgs:
            await self.router.route({TP(self.INPUT, msgs[0].partition): msgs})

    async def detect(self) -> None:
        fetch = self.producer.take()
        if fetch:
            await self.detector.process(fetch)

    async def close(self) -> None:
        await self.detector.close()

    def alerts(self) -> list[dict[str, Any]]:
        return self.producer.on("alerts")

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.producer.on("dlq")

"""The adapter between faust and the core: batches in, alerts and dead letters out, state written.

Order of effects per batch and partition (what makes a crash harmless, see core.engine):
1. parse; 2. load the windows the engine asks for; 3. engine step; 4. publish alerts and dead
letters and wait for the broker to acknowledge them; 5. write the state; then faust acks the
events and commits their offsets later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from streams.core.deadletter import dead_letter, dead_letter_key
from streams.core.engine import META_KEY, Meta, PartitionEngine, StepResult, StreamParams, position
from streams.core.parse import decode_records, event_from_record
from streams.core.records import IISEvent, ParseError
from streams.state.base import WindowStore

log = logging.getLogger("iis-portscan")

# Headers the router puts on forwarded records, so dead letters name the original input.
H_TOPIC, H_PARTITION, H_OFFSET, H_INDEX = "src-topic", "src-partition", "src-offset", "src-index"
SEQ_SHIFT = 20  # sequence = offset << 20 | record index: envelopes of up to 1M records keep their order


def routing_key(ev: IISEvent) -> bytes:
    """Message key for the detector's input: one (cIP, Computer, sIP) is one partition."""
    return f"{ev.cIP}|{ev.Computer}|{ev.sIP}".encode()


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Metrics:
    """Counters; logged periodically and served as Prometheus text when the web server is on."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.dead: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()

    def prometheus(self, gauges: dict[str, float]) -> str:
        lines = [f"iis_portscan_{name}_total {value}" for name, value in sorted(self.counts.items())]
        lines += [
            f'iis_portscan_dead_letters_total{{reason="{r}"}} {n}' for r, n in sorted(self.dead.items())
        ]
        lines += [f'iis_portscan_alerts_total{{phase="{p}"}} {n}' for p, n in sorted(self.alerts.items())]
        lines += [f"iis_portscan_{name} {value}" for name, value in sorted(gauges.items())]
        return "\n".join(lines) + "\n"


class Publisher:
    """Sends records and waits for the broker's acknowledgement (faust topics underneath)."""

    def __init__(self, alert_topic: Any, dlq_topic: Any) -> None:
        self.alert_topic = alert_topic
        self.dlq_topic = dlq_topic

    async def publish(
        self, alerts: Sequence[dict[str, Any]], dead: Sequence[tuple[bytes, dict[str, Any]]]
    ) -> None:
        futures = []
        for alert in alerts:
            futures.append(
                await self.alert_topic.send(key=alert["AlertId"].encode(), value=orjson.dumps(alert))
            )
        for key, record in dead:
            futures.append(await self.dlq_topic.send(key=key, value=orjson.dumps(record)))
        if futures:
            await asyncio.gather(*futures)


class Processor:
    """Per-partition engines over one store; all mutation happens under one lock."""

    def __init__(
        self,
        params: StreamParams,
        store: WindowStore,
        publisher: Publisher,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.params = params
        self.store = store
        self.publisher = publisher
        self.clock = clock
        self.engines: dict[int, PartitionEngine] = {}
        self.lock = asyncio.Lock()
        self.metrics = Metrics()

    async def engine(self, partition: int) -> PartitionEngine:
        """The partition's engine, restored from the store the first time (after faust's recovery)."""
        engine = self.engines.get(partition)
        if engine is None:
            records = await self.store.load_partition(partition)
            meta = Meta.from_bytes(dict(records).get(META_KEY))
            engine = PartitionEngine(self.params, meta, self.clock())
            engine.restore(records)
            self.engines[partition] = engine
            log.info(
                "partition %d: restored %d open windows, watermark %s",
                partition,
                engine.open_count(),
                meta.watermark,
            )
        return engine

    async def drop(self, partitions: Iterable[int]) -> None:
        """Forget engines of partitions this worker no longer owns (their state stays in the store)."""
        async with self.lock:
            for p in partitions:
                if self.engines.pop(p, None) is not None:
                    log.info("partition %d: revoked", p)

    # ------------------------------------------------------------------ batches

    async def process(self, messages: Sequence[Any]) -> None:
        """A batch of faust Events (or anything with a `.message`) from the detector's source topic."""
        async with self.lock:
            by_partition: dict[int, list[Any]] = {}
            for event in messages:
                msg = event.message
                by_partition.setdefault(msg.partition, []).append(msg)
            for partition, msgs in by_partition.items():
                await self._process_partition(partition, msgs)

    async def _process_partition(self, partition: int, msgs: list[Any]) -> None:
        now = self.clock()
        engine = await self.engine(partition)
        batch: list[tuple[int, IISEvent]] = []
        origin: list[tuple[Any, int | None]] = []
        dead: list[tuple[bytes, dict[str, Any]]] = []
        for msg in msgs:
            src, base = self._source(msg, partition)
            for index, record in decode_records(msg.value):
                result = record if isinstance(record, ParseError) else event_from_record(record)
                if isinstance(result, ParseError):
                    dead.append(self._dead(result, msg, index, now))
                    continue
                batch.append((position(src, base | (index or 0)), result))
                origin.append((msg, index))
        self.metrics.counts["messages"] += len(msgs)
        self.metrics.counts["events"] += len(batch)
        keys = engine.keys_to_load(batch)
        loaded = await self.store.get_many(partition, keys) if keys else {}
        out = engine.step(batch, loaded, now)
        for i, error in out.rejected:
            msg, index = origin[i]
            dead.append(self._dead(error, msg, index, now))
        await self._finish(partition, out, dead)
        # A partition is idle when no input arrives, not while we are busy (or waiting for Redis).
        engine.last_input_wall_ms = self.clock()

    async def tick(self, partitions: Iterable[int]) -> None:
        """Idle housekeeping for the partitions this worker owns (timer, every second)."""
        async with self.lock:
            now = self.clock()
            for partition in partitions:
                engine = await self.engine(partition)
                out = engine.tick(now)
                if out.alerts or out.writes or out.expire_before_ms is not None:
                    await self._finish(partition, out, [])

    async def _finish(
        self, partition: int, out: StepResult, dead: list[tuple[bytes, dict[str, Any]]]
    ) -> None:
        for alert in out.alerts:
            self.metrics.alerts[alert["Phase"]] += 1
            log.info(
                "alert %s rev %d %s: %s -> %s/%s %d ports (%d distinct) in %s",
                alert["Phase"],
                alert["Revision"],
                alert["AlertId"],
                alert["cIP"],
                alert["Computer"],
                alert["sIP"],
                alert["portCount"],
                alert["DistinctPortCount"],
                alert["TimeGenerated"],
            )
        for _, record in dead:
            self.metrics.dead[record["Reason"]] += 1
        await self.publisher.publish(out.alerts, dead)
        if out.writes:
            await self.store.write(partition, out.writes)
        if out.expire_before_ms is not None:
            gone = await self.store.expire(partition, out.expire_before_ms)
            self.metrics.counts["windows_expired"] += gone

    @staticmethod
    def _source(msg: Any, partition: int) -> tuple[int, int]:
        """(source partition, sequence base) of a message: the original input position when the
        router forwarded it (so a record forwarded twice after a crash is applied once)."""
        if msg.headers:
            headers = dict(msg.headers)
            if H_PARTITION in headers:
                raw_index = headers.get(H_INDEX) or b"0"
                return int(headers[H_PARTITION]), (int(headers[H_OFFSET]) << SEQ_SHIFT) | int(raw_index)
        return partition, msg.offset << SEQ_SHIFT

    @staticmethod
    def _dead(error: ParseError, msg: Any, index: int | None, now: int) -> tuple[bytes, dict[str, Any]]:
        headers = dict(msg.headers or ())
        if H_TOPIC in headers:  # forwarded by the router: name the original input
            topic = headers[H_TOPIC].decode()
            partition = int(headers[H_PARTITION])
            offset = int(headers[H_OFFSET])
            raw_index = headers.get(H_INDEX)
            index = int(raw_index) if raw_index else None
        else:
            topic, partition, offset = msg.topic, msg.partition, msg.offset
        record = dead_letter(error, msg.value, msg.key, topic, partition, offset, index, now)
        return dead_letter_key(topic, partition, offset, index), record

    # ------------------------------------------------------------------ routing

    async def route(self, messages: Sequence[Any], by_key_topic: Any) -> None:
        """Repartition: forward each valid record keyed by (cIP, Computer, sIP); dead-letter the rest."""
        now = self.clock()
        dead: list[tuple[bytes, dict[str, Any]]] = []
        futures = []
        for event in messages:
            msg = event.message
            for index, record in decode_records(msg.value):
                result = record if isinstance(record, ParseError) else event_from_record(record)
                if isinstance(result, ParseError):
                    dead.append(self._dead(result, msg, index, now))
                    continue
                value = msg.value if index is None else orjson.dumps(record)
                headers = {
                    H_TOPIC: msg.topic.encode(),
                    H_PARTITION: str(msg.partition).encode(),
                    H_OFFSET: str(msg.offset).encode(),
                    H_INDEX: b"" if index is None else str(index).encode(),
                }
                futures.append(await by_key_topic.send(key=routing_key(result), value=value, headers=headers))
        self.metrics.counts["routed"] += len(futures)
        for _, record in dead:
            self.metrics.dead[record["Reason"]] += 1
        await self.publisher.publish((), dead)
        if futures:
            await asyncio.gather(*futures)

    def gauges(self) -> dict[str, float]:
        return {
            "open_windows": sum(e.open_count() for e in self.engines.values()),
            "partitions": len(self.engines),
        }

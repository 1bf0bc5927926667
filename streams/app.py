"""The faust application, built by a factory from one Settings object.

Topology: when the input is keyed by (cIP, Computer, sIP) (`--input-keyed`), the detector agent
consumes it directly; otherwise a router agent re-keys each record into an internal topic first, so
that all events of a window meet in one partition. Whole fetches go to the processor (streams.batching),
which writes state and acknowledges input once per checkpoint (streams.processor).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP
from faust.web import Request, Response, View

from streams.batching import App as BatchingApp
from streams.delivery import AsyncProducer
from streams.processor import Metrics, Processor, Publisher
from streams.settings import Settings
from streams.state.base import WindowStore
from streams.state.memory import MemoryStore
from streams.topics import repartition_topic

log = logging.getLogger("iis-portscan")
RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


@dataclass
class Job:
    """What the factory built: the app and the pieces tests and the CLI reach for."""

    app: faust.App
    processor: Processor
    source_topic: Any
    settings: Settings


def _store_url(settings: Settings) -> str:
    return "rocksdb://" if settings.store.startswith("rocksdb") else "memory://"


def create_app(settings: Settings, source_partitions: int | None = None) -> Job:
    """Build the faust app; `source_partitions`: partition count of the detector's source (ensure_topics)."""
    partitions = source_partitions or settings.partitions
    client = settings.kafka_client()
    app = BatchingApp(
        settings.app_id,
        broker=[f"kafka://{b.strip()}" for b in settings.brokers.split(",")],
        store=_store_url(settings),
        datadir=settings.data_dir,
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        web_bind="127.0.0.1",
        topic_partitions=partitions,
        topic_replication_factor=settings.replication,
        table_standby_replicas=settings.standby_replicas,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout / 1000,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 3000),
        stream_buffer_maxsize=max(4096, 2 * settings.batch_size),
        broker_max_poll_records=settings.batch_size,  # one fetch = one processing batch, at most
        topic_allow_declare=True,
        fetch_wait_ms=settings.batch_wait,
        broker_credentials=client.faust_credentials(),  # TLS, SASL: the same properties as above
    )
    input_topic = app.topic(settings.input_topic, **RAW)
    if settings.input_keyed:
        source = input_topic
    else:
        source = app.topic(repartition_topic(settings), partitions=partitions, internal=True, **RAW)

    producer = AsyncProducer(settings.brokers, client=client.librdkafka())
    app.stopping_hooks.append(producer.abort)  # a stopping worker waits for a frozen broker briefly
    store: WindowStore
    if settings.store.startswith("rocksdb"):
        from streams.state.rocksdb import RocksTableStore

        table = app.Table(
            "windows",
            partitions=partitions,
            key_type=bytes,  # raw serializers
            value_type=bytes,
            options=settings.rocksdb_options(),  # bounded memory per partition database
        )
        store = RocksTableStore(table, producer)
    elif settings.store.startswith("memory"):
        store = MemoryStore()
    else:
        from streams.state.redis import RedisStore

        redis_store = RedisStore(
            settings.store, settings.app_id, settings.redis_ttl, **settings.redis_store_options()
        )
        app.stopping_hooks.append(redis_store.abort)  # a stopping worker does not wait for Redis
        store = redis_store

    def acknowledge(done: dict[Any, int]) -> None:
        """Mark input as done through these offsets: faust commits the offsets after them."""
        app.consumer.ack_through(done)

    metrics = Metrics()
    processor = Processor(
        settings.stream_params(),
        store,
        Publisher(producer, settings.alert_topic, settings.dlq_topic, metrics),
        acknowledge,
        checkpoint_ms=settings.checkpoint_interval,
        metrics=metrics,
        trust_headers=not settings.input_keyed,  # only the app's own repartition topic carries positions
    )
    app.before_consumer_stop.append(processor.close)

    # The agents subscribe the worker to their topics (group membership, assignment); their messages
    # reach the processor as whole fetches through the batch handlers (streams.batching), never through
    # faust's per-message streams, whose acknowledgement would commit offsets before a checkpoint.
    app.batch_handlers[source.get_topic_name()] = processor.process

    @app.agent(source, name="detect", concurrency=1)  # type: ignore[misc]
    async def detect(stream: Any) -> None:
        async for _ in stream:  # pragma: no cover - the batching consumer takes these messages
            raise RuntimeError("detector input reached faust's per-message path")

    if not settings.input_keyed:

        async def route_batch(fetch: dict[Any, Sequence[Any]]) -> None:
            await processor.route(fetch, source.get_topic_name())
            acknowledge({tp: records[-1].offset for tp, records in fetch.items()})  # all forwarded

        app.batch_handlers[settings.input_topic] = route_batch

        @app.agent(input_topic, name="route", concurrency=1)  # type: ignore[misc]
        async def route(stream: Any) -> None:
            async for _ in stream:  # pragma: no cover - the batching consumer takes these messages
                raise RuntimeError("router input reached faust's per-message path")

    def owned() -> list[int]:
        if app.rebalancing or app.tables.recovery.in_recovery:
            return []
        return sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == source.get_topic_name())

    @app.timer(1.0)  # type: ignore[misc]
    async def tick() -> None:
        await processor.tick(owned())

    @app.timer(30.0)  # type: ignore[misc]
    async def report() -> None:
        log.info("metrics %s", _summary(processor.metrics, processor.gauges()))

    @app.on_partitions_revoked.connect  # type: ignore[misc]
    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        await processor.drop(tp.partition for tp in revoked if tp.topic == source.get_topic_name())

    @app.on_partitions_assigned.connect  # type: ignore[misc]
    async def on_assigned(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        processor.assign(tp.partition for tp in assigned if tp.topic == source.get_topic_name())

    if settings.web_port > 0:

        @app.page("/metrics")  # type: ignore[misc]
        class MetricsView(View):
            async def get(self, request: Request) -> Response:
                return self.text(processor.metrics.prometheus(processor.gauges()))

    return Job(app, processor, source, settings)


def _summary(metrics: Metrics, gauges: dict[str, float]) -> str:
    parts = [f"{k}={v}" for k, v in sorted(metrics.counts.items())]
    parts += [f"alerts_{k}={v}" for k, v in sorted(metrics.alerts.items())]
    parts += [f"dead_{k}={v}" for k, v in sorted(metrics.dead.items())]
    parts += [f"{k}={v}" for k, v in sorted(gauges.items())]
    return " ".join(parts)

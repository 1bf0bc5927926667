"""The worker: a faust application assembled by `create_app` from one Settings object.

Topology: when the input is keyed by (cIP, Computer, sIP) (`--input-keyed`), the detector agent
consumes it directly; otherwise a router agent re-keys each record into an internal topic first, so
that all events of a window meet in one partition. Whole fetches go to the router and the detector
(streams.kafka.faust_compat); the detector writes state and acknowledges input once per checkpoint.

The parts, each in its own module: the store (kafka.stores), the allowlist, entities and
notifications (kafka.gate), the publisher, the detector and the router, the status and its pages
(kafka.web), the topics (kafka.topics; created before, by the runner).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import faust
from faust.types import TP

from streams.core.native import EngineUnavailable
from streams.core.native import choose as choose_engine
from streams.io.sources import SourceOptions, message_reader
from streams.io.tenant_file import tenant_stream_params
from streams.kafka.client_config import kafka_client
from streams.kafka.detector import Detector
from streams.kafka.faust_compat import App as BatchingApp
from streams.kafka.faust_compat import BatchingConsumer
from streams.kafka.gate import open_gate
from streams.kafka.messages import MessageDecoder, detector_tenant
from streams.kafka.metrics import Metrics, summary
from streams.kafka.producer import AsyncProducer
from streams.kafka.publisher import Publisher
from streams.kafka.router import Router
from streams.kafka.stores import faust_store_url, open_window_store
from streams.kafka.topics import repartition_topic
from streams.kafka.web import WorkerStatus, serve_pages
from streams.settings import ConfigError, Settings

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
    detector: Detector
    source_topic: Any
    settings: Settings


def _stopper(stop: Any) -> Any:
    async def hook() -> None:
        stop()

    return hook


def faust_app(settings: Settings, partitions: int) -> BatchingApp:
    """The faust app (our batching subclass) with every faust setting the job decides."""
    return BatchingApp(
        settings.app_id,
        broker=[f"kafka://{b.strip()}" for b in settings.brokers.split(",")],
        store=faust_store_url(settings),
        datadir=settings.data_dir,
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        web_bind=settings.web_host,
        consumer_group_instance_id=settings.group_instance_id or None,  # static membership
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
        topic_allow_declare=settings.create_topics,  # managed clusters: topics exist, faust declares none
        fetch_wait_ms=settings.batch_wait,
        drain_timeout_s=settings.drain_timeout / 1000,
        broker_credentials=kafka_client(settings).faust_credentials(),  # TLS, SASL: as every client's
    )


def create_app(settings: Settings, source_partitions: int | None = None) -> Job:
    """Build the worker; `source_partitions`: partition count of the detector's source (ensure_topics)."""
    partitions = source_partitions or settings.partitions
    app = faust_app(settings, partitions)
    input_topic = app.topic(settings.input_topic, **RAW)
    if settings.input_keyed:
        source = input_topic
    else:
        source = app.topic(repartition_topic(settings), partitions=partitions, internal=True, **RAW)
    try:
        engine = choose_engine(settings.engine)
    except EngineUnavailable as exc:
        raise ConfigError(str(exc)) from None
    # the native engine counts the changelog's delivery reports natively too (kafka.producer)
    producer = AsyncProducer(
        settings.brokers, client=kafka_client(settings).librdkafka(), reports=engine.name
    )
    app.stopping_hooks.append(producer.abort)  # a stopping worker waits for a frozen broker briefly
    store = open_window_store(app, settings, producer, partitions)
    metrics = Metrics()
    gate = open_gate(settings, producer, metrics)
    tenant = settings.tenant_spec()  # streams.core.tenant; None without --tenant-field
    params, thresholds_file = tenant_stream_params(settings)  # --tenant-thresholds
    metrics.soc["tenant_thresholds_reloads"] = thresholds_file.reloads if thresholds_file is not None else 0
    publisher = Publisher(
        producer,
        settings.alert_topic,
        settings.dlq_topic,
        metrics,
        ocsf_max_bytes=settings.max_alert_bytes if settings.alert_format == "ocsf" else None,
    )

    def acknowledge(done: dict[Any, int]) -> None:
        """Mark input as done through these offsets: faust commits the offsets after them."""
        cast(BatchingConsumer, app.consumer).ack_through(done)

    # once per worker: which hot path, and why (a field: tenant is read by the Python fast path)
    decoding = (
        "; decoding: python, the tenant is a record field" if tenant and tenant.source == "field" else ""
    )
    log.info("engine: %s (%s%s)", engine.name, engine.why, decoding)
    detector = Detector(
        params,
        store,
        publisher,
        acknowledge,
        checkpoint_ms=settings.checkpoint_interval,
        metrics=metrics,
        trust_headers=not settings.input_keyed,  # only the app's own repartition topic carries positions
        reader=message_reader(
            SourceOptions.of(settings, files=False, tenant=detector_tenant(tenant, not settings.input_keyed))
        ),
        max_open_windows=settings.max_open_windows,
        gate=gate if gate.active else None,
        tenant=detector_tenant(tenant, not settings.input_keyed),
        decode=engine.decode,
        encode=engine.encode,
        partition=engine.partition,
    )
    app.before_consumer_stop.append(detector.close)
    if gate.topic is not None:
        app.after_consumer_stop.append(_stopper(gate.topic.stop))
    # The agents subscribe the worker to their topics (group membership, assignment); their messages
    # reach the detector and the router as whole fetches through the batch handlers (faust_compat),
    # never through faust's per-message streams, whose acknowledgement would commit offsets before a
    # checkpoint.
    subscribe(app, source, "detect", detector.process)
    if not settings.input_keyed:
        router = Router(
            MessageDecoder(message_reader(SourceOptions.of(settings, files=False)), tenant),
            publisher,
            metrics,
            source.get_topic_name(),
        )

        async def route_batch(fetch: dict[Any, Sequence[Any]]) -> None:
            await router.route(fetch)
            acknowledge({tp: records[-1].offset for tp, records in fetch.items()})  # all forwarded

        subscribe(app, input_topic, "route", route_batch)
    source_name = source.get_topic_name()
    consumed = [source_name] if settings.input_keyed else [source_name, settings.input_topic]
    status = WorkerStatus(app, detector, store, metrics, source_name, consumed)
    metrics.snapshot = status.snapshot

    def refresh_lists() -> None:
        """A changed allowlist (file or topic) or thresholds file is in force from the next batch on."""
        gate.refresh()
        if thresholds_file is not None:
            thresholds_file.refresh()
            metrics.soc["tenant_thresholds_reloads"] = thresholds_file.reloads
            metrics.soc["tenant_thresholds_errors"] = thresholds_file.errors

    schedule(app, status, refresh_lists)
    if settings.web_port > 0:
        serve_pages(app, status, settings.stall_timeout / 1000)
    return Job(app, detector, source, settings)


def subscribe(app: Any, topic: Any, name: str, handler: Any) -> None:
    """An agent of `topic` (its subscription) whose fetches go whole to `handler` (faust_compat)."""
    app.batch_handlers[topic.get_topic_name()] = handler

    @app.agent(topic, name=name, concurrency=1)  # type: ignore[untyped-decorator]
    async def agent(stream: Any) -> None:
        async for _ in stream:  # pragma: no cover - the batching consumer takes these messages
            raise RuntimeError(f"{name} input reached faust's per-message path")


def schedule(app: Any, status: WorkerStatus, refresh_lists: Any) -> None:
    """The timers (idleness, allowlist and thresholds, the metrics log line) and the rebalance callbacks."""
    detector, metrics, source = status.detector, status.metrics, status.source

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def refresh() -> None:
        refresh_lists()

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        if status.settled():
            await app.consumer.ask_offsets(status.consumed)  # what no fetch has told: empty partitions
        await detector.tick(status.caught_up())

    @app.timer(30.0)  # type: ignore[untyped-decorator]
    async def report() -> None:
        log.info("metrics %s", summary(detector.metrics, detector.gauges()))

    @app.on_partitions_revoked.connect  # type: ignore[untyped-decorator]
    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        metrics.counts["rebalances"] += 1
        await detector.drop(tp.partition for tp in revoked if tp.topic == source)

    @app.on_partitions_assigned.connect  # type: ignore[untyped-decorator]
    async def on_assigned(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        status.assigned_once = True
        detector.assign(tp.partition for tp in assigned if tp.topic == source)

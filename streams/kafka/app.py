"""The faust application, built by a factory from one Settings object.

Topology: when the input is keyed by (cIP, Computer, sIP) (`--input-keyed`), the detector agent
consumes it directly; otherwise a router agent re-keys each record into an internal topic first, so
that all events of a window meet in one partition. Whole fetches go to the router and the detector
(streams.kafka.faust_compat); the detector writes state and acknowledges input once per checkpoint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP
from faust.web import Request, Response, View
from faust.web.base import BlueprintManager

from streams.core.allowlist import AllowlistError
from streams.core.native import EngineUnavailable
from streams.core.native import choose as choose_engine
from streams.errors import ServiceUnreachable
from streams.io.allowlist_file import AllowlistFile
from streams.kafka.admin import repartition_topic
from streams.kafka.detector import Detector
from streams.kafka.faust_compat import App as BatchingApp
from streams.kafka.faust_compat import changelog_applier, recovery_state
from streams.kafka.gate import AllowlistTopic, Gate, page_reader
from streams.kafka.messages import MessageDecoder, wall_ms
from streams.kafka.metrics import Metrics, Snapshot, summary
from streams.kafka.producer import AsyncProducer
from streams.kafka.publisher import Publisher
from streams.kafka.router import Router
from streams.settings import ConfigError, Settings
from streams.state.base import WindowStore
from streams.state.memory import MemoryStore

log = logging.getLogger("iis-portscan")
PROMETHEUS_TEXT = "text/plain; version=0.0.4"  # aiohttp adds the charset itself
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


def serve_only_our_pages(app: faust.App) -> None:
    """The web port serves /healthz, /readyz and /metrics, nothing else: faust's own views (its blueprints:
    /table/ serves the stored windows, the clients' queries and user agents included; /router/, /, /stats/,
    /graph/, /performance/) are never registered. Our pages are app.page views, not blueprints."""
    app.web.blueprints = BlueprintManager()


def _store_url(settings: Settings) -> str:
    return "rocksdb://" if settings.store.startswith("rocksdb") else "memory://"


def _stopper(stop: Any) -> Any:
    async def hook() -> None:
        stop()

    return hook


def build_gate(settings: Settings, producer: AsyncProducer, metrics: Metrics) -> Gate:
    """The allowlist (file, topic: read to its end before the worker starts), entities and
    notifications (streams.kafka.gate). Raises ConfigError for a bad file, ServiceUnreachable when the
    topic cannot be read within --connect-timeout."""
    file = AllowlistFile(settings.allowlist) if settings.allowlist else None
    topic = None
    if settings.allowlist_topic:
        client = {**settings.kafka_client().librdkafka(), "bootstrap.servers": settings.brokers}
        topic = AllowlistTopic(settings.allowlist_topic, client)
        topic.start()
        if not topic.wait_caught_up(settings.connect_timeout / 1000):
            topic.stop()
            raise ServiceUnreachable(
                f"allowlist topic {settings.allowlist_topic}: not read to its end within "
                f"{settings.connect_timeout / 1000:g}s"
            )
    try:
        gate = Gate(
            settings.rule_params(),
            file,
            topic,
            entities=settings.alert_entities,
            notify=settings.notify_params() if settings.notify_topic else None,
            producer=producer,
            notify_topic=settings.notify_topic,
        )
    except AllowlistError as exc:
        if topic is not None:
            topic.stop()
        raise ConfigError(f"--allowlist: {exc}") from None
    if settings.notify_topic:
        client = {**settings.kafka_client().librdkafka(), "bootstrap.servers": settings.brokers}
        gate.read_pages = page_reader(settings.notify_topic, client, settings.connect_timeout / 1000)
    gate.allowlisted = metrics.allowlisted
    gate.counts = metrics.soc
    gate.counts["allowlist_reloads"] += int(file is not None)
    if gate.allowlist is not None:
        log.info(
            "allowlist %s in force: %d entries", gate.allowlist.version or "(empty)", len(gate.allowlist)
        )
    return gate


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
        # Recovery and standby replicas apply the changelog a fetch at a time (see faust_compat). The
        # variable brings back faust's per-record path: the baseline `make bench` measures beside it.
        if os.environ.get("PORTSCAN_BENCH_PER_RECORD_CHANGELOG") != "1":
            app.batch_handlers[table.changelog_topic.get_topic_name()] = changelog_applier(app, table)
    elif settings.store.startswith("memory"):
        store = MemoryStore()
    else:
        from streams.state.redis import RedisStore

        redis_store = RedisStore(
            settings.store, settings.app_id, settings.redis_ttl, **settings.redis_store_options()
        )
        app.stopping_hooks.append(redis_store.abort)  # a stopping worker does not wait for Redis
        app.after_consumer_stop.append(redis_store.close)
        store = redis_store

    def acknowledge(done: dict[Any, int]) -> None:
        """Mark input as done through these offsets: faust commits the offsets after them."""
        app.consumer.ack_through(done)

    metrics = Metrics()
    gate = build_gate(settings, producer, metrics)
    publisher = Publisher(
        producer,
        settings.alert_topic,
        settings.dlq_topic,
        metrics,
        ocsf_max_bytes=settings.max_alert_bytes if settings.alert_format == "ocsf" else None,
    )
    try:
        engine = choose_engine(settings.engine)
    except EngineUnavailable as exc:
        raise ConfigError(str(exc)) from None
    log.info("engine: %s (%s)", engine.name, engine.why)  # once per worker: which hot path, and why
    detector = Detector(
        settings.stream_params(),
        store,
        publisher,
        acknowledge,
        checkpoint_ms=settings.checkpoint_interval,
        metrics=metrics,
        trust_headers=not settings.input_keyed,  # only the app's own repartition topic carries positions
        reader=settings.message_reader(),
        max_open_windows=settings.max_open_windows,
        gate=gate if gate.active else None,
        decode=engine.decode,
        encode=engine.encode,
    )
    app.before_consumer_stop.append(detector.close)
    if gate.topic is not None:
        app.after_consumer_stop.append(_stopper(gate.topic.stop))

    @app.timer(1.0)  # type: ignore[misc]
    async def refresh_allowlist() -> None:
        gate.refresh()  # a changed file or topic is in force from the next batch on

    # The agents subscribe the worker to their topics (group membership, assignment); their messages
    # reach the detector and the router as whole fetches through the batch handlers (faust_compat),
    # never through faust's per-message streams, whose acknowledgement would commit offsets before a
    # checkpoint.
    app.batch_handlers[source.get_topic_name()] = detector.process

    @app.agent(source, name="detect", concurrency=1)  # type: ignore[misc]
    async def detect(stream: Any) -> None:
        async for _ in stream:  # pragma: no cover - the batching consumer takes these messages
            raise RuntimeError("detector input reached faust's per-message path")

    if not settings.input_keyed:
        router = Router(
            MessageDecoder(settings.message_reader()), publisher, metrics, source.get_topic_name()
        )

        async def route_batch(fetch: dict[Any, Sequence[Any]]) -> None:
            await router.route(fetch)
            acknowledge({tp: records[-1].offset for tp, records in fetch.items()})  # all forwarded

        app.batch_handlers[settings.input_topic] = route_batch

        @app.agent(input_topic, name="route", concurrency=1)  # type: ignore[misc]
        async def route(stream: Any) -> None:
            async for _ in stream:  # pragma: no cover - the batching consumer takes these messages
                raise RuntimeError("router input reached faust's per-message path")

    source_name = source.get_topic_name()
    consumed = [source_name] if settings.input_keyed else [source_name, settings.input_topic]
    state = {"assigned_once": False}

    def settled() -> bool:
        """Assigned, not rebalancing, state recovered: what /readyz reports."""
        return state["assigned_once"] and not app.rebalancing and not recovery_state(app)[0]

    def caught_up() -> list[int]:
        """Detector partitions whose position is at the end offset: only those may idle. With the
        router, none while this worker's own input partitions still lag (the repartition topic only
        looks caught up then). A partition that never held a record is caught up (its lag is 0 once
        its end offset is known: `ask_offsets`); one whose lag is still unknown is not."""
        if not settled():
            return []
        lags = app.consumer.lags(consumed)
        if any(n != 0 for tp, n in lags.items() if tp.topic != source_name):
            return []
        return sorted(tp.partition for tp, n in lags.items() if tp.topic == source_name and n == 0)

    def snapshot() -> Snapshot:
        now = wall_ms()
        event_lag, watermarks = detector.clocks(now)
        _, remaining = recovery_state(app)
        try:
            lags = app.consumer.lags(consumed)
            stalled = 0.0 if not settled() else app.consumer.stalled_seconds(consumed)
        except Exception:  # the consumer is not started yet
            lags, stalled = {}, 0.0
        metrics.counts["fetches_not_handed_on"] = getattr(app.consumer, "stale_batches", 0)
        store_stats = getattr(store, "stats", None)
        if store_stats is not None:
            metrics.counts["store_retries"] = store_stats["retries"]
            metrics.counts["store_errors"] = store_stats["errors"]
        return Snapshot(
            ready=settled(),
            partitions=len(detector.engines),
            open_windows=detector.open_windows(),
            max_open_windows=detector.max_open,
            spilled_windows=sum(e.spilled_count() for e in detector.engines.values()),
            overdue_open_windows=detector.overdue(now),
            consumer_lag={(tp.topic, tp.partition): n for tp, n in lags.items() if n is not None},
            event_time_lag_seconds=event_lag,
            watermark_seconds=watermarks,
            recovery_remaining_records=remaining,
            fetch_stalled_seconds=stalled,
            last_checkpoint_timestamp_seconds=detector.last_checkpoint_wall,
        )

    metrics.snapshot = snapshot

    @app.timer(1.0)  # type: ignore[misc]
    async def tick() -> None:
        if settled():
            await app.consumer.ask_offsets(consumed)  # what no fetch has told: empty partitions
        await detector.tick(caught_up())

    @app.timer(30.0)  # type: ignore[misc]
    async def report() -> None:
        log.info("metrics %s", summary(detector.metrics, detector.gauges()))

    @app.on_partitions_revoked.connect  # type: ignore[misc]
    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        metrics.counts["rebalances"] += 1
        await detector.drop(tp.partition for tp in revoked if tp.topic == source_name)

    @app.on_partitions_assigned.connect  # type: ignore[misc]
    async def on_assigned(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        state["assigned_once"] = True
        detector.assign(tp.partition for tp in assigned if tp.topic == source_name)

    if settings.web_port > 0:
        stall_limit_s = settings.stall_timeout / 1000
        serve_only_our_pages(app)

        @app.page("/metrics")  # type: ignore[misc]
        class MetricsView(View):
            async def get(self, request: Request) -> Response:
                return self.bytes(detector.metrics.render(), content_type=PROMETHEUS_TEXT)

        @app.page("/healthz")  # type: ignore[misc]
        class HealthView(View):
            """Alive: the event loop answers, and the consumer has not stalled with input waiting."""

            async def get(self, request: Request) -> Response:
                stalled = snapshot().fetch_stalled_seconds
                if stalled > stall_limit_s:
                    return self.text(
                        f"stalled: no fetch progress for {stalled:.0f}s with input waiting\n", status=503
                    )
                return self.text("ok\n")

        @app.page("/readyz")  # type: ignore[misc]
        class ReadyView(View):
            """Ready: partitions assigned and state recovered; not during a rebalance or recovery."""

            async def get(self, request: Request) -> Response:
                if settled():
                    return self.text("ready\n")
                why = "recovering state" if recovery_state(app)[0] else "waiting for partitions"
                return self.text(f"not ready: {why}\n", status=503)

    return Job(app, detector, source, settings)

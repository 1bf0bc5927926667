"""Smoke tests against the real Kafka broker: each proves that one client library works with it.

The broker is Apache Kafka 4.x (KRaft), which removed many old protocol versions, so these tests are the
first place an incompatible client shows up. Every test uses its own topics and consumer groups
(`unique_name`) and deletes its topics at the end (`kafka_topics`).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faust
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicCollection

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

    from .conftest import AsyncRunner, KafkaTopics

CONSUME_DEADLINE_S = 30.0
ASYNC_TEST_TIMEOUT_S = 45.0


def test_admin_client_creates_topic_with_three_partitions(
    kafka_admin: AdminClient, kafka_topics: KafkaTopics, unique_name: str
) -> None:
    """confluent-kafka AdminClient: CreateTopics, then DescribeTopics and Metadata both see 3 partitions."""
    kafka_topics.create(unique_name, partitions=3)

    described = kafka_admin.describe_topics(TopicCollection([unique_name]), request_timeout=10)
    description = described[unique_name].result(timeout=15)
    assert description.name == unique_name
    assert sorted(p.id for p in description.partitions) == [0, 1, 2]
    assert all(p.leader is not None for p in description.partitions)

    assert kafka_topics.partition_counts()[unique_name] == 3


def test_confluent_producer_and_consumer_round_trip(
    kafka_topics: KafkaTopics, brokers: str, unique_name: str
) -> None:
    """Idempotent confluent-kafka Producer writes keyed messages; a Consumer in a new group reads all back."""
    topic = kafka_topics.create(unique_name, partitions=3)
    kafka_topics.track_group(unique_name)
    sent = [(f"key-{i % 3}".encode(), orjson.dumps({"seq": i, "port": 8000 + i})) for i in range(9)]

    errors: list[KafkaError] = []
    delivered: list[tuple[bytes | None, int | None]] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered.append((msg.key(), msg.partition()))

    producer = Producer(
        {
            "bootstrap.servers": brokers,
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": 20000,
        }
    )
    try:
        for key, value in sent:
            producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
            producer.poll(0)
    finally:
        remaining = producer.flush(20)
    assert remaining == 0, f"{remaining} message(s) still queued after flush"
    assert errors == []
    assert len(delivered) == len(sent)
    # Same key, same partition (the default partitioner hashes the key).
    partitions_by_key: dict[bytes | None, set[int | None]] = {}
    for delivered_key, partition in delivered:
        partitions_by_key.setdefault(delivered_key, set()).add(partition)
    assert all(len(parts) == 1 for parts in partitions_by_key.values()), partitions_by_key

    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": unique_name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    received: list[tuple[bytes | None, bytes | None]] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + CONSUME_DEADLINE_S
        while len(received) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            assert error is None, f"consumer error: {error}"
            received.append((msg.key(), msg.value()))
    finally:
        consumer.close()

    assert sorted(received) == sorted(sent), f"{len(received)} of {len(sent)} in {CONSUME_DEADLINE_S:.0f}s"
    for key in {k for k, _ in sent}:  # per-key (so per-partition) order is kept
        assert [v for k, v in received if k == key] == [v for k, v in sent if k == key]


def test_aiokafka_producer_and_consumer_round_trip(
    kafka_topics: KafkaTopics, brokers: str, unique_name: str, run_async: AsyncRunner
) -> None:
    """aiokafka (the client faust uses): idempotent AIOKafkaProducer sends, AIOKafkaConsumer reads back."""
    topic = kafka_topics.create(unique_name, partitions=2)
    kafka_topics.track_group(unique_name)
    sent = [(f"k{i % 2}".encode(), f"value-{i}".encode()) for i in range(6)]

    async def round_trip() -> list[tuple[bytes | None, bytes | None]]:
        producer = AIOKafkaProducer(bootstrap_servers=brokers, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            for key, value in sent:
                metadata = await producer.send_and_wait(topic, value=value, key=key)
                assert metadata.topic == topic and metadata.offset >= 0
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=brokers,
            group_id=unique_name,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        received: list[tuple[bytes | None, bytes | None]] = []
        await consumer.start()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + CONSUME_DEADLINE_S
            while len(received) < len(sent) and loop.time() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    received.extend((r.key, r.value) for r in records)
        finally:
            await consumer.stop()
        return received

    received = run_async(round_trip, ASYNC_TEST_TIMEOUT_S)
    assert sorted(received) == sorted(sent)


def test_faust_app_creates_its_topic_and_agent_receives(
    kafka_topics: KafkaTopics,
    brokers: str,
    unique_name: str,
    tmp_path: Path,
    run_async: AsyncRunner,
) -> None:
    """A faust App started in-process creates its agent's topic itself, and the agent gets a message.

    The topic is declared `internal=True`: faust's Conductor only creates (CreateTopics) internal topics;
    a non-internal topic that does not exist is left to the broker's auto-creation, and the running
    consumer group does not pick it up until its next metadata refresh. It is declared with 2 partitions
    while the test broker auto-creates topics with 1, so the partition count proves faust created it.
    """
    topic_name = f"{unique_name}-events"
    partitions = 2
    before = kafka_topics.partition_counts()
    assert topic_name not in before, "the topic must not exist yet: faust has to create it"
    kafka_topics.track(topic_name, f"{unique_name}-__assignor-__leader")
    kafka_topics.track_group(unique_name)  # faust's consumer group id is the app id

    async def run_app() -> tuple[list[Any], Any]:
        # Built inside the running loop, so every faust/mode service binds to it.
        app = faust.App(
            unique_name,
            broker=f"kafka://{brokers}",
            store="memory://",
            datadir=str(tmp_path / "faust"),
            web_enabled=False,
            topic_partitions=1,
            topic_replication_factor=1,
            consumer_auto_offset_reset="earliest",
            # faust creates the topic as it starts, racing its consumer's first join: on a loaded machine
            # the group is assigned before the topic exists (faust's assignor then "ignores the missing
            # topic"), and only a metadata refresh brings it in (aiokafka's default: every 5 minutes).
            consumer_metadata_max_age_ms=2000,
        )
        topic = app.topic(topic_name, value_serializer="raw", partitions=partitions, internal=True)
        seen: list[Any] = []
        arrived = asyncio.Event()

        @app.agent(topic)
        async def record(stream: Any) -> None:
            async for value in stream:
                seen.append(value)
                arrived.set()

        # App is a mode Service: start()/stop() run it in this loop, with none of faust.Worker's signal
        # handlers, logging setup or sys.exit.
        await app.start()
        try:
            metadata = await (await topic.send(key=b"k", value=b"hello faust"))
            await asyncio.wait_for(arrived.wait(), CONSUME_DEADLINE_S)
        finally:
            await asyncio.wait_for(app.stop(), 20)
        return seen, metadata

    try:
        seen, metadata = run_async(run_app, ASYNC_TEST_TIMEOUT_S)
    finally:
        # Whatever faust created under the app's name goes too (leader topic, changelogs, ...).
        kafka_topics.track(*(t for t in kafka_topics.partition_counts() if t.startswith(unique_name)))

    assert seen == [b"hello faust"]
    assert metadata.topic == topic_name
    assert kafka_topics.partition_counts().get(topic_name) == partitions

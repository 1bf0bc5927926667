"""The job's producer (streams.kafka.producer.AsyncProducer) against the real broker: what the
checkpoint relies on - every record acknowledged before `deliver` returns, offsets per partition, and a
record the broker can never take refused without failing its neighbours."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, KafkaError, TopicPartition

from streams.kafka.producer import AsyncProducer, Refused

if TYPE_CHECKING:
    from .conftest import KafkaTopics

TOO_LARGE = b"x" * 2_000_000  # over librdkafka's message.max.bytes (1 MB): refused before sending


def read_partition(brokers: str, topic: str, partition: int, n: int) -> list[tuple[bytes, bytes]]:
    consumer = Consumer(
        {"bootstrap.servers": brokers, "group.id": f"{topic}-reader", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, partition, 0)])
    got: list[tuple[bytes, bytes]] = []
    try:
        for _ in range(300):
            for msg in consumer.consume(1000, timeout=0.1):
                assert msg.error() is None, msg.error()
                got.append((msg.key(), msg.value()))
            if len(got) >= n:
                break
    finally:
        consumer.close()
    return got


def test_send_items_delivers_in_order_and_refuses_only_the_record_too_large(
    kafka_topics: KafkaTopics, brokers: str, unique_name: str
) -> None:
    topic = kafka_topics.create(unique_name, partitions=2)
    refused: list[Refused] = []
    producer = AsyncProducer(brokers, on_refused=refused.append)
    items = [(b"k%05d" % i, b"v%d" % i) for i in range(5000)]
    items.insert(1234, (b"huge", TOO_LARGE))
    items.append((b"gone", None))  # a tombstone, as expiry sends
    producer.send_items(topic, 1, items)
    asyncio.run(asyncio.wait_for(producer.deliver(), 60))

    assert [(r.key, r.error.code()) for r in refused] == [(b"huge", KafkaError.MSG_SIZE_TOO_LARGE)]
    want = [(k, v) for k, v in items if k != b"huge"]
    assert producer.acked == {(topic, 1): len(want) - 1}  # every other record, at offsets 0..n-1
    got = read_partition(brokers, topic, 1, len(want))
    assert got == want

"""The job's producer (streams.kafka.producer.AsyncProducer) against the real broker: what the
checkpoint relies on - every record acknowledged before `deliver` returns, offsets per partition, and a
record the broker can never take refused without failing its neighbours."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from streams.kafka.producer import AsyncProducer, DeliveryError, Refused, native_tally

if TYPE_CHECKING:
    from .conftest import KafkaTopics

TOO_LARGE = b"x" * 2_000_000  # over librdkafka's message.max.bytes (1 MB): refused before sending

# How send_items' records are reported: a Python callback each, or the native tally per partition.
REPORTS = [
    "python",
    pytest.param(
        "native",
        marks=pytest.mark.skipif(native_tally() is None, reason="the native extension is not built"),
    ),
]


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


@pytest.mark.parametrize("reports", REPORTS)
def test_send_items_delivers_in_order_and_refuses_only_the_record_too_large(
    kafka_topics: KafkaTopics, brokers: str, unique_name: str, reports: str
) -> None:
    topic = kafka_topics.create(unique_name, partitions=2)
    refused: list[Refused] = []
    producer = AsyncProducer(brokers, on_refused=refused.append, reports=reports)
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


@pytest.mark.parametrize("reports", REPORTS)
def test_each_batch_is_acknowledged_through_its_last_offset(
    kafka_topics: KafkaTopics, brokers: str, unique_name: str, reports: str
) -> None:
    """The changelog's offsets as the RocksDB store writes them: after each `deliver`, the highest offset
    of every partition sent to, over several checkpoints' batches and partitions."""
    topic = kafka_topics.create(unique_name, partitions=3)
    producer = AsyncProducer(brokers, reports=reports)
    sent = {0: 0, 2: 0}
    for round_ in range(4):
        for partition, n in ((0, 700 + round_), (2, 30 * round_ + 1)):
            producer.send_items(topic, partition, [(b"k%d" % i, b"v%d" % round_) for i in range(n)])
            sent[partition] += n
        producer.send(topic, b"alert", b"{}", 1)  # a record reported by the Python callback
        asyncio.run(asyncio.wait_for(producer.deliver(), 60))
        assert producer.acked == {(topic, 0): sent[0] - 1, (topic, 1): round_, (topic, 2): sent[2] - 1}


@pytest.mark.parametrize("reports", REPORTS)
def test_a_failed_delivery_raises_with_either_report_path(
    kafka_topics: KafkaTopics, brokers: str, unique_name: str, reports: str
) -> None:
    """Errors take `_on_delivery` whichever way the records are reported: a partition the topic does
    not have fails each record, and `deliver` raises instead of returning as if they were written."""
    topic = kafka_topics.create(unique_name, partitions=1)
    producer = AsyncProducer(brokers, reports=reports)
    producer.send_items(topic, 0, [(b"a", b"1"), (b"b", b"2")])
    producer.send_items(topic, 5, [(b"k%d" % i, b"v") for i in range(10)])
    with pytest.raises(DeliveryError, match=r"10 records failed.*Unknown partition"):
        asyncio.run(asyncio.wait_for(producer.deliver(), 60))
    assert producer.acked == {(topic, 0): 1}

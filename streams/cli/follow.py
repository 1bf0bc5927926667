"""Following a topic from its beginning for a person: what `iis-portscan alerts` and `notifications` share.

A viewer reads in a consumer group of its own (it never moves a worker's offsets), stops after `max_records`
records or `idle_exit_s` without one (0: never), and on Ctrl-C. Errors of the client are printed escaped:
the records' producers are ours, but a topic may hold anything.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError

from streams.core.escape import printable
from streams.kafka.client_config import librdkafka_client
from streams.settings import Settings


def follow(
    settings: Settings,
    topic: str,
    viewer: str,
    idle_exit_s: float,
    max_records: int,
    show: Callable[[bytes], None],
) -> int:
    """Hand every non-tombstone value of `topic` to `show`, in order; how many were shown."""
    consumer = Consumer(
        librdkafka_client(
            settings,
            **{
                "group.id": f"{settings.app_id}-{viewer}-viewer-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            },
        )
    )
    consumer.subscribe([topic])
    seen = 0
    last = time.monotonic()
    try:
        while max_records <= 0 or seen < max_records:
            msg = consumer.poll(0.5)
            if msg is None:
                if idle_exit_s and time.monotonic() - last > idle_exit_s:
                    break
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    sys.stderr.write(f"{viewer}: {printable(str(msg.error()))}\n")
                continue
            last = time.monotonic()
            value = msg.value()
            if value is None:
                continue
            seen += 1
            show(value)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return seen

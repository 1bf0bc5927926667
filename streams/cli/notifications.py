"""`iis-portscan notifications`: follow the notify topic (--notify-topic) and print pages and summaries."""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any, TextIO

import orjson
from confluent_kafka import Consumer, KafkaError

from streams.settings import Settings

HEADER = f"{'kind':<8}{'period start':<26}{'entity':<40}{'windows':>8}{'max ports':>10}{'suppressed':>11}"


def pretty(note: dict[str, Any]) -> str:
    """One table row; the entity's values only (the attacker controls them: cut, no control chars)."""
    entity = " ".join(str(v) for v in note.get("Entity", {}).values()).encode("unicode_escape").decode()
    if note["Kind"] == "page":
        first = note["FirstAlert"]
        windows, ports, suppressed = "1", str(first["portCount"]), "-"
    elif note["Kind"] == "summary":
        windows, ports = str(note["WindowCount"]), str(note["MaxPortCount"])
        suppressed = str(note["SuppressedRepeats"])
    else:  # cap
        entity, windows, ports, suppressed = f"{note['NotPaged']} entities not paged", "-", "-", "-"
    return (
        f"{note['Kind']:<8}{note['PeriodStart']:<26}{entity[:39]:<40}{windows:>8}{ports:>10}{suppressed:>11}"
    )


def run_notifications(
    settings: Settings, as_table: bool, idle_exit_s: float, max_records: int, out: TextIO = sys.stdout
) -> int:
    consumer = Consumer(
        {
            **settings.kafka_client().librdkafka(),
            "bootstrap.servers": settings.brokers,
            "group.id": f"{settings.app_id}-notify-viewer-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.notify_topic])
    seen = 0
    last = time.monotonic()
    if as_table:
        out.write(HEADER + "\n")
    try:
        while max_records <= 0 or seen < max_records:
            msg = consumer.poll(0.5)
            if msg is None:
                if idle_exit_s and time.monotonic() - last > idle_exit_s:
                    break
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    sys.stderr.write(f"notifications: {msg.error()}\n")
                continue
            last = time.monotonic()
            value = msg.value()
            if value is None:
                continue
            seen += 1
            out.write((pretty(orjson.loads(value)) if as_table else value.decode()) + "\n")
            out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0

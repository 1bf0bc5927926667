"""`iis-portscan alerts`: follow the alert topic and print alerts (JSON lines, or a table)."""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from typing import Any, TextIO

import orjson
from confluent_kafka import Consumer, KafkaError

from streams.settings import Settings

HEADER = (
    f"{'phase':<6} {'rev':>5} {'TimeGenerated':<24} {'cIP':<16} {'Computer':<22} {'sIP':<12} {'ports':>5} "
    f"{'distinct':>8} {'conns':>6}"
)


def pretty(alert: dict[str, Any]) -> str:
    return (
        f"{alert.get('Phase', '-'):<6} {alert.get('Revision', 0):>5} {alert['TimeGenerated']:<24} "
        f"{alert['cIP']:<16} {alert['Computer'][:22]:<22} {alert['sIP']:<12} {alert['portCount']:>5} "
        f"{alert['DistinctPortCount']:>8} {alert['ConnectionsCount']:>6}"
    )


def run_follow(
    settings: Settings, as_table: bool, idle_exit_s: float, max_alerts: int, out: TextIO = sys.stdout
) -> int:
    consumer = Consumer(
        {
            **settings.kafka_client().librdkafka(),
            "bootstrap.servers": settings.brokers,
            "group.id": f"{settings.app_id}-alerts-viewer-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.alert_topic])
    seen = 0
    latest: dict[str, str] = {}
    last = time.monotonic()
    if as_table:
        out.write(HEADER + "\n")
    try:
        while max_alerts <= 0 or seen < max_alerts:
            msg = consumer.poll(0.5)
            if msg is None:
                if idle_exit_s and time.monotonic() - last > idle_exit_s:
                    break
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                sys.stderr.write(f"alerts: {msg.error()}\n")
                continue
            last = time.monotonic()
            value = msg.value()
            if value is None:
                continue
            seen += 1
            alert = orjson.loads(value)
            if "class_uid" in alert:  # an OCSF Detection Finding (--alert-format ocsf): the alert within
                alert = alert["unmapped"]
            latest[alert["AlertId"]] = alert.get("Phase", "-")
            out.write((pretty(alert) if as_table else value.decode()) + "\n")
            out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    if as_table:
        phases = ", ".join(f"{n} {p}" for p, n in sorted(Counter(latest.values()).items()))
        out.write(f"{seen} alert records for {len(latest)} windows (latest revision: {phases or 'none'})\n")
    return 0

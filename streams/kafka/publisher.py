"""Alerts and dead letters to the broker; records the broker refuses become dead letters themselves."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from streams.core.deadletter import unpublishable
from streams.core.entities import ocsf_finding
from streams.core.escape import dumps
from streams.kafka.messages import DeadLetter, wall_ms
from streams.kafka.metrics import Metrics
from streams.kafka.producer import AsyncProducer, Refused

log = logging.getLogger("iis-portscan")


class Publisher:
    """Sends alerts and dead letters; `deliver` waits for the broker's acknowledgement of all sent.

    Every record the producer refuses for good (too large for the broker: see streams.kafka.producer) comes
    back here and is dead-lettered with Reason `unpublishable`, so no record can stop the worker; a
    refused dead letter is logged and counted (`dead_letters_unsendable`). Records are serialized with
    core.escape.dumps: the client's strings reach SIEM consoles and terminals with their controls and
    bidi characters escaped."""

    def __init__(
        self,
        producer: AsyncProducer,
        alert_topic: str,
        dlq_topic: str,
        metrics: Metrics | None = None,
        clock: Callable[[], int] | None = None,
        ocsf_max_bytes: int | None = None,
    ) -> None:
        """`ocsf_max_bytes`: publish alerts as OCSF Detection Findings of at most that size (else the
        sentinel record as the core built it)."""
        self.producer = producer
        self.alert_topic = alert_topic
        self.dlq_topic = dlq_topic
        self.ocsf_max_bytes = ocsf_max_bytes
        self.metrics = metrics or Metrics()
        self.clock = clock or wall_ms
        producer.on_refused = self.refused

    def refused(self, record: Refused) -> None:
        size = 0 if record.value is None else len(record.value)
        if record.topic == self.dlq_topic:
            self.metrics.counts["dead_letters_unsendable"] += 1
            log.error("dead letter of %d bytes refused by the broker: %s", size, record.error.str())
            return
        self.metrics.dead["unpublishable"] += 1
        log.error(
            "record of %d bytes for topic %s refused by the broker (%s): dead-lettered",
            size,
            record.topic,
            record.error.str(),
        )
        key, letter = unpublishable(
            record.topic,
            record.key,
            record.value,
            f"the broker refused this {size}-byte record for {record.topic}: {record.error.str()}",
            self.clock(),
        )
        self.producer.send(self.dlq_topic, key, dumps(letter))

    def send(self, alerts: Sequence[dict[str, Any]], dead: Sequence[DeadLetter]) -> None:
        send = self.producer.send
        ocsf_max = self.ocsf_max_bytes
        for alert in alerts:
            record = alert if ocsf_max is None else ocsf_finding(alert, ocsf_max)
            send(self.alert_topic, alert["AlertId"].encode(), dumps(record))
        for key, record in dead:
            send(self.dlq_topic, key, dumps(record))

    async def deliver(self) -> None:
        await self.producer.deliver()

"""The router: re-keys input records by (cIP, Computer, sIP) into the repartition topic, so that all
events of a window meet in one partition, when the input is not keyed that way. With tenants the key
starts with the tenant, which the `src-tenant` header carries to the detector (streams.kafka.messages)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from streams.core.parse import event_record
from streams.kafka.messages import DeadLetter, MessageDecoder, forward_headers, routing_key, wall_ms
from streams.kafka.metrics import Metrics
from streams.kafka.publisher import Publisher


class Router:
    """Forwards each valid record keyed by its group key, with its input position in headers."""

    def __init__(
        self,
        decoder: MessageDecoder,
        publisher: Publisher,
        metrics: Metrics,
        by_key_topic: str,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.decoder = decoder
        self.publisher = publisher
        self.metrics = metrics
        self.by_key_topic = by_key_topic
        self.clock = clock

    async def route(self, fetch: Mapping[Any, Sequence[Any]]) -> None:
        """Forward a fetch; dead-letter what is not valid.

        Returns once every forwarded record is acknowledged, so the input offsets faust commits
        afterwards never run ahead of what reached the detector's topic."""
        now = self.clock()
        dead: list[DeadLetter] = []
        send = self.publisher.producer.send
        topic = self.by_key_topic
        single, events, stamp = self.decoder.single, self.decoder.events, self.decoder.stamp
        routed = 0
        for msg in (msg for batch in fetch.values() for msg in batch):
            event = single(msg.value)
            if event is not None:  # the hot path: one valid record, forwarded as it came
                if stamp is None or stamp(msg, event, None, now, dead, False):
                    headers = forward_headers(msg, None, event.tenant)  # the tenant: see messages
                    send(topic, routing_key(event), msg.value, headers=headers)
                    routed += 1
                continue
            for index, event in events(msg, now, dead, trusted=False):
                if stamp is not None and not stamp(msg, event, index, now, dead, False):
                    continue
                value = orjson.dumps(event_record(event))  # self-contained: the detector's fast path
                send(topic, routing_key(event), value, headers=forward_headers(msg, index, event.tenant))
                routed += 1
        self.metrics.counts["routed"] += routed
        for _, record in dead:
            self.metrics.dead[record["Reason"]] += 1
        self.publisher.send((), dead)
        await self.publisher.deliver()

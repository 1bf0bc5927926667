"""Whole fetches to the processor: faust's consumer, minus its per-message dispatch for our topics.

faust hands every fetched message to its streams one at a time, through two tasks and an
`asyncio.wait` per message (`Consumer._drain_messages`): on a 2-core machine that caps any agent
at ~14,000 messages/s, whatever the agent does. This consumer keeps all of faust's machinery
(group membership, assignment, table recovery, flow control, offset commits from acks) and changes
one thing: messages of topics that have a batch handler are collected per fetch and given to the
handler as one list, then acknowledged, so faust commits their offsets as it does for an agent's
events. Messages of every other topic (changelogs during recovery, ...) go the usual way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import Message

log = logging.getLogger("iis-portscan")

BatchHandler = Callable[[list[Message]], Awaitable[None]]


class BatchingConsumer(AIOKafkaConsumer):
    """faust's aiokafka consumer; hands fetches of the app's `batch_handlers` topics to them."""

    async def _drain_messages(self, fetcher: Any) -> None:  # the Fetcher service's loop
        callback = self.callback
        handlers: dict[str, BatchHandler] = getattr(self.app, "batch_handlers", {})
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        ack = self.ack
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                batches: dict[str, list[Message]] = {}
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in self.getmany(timeout=1.0):
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is not None and offset < r_offset:
                            continue  # already read (faust drops these too)
                        if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)  # compacted or aborted
                        topic = message.topic
                        if topic in handlers:
                            batch = batches.get(topic)
                            if batch is None:
                                batch = batches[topic] = []
                            batch.append(message)
                        else:
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        set_read_offset(tp, offset)
                    self.diag.unset_flag(CONSUMER_FETCHING)
                for topic, batch in batches.items():
                    await handlers[topic](batch)
                    for message in batch:
                        ack(message)
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("consumer stopped, shutting down")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            log.exception("draining messages failed: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class App(faust.App):
    """A faust.App whose consumer is a BatchingConsumer; register handlers in `batch_handlers`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers: dict[str, BatchHandler] = {}

    def _new_transport(self) -> Any:
        transport = super()._new_transport()
        transport.Consumer = BatchingConsumer
        return transport

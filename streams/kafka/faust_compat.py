"""Whole fetches to the router and the detector: faust's consumer, minus its per-message dispatch.

faust hands every fetched message to its streams one at a time, through two tasks and an
`asyncio.wait` per message (`Consumer._drain_messages`): that caps any agent's throughput, whatever
the agent does (`make bench` measures faust's per-event idiom beside ours: benchmarks/naive_faust.py).
This consumer keeps all of faust's machinery (group membership, assignment, table recovery, flow
control, offset commits from acks) and changes two things:

- records of topics that have a batch handler go to the handler as one fetch: aiokafka's records per
  topic partition, in offset order, without faust's `Message` objects. The handler acknowledges them by offset
  (`ack_through`) when their effect is durable, which may be a later checkpoint; faust commits the
  offset after it (`_new_offset`). The RocksDB table's changelog, during recovery and on standby
  replicas, goes the same way to `changelog_applier`; records of every other topic go faust's usual
  per-message way;
- the fetch wait: faust fixes aiokafka's `fetch_max_wait_ms` at 1500 ms, and a worker fed a steady
  stream was seen idle for about a second at a time between fetches with data waiting on the broker;
  the app's `fetch_wait_ms` (--batch-wait, default 100 ms) bounds that wait.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP

from streams.errors import JobError
from streams.kafka.ratelog import RateLimitedLog

log = logging.getLogger("iis-portscan")
notices = RateLimitedLog(log)
OFFSETS_ASK_INTERVAL_S = 5.0  # how often the broker is asked what no fetch has told (see `ask_offsets`)

BatchHandler = Callable[[dict[TP, Sequence[Any]]], Awaitable[None]]


class ConsumerThread(AIOKafkaConsumerThread):
    """faust's aiokafka consumer thread, with the app's fetch wait instead of faust's 1500 ms."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = getattr(self.consumer.app, "fetch_wait_ms", 1500)  # read at start()
        return consumer


class BatchingConsumer(AIOKafkaConsumer):
    """faust's aiokafka consumer; hands fetches of the app's `batch_handlers` topics to them."""

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._done_through: dict[TP, int] = {}  # batch topics: highest offset whose effect is durable
        self.read_through: dict[TP, int] = {}  # batch topics: highest offset handed to a handler
        self.stale_batches = 0  # fetches not handed on: a rebalance began, or the partition was paused
        self.last_progress = time.monotonic()  # when records were last handed to a handler
        self._waiting_since: float | None = None
        self._asked_end: dict[TP, int] = {}  # end offsets asked of the broker where no fetch reported one
        self._log_start: dict[TP, int] = {}  # first offsets of partitions read nothing from yet
        self._asked_at = 0.0

    def lag(self, tp: TP) -> int | None:
        """Records between the partition's end offset and the next one to process; None while unknown.

        The next one to process: after the last record handed to a handler; before any, the committed
        offset or the partition's first offset, whichever is later (a partition that never held a
        record, or whose records retention deleted, has nothing to process: lag 0). The end offset is
        what fetches report; until one has, what `ask_offsets` asked the broker."""
        try:
            end: int | None = self.highwater(tp)
        except Exception:  # not started, or the partition is not assigned any more
            return None
        if end is None or end < 0:
            end = self._asked_end.get(tp)
            if end is None:
                return None
        read = self.read_through.get(tp)
        if read is not None:
            next_offset: int | None = read + 1
        else:
            committed, start = committed_offset(self, tp), self._log_start.get(tp)
            next_offset = (
                start if committed is None else committed if start is None else max(committed, start)
            )
        if next_offset is None:
            return None
        return max(0, end - next_offset)

    async def ask_offsets(self, topics: Iterable[str]) -> None:
        """Ask the broker for the end and first offsets that `lag` needs and no fetch has given: of
        partitions with no lag known, and of those not read from since assignment with some lag (their
        committed offset may be behind the first offset retention left). Every OFFSETS_ASK_INTERVAL_S
        at most; called by the idle timer, so that an empty partition is caught up, not lagging forever."""
        now = time.monotonic()
        if now - self._asked_at < OFFSETS_ASK_INTERVAL_S:
            return
        self._asked_at = now
        wanted = [
            tp for tp, n in self.lags(topics).items() if n is None or (n and tp not in self.read_through)
        ]
        if not wanted:
            return
        try:
            ends = await self.highwaters(*wanted)
            starts = await self.earliest_offsets(*wanted)
        except Exception as exc:  # the broker is away: asked again at the next interval
            log.debug("asking offsets of %d partitions failed: %r", len(wanted), exc)
            return
        for tp, end in ends.items():
            if end is not None and end >= 0:
                self._asked_end[tp] = end
        for tp, start in starts.items():
            if start is not None and start >= 0:
                self._log_start[tp] = start

    def lags(self, topics: Iterable[str]) -> dict[TP, int | None]:
        """`lag` of every assigned partition of these topics."""
        wanted = set(topics)
        try:
            assigned = self.assignment()
        except Exception:
            return {}
        return {tp: self.lag(tp) for tp in assigned if tp.topic in wanted}

    def stalled_seconds(self, topics: Iterable[str]) -> float:
        """Seconds without progress while some partition of these topics has input waiting (since the
        later of the last progress and the first time input was seen waiting); 0 when caught up."""
        now = time.monotonic()
        if not any(n for n in self.lags(topics).values()):
            self._waiting_since = None
            return 0.0
        if self._waiting_since is None:
            self._waiting_since = now
        return now - max(self._waiting_since, self.last_progress)

    def ack_through(self, done: Mapping[TP, int]) -> None:
        """Acknowledge every fetched record of each partition up to and including its offset: what a
        batch handler calls instead of `ack(message)` per message (records of a partition are handled
        in order, so the highest offset says it all)."""
        through = self._done_through
        for tp, offset in done.items():
            if offset > through.get(tp, -1):
                through[tp] = offset
                self._n_acked += 1

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        yield from super()._filter_tps_with_pending_acks(topics)
        for tp in list(self._done_through):
            if topics is None or tp in topics or tp.topic in topics:
                yield tp

    def _new_offset(self, tp: TP) -> int | None:
        offset = self._done_through.pop(tp, None)
        if offset is not None:
            return offset + 1  # the next offset to read, as Kafka commits it
        return super()._new_offset(tp)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._done_through.pop(tp, None)
            self.read_through.pop(tp, None)
            self._asked_end.pop(tp, None)
            self._log_start.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def _drain_messages(self, fetcher: Any) -> None:  # the Fetcher service's loop
        callback = self.callback
        handlers: dict[str, BatchHandler] = getattr(self.app, "batch_handlers", {})
        state_topics: set[str] = getattr(self.app, "state_topics", set())
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.get
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        to_message = self._to_message
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                await self.sleep(0)
                if self.should_stop:
                    break
                records, active = await self._wait_next_records(timeout=1.0)
                generation_id = self.app.consumer_generation_id
                batches: dict[str, dict[TP, Sequence[Any]]] = {}
                # Records taken from aiokafka but not handed on: (first offset, read offset then) per
                # partition. aiokafka's position has moved past them, so `_hand_back` seeks back to them.
                unhanded: dict[TP, tuple[int, int | None]] = {}
                fetched = list((records or {}).items())
                for i, (tp, tp_records) in enumerate(fetched):
                    if not self.flow_active or self.app.consumer_generation_id != generation_id:
                        for later_tp, later in fetched[i:]:  # a rebalance began since the fetch
                            if later:
                                unhanded[later_tp] = (later[0].offset, get_read_offset(later_tp))
                        break
                    if not (active is None or tp in active or tp in self._buffered_partitions):
                        if tp_records:  # paused since the fetch
                            unhanded[tp] = (tp_records[0].offset, get_read_offset(tp))
                        continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    r_offset = get_read_offset(tp)
                    if r_offset is not None and tp_records[0].offset < r_offset:
                        # already read; after a seek the read offset is the next to read (as in faust)
                        tp_records = [r for r in tp_records if r.offset >= r_offset]
                        if not tp_records:
                            continue
                    if tp.topic in handlers:
                        batches.setdefault(tp.topic, {})[tp] = tp_records
                        set_read_offset(tp, tp_records[-1].offset)
                        self.read_through[tp] = tp_records[-1].offset
                        continue
                    for record in tp_records:
                        offset = record.offset
                        r_offset = get_read_offset(tp)
                        if r_offset and offset - r_offset > 1 and acks_enabled_for(tp.topic):
                            await self._add_gap(tp, r_offset + 1, offset)  # compacted, aborted
                        await self.wait_first(callback(to_message(tp, record)), self.suspend_flow.wait())
                        set_read_offset(tp, offset)
                self.diag.unset_flag(CONSUMER_FETCHING)
                pending = list(batches.items())
                while pending:
                    if not self.flow_active or self.app.consumer_generation_id != generation_id:
                        # A rebalance began since the fetch (possibly while the previous handler ran):
                        # handled now, these records could reach state that recovery is still
                        # rebuilding. They are read again (`_hand_back`).
                        for _, unhandled in pending:
                            for tp, left in unhandled.items():
                                unhanded[tp] = (left[0].offset, left[-1].offset)
                        break
                    topic, batch = pending.pop(0)
                    await handlers[topic](batch)  # it acknowledges them (ack_through), now or later
                if unhanded:
                    await self._hand_back(unhanded)
                if any(topic not in state_topics for topic in batches):
                    self.last_progress = time.monotonic()  # input handled (not a changelog applied)
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
        except JobError as exc:
            if exc.retriable and self.transport.app.should_stop:
                log.warning("stopping with input not checkpointed (it will be read again): %s", exc)
                return
            log.error("%s", exc)
            raise
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

    async def _hand_back(self, unhanded: Mapping[TP, tuple[int, int | None]]) -> None:
        """Seek each partition of a fetch that was not handed on back to its first record, so that it
        is read again: aiokafka's position is past it, and without the seek a later acknowledgement
        would commit over the gap (faust seeks every partition to its committed offset after a
        rebalance, but a fetch that returns after that seek - parked across the rebalance - would be
        lost). aiokafka returns a fetch only when it starts at the partition's position, so the seek
        undoes exactly this fetch. Skipped for a partition no longer assigned (its next owner reads
        from the committed offset) and for one seeked since (its read offset moved: faust's seek wins)."""
        try:
            assigned = self.assignment()
        except Exception:
            assigned = set()
        for tp, (first, read_then) in unhanded.items():
            self.stale_batches += 1
            if self.read_through.get(tp, -1) >= first:
                self.read_through[tp] = first - 1
            if tp not in assigned or self._read_offset.get(tp) != read_then:
                continue
            try:
                await self.seek(tp, first)
            except Exception as exc:  # unassigned meanwhile: its next owner reads from the committed offset
                log.warning("could not seek %s back to %d after a fetch not handed on: %r", tp, first, exc)
                continue
            notices.note(
                "fetch-not-handed-on",
                1,
                "a fetch of %s was not handed on (a rebalance began, or the partition was paused): "
                "seeked back to offset %d to read it again",
                tp,
                first,
            )


class App(faust.App):
    """A faust.App whose consumer is a BatchingConsumer; register handlers in `batch_handlers`,
    functions that tell the job's clients to stop waiting for their services in `stopping_hooks`,
    and coroutines to run before the consumer stops (while tables are open) in `before_consumer_stop`."""

    def __init__(
        self, *args: Any, fetch_wait_ms: int = 1500, drain_timeout_s: float = 30.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers: dict[str, BatchHandler] = {}
        self.state_topics: set[str] = set()  # batch topics that are changelogs: applying them is not progress
        self.stopping_hooks: list[Callable[[], None]] = []
        self.before_consumer_stop: list[Callable[[], Awaitable[None]]] = []
        self.after_consumer_stop: list[Callable[[], Awaitable[None]]] = []
        self.fetch_wait_ms = fetch_wait_ms
        self.drain_timeout_s = drain_timeout_s

    def _drain_deadline(self) -> None:
        """The drain's bound: whatever still runs then, the process exits (non-zero). Nothing is lost:
        input whose effect was not checkpointed is not committed, and the next worker reads it."""
        log.error(
            "shutdown did not finish within the drain timeout (%.0fs): exiting; input since the last "
            "checkpoint will be read again",
            self.drain_timeout_s,
        )
        logging.shutdown()
        os._exit(3)

    async def _stop_consumer(self) -> None:
        watchdog = threading.Timer(self.drain_timeout_s, self._drain_deadline)
        watchdog.daemon = True
        watchdog.start()
        for stopping in self.stopping_hooks:  # first: a handler waiting for Redis would hold the lock
            stopping()
        for hook in self.before_consumer_stop:
            try:
                await hook()
            except JobError as exc:  # the input since the last checkpoint is read again: stop anyway
                log.warning("no checkpoint at shutdown (input since the last one is read again): %s", exc)
            except Exception as exc:
                log.exception("before stopping the consumer: %r", exc)
        await super()._stop_consumer()
        for hook in self.after_consumer_stop:
            try:
                await hook()
            except Exception as exc:
                log.warning("closing: %r", exc)

    def _new_transport(self) -> Any:
        transport = super()._new_transport()
        transport.Consumer = BatchingConsumer  # type: ignore[misc]  # faust reads it from the instance
        return transport


# ---------------------------------------------------------------------------------------- tables


def table_partition_db(table: Any, partition: int) -> Any:
    """The RocksDB database (rocksdict) faust opened for one partition of a table."""
    return table.data._db_for_partition(partition)


def table_offset_key(table: Any) -> bytes:
    """The key under which faust's RocksDB store keeps the changelog offset it has applied."""
    return bytes(table.data.offset_key)


class FaustTable:
    """A faust Table as streams.state.rocksdb.RocksTableStore sees it (state.rocksdb.LocalTable)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    @property
    def changelog(self) -> str:
        return str(self.table.changelog_topic.get_topic_name())

    def db(self, partition: int) -> Any:
        return table_partition_db(self.table, partition)

    def offset_key(self) -> bytes:
        return table_offset_key(self.table)


def changelog_applier(app: Any, table: Any) -> BatchHandler:
    """A batch handler that applies a RocksDB table's changelog a fetch at a time, for recovery and
    for standby replicas, in place of faust's per-record path.

    faust hands each changelog record to its recovery service through a `Message`, an `Event`, two
    tasks, a queue and an `asyncio.wait_for` (`Recovery._slurp_changelogs`), then writes the records in
    buffers of 1,000, so a standby replica cost its worker about as much as its own input, and a new
    host waited minutes for its state (`make bench` measures both paths: --changelog-restore). Here
    a fetch of a changelog partition becomes one RocksDB WriteBatch holding its records and the offset
    applied (what faust's `apply_changelog_batch` and `set_persisted_offset` write), and the recovery
    service's offsets move as its own loop would move them, so that its progress, its end of recovery
    and its standby bookkeeping are unchanged. Records at or below the offset recovery already holds
    (read twice after a seek) are skipped, as faust skips them."""
    from rocksdict import WriteBatch, WriteOptions

    recovery = app.tables.recovery
    offset_key = table_offset_key(table)
    # The end signal: faust's loop clears it on its next record, ours sets it once per recovery, so a new
    # recovery must clear it as it starts: a stale signal would end the next recovery before it read
    # anything (a rebalance test found it).
    started = recovery._set_recovery_started

    def set_recovery_started() -> None:
        recovery.signal_recovery_end.clear()
        started()

    recovery._set_recovery_started = set_recovery_started
    app.state_topics.add(table.changelog_topic.get_topic_name())
    unlogged = WriteOptions()
    unlogged.disable_wal = True  # type: ignore[method-assign,assignment]  # as the store's own writes: the changelog is the log (state.rocksdb)

    async def apply(fetch: dict[TP, Sequence[Any]]) -> None:
        applied_standby = False
        for tp, records in fetch.items():
            if tp in recovery.active_tps:
                offsets = recovery.active_offsets
            elif tp in recovery.standby_tps:
                offsets = recovery.standby_offsets
                applied_standby = True
            else:
                continue  # no longer ours (a rebalance): the next owner reads it
            seen = offsets.get(tp)
            if seen is not None and records[0].offset <= seen:
                records = [r for r in records if r.offset > seen]
                if not records:
                    continue
            batch = WriteBatch(raw_mode=True)
            put, delete = batch.put, batch.delete
            for record in records:
                if record.value is None:
                    delete(record.key)
                else:
                    put(record.key, record.value)
            last = records[-1].offset
            put(offset_key, str(last).encode())
            table_partition_db(table, tp.partition).write(batch, unlogged)
            offsets[tp] = last
        # What faust's loop does after each record, once per fetch.
        if recovery.in_recovery and not recovery.need_recovery():
            recovery.signal_recovery_end.set()  # the recovery service ends it (Recovery._restart_recovery)
        if applied_standby and not app.tables.standbys_ready and not recovery.standby_remaining_total():
            app.tables.on_standbys_ready()

    return apply


def recovery_state(app: Any) -> tuple[bool, int]:
    """(in recovery, active changelog records left to recover) of the app's tables."""
    recovery = app.tables.recovery
    if not recovery.in_recovery:
        return False, 0
    return True, int(recovery.active_remaining_total())


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """The offset faust last committed for a partition (the next to read), if known."""
    return consumer._committed_offset.get(tp)  # type: ignore[no-any-return]

"""The detector: batches of the keyed topic in, alerts and dead letters out, state written.

Per batch and partition: parse; load the windows the engine asks for (from the checkpoint's pending
records first, then the store); engine step; send alerts and dead letters (without waiting).
Per checkpoint of a partition (every `checkpoint_ms`; of all partitions on revocation and at shutdown):
wait until the broker has acknowledged every alert and dead letter sent, write the partition's changed
records once, then acknowledge its input messages, whose offsets faust commits after. So state never
runs ahead of what was published, and offsets never run ahead of state: a crash replays at most a
checkpoint's input, which the engine counts once (see core.engine and core.checkpoint).

Checkpoints are staggered: after a batch, the partitions due (the longest-waiting first) are
checkpointed in up to CHECKPOINT_SLOTS groups per interval, not all at once. A checkpoint's serialization
and writes stop the processing of input while they run; a group's share of them is a fraction of the
worker's, so an event that arrives during a checkpoint waits that much less for its alert (`make bench`
measures the early-alert latency). The slots bound how often a worker waits
for the broker's acknowledgements, whatever its partition count. Idle housekeeping checkpoints every
partition due.

With a store that sends a log ahead (RocksDB's changelog: `WindowStore.stages_writes`), a staggered
checkpoint is completed by the next one: it sends the changelog records and returns; the next waits for
their acknowledgement (they have had a checkpoint's time to arrive), writes the RocksDB batches and only
then acknowledges that checkpoint's input. Until then reads of its windows are served from its bytes. The
order of effects is unchanged - alerts delivered, changelog delivered, local state, input acknowledged -
so is what a crash can leave; the broker's round trip no longer stops the processing of input.

Bounded memory (`max_open_windows`): after each fetch, when the engines hold more open windows than the
bound, the least recently touched of each engine (in proportion to what each holds) are spilled. Their
latest records are already on their way: a changed window is in the partition's pending writes, which
reach the store through the checkpoint, in its order, and serve reads until then; an unchanged one is
stored as it is (so a spill costs no write). When a step's watermark closes a bin with spilled windows,
the bin's windows are read back - pending writes first, then the staged checkpoint, then the store, in
chunks - and closed before the step's alerts are sent (core.engine's docstring has the argument). A
restore reads the meta record, then only the windows that can still be open, keeping at most the
bound's room in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streams.core.checkpoint import PendingWrites
from streams.core.engine import PartitionEngine, StepResult, StreamParams
from streams.core.native import Decode, Encode, python_decode, python_encode
from streams.core.notify import is_state_key
from streams.core.records import IISEvent
from streams.core.shippers import MessageReader
from streams.core.state_records import NO_TIME, Meta, WindowRecord, position
from streams.core.tenant import TenantSpec
from streams.core.windows import START_DIGITS
from streams.errors import Fenced
from streams.kafka.gate import Gate
from streams.kafka.messages import (
    SEQ_SHIFT,
    DeadLetter,
    MessageDecoder,
    dead_letter_of,
    source_position,
    wall_ms,
)
from streams.kafka.metrics import Metrics
from streams.kafka.publisher import Publisher
from streams.kafka.ratelog import RateLimitedLog
from streams.state.base import WindowStore

log = logging.getLogger("iis-portscan")
notices = RateLimitedLog(log)
CHECKPOINT_SLOTS = 4  # checkpoints per interval at most (see the module docstring)


@dataclass(slots=True)
class _Staged:
    """A checkpoint whose changelog was sent, not yet acknowledged by the broker (see the module
    docstring): its records' bytes serve reads until `commit_staged` has written them."""

    handle: object  # the store's
    changes: dict[int, dict[bytes, bytes]]
    expiries: dict[int, int]
    done: dict[Any, int]  # input offsets it acknowledges once committed


class Detector:
    """Per-partition engines over one store; all mutation happens under one lock.

    `acknowledge` receives, per topic partition, the highest input offset whose effect a checkpoint
    made durable (the app passes the consumer's `ack_through`, so faust commits the offset after it)."""

    def __init__(
        self,
        params: StreamParams,
        store: WindowStore,
        publisher: Publisher,
        acknowledge: Callable[[dict[Any, int]], None],
        checkpoint_ms: int = 1000,
        max_pending: int = 500_000,
        clock: Callable[[], int] = wall_ms,
        monotonic: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        trust_headers: bool = True,
        reader: MessageReader | None = None,
        max_open_windows: int = 0,
        gate: Gate | None = None,
        tenant: TenantSpec | None = None,
        decode: Decode = python_decode,
        encode: Encode = python_encode,
        partition: type[PartitionEngine] = PartitionEngine,
    ) -> None:
        self.params = params
        self.max_open = max_open_windows  # 0: unbounded
        self.store = store
        self.publisher = publisher
        self.acknowledge = acknowledge
        self.checkpoint_s = checkpoint_ms / 1000
        self.max_pending = max_pending  # records held: a checkpoint is due when more change
        self.clock = clock  # wall clock, ms: idleness and the skew bound
        self.monotonic = monotonic  # seconds: when checkpoints are due
        # Source positions in `src-*` headers are trusted only on the app's own repartition topic: on an
        # input topic any producer could set them and make real events look already applied.
        self.trust_headers = trust_headers
        # tenant: see streams.kafka.messages; decode, encode, partition: the engine's (core.native)
        self.decoder = MessageDecoder(reader, tenant, decode)
        self.encode_records = encode
        self.partition_engine = partition  # the engine's class: core.engine's, or its native loop's
        # Partitions revoked from this worker and not assigned again since: a batch fetched before the
        # revocation is not processed, and their engine is not re-created (two owners of a window on
        # shared Redis). Their new owner reads them from the committed offset.
        self.revoked: set[int] = set()
        self.engines: dict[int, PartitionEngine] = {}
        self.pending: dict[int, PendingWrites] = {}
        self.unacked: dict[Any, int] = {}  # topic partition -> highest offset processed
        self.checkpointed: dict[int, float] = {}  # partition -> when it was last checkpointed (monotonic)
        self.last_checkpoint = 0.0  # monotonic, of any partition
        self.last_checkpoint_wall = 0.0
        self.broken: Exception | None = None  # a checkpoint failed: see `_checkpoint`
        self.staged: _Staged | None = None
        self.batches_since_tick = 0
        self.lock = asyncio.Lock()
        self.metrics = metrics or publisher.metrics
        self.gate = gate  # allowlist, entities, notifications: where alerts leave (streams.kafka.gate)

    def assign(self, partitions: Iterable[int]) -> None:
        """A rebalance's new assignment: these partitions are this worker's again."""
        self.revoked.difference_update(partitions)

    async def engine(self, partition: int) -> PartitionEngine:
        """The partition's engine, restored from the store the first time (after faust's recovery).

        Only for an owned partition: re-creating the engine of a partition `drop` released would
        make two workers write its windows (on shared Redis)."""
        engine = self.engines.get(partition)
        if engine is None:
            if partition in self.revoked:
                raise RuntimeError(f"partition {partition} was revoked from this worker")
            meta = Meta.from_bytes(await self.store.load_meta(partition))
            engine = self.partition_engine(self.params, meta, self.clock())
            limit = None
            if self.max_open:
                limit = max(0, self.max_open - self.open_windows())
            # Notification state records share the window keys' order (by period end) and live as long as
            # windows: with notifications every one of them is read (a late alert of an ended period must
            # find it), so the scan starts at the beginning; `restore` skips the closed windows.
            notifying = self.gate if self.gate is not None and self.gate.notify is not None else None
            notes: list[tuple[bytes, bytes]] = []
            start = 0 if notifying else engine.open_from_ms()
            async for chunk in self.store.scan_windows(partition, start):
                if notifying:
                    notes.extend(kv for kv in chunk if is_state_key(kv[0]))
                    chunk = [kv for kv in chunk if not is_state_key(kv[0])]
                engine.restore(chunk, limit)
            if notifying:
                await notifying.restore(partition, notes)
            self.engines[partition] = engine
            self.pending[partition] = PendingWrites()
            self.checkpointed[partition] = self.monotonic()
            log.info(
                "partition %d: restored %d open windows (%d more left in the store), watermark %s",
                partition,
                engine.open_count(),
                engine.spilled_count(),
                meta.watermark,
            )
        return engine

    async def drop(self, partitions: Iterable[int]) -> None:
        """Checkpoint, then forget engines of partitions this worker no longer owns (their state stays
        in the store)."""
        async with self.lock:
            await self._checkpoint(final=True)
            for p in self._forget(partitions):
                log.info("partition %d: revoked", p)

    def _forget(self, partitions: Iterable[int]) -> list[int]:
        """Let partitions go (revoked, or claimed by another worker): their engines, changes and
        notification state; their state stays in the store. Returns those that had an engine."""
        partitions = list(partitions)
        if self.gate is not None:
            self.gate.drop(partitions)
        had = []
        for p in partitions:
            self.revoked.add(p)
            self.pending.pop(p, None)
            self.checkpointed.pop(p, None)
            if self.engines.pop(p, None) is not None:
                had.append(p)
        return had

    async def close(self) -> None:
        """Checkpoint what was processed (at shutdown), so a restart does not replay it."""
        async with self.lock:
            await self._checkpoint(final=True)

    # ------------------------------------------------------------------ batches

    async def process(self, fetch: Mapping[Any, Sequence[Any]]) -> None:
        """One fetch from the detector's source topic: records (topic, partition, offset, key, value,
        headers) per topic partition, in offset order; acknowledged by the checkpoint that makes their
        effect durable. Records of a partition revoked since they were fetched are left alone: the
        partition's new owner reads them from the committed offset."""
        async with self.lock:
            started = time.perf_counter()
            unacked = self.unacked
            revoked = self.revoked
            for tp, records in fetch.items():
                if tp.partition in revoked:
                    self.metrics.counts["stale_batches_skipped"] += 1
                    continue
                await self._process_partition(tp.partition, records)
                unacked[tp] = records[-1].offset
            self._bound_open()
            self.metrics.counts["batches"] += 1
            self.batches_since_tick += 1
            self.metrics.seconds["processing"] += time.perf_counter() - started
            due = self._due(staggered=True)
            if due:
                await self._checkpoint(due)

    async def _process_partition(self, partition: int, msgs: Sequence[Any]) -> None:
        now = self.clock()
        engine = await self.engine(partition)
        batch: list[tuple[int, IISEvent]] = []
        origin: list[Any] = []  # the message of each batch item
        in_envelope: dict[int, int] = {}  # batch item -> its index in the message's envelope
        dead: list[DeadLetter] = []
        append, from_message = batch.append, origin.append
        trusted = self.trust_headers
        events, stamp = self.decoder.events, self.decoder.stamp
        own_source = position(partition, 0)
        singles = self.decoder.batch([msg.value for msg in msgs])  # `single` of each, in one call
        for msg, event in zip(msgs, singles):
            if trusted and msg.headers:  # forwarded by the router: the original input position
                pos = source_position(msg, partition, trusted)
            else:  # the hot path, inline: own partition and offset
                pos = own_source | (msg.offset << SEQ_SHIFT)
            if event is not None:  # the hot path: one valid record
                if stamp is None or stamp(msg, event, None, now, dead, trusted):
                    append((pos, event))
                    from_message(msg)
                continue
            for index, event in events(msg, now, dead, trusted):
                if stamp is not None and not stamp(msg, event, index, now, dead, trusted):
                    continue
                if index is not None:
                    in_envelope[len(batch)] = index
                append((pos | (index or 0), event))
                from_message(msg)
        self.metrics.counts["messages"] += len(msgs)
        self.metrics.counts["events"] += len(batch)
        plan = engine.plan(batch)
        loaded = await self._load(partition, plan.load) if plan.load else {}
        out = engine.step(plan, loaded, now)
        if out.closing:
            await self._close_spilled(partition, engine, out)
        if out.already_applied:
            self.metrics.counts["events_already_applied"] += out.already_applied
            notices.note(
                "already-applied",
                out.already_applied,
                "partition %d: %d events skipped as already applied (input read again after a restart "
                "or a rebalance)",
                partition,
                out.already_applied,
            )
        for i, error in out.rejected:
            dead.append(dead_letter_of(error, origin[i], in_envelope.get(i), now, trusted))
        self._emit(partition, out, dead)
        # A partition is idle when no input arrives, not while we are busy (or waiting for Redis).
        engine.last_input_wall_ms = self.clock()

    async def _load(self, partition: int, keys: list[bytes]) -> dict[bytes, bytes | WindowRecord | None]:
        """The records of `keys`: changed since the last checkpoint (held here), else staged by it (sent
        to the changelog, not yet in the store), else from the store."""
        pending = self.pending[partition]
        staged = self.staged.changes.get(partition, {}) if self.staged is not None else {}
        loaded: dict[bytes, bytes | WindowRecord | None] = {}
        missing = []
        for key in keys:
            rec: bytes | WindowRecord | None = pending.get(key)
            if rec is None:
                rec = staged.get(key)
            if rec is None:
                missing.append(key)
            else:
                loaded[key] = rec
        if missing:
            loaded.update(await self.store.get_many(partition, missing))
        return loaded

    def _bound_open(self) -> None:
        """Spill the least recently touched open windows past `max_open_windows`, from each engine in
        proportion to the open windows it holds (see the module docstring)."""
        if not self.max_open:
            return
        total = self.open_windows()
        excess = total - self.max_open
        if excess <= 0:
            return
        for engine in self.engines.values():
            share = min(engine.open_count(), -(-excess * engine.open_count() // total))
            if share:
                # The spilled records need no write of their own: every change of an open window is in
                # the writes of the step that made it, which `pending` holds (and serves reads from)
                # until a checkpoint has written them; a window not pending is stored as it is.
                engine.spill(share)
                self.metrics.counts["windows_spilled"] += share

    async def _close_spilled(self, partition: int, engine: PartitionEngine, out: StepResult) -> None:
        """Close the spilled windows of the bins `out.closing` names, before `out` is emitted: each
        window's latest record is its pending write, else the staged checkpoint's, else the store's."""
        pending = self.pending[partition]
        staged = self.staged.changes.get(partition, {}) if self.staged is not None else {}
        for start, closed in out.closing.items():
            prefix = b"%0*d" % (START_DIGITS, start)
            done = set(closed)
            newer: list[tuple[bytes, bytes | WindowRecord]] = []
            for key, rec in pending.items_from(prefix):
                if key not in done and not is_state_key(key):  # a window, not notification state
                    done.add(key)
                    newer.append((key, rec))
            for key, data in staged.items():
                if key.startswith(prefix) and key not in done and not is_state_key(key):
                    done.add(key)
                    newer.append((key, data))
            engine.close_spilled(out, newer)
            count = len(newer)
            async for chunk in self.store.scan_windows(partition, start, start + 1):
                fresh = [(key, data) for key, data in chunk if key not in done and not is_state_key(key)]
                count += len(fresh)
                engine.close_spilled(out, fresh)
            self.metrics.counts["spilled_windows_closed"] += count
        out.closing = {}

    async def tick(self, partitions: Iterable[int]) -> None:
        """Idle housekeeping (timer, every second) for the owned partitions that are caught up: their
        position is at the end offset. A lagging partition is never idle, however long its batches
        take to come (a slow store, a busy worker). And checkpoints: see the comment below."""
        async with self.lock:
            now = self.clock()
            for partition in partitions:
                if partition in self.revoked:
                    continue
                engine = await self.engine(partition)
                out = engine.tick(now)
                if out.closing:
                    await self._close_spilled(partition, engine, out)
                if out.alerts or out.writes or out.expire_before_ms is not None:
                    self._emit(partition, out, [])
            overdue = self.overdue(now)
            if overdue:
                notices.note(
                    "overdue",
                    1,
                    "%d open windows should have been closed by idleness (their partitions had no input "
                    "for the idle timeout + one bin): is a partition never caught up?",
                    overdue,
                )
            # Idle (no batch since the last tick): every partition due, and the staged checkpoint
            # completed. Under load, as after a batch: one group, staged.
            idle = self.batches_since_tick == 0
            self.batches_since_tick = 0
            due = self._due(staggered=not idle)
            if due or (idle and self.staged is not None):
                await self._checkpoint(due, final=idle)

    def _emit(self, partition: int, out: StepResult, dead: list[DeadLetter]) -> None:
        """Send a step's alerts and dead letters, and hold its writes for the next checkpoint."""
        if self.gate is not None and (out.alerts or self.gate.notifiers):
            # The gate's notification state is written with this step's records (same checkpoint).
            out.alerts, notes = self.gate.judge(partition, out.alerts, self.engines[partition].meta.watermark)
            out.writes.update(notes)  # type: ignore[arg-type]
        for alert in out.alerts:
            self.metrics.alerts[alert["Phase"]] += 1
            log.info(
                "alert %s rev %d %s: %s%s -> %s/%s %d ports (%d distinct) in %s",
                alert["Phase"],
                alert["Revision"],
                alert["AlertId"],
                f"tenant {alert['TenantId']}: " if "TenantId" in alert else "",  # escaped like the rest
                alert["cIP"],
                alert["Computer"],
                alert["sIP"],
                alert["portCount"],
                alert["DistinctPortCount"],
                alert["TimeGenerated"],
            )
        for _, record in dead:
            self.metrics.dead[record["Reason"]] += 1
        t0 = time.perf_counter()
        if out.alerts or dead:
            self.publisher.send(out.alerts, dead)
        self.pending[partition].add(out)
        self.metrics.seconds["publishing"] += time.perf_counter() - t0

    def _due(self, staggered: bool) -> list[int]:
        """The partitions to checkpoint now: those with changes or unacknowledged input whose last
        checkpoint is `checkpoint_ms` old, the longest-waiting first; `staggered`, one group of them
        (a CHECKPOINT_SLOTS-th of the partitions), at most once per CHECKPOINT_SLOTS-th of the interval.
        Every partition with changes when more than `max_pending` records are held."""
        with_changes = [p for p, pending in self.pending.items() if pending]
        if sum(len(self.pending[p]) for p in with_changes) > self.max_pending:
            return with_changes
        now = self.monotonic()
        limit = None
        if staggered:
            if now - self.last_checkpoint < self.checkpoint_s / CHECKPOINT_SLOTS:
                return []
            limit = -(-len(self.checkpointed) // CHECKPOINT_SLOTS) or 1
        cutoff = now - self.checkpoint_s
        waiting = set(with_changes)
        waiting.update(tp.partition for tp in self.unacked)
        due = sorted((self.checkpointed.get(p, 0.0), p) for p in waiting)
        return [p for at, p in due[:limit] if at <= cutoff]

    async def _checkpoint(self, partitions: Iterable[int] | None = None, final: bool = False) -> None:
        """Deliver what was sent, write the changed records of `partitions` (all when None), then
        acknowledge their input; complete the staged checkpoint first. Not `final`, a store that
        sends a log ahead is left with this one staged (see the module docstring).

        A checkpoint that fails leaves the detector broken: every later one raises the same error,
        so nothing is acknowledged after a delivery or a write that did not happen (a later checkpoint
        would otherwise find nothing pending and acknowledge input whose effect was lost). The input
        since the last good checkpoint is read again by the next worker."""
        if self.broken is not None:
            raise self.broken
        try:
            await self._checkpoint_once(None if partitions is None else set(partitions), final)
        except Exception as exc:
            self.broken = exc
            raise

    async def _checkpoint_once(self, chosen: set[int] | None, final: bool) -> None:
        t0 = time.perf_counter()
        await self._commit_staged()
        await self.publisher.deliver()
        t1 = time.perf_counter()
        changes: dict[int, dict[bytes, bytes]] = {}
        expiries: dict[int, int] = {}
        for partition, pending in self.pending.items():
            if not pending or (chosen is not None and partition not in chosen):
                continue
            writes, expire_before = pending.encode(self.params.rule, self.encode_records)
            if writes:
                changes[partition] = writes
                self.metrics.counts["records_written"] += len(writes)
            if expire_before is not None:
                expiries[partition] = expire_before
        if chosen is None:
            done = dict(self.unacked)
        else:
            done = {tp: offset for tp, offset in self.unacked.items() if tp.partition in chosen}
        if self.store.stages_writes and changes:
            # Sent now, written and acknowledged by the next checkpoint (or at once when final).
            self.staged = _Staged(self.store.stage(changes), changes, expiries, done)
        else:
            while changes:
                try:
                    await self.store.write_partitions(changes)
                    break
                except Fenced as exc:  # another worker owns these now: theirs to write, not ours
                    self._let_go(exc.partitions)
                    lost = set(exc.partitions)
                    changes = {p: c for p, c in changes.items() if p not in lost}
                    expiries = {p: e for p, e in expiries.items() if p not in lost}
                    done = {tp: offset for tp, offset in done.items() if tp.partition not in lost}
            await self._expire(expiries)
            if done:
                self.acknowledge(done)
        for tp in done:
            self.unacked.pop(tp, None)
        for partition, pending in self.pending.items():
            if chosen is None or partition in chosen:
                pending.clear()  # written, or staged with its bytes serving reads (see `_load`)
        if final:
            await self._commit_staged()
        now = self.monotonic()
        for partition in self.checkpointed if chosen is None else chosen:
            if partition in self.checkpointed:
                self.checkpointed[partition] = now
        self.last_checkpoint = now
        self.last_checkpoint_wall = time.time()
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - t0)
        seconds = self.metrics.seconds
        seconds["publishing"] += t1 - t0
        seconds["state_writing"] += time.perf_counter() - t1
        self.metrics.counts["checkpoints"] += 1

    def _let_go(self, partitions: Iterable[int]) -> None:
        """Partitions another worker claimed in the shared store (streams.errors.Fenced): forget their
        engines, changes and unacknowledged input, as a revocation does, without writing anything. The
        new owner reads their input from the committed offset; this worker takes them again only when
        a rebalance assigns them to it (`assign`)."""
        partitions = list(partitions)
        self._forget(partitions)
        for p in partitions:
            for tp in [tp for tp in self.unacked if tp.partition == p]:
                del self.unacked[tp]
            self.metrics.counts["partitions_fenced"] += 1
            log.warning(
                "partition %d: claimed by another worker in the shared store; its changes since the "
                "last checkpoint are not written (the new owner reads that input again)",
                p,
            )

    async def _commit_staged(self) -> None:
        """Complete the staged checkpoint: wait for its changelog, write it, expire, acknowledge."""
        staged = self.staged
        if staged is None:
            return
        await self.store.commit_staged(staged.handle)
        await self._expire(staged.expiries)
        self.staged = None
        if staged.done:
            self.acknowledge(staged.done)

    async def _expire(self, expiries: dict[int, int]) -> None:
        for partition, expire_before in expiries.items():
            self.metrics.counts["windows_expired"] += await self.store.expire(partition, expire_before)

    def open_windows(self) -> int:
        """Open windows held in memory, of every partition."""
        return sum(engine.open_count() for engine in self.engines.values())

    def overdue(self, now_ms: int) -> int:
        """Open windows idleness should have closed (PartitionEngine.overdue_count), of every partition."""
        return sum(engine.overdue_count(now_ms) for engine in self.engines.values())

    def spilled_windows(self) -> int:
        """Open windows spilled to the store (past --max-open-windows), of every partition."""
        return sum(engine.spilled_count() for engine in self.engines.values())

    def gauges(self) -> dict[str, float]:
        return {
            "open_windows": self.open_windows(),
            "spilled_windows": self.spilled_windows(),
            "partitions": len(self.engines),
        }

    def clocks(self, now_ms: int) -> tuple[dict[int, float], dict[int, float]]:
        """Per partition that has seen an event: (event-time lag, watermark), in seconds."""
        lag: dict[int, float] = {}
        watermark: dict[int, float] = {}
        for partition, engine in self.engines.items():
            meta = engine.meta
            if meta.max_event_ms != NO_TIME:
                lag[partition] = (now_ms - meta.max_event_ms) / 1000
            if meta.watermark != NO_TIME:
                watermark[partition] = meta.watermark / 1000
        return lag, watermark

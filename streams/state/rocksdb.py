"""RocksDB state through a faust table: local rocksdict files plus a compacted changelog topic.

faust owns the parts it does well: opening one RocksDB per partition under the data dir, recovering
a partition from the changelog when it moves to this worker, and standby replicas. We bypass the
table's per-update API (which resolves partitions from the "current event" and would write the whole
value to the changelog on every event): each batch sends one changelog record per changed window
through the worker's librdkafka producer, waits for the acknowledgements, then writes one RocksDB
WriteBatch and records the changelog offset it holds (what faust's table does per record), so a
restart on the same disk recovers only what came after. Changelog first: a crash in between leaves
the changelog ahead of the disk, which recovery repairs, never behind it.

Our batches skip RocksDB's write-ahead log (most of a write's cost): the changelog is the log. The
changelog offset goes into the same batch as the records (faust's `set_persisted_offset` would write it
apart, through the WAL, and could then survive a crash that the records did not), so whatever a crash
leaves on disk - the last flushed memtable - is a consistent state with the offset it holds, and faust's
recovery replays the changelog after that offset. RocksDB flushes unlogged writes when it closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Protocol

from rocksdict import WriteBatch, WriteOptions

from streams.core.windows import META_KEY, START_DIGITS, is_window_key, key_start_ms
from streams.state.base import SCAN_CHUNK, ChangelogProducer, WindowStore

_WINDOW_KEY_FIRST = b"0"  # window keys start with the 13-digit window start


class LocalTable(Protocol):
    """What the store needs of faust's table (streams.kafka.faust_compat.FaustTable gives it): the
    adapter hands it in, so this module knows nothing of faust."""

    @property
    def changelog(self) -> str:
        """The name of the table's changelog topic."""
        ...

    def db(self, partition: int) -> Any:
        """The rocksdict database faust opened for one partition."""
        ...

    def offset_key(self) -> bytes:
        """The key under which faust keeps the changelog offset a database has applied."""
        ...


class RocksTableStore(WindowStore):
    """WindowStore over a faust Table whose store is rocksdb://; it stages writes (its changelog)."""

    stages_writes = True

    def __init__(self, table: LocalTable, producer: ChangelogProducer) -> None:
        self.table = table
        self.producer = producer
        self.changelog = table.changelog
        self._unlogged = WriteOptions()
        self._unlogged.disable_wal = True  # type: ignore[method-assign,assignment]  # a property (the stub: a method)

    def _db(self, partition: int) -> Any:
        return self.table.db(partition)

    async def load_partition(self, partition: int) -> list[tuple[bytes, bytes]]:
        db = self._db(partition)
        return [(k, v) for k, v in db.items() if is_window_key(k) or k == META_KEY]

    async def load_meta(self, partition: int) -> bytes | None:
        value: bytes | None = self._db(partition).get(META_KEY)
        return value

    async def scan_windows(
        self, partition: int, from_start_ms: int, to_start_ms: int | None = None
    ) -> AsyncIterator[list[tuple[bytes, bytes]]]:
        """One forward iteration from the first key of `from_start_ms` (keys sort by window start),
        stopped at the first key past the range; no other key is read."""
        db = self._db(partition)
        end = None if to_start_ms is None else b"%0*d" % (START_DIGITS, to_start_ms)
        chunk: list[tuple[bytes, bytes]] = []
        for key, value in db.items(from_key=b"%0*d" % (START_DIGITS, max(0, from_start_ms))):
            if not is_window_key(key) or (end is not None and key[:START_DIGITS] >= end):
                break
            chunk.append((key, value))
            if len(chunk) >= SCAN_CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    async def get_many(self, partition: int, keys: Iterable[bytes]) -> dict[bytes, bytes | None]:
        db = self._db(partition)
        return {k: db.get(k) for k in keys}

    async def write_partitions(self, changes: Mapping[int, dict[bytes, bytes]]) -> None:
        """All partitions' changelog records first, one wait for their acknowledgement, then one
        RocksDB batch per partition."""
        await self.commit_staged(self.stage(changes))

    def stage(self, changes: Mapping[int, dict[bytes, bytes]]) -> dict[int, WriteBatch]:
        """Send the changelog records (no wait) and build the RocksDB batches `commit_staged` writes."""
        send, changelog = self.producer.send_items, self.changelog
        batches: dict[int, WriteBatch] = {}
        for partition, items in changes.items():
            send(changelog, partition, items.items())
            batch = batches[partition] = WriteBatch(raw_mode=True)
            put = batch.put
            for key, value in items.items():
                put(key, value)
        return batches

    async def commit_staged(self, staged: object) -> None:
        """Wait until the broker acknowledged the staged changelog records, then write the batches."""
        await self._commit(staged)  # type: ignore[arg-type]

    async def expire(self, partition: int, before_start_ms: int) -> int:
        db = self._db(partition)
        doomed = []
        for key in db.keys(from_key=_WINDOW_KEY_FIRST):
            if not is_window_key(key) or key_start_ms(key) >= before_start_ms:
                break
            doomed.append(key)
        if doomed:
            batch = WriteBatch(raw_mode=True)
            for key in doomed:
                self.producer.send(self.changelog, key, None, partition)  # tombstone: compaction drops it
                batch.delete(key)
            await self._commit({partition: batch})
        return len(doomed)

    async def _commit(self, batches: dict[int, WriteBatch]) -> None:
        await self.producer.deliver()
        acked = self.producer.acked
        for partition, batch in batches.items():
            offset = acked.get((self.changelog, partition))
            if offset is not None:  # what faust's set_persisted_offset writes, in the records' batch
                batch.put(self.table.offset_key(), str(offset).encode())
            self._db(partition).write(batch, self._unlogged)

    async def close(self) -> None:
        """faust closes the databases when the worker stops."""

"""RocksDB state through a faust table: local rocksdict files plus a compacted changelog topic.

faust owns the parts it does well: opening one RocksDB per partition under the data dir, recovering
a partition from the changelog when it moves to this worker, and standby replicas. We bypass the
table's per-update API (which resolves partitions from the "current event" and would write the whole
value to the changelog on every event): each batch sends one changelog record per changed window
through the worker's librdkafka producer, waits for the acknowledgements, then writes one RocksDB
WriteBatch and records the changelog offset it holds (what faust's table does per record), so a
restart on the same disk recovers only what came after. Changelog first: a crash in between leaves
the changelog ahead of the disk, which recovery repairs, never behind it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from faust.types import TP
from rocksdict import WriteBatch

from streams.core.windows import key_start_ms
from streams.delivery import AsyncProducer

_WINDOW_KEY_FIRST = b"0"  # window keys start with the 13-digit window start


class RocksTableStore:
    """WindowStore over a faust Table whose store is rocksdb://."""

    def __init__(self, table: Any, producer: AsyncProducer) -> None:
        self.table = table
        self.producer = producer
        self.changelog = table.changelog_topic.get_topic_name()

    def _db(self, partition: int) -> Any:
        return self.table.data._db_for_partition(partition)

    async def load_partition(self, partition: int) -> list[tuple[bytes, bytes]]:
        db = self._db(partition)
        return [(k, v) for k, v in db.items() if k[:1].isdigit() or k == b"\x00meta"]

    async def get_many(self, partition: int, keys: Iterable[bytes]) -> dict[bytes, bytes | None]:
        db = self._db(partition)
        return {k: db.get(k) for k in keys}

    async def write(self, partition: int, items: dict[bytes, bytes]) -> None:
        batch = WriteBatch(raw_mode=True)
        send, changelog = self.producer.send, self.changelog
        for key, value in items.items():
            send(changelog, key, value, partition)
            batch.put(key, value)
        await self._commit(partition, batch)

    async def expire(self, partition: int, before_start_ms: int) -> int:
        db = self._db(partition)
        doomed = []
        for key in db.keys(from_key=_WINDOW_KEY_FIRST):
            if not key[:1].isdigit() or key_start_ms(key) >= before_start_ms:
                break
            doomed.append(key)
        if doomed:
            batch = WriteBatch(raw_mode=True)
            for key in doomed:
                self.producer.send(self.changelog, key, None, partition)  # tombstone: compaction drops it
                batch.delete(key)
            await self._commit(partition, batch)
        return len(doomed)

    async def _commit(self, partition: int, batch: WriteBatch) -> None:
        await self.producer.deliver()
        self._db(partition).write(batch)
        offset = self.producer.acked.get((self.changelog, partition))
        if offset is not None:
            self.table.data.set_persisted_offset(TP(self.changelog, partition), offset)

    async def close(self) -> None:
        """faust closes the databases when the worker stops."""

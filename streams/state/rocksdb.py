"""RocksDB state through a faust table: local rocksdict files plus a compacted changelog topic.

faust owns the parts it does well: opening one RocksDB per partition under the data dir, recovering
a partition from the changelog when it moves to this worker, and standby replicas. We bypass the
table's per-update API (which resolves partitions from the "current event" and would write the whole
value to the changelog on every event): each batch writes one RocksDB WriteBatch and one changelog
record per changed window, to the partition we name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rocksdict import WriteBatch

from streams.core.windows import key_start_ms

_WINDOW_KEY_FIRST = b"0"  # window keys start with the 13-digit window start


class RocksTableStore:
    """WindowStore over a faust Table whose store is rocksdb://."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def _db(self, partition: int) -> Any:
        return self.table.data._db_for_partition(partition)

    async def load_partition(self, partition: int) -> list[tuple[bytes, bytes]]:
        db = self._db(partition)
        return [(k, v) for k, v in db.items() if k[:1].isdigit() or k == b"\x00meta"]

    async def get_many(self, partition: int, keys: Iterable[bytes]) -> dict[bytes, bytes | None]:
        db = self._db(partition)
        return {k: db.get(k) for k in keys}

    async def write(self, partition: int, items: dict[bytes, bytes]) -> None:
        db = self._db(partition)
        batch = WriteBatch(raw_mode=True)
        send = self.table.send_changelog
        for key, value in items.items():
            batch.put(key, value)
            send(partition, key, value)
        db.write(batch)

    async def expire(self, partition: int, before_start_ms: int) -> int:
        db = self._db(partition)
        doomed = []
        for key in db.keys(from_key=_WINDOW_KEY_FIRST):
            if not key[:1].isdigit() or key_start_ms(key) >= before_start_ms:
                break
            doomed.append(key)
        if doomed:
            batch = WriteBatch(raw_mode=True)
            send = self.table.send_changelog
            for key in doomed:
                batch.delete(key)
                send(partition, key, None)  # tombstone: compaction drops the window
            db.write(batch)
        return len(doomed)

    async def close(self) -> None:
        """faust closes the databases when the worker stops."""

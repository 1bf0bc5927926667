"""Which backend a --store URL opens (base.StoreKind), and opening it.

The adapter hands in what a backend needs of the rest of the job: for RocksDB the faust table and the
producer of its changelog (the table is made by the app, streams.kafka.stores), for Redis its options.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from streams.state.base import ChangelogProducer, StoreKind, WindowStore

if TYPE_CHECKING:  # rocksdict is imported only when a RocksDB store is opened
    from streams.state.rocksdb import LocalTable


def open_store(
    url: str,
    *,
    app_id: str,
    redis_ttl_ms: int = 0,
    redis_options: Mapping[str, Any] | None = None,
    table: LocalTable | None = None,
    producer: ChangelogProducer | None = None,
) -> WindowStore:
    """The window store of a --store URL. RocksDB needs `table` and `producer`."""
    kind = StoreKind.of(url)
    if kind is StoreKind.ROCKSDB:
        from streams.state.rocksdb import RocksTableStore

        if table is None or producer is None:
            raise ValueError("a rocksdb:// store needs the faust table and the changelog producer")
        return RocksTableStore(table, producer)
    if kind is StoreKind.MEMORY:
        from streams.state.memory import MemoryStore

        return MemoryStore()
    from streams.state.redis import RedisStore

    return RedisStore(url, app_id, redis_ttl_ms, **(redis_options or {}))

"""Opening the worker's window store (streams.state.backends) inside the faust app.

For RocksDB the app makes the faust table (one database per partition, its changelog topic, standby
replicas) and applies its changelog a fetch at a time (faust_compat.changelog_applier); every store
is told when the worker stops (`abort`: stop waiting for its server) and closed after the consumer.
"""

from __future__ import annotations

from typing import Any

from streams.kafka.faust_compat import FaustTable, changelog_applier
from streams.kafka.producer import AsyncProducer
from streams.settings import Settings
from streams.state.backends import open_store
from streams.state.base import StoreKind, WindowStore


def faust_store_url(settings: Settings) -> str:
    """faust's own store for the app's tables: RocksDB when ours is, else memory (no table is made)."""
    return StoreKind.ROCKSDB.value if settings.store_kind() is StoreKind.ROCKSDB else StoreKind.MEMORY.value


def open_window_store(app: Any, settings: Settings, producer: AsyncProducer, partitions: int) -> WindowStore:
    """The store of --store, its stop hooks registered on `app`. `--changelog-restore per-record`:
    recovery and standby replicas through faust's per-record path (the baseline of `make bench`)."""
    table = None
    if settings.store_kind() is StoreKind.ROCKSDB:
        table = app.Table(
            "windows",
            partitions=partitions,
            key_type=bytes,  # raw serializers
            value_type=bytes,
            options=settings.rocksdb_options(),  # bounded memory per partition database
        )
        if settings.changelog_restore == "batched":
            app.batch_handlers[table.changelog_topic.get_topic_name()] = changelog_applier(app, table)
    store = open_store(
        settings.store,
        app_id=settings.app_id,
        redis_ttl_ms=settings.redis_ttl,
        redis_options=settings.redis_store_options() if settings.store_kind().is_redis else None,
        table=None if table is None else FaustTable(table),
        producer=producer,
    )
    app.stopping_hooks.append(store.abort)  # a stopping worker does not wait for the store's server
    app.after_consumer_stop.append(store.close)
    return store

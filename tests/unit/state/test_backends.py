"""streams.state.base.StoreKind and streams.state.backends: one reading of --store URLs, one place
that opens a backend, and the capabilities every backend has (no-op where it has nothing to do)."""

from __future__ import annotations

import asyncio

import pytest

from streams.settings import ConfigError, Settings
from streams.state.backends import open_store
from streams.state.base import StoreKind, WindowStore
from streams.state.memory import MemoryStore
from streams.state.redis import RedisStore
from streams.state.rocksdb import RocksTableStore


@pytest.mark.parametrize(
    ("url", "kind", "redis", "changelog"),
    [
        ("rocksdb://", StoreKind.ROCKSDB, False, True),
        ("memory://", StoreKind.MEMORY, False, False),
        ("redis://:pw@127.0.0.1:6379/0", StoreKind.REDIS, True, False),
        ("rediss://cache.example:6380/1", StoreKind.REDIS_TLS, True, False),
    ],
)
def test_store_kind_of_a_url(url: str, kind: StoreKind, redis: bool, changelog: bool) -> None:
    assert StoreKind.of(url) is kind
    assert (kind.is_redis, kind.has_changelog) == (redis, changelog)
    assert Settings(store=url).store_kind() is kind


@pytest.mark.parametrize("url", ["", "rocksdb:/", "redis:/x", "postgres://db", "Memory://"])
def test_an_unknown_scheme_is_refused_by_name(url: str) -> None:
    with pytest.raises(ValueError, match="rocksdb://, memory:// or redis://"):
        StoreKind.of(url)
    with pytest.raises(ConfigError, match="--store / PORTSCAN_STORE must be"):
        Settings(store=url)


def test_open_store_chooses_the_backend_by_scheme() -> None:
    assert type(open_store("memory://", app_id="a")) is MemoryStore
    redis = open_store("redis://127.0.0.1:1/0", app_id="a", redis_ttl_ms=5000)  # no connection yet
    assert isinstance(redis, RedisStore) and redis.ttl_ms == 5000 and redis.prefix == b"iis-portscan:a:"
    with pytest.raises(ValueError, match="faust table"):
        open_store("rocksdb://", app_id="a")


def test_every_backend_is_a_window_store_with_every_capability() -> None:
    """The detector and the app call these on any store, without asking which one it has."""
    assert RocksTableStore.stages_writes and not MemoryStore.stages_writes and not RedisStore.stages_writes
    for cls in (MemoryStore, RedisStore, RocksTableStore):
        assert WindowStore in cls.__mro__  # subclassed: the defaults are inherited
    store = MemoryStore()
    store.abort()
    assert store.counts() == {}

    async def go() -> None:
        await store.ping()
        await store.commit_staged(store.stage({3: {b"k": b"v"}}))  # a plain write for it
        assert await store.get_many(3, [b"k"]) == {b"k": b"v"}

    asyncio.run(go())
    redis = RedisStore("redis://127.0.0.1:1/0", "a")
    redis.stats["retries"] += 2
    assert redis.counts() == {"retries": 2, "errors": 0}

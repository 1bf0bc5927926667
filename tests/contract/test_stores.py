"""One contract for every state backend: memory, RocksDB (rocksdict) and Redis (a real server).

The RocksDB store is exercised on real rocksdict files; its changelog sends are recorded by a small
stand-in table and producer, since this suite checks the store's semantics, not Kafka (the worker
integration tests run the real changelog, and restore from it on an empty disk). Redis runs against
the server `make test` starts.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from rocksdict import Options, Rdict

from streams.core.engine import PartitionEngine, StreamParams
from streams.core.offline import offline_alerts
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.core.state_records import Meta, encode_writes
from streams.core.windows import META_KEY, WindowKey, encode_key
from streams.kafka.faust_compat import FaustTable
from streams.state.base import SCAN_CHUNK, WindowStore
from streams.state.memory import MemoryStore
from streams.state.redis import RedisStore
from streams.state.rocksdb import RocksTableStore
from tests.harness import RecordingProducer

pytestmark = pytest.mark.contract
T = TypeVar("T")
T0 = 1_767_268_800_000
BIN = 600_000


class _Data:
    offset_key = b"__faust\0offset__"  # faust's RocksDB store keeps its changelog offset here

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dbs: dict[int, Rdict] = {}

    def _db_for_partition(self, partition: int) -> Rdict:
        if partition not in self.dbs:
            self.dbs[partition] = Rdict(str(self.root / f"p{partition}"), options=Options(raw_mode=True))
        return self.dbs[partition]

    def persisted_offset(self, partition: int) -> int | None:
        raw = self._db_for_partition(partition).get(self.offset_key)
        return None if raw is None else int(raw)


class _Topic:
    def get_topic_name(self) -> str:
        return "contract-windows-changelog"


class RecordingTable:
    """Just enough of a faust Table for RocksTableStore: real rocksdict data, recorded changelog."""

    def __init__(self, root: Path) -> None:
        self.data = _Data(root)
        self.changelog_topic = _Topic()
        self.producer = RecordingProducer()

    @property
    def changelog(self) -> list[tuple[int | None, bytes | None, bytes | None]]:
        return self.producer.to_partition(self.changelog_topic.get_topic_name())


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


def redis_url() -> str:
    return os.environ.get("PORTSCAN_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=["memory", "rocksdb", pytest.param("redis", marks=pytest.mark.integration)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """A factory of fresh-connection stores over the same state (a restart = a new store object)."""
    kind = request.param
    if kind == "memory":
        shared = MemoryStore()
        return lambda: shared
    if kind == "rocksdb":
        table = RecordingTable(tmp_path)
        request.node.rocks_table = table
        return lambda: RocksTableStore(FaustTable(table), table.producer)  # type: ignore[arg-type]
    app_id = f"contract-{uuid.uuid4().hex[:8]}"
    probe = RedisStore(redis_url(), app_id, 60_000)
    try:
        run(probe.client.ping())
    except Exception as exc:
        pytest.fail(f"Redis at {redis_url()} does not answer ({exc}); run `make services-up`")

    def cleanup() -> None:
        async def go() -> None:
            store = RedisStore(redis_url(), app_id, 60_000)
            await store.delete_all()
            await store.close()

        run(go())

    request.addfinalizer(cleanup)
    return lambda: RedisStore(redis_url(), app_id, 60_000)


def key(start: int, cip: str = "198.51.100.1") -> bytes:
    return encode_key(WindowKey(start, cip, "WEB01", "10.0.0.11"))


def test_write_get_load_and_partitions_are_separate(make_store: Callable[[], WindowStore]) -> None:
    async def go() -> None:
        store = make_store()
        k1, k2 = key(T0), key(T0 + BIN)
        await store.write_partitions({0: {META_KEY: b'{"w":1,"m":2}', k1: b"one", k2: b"two"}})
        await store.write_partitions({1: {k1: b"other"}})
        assert await store.get_many(0, [k1, k2, key(T0, "x")]) == {k1: b"one", k2: b"two", key(T0, "x"): None}
        assert await store.get_many(1, [k1, k2]) == {k1: b"other", k2: None}
        loaded = dict(await store.load_partition(0))
        assert loaded == {META_KEY: b'{"w":1,"m":2}', k1: b"one", k2: b"two"}
        await store.write_partitions({0: {k1: b"uno"}})
        assert (await store.get_many(0, [k1]))[k1] == b"uno"
        await store.close()
        again = make_store()  # a new connection sees the same state
        assert dict(await again.load_partition(1)) == {k1: b"other"}
        await again.close()

    run(go())


def test_write_partitions_writes_each_partition_apart(
    make_store: Callable[[], WindowStore],
) -> None:
    async def go() -> None:
        store = make_store()
        k1, k2 = key(T0), key(T0 + BIN)
        await store.write_partitions({0: {META_KEY: b"m0", k1: b"a"}, 3: {k1: b"b", k2: b"c"}})
        await store.write_partitions({3: {k2: b"c2"}})
        assert dict(await store.load_partition(0)) == {META_KEY: b"m0", k1: b"a"}
        assert await store.get_many(3, [k1, k2]) == {k1: b"b", k2: b"c2"}
        assert dict(await store.load_partition(1)) == {}
        await store.close()

    run(go())


def test_expire_deletes_windows_before_cutoff_only(make_store: Callable[[], WindowStore]) -> None:
    async def go() -> None:
        store = make_store()
        keys = [key(T0 + i * BIN, f"c{i}") for i in range(5)]
        await store.write_partitions({0: {META_KEY: b"m", **{k: b"v" for k in keys}}})
        await store.write_partitions({1: {keys[0]: b"v"}})
        assert await store.expire(0, T0 + 2 * BIN) == 2
        assert await store.expire(0, T0 + 2 * BIN) == 0
        left = dict(await store.load_partition(0))
        assert set(left) == {META_KEY, *keys[2:]}
        assert dict(await store.load_partition(1)) == {keys[0]: b"v"}
        await store.close()

    run(go())


async def scanned(
    store: WindowStore, partition: int, start: int, end: int | None = None
) -> list[list[bytes]]:
    """The keys of each chunk `scan_windows` yields."""
    return [[k for k, _ in chunk] async for chunk in store.scan_windows(partition, start, end)]


def test_scan_windows_reads_a_range_of_window_starts_only(make_store: Callable[[], WindowStore]) -> None:
    async def go() -> None:
        store = make_store()
        keys = [key(T0 + i * BIN, f"c{j}") for i in range(4) for j in range(3)]
        await store.write_partitions({0: {META_KEY: b"m", **{k: k[-12:] for k in keys}}, 1: {keys[0]: b"x"}})
        assert await store.load_meta(0) == b"m" and await store.load_meta(1) is None
        assert sorted(k for c in await scanned(store, 0, T0 + 2 * BIN) for k in c) == sorted(keys[6:])
        assert sorted(k for c in await scanned(store, 0, T0 + 1, T0 + 3 * BIN) for k in c) == sorted(
            keys[3:9]
        )
        assert sorted(k for c in await scanned(store, 0, T0, T0 + 1) for k in c) == sorted(keys[:3])
        assert await scanned(store, 0, T0 + 9 * BIN) == []
        assert [k for c in await scanned(store, 1, 0) for k in c] == [keys[0]]
        values = {k: v async for chunk in store.scan_windows(0, 0) for k, v in chunk}
        assert values == {k: k[-12:] for k in keys}  # never the meta record nor a store's own keys
        await store.close()

    run(go())


def test_scan_windows_of_a_large_bin_comes_in_bounded_chunks(make_store: Callable[[], WindowStore]) -> None:
    """A bin of many windows (a flood of client IPs) is never read as one reply."""
    n = 2 * SCAN_CHUNK + 17

    async def go() -> None:
        store = make_store()
        keys = [key(T0, f"203.0.{i >> 8}.{i & 255}") for i in range(n)]
        await store.write_partitions({0: dict.fromkeys(keys, b"v")})
        chunks = await scanned(store, 0, T0, T0 + 1)
        assert len(chunks) >= 2 and max(len(c) for c in chunks) <= 2 * SCAN_CHUNK
        assert sorted(k for c in chunks for k in c) == sorted(keys)
        await store.close()

    run(go())


def test_engine_over_store_equals_replay_across_restarts(make_store: Callable[[], WindowStore]) -> None:
    """Drive the engine through the store with restarts: the latest alerts equal the batch rule."""
    check_engine_over_store(make_store, None)


@pytest.mark.parametrize("bound", [0, 2])
def test_engine_over_store_with_spilled_windows_equals_replay(
    make_store: Callable[[], WindowStore], bound: int
) -> None:
    """The same with at most `bound` open windows in memory: spilled to the store after each batch,
    restored up to the bound, read back from it by key and, at close, by a scan of the bin."""
    check_engine_over_store(make_store, bound)


@pytest.mark.parametrize("bound", [None, 2])
def test_engine_over_store_with_tenants_equals_replay(
    make_store: Callable[[], WindowStore], bound: int | None
) -> None:
    """The same with two tenants sharing every key (core.tenant): their windows apart in the store too."""
    check_engine_over_store(make_store, bound, tenants=("contoso", "fabrikam"))


def check_engine_over_store(
    make_store: Callable[[], WindowStore], bound: int | None, tenants: tuple[str, ...] = ("",)
) -> None:
    params = StreamParams(
        rule=RuleParams(threshold=6), grace_ms=60_000, retention_ms=10**9, max_skew_ms=10**12
    )
    rnd = random.Random(4)
    events = [
        IISEvent(T0 + rnd.randrange(3 * BIN), rnd.choice("abc"), "WEB01", "10.0.0.11", rnd.randint(1, 15))
        for _ in range(400)
    ]
    if tenants != ("",):  # (no draw otherwise: the scenarios without tenants stay as they were)
        for event in events:
            event.tenant = rnd.choice(tenants)
    stream = list(enumerate(events))

    async def go() -> dict[str, dict[str, Any]]:
        latest: dict[str, dict[str, Any]] = {}
        store = make_store()

        async def fresh_engine(s: WindowStore) -> PartitionEngine:
            engine = PartitionEngine(params, Meta.from_bytes(await s.load_meta(0)), T0)
            async for chunk in s.scan_windows(0, engine.open_from_ms()):
                engine.restore(chunk, bound)
            return engine

        async def close_spilled(out: Any) -> None:
            for start, closed in out.closing.items():
                async for chunk in store.scan_windows(0, start, start + 1):
                    engine.close_spilled(out, [(k, v) for k, v in chunk if k not in closed])
            out.closing = {}

        engine = await fresh_engine(store)
        pos = committed = 0
        while pos < len(stream):
            batch = stream[pos : pos + rnd.randint(1, 40)]
            plan = engine.plan(batch)
            out = engine.step(plan, await store.get_many(0, plan.load), T0)
            await close_spilled(out)
            for a in out.alerts:
                if a["AlertId"] not in latest or a["Revision"] >= latest[a["AlertId"]]["Revision"]:
                    latest[a["AlertId"]] = a
            if rnd.random() < 0.15:  # crash before the write: restart from the last commit
                await store.close()
                store = make_store()
                engine = await fresh_engine(store)
                pos = committed
                continue
            await store.write_partitions({0: encode_writes(out.writes)})
            if bound is not None and engine.open_count() > bound:
                spilled = engine.spill(engine.open_count() - bound)
                await store.write_partitions({0: encode_writes(spilled.writes)})
            pos += len(batch)
            if rnd.random() < 0.5:
                committed = pos
        out = engine.tick(10**13)
        await close_spilled(out)
        for a in out.alerts:
            latest[a["AlertId"]] = a
        await store.write_partitions({0: encode_writes(out.writes)})
        await store.close()
        return latest

    latest = run(go())
    expected = offline_alerts(events, params.rule)
    keys = ("AlertId", "ConnectionsCount", "portCount", "set_sPort", "FirstSeen", "LastSeen")
    assert sorted(tuple(str(a[k]) for k in keys) for a in latest.values()) == sorted(
        tuple(str(a[k]) for k in keys) for a in expected
    )
    assert len(expected) > 3
    assert {a.get("TenantId", "") for a in expected} == set(tenants)


def test_rocksdb_changelog_mirrors_every_write_and_tombstones(tmp_path: Path) -> None:
    table = RecordingTable(tmp_path)
    store = RocksTableStore(FaustTable(table), table.producer)  # type: ignore[arg-type]

    async def go() -> None:
        await store.write_partitions({2: {META_KEY: b"m", key(T0): b"v"}})
        await store.expire(2, T0 + 1)

    run(go())
    assert table.changelog == [(2, META_KEY, b"m"), (2, key(T0), b"v"), (2, key(T0), None)]
    # faust's recovery starts after the changelog offset the disk holds: it follows the acknowledgements
    assert table.data.persisted_offset(2) == 2
    assert table.data.persisted_offset(0) is None


def test_rocksdb_unlogged_writes_survive_a_clean_close_with_their_offset(tmp_path: Path) -> None:
    """Writes skip the WAL; closing the database (as faust does at shutdown) must still persist them,
    together with the changelog offset they were written up to."""
    table = RecordingTable(tmp_path)
    store = RocksTableStore(FaustTable(table), table.producer)  # type: ignore[arg-type]
    run(store.write_partitions({1: {META_KEY: b"m", key(T0): b"v", key(T0 + BIN): b"w"}}))
    table.data.dbs.pop(1).close()
    reopened = RecordingTable(tmp_path)
    again = RocksTableStore(FaustTable(reopened), reopened.producer)  # type: ignore[arg-type]
    assert sorted(run(again.load_partition(1))) == sorted(
        [(META_KEY, b"m"), (key(T0), b"v"), (key(T0 + BIN), b"w")]
    )
    assert reopened.data.persisted_offset(1) == 2
    reopened.data.dbs[1].close()


@pytest.mark.integration
def test_redis_keys_are_namespaced_and_expire() -> None:
    async def go() -> None:
        a = RedisStore(redis_url(), f"ns-a-{uuid.uuid4().hex[:6]}", 30_000)
        b = RedisStore(redis_url(), f"ns-b-{uuid.uuid4().hex[:6]}", 30_000)
        try:
            await a.write_partitions({0: {key(T0): b"from a"}})
            assert (await b.get_many(0, [key(T0)]))[key(T0)] is None
            ttl = await a.client.pttl(a._p(0) + b"b:" + key(T0)[:13])
            assert 0 < ttl <= 30_000
        finally:
            await a.delete_all()
            await b.delete_all()
            await a.close()
            await b.close()

    run(go())

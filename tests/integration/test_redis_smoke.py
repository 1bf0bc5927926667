"""Smoke tests against the real Redis server: the same round trip with redis-py's asyncio and sync clients.

Round trip: SET with a PX expiry and GET it back, a MULTI/EXEC pipeline of a few commands, a Lua script by
EVAL and by register_script (EVALSHA), then DEL of every key the test wrote. Keys carry the test's unique
name so runs and tests never collide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis
import redis.asyncio

if TYPE_CHECKING:
    from .conftest import AsyncRunner

TTL_MS = 60_000
CLIENT_TIMEOUT_S = 5.0
ASYNC_TEST_TIMEOUT_S = 30.0

# Adds a port to a set and returns the set's size: the shape of the job's "distinct ports per client" state.
ADD_PORT_LUA = """
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('SCARD', KEYS[1])
"""


def keys_for(prefix: str) -> dict[str, str]:
    return {
        "plain": f"{prefix}:plain",
        "counter": f"{prefix}:counter",
        "hash": f"{prefix}:hash",
        "ports": f"{prefix}:ports",
    }


def test_async_client_round_trip(redis_url: str, unique_name: str, run_async: AsyncRunner) -> None:
    """redis.asyncio: SET PX/GET, MULTI/EXEC pipeline, EVAL and EVALSHA (register_script), DEL."""
    keys = keys_for(unique_name)

    async def round_trip() -> int:
        client = redis.asyncio.from_url(
            redis_url, socket_connect_timeout=CLIENT_TIMEOUT_S, socket_timeout=CLIENT_TIMEOUT_S
        )
        try:
            assert await client.set(keys["plain"], b"hello", px=TTL_MS) is True
            assert await client.get(keys["plain"]) == b"hello"
            assert 0 < await client.pttl(keys["plain"]) <= TTL_MS

            async with client.pipeline(transaction=True) as pipe:
                pipe.incr(keys["counter"])
                pipe.incrby(keys["counter"], 41)
                pipe.hset(keys["hash"], mapping={"ip": "10.0.0.1", "ports": "3"})
                pipe.pexpire(keys["hash"], TTL_MS)
                pipe.hgetall(keys["hash"])
                results = await pipe.execute()
            assert results == [1, 42, 2, True, {b"ip": b"10.0.0.1", b"ports": b"3"}]

            assert await client.eval(ADD_PORT_LUA, 1, keys["ports"], 443, TTL_MS) == 1
            add_port = client.register_script(ADD_PORT_LUA)
            assert await add_port(keys=[keys["ports"]], args=[8080, TTL_MS]) == 2
            assert await add_port(keys=[keys["ports"]], args=[443, TTL_MS]) == 2  # already in the set
            assert 0 < await client.pttl(keys["ports"]) <= TTL_MS
        finally:
            deleted = await client.delete(*keys.values())
            remaining = await client.exists(*keys.values())
            await client.aclose()
        assert remaining == 0
        return int(deleted)

    assert run_async(round_trip, ASYNC_TEST_TIMEOUT_S) == len(keys)


def test_sync_client_round_trip(redis_url: str, unique_name: str) -> None:
    """redis.Redis (sync): the same round trip as the asyncio client."""
    keys = keys_for(unique_name)
    client = redis.Redis.from_url(
        redis_url, socket_connect_timeout=CLIENT_TIMEOUT_S, socket_timeout=CLIENT_TIMEOUT_S
    )
    try:
        assert client.set(keys["plain"], b"hello", px=TTL_MS) is True
        assert client.get(keys["plain"]) == b"hello"
        assert 0 < client.pttl(keys["plain"]) <= TTL_MS

        with client.pipeline(transaction=True) as pipe:
            pipe.incr(keys["counter"])
            pipe.incrby(keys["counter"], 41)
            pipe.hset(keys["hash"], mapping={"ip": "10.0.0.1", "ports": "3"})
            pipe.pexpire(keys["hash"], TTL_MS)
            pipe.hgetall(keys["hash"])
            results = pipe.execute()
        assert results == [1, 42, 2, True, {b"ip": b"10.0.0.1", b"ports": b"3"}]

        assert client.eval(ADD_PORT_LUA, 1, keys["ports"], 443, TTL_MS) == 1
        add_port = client.register_script(ADD_PORT_LUA)
        assert add_port(keys=[keys["ports"]], args=[8080, TTL_MS]) == 2
        assert add_port(keys=[keys["ports"]], args=[443, TTL_MS]) == 2  # already in the set
        assert 0 < client.pttl(keys["ports"]) <= TTL_MS
    finally:
        deleted = client.delete(*keys.values())
        remaining = client.exists(*keys.values())
        client.close()
    assert remaining == 0
    assert deleted == len(keys)

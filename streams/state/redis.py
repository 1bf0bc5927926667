"""Redis state: window records shared by all workers of an app, so a worker needs no local disk.

Layout per app and partition (prefix `iis-portscan:{app_id}:{partition}:`):
- `w:<window key>` the window record (see core.engine.WindowRecord), with a TTL;
- `meta` the partition's watermark record;
- `idx` a sorted set of window keys scored by window start: restore lists a partition's windows and
  retention deletes by score, without SCAN.
Every batch is one MULTI/EXEC round trip, so a batch's records (each with the offset of the last
event applied to it) and the watermark change together or not at all. Keys expire after the
retention plus a bin (wall clock) as a backstop; event-time retention deletes them earlier.

Redis must persist (AOF) for state to survive a Redis restart; the worker waits and retries with
backoff while Redis is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.core.engine import META_KEY
from streams.core.windows import key_start_ms

log = logging.getLogger("iis-portscan.redis")
T = TypeVar("T")
CHUNK = 1000
RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisStore:
    """WindowStore on Redis with the asyncio client."""

    def __init__(self, url: str, app_id: str, ttl_ms: int, max_backoff_s: float = 5.0) -> None:
        self.client: Any = aioredis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self.prefix = f"iis-portscan:{app_id}:".encode()
        self.ttl_ms = ttl_ms
        self.max_backoff_s = max_backoff_s

    def _p(self, partition: int) -> bytes:
        return self.prefix + b"%d:" % partition

    async def _retry(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run `op` until it succeeds, backing off while Redis is away: state is never skipped."""
        delay = 0.1
        failures = 0
        while True:
            try:
                result = await op()
                if failures:
                    log.warning("redis: %s succeeded again after %d failed attempts", what, failures)
                return result
            except RETRYABLE as exc:
                failures += 1
                log.warning(
                    "redis: %s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)

    async def load_partition(self, partition: int) -> list[tuple[bytes, bytes]]:
        p = self._p(partition)

        async def op() -> list[tuple[bytes, bytes]]:
            out: list[tuple[bytes, bytes]] = []
            meta = await self.client.get(p + b"meta")
            if meta is not None:
                out.append((META_KEY, meta))
            keys = await self.client.zrange(p + b"idx", 0, -1)
            for i in range(0, len(keys), CHUNK):
                chunk = keys[i : i + CHUNK]
                values = await self.client.mget([p + b"w:" + k for k in chunk])
                out.extend((k, v) for k, v in zip(chunk, values) if v is not None)
            return out

        return await self._retry(f"load partition {partition}", op)

    async def get_many(self, partition: int, keys: Iterable[bytes]) -> dict[bytes, bytes | None]:
        wanted = list(keys)
        p = self._p(partition)

        async def op() -> dict[bytes, bytes | None]:
            out: dict[bytes, bytes | None] = {}
            for i in range(0, len(wanted), CHUNK):
                chunk = wanted[i : i + CHUNK]
                values = await self.client.mget([p + b"w:" + k for k in chunk])
                out.update(zip(chunk, values))
            return out

        return await self._retry(f"read partition {partition}", op)

    async def write(self, partition: int, items: dict[bytes, bytes]) -> None:
        await self.write_partitions({partition: items})

    async def write_partitions(self, changes: Mapping[int, dict[bytes, bytes]]) -> None:
        ttl = self.ttl_ms

        async def op() -> None:
            pipe = self.client.pipeline(transaction=True)  # one round trip, all or nothing
            for partition, items in changes.items():
                p = self._p(partition)
                scores: dict[bytes, int] = {}
                for key, value in items.items():
                    if key == META_KEY:
                        pipe.set(p + b"meta", value)
                    else:
                        pipe.set(p + b"w:" + key, value, px=ttl)
                        scores[key] = key_start_ms(key)
                if scores:
                    pipe.zadd(p + b"idx", scores)
                    pipe.pexpire(p + b"idx", ttl)
            await pipe.execute()

        await self._retry(f"write partitions {sorted(changes)}", op)

    async def expire(self, partition: int, before_start_ms: int) -> int:
        p = self._p(partition)

        async def op() -> int:
            keys = await self.client.zrangebyscore(p + b"idx", "-inf", f"({before_start_ms}")
            if not keys:
                return 0
            pipe = self.client.pipeline(transaction=True)
            for i in range(0, len(keys), CHUNK):
                pipe.delete(*[p + b"w:" + k for k in keys[i : i + CHUNK]])
            pipe.zremrangebyscore(p + b"idx", "-inf", f"({before_start_ms}")
            await pipe.execute()
            return len(keys)

        return await self._retry(f"expire partition {partition}", op)

    async def delete_all(self) -> int:
        """Remove every key of this app (tests, or retiring an app id)."""
        n = 0
        async for key in self.client.scan_iter(match=self.prefix + b"*", count=1000):
            n += await self.client.delete(key)
        return n

    async def close(self) -> None:
        await self.client.aclose()

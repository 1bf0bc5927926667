"""Redis state: window records shared by all workers of an app, so a worker needs no local disk.

Layout per app and partition (prefix `iis-portscan:{app_id}:{partition}:`):
- `b:<window start>` a hash of the records of the windows starting then (field: window key, value: the
  record, see core.state_records.WindowRecord), with a TTL. One HSET per window start per checkpoint, not one
  SET per window: redis-py spends tens of microseconds of Python on every command it builds, which made
  per-window commands the Redis store's bottleneck;
- `meta` the partition's watermark record;
- `idx` a sorted set of the window starts that have a hash: restore lists a partition's hashes and
  retention deletes whole hashes by score, without SCAN;
- `epoch` the partition's fencing token: a counter each worker increments when it takes the partition
  over (`load_meta`, the first read of a restore, or `load_partition`). A checkpoint WATCHes the epochs
  of its partitions and writes in MULTI/EXEC only if each still holds the value this worker claimed, so
  the records (each with the offset of the last event applied to it) and the watermark change together
  or not at all, and never after another worker took a partition over: an old owner whose revocation
  outlasted the rebalance, or whose session expired, has its checkpoint refused (`Fenced`) instead of
  overwriting the new owner's newer records.

Retention follows event time: the engine deletes the hashes of windows past the retention (`expire`),
so a window's keys never expire while it can still change, however long an outage or a lag lasts.
A wall-clock TTL (`ttl_ms`, off by default) only serves to clean up after an app id that is gone; it
applies to a partition's meta record as well, so windows never outlive their watermark or vice versa.

Redis must persist (AOF) for state to survive a Redis restart. While Redis is unreachable the worker
waits and retries with backoff; `abort()` (at shutdown) ends the wait with StoreUnavailable, so a
stopping worker does not hang, and nothing is acknowledged that was not written. Authentication and
permission errors are not outages: they raise AuthError at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    NoPermissionError,
    ResponseError,
    WatchError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.core.windows import META_KEY, START_DIGITS
from streams.errors import AuthError, Fenced, StoreUnavailable
from streams.state.base import SCAN_CHUNK, StoreKind, WindowStore

log = logging.getLogger("iis-portscan.redis")
T = TypeVar("T")
CHUNK = 1000
RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)
# Wrong password, unknown user, missing ACL permission: retrying cannot help.
AUTH_ERRORS = (AuthenticationError, AuthorizationError, NoPermissionError)


def _auth_problem(exc: BaseException) -> bool:
    if isinstance(exc, AUTH_ERRORS):
        return True
    text = str(exc)
    return isinstance(exc, ResponseError) and text.startswith(("NOAUTH", "WRONGPASS", "NOPERM"))


def redis_address(url: str) -> str:
    """host:port of a Redis URL, without the credentials (for messages)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"


class RedisStore(WindowStore):
    """WindowStore on Redis with the asyncio client."""

    def __init__(
        self,
        url: str,
        app_id: str,
        ttl_ms: int = 0,
        max_backoff_s: float = 5.0,
        username: str | None = None,
        password: str | None = None,
        tls: Mapping[str, str] | None = None,
    ) -> None:
        """`username`/`password` override the URL's (keep the password out of the URL, which `ps`
        shows); `tls`: redis-py's ssl_ca_certs, ssl_certfile, ssl_keyfile for rediss://.

        rediss:// always verifies the server's certificate and host name: asked for explicitly (redis-py
        5.x did not check the host name by default), and set again after the URL is read, because
        redis-py lets the URL's query (`?ssl_cert_reqs=none`) override keyword arguments."""
        options: dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 5}
        if username:
            options["username"] = username
        if password is not None:
            options["password"] = password
        verify = {"ssl_check_hostname": True, "ssl_cert_reqs": "required"}
        secure = StoreKind.of(url) is StoreKind.REDIS_TLS
        if secure:
            options.update(tls or {})
            options.update(verify)
        self.client: Any = aioredis.from_url(url, **options)
        if secure:
            self.client.connection_pool.connection_kwargs.update(verify)
        self.address = redis_address(url)
        self.prefix = f"iis-portscan:{app_id}:".encode()
        self.ttl_ms = ttl_ms  # 0: no wall-clock expiry
        self.max_backoff_s = max_backoff_s
        self._abort = asyncio.Event()
        self.stats: Counter[str] = Counter()  # retries, errors: served as metrics
        self.epochs: dict[int, int] = {}  # partition -> the fencing token this worker claimed

    def abort(self) -> None:
        """The worker is stopping: stop waiting for Redis. Operations still get one attempt each (a
        healthy Redis takes the last checkpoint); a failed one raises StoreUnavailable, not a retry."""
        self._abort.set()

    def counts(self) -> dict[str, int]:
        return {"retries": self.stats["retries"], "errors": self.stats["errors"]}

    async def ping(self) -> None:
        """One round trip; raises AuthError for credentials, the client's error otherwise."""
        try:
            await self.client.ping()
        except Exception as exc:
            if _auth_problem(exc):
                raise AuthError(f"Redis at {self.address} refused authentication: {exc}") from exc
            raise

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
            except Fenced:
                raise  # not an error of Redis: the caller lets the partitions go
            except Exception as exc:
                self.stats["errors"] += 1
                if _auth_problem(exc):
                    raise AuthError(
                        f"Redis at {self.address} refused authentication or permission: {exc}"
                    ) from exc
                if not isinstance(exc, RETRYABLE):
                    raise
                if self._abort.is_set():
                    raise StoreUnavailable(
                        f"Redis at {self.address} unreachable while the worker stops ({what}): {exc}"
                    ) from exc
                failures += 1
                self.stats["retries"] += 1
                log.warning(
                    "redis: %s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, delay
                )
                try:  # sleep, but wake at once when the worker stops (for one last attempt)
                    await asyncio.wait_for(self._abort.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, self.max_backoff_s)

    @staticmethod
    def _by_bin(keys: Iterable[bytes]) -> dict[bytes, list[bytes]]:
        """Window keys grouped by their window start (the key's prefix): one hash each."""
        groups: dict[bytes, list[bytes]] = {}
        for key in keys:
            start = key[:START_DIGITS]
            group = groups.get(start)
            if group is None:
                groups[start] = [key]
            else:
                group.append(key)
        return groups

    async def load_partition(self, partition: int) -> list[tuple[bytes, bytes]]:
        """Claim the partition (a new fencing token: see the module docstring), then read it: a write
        of the previous owner that lands after the claim is refused, one before it is read here."""
        p = self._p(partition)

        async def op() -> list[tuple[bytes, bytes]]:
            self.epochs[partition] = int(await self.client.incr(p + b"epoch"))
            out: list[tuple[bytes, bytes]] = []
            meta = await self.client.get(p + b"meta")
            if meta is not None:
                out.append((META_KEY, meta))
            starts = await self.client.zrange(p + b"idx", 0, -1)
            for i in range(0, len(starts), CHUNK):
                pipe = self.client.pipeline(transaction=False)
                for start in starts[i : i + CHUNK]:
                    pipe.hgetall(p + b"b:" + start)
                for fields in await pipe.execute():
                    out.extend(fields.items())
            return out

        return await self._retry(f"load partition {partition}", op)

    async def load_meta(self, partition: int) -> bytes | None:
        """Claim the partition (as `load_partition` does), then read its meta record: the first read
        of a restore, so a write of the previous owner that lands after the claim is refused, and one
        before it is read by the `scan_windows` that follows."""
        p = self._p(partition)

        async def op() -> bytes | None:
            self.epochs[partition] = int(await self.client.incr(p + b"epoch"))
            value: bytes | None = await self.client.get(p + b"meta")
            return value

        return await self._retry(f"read the meta record of partition {partition}", op)

    async def scan_windows(
        self, partition: int, from_start_ms: int, to_start_ms: int | None = None
    ) -> AsyncIterator[list[tuple[bytes, bytes]]]:
        """The bins in range from the `idx` sorted set (ZRANGEBYSCORE), each hash read with HSCAN in
        chunks: a bin of millions of windows is never one reply. (HSCAN may repeat a field if the
        hash is resized meanwhile; the worker does not write a partition while it scans it.)"""
        p = self._p(partition)
        high = "+inf" if to_start_ms is None else f"({to_start_ms}"

        async def bins() -> list[bytes]:
            starts: list[bytes] = await self.client.zrangebyscore(p + b"idx", max(0, from_start_ms), high)
            return starts

        for start in await self._retry(f"list the bins of partition {partition}", bins):
            bucket = p + b"b:" + start
            cursor = 0
            while True:

                async def scan(at: int = cursor, name: bytes = bucket) -> tuple[int, dict[bytes, bytes]]:
                    found: tuple[int, dict[bytes, bytes]] = await self.client.hscan(
                        name, at, count=SCAN_CHUNK
                    )
                    return found

                cursor, fields = await self._retry(f"scan partition {partition}", scan)
                if fields:
                    yield list(fields.items())
                if cursor == 0:
                    break

    async def get_many(self, partition: int, keys: Iterable[bytes]) -> dict[bytes, bytes | None]:
        groups = list(self._by_bin(keys).items())
        p = self._p(partition)

        async def op() -> dict[bytes, bytes | None]:
            out: dict[bytes, bytes | None] = {}
            if not groups:
                return out
            pipe = self.client.pipeline(transaction=False)  # one round trip
            for start, wanted in groups:
                pipe.hmget(p + b"b:" + start, wanted)
            for (_, wanted), values in zip(groups, await pipe.execute()):
                out.update(zip(wanted, values))
            return out

        return await self._retry(f"read partition {partition}", op)

    async def write_partitions(self, changes: Mapping[int, dict[bytes, bytes]]) -> None:
        """Write every partition's changes in one transaction, or none of them: `Fenced` (nothing
        written) when another worker has claimed any of them since this one did."""
        ttl = self.ttl_ms
        partitions = sorted(changes)
        epoch_keys = [self._p(partition) + b"epoch" for partition in partitions]

        async def op() -> None:
            while True:
                async with self.client.pipeline(transaction=True) as pipe:
                    await pipe.watch(*epoch_keys)
                    current = await pipe.mget(epoch_keys)
                    fenced = [
                        partition
                        for partition, value in zip(partitions, current)
                        # missing: Redis lost its data (no persistence) and nobody claimed since
                        if value is not None and int(value) != self.epochs.get(partition)
                    ]
                    if fenced:
                        raise Fenced(fenced)
                    pipe.multi()
                    for partition, key, value in zip(partitions, epoch_keys, current):
                        if value is None and partition in self.epochs:
                            pipe.set(key, self.epochs[partition], nx=True)
                        if ttl:
                            pipe.pexpire(key, ttl)
                        self._queue_writes(pipe, partition, changes[partition], ttl)
                    try:
                        await pipe.execute()  # one round trip, all or nothing
                        return
                    except WatchError:  # an epoch changed since the WATCH: look again
                        continue

        await self._retry(f"write partitions {partitions}", op)

    def _queue_writes(self, pipe: Any, partition: int, items: Mapping[bytes, bytes], ttl: int) -> None:
        p = self._p(partition)
        meta = items.get(META_KEY)
        if meta is not None:
            pipe.set(p + b"meta", meta)
            if ttl:
                pipe.pexpire(p + b"meta", ttl)
        bins = self._by_bin(key for key in items if key != META_KEY)
        for start, keys in bins.items():
            bucket = p + b"b:" + start
            pipe.hset(bucket, mapping={key: items[key] for key in keys})
            if ttl:
                pipe.pexpire(bucket, ttl)
        if bins:
            pipe.zadd(p + b"idx", {start: int(start) for start in bins})
            if ttl:
                pipe.pexpire(p + b"idx", ttl)

    async def expire(self, partition: int, before_start_ms: int) -> int:
        p = self._p(partition)

        async def op() -> int:
            starts = await self.client.zrangebyscore(p + b"idx", "-inf", f"({before_start_ms}")
            if not starts:
                return 0
            buckets = [p + b"b:" + start for start in starts]
            pipe = self.client.pipeline(transaction=True)
            for bucket in buckets:
                pipe.hlen(bucket)
            for i in range(0, len(buckets), CHUNK):
                pipe.delete(*buckets[i : i + CHUNK])
            pipe.zremrangebyscore(p + b"idx", "-inf", f"({before_start_ms}")
            replies = await pipe.execute()
            return int(sum(replies[: len(buckets)]))

        return await self._retry(f"expire partition {partition}", op)

    async def delete_all(self) -> int:
        """Remove every key of this app (tests, or retiring an app id)."""
        n = 0
        async for key in self.client.scan_iter(match=self.prefix + b"*", count=1000):
            n += await self.client.delete(key)
        return n

    async def close(self) -> None:
        await self.client.aclose()

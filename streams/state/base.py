"""The state interface every backend implements; one contract test suite runs against all of them.

`WindowStore` lists every capability the worker uses of a store. Backends subclass it, so a
capability a backend has nothing to do for (staging, retry counts, aborting a wait, reaching a server)
takes the no-op default here and the worker calls every method without asking which store it has.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from enum import Enum
from typing import ClassVar, Protocol, cast

SCAN_CHUNK = 5000  # records per chunk of a scan: bounds what a restore or a close holds at once


class StoreKind(Enum):
    """The backend a --store URL names, by its scheme: the one place the schemes are read."""

    ROCKSDB = "rocksdb://"  # local files under --data-dir, with a changelog topic (streams.state.rocksdb)
    MEMORY = "memory://"  # tests and trials (streams.state.memory)
    REDIS = "redis://"  # shared by the workers (streams.state.redis)
    REDIS_TLS = "rediss://"  # the same over TLS

    @classmethod
    def of(cls, url: str) -> StoreKind:
        """The kind of a store URL; ValueError for an unknown scheme."""
        for kind in cls:
            if url.startswith(kind.value):
                return kind
        raise ValueError(f"must be rocksdb://, memory:// or redis://..., got {url!r}")

    @property
    def is_redis(self) -> bool:
        """A server the workers share (reached at start-up, its password and TLS settings apply)."""
        return self in (StoreKind.REDIS, StoreKind.REDIS_TLS)

    @property
    def has_changelog(self) -> bool:
        """State kept in a faust table with a changelog topic (created with the other topics)."""
        return self is StoreKind.ROCKSDB


class ChangelogProducer(Protocol):
    """What a store that keeps a changelog topic needs of the job's producer (streams.kafka.producer)."""

    acked: dict[tuple[str, int], int]  # highest acknowledged offset per (topic, partition)

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None: ...

    def send_items(self, topic: str, partition: int, items: Iterable[tuple[bytes, bytes | None]]) -> None: ...

    async def deliver(self) -> None: ...


class WindowStore(Protocol):
    """Per-partition key/value state of the window records and the partition's meta record.

    Keys sort by window start (see core.windows.encode_key), which makes retention a range delete.
    `write_partitions` applies each partition's items in the given order (the engine relies on the meta
    record going first).
    """

    async def load_partition(self, partition: int) -> list[tuple[bytes, bytes]]:
        """Every record of a partition, the meta record first (tests and tools; a worker restores with
        `load_meta` and `scan_windows`, which read only what can still be open)."""
        ...

    async def load_meta(self, partition: int) -> bytes | None:
        """The partition's meta record (its watermark), read first at assignment; a store shared by
        workers claims the partition for this one here (Redis: its fencing token)."""
        ...

    def scan_windows(
        self, partition: int, from_start_ms: int, to_start_ms: int | None = None
    ) -> AsyncIterator[list[tuple[bytes, bytes]]]:
        """The window records whose window start is in [from_start_ms, to_start_ms) (no upper bound
        when None), in chunks of at most about SCAN_CHUNK: a range of keys, which start with the
        window start. A restore reads from the earliest start that can still be open; closing a bin
        with spilled windows reads that bin."""
        ...

    async def get_many(self, partition: int, keys: Iterable[bytes]) -> dict[bytes, bytes | None]:
        """The stored values of `keys` (None where absent), in one round trip where the backend can."""
        ...

    async def write_partitions(self, changes: Mapping[int, dict[bytes, bytes]]) -> None:
        """Store each partition's items, in order, durably enough for the backend's guarantee: a
        checkpoint's changes of every partition, in one round trip where the backend can."""
        ...

    async def expire(self, partition: int, before_start_ms: int) -> int:
        """Delete window records whose window starts before `before_start_ms`; returns how many."""
        ...

    async def close(self) -> None:
        """Release resources; the state stays where the backend keeps it."""
        ...

    # Staged writes. A store whose writes go to a log first (RocksDB's changelog topic) splits
    # `write_partitions`: `stage` sends the log records without waiting, `commit_staged` waits for
    # their acknowledgement and writes the local copy. The detector stages a checkpoint and commits it
    # at the next one, so the broker's acknowledgement arrives while input is processed instead of
    # stopping it. Other stores write at once (`stages_writes` False: the detector calls
    # `write_partitions`); the defaults below make staging a plain write for them.

    stages_writes: ClassVar[bool] = False

    def stage(self, changes: Mapping[int, dict[bytes, bytes]]) -> object:
        """Begin writing `changes`; the handle goes to `commit_staged`."""
        return changes

    async def commit_staged(self, staged: object) -> None:
        """Finish what `stage` began."""
        await self.write_partitions(cast(Mapping[int, dict[bytes, bytes]], staged))

    # Operations: what the worker asks of a store beside its records.

    def counts(self) -> Mapping[str, int]:
        """Operations retried and failed so far (`retries`, `errors`), served as metrics; empty for a
        store that never retries."""
        return {}

    def abort(self) -> None:
        """The worker is stopping: stop waiting for a server that does not answer."""
        return None

    async def ping(self) -> None:
        """One round trip to the store's server, if it has one (the worker's start-up check)."""
        return None

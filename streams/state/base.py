"""The state interface every backend implements; one contract test suite runs against all of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Protocol

SCAN_CHUNK = 5000  # records per chunk of a scan: bounds what a restore or a close holds at once


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


class StagedWrites(Protocol):
    """A store whose writes go to a log first (RocksDB's changelog topic) may split `write_partitions`:
    `stage` sends the log records without waiting, `commit_staged` waits for their acknowledgement and
    writes the local copy. The detector stages a checkpoint and commits it at the next one, so the
    broker's acknowledgement arrives while input is processed instead of stopping it."""

    def stage(self, changes: Mapping[int, dict[bytes, bytes]]) -> object: ...

    async def commit_staged(self, staged: object) -> None: ...

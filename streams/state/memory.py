"""In-memory state: for tests and trials; lost when the process ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping

from streams.core.windows import META_KEY, is_window_key, key_start_ms
from streams.state.base import SCAN_CHUNK, WindowStore


class MemoryStore(WindowStore):
    """A dict per partition."""

    def __init__(self) -> None:
        self._parts: dict[int, dict[bytes, bytes]] = {}

    def _part(self, partition: int) -> dict[bytes, bytes]:
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = {}
        return part

    async def load_partition(self, partition: int) -> list[tuple[bytes, bytes]]:
        return sorted(self._part(partition).items())

    async def load_meta(self, partition: int) -> bytes | None:
        return self._part(partition).get(META_KEY)

    async def scan_windows(
        self, partition: int, from_start_ms: int, to_start_ms: int | None = None
    ) -> AsyncIterator[list[tuple[bytes, bytes]]]:
        part = self._part(partition)
        keys = sorted(
            k
            for k in part
            if is_window_key(k)
            and key_start_ms(k) >= from_start_ms
            and (to_start_ms is None or key_start_ms(k) < to_start_ms)
        )
        for i in range(0, len(keys), SCAN_CHUNK):
            yield [(k, part[k]) for k in keys[i : i + SCAN_CHUNK] if k in part]

    async def get_many(self, partition: int, keys: Iterable[bytes]) -> dict[bytes, bytes | None]:
        part = self._part(partition)
        return {k: part.get(k) for k in keys}

    async def write_partitions(self, changes: Mapping[int, dict[bytes, bytes]]) -> None:
        for partition, items in changes.items():
            self._part(partition).update(items)

    async def expire(self, partition: int, before_start_ms: int) -> int:
        part = self._part(partition)
        old = [k for k in part if k != META_KEY and key_start_ms(k) < before_start_ms]
        for k in old:
            del part[k]
        return len(old)

    async def close(self) -> None:
        """Nothing to release; the dicts live as long as this object."""

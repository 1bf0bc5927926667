"""In-memory state: for tests and trials; lost when the process ends."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from streams.core.windows import META_KEY, key_start_ms


class MemoryStore:
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

"""State changes held between checkpoints: written once per interval, not once per batch.

Writing every changed window after every batch costs a serialization, a changelog record and a store
write per window per batch; a window that receives events in ten consecutive batches is written ten
times. A checkpoint writes it once. This is what Kafka Streams (`commit.interval.ms`) and Quix
Streams (`commit_interval`) do, and it keeps the crash guarantee because the adapter acknowledges the
input only after the checkpoint that holds its effect is written:

- alerts and dead letters are still sent per batch (latency); the checkpoint waits for their delivery
  before it writes, so state never runs ahead of what was published;
- a crash loses only changes whose input was not acknowledged: those events are read again and, as the
  engine skips events a stored record has applied, counted once.

Pure: holds references to the engine's live records (the latest state of each window) and serializes
them when drained.
"""

from __future__ import annotations

from collections.abc import Callable

from streams.core.engine import StepResult
from streams.core.rule import RuleParams
from streams.core.state_records import Meta, WindowRecord
from streams.core.windows import META_KEY

# Window records (key -> record) to their stored bytes, in order: core.native's engines.
RecordsEncoder = Callable[[dict[bytes, WindowRecord], RuleParams | None], dict[bytes, bytes]]


class PendingWrites:
    """One partition's changes since its last checkpoint."""

    __slots__ = ("_expire_before", "_meta", "_records")

    def __init__(self) -> None:
        self._records: dict[bytes, WindowRecord] = {}
        self._meta: Meta | None = None
        self._expire_before: int | None = None

    def add(self, out: StepResult) -> None:
        """Take a step's writes and expiry over (the step's alerts are the caller's)."""
        records = self._records
        for key, obj in out.writes.items():
            if key == META_KEY:
                self._meta = obj  # type: ignore[assignment]
            else:
                records[key] = obj  # type: ignore[assignment]
        if out.expire_before_ms is not None:
            if self._expire_before is None or out.expire_before_ms > self._expire_before:
                self._expire_before = out.expire_before_ms

    def get(self, key: bytes) -> WindowRecord | None:
        """A window's record not written yet (the store's copy of it is stale)."""
        return self._records.get(key)

    def items_from(self, prefix: bytes) -> list[tuple[bytes, WindowRecord]]:
        """The records not written yet whose key starts with `prefix` (a bin's: see core.windows)."""
        return [(key, rec) for key, rec in self._records.items() if key.startswith(prefix)]

    def __len__(self) -> int:
        return len(self._records) + (self._meta is not None)

    def __bool__(self) -> bool:
        return bool(self._records) or self._meta is not None or self._expire_before is not None

    def drain(self, rule: RuleParams | None = None) -> tuple[dict[bytes, bytes], int | None]:
        """`encode`, then `clear`."""
        out = self.encode(rule)
        self.clear()
        return out

    def clear(self) -> None:
        """Forget the changes: once they are written (never before: a checkpoint whose write failed
        must write them again, or a later checkpoint would acknowledge input whose effect is lost)."""
        self._records = {}
        self._meta = None
        self._expire_before = None

    def encode(
        self, rule: RuleParams | None = None, records: RecordsEncoder | None = None
    ) -> tuple[dict[bytes, bytes], int | None]:
        """(records to write, meta first; expire windows starting before this or None).

        With the rule, each record is at most `rule.max_record_bytes` (see WindowRecord.to_bytes).
        `records` encodes the window records at once (the engine's: core.native), else `to_bytes` each."""
        writes: dict[bytes, bytes] = {}
        if self._meta is not None:
            writes[META_KEY] = self._meta.to_bytes()  # first: see core.engine's docstring
        if records is not None:
            writes.update(records(self._records, rule))
        else:
            for key, rec in self._records.items():
                writes[key] = rec.to_bytes(rule)
        return writes, self._expire_before

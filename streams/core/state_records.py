"""The stored records: a window's state and a partition's stream clock, and their bytes.

A window's record is its aggregate (core.aggregate.WindowAgg) plus what makes recovery exact: the last
applied position per source partition, how many alerts it emitted, closed. The engine keeps these objects
in memory and hands them to the adapter, which serializes each once per checkpoint (`encode_writes`);
the stores keep the bytes (keys: core.windows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from streams.core.aggregate import WindowAgg, trim_slots
from streams.core.rule import RuleParams

_SEQ_MASK = 2**64 - 1


def position(source_partition: int, sequence: int) -> int:
    """An event's position for the engine: which input partition, and where in it."""
    return (source_partition << 64) | sequence


NO_TIME = -(2**62)


def revision(rec: WindowRecord) -> int:
    """An alert's Revision: 2 x ConnectionsCount, + 1 once the window is closed.

    Derived from the window's content rather than counted, so it orders alerts by what they hold even
    across a crash: events replayed after a checkpoint may be batched differently and produce fewer
    alerts than before the crash, but never a lower revision for more events, and the same content
    always carries the same revision. A window only grows (each event applied once), so every later
    alert of a window has a higher revision; `final` outranks the `early` alert of the same count.
    """
    return 2 * rec.count + rec.closed


class WindowRecord(WindowAgg):
    """A window's stored state: its aggregate, the last applied sequence per source, how many alerts it
    sent (`alerts_sent`; 0 = none yet: the early alert is due; not the alert's Revision, see `revision`),
    closed.

    The record *is* the window's WindowAgg (one object per window, not two); `agg` is kept for readers.
    The applied positions are held compactly: None (none yet), one position (source and sequence packed
    as by `position`: nearly every window is fed by one source partition), or a dict source -> sequence.

    Stored as one JSON object (orjson): {"v": 2, "n", "f", "l", "p", "s" (WindowAgg.to_state), "o": [[source,
    sequence], ...], "r": alerts_sent, "c": closed}.
    """

    __slots__ = ("_applied", "alerts_sent", "closed")

    def __init__(
        self,
        agg: WindowAgg | None = None,
        offsets: dict[int, int] | None = None,
        alerts_sent: int = 0,
        closed: bool = False,
    ):
        if agg is None:
            WindowAgg.__init__(self)
        else:  # the record takes the aggregate's state over (as it used to hold the aggregate itself)
            self.count = agg.count
            self.first_ms = agg.first_ms
            self.last_ms = agg.last_ms
            self._ports = agg._ports
            self._sets = agg._sets
        self._applied: int | dict[int, int] | None = None
        if offsets:
            if len(offsets) == 1:
                ((src, seq),) = offsets.items()
                self._applied = position(src, seq)
            else:
                self._applied = dict(offsets)
        self.alerts_sent = alerts_sent
        self.closed = closed

    @classmethod
    def first(
        cls, time_ms: int, port: int | None, values: tuple[str, ...], offset: int, closed: bool
    ) -> WindowRecord:
        """A new window's record holding its first request: `WindowRecord(closed=closed)`, then
        `first_time(offset)` and `add(time_ms, port, values, cap)`, in one step (the hot path: most
        windows are new)."""
        rec = cls.__new__(cls)
        rec.count = 1
        rec.first_ms = rec.last_ms = time_ms
        rec._ports = port
        rec._sets = values
        rec._applied = offset
        rec.alerts_sent = 0
        rec.closed = closed
        return rec

    @property
    def agg(self) -> WindowAgg:
        return self

    @property
    def offsets(self) -> dict[int, int]:
        """The last applied sequence per source partition."""
        applied = self._applied
        if applied is None:
            return {}
        if type(applied) is int:
            return {applied >> 64: applied & _SEQ_MASK}
        return dict(applied)  # type: ignore[arg-type]

    def first_time(self, offset: int) -> bool:
        """Record that the event at `offset` (a position) is applied; False if it was already."""
        applied = self._applied
        if type(applied) is int:
            if applied >> 64 == offset >> 64:  # same source: positions compare like sequences
                if offset <= applied:
                    return False
                self._applied = offset
            else:
                self._applied = {applied >> 64: applied & _SEQ_MASK, offset >> 64: offset & _SEQ_MASK}
        elif applied is None:
            self._applied = offset
        else:
            src, seq = offset >> 64, offset & _SEQ_MASK
            if seq <= applied.get(src, -1):  # type: ignore[union-attr]
                return False
            applied[src] = seq  # type: ignore[index]
        return True

    def to_bytes(self, rule: RuleParams | None = None) -> bytes:
        """The stored form; with the rule's limits, at most `rule.max_record_bytes` long.

        Sets past the cap are first trimmed to the cap smallest values, in place (lossless: those are
        the only ones the rule can ever report, see core.aggregate). A record still too large - a
        client that sends hundreds of distinct values of max_value_bytes, mostly escaped characters -
        loses the largest members of its largest sets until it fits (`_shrink`): its counts stay
        exact, its sets hold fewer members than the rule would report."""
        if rule is None:
            return self._encode()
        if rule.max_set_size and type(self._sets) is list:
            trim_slots(self._sets, rule.max_set_size)
        data = self._encode()
        if len(data) > rule.max_record_bytes:
            self._shrink(len(data) - rule.max_record_bytes)
            data = self._encode()
        return data

    def _encode(self) -> bytes:
        applied = self._applied
        if applied is None:
            offsets: Any = ()
        elif type(applied) is int:
            offsets = ((applied >> 64, applied & _SEQ_MASK),)
        else:
            offsets = list(applied.items())  # type: ignore[union-attr]
        ports: Any = self.state_ports()
        sets: Any = self._sets
        if type(sets) is list:
            sets = [sorted(slot) if type(slot) is set else slot for slot in sets]
        # A copy: orjson shrinks its 1 KiB output buffer in place, and the records a step returns are
        # kept a while (the writes), which leaves the C heap fragmented; copying frees the buffer at once
        # (writes got ~2x faster in the engine benchmark).
        data = orjson.dumps(
            {
                "v": 2,
                "n": self.count,
                "f": self.first_ms,
                "l": self.last_ms,
                "p": ports,
                "s": sets,
                "o": offsets,
                "r": self.alerts_sent,
                "c": self.closed,
            }
        )
        return memoryview(data).tobytes()

    def _shrink(self, excess: int) -> None:
        """Drop the largest member of the set whose members take the most bytes, until `excess`
        serialized bytes are gone."""
        slots = self.state_sets()
        if slots is None:
            return
        members = [sorted(entry) if type(entry) is list else [entry] for entry in slots]
        sizes = [[len(orjson.dumps(v)) + 1 for v in values] for values in members]
        totals = [sum(each) for each in sizes]
        excess += 64  # the change of form of a shrunk slot
        while excess > 0:
            candidates = [j for j in range(len(members)) if len(members[j]) > 1]
            if not candidates:
                break  # one value per set left: bounded by max_value_bytes
            i = max(candidates, key=lambda j: (totals[j], -j))
            members[i].pop()
            dropped = sizes[i].pop()
            totals[i] -= dropped
            excess -= dropped
        self.load_sets([values if len(values) > 1 else values[0] for values in members])

    @classmethod
    def from_bytes(cls, data: bytes) -> WindowRecord:
        d = orjson.loads(data)
        rec = cls(None, dict(d["o"]), d["r"], d["c"])
        rec.load_state(d)
        return rec


@dataclass(slots=True)
class Meta:
    """A partition's stream clock: watermark and the highest event time seen."""

    watermark: int = NO_TIME
    max_event_ms: int = NO_TIME

    def to_bytes(self) -> bytes:
        return orjson.dumps({"w": self.watermark, "m": self.max_event_ms})

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Meta:
        if data is None:
            return cls()
        d = orjson.loads(data)
        return cls(d["w"], d["m"])


def encode_writes(
    writes: dict[bytes, WindowRecord | Meta], rule: RuleParams | None = None
) -> dict[bytes, bytes]:
    """The stored form of `StepResult.writes`, in the same order (the meta record first)."""
    return {
        key: obj.to_bytes(rule) if type(obj) is WindowRecord else obj.to_bytes()
        for key, obj in writes.items()
    }

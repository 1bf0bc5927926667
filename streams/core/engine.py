"""The rule on a stream, per input partition: event-time watermark, early/final/late alerts, exact state.

Pure and synchronous: the adapter loads records, calls `step` or `tick` with the wall clock, then
publishes the alerts and writes the records it gets back, in that order.

Why it is exact after a crash. An event's position is (source partition, sequence): its input
partition and offset (with its index inside an envelope). The events of one window that come from
one source partition arrive in sequence order, and each window record carries, per source partition,
the last sequence applied to it; an event at or below that is skipped. (With repartitioning the
source is the original input position, so a record the router forwards twice is counted once.)
The record is written only after the alerts it caused were delivered, so a replay
repeats at most alerts (same AlertId, same revision numbers), never a count. The partition's
meta record (watermark) is written before the window records of the same step, so a window closed
by a watermark is never reopened by a restore that lost that watermark.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.core.aggregate import WindowAgg
from streams.core.alerts import alert_sort_key, build_alert
from streams.core.enrich import Enricher
from streams.core.records import IISEvent, ParseError, Reason
from streams.core.rule import RuleParams
from streams.core.timefmt import format_iso_ms
from streams.core.windows import WindowKey, bin_start, decode_key, encode_key

META_KEY = b"\x00meta"  # sorts before every window key
_SEQ_MASK = 2**64 - 1


def position(source_partition: int, sequence: int) -> int:
    """An event's position for `PartitionEngine.step`: which input partition, and where in it."""
    return (source_partition << 64) | sequence


NO_TIME = -(2**62)


@dataclass(frozen=True, slots=True)
class StreamParams:
    """How the stream closes windows; event-time durations in ms."""

    rule: RuleParams = field(default_factory=RuleParams)
    grace_ms: int = 120_000
    idle_timeout_ms: int = 60_000  # 0 disables idle advancement
    retention_ms: int = 86_400_000
    max_skew_ms: int = 900_000
    early: bool = True
    final: bool = True


class WindowRecord:
    """A window's stored state: aggregate, last applied sequence per source, last revision, closed."""

    __slots__ = ("agg", "closed", "offsets", "revision")

    def __init__(
        self,
        agg: WindowAgg | None = None,
        offsets: dict[int, int] | None = None,
        revision: int = 0,
        closed: bool = False,
    ):
        self.agg = agg if agg is not None else WindowAgg()
        self.offsets = offsets if offsets is not None else {}
        self.revision = revision
        self.closed = closed

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {"a": self.agg.to_state(), "o": list(self.offsets.items()), "r": self.revision, "c": self.closed}
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> WindowRecord:
        d = orjson.loads(data)
        return cls(WindowAgg.from_state(d["a"]), dict(d["o"]), d["r"], d["c"])


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


@dataclass(slots=True)
class StepResult:
    """What one step produced: alerts to publish first, then records to write, in this order."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    writes: dict[bytes, bytes] = field(default_factory=dict)
    rejected: list[tuple[int, ParseError]] = field(default_factory=list)  # (index in the batch, why)
    expire_before_ms: int | None = None  # delete stored windows that start before this


class PartitionEngine:
    """Open windows of one input partition, kept in memory; closed ones live only in the store."""

    __slots__ = ("_by_end", "_expired_to", "enricher", "last_input_wall_ms", "meta", "open", "params")

    def __init__(self, params: StreamParams, meta: Meta | None = None, now_ms: int = 0) -> None:
        self.params = params
        self.enricher = Enricher(plus_as_space=params.rule.plus_as_space)
        self.meta = meta or Meta()
        self.open: dict[bytes, tuple[WindowKey, WindowRecord]] = {}
        self._by_end: dict[int, set[bytes]] = {}
        self.last_input_wall_ms = now_ms
        self._expired_to = NO_TIME

    # ------------------------------------------------------------------ loading

    def restore(self, records: Iterable[tuple[bytes, bytes]]) -> None:
        """Admit stored window records (at assignment); open ones are kept in memory."""
        for key, data in records:
            if key == META_KEY:
                continue
            rec = WindowRecord.from_bytes(data)
            if not rec.closed:
                self._admit(key, decode_key(key), rec)

    def _admit(self, key: bytes, wkey: WindowKey, rec: WindowRecord) -> None:
        self.open[key] = (wkey, rec)
        end = wkey.start_ms + self.params.rule.bin_ms
        by_end = self._by_end.get(end)
        if by_end is None:
            by_end = self._by_end[end] = set()
        by_end.add(key)

    def keys_to_load(self, batch: Sequence[tuple[int, IISEvent]]) -> list[bytes]:
        """Keys of the batch's windows that are not in memory: the store may hold them (closed)."""
        bin_ms = self.params.rule.bin_ms
        seen: set[bytes] = set()
        for _, ev in batch:
            key = encode_key(WindowKey(bin_start(ev.time_ms, bin_ms), ev.cIP, ev.Computer, ev.sIP))
            if key not in self.open:
                seen.add(key)
        return list(seen)

    # ------------------------------------------------------------------ processing

    def step(
        self, batch: Sequence[tuple[int, IISEvent]], loaded: dict[bytes, bytes | None], now_ms: int
    ) -> StepResult:
        """Apply a batch of (position, event); `loaded` answers `keys_to_load`.

        position = source partition * 2**64 + sequence (see `position`); a plain offset means source 0.
        """
        p = self.params
        rule = p.rule
        bin_ms, cap, threshold = rule.bin_ms, rule.max_set_size, rule.threshold
        out = StepResult()
        watermark = self.meta.watermark
        future_limit = now_ms + p.max_skew_ms
        late_limit = watermark - p.retention_ms - bin_ms  # a window starting at or before this is gone
        touched: dict[bytes, tuple[WindowKey, WindowRecord]] = {}
        max_time = self.meta.max_event_ms
        enricher = self.enricher
        if batch:
            self.last_input_wall_ms = now_ms
        for index, (offset, ev) in enumerate(batch):
            t = ev.time_ms
            if t > future_limit:
                out.rejected.append(
                    (
                        index,
                        ParseError(
                            Reason.FUTURE_TIME,
                            f"TimeGenerated {format_iso_ms(t)} is more than "
                            f"{p.max_skew_ms // 1000}s ahead of the wall clock",
                        ),
                    )
                )
                continue
            start = t - t % bin_ms
            if start <= late_limit:
                out.rejected.append(
                    (
                        index,
                        ParseError(
                            Reason.TOO_LATE,
                            f"window {format_iso_ms(start)} is past the retention "
                            f"(watermark {format_iso_ms(watermark)})",
                        ),
                    )
                )
                continue
            wkey = WindowKey(start, ev.cIP, ev.Computer, ev.sIP)
            key = encode_key(wkey)
            entry = touched.get(key) or self.open.get(key)
            if entry is None:
                data = loaded.get(key)
                if data is not None:
                    entry = (wkey, WindowRecord.from_bytes(data))
                else:  # a new window; one whose bin the watermark has passed is born closed (late)
                    entry = (wkey, WindowRecord(closed=start + bin_ms <= watermark))
            rec = entry[1]
            src, seq = offset >> 64, offset & _SEQ_MASK
            if seq <= rec.offsets.get(src, -1):
                continue  # applied before a restart: exactly-once state effect
            rec.agg.add_event(ev, enricher, cap)
            rec.offsets[src] = seq
            touched[key] = entry
            if t > max_time:
                max_time = t
        early: list[dict[str, Any]] = []
        for key, (wkey, rec) in touched.items():
            reached = rec.agg.port_count(cap) >= threshold
            if rec.closed:
                if reached:
                    rec.revision += 1
                    out.alerts.append(self._alert(wkey, rec, "late"))
            else:
                if key not in self.open:
                    self._admit(key, wkey, rec)
                if reached and rec.revision == 0 and p.early:
                    rec.revision = 1
                    early.append(self._alert(wkey, rec, "early"))
        early.sort(key=alert_sort_key)
        out.alerts[:0] = early
        self.meta.max_event_ms = max_time
        if max_time != NO_TIME:
            self._advance(max_time - p.grace_ms, out, touched)
        for key, (_, rec) in touched.items():
            out.writes[key] = rec.to_bytes()
        return out

    def tick(self, now_ms: int) -> StepResult:
        """Wall-clock housekeeping: after the idle timeout, move the watermark to now - grace."""
        out = StepResult()
        p = self.params
        if p.idle_timeout_ms and now_ms - self.last_input_wall_ms >= p.idle_timeout_ms:
            touched: dict[bytes, tuple[WindowKey, WindowRecord]] = {}
            self._advance(now_ms - p.grace_ms, out, touched)
            for key, (_, rec) in touched.items():
                out.writes[key] = rec.to_bytes()
        return out

    def _advance(
        self, candidate: int, out: StepResult, touched: dict[bytes, tuple[WindowKey, WindowRecord]]
    ) -> None:
        """Raise the watermark (never lower it) and close every open window that ends at or before it."""
        if candidate <= self.meta.watermark:
            return
        self.meta.watermark = watermark = candidate
        out.writes[META_KEY] = self.meta.to_bytes()  # first: see the module docstring
        rule = self.params.rule
        finals: list[dict[str, Any]] = []
        for end in sorted(e for e in self._by_end if e <= watermark):
            for key in self._by_end.pop(end):
                wkey, rec = self.open.pop(key)
                rec.closed = True
                touched[key] = (wkey, rec)
                if self.params.final and rec.agg.port_count(rule.max_set_size) >= rule.threshold:
                    rec.revision += 1
                    finals.append(self._alert(wkey, rec, "final"))
        finals.sort(key=alert_sort_key)
        out.alerts.extend(finals)
        horizon = watermark - self.params.retention_ms - rule.bin_ms
        horizon -= horizon % rule.bin_ms
        if horizon > self._expired_to:
            self._expired_to = horizon
            out.expire_before_ms = horizon + 1  # windows starting at or before horizon are past retention

    def _alert(self, wkey: WindowKey, rec: WindowRecord, phase: str) -> dict[str, Any]:
        alert = build_alert(wkey, rec.agg, self.params.rule)
        alert["Revision"] = rec.revision
        alert["Phase"] = phase
        return alert

    # ------------------------------------------------------------------ introspection

    @property
    def watermark(self) -> int:
        return self.meta.watermark

    def open_count(self) -> int:
        return len(self.open)

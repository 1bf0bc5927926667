"""The rule on a stream, per input partition: event-time watermark, early/final/late alerts, exact state.

Pure and synchronous: the adapter loads records, calls `step` or `tick` with the wall clock, then
publishes the alerts and writes the records it gets back, in that order.

Why it is exact after a crash. An event's position is (source partition, sequence): its input
partition and offset (with its index inside an envelope). The events of one window that come from
one source partition arrive in sequence order, and each window record carries, per source partition,
the last sequence applied to it; an event at or below that is skipped. (With repartitioning the
source is the original input position, so a record the router forwards twice is counted once.)
The record is written only after the alerts it caused were delivered, so a replay repeats at most
alerts (same AlertId; a revision derived from content, see `revision`), never a count. The partition's
meta record (watermark) is written before the window records of the same step, so a window closed
by a watermark is never reopened by a restore that lost that watermark.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.core.aggregate import WindowAgg, trim_slots
from streams.core.alerts import alert_sort_key, build_alert
from streams.core.enrich import Enricher
from streams.core.records import IISEvent, ParseError, Reason
from streams.core.rule import RuleParams
from streams.core.timefmt import format_iso_ms
from streams.core.windows import META_KEY, decode_key, key_start_ms

_SEQ_MASK = 2**64 - 1


def position(source_partition: int, sequence: int) -> int:
    """An event's position for `PartitionEngine.step`: which input partition, and where in it."""
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


class WindowRecord(WindowAgg):
    """A window's stored state: its aggregate, the last applied sequence per source, how many alerts it
    emitted (0 = none yet: the early alert is due), closed.

    The record *is* the window's WindowAgg (one object per window, not two); `agg` is kept for readers.
    The applied positions are held compactly: None (none yet), one position (source and sequence packed
    as by `position`: nearly every window is fed by one source partition), or a dict source -> sequence.

    Stored as one JSON object (orjson): {"v": 2, "n", "f", "l", "p", "s" (WindowAgg.to_state), "o": [[source,
    sequence], ...], "r": revision, "c": closed}.
    """

    __slots__ = ("_applied", "closed", "revision")

    def __init__(
        self,
        agg: WindowAgg | None = None,
        offsets: dict[int, int] | None = None,
        revision: int = 0,
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
        self.revision = revision
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
        rec.revision = 0
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
                "r": self.revision,
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


@dataclass(slots=True)
class StepResult:
    """What one step produced: alerts to publish first, then records to write, in this order.

    `writes` holds the live objects (the window's record, the partition's Meta), not their bytes: an
    adapter that writes state once per checkpoint rather than per step keeps the latest object per key
    and serializes each once (`encode_writes`), however many steps touched it in between."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    writes: dict[bytes, WindowRecord | Meta] = field(default_factory=dict)
    rejected: list[tuple[int, ParseError]] = field(default_factory=list)  # (index in the batch, why)
    expire_before_ms: int | None = None  # delete stored windows that start before this


def encode_writes(
    writes: dict[bytes, WindowRecord | Meta], rule: RuleParams | None = None
) -> dict[bytes, bytes]:
    """The stored form of `StepResult.writes`, in the same order (the meta record first)."""
    return {
        key: obj.to_bytes(rule) if type(obj) is WindowRecord else obj.to_bytes()
        for key, obj in writes.items()
    }


class PartitionEngine:
    """Open windows of one input partition, kept in memory; closed ones live only in the store."""

    __slots__ = (
        "_batch_keys",
        "_by_end",
        "_expired_to",
        "_prefixes",
        "enricher",
        "last_input_wall_ms",
        "meta",
        "open",
        "params",
    )

    def __init__(self, params: StreamParams, meta: Meta | None = None, now_ms: int = 0) -> None:
        self.params = params
        self.enricher = Enricher(
            plus_as_space=params.rule.plus_as_space, max_value_bytes=params.rule.max_value_bytes
        )
        self.meta = meta or Meta()
        self.open: dict[bytes, WindowRecord] = {}  # store key -> record (the key is decoded only to alert)
        self._by_end: dict[int, list[bytes]] = {}  # window end -> keys of the open windows ending then
        self._prefixes: dict[int, bytes] = {}  # window start -> its encoded store-key prefix
        self._batch_keys: tuple[list[tuple[int, IISEvent]], list[bytes]] = ([], [])
        self.last_input_wall_ms = now_ms
        self._expired_to = NO_TIME

    # ------------------------------------------------------------------ loading

    def restore(self, records: Iterable[tuple[bytes, bytes]]) -> None:
        """Admit stored window records (at assignment); open ones are kept in memory."""
        share = self.enricher.share
        bin_ms, watermark = self.params.rule.bin_ms, self.meta.watermark
        for key, data in records:
            if key == META_KEY:
                continue
            rec = WindowRecord.from_bytes(data)
            start = key_start_ms(key)
            if not rec.closed and start + bin_ms > watermark:  # see `_advance`
                if type(rec._sets) is tuple:
                    rec._sets = share(rec._sets)
                self._admit(key, start, rec)

    def _admit(self, key: bytes, start_ms: int, rec: WindowRecord) -> None:
        self.open[key] = rec
        end = start_ms + self.params.rule.bin_ms
        by_end = self._by_end.get(end)
        if by_end is None:
            self._by_end[end] = [key]
        else:
            by_end.append(key)  # a key listed twice (restored twice) is closed once: see _advance

    def _prefix(self, start_ms: int) -> bytes:
        """The store-key prefix of a window start (see encode_key), from a small bounded memo."""
        prefixes = self._prefixes
        if len(prefixes) >= 4096:
            prefixes.clear()
        prefix = prefixes[start_ms] = b"%013d" % start_ms
        return prefix

    def keys_to_load(self, batch: Sequence[tuple[int, IISEvent]]) -> list[bytes]:
        """Keys of the batch's windows that the store may hold: closed ones, which end at or before
        the watermark and are not in memory. A window that ends after the watermark is open if it
        exists at all (the watermark never goes back, and open windows are all in memory), so its
        lookup is skipped: most events fall in such windows."""
        bin_ms = self.params.rule.bin_ms
        closed_before = self.meta.watermark - bin_ms  # a window starting at or before this has ended
        open_ = self.open
        prefixes = self._prefixes
        dumps = orjson.dumps
        wanted: dict[bytes, None] = {}
        items = list(batch)
        keys: list[bytes] = []
        for _, ev in items:
            t = ev.time_ms
            start = t - t % bin_ms
            # encode_key(WindowKey(start, cIP, Computer, sIP)), with the start's prefix memoised
            key = (prefixes.get(start) or self._prefix(start)) + dumps((ev.cIP, ev.Computer, ev.sIP))
            keys.append(key)
            if start <= closed_before and key not in open_:
                wanted[key] = None
        self._batch_keys = (items, keys)  # for `step`, which reuses the key of each item it finds unchanged
        return list(wanted)

    # ------------------------------------------------------------------ processing

    def step(
        self,
        batch: Sequence[tuple[int, IISEvent]],
        loaded: Mapping[bytes, bytes | WindowRecord | None],
        now_ms: int,
    ) -> StepResult:
        """Apply a batch of (position, event); `loaded` answers `keys_to_load` (stored bytes, or a
        record an earlier step returned that is not written yet).

        position = source partition * 2**64 + sequence (see `position`); a plain offset means source 0.
        """
        p = self.params
        rule = p.rule
        bin_ms, cap, threshold = rule.bin_ms, rule.max_set_size, rule.threshold
        out = StepResult()
        watermark = self.meta.watermark
        future_limit = now_ms + p.max_skew_ms
        late_limit = watermark - p.retention_ms - bin_ms  # a window starting at or before this is gone
        touched: dict[bytes, WindowRecord] = {}
        max_time = self.meta.max_event_ms
        if batch:
            self.last_input_wall_ms = now_ms
        # The per-event loop: names bound once.
        touched_get = touched.get
        open_get = self.open.get
        loaded_get = loaded.get
        values = self.enricher.values
        first = WindowRecord.first
        prefixes = self._prefixes
        dumps = orjson.dumps
        known, known_keys = self._batch_keys  # what keys_to_load computed, item by item
        self._batch_keys = ([], [])
        n_known = len(known)
        for index, item in enumerate(batch):
            offset, ev = item
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
            if index < n_known and known[index] is item:
                key = known_keys[index]
            else:
                key = (prefixes.get(start) or self._prefix(start)) + dumps((ev.cIP, ev.Computer, ev.sIP))
            rec = touched_get(key)
            if rec is None:
                rec = open_get(key)
                if rec is None:
                    data = loaded_get(key)
                    if data is None:  # a new window; one whose bin the watermark has passed is born closed
                        touched[key] = first(t, ev.sPort, values(ev), offset, start + bin_ms <= watermark)
                        if t > max_time:
                            max_time = t
                        continue
                    # stored bytes, or the record itself while it waits for a checkpoint
                    rec = data if isinstance(data, WindowRecord) else WindowRecord.from_bytes(data)
                    if start + bin_ms <= watermark:
                        rec.closed = True  # its stored form may predate the close: see `_advance`
            if not rec.first_time(offset):
                continue  # applied before a restart: exactly-once state effect
            rec.add(t, ev.sPort, values(ev), cap)
            touched[key] = rec
            if t > max_time:
                max_time = t
        early: list[dict[str, Any]] = []
        open_ = self.open
        for key, rec in touched.items():
            # rec.port_count(cap) >= threshold, without the calls for the many one-port windows
            ports = rec._ports
            if ports is None:
                reached = False
            elif type(ports) is int:
                reached = threshold <= 1
            else:
                reached = rec.port_count(cap) >= threshold
            if rec.closed:
                if reached:
                    rec.revision += 1
                    out.alerts.append(self._alert(key, rec, "late"))
            else:
                if key not in open_:
                    self._admit(key, rec.first_ms - rec.first_ms % bin_ms, rec)
                if reached and rec.revision == 0 and p.early:
                    rec.revision = 1
                    early.append(self._alert(key, rec, "early"))
        early.sort(key=alert_sort_key)
        out.alerts[:0] = early
        self.meta.max_event_ms = max_time
        if max_time != NO_TIME:
            self._advance(max_time - p.grace_ms, out)
        out.writes.update(touched)  # after the meta record `_advance` may write: it goes first
        return out

    def tick(self, now_ms: int) -> StepResult:
        """Wall-clock housekeeping: after the idle timeout, close the windows this partition's events
        opened.

        The watermark moves to now - grace, but never past the newest event time seen + one bin: that
        closes every window those events opened (the last one ends at most a bin after the newest event)
        and nothing more, so the events that come after a pause - a backfill of last year's logs, a
        re-ingest after an outage - are judged by event time alone, never by the wall clock. A partition
        that has seen no event has no watermark to move."""
        out = StepResult()
        p = self.params
        newest = self.meta.max_event_ms
        if newest == NO_TIME or not p.idle_timeout_ms:
            return out
        if now_ms - self.last_input_wall_ms >= p.idle_timeout_ms:
            self._advance(min(now_ms - p.grace_ms, newest + p.rule.bin_ms), out)
        return out

    def _advance(self, candidate: int, out: StepResult) -> None:
        """Raise the watermark (never lower it) and close every open window that ends at or before it.

        Closing writes only the meta record (the watermark), not the windows it closes: a window is
        closed exactly when it ends at or before the stored watermark, which `restore` and `step` apply
        to a stored record whose flag predates the close. A window that changed in this step is written
        anyway, closed. (Writing every closed window again cost one state write per window.)"""
        if candidate <= self.meta.watermark:
            return
        self.meta.watermark = watermark = candidate
        out.writes[META_KEY] = self.meta  # first: see the module docstring
        rule = self.params.rule
        cap, threshold, final = rule.max_set_size, rule.threshold, self.params.final
        open_pop = self.open.pop
        finals: list[dict[str, Any]] = []
        for end in sorted(e for e in self._by_end if e <= watermark):
            for key in self._by_end.pop(end):
                rec = open_pop(key, None)
                if rec is None:
                    continue  # listed twice
                rec.closed = True
                if final and rec.port_count(cap) >= threshold:
                    rec.revision += 1
                    finals.append(self._alert(key, rec, "final"))
        finals.sort(key=alert_sort_key)
        out.alerts.extend(finals)
        horizon = watermark - self.params.retention_ms - rule.bin_ms
        horizon -= horizon % rule.bin_ms
        if horizon > self._expired_to:
            self._expired_to = horizon
            out.expire_before_ms = horizon + 1  # windows starting at or before horizon are past retention

    def _alert(self, key: bytes, rec: WindowRecord, phase: str) -> dict[str, Any]:
        alert = build_alert(decode_key(key), rec, self.params.rule)
        alert["Revision"] = revision(rec)
        alert["Phase"] = phase
        return alert

    # ------------------------------------------------------------------ introspection

    @property
    def watermark(self) -> int:
        return self.meta.watermark

    def open_count(self) -> int:
        return len(self.open)

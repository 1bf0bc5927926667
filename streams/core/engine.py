"""The rule on a stream, per input partition: event-time watermark, early/final/late alerts, exact state.

Pure and synchronous. Per batch the adapter calls `plan` (which windows the store may hold), loads
those keys, calls `step` with the wall clock, then publishes the alerts and writes the records it gets
back, in that order; `tick` is the idle housekeeping between batches.

Why it is exact after a crash. An event's position is (source partition, sequence): its input
partition and offset (with its index inside an envelope). The events of one window that come from
one source partition arrive in sequence order, and each window record carries, per source partition,
the last sequence applied to it; an event at or below that is skipped. (With repartitioning the
source is the original input position, so a record the router forwards twice is counted once.)
The record is written only after the alerts it caused were delivered, so a replay repeats at most
alerts (same AlertId; a revision derived from content, see `state_records.revision`), never a count.
The partition's meta record (watermark, newest event time) is written before the window records of the
same step, so a window closed by a watermark is never reopened by a restore that lost that watermark; and
it is written whenever either changes, so a restored partition closes by idleness every window its
events opened (`tick` closes up to the newest event time + one bin).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.core.alerts import alert_sort_key, build_alert
from streams.core.enrich import Enricher
from streams.core.records import IISEvent, ParseError, Reason
from streams.core.rule import RuleParams
from streams.core.state_records import NO_TIME, Meta, WindowRecord, revision
from streams.core.timefmt import format_iso_ms
from streams.core.windows import META_KEY, decode_key, key_start_ms


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
    already_applied: int = 0  # events skipped: their window had applied them (input read twice)


@dataclass(slots=True)
class Plan:
    """A batch made ready for `PartitionEngine.step`: each item's store key, and the keys to load.

    `load` lists the batch's windows that the store may hold: closed ones, which end at or before the
    watermark and are not in memory. A window that ends after the watermark is open if it exists at all
    (the watermark never goes back, and open windows are all in memory), so its lookup is skipped: most
    events fall in such windows. The plan is only valid at the watermark it was made at (`step` checks)."""

    batch: Sequence[tuple[int, IISEvent]]  # (position, event), see state_records.position
    keys: list[bytes]  # the store key of each item, in batch order
    load: list[bytes]  # keys the store must answer for `step`, each once
    watermark: int


class StalePlan(RuntimeError):
    """A plan stepped after the watermark moved: a window it took for open may have closed since."""


class PartitionEngine:
    """Open windows of one input partition, kept in memory; closed ones live only in the store."""

    __slots__ = (
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
                rec.share_sets(share)
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
        """The store-key prefix of a window start (see windows.encode_key), from a small bounded memo."""
        prefixes = self._prefixes
        if len(prefixes) >= 4096:
            prefixes.clear()
        prefix = prefixes[start_ms] = b"%013d" % start_ms
        return prefix

    def plan(self, batch: Sequence[tuple[int, IISEvent]]) -> Plan:
        """The store key of every item of a batch of (position, event), and which of them to load."""
        bin_ms = self.params.rule.bin_ms
        watermark = self.meta.watermark
        closed_before = watermark - bin_ms  # a window starting at or before this has ended
        open_ = self.open
        prefixes = self._prefixes
        dumps = orjson.dumps
        load: dict[bytes, None] = {}
        keys: list[bytes] = []
        for _, ev in batch:
            t = ev.time_ms
            start = t - t % bin_ms  # windows.bin_start, inline: this runs per event
            # windows.encode_key(WindowKey(start, cIP, Computer, sIP)), with the start's prefix memoised
            key = (prefixes.get(start) or self._prefix(start)) + dumps((ev.cIP, ev.Computer, ev.sIP))
            keys.append(key)
            if start <= closed_before and key not in open_:
                load[key] = None
        return Plan(batch, keys, list(load), watermark)

    # ------------------------------------------------------------------ processing

    def step(
        self, plan: Plan, loaded: Mapping[bytes, bytes | WindowRecord | None], now_ms: int
    ) -> StepResult:
        """Apply a planned batch; `loaded` answers `plan.load` (stored bytes, or a record an earlier step
        returned that is not written yet). Alerts come early first, then late, then final."""
        if plan.watermark != self.meta.watermark:
            raise StalePlan(f"plan made at watermark {plan.watermark}, engine at {self.meta.watermark}")
        out = StepResult()
        if plan.batch:
            self.last_input_wall_ms = now_ms
        newest_before = self.meta.max_event_ms
        touched = self._apply(plan, loaded, now_ms, out)
        self._alert_touched(touched, out)
        if self.meta.max_event_ms != NO_TIME:
            self._advance(self.meta.max_event_ms - self.params.grace_ms, out)
        if self.meta.max_event_ms != newest_before:
            out.writes[META_KEY] = self.meta  # what `tick` needs after a restore (see the docstring)
        out.writes.update(touched)  # after the meta record: it goes first
        return out

    def _apply(
        self, plan: Plan, loaded: Mapping[bytes, bytes | WindowRecord | None], now_ms: int, out: StepResult
    ) -> dict[bytes, WindowRecord]:
        """Fold each event into its window, once; the windows it changed or created, by key.

        The per-event loop of the job: names are bound once, and the common cases (an open window, a
        new one) take no call beyond the enrichment and the fold."""
        p = self.params
        bin_ms, cap = p.rule.bin_ms, p.rule.max_set_size
        watermark = self.meta.watermark
        future_limit = now_ms + p.max_skew_ms
        late_limit = watermark - p.retention_ms - bin_ms  # a window starting at or before this is gone
        touched: dict[bytes, WindowRecord] = {}
        max_time = self.meta.max_event_ms
        touched_get = touched.get
        open_get = self.open.get
        loaded_get = loaded.get
        values = self.enricher.values
        first = WindowRecord.first
        keys = plan.keys
        for index, (offset, ev) in enumerate(plan.batch):
            t = ev.time_ms
            if t > future_limit:
                out.rejected.append((index, self._too_far_ahead(t)))
                continue
            start = t - t % bin_ms
            if start <= late_limit:
                out.rejected.append((index, self._too_late(start)))
                continue
            key = keys[index]
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
                out.already_applied += 1
                continue  # applied before a restart: exactly-once state effect
            rec.add(t, ev.sPort, values(ev), cap)
            touched[key] = rec
            if t > max_time:
                max_time = t
        self.meta.max_event_ms = max_time
        return touched

    def _too_far_ahead(self, time_ms: int) -> ParseError:
        return ParseError(
            Reason.FUTURE_TIME,
            f"TimeGenerated {format_iso_ms(time_ms)} is more than "
            f"{self.params.max_skew_ms // 1000}s ahead of the wall clock",
        )

    def _too_late(self, start_ms: int) -> ParseError:
        return ParseError(
            Reason.TOO_LATE,
            f"window {format_iso_ms(start_ms)} is past the retention "
            f"(watermark {format_iso_ms(self.meta.watermark)})",
        )

    def _alert_touched(self, touched: dict[bytes, WindowRecord], out: StepResult) -> None:
        """Admit new open windows; alert the touched windows that reached the threshold: `early` once
        for an open window, `late` on every change of a closed one."""
        p = self.params
        bin_ms, cap, threshold = p.rule.bin_ms, p.rule.max_set_size, p.rule.threshold
        open_ = self.open
        early: list[dict[str, Any]] = []
        for key, rec in touched.items():
            reached = rec.reaches(threshold, cap)
            if rec.closed:
                if reached:
                    rec.alerts_sent += 1
                    out.alerts.append(self._alert(key, rec, "late"))
            else:
                if key not in open_:
                    self._admit(key, rec.first_ms - rec.first_ms % bin_ms, rec)
                if reached and rec.alerts_sent == 0 and p.early:
                    rec.alerts_sent = 1
                    early.append(self._alert(key, rec, "early"))
        early.sort(key=alert_sort_key)
        out.alerts[:0] = early

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
                    rec.alerts_sent += 1
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

    def overdue_count(self, now_ms: int) -> int:
        """Open windows that `tick` should have closed by now: the partition has had no input for the
        idle timeout + one bin (ticks had time to run), and they ended more than grace ago. Nonzero only
        when something keeps ticks from closing them (the partition never looks caught up): a gauge."""
        p = self.params
        if not p.idle_timeout_ms or now_ms - self.last_input_wall_ms < p.idle_timeout_ms + p.rule.bin_ms:
            return 0
        limit = now_ms - p.grace_ms
        open_ = self.open
        return sum(1 for end, keys in self._by_end.items() if end <= limit for key in keys if key in open_)

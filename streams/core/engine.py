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

Bounded memory: spilled open windows. The adapter may bound the open windows held in memory
(`--max-open-windows`): `spill(n)` drops the n least recently touched open windows and returns their
records as writes, and `restore(records, limit)` keeps at most `limit` of the stored open windows. The
engine keeps, per bin, only a count of its spilled windows. Why the answer stays exact:

1. A spilled window's latest record goes out through the normal checkpoint, never around it. Every
   change of an open window is in the writes of the step that made it, which the adapter holds until
   a checkpoint writes them (after the alerts they caused were delivered, before the input is
   acknowledged) and serves reads from meanwhile. So the store, overlaid with the writes not yet
   written, holds the latest state of every spilled window: a record changed since the last checkpoint
   is pending, one that is not is stored as it is. (`spill` returns the records as writes too, for an
   adapter that does not hold writes that way; the detector needs none.) A crash loses only what the
   replayed input rebuilds (positions, as above).
2. Found again when its key returns: `plan` lists for loading a key that is not in memory in a bin with
   spilled windows (the store answers None for a new window), and `step` takes the loaded record back
   in memory as open. The count errs only upwards (a spill counted twice costs lookups, never a miss).
3. Closed by the watermark although not in memory: when the watermark passes the end of a bin that has
   spilled windows, the step's `closing` names that bin with the keys it closed from memory. The adapter
   reads the bin's other windows - the latest version of each: its writes not yet written first, then
   the store - and hands them to `close_spilled` before it writes the step's meta record, which emits
   their `final` alerts like those of the windows closed from memory. The alerts are sent before the
   checkpoint that writes the watermark, so a crash before it closes the bin again after the restart
   (a repeated alert, same AlertId and revision), and a crash after it has delivered them.
4. A restore reads only the windows that can still be open (window start + bin > watermark: a range by
   key, which starts with the window start) and counts those past `limit` as spilled without decoding
   them; closed windows are read only when a late event of theirs comes, as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import orjson

from streams.core.alerts import alert_sort_key, build_alert
from streams.core.enrich import Enricher
from streams.core.records import IISEvent, ParseError, Reason
from streams.core.rule import RuleParams
from streams.core.state_records import NO_TIME, Meta, WindowRecord, revision
from streams.core.tenant import TenantThresholds
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
    # Per-tenant thresholds (core.tenant), shared and reloaded by the adapter; None: rule.threshold for all.
    tenant_thresholds: TenantThresholds | None = field(default=None, compare=False)


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
    # Bins whose spilled windows this step closed: bin start -> the keys it closed from memory. The
    # adapter passes the bin's other stored windows to `PartitionEngine.close_spilled` before it writes
    # this result's meta record (see the module docstring).
    closing: dict[int, set[bytes]] = field(default_factory=dict)
    already_applied: int = 0  # events skipped: their window had applied them (input read twice)


@dataclass(slots=True)
class Plan:
    """A batch made ready for `PartitionEngine.step`: each item's store key, and the keys to load.

    `load` lists the batch's windows that the store may hold: closed ones, which end at or before the
    watermark and are not in memory, and open ones not in memory in a bin that has spilled windows. A
    window that ends after the watermark in a bin without spilled windows is in memory if it exists at
    all (the watermark never goes back), so its lookup is skipped: most events fall in such windows. The
    plan is only valid at the watermark it was made at (`step` checks)."""

    batch: Sequence[tuple[int, IISEvent]]  # (position, event), see state_records.position
    keys: list[bytes]  # the store key of each item, in batch order
    load: list[bytes]  # keys the store must answer for `step`, each once
    watermark: int


class StalePlan(RuntimeError):
    """A plan stepped after the watermark moved: a window it took for open may have closed since."""


class PartitionEngine:
    """Open windows of one input partition, kept in memory (least recently touched first) unless
    spilled; closed ones live only in the store."""

    __slots__ = (
        "_by_end",
        "_expired_to",
        "_prefixes",
        "_spilled",
        "_stale",
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
        # store key -> record (the key is decoded only to alert), least recently touched first
        self.open: dict[bytes, WindowRecord] = {}
        self._by_end: dict[int, list[bytes]] = {}  # window end -> keys of the open windows ending then
        self._spilled: dict[int, int] = {}  # window end -> open windows of that bin in the store only
        self._stale: dict[int, int] = {}  # window end -> entries of `_by_end` spilled since compacted
        self._prefixes: dict[int, bytes] = {}  # window start -> its encoded store-key prefix
        self.last_input_wall_ms = now_ms
        self._expired_to = NO_TIME

    # ------------------------------------------------------------------ loading

    def open_from_ms(self) -> int:
        """The earliest window start that can still be open: what a restore reads from the store."""
        watermark = self.meta.watermark
        return 0 if watermark == NO_TIME else max(0, watermark - self.params.rule.bin_ms + 1)

    def restore(self, records: Iterable[tuple[bytes, bytes]], limit: int | None = None) -> None:
        """Admit stored window records (at assignment, possibly in chunks); open ones are kept in memory
        while fewer than `limit` are, the others counted as spilled (not decoded: see the module
        docstring). Closed ones and the meta record are skipped."""
        share = self.enricher.share
        bin_ms, watermark = self.params.rule.bin_ms, self.meta.watermark
        open_, spilled = self.open, self._spilled
        for key, data in records:
            if key == META_KEY or key in open_:
                continue
            start = key_start_ms(key)
            if start + bin_ms <= watermark:  # closed: see `_advance`
                continue
            if limit is not None and len(open_) >= limit:
                end = start + bin_ms
                spilled[end] = spilled.get(end, 0) + 1
                continue
            rec = WindowRecord.from_bytes(data)
            if not rec.closed:
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
        spilled = self._spilled
        load: dict[bytes, None] = {}
        keys: list[bytes] = []
        for _, ev in batch:
            t = ev.time_ms
            start = t - t % bin_ms  # windows.bin_start, inline: this runs per event
            # windows.encode_key(WindowKey(start, cIP, Computer, sIP, tenant)), the start's prefix memoised
            tenant = ev.tenant
            key = (prefixes.get(start) or self._prefix(start)) + (
                dumps((tenant, ev.cIP, ev.Computer, ev.sIP))
                if tenant
                else dumps((ev.cIP, ev.Computer, ev.sIP))
            )
            keys.append(key)
            if (start <= closed_before or (spilled and start + bin_ms in spilled)) and key not in open_:
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
        touched: dict[bytes, WindowRecord] = {}
        self._apply_range(plan, loaded, now_ms, out, touched, range(len(plan.batch)))
        return touched

    def _apply_range(
        self,
        plan: Plan,
        loaded: Mapping[bytes, bytes | WindowRecord | None],
        now_ms: int,
        out: StepResult,
        touched: dict[bytes, WindowRecord],
        indices: range,
    ) -> None:
        """`_apply`'s loop over these items of the plan, into `touched` (one item: the native engine's
        events it leaves to this code, core.native)."""
        p = self.params
        bin_ms, cap = p.rule.bin_ms, p.rule.max_set_size
        watermark = self.meta.watermark
        future_limit = now_ms + p.max_skew_ms
        late_limit = watermark - p.retention_ms - bin_ms  # a window starting at or before this is gone
        max_time = self.meta.max_event_ms
        touched_get = touched.get
        open_get = self.open.get
        loaded_get = loaded.get
        values = self.enricher.values
        first = WindowRecord.first
        keys, batch = plan.keys, plan.batch
        for index in indices:
            offset, ev = batch[index]
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
                    else:  # a spilled open window: back in memory (even if this event is a repeat)
                        self._unspill(start + bin_ms)
                        touched[key] = rec
            if not rec.first_time(offset):
                out.already_applied += 1
                continue  # applied before a restart: exactly-once state effect
            rec.add(t, ev.sPort, values(ev), cap)
            touched[key] = rec
            if t > max_time:
                max_time = t
        self.meta.max_event_ms = max_time

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
        tenants = p.tenant_thresholds
        open_ = self.open
        early: list[dict[str, Any]] = []
        for key, rec in touched.items():
            reached = rec.reaches(threshold if tenants is None else tenants.of_key(key), cap)
            if rec.closed:
                if reached:
                    rec.alerts_sent += 1
                    out.alerts.append(self._alert(key, rec, "late"))
            else:
                if key not in open_:
                    self._admit(key, rec.first_ms - rec.first_ms % bin_ms, rec)
                else:  # the most recently touched last: `spill` takes the coldest first
                    del open_[key]
                    open_[key] = rec
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
        spilled = self._spilled
        finals: list[dict[str, Any]] = []
        for end in sorted(e for e in self._by_end.keys() | spilled.keys() if e <= watermark):
            closed: set[bytes] | None = set() if spilled.pop(end, 0) else None
            self._stale.pop(end, None)
            self._close_bin(self._by_end.pop(end, ()), closed, finals)
            if closed is not None:
                out.closing[end - rule.bin_ms] = closed
        finals.sort(key=alert_sort_key)
        out.alerts.extend(finals)
        horizon = watermark - self.params.retention_ms - rule.bin_ms
        horizon -= horizon % rule.bin_ms
        if horizon > self._expired_to:
            self._expired_to = horizon
            out.expire_before_ms = horizon + 1  # windows starting at or before horizon are past retention

    def _close_bin(
        self, keys: Iterable[bytes], closed: set[bytes] | None, finals: list[dict[str, Any]]
    ) -> None:
        """Close the open windows of one bin (`keys`): into `closed` when it is not None, their `final`
        alerts into `finals`."""
        rule = self.params.rule
        cap, threshold, final = rule.max_set_size, rule.threshold, self.params.final
        tenants = self.params.tenant_thresholds
        open_pop = self.open.pop
        for key in keys:
            rec = open_pop(key, None)
            if rec is None:
                continue  # listed twice, or spilled
            rec.closed = True
            if closed is not None:
                closed.add(key)
            if final and rec.port_count(cap) >= (threshold if tenants is None else tenants.of_key(key)):
                rec.alerts_sent += 1
                finals.append(self._alert(key, rec, "final"))

    # ------------------------------------------------------------------ spilling

    def coldest(self, count: int) -> list[bytes]:
        """The keys of the `count` least recently touched open windows, coldest first."""
        return list(islice(self.open, max(0, count)))

    def spill(self, count: int) -> StepResult:
        """Drop the `count` least recently touched open windows from memory; their records are the
        result's writes, to be written by the normal checkpoint (see the module docstring)."""
        out = StepResult()
        open_, spilled, bin_ms = self.open, self._spilled, self.params.rule.bin_ms
        stale = self._stale
        for key in self.coldest(count):
            rec = open_.pop(key)
            end = key_start_ms(key) + bin_ms
            spilled[end] = spilled.get(end, 0) + 1
            stale[end] = stale.get(end, 0) + 1
            out.writes[key] = rec
        # A spilled key's entry in `_by_end` would keep its bytes alive (memory growing with the flood,
        # not the bound): a list with as many spilled entries as live ones is rebuilt (amortized O(1)).
        for end, n in list(stale.items()):
            keys = self._by_end.get(end)
            if keys is None:
                del stale[end]
            elif 2 * n >= len(keys):
                self._by_end[end] = [key for key in dict.fromkeys(keys) if key in open_]
                del stale[end]
        return out

    def _unspill(self, end: int) -> None:
        left = self._spilled.get(end, 0) - 1
        if left > 0:
            self._spilled[end] = left
        else:
            self._spilled.pop(end, None)

    def close_spilled(self, out: StepResult, records: Iterable[tuple[bytes, bytes | WindowRecord]]) -> None:
        """Close spilled windows of a bin in `out.closing` (the adapter reads them, the latest version of
        each, leaving out the keys listed there): their `final` alerts join `out`'s, in order."""
        rule = self.params.rule
        cap, threshold = rule.max_set_size, rule.threshold
        tenants = self.params.tenant_thresholds
        finals: list[dict[str, Any]] = []
        for key, data in records:
            rec = data if isinstance(data, WindowRecord) else WindowRecord.from_bytes(data)
            if rec.closed:
                continue  # closed already: nothing to close (a record can only be so if it is)
            rec.closed = True
            if self.params.final and rec.port_count(cap) >= (
                threshold if tenants is None else tenants.of_key(key)
            ):
                rec.alerts_sent += 1
                finals.append(self._alert(key, rec, "final"))
        if finals:
            alerts = out.alerts
            first = len(alerts)
            while first and alerts[first - 1]["Phase"] == "final":
                first -= 1
            alerts[first:] = sorted([*alerts[first:], *finals], key=alert_sort_key)

    def spilled_count(self) -> int:
        """Open windows in the store only (an upper bound: see the module docstring)."""
        return sum(self._spilled.values())

    def _alert(self, key: bytes, rec: WindowRecord, phase: str) -> dict[str, Any]:
        tenants = self.params.tenant_thresholds
        window = decode_key(key)
        threshold = None if tenants is None else tenants.of(window.tenant)
        alert = build_alert(window, rec, self.params.rule, threshold)
        alert["Revision"] = revision(rec)
        alert["Phase"] = phase
        if window.tenant:
            alert["TenantId"] = alert.pop("TenantId")  # after the stream's columns too
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

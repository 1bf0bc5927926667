"""Notifications: what a SOC wants paged, beside the exact detections topic, with suppression of repeats.

The detections topic carries every window and revision (the parity contract); a pager wants one page
per attacker per while. A notification is about an entity (group-key columns, default `cIP`) and a
suppression period: event time cut into epoch-aligned periods of `--suppress-for` (a multiple of the
bin, so a window lies in exactly one period). Per (entity, period):

- the first alert of the entity in the period (after the allowlist) sends a `page` record;
- later alerts of it in the period are suppressed: they only join the notification;
- when the watermark passes the period's end, a `summary` record with the same key (NotificationId)
  carries the windows it covers, the highest portCount and the count of suppressed repeats (windows
  beyond the first); a late alert that changes it sends the summary again with a higher Revision.

So a compacted notify topic holds one record per entity per period, and a pager that dedups by
NotificationId (PagerDuty's dedup_key, Opsgenie's alias) pages once. A cap bounds the pages of one
period (Sentinel stops at 150 alerts a run): entities beyond it are not paged, and one `cap` record,
at the period's close, counts them.

Driven by event time only (window starts and the watermark), so `replay --notify` makes the same
summaries as the stream. A page names the alert that opened it: the first one seen, which follows the
order alerts are emitted in (replay: window start, then the alert order).

Why a crash neither re-pages nor forgets a suppression. The state of each (entity, period) is a record
of the partition's store, written with the window records, by the same checkpoint, in the same order
of effects (see streams/kafka/detector.py): the page and summary records are delivered first, then
the state that says they were sent is written, then the input is acknowledged. A crash after a
checkpoint finds the state (paged: suppressed from then on, never forgotten). A crash before it
replays the input since the last checkpoint: the engine repeats the same alerts (same AlertIds), and
this module, from the same stored state, makes the same decision - a page for the same
(entity, period), under the same NotificationId key, and byte-identical summaries (their content and
Revision derive from the windows' content, not from the order or batching of events). Never a second
NotificationId for one (entity, period), and never a page lost: a page is sent before the state that
records it can be written. And no page twice: the pages delivered after the last checkpoint are on the
notify topic, so a restarted partition reads its own back (`mark_paged`, the worker's gate) before it
replays, and the replayed alert finds its page sent. (A page the crash left undelivered is sent then,
once; summaries are re-derived and sent again only if the stored state had not recorded them, with
the same bytes.)

The state records' keys start with the period's end (13 digits, like a window key's start) and go on
with a JSON object, where a window key goes on with a JSON array: every store keeps them with the
windows, the retention deletes them (a period ends at or before its windows' retention horizon, so its
windows are gone too), and `is_state_key` tells them apart. Pure and synchronous.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.core import rule
from streams.core.timefmt import format_iso_ms, parse_iso_ms
from streams.core.windows import START_DIGITS

_NS = uuid.UUID("0b5d9a7e-3f1c-5e42-8d6a-44a555d8ecee")
MAX_WINDOWS = 500  # windows tracked per notification: its state record stays far below --max-record-bytes
LISTED = 100  # windows and entities listed in one record; the counts stay exact
WINDOW_FIELDS = ("AlertId", "TimeGenerated", "cIP", "Computer", "sIP", "portCount", "ConnectionsCount")


@dataclass(frozen=True, slots=True)
class NotifyParams:
    """Which entity, how long a suppression lasts, how many pages a period at most (0 = no cap)."""

    by: tuple[str, ...] = ("cIP",)
    period_ms: int = 3_600_000
    cap: int = 150
    retention_ms: int = 86_400_000
    bin_ms: int = 600_000


def is_state_key(key: bytes) -> bool:
    """A notification state record's store key (not a window's, nor the meta record)."""
    return key[START_DIGITS : START_DIGITS + 1] == b"{"


def notification_id(params: NotifyParams, entity: Sequence[str], start_ms: int) -> str:
    """Stable identity of (entity, period): the same on every run, host and replay."""
    name = "\x1f".join(
        ("notify", rule.RULE_ID, str(start_ms), str(start_ms + params.period_ms), *params.by, *entity)
    )
    return str(uuid.uuid5(_NS, name))


@dataclass(slots=True)
class Period:
    """One (entity, period) of one partition: whether it paged, and the windows it covers."""

    entity: tuple[str, ...]
    start_ms: int
    paged: bool = False
    capped: bool = False  # not paged: the period's cap was reached first
    windows: dict[str, list[Any]] = field(default_factory=dict)  # AlertId -> WINDOW_FIELDS[1:]
    summarized: int = 0  # Revision of the last summary sent (0: none)

    def to_bytes(self, _rule: Any = None) -> bytes:
        """The stored form (`_rule`: the signature of WindowRecord.to_bytes, which the checkpoint calls)."""
        return orjson.dumps(
            {
                "e": self.entity,
                "s": self.start_ms,
                "p": self.paged,
                "c": self.capped,
                "w": self.windows,
                "r": self.summarized,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Period:
        d = orjson.loads(data)
        return cls(tuple(d["e"]), d["s"], d["p"], d["c"], d["w"], d["r"])

    def revision(self) -> int:
        """Derived from the content (1 + the windows' connections), so a replay gives the same."""
        return 1 + sum(int(w[5]) for w in self.windows.values())


@dataclass(slots=True)
class Notified:
    """What one call produced: records to publish (key, value) first, then state records to write."""

    records: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)
    writes: dict[bytes, Period] = field(default_factory=dict)
    suppressed: int = 0  # alerts that joined a notification without paging


class Notifier:
    """The notifications of one partition's alerts (replay: of all alerts)."""

    __slots__ = ("_by_end", "_cap_sent", "_closed_to", "_paged", "params", "partition", "states")

    def __init__(self, params: NotifyParams, partition: int = 0) -> None:
        self.params = params
        self.partition = partition
        self.states: dict[bytes, Period] = {}
        self._by_end: dict[int, set[bytes]] = {}  # period end -> its states' keys
        self._paged: dict[int, int] = {}  # period start -> pages sent (the cap)
        self._cap_sent: dict[int, int] = {}  # period start -> Revision of its cap record sent
        self._closed_to = -(2**62)  # periods ending at or before this are closed

    def _add(self, key: bytes, state: Period) -> None:
        self.states[key] = state
        self._by_end.setdefault(state.start_ms + self.params.period_ms, set()).add(key)
        if state.paged:
            self._paged[state.start_ms] = self._paged.get(state.start_ms, 0) + 1

    @staticmethod
    def state_key(end_ms: int, entity: Sequence[str]) -> bytes:
        return b"%013d" % end_ms + orjson.dumps({"n": list(entity)})

    def restore(self, records: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """Take this module's records of a partition's stored ones; the others are returned (for the
        engine). Cap records sent are re-derived on the next close (same content, same key)."""
        rest = []
        for key, data in records:
            if is_state_key(key):
                self._add(key, Period.from_bytes(data))
            else:
                rest.append((key, data))
        return rest

    def mark_paged(self, pages: Iterable[dict[str, Any]]) -> int:
        """Pages this partition is known to have delivered (read back from the notify topic after a
        restart) count as sent, though the crash came before the checkpoint that would have recorded
        them: the replayed alert is then suppressed instead of paging again. Returns how many were new."""
        new = 0
        p = self.params
        for page in pages:
            start = parse_iso_ms(page["PeriodStart"])
            entity = tuple(page["Entity"].get(name) for name in p.by)
            if start is None or page.get("Kind") != "page" or not all(isinstance(v, str) for v in entity):
                continue  # another configuration's record, or not a page
            key = self.state_key(start + p.period_ms, entity)
            state = self.states.get(key)
            if state is None:
                state = Period(entity, start)
                self._add(key, state)
            if not state.paged:
                state.paged, state.capped = True, False
                self._paged[start] = self._paged.get(start, 0) + 1
                new += 1
        return new

    def observe(self, alerts: Sequence[dict[str, Any]], watermark: int) -> Notified:
        """Fold alerts (as published, in order) into their notifications, then close the periods the
        watermark has passed."""
        out = Notified()
        p = self.params
        for alert in alerts:
            start = parse_iso_ms(alert["WindowStart"])
            assert start is not None  # written by core.alerts
            period = start - start % p.period_ms
            entity = tuple(alert[name] for name in p.by)
            key = self.state_key(period + p.period_ms, entity)
            state = self.states.get(key)
            if state is None:
                state = Period(entity, period)
                self._add(key, state)
            window = [alert[name] for name in WINDOW_FIELDS[1:]]
            aid = alert["AlertId"]
            old = state.windows.get(aid)
            if old != window and (old is not None or len(state.windows) < MAX_WINDOWS):
                if old is None or window[5] >= old[5]:  # a replayed older revision never goes back
                    state.windows[aid] = window
                    out.writes[key] = state
            if not state.paged and not state.capped:
                if p.cap and self._paged.get(period, 0) >= p.cap:
                    state.capped = True
                else:
                    state.paged = True
                    self._paged[period] = self._paged.get(period, 0) + 1
                    out.records.append(self._page(state, alert))
                out.writes[key] = state
            else:
                out.suppressed += 1
            if period + p.period_ms <= self._closed_to and key in out.writes:
                self._summarize(key, state, out)  # a late alert revises a closed period
        self.close(watermark, out)
        return out

    def close(self, watermark: int, out: Notified) -> None:
        """Summarize the periods that end at or before the watermark and were not summarized; forget
        those past the retention (the store's retention deletes their records)."""
        if watermark <= self._closed_to:
            return
        before, self._closed_to = self._closed_to, watermark
        p = self.params
        horizon = watermark - p.retention_ms - p.bin_ms
        for end in sorted(e for e in self._by_end if e <= watermark):
            keys = self._by_end[end]
            if end <= horizon:  # past the retention
                for key in self._by_end.pop(end):
                    del self.states[key]
                self._paged.pop(end - p.period_ms, None)
                self._cap_sent.pop(end - p.period_ms, None)
                continue
            if end <= before:
                continue  # closed before; a late alert summarizes in `observe`
            for key in sorted(keys, key=lambda k: self.states[k].entity):
                self._summarize(key, self.states[key], out)

    def _summarize(self, key: bytes, state: Period, out: Notified) -> None:
        if state.paged and state.revision() != state.summarized:
            state.summarized = state.revision()
            out.records.append(self._summary(state))
            out.writes[key] = state
        elif state.capped:
            self._cap_record(state.start_ms, out)

    # ---------------------------------------------------------------------------------- records

    def _head(self, state: Period, kind: str, revision: int) -> dict[str, Any]:
        p = self.params
        nid = notification_id(p, state.entity, state.start_ms)
        head: dict[str, Any] = {
            "NotificationId": nid,
            "Kind": kind,
            "Revision": revision,
            "Entity": dict(zip(p.by, state.entity)),
            "PeriodStart": format_iso_ms(state.start_ms),
            "PeriodEnd": format_iso_ms(state.start_ms + p.period_ms),
            "RuleId": rule.RULE_ID,
            "RuleName": rule.RULE_NAME,
            "Severity": rule.SEVERITY,
            "Title": "Port scan from " + ", ".join(f"{k} {v}" for k, v in zip(p.by, state.entity)),
        }
        return head

    def _page(self, state: Period, alert: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        record = self._head(state, "page", 1)
        record["FirstAlert"] = {name: alert[name] for name in WINDOW_FIELDS}
        return record["NotificationId"].encode(), record

    def _summary(self, state: Period) -> tuple[bytes, dict[str, Any]]:
        record = self._head(state, "summary", state.summarized)
        windows = sorted(
            (dict(zip(WINDOW_FIELDS, [aid, *values])) for aid, values in state.windows.items()),
            key=lambda w: (w["TimeGenerated"], w["AlertId"]),
        )
        record["WindowCount"] = len(windows)
        record["MaxPortCount"] = max(w["portCount"] for w in windows)
        record["ConnectionsCount"] = sum(w["ConnectionsCount"] for w in windows)
        record["SuppressedRepeats"] = len(windows) - 1
        record["FirstWindowStart"] = windows[0]["TimeGenerated"]
        record["Windows"] = windows[:LISTED]
        return record["NotificationId"].encode(), record

    def _cap_record(self, period: int, out: Notified) -> None:
        p = self.params
        end = period + p.period_ms
        over = sorted(self.states[k].entity for k in self._by_end.get(end, ()) if self.states[k].capped)
        revision = 1 + len(over)
        if not over or self._cap_sent.get(period) == revision:
            return
        self._cap_sent[period] = revision
        name = "\x1f".join(("notify-cap", rule.RULE_ID, str(period), str(self.partition), *p.by))
        nid = str(uuid.uuid5(_NS, name))
        record = {
            "NotificationId": nid,
            "Kind": "cap",
            "Revision": revision,
            "PeriodStart": format_iso_ms(period),
            "PeriodEnd": format_iso_ms(period + p.period_ms),
            "Partition": self.partition,
            "Cap": p.cap,
            "NotPaged": len(over),
            "Entities": [dict(zip(p.by, e)) for e in over[:LISTED]],
            "RuleId": rule.RULE_ID,
        }
        out.records.append((nid.encode(), record))


def notify_all(alerts: Sequence[dict[str, Any]], params: NotifyParams) -> list[tuple[bytes, dict[str, Any]]]:
    """`replay --notify`: the notifications of a finished set of alerts, fed in window-start order
    (then the alert order), every period closed at the end."""
    notifier = Notifier(params)
    ordered = sorted(enumerate(alerts), key=lambda ia: (ia[1]["WindowStart"], ia[0]))
    out = notifier.observe([a for _, a in ordered], -(2**62))
    if notifier._by_end:
        notifier.close(max(notifier._by_end), out)  # every period closed, none past the retention
    return out.records

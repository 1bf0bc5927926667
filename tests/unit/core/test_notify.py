"""Notifications (core.notify): one page per entity per suppression period, a summary at the period's close,
the stream's summaries equal `replay --notify`'s, and a crash replay (state restored from the last
checkpoint, the input since replayed) repeats only records already sent, never a new page."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.engine import PartitionEngine, StreamParams
from streams.core.notify import Notifier, NotifyParams, Period, is_state_key, notification_id, notify_all
from streams.core.offline import offline_alerts
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.core.state_records import Meta
from streams.core.windows import META_KEY, is_window_key

T0 = 1_767_268_800_000  # 2026-01-01T12:00:00Z
BIN = 600_000
RULE = RuleParams(threshold=3, max_set_size=0)
HOUR = 6 * BIN
NOTIFY = NotifyParams(by=("cIP",), period_ms=HOUR, cap=0, retention_ms=10**9, bin_ms=BIN)
STREAM = StreamParams(rule=RULE, grace_ms=BIN, idle_timeout_ms=1, retention_ms=10**9, max_skew_ms=10**12)


def scan(t: int, cip: str, ports: int, sip: str = "10.0.0.11", computer: str = "WEB01") -> list[IISEvent]:
    return [IISEvent(t + i, cip, computer, sip, 1000 + i) for i in range(ports)]


def kinds(records: list[tuple[bytes, dict[str, Any]]]) -> list[tuple[str, str]]:
    return [(r["Kind"], r["Entity"].get("cIP", "")) for _, r in records]


def test_one_page_per_entity_per_period_and_a_summary_at_close() -> None:
    events = (
        scan(T0, "198.51.100.7", 5)
        + scan(T0 + BIN, "198.51.100.7", 4)  # a repeat in the same hour: suppressed
        + scan(T0 + BIN, "198.51.100.7", 6, sip="10.0.0.12")  # another server: same entity
        + scan(T0 + HOUR, "198.51.100.7", 3)  # the next period: pages again
        + scan(T0, "203.0.113.9", 3)
    )
    records = notify_all(offline_alerts(events, RULE), NOTIFY)
    assert sorted(kinds(records)) == sorted(
        [
            *[("page", "198.51.100.7"), ("page", "203.0.113.9"), ("page", "198.51.100.7")],
            *[("summary", "198.51.100.7"), ("summary", "203.0.113.9"), ("summary", "198.51.100.7")],
        ]
    )
    first = [r for _, r in records if r["Kind"] == "summary" and r["PeriodStart"].endswith("T12:00:00.000Z")]
    by_ip = {r["Entity"]["cIP"]: r for r in first}
    hit = by_ip["198.51.100.7"]
    assert (hit["WindowCount"], hit["MaxPortCount"], hit["SuppressedRepeats"]) == (3, 6, 2)
    assert hit["ConnectionsCount"] == 15 and len(hit["Windows"]) == 3
    pages = {r["NotificationId"] for _, r in records if r["Kind"] == "page"}
    assert pages == {r["NotificationId"] for _, r in records if r["Kind"] == "summary"}  # same keys
    assert all(key == r["NotificationId"].encode() for key, r in records)


def test_entity_by_cip_and_sip_separates_servers() -> None:
    events = scan(T0, "198.51.100.7", 5) + scan(T0, "198.51.100.7", 5, sip="10.0.0.12")
    params = NotifyParams(by=("cIP", "sIP"), period_ms=HOUR, cap=0, retention_ms=10**9, bin_ms=BIN)
    pages = [r for _, r in notify_all(offline_alerts(events, RULE), params) if r["Kind"] == "page"]
    assert sorted(r["Entity"]["sIP"] for r in pages) == ["10.0.0.11", "10.0.0.12"]


def test_cap_pages_at_most_n_per_period_and_counts_the_rest_once() -> None:
    events = [e for i in range(5) for e in scan(T0, f"198.51.100.{i}", 3)]
    params = NotifyParams(by=("cIP",), period_ms=HOUR, cap=2, retention_ms=10**9, bin_ms=BIN)
    records = notify_all(offline_alerts(events, RULE), params)
    assert [r["Kind"] for _, r in records].count("page") == 2
    caps = [r for _, r in records if r["Kind"] == "cap"]
    assert len(caps) == 1 and caps[0]["NotPaged"] == 3 and len(caps[0]["Entities"]) == 3


def run_stream(
    events: list[IISEvent], rnd: random.Random, crash_every: int = 0, read_back: bool = True
) -> tuple[list[tuple[bytes, dict[str, Any]]], int]:
    """The engine and the notifier as the worker drives them: random batches; with `crash_every`, a crash
    after every that many batches, which loses everything since the last checkpoint (a checkpoint after
    every other batch): state is restored from the store and the input since replayed. Returns every
    record sent (repeats included) and the number of crashes."""
    positioned = list(enumerate(events))
    store: dict[bytes, bytes] = {}
    acked = 0  # input acknowledged: the next position to read after a crash
    now = T0 + 10**7
    sent: list[tuple[bytes, dict[str, Any]]] = []

    def restore() -> tuple[PartitionEngine, Notifier]:
        notifier = Notifier(NOTIFY)
        rest = notifier.restore(sorted(store.items()))
        engine = PartitionEngine(STREAM, Meta.from_bytes(store.get(META_KEY)), 0)
        engine.restore(rest)
        return engine, notifier

    engine, notifier = restore()
    pending: dict[bytes, Any] = {}

    def checkpoint() -> None:
        store.update(
            {k: v.to_bytes() if isinstance(v, Meta) else v.to_bytes(RULE) for k, v in pending.items()}
        )
        pending.clear()

    crashes = batches = read = 0
    while read < len(positioned):
        batch = positioned[read : read + rnd.randint(1, 25)]
        read += len(batch)
        plan = engine.plan(batch)
        out = engine.step(plan, {k: pending.get(k, store.get(k)) for k in plan.load}, now)
        notified = notifier.observe(out.alerts, engine.meta.watermark)
        paged_before = {
            notification_id(NOTIFY, state.entity, state.start_ms)
            for key, data in store.items()
            if is_state_key(key) and (state := Period.from_bytes(data)).paged
        }
        for _, record in notified.records:  # a suppression that was written is never forgotten
            assert record["Kind"] != "page" or record["NotificationId"] not in paged_before
        sent.extend(notified.records)  # delivered before the checkpoint that writes the state
        pending.update(out.writes)
        pending.update(notified.writes)
        batches += 1
        if batches % 2 == 0:  # checkpoint: state written, then input acknowledged
            checkpoint()
            acked = read
        elif crash_every and batches % crash_every == 0 and crashes < 5:
            crashes += 1  # what was not checkpointed is lost; the input since is read again
            engine, notifier = restore()
            if read_back:  # the worker reads its delivered pages back from the notify topic
                notifier.mark_paged(r for _, r in sent if r["Kind"] == "page")
            pending.clear()
            read = acked
    # Event time passes every period's end (an idle partition's watermark stops a bin past its newest
    # event, so a summary waits for later traffic): one benign event a day later.
    clock = [(len(positioned), IISEvent(T0 + 24 * HOUR, "192.0.2.1", "WEB01", "10.0.0.11", 80))]
    out = engine.step(engine.plan(clock), {}, now)
    notified = notifier.observe(out.alerts, engine.meta.watermark)
    sent.extend(notified.records)
    checkpoint()
    return sent, crashes


def summaries(records: list[tuple[bytes, dict[str, Any]]]) -> dict[bytes, dict[str, Any]]:
    """The latest summary per key."""
    out: dict[bytes, dict[str, Any]] = {}
    for key, r in records:
        if r["Kind"] == "summary" and (key not in out or r["Revision"] >= out[key]["Revision"]):
            out[key] = r
    return out


events_st = st.lists(
    st.tuples(st.integers(0, 12 * BIN), st.sampled_from(("198.51.100.7", "203.0.113.9", "2001:db8::1"))),
    max_size=25,
).map(
    lambda scans: sorted(
        (e for t, cip in scans for e in scan(T0 + t, cip, 3 + t % 3, sip=f"10.0.0.{t % 2}")),
        key=lambda e: e.time_ms,
    )
)


@settings(max_examples=60, deadline=None)
@given(events_st, st.randoms(use_true_random=False), st.sampled_from((0, 3, 5)), st.booleans())
def test_stream_summaries_equal_replay_and_crashes_never_page_twice(
    events: list[IISEvent], rnd: random.Random, crash_every: int, read_back: bool
) -> None:
    """In event-time order (each scan's events together), with or without crashes: the latest summary per
    NotificationId equals replay's; the pages are replay's, each once when the restarted partition reads
    its delivered pages back (`mark_paged`); without that, a crash can only repeat a page under its key."""
    want = notify_all(offline_alerts(events, RULE), NOTIFY)
    sent, _ = run_stream(events, rnd, crash_every, read_back)
    assert summaries(sent) == summaries(want)
    pages_want = {k for k, r in want if r["Kind"] == "page"}
    pages_sent = [k for k, r in sent if r["Kind"] == "page"]
    assert set(pages_sent) == pages_want
    if read_back or not crash_every:
        assert len(pages_sent) == len(pages_want)  # exactly one page per key
    by_revision: dict[tuple[bytes, int], dict[str, Any]] = {}
    for key, r in sent:  # a summary repeated after a crash is the same record
        if r["Kind"] == "summary":
            assert by_revision.setdefault((key, r["Revision"]), r) == r


def test_state_records_round_trip_and_are_not_window_keys() -> None:
    notifier = Notifier(NOTIFY)
    out = notifier.observe(offline_alerts(scan(T0, "198.51.100.7", 4), RULE), T0)
    (key, state), *_ = out.writes.items()
    assert is_state_key(key) and is_window_key(key)  # kept with the windows by every store
    assert Period.from_bytes(state.to_bytes()) == state
    again = Notifier(NOTIFY)
    assert again.restore([(key, state.to_bytes()), (b"0000000000000[]", b"x")]) == [
        (b"0000000000000[]", b"x")
    ]
    assert again.states[key] == state
    # after a restore the same alert is suppressed: the page is not sent again
    assert [
        r["Kind"] for _, r in again.observe(offline_alerts(scan(T0, "198.51.100.7", 4), RULE), T0).records
    ] == []


def test_records_validate_against_the_notification_schema() -> None:
    import json
    from importlib import resources

    from jsonschema import Draft202012Validator

    schema = json.loads((resources.files("streams") / "schemas" / "notification.schema.json").read_text())
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    events = [e for i in range(5) for e in scan(T0 + i % 2 * BIN, f"198.51.100.{i}", 3 + i)]
    params = NotifyParams(by=("cIP", "sIP"), period_ms=HOUR, cap=3, retention_ms=10**9, bin_ms=BIN)
    records = notify_all(offline_alerts(events, RULE), params)
    assert {r["Kind"] for _, r in records} == {"page", "summary", "cap"}
    for _, record in records:
        assert [e.message for e in validator.iter_errors(record)] == []
    assert list(validator.iter_errors({**records[0][1], "Kind": "alert"}))

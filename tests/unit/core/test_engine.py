"""The streaming engine: watermarks, early/final/late alerts, retention, and exactness across crashes.

`Sim` (tests.harness.EngineSim) is a minimal adapter around the pure engine: a dict store, alert
delivery before state writes, and crash/restart by rebuilding the engine from the store and replaying
from an older offset. With `max_open` it bounds the open windows as the detector does: spilling the
coldest after each batch, restoring at most that many, and closing a bin's spilled windows from the store.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.engine import PartitionEngine, StalePlan, StreamParams
from streams.core.offline import offline_alerts
from streams.core.records import IISEvent, Reason
from streams.core.rule import RuleParams
from streams.core.state_records import Meta, encode_writes
from streams.core.windows import META_KEY, decode_key, key_start_ms
from tests.harness import EngineSim

T0 = 1_767_268_800_000  # 2026-01-01T12:00:00Z
BIN = 600_000
NOW = T0 + 30 * BIN  # wall clock well after the test data, within skew of it
PARAMS = StreamParams(grace_ms=120_000, idle_timeout_ms=60_000, retention_ms=3_600_000, max_skew_ms=10**12)

RULE_KEYS = (
    "TimeGenerated",
    "cIP",
    "Computer",
    "sIP",
    "set_sPort",
    "ConnectionsCount",
    "portCount",
    "DistinctPortCount",
    "set_scStatusFull",
    "set_csUserName",
    "FirstSeen",
    "LastSeen",
    "AlertId",
)


def ev(t: int, port: int, cip: str = "198.51.100.7", **kw: Any) -> IISEvent:
    return IISEvent(t, cip, "WEB01", "10.0.0.11", port, **kw)


class Sim(EngineSim):
    """The harness's EngineSim with this module's parameters and wall clock."""

    def __init__(self, params: StreamParams = PARAMS, max_open: int | None = None) -> None:
        super().__init__(params, max_open, now=NOW)


def view(alerts: Any) -> list[tuple[Any, ...]]:
    return sorted(tuple(str(a[k]) for k in RULE_KEYS) for a in alerts)


def offsets(events: list[IISEvent], start: int = 0) -> list[tuple[int, IISEvent]]:
    return list(enumerate(events, start))


def test_early_when_threshold_reached_then_final_at_watermark() -> None:
    sim = Sim()
    sim.feed(offsets([ev(T0 + i, i) for i in range(29)]))
    assert sim.published == []
    sim.feed([(29, ev(T0 + 29, 29))])
    assert [(a["Phase"], a["Revision"], a["portCount"]) for a in sim.published] == [("early", 60, 30)]
    sim.feed([(30, ev(T0 + BIN + 120_000 - 1, 1, cip="x"))])  # watermark = end - 1: still open
    assert len(sim.published) == 1
    sim.feed([(31, ev(T0 + BIN + 120_000, 1, cip="x"))])  # watermark reaches the window end
    assert [(a["Phase"], a["Revision"]) for a in sim.published] == [("early", 60), ("final", 61)]
    assert sim.published[0]["AlertId"] == sim.published[1]["AlertId"]


def test_late_event_revises_closed_window_and_too_late_is_rejected() -> None:
    sim = Sim()
    sim.feed(offsets([ev(T0 + i, i) for i in range(30)]))
    sim.feed([(30, ev(T0 + 2 * BIN + 120_000, 1, cip="y"))])
    assert [a["Phase"] for a in sim.published] == ["early", "final"]
    sim.feed([(31, ev(T0 + 5, 999))])
    late = sim.published[-1]
    assert (late["Phase"], late["Revision"], late["portCount"], late["ConnectionsCount"]) == (
        "late",
        63,
        31,
        31,
    )
    # move the watermark past retention: the window is gone, its events are too late
    sim.feed([(32, ev(T0 + BIN + PARAMS.retention_ms + 120_000, 1, cip="z"))])
    sim.feed([(33, ev(T0 + 6, 1000))])
    assert sim.rejected == [(33, Reason.TOO_LATE)]
    assert not any(key_start_ms(k) == T0 for k in sim.store if k != META_KEY)


def test_closing_writes_only_the_watermark_and_a_restore_derives_closed_from_it() -> None:
    sim = Sim()
    sim.feed(offsets([ev(T0 + i, i) for i in range(30)]))  # one open window, written open
    (window_key,) = (k for k in sim.store if k != META_KEY)
    stored_open = sim.store[window_key]
    out = sim.engine.step(sim.engine.plan([(30, ev(T0 + 2 * BIN + 120_000, 1, cip="y"))]), {}, NOW)
    assert window_key not in out.writes  # closed by the watermark, not rewritten
    assert next(iter(out.writes)) == META_KEY
    assert [a["Phase"] for a in out.alerts] == ["final"]
    sim._write(encode_writes(out.writes), out.expire_before_ms)
    assert sim.store[window_key] == stored_open  # its stored flag still says open
    sim.crash()  # the restore must not reopen it: it ends before the stored watermark
    assert window_key not in sim.engine.open
    sim.feed([(31, ev(T0 + 5, 999))])  # a late event finds it closed: a late revision, all counted
    late = sim.published[-1]
    assert (late["Phase"], late["Revision"], late["portCount"]) == ("late", 63, 31)


def test_late_window_that_never_existed_is_born_closed() -> None:
    sim = Sim()
    sim.feed([(0, ev(T0 + 3 * BIN, 1, cip="w"))])  # watermark = T0 + 3 bins - grace
    sim.feed(offsets([ev(T0 + i, i) for i in range(30)], 1))
    assert [(a["Phase"], a["Revision"]) for a in sim.published] == [("late", 61)]


def test_future_events_are_rejected_and_do_not_move_the_watermark() -> None:
    sim = Sim(StreamParams(max_skew_ms=60_000))
    sim.feed(offsets([ev(T0 + i, i) for i in range(30)]), now=T0)
    sim.feed([(30, ev(T0 + 10 * BIN, 1))], now=T0)
    assert sim.rejected == [(30, Reason.FUTURE_TIME)]
    assert [a["Phase"] for a in sim.published] == ["early"]


def test_idle_partition_closes_windows_after_timeout() -> None:
    sim = Sim()
    sim.feed(offsets([ev(T0 + i, i) for i in range(30)]), now=T0 + 1000)
    sim.tick(T0 + 1000 + 59_999)
    assert [a["Phase"] for a in sim.published] == ["early"]
    sim.tick(T0 + BIN + 120_000)  # idle long enough and the wall clock minus grace passes the end
    assert [a["Phase"] for a in sim.published] == ["early", "final"]


def test_newest_event_time_survives_a_restart_after_an_idle_jump() -> None:
    """Events after an idle jump raise the newest event time but not the watermark (they are within
    grace of it): the meta record is written all the same, so that after a restart idleness closes the
    windows they opened. (Written only when the watermark rose, a restored partition's newest event time
    predated them: their window never closed, its early alert the last word.)"""
    sim = Sim()
    sim.feed(offsets([ev(T0 + i, i) for i in range(30)]), now=NOW)
    sim.tick(NOW + 60_000)  # idle: the watermark jumps to the newest event + one bin
    assert [a["Phase"] for a in sim.published] == ["early", "final"]
    later = T0 + BIN + 1000
    sim.feed(offsets([ev(later + i, i, cip="c2") for i in range(30)], 30), now=NOW + 61_000)
    assert [a["Phase"] for a in sim.published][-1] == "early"
    sim.crash()
    sim.tick(NOW + 200_000)
    assert [(a["cIP"], a["Phase"]) for a in sim.published][-1] == ("c2", "final")


def test_events_applied_before_are_counted_as_such() -> None:
    sim = Sim()
    batch = offsets([ev(T0 + i, i) for i in range(10)])
    sim.feed(batch)
    sim.crash()
    plan = sim.engine.plan(batch)
    out = sim.engine.step(plan, {k: sim.store.get(k) for k in plan.load}, NOW)
    assert out.already_applied == 10


def test_emit_final_only_and_ordering_of_closing_alerts() -> None:
    sim = Sim(StreamParams(early=False, max_skew_ms=10**12))
    events = [
        ev(T0 + i, p, cip=f"c{n}") for n, width in enumerate((35, 60, 40)) for i, p in enumerate(range(width))
    ]
    sim.feed(offsets(events))
    assert sim.published == []
    sim.feed([(len(events), ev(T0 + BIN + 120_000, 1, cip="q"))])
    assert [(a["Phase"], a["portCount"]) for a in sim.published] == [
        ("final", 60),
        ("final", 40),
        ("final", 35),
    ]


def test_replayed_offsets_are_not_counted_twice() -> None:
    sim = Sim()
    batch = offsets([ev(T0 + i, i % 40) for i in range(100)])
    sim.feed(batch[:60])
    sim.crash()
    sim.feed(batch)  # the consumer resumed from an older committed offset
    sim.feed([(100, ev(T0 + BIN + 120_000, 1, cip="q"))])
    final = sim.published[-1]
    assert final["Phase"] == "final" and final["ConnectionsCount"] == 100


scenario = st.lists(
    st.tuples(st.integers(0, 3 * BIN), st.integers(1, 20), st.sampled_from(["a", "b", "c"])),
    min_size=1,
    max_size=300,
)


@given(
    scenario,
    st.randoms(use_true_random=False),
    st.lists(st.integers(1, 60), min_size=1, max_size=8),
    st.integers(0, 3),
)
def test_latest_revision_equals_replay_for_any_order_batching_and_crashes(
    rows: list[tuple[int, int, str]], rnd: random.Random, sizes: list[int], crashes: int
) -> None:
    check_against_replay(rows, rnd, sizes, crashes)


def seeded_scenario(seed: int) -> tuple[list[tuple[int, int, str]], random.Random, list[int], int]:
    """(rows, rng, batch sizes, crashes) of a reproducible crash scenario."""
    rnd = random.Random(seed)
    rows = [(rnd.randrange(4 * BIN), rnd.randint(1, 40), rnd.choice("abc")) for _ in range(400)]
    return rows, rnd, [rnd.randint(1, 50) for _ in range(5)], 4


@pytest.mark.parametrize("seed", range(25))
def test_seeded_crash_scenarios_equal_replay(seed: int) -> None:
    check_against_replay(*seeded_scenario(seed))


CRASH_PARAMS = StreamParams(
    rule=RuleParams(threshold=8), grace_ms=60_000, retention_ms=10**9, max_skew_ms=10**12
)


def check_against_replay(
    rows: list[tuple[int, int, str]],
    rnd: random.Random,
    sizes: list[int],
    crashes: int,
    max_open: int | None = None,
) -> Sim:
    params = CRASH_PARAMS
    events = [ev(T0 + t, port, cip=c) for t, port, c in rows]
    rnd.shuffle(events)  # arrival order is not event-time order
    sim = Sim(params, max_open)
    stream = offsets(events)
    pos, committed, step = 0, 0, 0
    while pos < len(stream):
        size = sizes[step % len(sizes)]
        step += 1
        batch = stream[pos : pos + size]
        lose_writes = crashes > 0 and rnd.random() < 0.3
        sim.feed(batch, write=not lose_writes)
        if lose_writes:  # crash after publishing, before the state write: restart from the last commit
            crashes -= 1
            sim.crash()
            pos = committed
            continue
        pos += len(batch)
        if rnd.random() < 0.5:
            committed = pos  # offsets are committed only now and then
    sim.tick(NOW + 10 * BIN)  # idle: everything closes
    latest = sim.latest()
    expected = offline_alerts(events, params.rule)
    assert view(latest.values()) == view(expected)
    assert sim.rejected == []
    if max_open is not None:
        assert sim.engine.open_count() == 0 and sim.engine.spilled_count() == 0
    return sim


# --- Bounded open windows: spilled to the store, read back, closed from it ---------------------------


@given(
    st.lists(
        st.tuples(st.integers(0, 3 * BIN), st.integers(1, 20), st.sampled_from("abcdefgh")),
        min_size=1,
        max_size=300,
    ),
    st.randoms(use_true_random=False),
    st.lists(st.integers(1, 60), min_size=1, max_size=8),
    st.integers(0, 3),
    st.integers(0, 3),
)
def test_spilling_with_a_tiny_bound_equals_replay(
    rows: list[tuple[int, int, str]], rnd: random.Random, sizes: list[int], crashes: int, bound: int
) -> None:
    """Exactness with at most `bound` windows in memory (0: every window spilled after each batch),
    any order, batching and crashes: the latest alert of every window is replay's."""
    check_against_replay(rows, rnd, sizes, crashes, bound)


@pytest.mark.parametrize("seed", range(12))
def test_seeded_spilling_scenarios_equal_replay(seed: int) -> None:
    rows, rnd, sizes, crashes = seeded_scenario(seed)
    rows = [(t, port, f"{c}{i % 7}") for i, (t, port, c) in enumerate(rows)]  # more windows than the bound
    sim = check_against_replay(rows, rnd, sizes, crashes, max_open=seed % 3)
    assert any(key_start_ms(k) > 0 for k in sim.loads)  # spilled windows were read back


def test_a_spilled_window_is_read_back_when_its_key_returns_and_closed_from_the_store() -> None:
    sim = Sim(max_open=1)
    sim.feed(offsets([ev(T0 + i, i, cip="a") for i in range(29)]))
    sim.feed(offsets([ev(T0 + 100 + i, i, cip="c") for i in range(31)], 29))  # a spilled; c alerts
    assert [(a["cIP"], a["Phase"]) for a in sim.published] == [("c", "early")]
    assert sim.engine.open_count() == 1 and sim.engine.spilled_count() == 1
    sim.feed([(60, ev(T0 + 200, 29, cip="a"))])  # a returns: read back, its 30th port alerts
    assert [(a["cIP"], a["Phase"], a["portCount"]) for a in sim.published][-1] == ("a", "early", 30)
    assert set(sim.engine.open) == {k for k in sim.loads}  # a in memory again (it was loaded), c spilled
    sim.feed([(61, ev(T0 + BIN + 120_000, 1, cip="z"))])  # the watermark closes the bin
    finals = [(a["cIP"], a["portCount"]) for a in sim.published if a["Phase"] == "final"]
    assert finals == [("c", 31), ("a", 30)]  # c from the store, a from memory: portCount order
    assert sim.engine.open_count() == 1 and sim.engine.spilled_count() == 0  # z's window only


def test_an_early_alert_is_not_repeated_after_a_spill() -> None:
    sim = Sim(max_open=0)
    sim.feed(offsets([ev(T0 + i, i) for i in range(30)]))
    sim.feed([(30, ev(T0 + 30, 30))])
    assert [(a["Phase"], a["portCount"]) for a in sim.published] == [("early", 30)]


def test_restore_keeps_at_most_the_limit_and_the_rest_stays_exact() -> None:
    sim = Sim()
    sim.feed(offsets([ev(T0 + i, i // 5, cip=f"c{i % 5}") for i in range(200)]))  # 5 windows, 40 ports
    sim.max_open = 2
    sim.crash()
    assert sim.engine.open_count() == 2 and sim.engine.spilled_count() == 3
    sim.feed([(200, ev(T0 + BIN + 120_000, 1, cip="z"))])
    assert sorted(a["cIP"] for a in sim.published if a["Phase"] == "final") == [f"c{i}" for i in range(5)]


def test_positions_from_several_source_partitions_dedup_independently() -> None:
    """Repartitioned input: one window gets events from several input partitions, each in order."""
    from streams.core.state_records import position

    sim = Sim()
    events = [(position(i % 3, 100 + i // 3), ev(T0 + i, i % 40)) for i in range(120)]
    sim.feed(events[:70])
    sim.crash()
    sim.feed(events)  # the router re-forwarded everything after a crash: duplicates from every source
    sim.feed([(position(0, 10**6), ev(T0 + BIN + 120_000, 1, cip="q"))])
    final = next(a for a in sim.published if a["Phase"] == "final")
    assert final["ConnectionsCount"] == 120


# --- Window records: compact positions, stored bytes, and the earlier format ------------------------


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**64 - 1) | st.integers(0, 50)), max_size=60))
def test_applied_positions_equal_a_dict_per_source(events: list[tuple[int, int]]) -> None:
    from streams.core.state_records import WindowRecord, position

    rec = WindowRecord()
    reference: dict[int, int] = {}
    for src, seq in events:
        expected = seq > reference.get(src, -1)
        if expected:
            reference[src] = seq
        assert rec.first_time(position(src, seq)) == expected
        assert rec.offsets == reference
        assert WindowRecord.from_bytes(rec.to_bytes()).offsets == reference


def test_window_record_bytes_round_trip_and_earlier_format() -> None:
    import orjson

    from streams.core.state_records import WindowRecord, position

    rec = WindowRecord(alerts_sent=2, closed=True)
    values = ("-", "q", "W3SVC1", "ua", "GET", "200.0", "See", "0", "ok")
    for i in range(12):
        assert rec.first_time(position(i % 2, 100 + i))
        rec.add(T0 + i, 1000 + i, values if i % 3 else (f"u{i}", *values[1:]), 128)
    data = rec.to_bytes()
    stored = orjson.loads(data)
    assert stored["v"] == 2 and stored["p"] == list(range(1000, 1012))
    again = WindowRecord.from_bytes(data)
    assert again.result(128) == rec.result(128)
    assert (again.offsets, again.alerts_sent, again.closed) == ({0: 110, 1: 111}, 2, True)
    assert again.to_bytes() == data


def test_a_plan_made_before_the_watermark_moved_is_refused() -> None:
    """A window the plan took for open may have closed since (a tick between plan and step): stepping
    the plan would treat it as new and lose its state, so `step` refuses it."""
    engine = PartitionEngine(PARAMS, None, NOW)
    engine.step(engine.plan(offsets([ev(T0 + i, i) for i in range(5)])), {}, NOW)
    plan = engine.plan([(10, ev(T0 + 10, 10))])
    assert plan.load == []  # the window is open: nothing to load
    engine.tick(NOW + PARAMS.idle_timeout_ms)  # idle: the watermark passes the window, which closes
    with pytest.raises(StalePlan):
        engine.step(plan, {}, NOW + PARAMS.idle_timeout_ms)
    again = engine.plan([(10, ev(T0 + 10, 10))])
    assert again.load == [plan.keys[0]]  # now closed: the store may hold it


@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**13),
            st.text(max_size=6),
            st.sampled_from(["WEB01", 'Ω\n"x']),
            st.text(max_size=3),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_engine_store_keys_are_encode_key(rows: list[tuple[int, str, str, str]]) -> None:
    from streams.core.windows import WindowKey, encode_key

    events = [IISEvent(t, cip, computer, sip, 80) for t, cip, computer, sip in rows]
    params = StreamParams(max_skew_ms=10**14, retention_ms=10**14)
    engine = PartitionEngine(params, None, NOW)
    expected = [encode_key(WindowKey(e.time_ms - e.time_ms % BIN, e.cIP, e.Computer, e.sIP)) for e in events]
    # windows the watermark has passed may be in the store (closed): their keys are asked for
    passed = PartitionEngine(params, Meta(watermark=max(e.time_ms for e in events) + BIN), NOW)
    assert passed.plan(offsets(events)).load == list(dict.fromkeys(expected))
    # windows after the watermark are in memory or new: never looked up
    plan = engine.plan(offsets(events))
    assert plan.load == [] and plan.keys == expected
    out = engine.step(plan, {}, NOW)
    assert set(out.writes) - {META_KEY} == set(expected)


def test_the_coldest_windows_are_the_least_recently_touched() -> None:
    sim = Sim()
    sim.feed(offsets([ev(T0, 1, cip="a"), ev(T0, 1, cip="b"), ev(T0, 1, cip="c")]))
    sim.feed([(3, ev(T0 + 1, 2, cip="a"))])  # a touched again: the warmest
    assert [decode_key(k).cIP for k in sim.engine.coldest(2)] == ["b", "c"]
    out = sim.engine.spill(1)
    assert [decode_key(k).cIP for k in out.writes] == ["b"] and sim.engine.spilled_count() == 1


def test_memory_for_spilled_windows_does_not_grow_with_the_flood() -> None:
    """A flood of distinct clients under a bound of 10: what the engine keeps of its spilled windows
    (their index by window end) stays a small multiple of the bound, not one entry per client (the
    index used to keep every spilled key alive: ~140 bytes each, 490 MB of a 4M-client flood)."""
    sim = Sim(max_open=10)
    for n in range(0, 2000, 20):
        sim.feed(offsets([ev(T0 + i, 443, cip=f"2001:db8::{i:x}") for i in range(n, n + 20)], n))
    assert sim.engine.open_count() == 10 and sim.engine.spilled_count() == 1990
    assert sum(len(keys) for keys in sim.engine._by_end.values()) <= 3 * 10 + 20

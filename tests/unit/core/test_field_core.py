"""The core under the conditions the field creates: backfills after an idle worker, hostile sizes.

- idle advancement never moves a watermark past what the partition's events justify, so data of any
  age is judged by event time alone;
- every string a client controls is bounded before it is kept, every alert and state record stays
  under the record limit, and the counts stay exact whatever is trimmed.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.aggregate import WindowAgg
from streams.core.enrich import TRUNCATION_MARK, Enricher, truncate
from streams.core.offline import offline_alerts
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.core.state_records import NO_TIME, WindowRecord

from .test_engine import BIN, PARAMS, Sim, ev, offsets, view

T2022 = 1_646_092_800_000  # 2022-03-01T00:00:00Z
WALL = 1_798_761_600_000  # 2027-01-01: years after the data


def scan_2022(cip: str, start: int, ports: int, step_ms: int = 1000) -> list[IISEvent]:
    return [ev(start + i * step_ms, 1000 + i, cip=cip) for i in range(ports)]


# ---------------------------------------------------------------------------------- event time only


def test_idle_partition_that_saw_no_event_has_no_watermark() -> None:
    sim = Sim()
    sim.tick(WALL)
    sim.tick(WALL + 10 * PARAMS.idle_timeout_ms)
    assert sim.engine.watermark == NO_TIME and sim.store == {} and sim.published == []


def test_backfill_after_idle_worker_is_judged_by_event_time() -> None:
    """The field report: a worker idle for a while, then last year's logs. Nothing is too late, and
    the answer is replay's."""
    sim = Sim()
    sim.tick(WALL)  # idle long before any input
    events = scan_2022("a", T2022, 40) + scan_2022("b", T2022 + 3 * BIN, 35)
    events += scan_2022("c", T2022 + 9 * BIN, 31)
    sim.feed(offsets(events), now=WALL)
    assert sim.rejected == []
    assert view(sim.latest().values()) == view(offline_alerts(events, PARAMS.rule))


def test_idle_closes_only_what_the_events_opened_and_a_paused_backfill_equals_replay() -> None:
    rng = random.Random(7)
    events = [
        ev(T2022 + rng.randrange(6 * 3_600_000), 1000 + rng.randrange(60), cip=f"c{rng.randrange(5)}")
        for _ in range(3000)
    ]
    events.sort(key=lambda e: e.time_ms)
    sim = Sim()
    wall = WALL
    position = 0
    for chunk in (events[:1000], events[1000:2200], events[2200:]):
        sim.feed(offsets(chunk, position), now=wall)
        position += len(chunk)
        newest = max(e.time_ms for e in chunk)
        wall += 2 * PARAMS.idle_timeout_ms  # a pause longer than the idle timeout
        sim.tick(wall)
        assert sim.engine.watermark <= newest + BIN  # never past what the events justify
    assert sim.rejected == []
    latest = sim.latest()
    assert view(latest.values()) == view(offline_alerts(events, PARAMS.rule))
    assert {a["Phase"] for a in latest.values()} <= {"final", "late"}  # all closed once idle
    assert sim.engine.open_count() == 0


def test_only_events_older_than_the_retention_before_the_newest_are_too_late() -> None:
    sim = Sim()
    sim.feed(offsets(scan_2022("a", T2022 + 10 * 3_600_000, 5)), now=WALL)
    sim.tick(WALL + PARAMS.idle_timeout_ms)
    sim.feed([(100, ev(T2022 + 10 * 3_600_000 - PARAMS.retention_ms + BIN, 1))], now=WALL)
    sim.feed([(101, ev(T2022 + 10 * 3_600_000 - PARAMS.retention_ms - 2 * BIN, 1))], now=WALL)
    assert [p for p, _ in sim.rejected] == [101]


# -------------------------------------------------------------------------------------- hostile sizes


def test_truncate_is_bounded_marked_idempotent_and_keeps_whole_characters() -> None:
    assert truncate("short", 64) == "short"
    for text in ("x" * 10_000, "é" * 5000, "😀" * 3000, "a" + "\u0001" * 5000):
        cut = truncate(text, 100)
        assert len(cut.encode()) <= 100 and cut.endswith(TRUNCATION_MARK)
        assert truncate(cut, 100) == cut
        assert text.startswith(cut[: -len(TRUNCATION_MARK)])


@given(st.text(max_size=400), st.integers(min_value=64, max_value=300))
@settings(max_examples=200, deadline=None)
def test_truncate_property(text: str, limit: int) -> None:
    cut = truncate(text, limit)
    assert len(cut.encode("utf-8", "surrogatepass")) <= limit
    if len(text.encode("utf-8", "surrogatepass")) <= limit:
        assert cut == text


def test_enricher_bounds_values_and_does_not_memoise_long_requests() -> None:
    enricher = Enricher(max_value_bytes=256)
    for i in range(200):
        agent, query = f"{i}" + "A" * 100_000, "q=%41" * 20_000
        event = IISEvent(0, "c", "W", "s", 80, csUserAgent=agent, csUriQuery=query)
        values = enricher.values(event)
        assert all(len(v.encode()) <= 256 for v in values)
        assert values[3].endswith(TRUNCATION_MARK) and values[1].endswith(TRUNCATION_MARK)
    assert len(enricher._values) == 0 and len(enricher._query) == 0  # nothing of any length memoised


def hostile_scan(requests: int = 200, value_bytes: int = 8192) -> list[IISEvent]:
    rng = random.Random(3)

    def unique(i: int) -> str:
        return f"{i:05d}" + "".join(rng.choice("abcdefghij") for _ in range(value_bytes - 5))

    return [
        IISEvent(
            T2022 + i * 100,
            "203.0.113.66",
            "WEB01",
            "10.0.0.11",
            2000 + i,
            csMethod="GET",
            csUriQuery=unique(i),
            csUserName=unique(i),
            csUserAgent=unique(i),
            scStatus="404",
        )
        for i in range(requests)
    ]


def test_hostile_scanner_alert_is_bounded_with_exact_counts() -> None:
    (alert,) = offline_alerts(hostile_scan())
    assert (alert["ConnectionsCount"], alert["portCount"], alert["DistinctPortCount"]) == (200, 128, 200)
    assert {"set_csUserAgent", "set_decodedUriQuery", "set_csUserName"} <= set(alert["TruncatedSets"])
    assert len(orjson.dumps(alert)) <= RuleParams().max_record_bytes
    assert all(len(v.encode()) <= 1024 for v in alert["set_csUserAgent"])


def test_alert_trimming_is_deterministic_keeps_counts_and_names_the_sets() -> None:
    params = RuleParams(max_record_bytes=200_000)
    events = hostile_scan()
    (alert,) = offline_alerts(events, params)
    shuffled = list(events)
    random.Random(1).shuffle(shuffled)
    (again,) = offline_alerts(shuffled, params)
    assert alert == again
    assert len(orjson.dumps(alert)) <= 200_000 - 1000
    assert alert["TrimmedSets"] and set(alert["TrimmedSets"]) <= {
        "set_csUserAgent",
        "set_decodedUriQuery",
        "set_csUserName",
    }
    assert (alert["ConnectionsCount"], alert["portCount"], alert["DistinctPortCount"]) == (200, 128, 200)
    for name in alert["TrimmedSets"]:  # what is left is the smallest members, in order
        assert alert[name] == sorted(alert[name]) and len(alert[name]) < 128


def test_stream_equals_replay_for_the_hostile_scanner() -> None:
    events = hostile_scan()
    sim = Sim()
    for i in range(0, len(events), 17):  # many small batches, checkpointed in between
        sim.feed(offsets(events[i : i + 17], i), now=WALL)
    sim.tick(WALL + PARAMS.idle_timeout_ms)
    (latest,) = sim.latest().values()
    (want,) = offline_alerts(events, PARAMS.rule)
    for column in ("set_csUserAgent", "set_decodedUriQuery", "TruncatedSets", "TrimmedSets", "set_sPort"):
        assert latest[column] == want[column], column
    assert view([latest]) == view([want])


def record_with(values_per_set: int, value_bytes: int, ports: int) -> WindowRecord:
    rec = WindowRecord()
    rng = random.Random(5)
    for i in range(values_per_set):
        text = "".join(rng.choice('\u0001\u0002"\\') for _ in range(value_bytes))  # escapes: up to 6x
        rec.add(T2022, i % ports, (f"{i:04d}{text}",) * 9, 0)
    for port in range(ports):
        rec.add(T2022, port, ("u",) * 9, 0)
    return rec


def test_state_record_stays_under_the_limit_and_keeps_counts() -> None:
    rule = RuleParams()
    rec = record_with(values_per_set=256, value_bytes=1000, ports=65_536)
    count, distinct = rec.count, rec.distinct_ports()
    data = rec.to_bytes(rule)
    assert len(data) <= rule.max_record_bytes
    back = WindowRecord.from_bytes(data)
    assert (back.count, back.distinct_ports(), back.ports) == (count, distinct, set(range(65_536)))
    assert all(len(s) >= 1 for s in back.sets)


def test_trimming_sets_to_the_cap_on_write_is_lossless() -> None:
    rule = RuleParams()
    rec = WindowRecord()
    values = [f"v{i:05d}" for i in range(250)]
    random.Random(2).shuffle(values)
    for i, v in enumerate(values):
        rec.add(T2022 + i, i, (v,) * 9, rule.max_set_size)
    before = rec.result(rule.max_set_size)
    back = WindowRecord.from_bytes(rec.to_bytes(rule))
    assert back.result(rule.max_set_size) == before == rec.result(rule.max_set_size)
    assert all(len(s) <= rule.max_set_size for s in back.sets)


def test_port_bitmap_round_trip() -> None:
    agg = WindowAgg()
    ports = set(random.Random(9).sample(range(65_536), 5000)) | {0, 65_535}
    for p in ports:
        agg.add(T2022, p, ("x",) * 9, 0)
    state: dict[str, Any] = agg.to_state()
    assert isinstance(state["p"], dict)
    assert WindowAgg.from_state(orjson.loads(orjson.dumps(state))).ports == ports

"""Allowlists (core.allowlist): replay and the stream with an allowlist equal the rule over the input with
the allowlisted rows removed before grouping (the Sentinel lab's `where cIP !in (...)`), for exact, CIDR
(IPv4 and IPv6) and expired entries; parsing of CSV, JSON lines and topic records."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.allowlist import (
    Allowlist,
    AllowlistError,
    Entry,
    entry_of_record,
    judge,
    make_entry,
    parse_text,
)
from streams.core.engine import PartitionEngine, StreamParams
from streams.core.offline import offline_alerts
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.core.state_records import Meta, encode_writes
from streams.core.timefmt import format_iso_ms

T0 = 1_767_268_800_000  # 2026-01-01T12:00:00Z
BIN = 600_000
RULE = RuleParams(threshold=3, max_set_size=0)
CIPS = (
    "198.51.100.7",
    "198.51.100.200",
    "203.0.113.9",
    "10.1.2.3",
    "2001:db8::1",
    "2001:db8:ffff::9",
    "fe80::1",
    "::ffff:10.9.9.9",
    "not-an-ip",
    "-",
)
COMPUTERS = ("WEB01", "WEB02")
SIPS = ("10.0.0.11", "10.0.0.12", "2001:db8:1::443")
VALUES = {
    "cIP": (*CIPS, "198.51.100.0/24", "10.0.0.0/8", "2001:db8::/32", "2001:db8::/64", "0.0.0.0/0", "::/0"),
    "Computer": ("WEB01", "web01", "WEB02"),
    "sIP": (*SIPS, "10.0.0.0/30", "2001:db8:1::/48"),
}


def ev(t: int, port: int, cip: str, computer: str = "WEB01", sip: str = "10.0.0.11") -> IISEvent:
    return IISEvent(t, cip, computer, sip, port)


def rows_removed(events: list[IISEvent], allowlist: Allowlist, bin_ms: int = BIN) -> list[IISEvent]:
    """The specification: the `where` clause, row by row, before grouping."""
    return [
        e
        for e in events
        if not allowlist.matches_row(
            e.time_ms - e.time_ms % bin_ms, {"cIP": e.cIP, "Computer": e.Computer, "sIP": e.sIP}
        )
    ]


def strip(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in a.items() if k not in ("AllowlistVersion", "Revision", "Phase")} for a in alerts
    ]


entries_st = st.lists(
    st.builds(
        lambda field, i, expires: make_entry(
            {
                "field": field,
                "value": VALUES[field][i % len(VALUES[field])],
                "expires": "" if expires is None else format_iso_ms(T0 + expires * BIN),
            }
        ),
        st.sampled_from(("cIP", "Computer", "sIP")),
        st.integers(0, 100),
        st.none() | st.integers(-1, 6),
    ),
    max_size=5,
)
events_st = st.lists(
    st.builds(
        ev,
        st.integers(0, 6 * BIN),
        st.integers(1, 8),
        st.sampled_from(CIPS),
        st.sampled_from(COMPUTERS),
        st.sampled_from(SIPS),
    ),
    max_size=150,
).map(lambda evs: [IISEvent(T0 + e.time_ms, e.cIP, e.Computer, e.sIP, e.sPort) for e in evs])


@settings(max_examples=150, deadline=None)
@given(events_st, entries_st)
def test_replay_with_allowlist_equals_rule_over_rows_removed(
    events: list[IISEvent], entries: list[Entry]
) -> None:
    allowlist = Allowlist.of(entries)
    verdict = judge(offline_alerts(events, RULE), allowlist)
    assert strip(verdict.kept) == strip(offline_alerts(rows_removed(events, allowlist), RULE))
    assert all(a["AllowlistVersion"] == allowlist.version for a in verdict.kept)


@settings(max_examples=60, deadline=None)
@given(events_st, entries_st, st.randoms(use_true_random=False))
def test_stream_with_allowlist_latest_equals_rule_over_rows_removed(
    events: list[IISEvent], entries: list[Entry], rnd: random.Random
) -> None:
    """The engine's alerts judged as they leave it (what the worker does): the latest revision per
    AlertId of the kept alerts is the rule over the rows the `where` clause keeps."""
    allowlist = Allowlist.of(entries)
    params = StreamParams(rule=RULE, grace_ms=BIN, idle_timeout_ms=1, retention_ms=10**9, max_skew_ms=10**12)
    engine = PartitionEngine(params, Meta(), 0)
    rnd.shuffle(events)
    positioned = list(enumerate(events))
    kept: dict[str, dict[str, Any]] = {}
    now = T0 + 100 * BIN
    steps = []
    store: dict[bytes, bytes] = {}  # a window closed before its late events must be found again
    while positioned:
        size = rnd.randint(1, 20)
        batch, positioned = positioned[:size], positioned[size:]
        plan = engine.plan(batch)
        out = engine.step(plan, {k: store.get(k) for k in plan.load}, now)
        store.update(encode_writes(out.writes))
        steps.append(out)
    steps.append(engine.tick(now + 10**9))
    for out in steps:
        for alert in judge(out.alerts, allowlist).kept:
            if alert["AlertId"] not in kept or alert["Revision"] >= kept[alert["AlertId"]]["Revision"]:
                kept[alert["AlertId"]] = alert
    want = {a["AlertId"]: a for a in strip(offline_alerts(rows_removed(events, allowlist), RULE))}
    assert {k: strip([v])[0] for k, v in kept.items()} == want


def test_exact_cidr_v4_v6_mapped_and_garbage() -> None:
    allowlist = Allowlist.of(
        make_entry(r)
        for r in (
            {"field": "cIP", "value": "198.51.100.7", "reason": "pen test"},
            {"field": "cIP", "value": "10.0.0.0/8"},
            {"field": "cIP", "value": "2001:db8::/32"},
            {"field": "Computer", "value": "LB01"},
            {"field": "sIP", "value": "192.0.2.0/24"},
        )
    )

    def hit(cip: str, computer: str = "WEB01", sip: str = "10.0.0.11") -> str | None:
        entry = allowlist.match(T0, cip, computer, sip)
        return None if entry is None else entry.id

    assert hit("198.51.100.7") == "cIP:198.51.100.7"
    assert hit("198.51.100.8") is None
    assert hit("10.200.1.1") == "cIP:10.0.0.0/8"
    assert hit("::ffff:10.200.1.1") == "cIP:10.0.0.0/8"  # IPv4-mapped IPv6 is its IPv4 address
    assert hit("2001:db8:5::1") == "cIP:2001:db8::/32"
    assert hit("2001:db9::1") is None
    assert hit("10.0.0.x") is None  # text that is no address never matches a range
    assert hit("1.1.1.1", computer="LB01") == "Computer:LB01"
    assert hit("1.1.1.1", computer="lb01") is None  # case-sensitive, like Kusto's !in
    assert hit("1.1.1.1", sip="192.0.2.77") == "sIP:192.0.2.0/24"
    assert hit("10.0.0.0/8") is None  # the range's own text is not an address in it


def test_expires_is_compared_with_the_window_start() -> None:
    entry = make_entry({"field": "cIP", "value": "198.51.100.7", "expires": format_iso_ms(T0 + BIN)})
    allowlist = Allowlist.of([entry])
    assert allowlist.match(T0, "198.51.100.7", "W", "S") is entry  # window [T0, T0+bin) starts before
    assert allowlist.match(T0 + BIN, "198.51.100.7", "W", "S") is None  # starts at expiry: alerted
    day = make_entry({"field": "cIP", "value": "x", "expires": "2026-01-01"})
    assert day.expires_ms == T0 - 12 * 3_600_000 + 86_400_000  # a bare date: through that day (UTC)


def test_version_is_order_independent_and_names_the_content() -> None:
    a = make_entry({"field": "cIP", "value": "198.51.100.7"})
    b = make_entry({"field": "sIP", "value": "10.0.0.0/8", "reason": "lb"})
    assert Allowlist.of([a, b]).version == Allowlist.of([b, a]).version
    assert Allowlist.of([a, b]).version.startswith("sha256:")
    assert Allowlist.of([a]).version != Allowlist.of([a, b]).version
    changed = make_entry({"field": "sIP", "value": "10.0.0.0/8", "reason": "other"})
    assert Allowlist.of([a, b]).version != Allowlist.of([a, changed]).version
    assert Allowlist.of([]).version == ""


def test_csv_and_jsonl_parse_alike() -> None:
    csv_text = (
        "# pen tests and load balancers\n"
        "field,value,reason,owner,expires\n"
        "cIP,198.51.100.0/24,pen test Q1,secops@contoso,2026-03-31\n"
        "Computer,LB01,,netops,\n"
        "\n"
        'sIP,"10.0.0.11",health checker,,\n'
    )
    jsonl_text = (
        '{"field": "cIP", "value": "198.51.100.0/24", "reason": "pen test Q1", "owner": "secops@contoso",'
        ' "expires": "2026-03-31"}\n'
        '{"field": "Computer", "value": "LB01", "owner": "netops"}\n'
        '{"field": "sIP", "value": "10.0.0.11", "reason": "health checker"}\n'
    )
    assert Allowlist.of(parse_text(csv_text)) == Allowlist.of(parse_text(jsonl_text))
    assert len(parse_text("field,value\ncIP,1.2.3.4\n")) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cIP,1.2.3.4\n", "header"),
        ("field,value,color\ncIP,1\n", "unknown columns"),
        ("field,value\nuser,bob\n", "f.csv:2: field must be one of"),
        ("field,value\ncIP,\n", "value is empty"),
        ("field,value\ncIP,10.0.0.0/33\n", "not a CIDR range"),
        ("field,value,expires\ncIP,1.2.3.4,tomorrow\n", "expires is not"),
        ('{"field": "cIP"}\n{"field": "cIP", "value": 7}\n', "f.csv:1: value is empty"),
        ('{"field": "cIP", "value": "1.2.3.4", "why": "x"}\n', "unknown keys"),
    ],
)
def test_bad_entries_are_refused_with_their_line(text: str, message: str) -> None:
    with pytest.raises(AllowlistError, match=message):
        parse_text(text, "f.csv")


def test_topic_records_and_tombstones() -> None:
    entry_id, entry = entry_of_record(b"cIP:198.51.100.7", b'{"reason": "pen test", "expires": "2026-02-01"}')
    assert entry is not None and entry_id == "cIP:198.51.100.7" and entry.reason == "pen test"
    assert entry_of_record(b"cIP:10.1.2.3/8", None) == ("cIP:10.0.0.0/8", None)  # canonical range id
    with pytest.raises(AllowlistError):
        entry_of_record(None, b"{}")
    with pytest.raises(AllowlistError, match="does not name"):
        entry_of_record(b"cIP:1.2.3.4", b'{"value": "5.6.7.8"}')
    with pytest.raises(AllowlistError):
        entry_of_record(b"cIP:1.2.3.4", b"[1]")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32), st.none() | st.integers(-2, 2)), max_size=30
    ),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20),
    st.lists(st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)), max_size=10),
)
def test_range_index_equals_scanning_every_range(
    v4: list[tuple[int, int, int | None]], addresses: list[int], v6: list[tuple[int, int]]
) -> None:
    """The prefix-length index finds what testing `addr in network` on every entry finds (first by id)."""
    import ipaddress

    entries = [
        make_entry(
            {
                "field": "cIP",
                "value": f"{ipaddress.IPv4Address(a)}/{n}",
                "expires": "" if e is None else format_iso_ms(T0 + e * BIN),
            }
        )
        for a, n, e in v4
    ] + [make_entry({"field": "cIP", "value": f"{ipaddress.IPv6Address(a)}/{n}"}) for a, n in v6]
    allowlist = Allowlist.of(entries)
    for raw in addresses:
        for text in (
            str(ipaddress.IPv4Address(raw)),
            f"::ffff:{ipaddress.IPv4Address(raw)}",
            f"2001:db8::{raw % 65536:x}",
        ):
            addr = ipaddress.ip_address(text)
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            hits = sorted(
                (e for e in allowlist.entries if e.network is not None and addr.version == e.network.version
                 and addr in e.network and e.applies_to(T0)),
                key=lambda e: e.id,
            )  # fmt: skip
            got = allowlist.match(T0, text, "W", "S")
            assert got == (hits[0] if hits else None)

"""Tenants (core.tenant): two tenants' windows never mix; per-tenant thresholds and allowlists; events
without a tenant; and without --tenant-field, keys, AlertIds, alerts and state bytes as before."""

from __future__ import annotations

import random
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core import rule
from streams.core.alerts import alert_id
from streams.core.allowlist import Allowlist, entry_of_record, judge, make_entry, parse_text
from streams.core.engine import StreamParams
from streams.core.entities import add_entities, ocsf_finding
from streams.core.notify import NotifyParams, notify_all
from streams.core.offline import OfflineRule, offline_alerts
from streams.core.parse import event_from_record, single_event
from streams.core.records import IISEvent, ParseError, Reason
from streams.core.rule import RuleParams
from streams.core.shippers import MessageReader
from streams.core.state_records import encode_writes
from streams.core.tenant import (
    MAX_TENANT_CHARS,
    TenantError,
    TenantSpec,
    TenantThresholds,
    key_tenant,
    lookup,
    parse_thresholds,
    single_event_with_tenant,
)
from streams.core.windows import WindowKey, decode_key, encode_key, routing_key
from tests.unit.core.test_engine import BIN, NOW, T0, Sim, offsets

RULE = RuleParams(threshold=10)
PARAMS = StreamParams(rule=RULE, grace_ms=60_000, retention_ms=10**9, max_skew_ms=10**12)


def ev(t: int, port: int, tenant: str = "", cip: str = "198.51.100.7") -> IISEvent:
    return IISEvent(T0 + t, cip, "WEB01", "10.0.0.11", port, "GET", tenant=tenant)


def scan(tenant: str, ports: range, t: int = 0, cip: str = "198.51.100.7") -> list[IISEvent]:
    return [ev(t + i, p, tenant, cip) for i, p in enumerate(ports)]


def stream(events: list[IISEvent], params: StreamParams = PARAMS, size: int = 7) -> Sim:
    sim = Sim(params)
    for i in range(0, len(events), size):
        sim.feed(offsets(events[i : i + size], i))
    sim.tick(NOW + 10 * BIN)
    return sim


# ------------------------------------------------------------------------------------- syntax


def test_spec_syntax_and_errors() -> None:
    assert TenantSpec.parse("") is None
    assert TenantSpec.parse("header:X-Tenant") == TenantSpec("header", "X-Tenant")
    assert TenantSpec.parse(" field:fields.tenant ", "shared") == TenantSpec(
        "field", "fields.tenant", "shared"
    )
    assert TenantSpec.parse("fixed:contoso: east").name == "contoso: east"  # type: ignore[union-attr]
    for bad in ("TenantId", "query:x", "field:", "fixed:" + "x" * (MAX_TENANT_CHARS + 1)):
        with pytest.raises(TenantError):
            TenantSpec.parse(bad)
    with pytest.raises(TenantError):
        TenantSpec.parse("", "orphan-default")


def test_values_missing_default_bounded_and_typed() -> None:
    spec = TenantSpec("field", "TenantId")
    assert spec.of_record({"TenantId": "t1"}) == "t1"
    assert spec.of_record({"TenantId": 42}) == "42"  # a number reads as its digits
    for missing in ({}, {"TenantId": None}, {"TenantId": ""}):
        error = spec.of_record(missing)
        assert isinstance(error, ParseError) and error.reason is Reason.TENANT_MISSING
    assert TenantSpec("field", "TenantId", "shared").of_record({}) == "shared"
    # present but unusable: refused, never moved into the default tenant
    for bad in ({"TenantId": "x" * (MAX_TENANT_CHARS + 1)}, {"TenantId": ["t1"]}, {"TenantId": True}):
        error = TenantSpec("field", "TenantId", "shared").of_record(bad)
        assert isinstance(error, ParseError) and error.reason is Reason.INVALID_FIELD, bad
    header = TenantSpec("header", "X-Tenant")
    assert header.of_headers([("X-Tenant", b"a"), ("other", b"b"), ("X-Tenant", b"b")]) == "b"
    assert header.of_headers(None) == ParseError(
        Reason.TENANT_MISSING, "no tenant: header X-Tenant is missing or empty"
    )
    assert isinstance(header.of_headers([("X-Tenant", b"\xff")]), ParseError)
    assert TenantSpec("fixed", "contoso").of_record(None) == "contoso"


def test_field_paths_nested_dotted_and_mixed() -> None:
    assert lookup({"fields": {"tenant": "a"}}, "fields.tenant") == "a"
    assert lookup({"fields.tenant": "b"}, "fields.tenant") == "b"
    assert lookup({"a": {"b.c": "d"}}, "a.b.c") == "d"
    assert lookup({"fields": "flat"}, "fields.tenant") is None


# ------------------------------------------------------------------------------------- reading


RECORD = {
    "TimeGenerated": "2026-01-01T12:00:00Z",
    "cIP": "198.51.100.7",
    "Computer": "WEB01",
    "sIP": "10.0.0.11",
    "sPort": 443,
    "csMethod": "GET",
    "csUriQuery": "-",
    "csUserName": "-",
    "sSiteName": "W3SVC1",
    "csUserAgent": "ua",
    "scStatus": "200",
    "scSubStatus": "0",
    "scWin32Status": "0",
}


def test_reader_reads_the_tenant_of_each_record_of_an_envelope_and_of_a_shipper_envelope() -> None:
    reader = MessageReader(tenant=TenantSpec("field", "TenantId"))
    doc = {"records": [{**RECORD, "TenantId": "a"}, {**RECORD, "TenantId": "b"}, RECORD]}
    results = reader.read(orjson.dumps(doc))
    assert [r.tenant if isinstance(r, IISEvent) else r.reason for _, r in results] == [
        "a",
        "b",
        Reason.TENANT_MISSING,
    ]
    filebeat = {
        "message": "2026-01-01 12:00:00 10.0.0.11 GET / - 443 - 198.51.100.7 ua - 200 0 0 1",
        "host": {"name": "WEB01"},
        "fields": {"tenant": "fabrikam"},
    }
    ((_, event),) = MessageReader(tenant=TenantSpec("field", "fields.tenant")).read(orjson.dumps(filebeat))
    assert isinstance(event, IISEvent) and event.tenant == "fabrikam"
    line = str(filebeat["message"]).encode()
    ((_, text),) = MessageReader("WEB01", tenant=TenantSpec("fixed", "c")).read(line)
    assert isinstance(text, IISEvent) and text.tenant == "c"
    # a header tenant is the adapter's: the reader leaves events without one
    ((_, plain),) = MessageReader(tenant=TenantSpec("header", "X")).read(orjson.dumps(RECORD))
    assert isinstance(plain, IISEvent) and plain.tenant == ""


@settings(max_examples=200)
@given(
    st.one_of(
        st.none(),
        st.text(max_size=5),
        st.integers(-5, 2**63 - 1),
        st.booleans(),
        st.lists(st.text(max_size=2)),
    ),
    st.sampled_from([RECORD, {**RECORD, "sPort": "443"}, {**RECORD, "cIP": "x" * 300}, {"TimeGenerated": 1}]),
)
def test_the_fast_path_agrees_with_the_reader(tenant: Any, record: dict[str, Any]) -> None:
    spec = TenantSpec("field", "TenantId")
    fast = single_event_with_tenant(spec)
    assert fast is not None
    payload = orjson.dumps({**record, "TenantId": tenant})
    ((_, slow),) = MessageReader(tenant=spec).read(payload)
    got = fast(payload)
    if got is not None:  # taken on the fast path: exactly what the reader makes
        assert got == slow
    else:  # left to the reader, which names any problem
        assert not isinstance(slow, IISEvent) or type(tenant) is not str or slow.tenant == tenant


def test_no_fast_path_for_nested_fields_or_columns() -> None:
    assert single_event_with_tenant(TenantSpec("field", "fields.tenant")) is None
    assert single_event_with_tenant(TenantSpec("field", "Computer")) is None
    assert single_event_with_tenant(TenantSpec("header", "X")) is None


# ------------------------------------------------------------------------------------- never mixed


def test_two_tenants_with_the_same_key_never_mix() -> None:
    # each tenant 6 ports of one (cIP, Computer, sIP): together 12 >= 10, apart never
    events = scan("contoso", range(1, 7)) + scan("fabrikam", range(7, 13))
    assert offline_alerts([IISEvent(**{**_fields(e), "tenant": ""}) for e in events], RULE)  # mixed: an alert
    assert offline_alerts(events, RULE) == []
    assert stream(events).published == []
    # each reaching it alone: two alerts, apart, with their tenant
    events = scan("contoso", range(1, 11)) + scan("fabrikam", range(20, 35))
    alerts = offline_alerts(events, RULE)
    assert [(a["TenantId"], a["portCount"]) for a in alerts] == [("fabrikam", 15), ("contoso", 10)]
    assert len({a["AlertId"] for a in alerts}) == 2
    assert all(list(a)[-1] == "TenantId" for a in alerts)
    latest = stream(events).latest()
    assert sorted((a["TenantId"], a["portCount"], a["AlertId"]) for a in latest.values()) == sorted(
        (a["TenantId"], a["portCount"], a["AlertId"]) for a in alerts
    )
    assert all(list(a)[-1] == "TenantId" for a in latest.values())


def _fields(e: IISEvent) -> dict[str, Any]:
    return {name: getattr(e, name) for name in IISEvent.__slots__}  # type: ignore[attr-defined]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3 * BIN),
            st.integers(1, 15),
            st.sampled_from("ab"),
            st.sampled_from(["t1", "t2", "t3"]),
        ),
        min_size=1,
        max_size=200,
    ),
    st.randoms(use_true_random=False),
)
def test_each_tenant_alone_equals_its_part_of_the_shared_stream(
    rows: list[tuple[int, int, str, str]], rnd: random.Random
) -> None:
    """The shared topic's alerts are, tenant by tenant, those of each tenant's events on their own; and
    the stream equals the batch answer (any arrival order)."""
    events = [ev(t, port, tenant, cip) for t, port, cip, tenant in rows]
    rnd.shuffle(events)
    shared = offline_alerts(events, RULE)
    for tenant in ("t1", "t2", "t3"):
        alone = offline_alerts([e for e in events if e.tenant == tenant], RULE)
        assert [a for a in shared if a["TenantId"] == tenant] == alone
    latest = stream(events).latest()
    assert sorted(_rule_view(a) for a in latest.values()) == sorted(_rule_view(a) for a in shared)


def _rule_view(alert: dict[str, Any]) -> tuple[Any, ...]:
    keys = ("AlertId", "TenantId", "cIP", "TimeGenerated", "portCount", "ConnectionsCount", "set_sPort")
    return tuple(str(alert[k]) for k in keys)


def test_store_keys_alert_ids_and_routing_keys_name_the_tenant_first() -> None:
    key = WindowKey(T0, "198.51.100.7", "WEB01", "10.0.0.11", "contoso")
    assert encode_key(key) == b"%013d" % T0 + b'["contoso","198.51.100.7","WEB01","10.0.0.11"]'
    assert decode_key(encode_key(key)) == key and key_tenant(encode_key(key)) == "contoso"
    assert key_tenant(encode_key(key._replace(tenant=""))) == ""
    assert (
        alert_id(key, BIN)
        != alert_id(key._replace(tenant="fabrikam"), BIN)
        != alert_id(key._replace(tenant=""), BIN)
    )
    e = ev(0, 80, "contoso")
    assert routing_key(e) == b"contoso|198.51.100.7|WEB01|10.0.0.11"
    sim = stream(scan("contoso", range(1, 3)))
    assert [k for k in sim.store if k[:1].isdigit()] == [encode_key(key)]


# ------------------------------------------------------------------------------------- default off


def _old_key(start: int, e: IISEvent) -> bytes:
    """The store key before tenants existed (the formula of the earlier core.windows.encode_key)."""
    return b"%013d%s" % (start, orjson.dumps((e.cIP, e.Computer, e.sIP)))


def _old_alert_id(start: int, e: IISEvent) -> str:
    name = "\x1f".join((rule.RULE_ID, str(start), str(start + BIN), e.cIP, e.Computer, e.sIP))
    return str(uuid.uuid5(uuid.UUID("6f1d3c52-8d0e-5b8e-9a43-44a555d8ecee"), name))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2 * BIN), st.integers(1, 15), st.text(min_size=1, max_size=4)),
        min_size=1,
        max_size=80,
    )
)
def test_without_tenants_keys_alert_ids_routing_and_alerts_are_as_before(
    rows: list[tuple[int, int, str]],
) -> None:
    events = [ev(t, port, "", cip) for t, port, cip in rows]
    sim = stream(events)
    starts = {(e.time_ms - e.time_ms % BIN, e.cIP): e for e in events}
    assert {k for k in sim.store if k[:1].isdigit()} == {_old_key(s, e) for (s, _), e in starts.items()}
    for e in events:
        assert routing_key(e) == f"{e.cIP}|{e.Computer}|{e.sIP}".encode()
    for alert in [*sim.published, *offline_alerts(events, RULE)]:
        assert "TenantId" not in alert
        start = alert["WindowStart"]
        e = next(x for (s, c), x in starts.items() if c == alert["cIP"] and _iso(s) == start)
        assert alert["AlertId"] == _old_alert_id(e.time_ms - e.time_ms % BIN, e)
    # the state records of a tenant's windows are byte-identical to the same windows without one
    tenanted = stream([IISEvent(**{**_fields(e), "tenant": "t"}) for e in events])
    plain = {k: v for k, v in sim.store.items() if k[:1].isdigit()}
    for k, v in tenanted.store.items():
        if k[:1].isdigit():
            parts = orjson.loads(k[13:])
            assert parts[0] == "t" and plain[k[:13] + orjson.dumps(parts[1:])] == v
    # the reader and the fast path make events without a tenant
    assert single_event(orjson.dumps(RECORD)) == event_from_record(RECORD)
    assert event_from_record(RECORD).tenant == ""  # type: ignore[union-attr]


def _iso(ms: int) -> str:
    from streams.core.timefmt import format_iso_ms

    return format_iso_ms(ms)


# ------------------------------------------------------------------------------------- thresholds


def test_per_tenant_thresholds_in_batch_and_stream_including_early_alerts() -> None:
    table = TenantThresholds(10, {"strict": 20, "loose": 3})
    params = StreamParams(
        rule=RULE, grace_ms=60_000, retention_ms=10**9, max_skew_ms=10**12, tenant_thresholds=table
    )
    events = scan("strict", range(1, 16)) + scan("loose", range(1, 5)) + scan("other", range(1, 12))
    batch = OfflineRule(RULE, table)
    batch.add_all(events)
    found = {a["TenantId"]: a for a in batch.alerts()}
    assert sorted(found) == ["loose", "other"]  # strict's 15 ports are under its 20
    assert found["loose"]["Parameters"]["PortThreshold"] == 3
    assert found["other"]["Parameters"]["PortThreshold"] == 10
    sim = stream(events, params, size=1)
    early = {a["TenantId"]: a for a in sim.published if a["Phase"] == "early"}
    assert sorted(early) == ["loose", "other"] and early["loose"]["ConnectionsCount"] == 3
    assert {a["TenantId"] for a in sim.latest().values()} == {"loose", "other"}
    # a reload is in force for the windows judged after it
    table.replace({"strict": 12})
    more = stream(events, params)
    assert {a["TenantId"] for a in more.latest().values()} == {"strict", "other"}


def test_thresholds_file_csv_and_jsonl() -> None:
    assert parse_thresholds("tenant,threshold\ncontoso,20\n# note\nfabrikam , 5\ncontoso,25\n", 128) == {
        "contoso": 25,
        "fabrikam": 5,
    }
    assert parse_thresholds('{"tenant": "a", "threshold": 7}\n', 128) == {"a": 7}
    bad_files = (
        "tenant,limit\na,1\n",
        "tenant,threshold\na,0\n",
        "tenant,threshold\na,200\n",
        "tenant,threshold\n,5\n",
        "tenant,threshold\na,x\n",
        '{"tenant": "a"}\n',
        "tenant,threshold\na,1,2\n",
    )
    for bad in bad_files:
        with pytest.raises(TenantError):
            parse_thresholds(bad, 128)


# ------------------------------------------------------------------------------------- allowlists


def test_allowlist_tenant_column_applies_to_that_tenant_only() -> None:
    allowlist = Allowlist.of(
        parse_text(
            "field,value,reason,tenant\n"
            "cIP,198.51.100.0/24,pen test,contoso\n"
            "Computer,WEB09,health checker,\n"
        )
    )
    events = (
        scan("contoso", range(1, 12))
        + scan("fabrikam", range(1, 12))
        + [
            IISEvent(**{**_fields(e), "Computer": "WEB09"})
            for e in scan("fabrikam", range(1, 12), cip="203.0.113.1")
        ]
    )
    verdict = judge(offline_alerts(events, RULE), allowlist)
    assert [(a["TenantId"], a["Computer"]) for a in verdict.kept] == [("fabrikam", "WEB01")]
    assert sorted((e.reason, a["TenantId"]) for e, a in verdict.suppressed) == [
        ("health checker", "fabrikam"),
        ("pen test", "contoso"),
    ]
    # the where-clause reading: the tenant's rows only
    row = {"cIP": "198.51.100.7", "Computer": "WEB01", "sIP": "10.0.0.11"}
    assert allowlist.matches_row(T0, row, "contoso") and not allowlist.matches_row(T0, row, "fabrikam")


def test_allowlist_versions_without_tenants_are_unchanged_and_topic_keys_carry_the_tenant() -> None:
    import hashlib

    entry = make_entry({"field": "cIP", "value": "10.0.0.1", "reason": "r"})
    expected = hashlib.sha256(orjson.dumps([["cIP", "10.0.0.1", "r", "", None]])).hexdigest()[:16]
    assert Allowlist.of([entry]).version == f"sha256:{expected}"  # the earlier digest of the same list
    a = make_entry({"field": "cIP", "value": "10.0.0.1", "tenant": "a"})
    assert (
        Allowlist.of([a]).version != Allowlist.of([make_entry({"field": "cIP", "value": "10.0.0.1"})]).version
    )
    assert (
        len(Allowlist.of([entry, a, make_entry({"field": "cIP", "value": "10.0.0.1", "tenant": "b"})])) == 3
    )
    key = orjson.dumps(["a", "cIP", "10.0.0.1"])
    assert entry_of_record(key, b'{"reason": "x"}') == (a.id, make_entry({**_entry(a), "reason": "x"}))
    assert entry_of_record(key, None) == (a.id, None)
    assert entry_of_record(b"cIP:10.0.0.1", None) == ("cIP:10.0.0.1", None)
    from streams.core.allowlist import AllowlistError

    with pytest.raises(AllowlistError):
        entry_of_record(key, b'{"tenant": "b"}')  # the key names another entry
    with pytest.raises(AllowlistError):
        entry_of_record(b'["a", "cIP"]', None)


def _entry(e: Any) -> dict[str, str]:
    return {"field": e.field, "value": e.value, "tenant": e.tenant}


# ------------------------------------------------------------------------------------- outputs


def test_notifications_entities_and_ocsf_carry_the_tenant() -> None:
    events = scan("contoso", range(1, 12)) + scan("fabrikam", range(1, 12))
    alerts = offline_alerts(events, RULE)
    pages = [r for _, r in notify_all(alerts, NotifyParams(by=("TenantId", "cIP"))) if r["Kind"] == "page"]
    assert sorted(p["Entity"]["TenantId"] for p in pages) == ["contoso", "fabrikam"]
    assert len({p["NotificationId"] for p in pages}) == 2
    enriched = add_entities(alerts[0])
    assert enriched["CustomDetails"]["TenantId"] == [alerts[0]["TenantId"]]
    finding = ocsf_finding(alerts[0], 32_768)
    assert finding["metadata"]["tenant_uid"] == alerts[0]["TenantId"]
    assert (
        "tenant_uid" not in ocsf_finding(offline_alerts(scan("", range(1, 12)), RULE)[0], 32_768)["metadata"]
    )


def test_a_long_escaped_tenant_stays_within_the_alert_budget() -> None:
    tenant = "\u202e\x1b" * (MAX_TENANT_CHARS // 2)
    alerts = offline_alerts(scan(tenant, range(1, 12)), RULE)
    from streams.core.escape import dumps

    data = dumps(alerts[0])
    assert len(data) <= RULE.max_alert_bytes and b"\\u202e" in data and b"\xe2\x80\xae" not in data
    assert orjson.loads(data)["TenantId"] == tenant


def test_state_writes_of_tenants_are_window_records() -> None:
    sim = Sim(PARAMS)
    plan = sim.engine.plan(offsets(scan("contoso", range(1, 4))))
    out = sim.engine.step(plan, {}, NOW)
    data = encode_writes(out.writes)
    assert all(key_tenant(k) == "contoso" for k in data if k[:1].isdigit())

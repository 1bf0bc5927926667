"""W3CIISLog JSON: records, envelopes, arrays; bad input as values with reasons, never exceptions."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.parse import event_from_record, parse_json
from streams.core.records import IISEvent, ParseError, Reason

BASE: dict[str, Any] = {
    "TimeGenerated": "2026-01-01T12:10:00.1234567Z",
    "cIP": "203.0.113.9",
    "Computer": "WEB01",
    "sIP": "10.0.0.11",
    "sPort": 443,
    "csMethod": "GET",
    "csUriQuery": "q=a+b",
    "csUserName": "-",
    "sSiteName": "W3SVC1",
    "csUserAgent": "curl/8",
    "scStatus": "401",
    "scSubStatus": "1",
    "scWin32Status": "2148074254",
    "TenantId": "ignored",
}


def rec(**changes: Any) -> dict[str, Any]:
    out = dict(BASE)
    for k, v in changes.items():
        if v is ...:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def test_full_record() -> None:
    ev = event_from_record(BASE)
    assert ev == IISEvent(
        1_767_269_400_123,
        "203.0.113.9",
        "WEB01",
        "10.0.0.11",
        443,
        "GET",
        "q=a+b",
        "-",
        "W3SVC1",
        "curl/8",
        "401",
        "1",
        "2148074254",
    )


@pytest.mark.parametrize(
    ("value", "port"), [("443", 443), (" 80 ", 80), (0, 0), (65535, 65535), (None, None), (8080.0, 8080)]
)
def test_port_forms(value: Any, port: int | None) -> None:
    ev = event_from_record(rec(sPort=value))
    assert isinstance(ev, IISEvent) and ev.sPort == port


def test_missing_port_is_null() -> None:
    ev = event_from_record(rec(sPort=...))
    assert isinstance(ev, IISEvent) and ev.sPort is None


@pytest.mark.parametrize("value", ["http", "-1", "65536", 70000, -1, True, [1], 1.5, "４４３"])
def test_bad_port(value: Any) -> None:
    ev = event_from_record(rec(sPort=value))
    assert isinstance(ev, ParseError) and ev.reason is Reason.INVALID_FIELD


@pytest.mark.parametrize(
    "make_value",  # built lazily: pytest's ids would str() the number
    [
        lambda: "1" * 5000,
        lambda: "0" * 5000 + "80",
        lambda: 10**5000,
        lambda: 10**400,
        lambda: -(10**400),
        lambda: 1e300,
    ],
    ids=[
        "str-5000-digits",
        "str-leading-zeros",
        "int-5001-digits",
        "int-401-digits",
        "int-negative",
        "1e300",
    ],
)
def test_port_of_thousands_of_digits_is_an_error_not_an_exception(make_value: Any) -> None:
    """Fuzzer finding: int() of a >4300-digit string (or str() of such an int) raises ValueError."""
    value = make_value()
    ev = event_from_record(rec(sPort=value))
    if value == "0" * 5000 + "80":
        assert isinstance(ev, IISEvent) and ev.sPort == 80
    else:
        assert isinstance(ev, ParseError) and ev.reason is Reason.INVALID_FIELD
        assert "sPort out of range" in ev.detail and len(ev.detail) < 100


def test_number_of_thousands_of_digits_in_a_string_column() -> None:
    """Fuzzer finding: Kusto's tostring of an int Python will not print (only a non-orjson decoder)."""
    ev = event_from_record(rec(csMethod=10**5000))
    assert ev == ParseError(Reason.INVALID_FIELD, "csMethod is a number too large to convert")
    ev = event_from_record(rec(csMethod=10**400))
    assert isinstance(ev, IISEvent) and ev.csMethod == str(10**400)


@pytest.mark.parametrize("name", ["cIP", "Computer", "sIP"])
@pytest.mark.parametrize("checked", [False, True])
def test_key_columns_longer_than_max_key_chars_are_rejected(name: str, checked: bool) -> None:
    from streams.core.parse import MAX_KEY_CHARS

    extra = {"sPort": "443"} if checked else {}  # a string port takes the checked path
    ev = event_from_record(rec(**{name: "k" * MAX_KEY_CHARS}, **extra))
    assert isinstance(ev, IISEvent) and getattr(ev, name) == "k" * MAX_KEY_CHARS
    ev = event_from_record(rec(**{name: "k" * (MAX_KEY_CHARS + 1)}, **extra))
    assert ev == ParseError(Reason.INVALID_FIELD, f"{name} is longer than 256 characters")
    assert list(parse_json(orjson.dumps({"records": [rec(**{name: "k" * 10_000})]}))) == [ev]


def test_optional_strings_default_to_empty_and_numbers_become_text() -> None:
    ev = event_from_record(rec(csUserName=None, csMethod=..., scStatus=401, scSubStatus=0, scWin32Status=5))
    assert isinstance(ev, IISEvent)
    assert (ev.csUserName, ev.csMethod, ev.scStatus, ev.scSubStatus, ev.scWin32Status) == (
        "",
        "",
        "401",
        "0",
        "5",
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"TimeGenerated": ...}, Reason.MISSING_FIELD),
        ({"cIP": ...}, Reason.MISSING_FIELD),
        ({"Computer": None}, Reason.MISSING_FIELD),
        ({"sIP": ...}, Reason.MISSING_FIELD),
        ({"cIP": 5}, Reason.INVALID_FIELD),
        ({"csUserAgent": {"a": 1}}, Reason.INVALID_FIELD),
        ({"csUserName": True}, Reason.INVALID_FIELD),
        ({"TimeGenerated": "yesterday"}, Reason.INVALID_TIME),
        ({"TimeGenerated": 1767269400000}, Reason.INVALID_TIME),
        ({"TimeGenerated": "1900-01-01T00:00:00Z"}, Reason.INVALID_TIME),
    ],
)
def test_bad_records(changes: dict[str, Any], reason: Reason) -> None:
    ev = event_from_record(rec(**changes))
    assert isinstance(ev, ParseError)
    assert ev.reason is reason


def test_payload_forms() -> None:
    one = orjson.dumps(BASE)
    assert [type(r) for r in parse_json(one)] == [IISEvent]
    env = orjson.dumps({"records": [BASE, rec(cIP=...), BASE]})
    results = list(parse_json(env))
    assert [type(r) for r in results] == [IISEvent, ParseError, IISEvent]
    arr = orjson.dumps([BASE, BASE])
    assert [type(r) for r in parse_json(arr)] == [IISEvent, IISEvent]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe{", Reason.UNDECODABLE),
        (b"{not json", Reason.INVALID_JSON),
        (b"", Reason.INVALID_JSON),
        (b"42", Reason.NOT_AN_OBJECT),
        (b'"x"', Reason.NOT_AN_OBJECT),
        (b"[1]", Reason.NOT_AN_OBJECT),
    ],
)
def test_bad_payloads(payload: bytes, reason: Reason) -> None:
    results = list(parse_json(payload))
    assert len(results) == 1
    assert isinstance(results[0], ParseError) and results[0].reason is reason


@given(st.binary(max_size=200))
def test_never_raises_on_bytes(data: bytes) -> None:
    for result in parse_json(data):
        assert isinstance(result, (IISEvent, ParseError))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.sampled_from(sorted(BASE)), json_values))
def test_never_raises_on_objects(overrides: dict[str, Any]) -> None:
    result = event_from_record({**BASE, **overrides})
    assert isinstance(result, (IISEvent, ParseError))


def test_fast_path_field_order_matches_the_checked_path() -> None:
    """The hot path names STRING_FIELDS one by one: it must build the same event as the checked path."""
    from streams.core.parse import STRING_FIELDS, _checked_event, event_from_record

    record = {"TimeGenerated": "2026-01-01T00:00:00.123Z", "cIP": "c", "Computer": "h", "sIP": "s"}
    record["sPort"] = 80
    record.update({name: f"v-{name}" for name in STRING_FIELDS})
    assert event_from_record(record) == _checked_event(record)
    assert [getattr(event_from_record(record), name) for name in STRING_FIELDS] == [
        f"v-{name}" for name in STRING_FIELDS
    ]


@pytest.mark.parametrize(
    "payload",
    [
        b'{"TimeGenerated": "2026-01-01T00:00:00Z", "cIP": "c", "Computer": "h", "sIP": "s", "sPort": 80}',
        b'{"TimeGenerated": "2026-01-01T00:00:00Z", "cIP": "c", "Computer": "h", "sIP": "s", "sPort": "80"}',
        b'{"records": [{"TimeGenerated": "2026-01-01T00:00:00Z", "cIP": "c", "Computer": "h", "sIP": "s"}]}',
        b'[{"TimeGenerated": "2026-01-01T00:00:00Z", "cIP": "c", "Computer": "h", "sIP": "s"}]',
        b'{"cIP": "c"}',
        b"not json",
        b"\xff",
        None,
    ],
)
def test_single_event_is_the_lone_valid_record_or_none(payload: bytes | None) -> None:
    """The processor's hot path: an event exactly when decode_records yields one lone valid record."""
    from streams.core.parse import decode_records, event_from_record, single_event

    results = list(decode_records(payload))
    lone = len(results) == 1 and results[0][0] is None and not isinstance(results[0][1], ParseError)
    expected = event_from_record(results[0][1]) if lone else None
    assert single_event(payload) == (expected if isinstance(expected, IISEvent) else None)

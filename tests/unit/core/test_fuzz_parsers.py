"""Fuzzed parsers: whatever the bytes, the JSON, envelope and W3C readers give events or ParseErrors.

Every reader of untrusted input (Kafka payloads, replayed files) must turn bad input into a value,
never an exception; and every event it does build must be well-formed (types, ranges, key length).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tempfile
from datetime import date
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streams.core.parse import (
    MAX_KEY_CHARS,
    STRING_FIELDS,
    decode_records,
    event_from_record,
    parse_json,
    records_of,
    single_event,
)
from streams.core.records import IISEvent, ParseError, Reason
from streams.core.timefmt import MAX_MS, MIN_MS, parse_iso_ms
from streams.core.w3c import W3CParser
from streams.io.sources import SourceOptions, iter_file, open_binary

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIELD_NAMES = ("TimeGenerated", "cIP", "Computer", "sIP", "sPort", *STRING_FIELDS)
DEEP = 100_000


# --- what every result must be ---------------------------------------------------------------------


def check_event(ev: Any) -> None:
    assert type(ev) is IISEvent, ev
    assert type(ev.time_ms) is int and MIN_MS <= ev.time_ms <= MAX_MS
    for name in ("cIP", "Computer", "sIP"):
        value = getattr(ev, name)
        assert type(value) is str and len(value) <= MAX_KEY_CHARS, name
    for name in STRING_FIELDS:
        assert type(getattr(ev, name)) is str, name
    assert ev.sPort is None or (type(ev.sPort) is int and 0 <= ev.sPort <= 65535)


def check_result(result: Any) -> None:
    if isinstance(result, ParseError):
        assert type(result.reason) is Reason and type(result.detail) is str
        orjson.dumps(result.detail)  # dead letters carry it: no lone surrogates
    else:
        check_event(result)


def check_payload(payload: bytes | str) -> None:
    """parse_json, decode_records and single_event on one payload: values only, and consistent."""
    decoded = list(decode_records(payload))
    results = list(parse_json(payload))
    assert len(results) == len(decoded)  # an empty envelope or array: none
    for (index, _), result in zip(decoded, results):
        assert index is None or type(index) is int
        check_result(result)
        if isinstance(result, IISEvent):  # built from JSON: every string is valid UTF-8
            orjson.dumps([getattr(result, n) for n in ("cIP", "Computer", "sIP", *STRING_FIELDS)])
    lone = len(decoded) == 1 and decoded[0][0] is None and not isinstance(decoded[0][1], ParseError)
    expected = results[0] if lone and isinstance(results[0], IISEvent) else None
    assert single_event(payload) == expected


# --- JSON: strategies ------------------------------------------------------------------------------


def repeated(char: str, times: int) -> st.SearchStrategy[str]:
    """One long string, built lazily so that strategy reprs stay short."""
    return st.just(times).map(lambda n: char * n)


ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=30)  # surrogates, NUL, controls too
CONTROL_TEXT = st.text(st.characters(max_codepoint=0x20) | st.sampled_from("\x7f\u2028\ufeff"), max_size=8)
TIMES = (
    st.datetimes().map(lambda d: d.isoformat(timespec="milliseconds") + "Z")
    | st.text(st.sampled_from("0123456789-:.,TtZz+ "), max_size=30)
    | st.sampled_from(
        [
            "9999-12-31T23:59:60Z",
            "9999-12-31T23:59:59.9999999Z",
            "9999-12-31T23:59:59.999-01:00",
            "0000-00-00T00:00:00Z",
            "1969-12-31T23:59:59.999Z",
            "1970-01-01T00:00:00.000+00:01",
            "2025-02-29T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "２０２６-01-01T00:00:00Z",
        ]
    )
    | repeated("9", 10_000).map(lambda nines: f"2026-01-01T00:00:00.{nines}Z")
)
HUGE_INTS = st.sampled_from([10**400, -(10**400), 10**4000, 2**64, -(2**63) - 1, -1, 65536])
PY_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | HUGE_INTS
    | st.floats()  # NaN and infinities too: a decoder other than orjson may hand them over
    | ANY_TEXT
    | CONTROL_TEXT
    | TIMES
    | st.sampled_from(["443", "0443", " 80 ", "-1", "٣"])
    | repeated("1", 5000)
    | repeated("x", MAX_KEY_CHARS + 1)
)
PY_VALUES = st.recursive(
    PY_SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
# Right types, values anywhere: the fast path of event_from_record.
WELL_TYPED = st.fixed_dictionaries(
    {
        "TimeGenerated": TIMES,
        "cIP": st.text(max_size=3) | st.text(min_size=250, max_size=260),
        "Computer": st.text(max_size=3) | st.text(min_size=250, max_size=260),
        "sIP": st.text(max_size=3) | st.text(min_size=250, max_size=260),
        "sPort": st.integers(-2, 70_000),
    },
    optional={name: ANY_TEXT for name in STRING_FIELDS},
)
# Any subset of the real fields, each holding any value (often of the wrong type).
FIELDS_ANY = st.fixed_dictionaries({}, optional={name: PY_VALUES for name in FIELD_NAMES})
RECORDS = FIELDS_ANY | WELL_TYPED | PY_VALUES | st.dictionaries(st.text(max_size=8), PY_VALUES, max_size=5)


def json_string(text: str) -> str:
    return json.dumps(text)  # ASCII-escaped: a lone surrogate becomes the escape \ud800


# Raw JSON text, token by token: literals no encoder would write (NaN, 1e400, \ud800, ...).
RAW_SCALARS = (
    st.sampled_from(
        [
            "null",
            "true",
            "false",
            "0",
            "-0",
            "-1",
            "65535",
            "65536",
            "443.0",
            "443.5",
            "1e400",
            "-1e400",
            "1e-400",
            "NaN",
            "Infinity",
            "-Infinity",
            '"\\ud800"',
            '"\\udc00\\ud800"',
            '"a\\ud800b"',
            '"\\ud83d\\ude00"',
            '"\\u0000\\u001f"',
            '"\x00\x01\x1f"',  # raw control characters: not JSON
            '"443"',
            '"2026-01-01T00:00:00Z"',
            '"9999-12-31T23:59:60Z"',
            '"0000-00-00T00:00:00Z"',
        ]
    )
    | repeated("0", 400).map(lambda zeros: "1" + zeros)
    | repeated("9", 400).map(lambda nines: "-" + nines)
    | repeated("1", 5000).map(json_string)
    | repeated("c", MAX_KEY_CHARS + 1).map(json_string)
    | st.integers().map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | ANY_TEXT.map(json_string)
    | TIMES.map(json_string)
    | ANY_TEXT.map(lambda t: '"' + t.replace("\\", "").replace('"', "") + '"')  # unescaped
)
RAW_KEYS = st.sampled_from([*FIELD_NAMES, "records"]).map(json_string) | RAW_SCALARS


def raw_array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def raw_object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"


RAW_VALUES = st.recursive(
    RAW_SCALARS,
    lambda children: (
        st.lists(children, max_size=4).map(raw_array)
        | st.lists(st.tuples(RAW_KEYS, children), max_size=6).map(raw_object)
    ),
    max_leaves=20,
)
RAW_RECORD = st.lists(
    st.tuples(st.sampled_from(FIELD_NAMES).map(json_string), RAW_VALUES), max_size=len(FIELD_NAMES) + 2
).map(raw_object)
RAW_DOCUMENTS = (
    RAW_VALUES
    | RAW_RECORD
    | st.lists(RAW_RECORD | RAW_VALUES, max_size=4).map(lambda rs: '{"records":' + raw_array(rs) + "}")
    | st.lists(RAW_RECORD | RAW_VALUES, max_size=4).map(raw_array)
)
# JSON documents from (decoded) values, records and envelopes, as an encoder writes them.
ENCODED = (
    RECORDS.map(lambda r: json.dumps(r, allow_nan=True))
    | st.lists(RECORDS, max_size=4).map(lambda rs: json.dumps({"records": rs}))
    | st.lists(RECORDS, max_size=4).map(json.dumps)
)


def spliced(doc: str, junk: bytes, at: int) -> bytes:
    data = doc.encode("utf-8", "surrogatepass")  # a lone surrogate: bytes that are not UTF-8
    at %= len(data) + 1
    return data[:at] + junk + data[at:]


# --- JSON: properties ------------------------------------------------------------------------------

R0: dict[str, Any] = {"TimeGenerated": "2026-01-01T00:00:00Z", "cIP": "c", "Computer": "h", "sIP": "s"}
R0_JSON = orjson.dumps(R0).decode()


@FUZZ
@given(st.binary(max_size=300))
@example(b"")
@example(b"\xef\xbb\xbf{}")
@example(b'{"records": null}')
@example(b'{"records": [], "TimeGenerated": 1}')
def test_json_arbitrary_bytes(payload: bytes) -> None:
    check_payload(payload)


@FUZZ
@given(st.text(st.characters(exclude_categories=()), max_size=300))
@example("\ud800")
@example('"\ud800"')
def test_json_arbitrary_text(payload: str) -> None:
    check_payload(payload)


@FUZZ
@given(RAW_DOCUMENTS)
@example(R0_JSON[:-1] + ',"sPort":"' + "1" * 5000 + '"}')
@example(R0_JSON[:-1] + ',"sPort":1e400}')
@example('{"TimeGenerated":"2026-01-01T00:00:00Z","cIP":"\\ud800","Computer":"h","sIP":"s"}')
@example('{"records":[{"TimeGenerated":NaN}]}')
def test_json_raw_documents(doc: str) -> None:
    check_payload(doc)
    check_payload(doc.encode("utf-8", "surrogatepass"))


@FUZZ
@given(RAW_DOCUMENTS | ENCODED, st.binary(min_size=1, max_size=4), st.integers(min_value=0))
def test_json_documents_with_junk_bytes(doc: str, junk: bytes, at: int) -> None:
    check_payload(spliced(doc, junk, at))


@FUZZ
@given(ENCODED)
def test_json_encoded_documents(doc: str) -> None:
    check_payload(doc)
    check_payload(doc.encode())


@FUZZ
@given(RECORDS)
@example({**R0, "sPort": "1" * 5000})
@example({**R0, "csMethod": 10**5000})
@example({**R0, "sPort": 10**400})
@example({**R0, "sPort": 10**5000})
@example({**R0, "sPort": float("nan")})
@example({**R0, "sPort": float("inf")})
@example({**R0, "scStatus": float("nan")})
def test_event_from_any_decoded_value(record: Any) -> None:
    check_result(event_from_record(record))
    for item in records_of(record):
        check_result(event_from_record(item))


def nested(depth: int, inner: Any = None) -> Any:
    """A `depth`-deep list built without recursion."""
    value = inner
    for _ in range(depth):
        value = [value]
    return value


def test_json_very_deep_nesting() -> None:
    for payload in (
        b"[" * DEEP,
        b"[" * DEEP + b"]" * DEEP,
        b'{"records":' + b"[" * DEEP + b"]" * DEEP + b"}",
        b'{"records":[' + b"[" * DEEP,
        b'{"a":' * DEEP + b"1" + b"}" * DEEP,
        b'{"TimeGenerated":"2026-01-01T00:00:00Z","cIP":' + b"[" * DEEP + b"]" * DEEP + b"}",
    ):
        check_payload(payload)
        check_payload(payload.decode())
    deep = nested(DEEP)
    for record in (deep, {"records": deep}, *({**R0, name: deep} for name in FIELD_NAMES)):
        check_result(event_from_record(record))
        for item in records_of(record):
            check_result(event_from_record(item))


# --- the group-key length limit ----------------------------------------------------------------------

KEY_BASE: dict[str, Any] = {
    "TimeGenerated": "2026-01-01T00:00:00Z",
    "cIP": "198.51.100.7",
    "Computer": "WEB01",
    "sIP": "10.0.0.1",
    "sPort": 443,
}
KEY_BASE_LINE = orjson.dumps(KEY_BASE) + b"\n"


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(("cIP", "Computer", "sIP")),
    length=st.integers(MAX_KEY_CHARS - 2, MAX_KEY_CHARS + 3) | st.integers(0, 100_000),
    fast=st.booleans(),
)
def test_json_key_length_limit(name: str, length: int, fast: bool) -> None:
    record = {**KEY_BASE, name: "k" * length}
    if not fast:
        record["sPort"] = "443"  # a string port: the checked path
    result = event_from_record(record)
    if length <= MAX_KEY_CHARS:
        assert isinstance(result, IISEvent) and getattr(result, name) == "k" * length
    else:
        assert result == ParseError(Reason.INVALID_FIELD, f"{name} is longer than {MAX_KEY_CHARS} characters")
    assert single_event(orjson.dumps(record)) == (result if isinstance(result, IISEvent) else None)


# --- W3C: strategies -------------------------------------------------------------------------------

W3C_IDS = (
    "date",
    "time",
    "s-ip",
    "cs-method",
    "cs-uri-stem",
    "cs-uri-query",
    "s-port",
    "cs-username",
    "c-ip",
    "cs(User-Agent)",
    "cs(Referer)",
    "sc-status",
    "sc-substatus",
    "sc-win32-status",
    "time-taken",
    "s-sitename",
    "s-computername",
    "cs-host",
)
FIELD_IDS = (
    st.sampled_from(W3C_IDS)
    | st.sampled_from(W3C_IDS).map(str.upper)
    | st.text(st.characters(exclude_categories=("Z", "Cc", "Cs")), min_size=1, max_size=10)
)
DATES = st.dates().map(str) | st.sampled_from(
    [
        "9999-12-31",
        "0000-00-00",
        "1969-12-31",
        "1970-01-01",
        "2025-02-29",
        "2024-02-29",
        "2026-13-01",
        "99999-1-1",
    ]
)
CLOCKS = (
    st.times().map(lambda t: t.isoformat())
    | st.sampled_from(
        ["23:59:60", "24:00:00", "00:00:00.1234567", "23:59:59.999", "00:60:00", "0:0:0", "12:00"]
    )
    | repeated("1", 5000)
)
PORTS = (
    st.integers(-1, 70_000).map(str)
    | st.sampled_from(["-", "٣", "+80", ""])
    | repeated("0", 300).map(lambda zeros: zeros + "443")
    | repeated("1", 5000)
)
KEYS = st.sampled_from(["-", "", "198.51.100.7"]) | st.sampled_from(
    [MAX_KEY_CHARS, MAX_KEY_CHARS + 1, 100_000]
).map(lambda n: "k" * n)
VALUES = (
    st.text(st.characters(exclude_characters=" \r\n", exclude_categories=("Cs",)), max_size=12)
    | DATES
    | CLOCKS
    | PORTS
    | KEYS
)
GOOD_DATES = st.dates(min_value=date(1970, 1, 1)).map(str)
GOOD_CLOCKS = st.times().map(lambda t: t.isoformat())
BY_ID = {"date": GOOD_DATES | DATES | VALUES, "time": GOOD_CLOCKS | CLOCKS | VALUES, "s-port": PORTS | VALUES}
BY_ID |= {k: KEYS | VALUES for k in ("c-ip", "s-ip", "s-computername")}
DIRECTIVES = st.sampled_from(
    ["#Software: IIS", "#Version: 1.0", "#Date:", "#Date", "#", "#Fields:"]
) | st.text(max_size=20).map(lambda t: "#" + t)


KINDS = ("data", "data", "data", "data", "fields", "date", "directive", "text", "short", "long")


@st.composite
def w3c_lines(draw: st.DrawFn) -> list[str]:
    """Header blocks and data lines mixed at random; data lines usually match the latest #Fields."""
    ids: list[str] = []
    lines: list[str] = []
    for step in range(draw(st.integers(0, 12))):
        kind = "fields" if step == 0 and draw(st.integers(0, 4)) < 4 else draw(st.sampled_from(KINDS))
        if kind == "fields":
            if draw(st.integers(0, 3)) < 3:  # usually a usable list: the key fields and a time, anywhere
                extra = draw(st.lists(FIELD_IDS, max_size=10))
                ids = draw(
                    st.permutations(
                        ["c-ip", "s-ip", "time", *draw(st.sampled_from([["date"], ["date"], []])), *extra]
                    )
                )
            else:
                ids = draw(st.lists(FIELD_IDS, max_size=20))
            sep = draw(st.sampled_from(["#Fields: ", "#fields:", "#FIELDS:\t", "\ufeff#Fields: "]))
            lines.append(sep + " ".join(ids))
        elif kind == "date":
            lines.append("#Date: " + draw(DATES) + " " + draw(CLOCKS))
        elif kind == "directive":
            lines.append(draw(DIRECTIVES))
        elif kind == "text":
            lines.append(draw(st.text(st.characters(exclude_categories=("Cs",)), max_size=60)))
        else:
            values = [draw(BY_ID.get(i.lower(), VALUES)) for i in ids]
            if kind == "short" and values:
                values.pop(draw(st.integers(0, len(values) - 1)))  # a field short
            elif kind == "long":
                values.append(draw(VALUES))  # a field too many
            lines.append(" ".join(values))
        lines[-1] += draw(st.sampled_from(["", "\n", "\r\n", "\r", " "]))
    return lines


PARSER_ARGS = st.tuples(
    st.none() | KEYS,  # computer
    st.sampled_from(["HOST", "", "h" * (MAX_KEY_CHARS + 1)]),  # default computer
    st.sampled_from(["-", "W3SVC1"]),  # site name
    st.booleans(),  # dash_as_null
)


def w3c_results(lines: list[str], args: tuple[str | None, str, str, bool]) -> list[Any]:
    parser = W3CParser(args[0], args[1], site_name=args[2], dash_as_null=args[3])
    return [parser.feed(line) for line in lines]


# --- W3C: properties ---------------------------------------------------------------------------------


@FUZZ
@given(w3c_lines(), PARSER_ARGS)
@example(
    ["#Fields: date time c-ip s-ip s-port", "2026-01-01 00:00:00 c s " + "1" * 5000], (None, "H", "-", False)
)
@example(["#Fields: date time c-ip s-ip", "9999-12-31 23:59:60 c s"], (None, "H", "-", False))
@example(["#Fields: date time c-ip s-ip", "0000-00-00 00:00:00 c s"], (None, "H", "-", False))
@example(["#Fields: time c-ip s-ip", "23:59:59.9999 c s"], (None, "H", "-", False))
@example(
    ["#Date: 9999-12-31 00:00:00", "#Fields: time c-ip s-ip", "23:59:59.9999 c s"], (None, "H", "-", True)
)
def test_w3c_lines(lines: list[str], args: tuple[str | None, str, str, bool]) -> None:
    for result in w3c_results(lines, args):
        if result is not None:
            check_result(result)


@FEW
@given(st.lists(st.text(st.characters(exclude_categories=()), max_size=80), max_size=20), PARSER_ARGS)
def test_w3c_arbitrary_text(lines: list[str], args: tuple[str | None, str, str, bool]) -> None:
    for result in w3c_results(["#Fields: date time c-ip s-ip s-port s-computername", *lines], args):
        if result is not None:
            check_result(result)


def test_w3c_huge_lines() -> None:
    big = "x" * 1_000_000
    lines = [
        "#Fields: date time c-ip s-ip s-port cs-uri-query",
        f"2026-01-01 00:00:00 c s 80 {big}",
        f"2026-01-01 00:00:00 {big} s 80 q",
        " ".join(["v"] * 200_000),
        "#Fields: " + " ".join(["c-ip", "s-ip", "time", *(f"f{i}" for i in range(100_000))]),
        "#Date: " + big,
        big,
    ]
    results = w3c_results(lines, (None, "HOST", "-", False))
    for result in results:
        if result is not None:
            check_result(result)
    assert isinstance(results[1], IISEvent) and results[1].csUriQuery == big
    assert results[2] == ParseError(Reason.INVALID_FIELD, f"cIP is longer than {MAX_KEY_CHARS} characters")


@settings(max_examples=60, deadline=None)
@given(
    field=st.sampled_from(("c-ip", "s-ip", "s-computername", "computer")),
    length=st.integers(MAX_KEY_CHARS - 2, MAX_KEY_CHARS + 3),
)
def test_w3c_key_length_limit(field: str, length: int) -> None:
    value = "k" * length
    parser = W3CParser(value if field == "computer" else None, "HOST")
    parser.feed("#Fields: date time c-ip s-ip s-computername")
    line = {"c-ip": "c", "s-ip": "s", "s-computername": "h"}
    if field != "computer":
        line[field] = value
    result = parser.feed(f"2026-01-01 00:00:00 {line['c-ip']} {line['s-ip']} {line['s-computername']}")
    name = {"c-ip": "cIP", "s-ip": "sIP"}.get(field, "Computer")
    if length <= MAX_KEY_CHARS:
        assert isinstance(result, IISEvent) and getattr(result, name) == value
    else:
        assert result == ParseError(Reason.INVALID_FIELD, f"{name} is longer than {MAX_KEY_CHARS} characters")


# --- file readers (streams.io.sources) over bytes --------------------------------------------------------

PATHS = st.sampled_from(["u_ex260101.log", "events.jsonl", "events.json", "-", "noext"])


def read_all(path: str, data: bytes) -> list[tuple[str, Any]]:
    out = list(iter_file(path, SourceOptions(), io.BufferedReader(io.BytesIO(data))))  # type: ignore[arg-type]
    for location, result in out:
        assert type(location) is str and location.startswith(path + ":")
        check_result(result)
    return out


@FEW
@given(PATHS, st.binary(max_size=400))
@example("-", b"\xef\xbb\xbf#Fields: date time c-ip s-ip\n2026-01-01 00:00:00 c s\n")
@example("noext", b"\n\n[\n")
@example("events.json", b"[" * DEEP)
def test_files_arbitrary_bytes(path: str, data: bytes) -> None:
    read_all(path, data)


@FEW
@given(PATHS, w3c_lines(), st.binary(min_size=1, max_size=3), st.integers(min_value=0))
def test_files_w3c_bytes(path: str, lines: list[str], junk: bytes, at: int) -> None:
    text = "\n".join(lines)
    read_all(path, text.encode())
    read_all(path, spliced(text, junk, at))  # not UTF-8 somewhere


@FEW
@given(PATHS, st.lists(RAW_DOCUMENTS | ENCODED, max_size=5), st.sampled_from(["\n", "\r\n", "\n\n"]))
def test_files_json_lines(path: str, docs: list[str], sep: str) -> None:
    read_all(path, sep.join(docs).encode("utf-8", "surrogatepass"))


def test_files_deep_nesting() -> None:
    for data in (b"[" * DEEP, b"[\n" * DEEP, b'{"records":' + b"[" * DEEP + b"]" * DEEP + b"}"):
        for path in ("events.json", "noext"):
            read_all(path, data)


def test_bom_w3c_file_is_sniffed_as_w3c() -> None:
    data = "\ufeff#Fields: date time c-ip s-ip\n2026-01-01 00:00:00 c s\n".encode()
    [(_, ev)] = read_all("-", data)
    assert isinstance(ev, IISEvent) and ev.cIP == "c"


def test_bom_json_file_is_read() -> None:
    """Windows tools (PowerShell's Out-File) open a UTF-8 file with a BOM, which orjson rejects."""
    for path in ("events.json", "noext"):
        records = read_all(
            path, b"\xef\xbb\xbf" + orjson.dumps([KEY_BASE, KEY_BASE], option=orjson.OPT_INDENT_2)
        )
        assert [type(r) for _, r in records] == [IISEvent, IISEvent]
        records = read_all(path, b"\xef\xbb\xbf" + KEY_BASE_LINE * 2)
        assert [type(r) for _, r in records] == [IISEvent, IISEvent]


def test_corrupt_deflate_data_is_an_os_error() -> None:
    """Fuzzer finding: a damaged deflate stream raised zlib.error, which replay does not expect."""
    plain = b"#Fields: date time c-ip s-ip\n" + b"2026-01-01 00:00:00 198.51.100.7 10.0.0.1\n" * 1000
    data = bytearray(gzip.compress(plain, mtime=0))
    data[30] ^= 0xFF
    fd, path = tempfile.mkstemp(suffix=".log.gz")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        reader, raw = open_binary(path)
        try:
            with pytest.raises(OSError, match="corrupt gzip data"):
                list(iter_file(path, SourceOptions(), reader))
        finally:
            raw.close()
    finally:
        os.unlink(path)


@FEW
@given(
    name=st.sampled_from(["u_ex.log.gz", "events.jsonl.gz"]),
    cut=st.integers(min_value=0),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), max_size=3),
)
def test_corrupt_gzip_is_an_os_error(name: str, cut: int, flips: list[tuple[int, int]]) -> None:
    """A damaged .gz file: results until the damage, then OSError or EOFError (replay reports those)."""
    if name.endswith(".log.gz"):
        plain = b"#Fields: date time c-ip s-ip\n" + b"2026-01-01 00:00:00 198.51.100.7 10.0.0.1\n" * 500
    else:
        plain = KEY_BASE_LINE * 500
    data = bytearray(gzip.compress(plain))
    for at, mask in flips:
        data[10 + at % (len(data) - 10)] ^= mask  # past the magic bytes: still sniffed as gzip
    data = data[: max(2, cut % (len(data) + 1))]
    fd, path = tempfile.mkstemp(suffix=name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        reader, raw = open_binary(path)
        try:
            for location, result in iter_file(path, SourceOptions(), reader):
                assert location.startswith(path + ":")
                check_result(result)
        except (OSError, EOFError):
            pass
        finally:
            raw.close()
    finally:
        os.unlink(path)


# --- timestamps ----------------------------------------------------------------------------------


@FUZZ
@given(TIMES | st.text(st.characters(exclude_categories=()), max_size=40))
def test_parse_iso_ms_any_text(text: str) -> None:
    for _ in range(2):  # the second time through the minute cache
        ms = parse_iso_ms(text)
        assert ms is None or (type(ms) is int and MIN_MS <= ms <= MAX_MS)


# --- nesting a million deep: every parse entry point, in a child process -----------------------------

MILLION = 1_000_000
_MILLION_SCRIPT = r"""
import io, sys
from streams.core.parse import decode_records, parse_json, single_event
from streams.core.records import ParseError
from streams.core.shippers import MessageReader
from streams.io.sources import SourceOptions, iter_file
from streams.kafka.messages import MessageDecoder

D = int(sys.argv[1])
payloads = (
    b"[" * D + b"]" * D,
    b'{"records":' + b"[" * D + b"]" * D + b"}",
    b'{"a":' * D + b"1" + b"}" * D,
    b'{"TimeGenerated":"2026-01-01T00:00:00Z","cIP":' + b"[" * D + b"]" * D + b"}",
    b"[" * D,
)

class Msg:
    def __init__(self, value):
        self.value, self.key, self.topic, self.partition, self.offset = value, None, "in", 0, 0
        self.timestamp, self.headers = 0, []

def results():
    for payload in payloads:
        for p in (payload, payload.decode()):
            assert single_event(p) is None
            yield from (r for _, r in decode_records(p))
            yield from parse_json(p)
            for force in (None, "w3ciislog", "raw", "ecs", "nxlog"):
                yield from (r for _, r in MessageReader(computer="W", force=force).read(p))
        dead = []
        assert list(MessageDecoder(MessageReader(computer="W")).events(Msg(payload), 0, dead, False)) == []
        assert dead, "no dead letter"
        for path in ("events.json", "events.jsonl", "noext"):
            for data in (payload, payload + b"\n" + payload):
                reader = io.BufferedReader(io.BytesIO(data))
                yield from (r for _, r in iter_file(path, SourceOptions(computer="W"), reader))

n = 0
for result in results():
    assert isinstance(result, ParseError), type(result)
    n += 1
print("dead-lettered", n)
"""


def test_json_a_million_deep_is_dead_lettered_by_every_entry_point() -> None:
    """2 MB of brackets (orjson < 3.9.15 overflowed the C stack on such a message: a segfault before the
    offset is committed, so a crash loop): every reader gives ParseErrors, nothing crashes the process."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _MILLION_SCRIPT, str(MILLION)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.startswith("dead-lettered ")

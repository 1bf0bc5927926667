"""IIS W3C extended log lines: directives, field lists in any order, '-' values, bad lines as values."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.records import IISEvent, ParseError, Reason
from streams.core.timefmt import parse_iso_ms
from streams.core.w3c import W3CParser

FIXTURE_NAME = "elastic-beats-iis-access-test.log"
FIXTURE = Path(__file__).resolve().parents[2] / "data" / "iis" / FIXTURE_NAME

FIELDS = (
    "#Fields: date time s-ip cs-method cs-uri-query s-port cs-username c-ip cs(User-Agent)"
    " sc-status sc-substatus"
)
LINE = "2026-01-01 12:10:00 10.0.0.11 GET q=a+b 443 - 203.0.113.9 curl/8.0+(x) 401 1"


def utc_ms(text: str) -> int:
    """Epoch ms of 'YYYY-MM-DD hh:mm:ss' UTC, computed independently of the parser."""
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()) * 1000


def feed_all(parser: W3CParser, *lines: str) -> list[IISEvent | ParseError | None]:
    return [parser.feed(line) for line in lines]


def make(
    computer: str | None = None,
    default_computer: str = "HOST",
    site_name: str = "-",
    dash_as_null: bool = False,
) -> W3CParser:
    return W3CParser(computer, default_computer, site_name=site_name, dash_as_null=dash_as_null)


def one_event(*lines: str, **kwargs: Any) -> IISEvent:
    """Feed header and data lines to a fresh parser; the last line must give an event."""
    results = feed_all(make(**kwargs), *lines)
    assert all(r is None for r in results[:-1])
    ev = results[-1]
    assert isinstance(ev, IISEvent), ev
    return ev


def error_of(*lines: str, **kwargs: Any) -> ParseError:
    err = feed_all(make(**kwargs), *lines)[-1]
    assert isinstance(err, ParseError), err
    return err


# --- the elastic/beats fixture --------------------------------------------------------------------


def fixture_lines() -> list[str]:
    return FIXTURE.read_text(encoding="utf-8").splitlines(keepends=True)


def test_fixture_line_by_line() -> None:
    lines = fixture_lines()
    parser = W3CParser(computer=None, default_computer="LOCALHOST", site_name="W3SVC7")
    results = [parser.feed(line) for line in lines]  # never raises
    assert len(results) == 17
    directives = [i for i, line in enumerate(lines) if line.startswith("#")]
    assert directives == [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13]
    assert all(results[i] is None for i in directives)
    assert results[4] == IISEvent(
        utc_ms("2018-01-01 08:09:10"),
        "81.2.69.143",
        "LOCALHOST",
        "127.0.0.1",
        80,
        "GET",
        "q=100",
        "-",
        "W3SVC7",  # s-sitename not logged in the first block: the stand-in
        "Mozilla/5.0+(Windows+NT+6.1;+Win64;+x64;+rv:57.0)+Gecko/20100101+Firefox/57.0",
        "200",
        "0",
        "0",
    )
    # The second block logs s-sitename but not s-ip: no group key.
    assert results[9] == ParseError(Reason.MISSING_FIELD, "the #Fields directive does not log s-ip")
    assert results[14] == IISEvent(
        utc_ms("2018-01-01 10:11:12"),
        "81.2.69.143",
        "MACHINE-NAME",
        "127.0.0.1",
        80,
        "GET",
        "-",
        "-",
        "W3SVC1",
        "Mozilla/5.0+(Macintosh;+Intel+Mac+OS+X+10_14_0)+AppleWebKit/537.36+(KHTML,+like+Gecko)"
        "+Chrome/70.0.3538.102+Safari/537.36",
        "200",
        "0",
        "0",
    )
    # Two 15-field lines (the first block's layout) under the third block's 22-field directive.
    assert results[15] == results[16] == ParseError(Reason.FIELD_COUNT, "expected 22 fields, got 15")


def test_fixture_dash_as_null_and_explicit_computer() -> None:
    parser = W3CParser(computer="WEB01", default_computer="LOCALHOST", dash_as_null=True)
    events = [r for r in map(parser.feed, fixture_lines()) if isinstance(r, IISEvent)]
    assert [(e.Computer, e.sSiteName, e.csUserName, e.csUriQuery) for e in events] == [
        ("WEB01", "", "", "q=100"),  # stand-in "-" read as missing too
        ("WEB01", "W3SVC1", "", ""),
    ]


# --- directives and field lists -------------------------------------------------------------------


def test_basic_line() -> None:
    ev = one_event(FIELDS, LINE)
    assert ev == IISEvent(
        utc_ms("2026-01-01 12:10:00"),
        "203.0.113.9",
        "HOST",
        "10.0.0.11",
        443,
        "GET",
        "q=a+b",
        "-",
        "-",
        "curl/8.0+(x)",
        "401",
        "1",
        "",
    )


def test_bin_boundary_time_is_a_multiple_of_ten_minutes() -> None:
    ev = one_event(FIELDS, LINE)
    assert ev.time_ms % 600_000 == 0
    assert ev.time_ms == 1_767_269_400_000


def test_any_field_order() -> None:
    ev = one_event(
        "#Fields: sc-status s-port sc-substatus c-ip cs-method time s-ip cs(User-Agent) date"
        " cs-uri-query cs-username",
        "401 443 1 203.0.113.9 GET 12:10:00 10.0.0.11 curl/8.0+(x) 2026-01-01 q=a+b -",
    )
    assert ev == one_event(FIELDS, LINE)


def test_field_ids_are_case_insensitive() -> None:
    upper = FIELDS.replace("cs(User-Agent)", "CS(USER-AGENT)").replace("c-ip", "C-IP").replace("date", "Date")
    assert upper != FIELDS
    assert one_event(upper, LINE) == one_event(FIELDS, LINE)


def test_header_block_mid_file_changes_fields() -> None:
    parser = make()
    first, second = feed_all(
        parser,
        "#Software: Microsoft Internet Information Services 10.0",
        "#Fields: date time c-ip s-ip s-port",
        "2026-01-01 00:00:01 198.51.100.1 10.0.0.1 80",
        "#Version: 1.0",
        "#Date: 2026-01-02 00:00:00",
        "#Fields: s-port s-ip c-ip time date sc-status",
        "8080 10.0.0.2 198.51.100.2 00:00:02 2026-01-02 404",
    )[2::4]
    assert isinstance(first, IISEvent) and isinstance(second, IISEvent)
    assert (first.cIP, first.sIP, first.sPort, first.scStatus) == ("198.51.100.1", "10.0.0.1", 80, "")
    assert (second.cIP, second.sIP, second.sPort, second.scStatus) == (
        "198.51.100.2",
        "10.0.0.2",
        8080,
        "404",
    )
    assert second.time_ms - first.time_ms == 86_401_000
    # An old-layout line after the change no longer fits.
    assert parser.feed("2026-01-01 00:00:01 198.51.100.1 10.0.0.1 80") == ParseError(
        Reason.FIELD_COUNT, "expected 6 fields, got 5"
    )


def test_other_directives_are_ignored() -> None:
    ev = one_event(
        "#Software: x", "#Version: 1.0", "#Remark: hello world", "#Whatever", FIELDS, "#Remark: a", LINE
    )
    assert ev == one_event(FIELDS, LINE)


def test_data_line_before_fields() -> None:
    err = error_of("#Software: x", "#Date: 2026-01-01 00:00:00", LINE)
    assert err.reason is Reason.NO_FIELDS_DIRECTIVE


@pytest.mark.parametrize(
    ("line", "got"),
    [
        (LINE + " extra", 12),
        (LINE.rsplit(" ", 1)[0], 10),
        (LINE + " ", 12),
        (LINE.replace(" GET ", " GET  "), 12),
        (LINE.replace(" ", "\t"), 1),
    ],
)
def test_field_count_is_strict(line: str, got: int) -> None:
    assert error_of(FIELDS, line) == ParseError(Reason.FIELD_COUNT, f"expected 11 fields, got {got}")


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ("date time s-ip s-port", "c-ip"),
        ("date time c-ip s-port", "s-ip"),
        ("date time s-port", "c-ip and s-ip"),
    ],
)
def test_missing_key_fields(fields: str, missing: str) -> None:
    line = " ".join(["2026-01-01", "12:00:00", *["x"] * (len(fields.split()) - 2)])
    err = error_of(f"#Fields: {fields}", line)
    assert err == ParseError(Reason.MISSING_FIELD, f"the #Fields directive does not log {missing}")


@pytest.mark.parametrize("ending", ["\n", "\r\n", ""])
def test_line_endings(ending: str) -> None:
    ev = one_event(FIELDS + ending, LINE + ending)
    assert ev == one_event(FIELDS, LINE)
    assert ev.scSubStatus == "1"  # the last field carries no '\r'


@pytest.mark.parametrize("blank", ["", "\n", "\r\n", "   ", " \t \r\n"])
def test_blank_lines(blank: str) -> None:
    parser = make()
    assert parser.feed(blank) is None  # before #Fields: not a NO_FIELDS_DIRECTIVE error
    assert parser.feed(FIELDS) is None
    assert parser.feed(blank) is None
    assert isinstance(parser.feed(LINE), IISEvent)


def test_repeated_field_id_first_occurrence_wins() -> None:
    ev = one_event(
        "#Fields: date time c-ip s-ip C-IP", "2026-01-01 12:00:00 198.51.100.1 10.0.0.1 198.51.100.2"
    )
    assert ev.cIP == "198.51.100.1"


def test_a_line_starting_with_hash_is_a_directive() -> None:
    parser = make()
    parser.feed("#Fields: cs-username date time c-ip s-ip")
    assert parser.feed("#user 2026-01-01 12:00:00 198.51.100.1 10.0.0.1") is None
    assert isinstance(parser.feed("user 2026-01-01 12:00:00 198.51.100.1 10.0.0.1"), IISEvent)


def test_byte_order_mark_on_first_line() -> None:
    assert one_event("\ufeff#Software: x", FIELDS, LINE) == one_event(FIELDS, LINE)


# --- values ---------------------------------------------------------------------------------------

ALL_STRINGS = "#Fields: date time c-ip s-ip s-sitename cs-method cs-uri-query cs-username cs(User-Agent) " + (
    "sc-status sc-substatus sc-win32-status s-port"
)
DASHES = "2026-01-01 12:00:00 - - - - - - - - - - -"


def test_dash_kept_literally_by_default() -> None:
    ev = one_event(ALL_STRINGS, DASHES)
    assert ev == IISEvent(utc_ms("2026-01-01 12:00:00"), "-", "HOST", "-", None, *["-"] * 8)


def test_dash_as_null() -> None:
    ev = one_event(ALL_STRINGS, DASHES, dash_as_null=True)
    assert ev == IISEvent(utc_ms("2026-01-01 12:00:00"), "", "HOST", "", None, *[""] * 8)


def test_dash_as_null_only_touches_a_lone_dash() -> None:
    ev = one_event(FIELDS, LINE.replace(" - ", " a-b ").replace("GET", "--"), dash_as_null=True)
    assert (ev.csUserName, ev.csMethod) == ("a-b", "--")


def test_fields_not_logged_are_empty() -> None:
    ev = one_event("#Fields: date time c-ip s-ip", "2026-01-01 12:00:00 198.51.100.1 10.0.0.1")
    # Every optional string is "", except sSiteName: the default stand-in "-".
    assert ev == IISEvent(
        utc_ms("2026-01-01 12:00:00"), "198.51.100.1", "HOST", "10.0.0.1", None, sSiteName="-"
    )


def test_plus_is_kept() -> None:
    ev = one_event(FIELDS, LINE)
    assert (ev.csUriQuery, ev.csUserAgent) == ("q=a+b", "curl/8.0+(x)")


@pytest.mark.parametrize("referer", ["cs(Referer)", "cs(Referrer)", "cs(Cookie)", "cs-uri-stem", "x-custom"])
def test_ignored_fields(referer: str) -> None:
    ev = one_event(
        f"#Fields: date time {referer} c-ip s-ip cs-host sc-bytes cs-bytes time-taken cs-version",
        "2026-01-01 12:00:00 https://example.com/?a=b 198.51.100.1 10.0.0.1 example.com 1 2 3 HTTP/1.1",
    )
    assert ev == IISEvent(
        utc_ms("2026-01-01 12:00:00"), "198.51.100.1", "HOST", "10.0.0.1", None, sSiteName="-"
    )


@pytest.mark.parametrize(
    ("text", "port"),
    [
        ("-", None),
        ("0", 0),
        ("000", 0),
        ("80", 80),
        ("65535", 65535),
        ("00443", 443),
        ("0" * 5000 + "80", 80),
    ],
)
def test_port_values(text: str, port: int | None) -> None:
    ev = one_event(FIELDS, LINE.replace(" 443 ", f" {text} "))
    assert ev.sPort == port


@pytest.mark.parametrize(
    "text", ["abc", "70000", "65536", "065536", "-1", "+80", "8O", "١٢", "1e3", "", "9" * 5000]
)
def test_bad_ports(text: str) -> None:
    err = error_of(FIELDS, LINE.replace(" 443 ", f" {text} "))
    assert err.reason is Reason.INVALID_FIELD
    assert "s-port" in err.detail


@pytest.mark.parametrize(
    ("field", "name"), [("c-ip", "cIP"), ("s-ip", "sIP"), ("s-computername", "Computer"), (None, "Computer")]
)
def test_key_fields_longer_than_max_key_chars_are_rejected(field: str | None, name: str) -> None:
    from streams.core.parse import MAX_KEY_CHARS

    header = "#Fields: date time c-ip s-ip s-computername"
    values = {"c-ip": "198.51.100.7", "s-ip": "10.0.0.1", "s-computername": "WEB01"}
    for length, ok in ((MAX_KEY_CHARS, True), (MAX_KEY_CHARS + 1, False)):
        key = "k" * length
        line = "2026-01-01 00:00:00 " + " ".join(key if f == field else v for f, v in values.items())
        parser = make(computer=key if field is None else None)
        assert parser.feed(header) is None
        result = parser.feed(line)
        if ok:
            assert isinstance(result, IISEvent) and getattr(result, name) == key
        else:
            assert result == ParseError(Reason.INVALID_FIELD, f"{name} is longer than 256 characters")


def test_dash_port_is_null_with_dash_as_null_too() -> None:
    assert one_event(FIELDS, LINE.replace(" 443 ", " - "), dash_as_null=True).sPort is None


# --- Computer and site name -----------------------------------------------------------------------

HOST_FIELDS = "#Fields: date time s-computername c-ip s-ip"


def test_computer_from_s_computername() -> None:
    assert one_event(HOST_FIELDS, "2026-01-01 12:00:00 IIS-7 198.51.100.1 10.0.0.1").Computer == "IIS-7"


def test_explicit_computer_overrides_s_computername() -> None:
    ev = one_event(HOST_FIELDS, "2026-01-01 12:00:00 IIS-7 198.51.100.1 10.0.0.1", computer="WEB01")
    assert ev.Computer == "WEB01"


def test_explicit_computer_without_s_computername() -> None:
    assert one_event(FIELDS, LINE, computer="WEB01").Computer == "WEB01"


@pytest.mark.parametrize("dash_as_null", [False, True])
def test_default_computer_when_s_computername_is_dash(dash_as_null: bool) -> None:
    ev = one_event(HOST_FIELDS, "2026-01-01 12:00:00 - 198.51.100.1 10.0.0.1", dash_as_null=dash_as_null)
    assert ev.Computer == "HOST"


def test_default_computer_when_not_logged() -> None:
    assert one_event(FIELDS, LINE, default_computer="LOCAL-BOX").Computer == "LOCAL-BOX"


def test_site_name_stand_in_only_when_not_logged() -> None:
    assert one_event(FIELDS, LINE, site_name="W3SVC3").sSiteName == "W3SVC3"
    logged = one_event(
        "#Fields: date time s-sitename c-ip s-ip",
        "2026-01-01 12:00:00 W3SVC1 198.51.100.1 10.0.0.1",
        site_name="W3SVC3",
    )
    assert logged.sSiteName == "W3SVC1"
    dashed = one_event(
        "#Fields: date time s-sitename c-ip s-ip",
        "2026-01-01 12:00:00 - 198.51.100.1 10.0.0.1",
        site_name="W3SVC3",
    )
    assert dashed.sSiteName == "-"  # logged as missing: the stand-in does not replace it


# --- time -----------------------------------------------------------------------------------------


def test_date_directive_with_time_only() -> None:
    ev = one_event("#Date: 2026-03-04 05:06:07", "#Fields: time c-ip s-ip", "23:59:59 198.51.100.1 10.0.0.1")
    assert ev.time_ms == utc_ms("2026-03-04 23:59:59")


def test_latest_date_directive_wins() -> None:
    parser = make()
    results = feed_all(
        parser,
        "#Date: 2026-03-04 00:00:00",
        "#Fields: time c-ip s-ip",
        "01:00:00 198.51.100.1 10.0.0.1",
        "#Date: 2026-03-05 00:00:00",
        "01:00:00 198.51.100.1 10.0.0.1",
    )
    times = [r.time_ms for r in results if isinstance(r, IISEvent)]
    assert times == [utc_ms("2026-03-04 01:00:00"), utc_ms("2026-03-05 01:00:00")]


def test_date_field_beats_date_directive() -> None:
    ev = one_event("#Date: 2020-01-01 00:00:00", FIELDS, LINE)
    assert ev.time_ms == utc_ms("2026-01-01 12:10:00")


def test_time_without_any_date() -> None:
    err = error_of("#Fields: time c-ip s-ip", "01:00:00 198.51.100.1 10.0.0.1")
    assert err.reason is Reason.INVALID_TIME


def test_no_time_field() -> None:
    err = error_of("#Fields: date c-ip s-ip", "2026-01-01 198.51.100.1 10.0.0.1")
    assert err.reason is Reason.INVALID_TIME


@pytest.mark.parametrize(
    ("date", "time"),
    [
        ("2026-02-30", "12:00:00"),
        ("2026-01-01", "24:00:00"),
        ("2026-01-01", "12:60:00"),
        ("-", "12:00:00"),
        ("2026-01-01", "-"),
        ("1969-12-31", "23:59:59"),
        ("2026/01/01", "12:00:00"),
        ("2026-01-01", "12:00:00Z"),
        ("2026-01-01", "12:00:00+01:00"),
        ("2026-01-01", "１2:00:00"),
    ],
)
def test_invalid_times(date: str, time: str) -> None:
    err = error_of("#Fields: date time c-ip s-ip", f"{date} {time} 198.51.100.1 10.0.0.1")
    assert err.reason is Reason.INVALID_TIME


def test_invalid_date_directive() -> None:
    err = error_of("#Date: yesterday", "#Fields: time c-ip s-ip", "01:00:00 198.51.100.1 10.0.0.1")
    assert err.reason is Reason.INVALID_TIME


def test_fractional_seconds_are_floored() -> None:
    ev = one_event("#Fields: date time c-ip s-ip", "2026-01-01 12:09:59.9999 198.51.100.1 10.0.0.1")
    assert ev.time_ms == utc_ms("2026-01-01 12:09:59") + 999


def test_day_cache_follows_the_date() -> None:
    parser = make()
    parser.feed("#Fields: date time c-ip s-ip")
    days = ["2026-01-01", "2026-01-02", "2026-01-01", "2026-13-01", "2026-01-02"]
    results = [parser.feed(f"{d} 00:00:00 198.51.100.1 10.0.0.1") for d in days]
    assert [r.time_ms if isinstance(r, IISEvent) else r.reason for r in results if r is not None] == [
        utc_ms("2026-01-01 00:00:00"),
        utc_ms("2026-01-02 00:00:00"),
        utc_ms("2026-01-01 00:00:00"),
        Reason.INVALID_TIME,
        utc_ms("2026-01-02 00:00:00"),
    ]


# --- properties -----------------------------------------------------------------------------------

# A W3C value: no spaces, no control characters (IIS writes them as '+').
# A value never starts with '#': a data line whose first value did would read as a directive.
VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FF), min_size=1, max_size=12).filter(
    lambda v: not v.startswith("#")
)
STRING_FIELDS = {
    "s-sitename": "sSiteName",
    "cs-method": "csMethod",
    "cs-uri-query": "csUriQuery",
    "cs-username": "csUserName",
    "cs(User-Agent)": "csUserAgent",
    "sc-status": "scStatus",
    "sc-substatus": "scSubStatus",
    "sc-win32-status": "scWin32Status",
}
IGNORED = ("cs-uri-stem", "cs(Referer)", "cs(Referrer)", "cs-host", "sc-bytes", "time-taken")


EPOCH = datetime(1970, 1, 1, tzinfo=UTC).replace(tzinfo=None)
LAST_SECOND = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).replace(tzinfo=None)


@st.composite
def logged_records(draw: st.DrawFn) -> tuple[list[str], list[str], IISEvent, bool]:
    """A #Fields list in random order, one data line, the event it encodes, and dash_as_null."""
    dash_as_null = draw(st.booleans())
    naive = draw(st.datetimes(min_value=EPOCH, max_value=LAST_SECOND))  # naive: read as UTC
    when = naive.replace(microsecond=0, tzinfo=UTC)
    port = draw(st.none() | st.integers(0, 65535))
    values: dict[str, str] = {
        "date": f"{when:%Y-%m-%d}",
        "time": f"{when:%H:%M:%S}",
        "c-ip": draw(VALUE),
        "s-ip": draw(VALUE),
        "s-port": "-" if port is None else str(port),
    }
    expected: dict[str, str] = {}
    for field_id, attr in STRING_FIELDS.items():
        if draw(st.booleans()):
            values[field_id] = draw(VALUE | st.just("-"))
            expected[attr] = values[field_id]
        else:
            expected[attr] = "-" if attr == "sSiteName" else ""  # not logged; the site stand-in is "-"
    for field_id in draw(st.lists(st.sampled_from(IGNORED), unique=True)):
        values[field_id] = draw(VALUE)
    if dash_as_null:
        expected = {k: "" if v == "-" else v for k, v in expected.items()}
        c_ip, s_ip = ("" if values[k] == "-" else values[k] for k in ("c-ip", "s-ip"))
    else:
        c_ip, s_ip = values["c-ip"], values["s-ip"]
    order = draw(st.permutations(list(values)))
    event = IISEvent(int(when.timestamp()) * 1000, c_ip, "HOST", s_ip, port, **expected)
    return order, [values[f] for f in order], event, dash_as_null


@given(logged_records())
def test_roundtrip_any_field_order(case: tuple[list[str], list[str], IISEvent, bool]) -> None:
    order, values, event, dash_as_null = case
    parser = make(dash_as_null=dash_as_null)
    assert parser.feed("#Fields: " + " ".join(order) + "\r\n") is None
    assert parser.feed(" ".join(values) + "\r\n") == event


DATEISH = st.text(st.sampled_from("0123456789-:.T+Zz"), max_size=12)


@given(
    date=st.dates().map(str) | DATEISH,
    time=st.times().map(lambda t: t.isoformat()) | DATEISH,
)
def test_time_agrees_with_iso_parser(date: str, time: str) -> None:
    """The fast hh:mm:ss path and the general ISO-8601 parser give the same answer on any input."""
    parser = make()
    parser.feed("#Fields: date time c-ip s-ip")
    result = parser.feed(f"{date} {time} 198.51.100.1 10.0.0.1")
    expected = parse_iso_ms(f"{date}T{time}Z")
    if expected is None:
        assert isinstance(result, ParseError) and result.reason is Reason.INVALID_TIME
    else:
        assert isinstance(result, IISEvent) and result.time_ms == expected


@given(st.lists(st.text(st.characters(codec="utf-8"), max_size=60), max_size=20))
def test_never_raises(lines: list[str]) -> None:
    parser = make()
    for line in [FIELDS, *lines]:
        result = parser.feed(line)
        assert result is None or isinstance(result, IISEvent | ParseError)

"""Per-request enrichment: the rule's status texts, tolong/tohex, the Win32 texts and url_decode."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.enrich import (
    SET_NAMES,
    STATUS_FRIENDLY_DEFAULT,
    WIN32_FRIENDLY_DEFAULT,
    Enricher,
    status_friendly,
    status_full,
    to_hex,
    to_long,
    url_decode,
    win32_friendly,
)
from streams.core.records import IISEvent

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
int64s = st.integers(min_value=INT64_MIN, max_value=INT64_MAX)
# Text as it reaches us from strict UTF-8 decoding: never a lone surrogate.
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
# Text dense in escapes, well-formed and not, to reach every branch of the decoder.
_LITERALS = [
    "%",
    "u",
    "U",
    "+",
    "x",
    "-",
    "é",
    "€",
    "😀",
    "0",
    "4",
    "A",
    "c",
    "C",
    "D",
    "8",
    "F",
    "9",
    "E",
    "z",
]
_BYTE_ESCAPES = ["%C3", "%A9", "%E2%82", "%AC", "%F0%9F", "%98%80", "%ED%A0%80", "%FF", "%20", "%2B", "%25"]
_UNIT_ESCAPES = ["%u", "%uD83D", "%uDE00", "%udbff", "%udc00", "%u00e9", "%u0041", "%u20AC", "%u12"]
escape_soup = st.lists(st.sampled_from([*_LITERALS, *_BYTE_ESCAPES, *_UNIT_ESCAPES]), max_size=12).map(
    "".join
)


# --- step 1: scStatusFull = strcat(scStatus, ".", scSubStatus) ---


@pytest.mark.parametrize(
    ("status", "substatus", "expected"),
    [
        ("401", "1", "401.1"),
        ("401", "", "401."),
        ("", "", "."),
        ("", "0", ".0"),
        ("200", "0", "200.0"),
        ("-", "-", "-.-"),
    ],
)
def test_status_full(status: str, substatus: str, expected: str) -> None:
    assert status_full(status, substatus) == expected


# --- step 2: scStatusFull_Friendly ---


@pytest.mark.parametrize(
    ("full", "expected"),
    [
        ("401.0", "Access denied."),
        ("401.1", "Logon failed."),
        ("401.2", "Logon failed due to server configuration."),
        ("401.3", "Unauthorized due to ACL on resource."),
        ("401.4", "Authorization failed by filter."),
        ("401.5", "Authorization failed by ISAPI/CGI application."),
        ("403.0", "Forbidden."),
        ("403.4", "SSL required."),
        # No match: exact equality only.
        ("401.", STATUS_FRIENDLY_DEFAULT),
        ("401", STATUS_FRIENDLY_DEFAULT),
        ("401.6", STATUS_FRIENDLY_DEFAULT),
        ("401.10", STATUS_FRIENDLY_DEFAULT),
        ("401.01", STATUS_FRIENDLY_DEFAULT),
        (" 401.1", STATUS_FRIENDLY_DEFAULT),
        ("403.1", STATUS_FRIENDLY_DEFAULT),
        ("200.0", STATUS_FRIENDLY_DEFAULT),
        ("", STATUS_FRIENDLY_DEFAULT),
    ],
)
def test_status_friendly(full: str, expected: str) -> None:
    assert status_friendly(full) == expected


def test_status_friendly_default_text() -> None:
    assert STATUS_FRIENDLY_DEFAULT == (
        "See - https://support.microsoft.com/help/943891/the-http-status-code-in-iis-7-0-iis-7-5-and-iis-8-0"
    )


def test_status_401_with_empty_substatus_falls_to_default() -> None:
    assert status_friendly(status_full("401", "")) == STATUS_FRIENDLY_DEFAULT
    assert status_friendly(status_full("401", "1")) == "Logon failed."


# --- step 3: tolong ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("5", 5),
        ("-0", 0),
        ("+5", 5),
        ("-1", -1),
        ("007", 7),
        ("2148074254", 2148074254),
        ("-2146893042", -2146893042),
        ("9223372036854775807", INT64_MAX),
        ("-9223372036854775808", INT64_MIN),
        ("+9223372036854775807", INT64_MAX),
        ("0000000000000000000000009223372036854775807", INT64_MAX),  # leading zeros are not magnitude
        ("-0000000000000000000000009223372036854775808", INT64_MIN),
        ("000000000000000000000000", 0),
        ("9223372036854775808", None),
        ("-9223372036854775809", None),
        ("18446744073709551615", None),
        ("1" * 5000, None),  # past Python's int() digit limit: still None, not an exception
        ("", None),
        ("-", None),
        ("+", None),
        ("+-1", None),
        ("--1", None),
        ("12.5", None),
        ("1e3", None),
        ("0x1f", None),
        ("1f", None),
        (" 12", None),
        ("12 ", None),
        ("\t12", None),
        ("1_000", None),
        ("\u0663", None),  # ARABIC-INDIC DIGIT THREE: int() would take it
        ("\uff15", None),  # FULLWIDTH DIGIT FIVE
        ("\u00b2", None),  # SUPERSCRIPT TWO: str.isdigit() is True
    ],
)
def test_to_long(text: str, expected: int | None) -> None:
    assert to_long(text) == expected


@given(int64s)
def test_to_long_round_trips_every_int64(v: int) -> None:
    assert to_long(str(v)) == v


@given(st.one_of(st.integers(max_value=INT64_MIN - 1), st.integers(min_value=INT64_MAX + 1)))
def test_to_long_rejects_outside_int64(v: int) -> None:
    assert to_long(str(v)) is None


# --- step 3: tohex ---


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (1, "1"),
        (10, "a"),
        (255, "ff"),
        (1909, "775"),
        (1326, "52e"),
        (12002, "2ee2"),
        (2148074254, "8009030e"),
        (2148074252, "8009030c"),
        (-1, "ffffffffffffffff"),
        (-2146893042, "ffffffff8009030e"),
        (-2146893044, "ffffffff8009030c"),
        (INT64_MAX, "7fffffffffffffff"),
        (INT64_MIN, "8000000000000000"),
        (None, ""),
    ],
)
def test_to_hex(value: int | None, expected: str) -> None:
    assert to_hex(value) == expected


@given(int64s)
def test_to_hex_is_64_bit_twos_complement(v: int) -> None:
    text = to_hex(v)
    assert int(text, 16) == v & 0xFFFFFFFFFFFFFFFF
    assert text == text.lower()
    assert len(text) <= 16
    assert text == "0" or not text.startswith("0")


# --- step 4: scWin32Status_Friendly ---


@pytest.mark.parametrize(
    ("hex_text", "expected"),
    [
        ("775", "The referenced account is currently locked out and cannot be logged on to."),
        ("52e", "Logon failure: Unknown user name or bad password."),
        ("52E", "Logon failure: Unknown user name or bad password."),
        ("532", "Logon failure: The specified account password has expired."),
        ("533", "Logon failure: Account currently disabled."),
        ("2ee2", "The request has timed out."),
        ("2EE2", "The request has timed out."),
        ("0", "The operation completed successfully."),
        ("1", "Incorrect function."),
        ("2", "The system cannot find the file specified."),
        ("3", "The system cannot find the path specified."),
        ("4", "The system cannot open the file."),
        ("5", "Access is denied."),
        ("8009030e", "SEC_E_NO_CREDENTIALS"),
        ("8009030E", "SEC_E_NO_CREDENTIALS"),
        ("8009030C", "SEC_E_LOGON_DENIED"),
        ("8009030c", "SEC_E_LOGON_DENIED"),
        # No match.
        ("", WIN32_FRIENDLY_DEFAULT),
        ("00", WIN32_FRIENDLY_DEFAULT),
        ("6", WIN32_FRIENDLY_DEFAULT),
        (" 0", WIN32_FRIENDLY_DEFAULT),
        ("ffffffff8009030e", WIN32_FRIENDLY_DEFAULT),
        ("8009030d", WIN32_FRIENDLY_DEFAULT),
        ("\uff15", WIN32_FRIENDLY_DEFAULT),  # FULLWIDTH DIGIT FIVE is not "5"
    ],
)
def test_win32_friendly(hex_text: str, expected: str) -> None:
    assert win32_friendly(hex_text) == expected


def test_win32_friendly_default_text() -> None:
    assert WIN32_FRIENDLY_DEFAULT == "See - https://msdn.microsoft.com/library/cc231199.aspx"


@pytest.mark.parametrize(
    ("win32_status", "hex_text", "friendly"),
    [
        ("2148074254", "8009030e", "SEC_E_NO_CREDENTIALS"),
        ("2148074252", "8009030c", "SEC_E_LOGON_DENIED"),
        ("1326", "52e", "Logon failure: Unknown user name or bad password."),
        ("64", "40", WIN32_FRIENDLY_DEFAULT),
        ("0", "0", "The operation completed successfully."),
        # A negative code is hexed as 64 bits, so it matches none of the 32-bit entries.
        ("-2146893042", "ffffffff8009030e", WIN32_FRIENDLY_DEFAULT),
        ("-2146893044", "ffffffff8009030c", WIN32_FRIENDLY_DEFAULT),
        ("-1", "ffffffffffffffff", WIN32_FRIENDLY_DEFAULT),
        # Missing or unparsable: tolong is null, tohex(null) is "", which falls to the else branch.
        ("", "", WIN32_FRIENDLY_DEFAULT),
        ("-", "", WIN32_FRIENDLY_DEFAULT),
        ("0x5", "", WIN32_FRIENDLY_DEFAULT),
        ("9223372036854775808", "", WIN32_FRIENDLY_DEFAULT),
    ],
)
def test_win32_chain(win32_status: str, hex_text: str, friendly: str) -> None:
    assert to_hex(to_long(win32_status)) == hex_text
    assert win32_friendly(hex_text) == friendly


# --- step 5: url_decode ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("-", "-"),
        ("abc=1&d=2", "abc=1&d=2"),
        # %XX bytes, either case, decoded as UTF-8.
        ("%41", "A"),
        ("%2B", "+"),
        ("%2b", "+"),
        ("%25", "%"),
        ("%2541", "%41"),  # decoded once only
        ("%20", " "),
        ("%C3%A9", "é"),
        ("%c3%a9", "é"),
        ("%E2%82%AC", "€"),
        ("%F0%9F%98%80", "😀"),
        ("q=%27%20OR%201%3D1--", "q=' OR 1=1--"),
        # Invalid UTF-8 becomes U+FFFD.
        ("%C3", "\ufffd"),
        ("%C3x", "\ufffdx"),
        ("x%C3", "x\ufffd"),
        ("%FF", "\ufffd"),
        ("%A9", "\ufffd"),
        ("%E2%82", "\ufffd"),
        ("%ED%A0%80", "\ufffd\ufffd\ufffd"),  # an encoded surrogate is not valid UTF-8
        ("%C3%C3%A9", "\ufffdé"),
        # A literal character ends a byte run.
        ("%C3+%A9", "\ufffd \ufffd"),
        ("%C3é%A9", "\ufffdé\ufffd"),
        # Malformed escapes are kept literally.
        ("%", "%"),
        ("%%", "%%"),
        ("%4", "%4"),
        ("%zz", "%zz"),
        ("%4z", "%4z"),
        ("%z4", "%z4"),
        ("%%41", "%A"),
        ("a%", "a%"),
        ("100%", "100%"),
        # %uXXXX: one UTF-16 code unit, hex digits in either case.
        ("%u0041", "A"),
        ("%u00e9", "é"),
        ("%u00E9", "é"),
        ("%u20ac", "€"),
        ("%u0041%u0042", "AB"),
        ("%uD83D%uDE00", "😀"),
        ("%ud83d%ude00", "😀"),
        ("x%uD83D%uDE00y", "x😀y"),
        # Lone or misordered surrogates become U+FFFD.
        ("%uD83D", "\ufffd"),
        ("%uDE00", "\ufffd"),
        ("%uDE00%uD83D", "\ufffd\ufffd"),
        ("%uD83D%uD83D%uDE00", "\ufffd😀"),
        ("%uD83Dx%uDE00", "\ufffdx\ufffd"),
        ("%uD83D%41", "\ufffdA"),
        # Malformed %u escapes are kept literally (and only lower-case 'u' starts one, as in .NET).
        ("%u", "%u"),
        ("%u1", "%u1"),
        ("%u12", "%u12"),
        ("%u123", "%u123"),
        ("%u12zz", "%u12zz"),
        ("%U0041", "%U0041"),
        ("%u12%41", "%u12A"),
        ("%u00411", "A1"),
        # '+' and literals.
        ("a+b", "a b"),
        ("++", "  "),
        ("%2B+", "+ "),
        ("é%20x", "é x"),
        ("日本%20語", "日本 語"),
        ("😀%F0%9F%98%80😀", "😀😀😀"),
    ],
)
def test_url_decode(text: str, expected: str) -> None:
    assert url_decode(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a+b", "a+b"),
        ("a+b%20c", "a+b c"),
        ("%2B+", "++"),
        ("+", "+"),
    ],
)
def test_url_decode_plus_kept(text: str, expected: str) -> None:
    assert url_decode(text, plus_as_space=False) == expected


def test_url_decode_fast_path_returns_input_itself() -> None:
    text = "".join(["id=", "42&name=abc"])  # built at run time: not an interned constant
    assert url_decode(text) is text
    with_plus = "".join(["a", "+b"])
    assert url_decode(with_plus, plus_as_space=False) is with_plus


def _dotnet_url_decode(text: str, plus_as_space: bool) -> str:
    """A slow transliteration of .NET HttpUtility.UrlDecode's loop: the oracle for the property below.

    As in .NET, ASCII literals go into the byte buffer too (only non-ASCII literals and %u escapes
    flush it); the result is then made valid Unicode by turning lone surrogates into U+FFFD.
    """
    hexdigits = "0123456789abcdefABCDEF"
    out: list[str] = []
    buf = bytearray()

    def flush() -> None:
        if buf:
            out.append(buf.decode("utf-8", "replace"))
            buf.clear()

    pos, count = 0, len(text)
    while pos < count:
        ch = text[pos]
        if ch == "+" and plus_as_space:
            ch = " "
        elif ch == "%" and pos < count - 2:
            if text[pos + 1] == "u" and pos < count - 5:
                digits = text[pos + 2 : pos + 6]
                if all(d in hexdigits for d in digits):
                    flush()
                    out.append(chr(int(digits, 16)))
                    pos += 6
                    continue
            elif text[pos + 1] in hexdigits and text[pos + 2] in hexdigits:
                buf.append(int(text[pos + 1 : pos + 3], 16))
                pos += 3
                continue
        if ord(ch) < 0x80:
            buf.append(ord(ch))
        else:
            flush()
            out.append(ch)
        pos += 1
    flush()
    return "".join(out).encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


@given(escape_soup, st.booleans())
def test_url_decode_matches_dotnet_loop(text: str, plus_as_space: bool) -> None:
    assert url_decode(text, plus_as_space) == _dotnet_url_decode(text, plus_as_space)


@given(escape_soup.filter(lambda s: "%u" not in s))
def test_url_decode_matches_urllib_unquote_without_u_escapes(text: str) -> None:
    assert url_decode(text, plus_as_space=False) == urllib.parse.unquote(text, errors="replace")
    assert url_decode(text) == urllib.parse.unquote_plus(text, errors="replace")


@given(texts)
def test_url_decode_inverts_quote(s: str) -> None:
    assert url_decode(urllib.parse.quote(s, safe="")) == s
    assert url_decode(urllib.parse.quote(s, safe=""), plus_as_space=False) == s
    assert url_decode(urllib.parse.quote_plus(s, safe="")) == s


@given(st.one_of(texts, escape_soup), st.booleans())
def test_url_decode_total_and_encodable(text: str, plus_as_space: bool) -> None:
    out = url_decode(text, plus_as_space)
    out.encode("utf-8")  # raises on a lone surrogate
    assert len(out) <= len(text)


@given(texts.filter(lambda s: "%" not in s and "+" not in s), st.booleans())
def test_url_decode_leaves_plain_text(text: str, plus_as_space: bool) -> None:
    assert url_decode(text, plus_as_space) == text


# --- Enricher: memoised, bounded ---


def test_enricher_status_tuples() -> None:
    e = Enricher()
    assert e.status("401", "1", "2148074254") == (
        "401.1",
        "Logon failed.",
        "8009030e",
        "SEC_E_NO_CREDENTIALS",
    )
    assert e.status("401", "", "-") == ("401.", STATUS_FRIENDLY_DEFAULT, "", WIN32_FRIENDLY_DEFAULT)
    assert e.status("403", "4", "5") == ("403.4", "SSL required.", "5", "Access is denied.")
    assert e.status("200", "0", "0") == (
        "200.0",
        STATUS_FRIENDLY_DEFAULT,
        "0",
        "The operation completed successfully.",
    )
    assert e.status("401", "2", "2148074252") == (
        "401.2",
        "Logon failed due to server configuration.",
        "8009030c",
        "SEC_E_LOGON_DENIED",
    )
    # Served from the memo the second time, with the same answer.
    assert e.status("401", "1", "2148074254") == (
        "401.1",
        "Logon failed.",
        "8009030e",
        "SEC_E_NO_CREDENTIALS",
    )


def test_enricher_query_follows_plus_setting() -> None:
    assert Enricher().query("a+b%20c") == "a b c"
    assert Enricher(plus_as_space=False).query("a+b%20c") == "a+b c"
    assert Enricher().query("-") == "-"


def test_enricher_memos_stay_bounded() -> None:
    e = Enricher(cache_size=3)
    for i in range(20):
        assert e.query(f"q=%{i:02X}") == f"q={chr(i)}"
        assert e.status(str(i), "0", str(i)) == (
            f"{i}.0",
            STATUS_FRIENDLY_DEFAULT,
            to_hex(i),
            win32_friendly(to_hex(i)),
        )
        assert len(e._query) <= 3
        assert len(e._status) <= 3
    # After a clear the memo refills and still answers correctly.
    assert e.query("q=%41") == "q=A"
    assert e.status("401", "0", "1") == ("401.0", "Access denied.", "1", "Incorrect function.")


def test_enricher_rejects_empty_cache() -> None:
    with pytest.raises(ValueError, match="cache_size"):
        Enricher(cache_size=0)


def test_enricher_has_slots() -> None:
    e = Enricher()
    with pytest.raises(AttributeError):
        e.other = 1  # type: ignore[attr-defined]


win32_inputs = st.one_of(
    st.sampled_from(
        ["", "-", "0", "5", "1326", "2148074254", "2148074252", "-2146893042", "9223372036854775808"]
    ),
    int64s.map(str),
    st.text(max_size=6),
)
status_inputs = st.one_of(st.sampled_from(["401", "403", "200", "", "-"]), st.text(max_size=4))
substatus_inputs = st.one_of(st.sampled_from(["0", "1", "2", "3", "4", "5", ""]), st.text(max_size=3))


@given(
    st.lists(
        st.tuples(status_inputs, substatus_inputs, win32_inputs, st.one_of(texts, escape_soup)), max_size=30
    ),
    st.booleans(),
    st.integers(min_value=1, max_value=4),
)
def test_enricher_equals_plain_functions(
    rows: list[tuple[str, str, str, str]], plus_as_space: bool, cache_size: int
) -> None:
    e = Enricher(plus_as_space=plus_as_space, cache_size=cache_size)
    for status, substatus, win32, query in rows * 2:  # twice: the second pass hits the memos
        full = status_full(status, substatus)
        win_hex = to_hex(to_long(win32))
        assert e.status(status, substatus, win32) == (
            full,
            status_friendly(full),
            win_hex,
            win32_friendly(win_hex),
        )
        assert e.query(query) == url_decode(query, plus_as_space)


# --- Enricher.values: the whole request, memoised and shared ---


def _event(query: str, agent: str, status: tuple[str, str, str], user: str = "-") -> IISEvent:
    # fresh string objects, as a JSON decoder makes them for every record
    fresh = "".join
    return IISEvent(
        0, "203.0.113.9", "WEB01", "10.0.0.11", 443, fresh(["GE", "T"]), fresh([query]), fresh([user]),
        fresh(["W3SVC", "1"]), fresh([agent, ""]), *(fresh([s, ""]) for s in status),
    )  # fmt: skip


def _plain_values(e: IISEvent, plus_as_space: bool) -> tuple[str, ...]:
    full = status_full(e.scStatus, e.scSubStatus)
    win_hex = to_hex(to_long(e.scWin32Status))
    return (
        e.csUserName,
        url_decode(e.csUriQuery, plus_as_space),
        e.sSiteName,
        e.csUserAgent,
        e.csMethod,
        full,
        status_friendly(full),
        win_hex,
        win32_friendly(win_hex),
    )


@given(
    st.lists(
        st.tuples(
            st.one_of(texts, escape_soup),
            st.sampled_from(["curl/8.4.0", "Mozilla/5.0+(X11)", ""]) | texts,
            st.tuples(status_inputs, substatus_inputs, win32_inputs),
        ),
        max_size=30,
    ),
    st.booleans(),
    st.integers(min_value=1, max_value=4),
)
def test_enricher_values_equal_plain_functions(
    rows: list[tuple[str, str, tuple[str, str, str]]], plus_as_space: bool, size: int
) -> None:
    e = Enricher(plus_as_space=plus_as_space, cache_size=size, share_size=size)
    for query, agent, status in rows * 2:  # twice: the second pass hits the memos
        event = _event(query, agent, status)
        assert e.values(event) == _plain_values(event, plus_as_space) == e.enrich(event)
        assert len(SET_NAMES) == len(e.values(event))
        assert max(len(e._values), len(e._tuples), len(e._strings)) <= size


def test_enricher_values_are_shared() -> None:
    e = Enricher()
    a = e.values(_event("q=1", "curl/8.4.0", ("200", "0", "0")))
    b = e.values(_event("q=1", "curl/8.4.0", ("200", "0", "0")))
    assert a is b  # the same tuple for the same request columns
    c = e.values(_event("q=2", "curl/8.4.0", ("200", "0", "0")))
    assert c is not a and c[3] is a[3] and c[2] is a[2]  # another request still shares its strings
    d = e.share(tuple("".join([v, ""]) for v in c))
    assert d is c  # what a restored window holds is shared too


def test_enricher_rejects_empty_share_size() -> None:
    with pytest.raises(ValueError, match="share_size"):
        Enricher(share_size=0)

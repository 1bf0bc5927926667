"""The rule's per-request enrichment: status texts, Win32 hex and friendly text, and url_decode."""

from __future__ import annotations

import re
from typing import TypeVar

from streams.core.records import IISEvent
from streams.core.rule import DEFAULT_MAX_VALUE_BYTES

_K = TypeVar("_K")
_V = TypeVar("_V")

# The rule's collected string sets, in the order the alert projects them: `Enricher.values` gives one
# request's value for each, in this order.
SET_NAMES = (
    "csUserName",
    "decodedUriQuery",
    "sSiteName",
    "csUserAgent",
    "csMethod",
    "scStatusFull",
    "scStatusFull_Friendly",
    "scWin32Status_Hex",
    "scWin32Status_Friendly",
)

# Strings longer than this are not shared (a long query is likely unique, and would pin memory).
_SHARE_MAX_LEN = 1024
# Requests whose columns together are longer than this are enriched without memoising: a memo keyed by
# strings of any length would let a client with unique long values fill memory (entries x length), and
# such values rarely repeat anyway. Bounds every memo to cache_size x (this + overhead).
_MEMO_MAX_CHARS = 1024

# What a cut value ends with (see `truncate`): visible in the alert, and how `truncated_in` finds it.
TRUNCATION_MARK = "\u2026[truncated]"
_MARK_BYTES = len(TRUNCATION_MARK.encode())


def truncate(text: str, max_bytes: int) -> str:
    """`text` if its UTF-8 form fits in `max_bytes`, else its longest prefix (whole characters) that
    fits together with TRUNCATION_MARK, then the mark.

    Cheap for the usual short value: a str of n characters takes at most 4n bytes in UTF-8."""
    if len(text) * 4 <= max_bytes:
        return text
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text
    cut = data[: max_bytes - _MARK_BYTES].decode("utf-8", "ignore")  # drops a split character
    return cut + TRUNCATION_MARK


STATUS_FRIENDLY_DEFAULT = (
    "See - https://support.microsoft.com/help/943891/the-http-status-code-in-iis-7-0-iis-7-5-and-iis-8-0"
)
WIN32_FRIENDLY_DEFAULT = "See - https://msdn.microsoft.com/library/cc231199.aspx"

# Step 2: `==` is case-sensitive and the keys are distinct, so "first match" is a dict lookup.
_STATUS_FRIENDLY: dict[str, str] = {
    "401.0": "Access denied.",
    "401.1": "Logon failed.",
    "401.2": "Logon failed due to server configuration.",
    "401.3": "Unauthorized due to ACL on resource.",
    "401.4": "Authorization failed by filter.",
    "401.5": "Authorization failed by ISAPI/CGI application.",
    "403.0": "Forbidden.",
    "403.4": "SSL required.",
}

# Step 4: `=~` is case-insensitive; the keys stay distinct once lower-cased, so first match is a lookup
# of the lower-cased text ("8009030C" is written upper-case in the rule).
_WIN32_FRIENDLY: dict[str, str] = {
    key.lower(): text
    for key, text in (
        ("775", "The referenced account is currently locked out and cannot be logged on to."),
        ("52e", "Logon failure: Unknown user name or bad password."),
        ("532", "Logon failure: The specified account password has expired."),
        ("533", "Logon failure: Account currently disabled."),
        ("2ee2", "The request has timed out."),
        ("0", "The operation completed successfully."),
        ("1", "Incorrect function."),
        ("2", "The system cannot find the file specified."),
        ("3", "The system cannot find the path specified."),
        ("4", "The system cannot open the file."),
        ("5", "Access is denied."),
        ("8009030e", "SEC_E_NO_CREDENTIALS"),
        ("8009030C", "SEC_E_LOGON_DENIED"),
    )
}

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_MASK64 = 2**64 - 1
_SIGNED_DIGITS = re.compile(r"[+-]?[0-9]+")

# A run of consecutive %XX escapes (decoded together as UTF-8), or of consecutive %uXXXX escapes (UTF-16
# code units, so that a surrogate pair written as two escapes combines). Like .NET, only a lower-case 'u'
# introduces a %u escape; anything else after '%' that is not two hex digits stays literal.
_ESCAPES = re.compile(r"((?:%[0-9A-Fa-f]{2})+)|((?:%u[0-9A-Fa-f]{4})+)")


def status_full(sc_status: str, sc_substatus: str) -> str:
    """strcat(scStatus, ".", scSubStatus): empty parts stay empty, so "401" + "" is "401."."""
    return f"{sc_status}.{sc_substatus}"


def status_friendly(full: str) -> str:
    """The rule's text for a full status (step 2), or the default link when none matches exactly."""
    return _STATUS_FRIENDLY.get(full, STATUS_FRIENDLY_DEFAULT)


def to_long(text: str) -> int | None:
    """Kusto tolong of a string: a signed 64-bit integer literal, else None (Kusto's null).

    Only ASCII digits with an optional sign are accepted; Python's int() alone would also take
    whitespace, underscores and non-ASCII digits.
    """
    if not (text.isascii() and text.isdigit()) and _SIGNED_DIGITS.fullmatch(text) is None:
        return None
    if len(text) > 20:
        # Guard int() against huge literals (it refuses past 4300 digits): drop leading zeros first.
        body = text.lstrip("+-").lstrip("0")
        if len(body) > 19:
            return None
        text = ("-" if text[0] == "-" else "") + (body or "0")
    value = int(text)
    if value < _INT64_MIN or value > _INT64_MAX:
        return None
    return value


def to_hex(value: int | None) -> str:
    """Kusto tohex: lower-case, unpadded, negatives as 64-bit two's complement; null gives ""."""
    if value is None:
        return ""
    return format(value & _MASK64, "x")


def win32_friendly(hex_text: str) -> str:
    """The rule's text for a Win32 status in hex (step 4), matched case-insensitively, or the default."""
    if not hex_text.isascii():
        # Every key is ASCII; this also keeps Unicode case folding (e.g. U+212A KELVIN SIGN) out.
        return WIN32_FRIENDLY_DEFAULT
    return _WIN32_FRIENDLY.get(hex_text.lower(), WIN32_FRIENDLY_DEFAULT)


def _decode_run(match: re.Match[str]) -> str:
    """Decode one run of escapes: bytes as UTF-8, or UTF-16 code units, invalid parts as U+FFFD."""
    byte_run = match.group(1)
    if byte_run is not None:
        return bytes.fromhex(byte_run.replace("%", "")).decode("utf-8", "replace")
    unit_run = match.group(2)
    decoded = "".join([chr(int(unit_run[i + 2 : i + 6], 16)) for i in range(0, len(unit_run), 6)])
    for char in decoded:
        if "\ud800" <= char <= "\udfff":
            # Pair up surrogates; a lone one becomes U+FFFD so the result always encodes to UTF-8.
            return decoded.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return decoded


def url_decode(text: str, plus_as_space: bool = True) -> str:
    """Kusto url_decode, i.e. .NET HttpUtility.UrlDecode with UTF-8; malformed escapes stay literal.

    '+' is replaced before escapes are decoded: no escape contains '+', and "%2B" must stay '+'.
    """
    if plus_as_space and "+" in text:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    return _ESCAPES.sub(_decode_run, text)


class Enricher:
    """The enrichment of one request, memoised: statuses and queries repeat heavily in a log stream.

    Each memo is a plain dict cleared when it reaches its size, which keeps it bounded without the
    bookkeeping of an LRU. `values` also *shares* what it returns: requests with the same columns get
    the very same tuple of the very same strings, so a million windows that saw the same user agent
    hold one copy of it (windows keep the tuple of their first request, see aggregate.WindowAgg).
    Sharing never changes a value, only which (equal) object holds it.
    """

    __slots__ = (
        "_query",
        "_status",
        "_strings",
        "_tuples",
        "_values",
        "cache_size",
        "max_value_bytes",
        "plus_as_space",
        "share_size",
    )

    def __init__(
        self,
        plus_as_space: bool = True,
        cache_size: int = 65536,
        share_size: int = 16384,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, not {cache_size}")
        if share_size < 1:
            raise ValueError(f"share_size must be at least 1, not {share_size}")
        self.plus_as_space = plus_as_space
        self.cache_size = cache_size
        self.share_size = share_size
        self.max_value_bytes = max_value_bytes
        self._status: dict[tuple[str, str, str], tuple[str, str, str, str]] = {}
        self._query: dict[str, str] = {}
        # request columns -> shared values; shared values -> themselves; string -> shared string
        self._values: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._tuples: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._strings: dict[str, str] = {}

    def status(self, sc_status: str, sc_substatus: str, sc_win32_status: str) -> tuple[str, str, str, str]:
        """(scStatusFull, scStatusFull_Friendly, scWin32Status_Hex, scWin32Status_Friendly) of a request."""
        key = (sc_status, sc_substatus, sc_win32_status)
        cached = self._status.get(key)
        if cached is not None:
            return cached
        full = status_full(sc_status, sc_substatus)
        win_hex = to_hex(to_long(sc_win32_status))
        result = (full, status_friendly(full), win_hex, win32_friendly(win_hex))
        if len(sc_status) + len(sc_substatus) + len(sc_win32_status) <= _MEMO_MAX_CHARS:
            _store(self._status, key, result, self.cache_size)
        return result

    def query(self, cs_uri_query: str) -> str:
        """decodedUriQuery of a request: url_decode(csUriQuery) with this enricher's '+' handling."""
        if "%" not in cs_uri_query and "+" not in cs_uri_query:
            return cs_uri_query  # nothing to decode: no need to spend cache memory on it
        cached = self._query.get(cs_uri_query)
        if cached is not None:
            return cached
        result = url_decode(cs_uri_query, self.plus_as_space)
        if len(cs_uri_query) <= _MEMO_MAX_CHARS:
            _store(self._query, cs_uri_query, result, self.cache_size)
        return result

    def enrich(self, event: IISEvent) -> tuple[str, ...]:
        """The values one request contributes to each of the rule's sets, in SET_NAMES order, each cut
        to `max_value_bytes` (see `truncate`)."""
        limit = self.max_value_bytes
        return tuple([truncate(value, limit) for value in self._enrich(event)])

    def _enrich(self, event: IISEvent) -> tuple[str, ...]:
        full, full_friendly, win_hex, win_friendly = self.status(
            event.scStatus, event.scSubStatus, event.scWin32Status
        )
        return (
            event.csUserName,
            self.query(event.csUriQuery),
            event.sSiteName,
            event.csUserAgent,
            event.csMethod,
            full,
            full_friendly,
            win_hex,
            win_friendly,
        )

    def values(self, event: IISEvent) -> tuple[str, ...]:
        """`enrich(event)`, memoised by the request's columns and shared (see the class docstring)."""
        key = (
            event.csUserName,
            event.csUriQuery,
            event.sSiteName,
            event.csUserAgent,
            event.csMethod,
            event.scStatus,
            event.scSubStatus,
            event.scWin32Status,
        )
        cached = self._values.get(key)
        if cached is not None:
            return cached
        if sum(map(len, key)) > _MEMO_MAX_CHARS:  # long (likely unique, maybe hostile): not memoised
            return self.enrich(event)
        result = self.share(self.enrich(event))
        _store(self._values, key, result, self.share_size)
        return result

    def share(self, values: tuple[str, ...]) -> tuple[str, ...]:
        """The shared tuple equal to `values` (itself the first time), made of shared strings."""
        cached = self._tuples.get(values)
        if cached is not None:
            return cached
        strings, size = self._strings, self.share_size
        parts = []
        for text in values:
            got = strings.get(text)
            if got is None:
                got = text
                if len(text) <= _SHARE_MAX_LEN:
                    _store(strings, text, text, size)
            parts.append(got)
        result = tuple(parts)
        _store(self._tuples, result, result, size)
        return result


def _store(memo: dict[_K, _V], key: _K, value: _V, cache_size: int) -> None:
    """Insert into a memo, first emptying it if full, so it never holds more than cache_size entries."""
    if len(memo) >= cache_size:
        memo.clear()
    memo[key] = value

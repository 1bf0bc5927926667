"""IIS W3C extended log lines to IISEvent, or a ParseError: a pure, line-at-a-time parser.

A W3C log is a sequence of header blocks (`#Software`, `#Version`, `#Date`, `#Fields: <ids>`) and
data lines whose space-separated values follow the latest `#Fields` directive. The parser keeps
that state across the lines of one file; it does no I/O and reads no environment or clock: the
caller supplies the Computer (explicit, or a default such as the local host name) and the stand-in
for the site name (a `W3SVC<n>` folder name) when `s-sitename` is not logged.

Per `#Fields` directive the position of every needed field is computed once; a data line then
costs one `split(' ')`, one tuple gather and a few checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter

from streams.core.parse import MAX_KEY_CHARS, key_too_long
from streams.core.records import IISEvent, ParseError, Reason
from streams.core.timefmt import parse_iso_ms

# Field ids (lower-cased; ids are case-insensitive) gathered into the IISEvent string attributes,
# in this order: cIP, sIP, then the optional columns in IISEvent's positional order after sPort.
_GATHERED = (
    "c-ip",
    "s-ip",
    "cs-method",
    "cs-uri-query",
    "cs-username",
    "s-sitename",
    "cs(user-agent)",
    "sc-status",
    "sc-substatus",
    "sc-win32-status",
)
_SITE_SLOT = _GATHERED.index("s-sitename")
_REQUIRED = ("c-ip", "s-ip")  # without them an event has no group key
_MAX_PORT = 65535
_EXCERPT = 40  # characters of a bad value quoted in an error's detail

# IIS's default W3C fields: what a line that arrives without its #Fields header most likely holds.
DEFAULT_W3C_FIELDS = (
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
)

_NO_FIELDS = ParseError(Reason.NO_FIELDS_DIRECTIVE, "data line before any #Fields directive")
_NO_COMPUTER = ParseError(
    Reason.MISSING_FIELD, "Computer is missing: no s-computername is logged and no host name was given"
)


def _clock_ms(text: str) -> int | None:
    """Milliseconds since midnight of an `hh:mm:ss` time (IIS's form); None for any other form."""
    if len(text) == 8 and text[2] == ":" and text[5] == ":" and text.isascii():
        hh, mm, ss = text[0:2], text[3:5], text[6:8]
        if hh.isdigit() and mm.isdigit() and ss.isdigit():
            h, m, s = int(hh), int(mm), int(ss)
            if h <= 23 and m <= 59 and s <= 59:
                return ((h * 60 + m) * 60 + s) * 1000
    return None


class W3CParser:
    """Stateful across lines of one file: directives change the field list from there on.

    `computer`, when given, is every event's Computer; otherwise Computer is the line's
    `s-computername` when that field is logged and not '-', else `default_computer` (None: such a
    line is a missing-field error). `site_name` stands in for sSiteName when `s-sitename` is not
    logged. A value written as '-' is kept as the string "-" (as Azure Monitor ingests it), or read
    as "" with `dash_as_null` (which also applies to a `site_name` stand-in of "-"). A field not
    logged at all reads as "". `fields`, when given, is the layout of data lines until a `#Fields`
    directive says otherwise (lines that arrive without their header); without it such lines are
    errors.
    """

    __slots__ = (
        "_computer",
        "_count",
        "_dash_as_null",
        "_date",
        "_date_i",
        "_day_key",
        "_day_ms",
        "_default_computer",
        "_extra",
        "_gather",
        "_host_i",
        "_plan_error",
        "_port_i",
        "_time_i",
    )

    def __init__(
        self,
        computer: str | None,
        default_computer: str | None,
        site_name: str = "-",
        dash_as_null: bool = False,
        fields: Sequence[str] | None = None,
    ) -> None:
        self._computer = computer
        self._default_computer = default_computer
        self._dash_as_null = dash_as_null
        # Appended to each split line: index count+0 reads "" (a field not logged), count+1 the
        # site stand-in, so every gathered attribute is a plain index and one itemgetter serves all.
        self._extra = ("", site_name)
        self._date: str | None = None  # the date part of the latest #Date directive
        self._day_key: str | None = None  # one-entry cache: a date string and its epoch ms
        self._day_ms: int | None = None
        self._count = -1  # number of fields of the current #Fields directive; -1 before any
        self._plan_error: ParseError | None = None
        self._gather: Callable[[list[str]], tuple[str, ...]] = itemgetter(*range(len(_GATHERED)))
        self._date_i = -1
        self._time_i = -1
        self._port_i = -1
        self._host_i = -1
        if fields is not None:
            self._set_fields(list(fields))

    def feed(self, line: str) -> IISEvent | ParseError | None:
        """One line (with or without its line ending): an event, an error, or None (blank or directive)."""
        line = line.rstrip("\r\n")
        if not line:
            return None
        if line[0] == "\ufeff":  # a byte-order mark opening the file
            line = line[1:]
        if line[:1] == "#":
            self._directive(line)
            return None
        if not line or line.isspace():
            return None
        count = self._count
        if count < 0:
            return _NO_FIELDS
        if self._plan_error is not None:
            return self._plan_error
        parts = line.split(" ")
        if len(parts) != count:
            return ParseError(Reason.FIELD_COUNT, f"expected {count} fields, got {len(parts)}")
        parts.extend(self._extra)

        time_ms = self._time_ms(parts)
        if isinstance(time_ms, ParseError):
            return time_ms

        port: int | None = None
        if self._port_i >= 0:
            text = parts[self._port_i]
            if text != "-":
                if text.isdigit() and text.isascii():
                    digits = text.lstrip("0")  # leading zeros: still the same number
                    port = int(digits or "0") if len(digits) <= 5 else _MAX_PORT + 1
                if port is None or port > _MAX_PORT:
                    return ParseError(Reason.INVALID_FIELD, f"s-port is not a port: {text[:_EXCERPT]!r}")

        computer = self._computer
        if computer is None:
            computer = self._default_computer
            if self._host_i >= 0:
                host = parts[self._host_i]
                if host and host != "-":
                    computer = host
            if computer is None:
                return _NO_COMPUTER

        values = self._gather(parts)
        if self._dash_as_null:
            values = tuple(["" if v == "-" else v for v in values])
        c_ip, s_ip, method, query, user, site, agent, status, substatus, win32 = values
        if len(c_ip) > MAX_KEY_CHARS or len(computer) > MAX_KEY_CHARS or len(s_ip) > MAX_KEY_CHARS:
            return key_too_long(
                "cIP" if len(c_ip) > MAX_KEY_CHARS else "Computer" if len(computer) > MAX_KEY_CHARS else "sIP"
            )
        return IISEvent(
            time_ms, c_ip, computer, s_ip, port, method, query, user, site, agent, status, substatus, win32
        )

    def _time_ms(self, parts: list[str]) -> int | ParseError:
        """Epoch ms of a split data line: its date and time fields, or the #Date date and its time."""
        if self._time_i < 0:
            return ParseError(Reason.INVALID_TIME, "the #Fields directive logs no time field")
        clock = parts[self._time_i]
        if self._date_i >= 0:
            date = parts[self._date_i]
        elif self._date is not None:
            date = self._date
        else:
            return ParseError(Reason.INVALID_TIME, "no date field is logged and no #Date directive was seen")
        if date != self._day_key:
            self._day_key = date
            self._day_ms = parse_iso_ms(f"{date}T00:00:00Z")
        day = self._day_ms
        ms_of_day = _clock_ms(clock)
        if day is not None and ms_of_day is not None:
            return day + ms_of_day
        # Any other form (fractional seconds, or garbage): the general ISO-8601 parser decides.
        ms = parse_iso_ms(f"{date}T{clock}Z")
        if ms is None:
            detail = f"invalid date/time: {date[:_EXCERPT]!r} {clock[:_EXCERPT]!r}"
            return ParseError(Reason.INVALID_TIME, detail)
        return ms

    def _directive(self, line: str) -> None:
        head = line[:8].lower()
        if head == "#fields:":
            self._set_fields(line[8:].split())
        elif head.startswith("#date:"):
            value = line[6:].split()
            self._date = value[0] if value else None

    def _set_fields(self, ids: list[str]) -> None:
        """Precompute, once per directive, where each needed field sits in a data line."""
        count = len(ids)
        index: dict[str, int] = {}
        for i, field_id in enumerate(ids):
            index.setdefault(field_id.lower(), i)  # a repeated id: its first occurrence wins
        missing = [f for f in _REQUIRED if f not in index]
        self._plan_error = (
            ParseError(Reason.MISSING_FIELD, f"the #Fields directive does not log {' and '.join(missing)}")
            if missing
            else None
        )
        self._count = count
        slots = [index.get(f, count) for f in _GATHERED]  # count -> "" (not logged)
        if "s-sitename" not in index:
            slots[_SITE_SLOT] = count + 1  # -> the site stand-in
        self._gather = itemgetter(*slots)
        self._date_i = index.get("date", -1)
        self._time_i = index.get("time", -1)
        self._port_i = index.get("s-port", -1)
        self._host_i = index.get("s-computername", -1)

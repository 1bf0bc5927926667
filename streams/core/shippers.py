"""Messages as log shippers put them on Kafka, read into IISEvents: each message recognised by its content.

A pure reader (no I/O, clock or environment). `MessageReader.read(payload)` returns every record a
message holds, as `(index, IISEvent | ParseError)`: index None for a lone record, else its position
in an array or `{"records": [...]}` envelope; an empty list for a message that is only a W3C
directive. What it recognises, per message, in this order:

| a message that is                                         | read as                                 |
|-----------------------------------------------------------|-----------------------------------------|
| an object with `TimeGenerated` (or cIP, sIP, Computer)    | W3CIISLog (`parse.event_from_record`)   |
| an object with W3C names: `c-ip`, `s-ip`, `cs-method`...  | NXLog (`xm_w3c` + `to_json()`)          |
| an object with `source.ip`/`.address` (or destination.*)  | an ECS document (Elastic's IIS pipeline) |
| an object with a string `message` (Filebeat, Vector,      | a shipper's envelope: that W3C line     |
|   Logstash), `log` (Fluent Bit), `_raw` (Cribl) or        |                                         |
|   `event.original` (ECS)                                  |                                         |
| text that is not JSON, or a JSON string                   | the raw W3C line itself                 |
| an array, or `{"records": [...]}`                         | each element as above                   |

Keys may be nested (`{"log": {"file": {"path": ...}}}`) or dotted (`{"log.file.path": ...}`).
`force` ("w3ciislog", "raw", "ecs", "nxlog") reads every object one way instead.

W3C lines (bare or in an envelope) are parsed per source = (file path, host) of their envelope, each
with its own `W3CParser`: lines arrive without their `#Fields` header (Filebeat's IIS module drops
`#` lines), so a new source starts with the header-less field list (IIS's default unless given); a
`#Fields:` line that does arrive sets its source's layout from then on, `#Date:` its date; other
directives are skipped. At most `max_sources` sources are remembered (least recently used first out;
a forgotten source starts again from the header-less list).

Metadata. Computer: the line's `s-computername` when logged and not `-` (ECS: `iis.access.server_name`),
else the envelope's host (`host.name`, `host` as a string, `hostname`, `agent.hostname`, `Hostname`),
else the reader's default computer, else the record is a missing-field error. sSiteName: the line's
`s-sitename` (ECS: `iis.access.site_name`) when logged, else the `W3SVC<n>` folder holding the file
the envelope names (`log.file.path`, `file`, `path`, `source`, `FileName`), else `-`. Event time is
the line's own `date` and `time` (a shipper's `@timestamp`, `_time` or `timestamp` is when it read the
line, and is ignored); NXLog: `date` and `time`, else `EventTime`; an ECS document: `@timestamp`, which
Elastic's pipeline set from the line.

How a missing value maps, one rule for every format (`dash_as_null` is `--w3c-dash-as-empty`):

| the W3C line had        | read as                              | NXLog sends       | an ECS document has |
|-------------------------|--------------------------------------|-------------------|---------------------|
| a value                 | the value (NXLog, ECS numbers: digits) | the value       | the value           |
| `-`                     | `"-"`, or `""` with dash_as_null     | null (or `"-"`)   | no field (or null)  |
| a field it does not log | `""`                                 | no key            | (no field: as `-`)  |
| no s-sitename logged    | the `W3SVC<n>` folder, else `-`      | no key            | no field            |
| `-` or no s-port        | no port (a connection, not a port)   | null or no key    | no field            |
| no c-ip or s-ip logged  | a missing-field error                | no key            | no field            |

W3CIISLog records are read as Azure Monitor stored them: `-` stays `-`; null or absent reads "".

An ECS document carries what the pipeline made of the line: it URL-decoded `user_agent.original`
(read back with spaces as `+`, as IIS writes them) and, in current versions, `url.query` (kept: the
rule's `url_decode` of a decoded query gives the same text unless that text still holds `%xx` or `+`).
It drops `-` values, so an absent field reads as `-` (an absent source.ip or destination.ip is an
error: group keys never come from a missing value).

Every failure is a ParseError whose detail begins with the format the message was taken for
("Filebeat envelope: ...", "ECS document: ..."); nothing raises. Group keys longer than
`parse.MAX_KEY_CHARS` are rejected; a host name longer than that is too (it may become Computer).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import orjson

from streams.core.parse import MAX_KEY_CHARS, event_from_record, key_too_long, port_value, records_of
from streams.core.records import IISEvent, ParseError, Reason
from streams.core.tenant import TenantSpec
from streams.core.timefmt import parse_iso_ms
from streams.core.w3c import DEFAULT_W3C_FIELDS, W3CParser

Result = IISEvent | ParseError
Read = list[tuple[int | None, Result]]

FORMATS = ("w3ciislog", "raw", "ecs", "nxlog")  # what `force` may name
MAX_SOURCES = 1024  # W3C sources (file path, host) whose layout is remembered
MAX_PATH_CHARS = 1024  # of a file path kept in a source key (longer ones share their prefix's source)
_EXCERPT = 40  # characters of a bad value quoted in an error's detail

_SITE_DIR = re.compile(r"W3SVC\d+", re.IGNORECASE)

# A path of keys, compiled: (its dotted form, first key, the rest or None). `_get` tries the dotted
# key, then the first key's object with the rest, so nested, dotted and mixed forms all resolve.
_Path = tuple[str, str, "_Path | None"]


def _path(*keys: str) -> _Path:
    return (".".join(keys), keys[0], _path(*keys[1:]) if len(keys) > 1 else None)


_MESSAGE, _LOG, _RAW, _ORIGINAL = _path("message"), _path("log"), _path("_raw"), _path("event", "original")
_ENVELOPE_LINE_KEYS = (_MESSAGE, _LOG, _RAW, _ORIGINAL)
_HOST_KEYS = (
    _path("host", "name"),
    _path("host"),
    _path("hostname"),
    _path("agent", "hostname"),
    _path("Hostname"),
)
_PATH_KEYS = (_path("log", "file", "path"), _path("file"), _path("path"), _path("source"), _path("FileName"))
_P_DESTINATION_ADDRESS = _path("destination", "address")
_P_DESTINATION_IP = _path("destination", "ip")
_P_DESTINATION_PORT = _path("destination", "port")
_P_HTTP_REQUEST_METHOD = _path("http", "request", "method")
_P_HTTP_RESPONSE_STATUS_CODE = _path("http", "response", "status_code")
_P_IIS_ACCESS_SERVER_NAME = _path("iis", "access", "server_name")
_P_IIS_ACCESS_SITE_NAME = _path("iis", "access", "site_name")
_P_IIS_ACCESS_SUB_STATUS = _path("iis", "access", "sub_status")
_P_IIS_ACCESS_WIN32_STATUS = _path("iis", "access", "win32_status")
_P_SOURCE_ADDRESS = _path("source", "address")
_P_SOURCE_IP = _path("source", "ip")
_P_TIMESTAMP = _path("@timestamp")
_P_URL_QUERY = _path("url", "query")
_P_USER_AGENT_ORIGINAL = _path("user_agent", "original")
_P_USER_NAME = _path("user", "name")
_AGENT_TYPE = _path("agent", "type")
_NXLOG_MARKERS = frozenset(("c-ip", "s-ip", "cs-method", "cs-uri-stem", "s-port", "C-IP", "S-IP"))
_ECS_DOTTED_MARKERS = frozenset(("source.ip", "source.address", "destination.ip", "destination.address"))
_W3CIISLOG_MARKERS = frozenset(("cIP", "sIP", "Computer"))
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}

_TOMBSTONE = ParseError(Reason.INVALID_JSON, "empty message (tombstone)")
_EMPTY = ParseError(Reason.INVALID_JSON, "empty message")
_UNDECODABLE = ParseError(Reason.UNDECODABLE, "payload is not UTF-8")
_UNRECOGNISED = ParseError(
    Reason.MISSING_FIELD,
    "unrecognised message: no TimeGenerated (W3CIISLog), no W3C line under message, log, _raw or "
    "event.original (a shipper's envelope), no source.ip (ECS document), no c-ip (NXLog record)",
)


def parse_w3c_fields(fields: str | Sequence[str] | None) -> tuple[str, ...]:
    """A header-less field list: ids separated by spaces (a pasted `#Fields:` prefix is allowed), or a
    sequence of ids; None or empty = IIS's default W3C fields."""
    if fields is None:
        return DEFAULT_W3C_FIELDS
    if isinstance(fields, str):
        text = fields.strip()
        if text[:8].lower() == "#fields:":
            text = text[8:]
        ids = tuple(text.split())
    else:
        ids = tuple(f for f in fields if f)
    return ids or DEFAULT_W3C_FIELDS


def w3c_fields_problem(fields: str | Sequence[str] | None) -> str | None:
    """Why a header-less field list cannot read any line (None: it can)."""
    low = {f.lower() for f in parse_w3c_fields(fields)}
    missing = [f for f in ("c-ip", "s-ip", "time") if f not in low]
    if missing:
        return f"the W3C field list does not hold {', '.join(missing)}"
    return None


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def _named(label: str, error: ParseError) -> ParseError:
    return ParseError(error.reason, f"{label}: {error.detail}")


def _get(obj: dict[str, Any], path: _Path) -> Any:
    """obj's value at a compiled path of keys, nested (`{"log": {"file": {"path": ...}}}`), dotted
    (`{"log.file.path": ...}`) or part way (`{"log": {"file.path": ...}}`); None when absent."""
    value = obj.get(path[0])
    rest = path[2]
    if value is not None or rest is None:
        return value
    inner = obj.get(path[1])
    if type(inner) is dict:
        return _get(inner, rest)
    return None


def _first_text(obj: dict[str, Any], paths: tuple[_Path, ...]) -> str | None:
    """The first of `paths` holding a non-empty string."""
    for path in paths:
        value = _get(obj, path)
        if type(value) is str and value:
            return value
    return None


def site_of_path(path: str | None) -> str:
    """The `W3SVC<n>` folder a log file sits in (either slash), which stands for its site; else '-'."""
    if not path:
        return "-"
    parts = path.replace("\\", "/").rsplit("/", 2)
    if len(parts) >= 2 and _SITE_DIR.fullmatch(parts[-2]):
        return parts[-2]
    return "-"


def _envelope_label(obj: dict[str, Any], key: _Path) -> str:
    """The shipper an envelope most likely came from (only computed for an error's detail)."""
    if key is _MESSAGE:
        meta = obj.get("@metadata")
        if (type(meta) is dict and meta.get("beat") == "filebeat") or _get(obj, _AGENT_TYPE) == "filebeat":
            return "Filebeat envelope"
        if "source_type" in obj:
            return "Vector envelope"
        if "@version" in obj:
            return "Logstash envelope"
        return "shipper envelope ('message')"
    if key is _LOG:
        return "Fluent Bit envelope ('log')"
    if key is _RAW:
        return "Cribl envelope ('_raw')"
    return "ECS envelope ('event.original')"


class MessageReader:
    """Reads Kafka messages (or lines of a file) of any supported shape; see the module docstring.

    `computer`: Computer when neither the line nor the envelope names a host (None: such records are
    errors). `w3c_fields`: the layout of W3C lines that arrive without a `#Fields` header (None = IIS's
    default). `dash_as_null`: read a W3C `-` (and what shippers make of it) as "" rather than "-".
    `force`: None (recognise each message) or one of FORMATS. `max_sources`: W3C sources remembered.
    `tenant`: a `field:` or `fixed:` tenant (core.tenant) set on every event read, from its record; a
    record whose tenant cannot be used is read as the error instead. None: no tenants (or a `header:`
    one, which the adapter sets from the message).
    """

    __slots__ = ("_computer", "_dash", "_fields", "_force", "_max_sources", "_sources", "_tenant")

    def __init__(
        self,
        computer: str | None = None,
        w3c_fields: str | Sequence[str] | None = None,
        dash_as_null: bool = False,
        force: str | None = None,
        max_sources: int = MAX_SOURCES,
        tenant: TenantSpec | None = None,
    ) -> None:
        if force is not None and force not in FORMATS:
            raise ValueError(f"force must be one of {', '.join(FORMATS)} or None, got {force!r}")
        self._computer = computer
        self._fields = parse_w3c_fields(w3c_fields)
        self._dash = dash_as_null
        self._force = force
        self._max_sources = max(1, max_sources)
        self._sources: OrderedDict[tuple[str | None, str | None], W3CParser] = OrderedDict()
        self._tenant = tenant if tenant is not None and tenant.source != "header" else None

    @property
    def force(self) -> str | None:
        """The one reading forced on every message, or None (recognised by content)."""
        return self._force

    # ------------------------------------------------------------------ entry points

    def read(self, payload: bytes | str | None) -> Read:
        """Every record of one message (see the module docstring)."""
        if payload is None:
            return [(None, _TOMBSTONE)]
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return self.read_text(payload)
        return self.read_document(doc)

    def read_text(self, payload: bytes | str) -> Read:
        """A payload that is not JSON: a raw W3C line (or several), unless it looks like broken JSON."""
        if self._tenant is not None:
            return self._tenant.stamp(self._read_text(payload), None)
        return self._read_text(payload)

    def _read_text(self, payload: bytes | str) -> Read:
        if isinstance(payload, bytes):
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                return [(None, _UNDECODABLE)]
        else:
            text = payload
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates: nothing we could write out again
                return [(None, _UNDECODABLE)]
        force = self._force
        head = text.lstrip()[:1]
        if force != "raw" and (head in ("{", "[") or (force is not None and head)):
            try:
                orjson.loads(text)
                detail = "not a JSON document"
            except orjson.JSONDecodeError as exc:
                detail = str(exc)[:200]
            label = "JSON message" if force is None else _FORCED_LABEL[force]
            return [(None, ParseError(Reason.INVALID_JSON, f"{label}: {detail}"))]
        if not head:
            return [(None, _EMPTY)]
        return self._lines(text, None, None, "raw W3C line")

    def read_document(self, doc: Any) -> Read:
        """A decoded JSON document: an array or `{"records": [...]}` envelope, or one record."""
        items = records_of(doc)
        if len(items) == 1 and items[0] is doc:
            return self.read_record(doc)
        out: Read = []
        for index, item in enumerate(items):
            for _, result in self.read_record(item):
                out.append((index, result))
        return out

    def read_record(self, obj: Any) -> Read:
        """One decoded record: an object of any recognised shape, or a string holding a W3C line."""
        if self._tenant is not None:
            return self._tenant.stamp(self._read_record(obj), obj)
        return self._read_record(obj)

    def _read_record(self, obj: Any) -> Read:
        force = self._force
        if type(obj) is dict:
            if force is None:
                return self._auto(obj)
            if force == "raw":
                for key in _ENVELOPE_LINE_KEYS:
                    line = _get(obj, key)
                    if type(line) is str:
                        return self._envelope(obj, line, key)
                return [(None, _named("raw W3C line envelope", _UNRECOGNISED_RAW))]
            if force == "ecs":
                return [(None, self._ecs(obj))]
            if force == "nxlog":
                return [(None, self._nxlog(obj))]
            return [(None, _w3ciislog(obj))]
        if type(obj) is str and force in (None, "raw"):
            if not obj.strip():
                return [(None, _EMPTY)]
            return self._lines(obj, None, None, "raw W3C line (JSON string)")
        if force in (None, "raw"):
            detail = f"expected a JSON object or a W3C line, got {_json_type(obj)}"
        else:
            detail = f"{_FORCED_LABEL[force]}: expected a JSON object, got {_json_type(obj)}"
        return [(None, ParseError(Reason.NOT_AN_OBJECT, detail))]

    # ------------------------------------------------------------------ recognition

    def _auto(self, obj: dict[str, Any]) -> Read:
        if "TimeGenerated" in obj:
            return [(None, _w3ciislog(obj))]
        if not _NXLOG_MARKERS.isdisjoint(obj):
            return [(None, self._nxlog(obj))]
        if _is_ecs_document(obj):
            return [(None, self._ecs(obj))]
        line = obj.get("message")  # the usual envelope first
        if type(line) is str:
            return self._envelope(obj, line, _MESSAGE)
        for key in _ENVELOPE_LINE_KEYS:
            line = _get(obj, key)
            if type(line) is str:
                return self._envelope(obj, line, key)
        if not _W3CIISLOG_MARKERS.isdisjoint(obj):
            return [(None, _w3ciislog(obj))]
        return [(None, _UNRECOGNISED)]

    # ------------------------------------------------------------------ W3C lines

    def _envelope(self, obj: dict[str, Any], line: str, key: _Path) -> Read:
        host = _first_text(obj, _HOST_KEYS)
        path = _first_text(obj, _PATH_KEYS)
        results = self._lines(line, path, host, None)
        for i, (index, result) in enumerate(results):
            if type(result) is ParseError:
                results[i] = (index, _named(_envelope_label(obj, key), result))
        return results

    def _lines(self, text: str, path: str | None, host: str | None, label: str | None) -> Read:
        """The results of a W3C line (or of several, newline-separated) of one source."""
        if host is not None and len(host) > MAX_KEY_CHARS:
            error = key_too_long("Computer")
            return [(None, _named(label, error) if label else error)]
        parser = self._source(path, host)
        if "\n" not in text or "\n" not in text.rstrip("\r\n"):
            result = parser.feed(text)
            if result is None:
                return []
            if type(result) is ParseError and label:
                result = _named(label, result)
            return [(None, result)]
        out: Read = []
        for number, line in enumerate(text.split("\n")):
            result = parser.feed(line)
            if result is not None:
                out.append(
                    (number, _named(label, result) if label and type(result) is ParseError else result)
                )
        return out

    def _source(self, path: str | None, host: str | None) -> W3CParser:
        """The parser of a source, created with the header-less layout; least recently used out."""
        key = (path[:MAX_PATH_CHARS] if path is not None else None, host)
        sources = self._sources
        parser = sources.get(key)
        if parser is not None:
            sources.move_to_end(key)
            return parser
        parser = W3CParser(
            None,
            host or self._computer,
            site_name=site_of_path(path),
            dash_as_null=self._dash,
            fields=self._fields,
        )
        sources[key] = parser
        if len(sources) > self._max_sources:
            sources.popitem(last=False)
        return parser

    # ------------------------------------------------------------------ parsed records

    def _text(self, value: Any, name: str) -> str | ParseError:
        """A W3C value a shipper parsed: null or '-' is the line's '-'; numbers are their digits."""
        if value is None or value == "-":
            return "" if self._dash else "-"
        if type(value) is str:
            return value
        if type(value) is int:
            return str(value) if value.bit_length() <= 64 else _too_large(name)
        if type(value) is float and value.is_integer() and abs(value) < 1e18:
            return str(int(value))
        return ParseError(
            Reason.INVALID_FIELD, f"{name} must be a string or an integer, got {_json_type(value)}"
        )

    def _computer_of(self, line_host: Any, obj: dict[str, Any]) -> str | ParseError:
        if type(line_host) is str and line_host and line_host != "-":
            computer: str | None = line_host
        else:
            computer = _first_text(obj, _HOST_KEYS) or self._computer
        if computer is None:
            return ParseError(
                Reason.MISSING_FIELD, "Computer is missing: no s-computername, no host and no default given"
            )
        return computer

    def _site(self, value: Any, present: bool, obj: dict[str, Any], name: str) -> str | ParseError:
        if present:
            return self._text(value, name)
        site = site_of_path(_first_text(obj, _PATH_KEYS))  # not logged: the W3SVC<n> folder
        return "" if site == "-" and self._dash else site

    def _event(
        self,
        label: str,
        time_ms: int,
        keys: tuple[Any, Any],
        computer: str | ParseError,
        port: Any,
        texts: list[tuple[Any, str]],
        site: str | ParseError,
    ) -> Result:
        """Check the parts of a parsed record and build its event; errors name `label`."""
        if isinstance(computer, ParseError):
            return _named(label, computer)
        cip = self._text(keys[0], "client IP")
        sip = self._text(keys[1], "server IP")
        for value, name in ((cip, "cIP"), (computer, "Computer"), (sip, "sIP")):
            if isinstance(value, ParseError):
                return _named(label, value)
            if len(value) > MAX_KEY_CHARS:
                return _named(label, key_too_long(name))
        if isinstance(site, ParseError):
            return _named(label, site)
        values: list[str] = []
        for value, name in texts:
            text = value if type(value) is str and value and value != "-" else self._text(value, name)
            if isinstance(text, ParseError):
                return _named(label, text)
            values.append(text)
        assert isinstance(cip, str) and isinstance(sip, str)
        method, query, user, agent, status, substatus, win32 = values
        return IISEvent(
            time_ms, cip, computer, sip, port, method, query, user, site, agent, status, substatus, win32
        )

    def _nxlog(self, obj: dict[str, Any]) -> Result:
        """An NXLog record: xm_w3c's fields under their W3C names (any case), `-` as null."""
        label = "NXLog record"
        low = {k.lower(): v for k, v in obj.items()}
        time_ms = _nxlog_time(low)
        if isinstance(time_ms, ParseError):
            return _named(label, time_ms)
        for name in ("c-ip", "s-ip"):
            if name not in low:
                return ParseError(Reason.MISSING_FIELD, f"{label}: {name} is missing")
        port = port_value(low.get("s-port"), "s-port")
        if isinstance(port, ParseError):
            return _named(label, port)
        # Fields the layout omits read "" (a W3C line's rule); logged ones as _text says.
        texts = [
            (low[name], name) if name in low else ("", name)
            for name in (
                "cs-method",
                "cs-uri-query",
                "cs-username",
                "cs(user-agent)",
                "sc-status",
                "sc-substatus",
                "sc-win32-status",
            )
        ]
        return self._event(
            label,
            time_ms,
            (low["c-ip"], low["s-ip"]),
            self._computer_of(low.get("s-computername"), obj),
            port,
            texts,
            self._site(low.get("s-sitename"), "s-sitename" in low, obj, "s-sitename"),
        )

    def _ecs(self, obj: dict[str, Any]) -> Result:
        """An Elastic ECS document as Elastic's IIS ingest pipeline writes it (nested or dotted keys)."""
        label = "ECS document"
        ts = _get(obj, _P_TIMESTAMP)
        if type(ts) is not str:
            reason = Reason.MISSING_FIELD if ts is None else Reason.INVALID_TIME
            return ParseError(reason, f"{label}: @timestamp must be an ISO-8601 string, got {_json_type(ts)}")
        time_ms = parse_iso_ms(ts)
        if time_ms is None:
            return ParseError(
                Reason.INVALID_TIME, f"{label}: @timestamp is not an ISO-8601 time: {ts[:64]!r}"
            )
        cip = _get(obj, _P_SOURCE_IP)
        if cip is None:
            cip = _get(obj, _P_SOURCE_ADDRESS)
        sip = _get(obj, _P_DESTINATION_IP)
        if sip is None:
            sip = _get(obj, _P_DESTINATION_ADDRESS)
        for value, name in ((cip, "source.ip"), (sip, "destination.ip")):
            if value is None:
                return ParseError(Reason.MISSING_FIELD, f"{label}: {name} is missing")
        port = port_value(_get(obj, _P_DESTINATION_PORT), "destination.port")
        if isinstance(port, ParseError):
            return _named(label, port)
        agent = _get(obj, _P_USER_AGENT_ORIGINAL)
        if type(agent) is str:
            agent = agent.replace(" ", "+")  # the pipeline URL-decoded it; IIS writes spaces as '+'
        site = _get(obj, _P_IIS_ACCESS_SITE_NAME)
        texts = [
            (_get(obj, _P_HTTP_REQUEST_METHOD), "http.request.method"),
            (_get(obj, _P_URL_QUERY), "url.query"),
            (_get(obj, _P_USER_NAME), "user.name"),
            (agent, "user_agent.original"),
            (_get(obj, _P_HTTP_RESPONSE_STATUS_CODE), "http.response.status_code"),
            (_get(obj, _P_IIS_ACCESS_SUB_STATUS), "iis.access.sub_status"),
            (_get(obj, _P_IIS_ACCESS_WIN32_STATUS), "iis.access.win32_status"),
        ]
        return self._event(
            label,
            time_ms,
            (cip, sip),
            self._computer_of(_get(obj, _P_IIS_ACCESS_SERVER_NAME), obj),
            port,
            texts,
            self._site(site, site is not None, obj, "iis.access.site_name"),
        )


_FORCED_LABEL = {
    "w3ciislog": "W3CIISLog record",
    "raw": "raw W3C line",
    "ecs": "ECS document",
    "nxlog": "NXLog record",
}
_UNRECOGNISED_RAW = ParseError(Reason.MISSING_FIELD, "no W3C line under message, log, _raw or event.original")


def _too_large(name: str) -> ParseError:
    return ParseError(Reason.INVALID_FIELD, f"{name} is a number of more than 20 digits")


def _w3ciislog(obj: dict[str, Any]) -> Result:
    result = event_from_record(obj)
    return _named("W3CIISLog record", result) if isinstance(result, ParseError) else result


def _is_ecs_document(obj: dict[str, Any]) -> bool:
    """Parsed by Elastic's pipeline: the client or server address sits in `source` / `destination`."""
    for side in (obj.get("source"), obj.get("destination")):
        if type(side) is dict and ("ip" in side or "address" in side):
            return True
    return not _ECS_DOTTED_MARKERS.isdisjoint(obj)


def _nxlog_time(low: dict[str, Any]) -> int | ParseError:
    """The line's date and time (UTC, as IIS writes them), else NXLog's EventTime."""
    date, clock = low.get("date"), low.get("time")
    if type(date) is str and type(clock) is str:
        ms = parse_iso_ms(f"{date}T{clock}Z") if len(date) + len(clock) <= 64 else None
        if ms is None:
            return ParseError(
                Reason.INVALID_TIME, f"invalid date/time: {date[:_EXCERPT]!r} {clock[:_EXCERPT]!r}"
            )
        return ms
    event_time = low.get("eventtime")
    if type(event_time) is str:
        ms = parse_iso_ms(event_time) if len(event_time) <= 64 else None
        if ms is None:
            return ParseError(Reason.INVALID_TIME, f"EventTime is not a time: {event_time[:64]!r}")
        return ms
    return ParseError(Reason.MISSING_FIELD, "no date and time fields and no EventTime")

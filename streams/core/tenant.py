"""Tenants: several workspaces sharing one topic (MSSP pipelines), kept apart in every group key.

`--tenant-field` names where an event's tenant is read, in one of three forms:

| form           | the tenant is                                                                      |
|----------------|------------------------------------------------------------------------------------|
| `header:NAME`  | the Kafka header NAME of the message (UTF-8), for every record it holds (the       |
|                | adapter reads it: `of_headers`; files have none)                                   |
| `field:PATH`   | the record's field PATH: `TenantId` or `_ResourceId` of an Azure Monitor export,    |
|                | `fields.tenant` of a Filebeat envelope; nested (`{"fields": {"tenant": ..}}`) or   |
|                | dotted (`{"fields.tenant": ..}`) keys, as core.shippers reads envelope keys. The   |
|                | record itself is read (an element of `{"records": [...]}`, or the envelope of a    |
|                | W3C line), not the document around it; a number reads as its digits               |
| `fixed:VALUE`  | VALUE: one tenant per worker (or per file for `replay`)                            |

With a tenant the group key is (tenant, bin, cIP, Computer, sIP): the tenant comes first in the store
key's array (core.windows), in the repartition key, in the AlertId's name (core.alerts), in the alert
(`TenantId`, after every other column), in the notification entity (core.notify) and in allowlist
matching (core.allowlist: an entry's optional `tenant`, empty = every tenant). Without `--tenant-field`
every event's tenant is "" and nothing changes: keys, AlertIds, alerts and state bytes are exactly
those of a worker without tenants.

An event whose tenant is missing or empty takes `--tenant-default` when one is set, else it is refused
(dead letter, reason `tenant-missing`). A tenant that is present but not a string or a number, or longer
than MAX_TENANT_CHARS, is refused (`invalid-field`) and never defaulted: the sender controls it, and a
bad value must not move its events into the default tenant. The value is kept as sent (it is escaped on
output like every string the client controls, core.escape).

Per-tenant thresholds (`--tenant-thresholds PATH`): a CSV file with the header `tenant,threshold` (or JSON
lines with those keys); a tenant not listed uses `--threshold`. `TenantThresholds` holds the table the
engines read; the worker reloads the file when it changes, `replay` reads it once. Pure.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from streams.core.parse import MAX_KEY_CHARS
from streams.core.records import IISEvent, ParseError, Reason
from streams.core.timefmt import parse_iso_ms
from streams.core.windows import START_DIGITS

MAX_TENANT_CHARS = MAX_KEY_CHARS  # a tenant is part of every key and alert, like cIP
SOURCES = ("header", "field", "fixed")
H_TENANT = "src-tenant"  # the router's header on the repartition topic: the tenant it resolved
_EXCERPT = 40
Read = list[tuple[int | None, IISEvent | ParseError]]


class TenantError(ValueError):
    """A --tenant-field, --tenant-default or thresholds file that cannot be used."""


@dataclass(frozen=True, slots=True)
class TenantSpec:
    """Where the tenant is read (`source` one of SOURCES, `name` the header, field path or value) and
    the tenant of an event that has none (`default`; "" = refuse such events)."""

    source: str
    name: str
    default: str = ""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise TenantError(f"takes header:NAME, field:PATH or fixed:VALUE, got source {self.source!r}")
        if not self.name:
            raise TenantError(f"{self.source}: needs a name after the colon")
        for what, text in (("value", self.name if self.source == "fixed" else ""), ("default", self.default)):
            if len(text) > MAX_TENANT_CHARS:
                raise TenantError(f"the {what} is longer than {MAX_TENANT_CHARS} characters")

    @classmethod
    def parse(cls, text: str, default: str = "") -> TenantSpec | None:
        """`header:NAME`, `field:PATH` or `fixed:VALUE`; "" = no tenants (None)."""
        text = text.strip()
        if not text:
            if default:
                raise TenantError("--tenant-default needs --tenant-field")
            return None
        source, sep, name = text.partition(":")
        if not sep:
            raise TenantError(f"takes header:NAME, field:PATH or fixed:VALUE, got {text[:80]!r}")
        return cls(source.strip(), name.strip() if source.strip() != "fixed" else name, default)

    def __str__(self) -> str:
        return f"{self.source}:{self.name}"

    # ------------------------------------------------------------------ values

    def value(self, raw: Any, where: str) -> str | ParseError:
        """The tenant of a raw value found at `where` (None: absent)."""
        if raw is None or raw == "" or raw == b"":
            if self.default:
                return self.default
            return ParseError(Reason.TENANT_MISSING, f"no tenant: {where} is missing or empty")
        if type(raw) is bytes:
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                return ParseError(Reason.INVALID_FIELD, f"tenant {where} is not UTF-8")
        if (type(raw) is int and raw.bit_length() <= 64) or (type(raw) is float and raw.is_integer()):
            raw = str(int(raw))
        if type(raw) is not str:
            return ParseError(
                Reason.INVALID_FIELD, f"tenant {where} must be a string, got {type(raw).__name__}"
            )
        if len(raw) > MAX_TENANT_CHARS:
            return ParseError(
                Reason.INVALID_FIELD, f"tenant {where} is longer than {MAX_TENANT_CHARS} characters"
            )
        return raw

    def of_record(self, obj: Any) -> str | ParseError:
        """A record's tenant (field and fixed forms; a record that is no object has no fields)."""
        if self.source == "fixed":
            return self.name
        if self.source == "header":
            return self.value(None, f"header {self.name}")  # a file's record has no headers
        return self.value(lookup(obj, self.name) if type(obj) is dict else None, f"field {self.name}")

    def of_headers(self, headers: Sequence[tuple[str, bytes | None]] | None) -> str | ParseError:
        """A message's tenant from its headers (the last one of the name, as `dict(headers)` reads)."""
        raw = None
        for key, value in headers or ():
            if key == self.name:
                raw = value
        return self.value(raw, f"header {self.name}")

    def stamp(self, results: Read, obj: Any) -> Read:
        """`results` of one record (`obj`, None for text) with the tenant set on each event, or the event
        replaced by the error when the record's tenant cannot be used (in place)."""
        tenant: str | ParseError | None = None
        for i, (index, result) in enumerate(results):
            if type(result) is IISEvent:
                if tenant is None:
                    tenant = self.of_record(obj)
                if type(tenant) is str:
                    result.tenant = tenant
                else:
                    results[i] = (index, tenant)  # type: ignore[assignment]
        return results


def lookup(obj: dict[str, Any], path: str) -> Any:
    """obj's value at a dotted path: the dotted key itself, or the first part's object with the rest
    (nested, dotted or mixed, as core.shippers reads envelope keys); None when absent."""
    value = obj.get(path)
    if value is not None or "." not in path:
        return value
    head, _, rest = path.partition(".")
    inner = obj.get(head)
    return lookup(inner, rest) if type(inner) is dict else None


def key_tenant(key: bytes) -> str:
    """The tenant of a window's store key ("" for a key without one): see core.windows.encode_key."""
    if key[START_DIGITS + 1 : START_DIGITS + 2] != b'"':
        return ""
    parts = orjson.loads(key[START_DIGITS:])
    return parts[0] if len(parts) == 4 else ""


# ---------------------------------------------------------------------------------------- fast path

_COLUMNS = (
    ("TimeGenerated", str),
    ("cIP", str),
    ("Computer", str),
    ("sIP", str),
    ("sPort", int),
    ("csMethod", str),
    ("csUriQuery", str),
    ("csUserName", str),
    ("sSiteName", str),
    ("csUserAgent", str),
    ("scStatus", str),
    ("scSubStatus", str),
    ("scWin32Status", str),
)
_NOT_COLUMNS = (msgspec.MsgspecError, RecursionError, UnicodeError, ValueError)


def single_event_with_tenant(spec: TenantSpec) -> Callable[[bytes | str | None], IISEvent | None] | None:
    """The fast path (core.parse.single_event) for a top-level tenant field: the 13 columns and the
    tenant decoded into one struct, the event returned with its tenant; None (so the reader decides,
    and names any error) for anything else. None when the field is nested or one of the columns."""
    if spec.source != "field" or "." in spec.name or spec.name in dict(_COLUMNS) or spec.name == "tenant_":
        return None
    struct = msgspec.defstruct(
        "_TenantColumns", [*_COLUMNS, ("tenant_", str | None, None)], rename={"tenant_": spec.name}
    )
    decode = msgspec.json.Decoder(struct).decode

    def single(payload: bytes | str | None) -> IISEvent | None:
        if payload is None:
            return None
        try:
            r: Any = decode(payload)
        except _NOT_COLUMNS:
            return None
        tenant, port = r.tenant_, r.sPort
        if (
            type(tenant) is str
            and tenant
            and len(tenant) <= MAX_TENANT_CHARS
            and 0 <= port <= 65535
            and len(r.cIP) <= MAX_KEY_CHARS
            and len(r.Computer) <= MAX_KEY_CHARS
            and len(r.sIP) <= MAX_KEY_CHARS
        ):
            time_ms = parse_iso_ms(r.TimeGenerated)
            if time_ms is not None:
                return IISEvent(
                    time_ms,
                    r.cIP,
                    r.Computer,
                    r.sIP,
                    port,
                    r.csMethod,
                    r.csUriQuery,
                    r.csUserName,
                    r.sSiteName,
                    r.csUserAgent,
                    r.scStatus,
                    r.scSubStatus,
                    r.scWin32Status,
                    tenant,
                )
        return None

    return single


# ---------------------------------------------------------------------------------------- thresholds


class TenantThresholds:
    """Per-tenant thresholds: the table the engines read (replaced whole on a reload), and the default
    (`--threshold`) for tenants not listed."""

    __slots__ = ("by_tenant", "default", "version")

    def __init__(self, default: int, by_tenant: dict[str, int] | None = None) -> None:
        self.default = default
        self.by_tenant: dict[str, int] = dict(by_tenant or {})
        self.version = 0

    def replace(self, by_tenant: dict[str, int]) -> None:
        self.by_tenant = dict(by_tenant)
        self.version += 1

    def of(self, tenant: str) -> int:
        return self.by_tenant.get(tenant, self.default)

    def of_key(self, key: bytes) -> int:
        """The threshold of a window's store key."""
        if not self.by_tenant:
            return self.default
        return self.by_tenant.get(key_tenant(key), self.default)

    def lowest(self) -> int:
        return min([self.default, *self.by_tenant.values()])


def parse_thresholds(text: str, max_set_size: int, source: str = "tenant thresholds") -> dict[str, int]:
    """tenant -> threshold from a CSV text (header `tenant,threshold`) or JSON lines
    (`{"tenant": ..., "threshold": N}`); blank lines and `#` lines skipped; a later row for a tenant
    replaces an earlier one. Each threshold is at least 1 and, with a set cap, at most the cap."""
    rows: list[tuple[int, Any, Any]] = []
    lines = text.splitlines()
    first = next((ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), "")
    if first.startswith("{"):
        for number, line in enumerate(lines, 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            try:
                record = orjson.loads(stripped)
            except orjson.JSONDecodeError as exc:
                raise TenantError(f"{source}:{number}: invalid JSON: {exc}") from None
            if not isinstance(record, dict) or set(record) != {"tenant", "threshold"}:
                raise TenantError(f"{source}:{number}: expected an object with tenant and threshold")
            rows.append((number, record["tenant"], record["threshold"]))
    else:
        table = [
            (number, row)
            for number, row in enumerate(csv.reader(io.StringIO(text)), 1)
            if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")
        ]
        if table:
            header_at, header = table[0]
            if [h.strip() for h in header] != ["tenant", "threshold"]:
                raise TenantError(f"{source}:{header_at}: the first row must be the header tenant,threshold")
            for number, row in table[1:]:
                if len(row) != 2:
                    raise TenantError(f"{source}:{number}: {len(row)} values for 2 columns")
                rows.append((number, row[0].strip(), row[1].strip()))
    out: dict[str, int] = {}
    for number, tenant, raw in rows:
        if type(tenant) is not str or not tenant or len(tenant) > MAX_TENANT_CHARS:
            raise TenantError(f"{source}:{number}: tenant must be 1 to {MAX_TENANT_CHARS} characters")
        try:
            threshold = int(raw) if type(raw) is not bool else None
        except (TypeError, ValueError):
            threshold = None
        if threshold is None or threshold < 1 or (max_set_size and threshold > max_set_size):
            limit = f" and at most --max-set-size {max_set_size}" if max_set_size else ""
            raise TenantError(f"{source}:{number}: threshold must be an integer of at least 1{limit}")
        out[tenant] = threshold
    return out

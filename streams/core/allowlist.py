"""Allowlists (Sentinel watchlists) on the rule's group keys: which windows are not alerted, and why.

The Sentinel training lab fixes this very rule's pen-test noise with a watchlist and
`where cIP !in (PenTestIPaddresses)` before `summarize`. An entry here names one group-key column
(`cIP`, `Computer` or `sIP`) and an exact value or, for the IP columns, a CIDR range (IPv4 or IPv6).
Because every entry is on a group-key column, all rows of one window match it or none do: removing the
matching rows before grouping (what the `where` clause does) is the same as not alerting the windows
whose key matches, which is how it is applied here - to alerts as they leave the engine, so the window
state and its counts are untouched and an entry removed later lets the window alert again.

`expires` is compared with the window's start (event time, not the wall clock), so `replay` and the
stream judge a window alike: an entry applies to windows starting before it. Exact values compare as
Kusto's case-sensitive `!in` does; a CIDR range matches a value that parses as an IP address in it (an
IPv4-mapped IPv6 address such as `::ffff:10.0.0.1` is read as its IPv4 address), never any other text.

Tenants (core.tenant): an entry may name a `tenant`; it then applies to that tenant's windows only, and
an entry without one to every tenant's. A tenant's entry is keyed `["tenant","field","value"]` (a JSON
array) on the allowlist topic, so entries of two tenants for one value never replace each other.

Pure: parsing of CSV and JSON-lines text, matching, and the version (a digest of the entries) that each
alert judged with it records. Reading files and topics is the adapters'.
"""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.core.timefmt import parse_iso_ms

FIELDS = ("cIP", "Computer", "sIP")
IP_FIELDS = ("cIP", "sIP")
COLUMNS = ("field", "value", "reason", "owner", "expires", "tenant")
MAX_TEXT = 1024  # longest value, reason or owner kept (an allowlist is the operator's, still bounded)
DAY_MS = 86_400_000
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowlistError(ValueError):
    """An entry that cannot be used; the message names where it is."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One allowlist entry: a group-key column and an exact value or a CIDR range."""

    field: str
    value: str
    reason: str = ""
    owner: str = ""
    expires_ms: int | None = None  # the entry applies to windows starting before this
    network: IPNetwork | None = None  # set when `value` is a CIDR range
    tenant: str = ""  # "" = every tenant's windows

    @property
    def id(self) -> str:
        """`field:value` (a tenant's entry: `["tenant","field","value"]`): the entry's name in metrics and
        its key on the allowlist topic."""
        if self.tenant:
            return orjson.dumps([self.tenant, self.field, self.value]).decode()
        return f"{self.field}:{self.value}"

    def applies_to(self, start_ms: int) -> bool:
        return self.expires_ms is None or start_ms < self.expires_ms

    def applies(self, start_ms: int, tenant: str) -> bool:
        """To the window of `tenant` starting at `start_ms`."""
        return (self.expires_ms is None or start_ms < self.expires_ms) and (
            not self.tenant or self.tenant == tenant
        )

    def canonical(self) -> list[Any]:
        out: list[Any] = [self.field, self.value, self.reason, self.owner, self.expires_ms]
        if self.tenant:
            out.append(self.tenant)  # so a list without tenants keeps its version
        return out


def parse_expires(text: str) -> int | None:
    """An ISO-8601 time, or a bare date `YYYY-MM-DD` meaning through the end of that day (UTC)."""
    text = text.strip()
    if not text:
        return None
    if len(text) == 10 and text[4] == "-" and text[7] == "-":
        start = parse_iso_ms(text + "T00:00:00Z")
        if start is not None:
            return start + DAY_MS
    ms = parse_iso_ms(text)
    if ms is None:
        raise AllowlistError(f"expires is not an ISO-8601 time or date: {text[:80]!r}")
    return ms


def make_entry(record: dict[str, Any]) -> Entry:
    """An entry from a mapping with the keys of COLUMNS (`field` and `value` required)."""
    unknown = set(record) - set(COLUMNS)
    if unknown:
        raise AllowlistError(f"unknown keys {sorted(unknown)} (allowed: {', '.join(COLUMNS)})")
    texts: dict[str, str] = {}
    for key in COLUMNS:
        raw = record.get(key)
        if raw is None:
            raw = ""
        if not isinstance(raw, str):
            raise AllowlistError(f"{key} must be a string, got {type(raw).__name__}")
        if len(raw) > MAX_TEXT:
            raise AllowlistError(f"{key} is longer than {MAX_TEXT} characters")
        texts[key] = raw.strip()
    name, value = texts["field"], texts["value"]
    if name not in FIELDS:
        raise AllowlistError(f"field must be one of {', '.join(FIELDS)}, got {name[:80]!r}")
    if not value:
        raise AllowlistError("value is empty")
    network: IPNetwork | None = None
    if "/" in value and name in IP_FIELDS:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise AllowlistError(f"value {value[:80]!r} is not a CIDR range: {exc}") from None
        value = str(network)  # canonical: 10.1.2.3/8 -> 10.0.0.0/8
    return Entry(
        name,
        value,
        texts["reason"],
        texts["owner"],
        parse_expires(texts["expires"]),
        network,
        texts["tenant"],
    )


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Entries by column: exact values in dicts, ranges in lists; `version` names the content."""

    entries: tuple[Entry, ...] = ()
    exact: dict[tuple[str, str], tuple[Entry, ...]] = field(default_factory=dict, compare=False)
    # column -> IP version -> prefix length -> network address (int) -> entries: one lookup per prefix
    # length in use, whatever the number of ranges
    ranges: dict[str, dict[int, dict[int, dict[int, tuple[Entry, ...]]]]] = field(
        default_factory=dict, compare=False
    )
    version: str = ""

    @classmethod
    def of(cls, entries: Iterable[Entry]) -> Allowlist:
        """The allowlist of these entries; a later entry with the same `field:value` replaces an earlier
        one (a file's correction, a topic's update). Entries are ordered by id: the first match of a
        window is the same whatever order they were given in."""
        by_id: dict[str, Entry] = {}
        for entry in entries:
            by_id[entry.id] = entry
        ordered = tuple(by_id[k] for k in sorted(by_id))
        exact: dict[tuple[str, str], list[Entry]] = {}
        ranges: dict[str, dict[int, dict[int, dict[int, tuple[Entry, ...]]]]] = {}
        for entry in ordered:
            net = entry.network
            if net is not None:
                by_net = ranges.setdefault(entry.field, {}).setdefault(net.version, {})
                nets = by_net.setdefault(net.prefixlen, {})
                address = int(net.network_address)
                nets[address] = (*nets.get(address, ()), entry)
            else:
                exact.setdefault((entry.field, entry.value), []).append(entry)
        digest = hashlib.sha256(orjson.dumps([e.canonical() for e in ordered])).hexdigest()
        return cls(
            ordered,
            {k: tuple(v) for k, v in exact.items()},
            ranges,
            f"sha256:{digest[:16]}" if ordered else "",
        )

    def __len__(self) -> int:
        return len(self.entries)

    def match(self, start_ms: int, cIP: str, Computer: str, sIP: str, tenant: str = "") -> Entry | None:
        """The first entry (columns in the order cIP, Computer, sIP; exact values before ranges; then by
        id) that allowlists the window of `tenant` starting at `start_ms` with this key; None when the
        window is alerted as usual. A range costs one lookup per prefix length in use, not one test per
        range."""
        if not self.entries:
            return None
        for name, value in (("cIP", cIP), ("Computer", Computer), ("sIP", sIP)):
            for entry in self.exact.get((name, value), ()):
                if entry.applies(start_ms, tenant):
                    return entry
            by_version = self.ranges.get(name)
            if by_version:
                addr = _ip(value)
                if addr is not None:
                    found = self._in_ranges(by_version.get(addr.version), addr, start_ms, tenant)
                    if found is not None:
                        return found
        return None

    @staticmethod
    def _in_ranges(
        by_length: dict[int, dict[int, tuple[Entry, ...]]] | None,
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
        start_ms: int,
        tenant: str = "",
    ) -> Entry | None:
        """The first (by id) range entry holding `addr` that applies to the window."""
        if not by_length:
            return None
        bits, value = addr.max_prefixlen, int(addr)
        best: Entry | None = None
        for length, nets in by_length.items():
            shift = bits - length
            for entry in nets.get(value >> shift << shift, ()):
                if entry.applies(start_ms, tenant) and (best is None or entry.id < best.id):
                    best = entry
        return best

    def matches_row(self, start_ms: int, row: dict[str, Any], tenant: str = "") -> bool:
        """Whether the `where ... !in (...)` clause removes this row (a W3CIISLog mapping) from the
        window of `tenant` starting at `start_ms`: the specification the alert filter is tested against."""
        return self.match(start_ms, row["cIP"], row["Computer"], row["sIP"], tenant) is not None


@dataclass(slots=True)
class Verdict:
    """Alerts that pass an allowlist (each recording its version), and the suppressed ones by entry."""

    kept: list[dict[str, Any]]
    suppressed: list[tuple[Entry, dict[str, Any]]]


def judge(alerts: Sequence[dict[str, Any]], allowlist: Allowlist | None) -> Verdict:
    """Split alerts by the allowlist; every kept alert gets `AllowlistVersion` when one is configured
    (the version of an empty allowlist is "")."""
    if allowlist is None:
        return Verdict(list(alerts), [])
    kept: list[dict[str, Any]] = []
    suppressed: list[tuple[Entry, dict[str, Any]]] = []
    version = allowlist.version
    for alert in alerts:
        start = parse_iso_ms(alert["WindowStart"])
        assert start is not None  # written by core.alerts
        entry = allowlist.match(
            start, alert["cIP"], alert["Computer"], alert["sIP"], alert.get("TenantId", "")
        )
        if entry is None:
            alert["AllowlistVersion"] = version
            kept.append(alert)
        else:
            suppressed.append((entry, alert))
    return Verdict(kept, suppressed)


# ---------------------------------------------------------------------------------------------- text


def parse_text(text: str, source: str = "allowlist") -> list[Entry]:
    """Entries of a CSV text (a header row with `field,value` and any of `reason,owner,expires`) or of
    JSON lines (one object per line with the same keys). Blank lines and lines starting with `#` are
    skipped. Raises AllowlistError naming `source` and the line."""
    lines = text.splitlines()
    first = next((ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), "")
    if first.startswith("{"):
        return _parse_jsonl(lines, source)
    return _parse_csv(text, source)


def _parse_jsonl(lines: Sequence[str], source: str) -> list[Entry]:
    entries = []
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            record = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise AllowlistError(f"{source}:{number}: invalid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise AllowlistError(f"{source}:{number}: not a JSON object")
        try:
            entries.append(make_entry(record))
        except AllowlistError as exc:
            raise AllowlistError(f"{source}:{number}: {exc}") from None
    return entries


def _parse_csv(text: str, source: str) -> list[Entry]:
    rows = [
        (number, row)
        for number, row in enumerate(csv.reader(io.StringIO(text)), 1)
        if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")
    ]
    if not rows:
        return []
    header_at, header = rows[0]
    names = [h.strip() for h in header]
    if "field" not in names or "value" not in names:
        raise AllowlistError(
            f"{source}:{header_at}: the first row must be a header naming at least field,value "
            f"(columns: {','.join(COLUMNS)})"
        )
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise AllowlistError(
            f"{source}:{header_at}: unknown columns {unknown} (allowed: {','.join(COLUMNS)})"
        )
    entries = []
    for number, row in rows[1:]:
        if len(row) > len(names):
            raise AllowlistError(f"{source}:{number}: {len(row)} values for {len(names)} columns")
        try:
            entries.append(make_entry(dict(zip(names, row))))
        except AllowlistError as exc:
            raise AllowlistError(f"{source}:{number}: {exc}") from None
    return entries


def _key_parts(text: str) -> dict[str, str]:
    """field, value (and tenant) of a topic key: `field:value`, or `["tenant","field","value"]`."""
    if text.startswith("["):
        try:
            parts = orjson.loads(text)
        except orjson.JSONDecodeError:
            parts = None
        if type(parts) is not list or len(parts) != 3 or not all(type(p) is str for p in parts):
            raise AllowlistError(f"key {text[:80]!r} is not [tenant, field, value]")
        return {"tenant": parts[0], "field": parts[1], "value": parts[2]}
    name, sep, raw_value = text.partition(":")
    if not sep:
        raise AllowlistError(f"key {text[:80]!r} is not field:value")
    return {"field": name, "value": raw_value}


def entry_of_record(key: bytes | None, value: bytes | None) -> tuple[str, Entry | None]:
    """An allowlist-topic record: (entry id, the entry; None for a tombstone). The key is
    `field:value`, or `["tenant","field","value"]` for a tenant's entry; the value is one JSON object
    with the keys of COLUMNS (field, value and tenant may be left out: the key gives them). Raises
    AllowlistError for a record that is neither."""
    if key is None:
        raise AllowlistError("record without a key (expected field:value)")
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        raise AllowlistError("key is not UTF-8") from None
    named = _key_parts(text)
    if value is None:
        entry = make_entry(named)  # validates; its id is canonical
        return entry.id, None
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise AllowlistError(f"value is not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise AllowlistError("value is not a JSON object")
    for column, text_value in named.items():
        record.setdefault(column, text_value)
    entry = make_entry(record)
    if entry.id != make_entry(named).id:
        raise AllowlistError(f"key {text[:80]!r} does not name the entry {entry.id[:80]!r}")
    return entry.id, entry

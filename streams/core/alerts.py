"""Alert records: the rule's 16 projected columns plus identity and metadata, and their order."""

from __future__ import annotations

import uuid
from typing import Any

from streams.core import rule
from streams.core.aggregate import SET_NAMES, WindowAgg
from streams.core.enrich import TRUNCATION_MARK
from streams.core.escape import dumps
from streams.core.rule import RuleParams
from streams.core.timefmt import format_iso_ms
from streams.core.windows import WindowKey

# Fixed namespace: AlertIds are the same on every run and every host.
_ALERT_NS = uuid.UUID("6f1d3c52-8d0e-5b8e-9a43-44a555d8ecee")

# The rule's projection, in order.
RULE_COLUMNS = (
    "TimeGenerated",
    "cIP",
    "set_sPort",
    "set_csUserName",
    "set_decodedUriQuery",
    "Computer",
    "set_sSiteName",
    "sIP",
    "set_csUserAgent",
    "set_csMethod",
    "set_scStatusFull",
    "set_scStatusFull_Friendly",
    "set_scWin32Status_Hex",
    "set_scWin32Status_Friendly",
    "ConnectionsCount",
    "portCount",
)


def alert_id(key: WindowKey, bin_ms: int) -> str:
    """Stable identity of (bin, cIP, Computer, sIP): a UUIDv5, the same for every revision. A tenant's
    window (core.tenant) names its tenant first, after the rule: two tenants' windows of the same key
    never share an AlertId, and a window without a tenant keeps the AlertId it always had."""
    parts: tuple[str, ...] = (
        rule.RULE_ID,
        str(key.start_ms),
        str(key.start_ms + bin_ms),
        key.cIP,
        key.Computer,
        key.sIP,
    )
    if key.tenant:
        parts = (rule.RULE_ID, "tenant", key.tenant, *parts[1:])
    return str(uuid.uuid5(_ALERT_NS, "\x1f".join(parts)))


SET_COLUMNS = tuple(f"set_{name}" for name in SET_NAMES)
TRIMMABLE = ("set_sPort", *SET_COLUMNS)  # the sets a byte budget may trim
NUL_TEXT = "\\u0000"  # what `--alert-nul text` writes for a NUL: six visible characters
_TRIM_SLACK = 1024  # kept free: the TrimmedSets list trimming adds, the stream's Revision and Phase


def truncated_in(sets: dict[str, list[str]]) -> list[str]:
    """The set columns holding a value cut by core.enrich.truncate (it ends with the mark)."""
    mark = TRUNCATION_MARK
    return [name for name, values in sets.items() if any(v.endswith(mark) for v in values)]


def _set_size(values: list[Any]) -> int:
    """Serialized bytes of one set column's array (escaped as published)."""
    return len(dumps(values))


def fit_alert(alert: dict[str, Any], max_bytes: int, max_set_bytes: int = 0) -> dict[str, Any]:
    """The alert's byte budget: each set at most `max_set_bytes` serialized (0: no per-set bound), the
    whole record at most `max_bytes`, by dropping members of its sets.

    Deterministic in the alert's content (so `replay` and the stream trim alike): a set over its budget
    loses its last (largest) members; then, while the record is too large, the last member of the string
    set whose members take the most bytes (ties: column name), and set_sPort's largest ports only once
    every string set is empty. Counts are never touched: ConnectionsCount, portCount and
    DistinctPortCount stay exact (portCount may then exceed the ports listed), the identifying fields
    (times, cIP, Computer, sIP, AlertId, ...) are never cut, and TrimmedSets names the columns that lost
    members."""
    trimmed: set[str] = set(alert["TrimmedSets"])
    if max_set_bytes:
        for name in TRIMMABLE:
            values = alert[name]
            if values and _set_size(values) > max_set_bytes:
                size = _set_size(values)
                member_sizes = [len(dumps(v)) + 1 for v in values]
                while values and size > max_set_bytes:
                    size -= member_sizes.pop()
                    values.pop()
                trimmed.add(name)
    budget = max_bytes - _TRIM_SLACK  # room for TrimmedSets and the stream's Revision and Phase
    size = len(dumps(alert))
    if size > budget:
        excess = size - budget
        sizes = {name: [len(dumps(v)) + 1 for v in alert[name]] for name in TRIMMABLE}
        totals = {name: sum(member_sizes) for name, member_sizes in sizes.items() if name in SET_COLUMNS}
        while excess > 0:
            name = max(SET_COLUMNS, key=lambda n: (totals[n], n))
            if not sizes[name]:
                name = "set_sPort"  # every string set is empty: the ports go last
                if not sizes[name]:
                    break  # nothing left to drop: the fixed columns alone are too large (bounded by parsing)
            dropped = sizes[name].pop()
            alert[name].pop()
            if name in totals:
                totals[name] -= dropped
            excess -= dropped
            trimmed.add(name)
    alert["TrimmedSets"] = sorted(trimmed)
    return alert


def _nul_free(value: Any) -> Any:
    if type(value) is str:
        return value.replace("\0", NUL_TEXT)
    if type(value) is list:
        return [_nul_free(v) for v in value]
    if type(value) is dict:
        return {k: _nul_free(v) for k, v in value.items()}
    return value


def nul_as_text(alert: dict[str, Any]) -> dict[str, Any]:
    """Every NUL (U+0000, e.g. a query's `%00` decoded) in the alert's strings written as the six
    characters `\\u0000`. JSON would carry it as the escape \\u0000, which PostgreSQL's jsonb and other
    stores refuse (`--alert-nul text`, the default; `keep` publishes the exact value). A set stays
    sorted and distinct."""
    if b"\\u0000" not in dumps(alert):
        return alert
    out: dict[str, Any] = _nul_free(alert)
    for name in SET_COLUMNS:
        if out[name] != alert[name]:
            out[name] = sorted(set(out[name]))
    return out


def build_alert(
    key: WindowKey, agg: WindowAgg, params: RuleParams, threshold: int | None = None
) -> dict[str, Any]:
    """The alert record for one window (the caller has checked the threshold): NULs as text unless
    `params.nul_as_text` is off (see `nul_as_text`), each set within `params.max_set_bytes` and the
    record within `params.max_alert_bytes` once serialized (see `fit_alert`). `threshold`: the one the
    window was judged by when it is not `params.threshold` (a tenant's, core.tenant). A tenant's window
    carries `TenantId` after every other column."""
    cap = params.max_set_size
    sets = dict(zip(SET_COLUMNS, agg.capped_sets(cap)))
    ports = agg.capped_ports(cap)
    start = format_iso_ms(key.start_ms)
    alert = {
        "TimeGenerated": start,
        "cIP": key.cIP,
        "set_sPort": ports,
        "set_csUserName": sets["set_csUserName"],
        "set_decodedUriQuery": sets["set_decodedUriQuery"],
        "Computer": key.Computer,
        "set_sSiteName": sets["set_sSiteName"],
        "sIP": key.sIP,
        "set_csUserAgent": sets["set_csUserAgent"],
        "set_csMethod": sets["set_csMethod"],
        "set_scStatusFull": sets["set_scStatusFull"],
        "set_scStatusFull_Friendly": sets["set_scStatusFull_Friendly"],
        "set_scWin32Status_Hex": sets["set_scWin32Status_Hex"],
        "set_scWin32Status_Friendly": sets["set_scWin32Status_Friendly"],
        "ConnectionsCount": agg.count,
        "portCount": len(ports),
        "AlertId": alert_id(key, params.bin_ms),
        "RuleId": rule.RULE_ID,
        "RuleName": rule.RULE_NAME,
        "RuleVersion": rule.RULE_VERSION,
        "Severity": rule.SEVERITY,
        "Tactics": list(rule.TACTICS),
        "Techniques": list(rule.TECHNIQUES),
        "Entities": [{"Type": "ip", "Address": key.cIP}],
        "WindowStart": start,
        "WindowEnd": format_iso_ms(key.start_ms + params.bin_ms),
        "DistinctPortCount": agg.distinct_ports(),
        "FirstSeen": format_iso_ms(agg.first_ms),
        "LastSeen": format_iso_ms(agg.last_ms),
        "Parameters": {
            "TimeBinMs": params.bin_ms,
            "PortThreshold": params.threshold if threshold is None else threshold,
            "MaxSetSize": params.max_set_size,
            "MaxValueBytes": params.max_value_bytes,
            "MaxSetBytes": params.max_set_bytes,
            "MaxAlertBytes": params.max_alert_bytes,
        },
        "TruncatedSets": truncated_in(sets),
        "TrimmedSets": [],
    }
    if key.tenant:
        alert["TenantId"] = key.tenant  # within the record budget: fit_alert counts it
    if params.nul_as_text:
        alert = nul_as_text(alert)
    return fit_alert(alert, params.max_alert_bytes, params.max_set_bytes)


def alert_sort_key(alert: dict[str, Any]) -> tuple[int, str, str, str, str, str]:
    """Output order: portCount descending, then TimeGenerated, cIP (then Computer, sIP, TenantId: total
    order)."""
    return (
        -alert["portCount"],
        alert["TimeGenerated"],
        alert["cIP"],
        alert["Computer"],
        alert["sIP"],
        alert.get("TenantId", ""),
    )

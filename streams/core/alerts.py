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
    """Stable identity of (bin, cIP, Computer, sIP): a UUIDv5, the same for every revision."""
    name = "\x1f".join(
        (rule.RULE_ID, str(key.start_ms), str(key.start_ms + bin_ms), key.cIP, key.Computer, key.sIP)
    )
    return str(uuid.uuid5(_ALERT_NS, name))


SET_COLUMNS = tuple(f"set_{name}" for name in SET_NAMES)
_TRIM_SLACK = 1024  # kept free: the TrimmedSets list trimming adds, the stream's Revision and Phase


def truncated_in(sets: dict[str, list[str]]) -> list[str]:
    """The set columns holding a value cut by core.enrich.truncate (it ends with the mark)."""
    mark = TRUNCATION_MARK
    return [name for name, values in sets.items() if any(v.endswith(mark) for v in values)]


def fit_alert(alert: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """Keep the alert's serialized size within `max_bytes` by dropping members of its string sets.

    Deterministic in the alert's content (so `replay` and the stream trim alike): while too large,
    drop the last (largest) member of the set whose members take the most bytes (ties: column name).
    Counts are never touched: ConnectionsCount, portCount and DistinctPortCount stay exact, and
    TrimmedSets names the columns that lost members."""
    budget = max_bytes - _TRIM_SLACK  # room for TrimmedSets and the stream's Revision and Phase
    size = len(dumps(alert))
    if size <= budget:
        return alert
    excess = size - budget
    sizes = {name: [len(dumps(v)) + 1 for v in alert[name]] for name in SET_COLUMNS}
    totals = {name: sum(member_sizes) for name, member_sizes in sizes.items()}
    trimmed: set[str] = set()
    while excess > 0:
        name = max(SET_COLUMNS, key=lambda n: (totals[n], n))
        if not sizes[name]:
            break  # nothing left to drop: the fixed columns alone are too large (bounded by parsing)
        dropped = sizes[name].pop()
        alert[name].pop()
        totals[name] -= dropped
        excess -= dropped
        trimmed.add(name)
    alert["TrimmedSets"] = sorted(trimmed)
    return alert


def build_alert(key: WindowKey, agg: WindowAgg, params: RuleParams) -> dict[str, Any]:
    """The alert record for one window (the caller has checked the threshold), at most
    `params.max_record_bytes` long once serialized (see `fit_alert`)."""
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
            "PortThreshold": params.threshold,
            "MaxSetSize": params.max_set_size,
            "MaxValueBytes": params.max_value_bytes,
        },
        "TruncatedSets": truncated_in(sets),
        "TrimmedSets": [],
    }
    return fit_alert(alert, params.max_record_bytes)


def alert_sort_key(alert: dict[str, Any]) -> tuple[int, str, str, str, str]:
    """Output order: portCount descending, then TimeGenerated, cIP (then Computer, sIP: total order)."""
    return (-alert["portCount"], alert["TimeGenerated"], alert["cIP"], alert["Computer"], alert["sIP"])

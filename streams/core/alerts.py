"""Alert records: the rule's 16 projected columns plus identity and metadata, and their order."""

from __future__ import annotations

import uuid
from typing import Any

from streams.core import rule
from streams.core.aggregate import SET_NAMES, WindowAgg
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


def build_alert(key: WindowKey, agg: WindowAgg, params: RuleParams) -> dict[str, Any]:
    """The alert record for one window (the caller has checked the threshold)."""
    cap = params.max_set_size
    sets = {f"set_{name}": s for name, s in zip(SET_NAMES, agg.capped_sets(cap))}
    ports = agg.capped_ports(cap)
    start = format_iso_ms(key.start_ms)
    return {
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
        },
    }


def alert_sort_key(alert: dict[str, Any]) -> tuple[int, str, str, str, str]:
    """Output order: portCount descending, then TimeGenerated, cIP (then Computer, sIP: total order)."""
    return (-alert["portCount"], alert["TimeGenerated"], alert["cIP"], alert["Computer"], alert["sIP"])

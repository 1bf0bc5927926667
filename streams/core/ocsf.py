"""Alerts as OCSF Detection Findings (class 2004): `to_ocsf(alert)`, pure and deterministic.

The record targets OCSF `OCSF_VERSION` and uses only attributes that every published schema defining
the class (1.1.0 onwards) has, so a consumer pinned to an older schema reads it too. The mapping:

- `activity_id`: 1 Create (`type_uid` 200401) for a window's first record, 2 Update (200402) for its
  revisions. Decided from the alert alone: Create when `Phase` is `early` or absent (`replay`, which
  writes one record per window), Update for `final` and `late`. Where the stream emits no `early` alert
  (`--emit final`, or a window first seen already closed) the first record of a window is an Update;
  consumers upsert by `finding_info.uid` anyway (an Update of an unknown finding creates it).
- `finding_info`: `uid` = AlertId (the same for every revision of a window), `title` = the rule's
  name, `analytic` = the Sentinel rule (uid, name, version, type Rule), `first_seen_time` /
  `last_seen_time` = FirstSeen / LastSeen, `attacks` = MITRE ATT&CK from the alert's Tactics and
  Techniques (TA0001 Initial Access, T1190 Exploit Public-Facing Application), `types` and
  `data_sources`.
- Times are epoch ms. `time` = LastSeen: the event time of the newest request the finding covers, the
  earliest moment this content could exist. Never the wall clock, so `replay` and the stream agree, and
  it never decreases over a window's revisions. `start_time` / `end_time` = FirstSeen / LastSeen (the
  least and most recent events of the aggregate, as OCSF defines them), `count` = ConnectionsCount (the
  requests of the group in that period), `duration` = their distance.
- `severity_id` 3 Medium (the rule's severity), `status_id` 1 New (the detector never triages).
  No `confidence`: the rule states none.
- `metadata`: `version` = OCSF_VERSION, `product` = iis-portscan and its version, `correlation_uid` =
  AlertId, `sequence` = the alert's Revision and `uid` = "AlertId:Revision" (one per content: a
  record published again after a crash carries the same uid), `tenant_uid` = TenantId (--tenant-field).
  A `replay` alert has no Revision: it is the window closed, so it gets the revision the stream's final
  (or last late) alert for the same events carries, 2 x ConnectionsCount + 1.
- `evidences`: one artifact, `src_endpoint` the client (cIP) and `dst_endpoint` the server (sIP,
  Computer). An address becomes `ip` only when it is one (the client controls cIP; OCSF's ip_t allows
  at most 40 characters), else the endpoint's `name`; Computer becomes `hostname` when it is a DNS
  name, else `name`. `observables` point at the mapped `ip` (type 2) and `hostname` (type 1) values.
- `unmapped`: the alert record itself, unchanged (the rule's 16 columns in order, then AlertId, ...,
  DistinctPortCount, Parameters, TruncatedSets, TrimmedSets, and a stream alert's Revision and Phase):
  `record["unmapped"]` is the Sentinel-format alert.

`to_ocsf(alert, max_bytes)` also bounds the serialized record: when it would exceed `max_bytes - 256`,
sets lose their largest members exactly as `core.alerts.fit_alert` trims an alert (deterministic,
counts never touched, TrimmedSets updated). The decision depends only on what `replay` and the stream
share (not on Revision or Phase), so both trim alike; the 256 bytes are room for the stream-only parts.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final

from streams import __version__
from streams.core.alerts import SET_COLUMNS, fit_alert
from streams.core.escape import dumps
from streams.core.timefmt import parse_iso_ms

OCSF_VERSION: Final = "1.8.0"
PRODUCT_NAME: Final = "iis-portscan"
VENDOR_NAME: Final = "iis-portscan"

CLASS_UID: Final = 2004
CATEGORY_UID: Final = 2
ACTIVITY_CREATE: Final = 1
ACTIVITY_UPDATE: Final = 2
_ACTIVITY_NAMES: Final = {ACTIVITY_CREATE: "Create", ACTIVITY_UPDATE: "Update"}
# Sentinel severities to OCSF severity_id (the rule's is Medium).
_SEVERITIES: Final = {"Informational": 1, "Low": 2, "Medium": 3, "High": 4}
_SEVERITY_NAMES: Final = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High"}
STATUS_NEW: Final = 1
ANALYTIC_RULE: Final = 1
OBSERVABLE_HOSTNAME: Final = 1
OBSERVABLE_IP: Final = 2

# MITRE ATT&CK names of the tactics (Sentinel's spelling) and techniques the alert may carry.
_TACTICS: Final = {"InitialAccess": ("TA0001", "Initial Access")}
_TECHNIQUES: Final = {"T1190": "Exploit Public-Facing Application"}

FINDING_TYPES: Final = ("Port Scan",)
DATA_SOURCES: Final = ("W3CIISLog",)
STREAM_FIELDS: Final = ("Revision", "Phase")  # what a stream alert has and a replay alert has not
_STREAM_ROOM: Final = 256  # bytes kept free for the stream-only parts when bounding the size
_INT32_MAX: Final = 2**31 - 1  # OCSF integer_t is 32-bit signed
_MAX_IP_CHARS: Final = 40  # OCSF ip_t max_len
_HOSTNAME: Final = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)


def is_ip(value: str) -> bool:
    """An IPv4 or IPv6 address in a form OCSF's ip_t accepts (at most 40 characters)."""
    if not value or len(value) > _MAX_IP_CHARS or not value.isascii():
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_hostname(value: str) -> bool:
    """A DNS host name: dot-separated labels of letters, digits and inner hyphens, at most 253 chars."""
    return 0 < len(value) <= 253 and value.isascii() and _HOSTNAME.fullmatch(value) is not None


def _ms(alert: dict[str, Any], name: str) -> int:
    ms = parse_iso_ms(alert[name])
    if ms is None:
        raise ValueError(f"alert {name} is not a timestamp: {alert[name]!r}")
    return ms


def revision_of(alert: dict[str, Any]) -> int:
    """The alert's Revision; for a `replay` alert (none), the closed window's: 2 x ConnectionsCount + 1."""
    rev = alert.get("Revision")
    return int(rev) if rev is not None else 2 * int(alert["ConnectionsCount"]) + 1


def activity_of(alert: dict[str, Any]) -> int:
    """Create for a window's first record (Phase early, or none: `replay`), Update for final and late."""
    return ACTIVITY_CREATE if alert.get("Phase") in (None, "early") else ACTIVITY_UPDATE


def _endpoint(address: str, hostname: str | None = None) -> dict[str, Any]:
    endpoint: dict[str, Any] = {}
    if is_ip(address):
        endpoint["ip"] = address
    elif address:
        endpoint["name"] = address
    if hostname:
        if is_hostname(hostname):
            endpoint["hostname"] = hostname
        elif "name" not in endpoint:
            endpoint["name"] = hostname
    return endpoint


def _attacks(tactics: list[str], techniques: list[str]) -> list[dict[str, Any]]:
    tactic_objs = [{"uid": _TACTICS[t][0], "name": _TACTICS[t][1]} for t in tactics if t in _TACTICS]
    technique_objs = [{"uid": t, "name": _TECHNIQUES[t]} for t in techniques if t in _TECHNIQUES]
    if len(tactic_objs) == 1:  # the rule's case: each technique under its one tactic
        if not technique_objs:
            return [{"tactic": tactic_objs[0]}]
        return [{"tactic": tactic_objs[0], "technique": t} for t in technique_objs]
    return [{"tactic": t} for t in tactic_objs] + [{"technique": t} for t in technique_objs]


def _finding(alert: dict[str, Any]) -> dict[str, Any]:
    activity = activity_of(alert)
    revision = revision_of(alert)
    severity = _SEVERITIES.get(alert["Severity"], 0)
    first, last = _ms(alert, "FirstSeen"), _ms(alert, "LastSeen")
    count = alert["ConnectionsCount"]
    cip, computer, sip = alert["cIP"], alert["Computer"], alert["sIP"]
    src = _endpoint(cip)
    dst = _endpoint(sip, computer)
    evidence: dict[str, Any] = {}
    if src:
        evidence["src_endpoint"] = src
    if dst:
        evidence["dst_endpoint"] = dst
    observables = []
    if "ip" in src:
        observables.append(
            {
                "name": "evidences.src_endpoint.ip",
                "type_id": OBSERVABLE_IP,
                "type": "IP Address",
                "value": cip,
            }
        )
    if "ip" in dst:
        observables.append(
            {
                "name": "evidences.dst_endpoint.ip",
                "type_id": OBSERVABLE_IP,
                "type": "IP Address",
                "value": sip,
            }
        )
    if "hostname" in dst:
        observables.append(
            {
                "name": "evidences.dst_endpoint.hostname",
                "type_id": OBSERVABLE_HOSTNAME,
                "type": "Hostname",
                "value": computer,
            }
        )
    bin_minutes = alert["Parameters"]["TimeBinMs"] / 60_000
    message = (
        f"{cip} connected to {alert['DistinctPortCount']} distinct ports of {sip} ({computer}) "
        f"in {count} requests within the {bin_minutes:g}-minute bin from {alert['WindowStart']}"
    )
    metadata: dict[str, Any] = {
        "version": OCSF_VERSION,
        "product": {"name": PRODUCT_NAME, "vendor_name": VENDOR_NAME, "version": __version__},
        "uid": f"{alert['AlertId']}:{revision}",
        "correlation_uid": alert["AlertId"],
    }
    if revision <= _INT32_MAX:
        metadata["sequence"] = revision
    if "TenantId" in alert:
        metadata["tenant_uid"] = alert["TenantId"]  # --tenant-field (core.tenant)
    record: dict[str, Any] = {
        "activity_id": activity,
        "activity_name": _ACTIVITY_NAMES[activity],
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "type_uid": CLASS_UID * 100 + activity,
        "type_name": f"Detection Finding: {_ACTIVITY_NAMES[activity]}",
        "severity_id": severity,
        "severity": _SEVERITY_NAMES[severity],
        "status_id": STATUS_NEW,
        "status": "New",
        "time": last,
        "start_time": first,
        "end_time": last,
        "duration": last - first,
    }
    if 0 < count <= _INT32_MAX:  # OCSF integer_t is 32-bit: an absurd count stays in `unmapped` only
        record["count"] = count
    record["message"] = message
    record["finding_info"] = {
        "uid": alert["AlertId"],
        "title": alert["RuleName"],
        "types": list(FINDING_TYPES),
        "analytic": {
            "uid": alert["RuleId"],
            "name": alert["RuleName"],
            "type_id": ANALYTIC_RULE,
            "type": "Rule",
            "version": alert["RuleVersion"],
        },
        "attacks": _attacks(alert["Tactics"], alert["Techniques"]),
        "data_sources": list(DATA_SOURCES),
        "first_seen_time": first,
        "last_seen_time": last,
    }
    record["metadata"] = metadata
    if evidence:
        record["evidences"] = [evidence]
    if observables:
        record["observables"] = observables
    record["unmapped"] = dict(alert)
    return record


def _fit(alert: dict[str, Any], budget: int) -> dict[str, Any]:
    """The alert, its sets trimmed (`fit_alert`) so that its finding stays within `budget` bytes once
    the stream-only fields are set aside: the decision is the same for `replay` and the stream."""
    core = {k: v for k, v in alert.items() if k not in STREAM_FIELDS}
    core_size = len(dumps(core))
    overhead = len(dumps(_finding(core))) - core_size  # the finding around `unmapped`
    if core_size + overhead <= budget:
        return alert
    for name in SET_COLUMNS:
        core[name] = list(core[name])  # fit_alert pops members: never touch the caller's lists
    trimmed_before = core["TrimmedSets"]
    fitted = fit_alert(core, budget - overhead)
    fitted["TrimmedSets"] = sorted(set(trimmed_before) | set(fitted["TrimmedSets"]))
    return {**alert, **{name: fitted[name] for name in (*SET_COLUMNS, "TrimmedSets")}}


def to_ocsf(alert: dict[str, Any], max_bytes: int | None = None) -> dict[str, Any]:
    """The alert (a `build_alert` record, with or without the stream's Revision and Phase) as an OCSF
    Detection Finding; see the module docstring for the mapping. With `max_bytes`, the serialized
    record is at most that long (sets trimmed like `fit_alert`, counts exact). The alert is not changed."""
    if max_bytes is not None:
        alert = _fit(alert, max_bytes - _STREAM_ROOM)
    return _finding(alert)

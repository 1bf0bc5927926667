"""Entities, custom details and a title, as SIEMs take them (`--alert-entities`), after the rule's columns.

Sentinel's scheduled rules map result columns to entities and surface columns as custom details; the
fields added here are what such a rule definition would produce for this alert, so a SOAR playbook or
a SIEM connector reads them without a mapping of its own:

- `EntityMappings` (the rule definition's form): IP <- `cIP` (Address), Host <- `Computer`
  (HostName), IP <- `sIP` (Address); `AlertEntities` the same with this alert's values
  (Sentinel's `Entities` JSON shape: `Type` ip/host and the identifier);
- `CustomDetails`: `portCount`, `DistinctPortCount`, `ConnectionsCount`, `FirstPorts` (the first 10
  ports), `FirstSeen`, `LastSeen` (and `TenantId` for a tenant's alert, core.tenant) - 6 or 7 of
  Sentinel's 20 allowed, each a list of strings as Sentinel shows them, and within its 64 KB (bounded
  below);
- `AlertDisplayName`: "Port scan from {{cIP}} against {{Computer}}" rendered (Sentinel's
  alertDisplayNameFormat, at most 256 characters).

The existing `Entities` column (the client IP) is unchanged. Pure.
"""

from __future__ import annotations

from typing import Any

import orjson

TITLE_FORMAT = "Port scan from {{cIP}} against {{Computer}}"
MAX_TITLE = 256  # Sentinel: alertDisplayNameFormat renders to at most 256 characters
MAX_DETAILS = 20  # Sentinel: custom details per alert
MAX_DETAILS_BYTES = 65_536  # Sentinel: custom details and entities together
FIRST_PORTS = 10
MAX_VALUE = 1024  # one detail value's characters (a Computer name is bounded by parsing already)
ENTITY_MAPPINGS = (
    {"entityType": "IP", "fieldMappings": [{"identifier": "Address", "columnName": "cIP"}]},
    {"entityType": "Host", "fieldMappings": [{"identifier": "HostName", "columnName": "Computer"}]},
    {"entityType": "IP", "fieldMappings": [{"identifier": "Address", "columnName": "sIP"}]},
)
ADDED = ("EntityMappings", "AlertEntities", "CustomDetails", "AlertDisplayName")


def render_title(alert: dict[str, Any], fmt: str = TITLE_FORMAT) -> str:
    """`{{column}}` replaced by the alert's value of that column, cut to Sentinel's 256 characters."""
    out = fmt
    for name in ("cIP", "Computer", "sIP", "portCount"):
        out = out.replace("{{" + name + "}}", str(alert[name]))
    return out if len(out) <= MAX_TITLE else out[: MAX_TITLE - 1] + "…"


def details(alert: dict[str, Any]) -> dict[str, list[str]]:
    """The custom details: name -> values as strings (how Sentinel shows them)."""
    out = {
        "portCount": [str(alert["portCount"])],
        "DistinctPortCount": [str(alert["DistinctPortCount"])],
        "ConnectionsCount": [str(alert["ConnectionsCount"])],
        "FirstPorts": [str(p) for p in alert["set_sPort"][:FIRST_PORTS]],
        "FirstSeen": [alert["FirstSeen"]],
        "LastSeen": [alert["LastSeen"]],
    }
    if "TenantId" in alert:
        out["TenantId"] = [alert["TenantId"]]
    return out


def add_entities(alert: dict[str, Any], max_record_bytes: int | None = None) -> dict[str, Any]:
    """The alert with the fields above appended. With `max_record_bytes`, and the alert already near
    it (core.alerts.fit_alert keeps a slack), the details are left out rather than exceed it; the
    entities (three short values) always fit in that slack."""
    entities = [
        {"Type": "ip", "Address": alert["cIP"]},
        {"Type": "host", "HostName": alert["Computer"]},
        {"Type": "ip", "Address": alert["sIP"]},
    ]
    custom = details(alert)
    assert len(custom) <= MAX_DETAILS
    added: dict[str, Any] = {
        "EntityMappings": [dict(m) for m in ENTITY_MAPPINGS],
        "AlertEntities": entities,
        "CustomDetails": custom,
        "AlertDisplayName": render_title(alert),
    }
    if len(orjson.dumps({"e": entities, "d": custom})) > MAX_DETAILS_BYTES:
        added["CustomDetails"] = {}  # cannot happen with parsed input (values are bounded); stay valid
    out = {**alert, **added}
    if max_record_bytes is not None and len(orjson.dumps(out)) > max_record_bytes:
        out["CustomDetails"] = {}
    return out


RESOURCE_ROOM = 1024  # bytes kept free for `resources` (two strings of at most 256 characters, escaped)


def ocsf_finding(alert: dict[str, Any], max_bytes: int | None) -> dict[str, Any]:
    """The alert's OCSF Detection Finding (core.ocsf.to_ocsf), with `resources` when the alert carries
    entities; within `max_bytes` either way. What the worker publishes and `replay` writes."""
    from streams.core.ocsf import to_ocsf

    if "AlertEntities" not in alert:
        return to_ocsf(alert, max_bytes)
    room = None if max_bytes is None else max_bytes - RESOURCE_ROOM
    return with_ocsf_resources(to_ocsf(alert, room), alert)


def with_ocsf_resources(finding: dict[str, Any], alert: dict[str, Any]) -> dict[str, Any]:
    """A Detection Finding with `resources`: the Host entity (the attacked server: `Computer`, and `sIP`
    when it is an address). The IP entities are the finding's observables and evidences already."""
    from streams.core.ocsf import is_hostname, is_ip

    resource: dict[str, Any] = {"type": "Host", "name": alert["Computer"], "uid": alert["Computer"]}
    if is_hostname(alert["Computer"]):
        resource["hostname"] = alert["Computer"]
    if is_ip(alert["sIP"]):
        resource["ip"] = alert["sIP"]
    return {**finding, "resources": [resource]}

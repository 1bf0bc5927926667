"""Typed records that flow through the core: parsed IIS requests and parse errors."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(slots=True)
class IISEvent:
    """One IIS request, with the W3CIISLog columns the rule reads.

    Attribute names are the W3CIISLog column names so that the rule's KQL reads one-to-one.
    String columns are never None (a Kusto string column holds "" where a value is missing, and
    `makeset` keeps ""); only `sPort`, an int column, can be None, and `makeset` skips it then.
    `time_ms` is TimeGenerated as integer epoch milliseconds, UTC (floored, never rounded, so a
    sub-millisecond timestamp stays in its 10-minute bin).
    """

    time_ms: int
    cIP: str
    Computer: str
    sIP: str
    sPort: int | None
    csMethod: str = ""
    csUriQuery: str = ""
    csUserName: str = ""
    sSiteName: str = ""
    csUserAgent: str = ""
    scStatus: str = ""
    scSubStatus: str = ""
    scWin32Status: str = ""
    tenant: str = ""  # "" without --tenant-field (core.tenant); never a W3CIISLog column


class Reason(StrEnum):
    """Why an input was rejected; the value is the dead-letter record's `reason`."""

    UNDECODABLE = "undecodable"  # bytes that are not UTF-8
    INVALID_JSON = "invalid-json"
    NOT_AN_OBJECT = "not-an-object"  # JSON, but not an object (nor an envelope of objects)
    MISSING_FIELD = "missing-field"
    INVALID_FIELD = "invalid-field"  # present but of the wrong type or out of range
    INVALID_TIME = "invalid-time"  # TimeGenerated unparseable or out of range
    FIELD_COUNT = "field-count"  # W3C line whose field count differs from its #Fields directive
    NO_FIELDS_DIRECTIVE = "no-fields-directive"  # W3C data line before any #Fields directive
    FUTURE_TIME = "future-time"  # stream only: too far ahead of the wall clock
    TOO_LATE = "too-late"  # stream only: older than the retention
    UNPUBLISHABLE = "unpublishable"  # stream only: a record we made that the broker refused (too large)
    TOO_LARGE = "too-large"  # files only (replay, produce): a line or document over the input bounds
    TENANT_MISSING = "tenant-missing"  # --tenant-field set, the event has none, no --tenant-default


@dataclass(frozen=True, slots=True)
class ParseError:
    """Bad input as a value: parsers return it instead of raising."""

    reason: Reason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"

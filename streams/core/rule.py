"""The Sentinel rule's identity and its parameters (bin size, threshold, set cap, url_decode '+')."""

from __future__ import annotations

from dataclasses import dataclass

RULE_ID = "44a555d8-ecee-4a25-95ce-055879b4b14b"
RULE_NAME = "High count of connections by client IP on many ports"
RULE_VERSION = "1.0.3"
SEVERITY = "Medium"
TACTICS = ("InitialAccess",)
TECHNIQUES = ("T1190",)

DEFAULT_BIN_MS = 600_000  # timeBin = 10m
DEFAULT_THRESHOLD = 30  # portThreshold = 30
DEFAULT_MAX_SET_SIZE = 128  # legacy makeset's default cap
DEFAULT_MAX_VALUE_BYTES = 1024  # a longer string is cut (marked) before it enters a set
DEFAULT_MAX_RECORD_BYTES = 900_000  # state records and dead letters stay under the broker's 1 MB
MIN_MAX_RECORD_BYTES = 65_536  # room for an alert's fixed columns and 128 ports, whatever the sets hold
# Alerts are read by SIEMs that truncate or refuse far smaller events (Sentinel's custom details: 64 KB;
# many HTTP collectors: 256 KB-1 MB), so an alert has a budget of its own, well below the record bound.
DEFAULT_MAX_ALERT_BYTES = 32_768
MIN_MAX_ALERT_BYTES = 32_768  # room for the fixed columns with 256-character keys of 6-byte escapes
DEFAULT_MAX_SET_BYTES = 4_096  # one set column's serialized array
MIN_MAX_SET_BYTES = 256


class RuleConfigError(ValueError):
    """Rule parameters that cannot work together."""


@dataclass(frozen=True, slots=True)
class RuleParams:
    """Parameters of the rule; defaults are the published rule's.

    `max_set_size` caps every collected set like the legacy `makeset` (0 = unlimited), so
    `portCount` never exceeds it. `plus_as_space` chooses how url_decode reads '+' (.NET's
    HttpUtility.UrlDecode turns it into a space; RFC 3986 readers keep it).

    The client being detected controls most strings we keep, so two bounds hold whatever it sends:
    `max_value_bytes` cuts every string before it enters a set (UTF-8 bytes, marker included, see
    core.enrich.truncate); `max_set_bytes` bounds each set column and `max_alert_bytes` the whole alert,
    serialized, by dropping the largest members of the sets (never a count, see core.alerts.fit_alert);
    `max_record_bytes` bounds every other record we write (state, dead letters). `nul_as_text` writes
    NULs in alerts as the text `\\u0000` (see core.alerts.nul_as_text). All are part of the rule's
    output, applied alike by `replay` and the stream.
    """

    bin_ms: int = DEFAULT_BIN_MS
    threshold: int = DEFAULT_THRESHOLD
    max_set_size: int = DEFAULT_MAX_SET_SIZE
    plus_as_space: bool = True
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    max_alert_bytes: int = DEFAULT_MAX_ALERT_BYTES
    max_set_bytes: int = DEFAULT_MAX_SET_BYTES
    nul_as_text: bool = True

    def __post_init__(self) -> None:
        if self.bin_ms <= 0:
            raise RuleConfigError(f"bin must be positive, got {self.bin_ms} ms")
        if self.threshold < 1:
            raise RuleConfigError(f"threshold must be at least 1, got {self.threshold}")
        if self.max_set_size < 0:
            raise RuleConfigError(f"max set size must be >= 0 (0 = unlimited), got {self.max_set_size}")
        if self.max_value_bytes < 64:
            raise RuleConfigError(f"max value bytes must be at least 64, got {self.max_value_bytes}")
        if self.max_record_bytes < MIN_MAX_RECORD_BYTES:
            raise RuleConfigError(
                f"max record bytes must be at least {MIN_MAX_RECORD_BYTES}, got {self.max_record_bytes}"
            )
        if not MIN_MAX_ALERT_BYTES <= self.max_alert_bytes <= self.max_record_bytes:
            raise RuleConfigError(
                f"max alert bytes must be between {MIN_MAX_ALERT_BYTES} and max record bytes "
                f"({self.max_record_bytes}), got {self.max_alert_bytes}"
            )
        if not MIN_MAX_SET_BYTES <= self.max_set_bytes <= self.max_alert_bytes:
            raise RuleConfigError(
                f"max set bytes must be between {MIN_MAX_SET_BYTES} and max alert bytes "
                f"({self.max_alert_bytes}), got {self.max_set_bytes}"
            )
        if self.max_set_size and self.threshold > self.max_set_size:
            raise RuleConfigError(
                f"threshold {self.threshold} can never be reached: portCount is capped at "
                f"max set size {self.max_set_size} (raise --max-set-size or set it to 0)"
            )

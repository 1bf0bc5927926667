"""All configuration in one typed place: defaults, CLI flags and PORTSCAN_* environment variables.

Precedence: a CLI flag, else the environment variable `PORTSCAN_<NAME>`, else the default (the
published rule's parameters). This is the only module that reads PORTSCAN_* variables (a Kafka
property's `${env:NAME}` reference is resolved by streams.kafka.client_config).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from streams.core.engine import StreamParams
from streams.core.native import ENGINES
from streams.core.notify import NotifyParams
from streams.core.rule import (
    DEFAULT_BIN_MS,
    DEFAULT_MAX_ALERT_BYTES,
    DEFAULT_MAX_RECORD_BYTES,
    DEFAULT_MAX_SET_BYTES,
    DEFAULT_MAX_SET_SIZE,
    DEFAULT_MAX_VALUE_BYTES,
    DEFAULT_THRESHOLD,
    RuleConfigError,
    RuleParams,
)
from streams.core.shippers import FORMATS, w3c_fields_problem
from streams.core.tenant import TenantError, TenantSpec
from streams.errors import JobError
from streams.state.base import StoreKind

ENV_PREFIX = "PORTSCAN_"
REDACTED = "<redacted>"  # what logs, errors and repr show in place of a secret
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
INPUT_FORMATS = ("auto", *FORMATS)
# The --help sections, in order: every setting names one (`_opt(section=...)`); a command takes whole
# sections or single settings (streams.cli COMMANDS).
SECTIONS = {
    "rule": "rule parameters (defaults: the published rule)",
    "output": "alert records",
    "input": "reading input (the worker's messages; replay's and produce's files)",
    "files": "files (replay, produce): input bounds",
    "kafka": "Kafka clients",
    "topics": "the job's topics and consumer group",
    "state": "window state",
    "time": "event time",
    "worker": "throughput and operations",
    "soc": "SOC tuning: allowlists, notifications with suppression, entities",
    "tenants": "tenants: several workspaces in one topic (streams.core.tenant)",
    "engine": "the per-event hot path (streams.core.native)",
    "logging": "logging",
}
# The app id names the consumer group, internal topics and Redis keys (a SCAN pattern prefix): no glob
# characters, separators or spaces.
_APP_ID = re.compile(r"[A-Za-z0-9._-]{1,200}")


class ConfigError(JobError, ValueError):
    """A setting that cannot be used; the message names the flag and the variable."""


def parse_duration_ms(text: str) -> int:
    """'10m', '120s', '24h', '1d', '500ms' or a bare number of seconds, to milliseconds."""
    m = _DURATION.fullmatch(text)
    if m is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 600s, 10m, 24h)")
    value, unit = m.groups()
    return round(float(value) * _UNITS_MS[unit or "s"])


def format_duration_ms(ms: int) -> str:
    """The largest whole unit: 600000 -> '10m'."""
    for unit in ("d", "h", "m", "s"):
        if ms and ms % _UNITS_MS[unit] == 0:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    return f"{ms}ms"


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _opt(
    help_: str,
    parse: Callable[[str], Any] = str,
    metavar: str | None = None,
    secret: bool = False,
    repeat: bool = False,
    *,
    section: str = "",
    choices: tuple[str, ...] = (),
    bare: bool = False,
) -> dict[str, Any]:
    """A setting's declaration: its help, how its text is parsed, its --help section (SECTIONS), the
    values it allows (checked for the flag and the variable alike; the metavar lists them), `bare`: a
    boolean flag that takes no value (the variable takes true/false)."""
    if choices and metavar is None:
        metavar = "|".join(choices)
    return {
        "help": help_,
        "parse": parse,
        "metavar": metavar,
        "secret": secret,
        "repeat": repeat,
        "section": section,
        "choices": choices,
        "bare": bare,
    }


def pair_problem(text: str) -> str | None:
    """Why `text` is not `KEY=VALUE` (None: it is), without quoting it: it may hold a secret."""
    key, sep, _ = text.partition("=")
    if not sep or not key.strip() or any(c.isspace() for c in key.strip()):
        return "expected KEY=VALUE (the text is not shown)"
    return None


def parse_lines(text: str | Sequence[str]) -> tuple[str, ...]:
    """A repeatable setting: the flag's values, or the variable's lines (values may hold ';' or ',')."""
    items = text.splitlines() if isinstance(text, str) else list(text)
    return tuple(item.strip() for item in items if item.strip())


def parse_pairs(text: str | Sequence[str]) -> tuple[str, ...]:
    """KEY=VALUE lines (or flag values), each checked here so that an error names its line (or the
    flag's occurrence) and never its text, which may hold a secret (`sasl.password: Hunter2`)."""
    items = text.splitlines() if isinstance(text, str) else list(text)
    what = "line" if isinstance(text, str) else "value"
    for number, item in enumerate(items, 1):
        problem = pair_problem(item) if item.strip() else None
        if problem is not None:
            raise ValueError(f"{what} {number}: {problem}")
    return parse_lines(text)


def redact_url(url: str) -> str:
    """A URL with the password of its user info (`redis://user:password@host`) redacted."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:{REDACTED}@{host}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of every command; each is flag `--name-with-dashes` and env `PORTSCAN_NAME`."""

    threshold: int = field(
        default=DEFAULT_THRESHOLD,
        metadata=_opt("alert when a window uses at least this many ports", int, "N", section="rule"),
    )
    bin: int = field(
        default=DEFAULT_BIN_MS,
        metadata=_opt("window (bin) size, e.g. 10m", parse_duration_ms, "DURATION", section="rule"),
    )
    max_set_size: int = field(
        default=DEFAULT_MAX_SET_SIZE,
        metadata=_opt(
            "cap of every collected set, like the legacy makeset (0 = unlimited)", int, "N", section="rule"
        ),
    )
    max_value_bytes: int = field(
        default=DEFAULT_MAX_VALUE_BYTES,
        metadata=_opt(
            "longest string kept in a set, in UTF-8 bytes: a longer one (the client controls most of them) "
            "is cut and ends with '…[truncated]'; the alert names such sets in TruncatedSets",
            int,
            "BYTES",
            section="rule",
        ),
    )
    max_record_bytes: int = field(
        default=DEFAULT_MAX_RECORD_BYTES,
        metadata=_opt(
            "largest state or dead-letter record we write, and the ceiling of --max-alert-bytes (keep it "
            "below the broker's and topics' max.message.bytes, 1 MB by default)",
            int,
            "BYTES",
            section="rule",
        ),
    )
    max_alert_bytes: int = field(
        default=DEFAULT_MAX_ALERT_BYTES,
        metadata=_opt(
            "largest alert (and OCSF finding), serialized: SIEMs truncate or refuse large events, so the "
            "sets lose their largest members first, the identifying fields and counts stay; raise it for "
            "fuller alerts (at most --max-record-bytes)",
            int,
            "BYTES",
            section="rule",
        ),
    )
    max_set_bytes: int = field(
        default=DEFAULT_MAX_SET_BYTES,
        metadata=_opt(
            "largest set column of an alert, serialized (its largest members dropped past it; listed in "
            "TrimmedSets)",
            int,
            "BYTES",
            section="rule",
        ),
    )
    alert_nul: str = field(
        default="text",
        metadata=_opt(
            "a NUL in an alert's strings (a query's %00): text writes the six characters \\u0000 "
            "(PostgreSQL jsonb and others refuse JSON's \\u0000 escape); keep publishes the exact value",
            str,
            section="output",
            choices=("text", "keep"),
        ),
    )
    url_plus: str = field(
        default="space",
        metadata=_opt(
            "url_decode reads '+' as a space (.NET, the default) or keeps it literal",
            str,
            section="rule",
            choices=("space", "literal"),
        ),
    )
    input_format: str = field(
        default="auto",
        metadata=_opt(
            "how to read input messages: auto (recognise each message by its content), w3ciislog, "
            "raw (a W3C line, bare or in a shipper's envelope), ecs, nxlog",
            str,
            section="input",
            choices=INPUT_FORMATS,
        ),
    )
    w3c_fields: str = field(
        default="",
        metadata=_opt(
            "field list of W3C lines that arrive without their #Fields header (space-separated ids; "
            "default: IIS's default W3C fields)",
            str,
            "IDS",
            section="input",
        ),
    )
    computer: str = field(
        default="",
        metadata=_opt(
            "Computer of W3C lines that name no host (no s-computername, no host in their envelope), and "
            "of every line of a W3C .log file read by replay or produce; unset: the worker dead-letters "
            "such lines, replay and produce use this host's name",
            str,
            "NAME",
            section="input",
        ),
    )
    w3c_dash_as_empty: bool = field(
        default=False,
        metadata=_opt(
            "read a W3C '-' (and NXLog's null, a field an ECS document lacks) as an empty value; default: "
            "keep the literal '-', as Azure Monitor ingests it",
            parse_bool,
            section="input",
            bare=True,
        ),
    )
    alert_format: str = field(
        default="sentinel",
        metadata=_opt(
            "alert records: sentinel (the rule's columns and our metadata) or ocsf (OCSF Detection Finding)",
            str,
            section="output",
            choices=("sentinel", "ocsf"),
        ),
    )
    max_line_bytes: int = field(
        default=1024 * 1024,
        metadata=_opt(
            "files (replay, produce): a longer line is skipped and reported (too-large), reading goes on",
            int,
            "BYTES",
            section="files",
        ),
    )
    max_document_bytes: int = field(
        default=64 * 1024 * 1024,
        metadata=_opt(
            "files (replay, produce): a file read as one JSON document (it starts with '[' or a '{' not "
            "closed on its line) stops being read past this size, reported (too-large)",
            int,
            "BYTES",
            section="files",
        ),
    )
    brokers: str = field(
        default="127.0.0.1:9092",
        metadata=_opt("Kafka bootstrap servers", str, "HOST:PORT,...", section="kafka"),
    )
    kafka_config_file: str = field(
        default="",
        metadata=_opt(
            "Kafka client properties in librdkafka names (security.protocol, sasl.*, ssl.*), for every "
            "Kafka client of the job; values may be ${env:NAME} or ${file:/path}",
            str,
            "PATH",
            section="kafka",
        ),
    )
    kafka_config: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "one Kafka client property, over the file's (repeatable; the variable takes one per line)",
            parse_pairs,
            "KEY=VALUE",
            repeat=True,
            section="kafka",
        ),
    )
    app_id: str = field(
        default="iis-portscan",
        metadata=_opt("consumer group and prefix of internal topics", str, "ID", section="topics"),
    )
    input_topic: str = field(
        default="w3ciislog", metadata=_opt("topic of W3CIISLog JSON events", str, "TOPIC", section="topics")
    )
    alert_topic: str = field(
        default="iis-portscan-alerts",
        metadata=_opt("topic the alerts are published to", str, "TOPIC", section="topics"),
    )
    dlq_topic: str = field(
        default="w3ciislog-dlq",
        metadata=_opt("dead-letter topic for bad input", str, "TOPIC", section="topics"),
    )
    input_keyed: bool = field(
        default=False,
        metadata=_opt(
            "the input topic is keyed so that one (cIP, Computer, sIP) always lands in one partition "
            "(e.g. key = cIP, or what `iis-portscan produce` sends): skip the repartition hop",
            parse_bool,
            "BOOL",
            section="topics",
        ),
    )
    create_topics: bool = field(
        default=True,
        metadata=_opt(
            "create missing topics at start; false on managed clusters: every topic must exist (the "
            "worker names what is missing or wrong)",
            parse_bool,
            "BOOL",
            section="topics",
        ),
    )
    partitions: int = field(
        default=4,
        metadata=_opt(
            "partitions of topics we create (repartition topic included)", int, "N", section="topics"
        ),
    )
    replication: int = field(
        default=1, metadata=_opt("replication factor of topics we create", int, "N", section="topics")
    )
    store: str = field(
        default="rocksdb://",
        metadata=_opt(
            "window state: rocksdb:// (under --data-dir), redis://[:password@]host:port/db (shared), "
            "memory:// (tests)",
            str,
            "URL",
            section="state",
        ),
    )
    redis_username: str = field(
        default="",
        metadata=_opt("Redis ACL user (else the URL's, else 'default')", str, "USER", section="state"),
    )
    redis_password: str = field(
        default="",
        metadata=_opt(
            "Redis password: prefer the variable or --redis-password-file to the URL (visible in ps)",
            str,
            "PASSWORD",
            secret=True,
            section="state",
        ),
    )
    redis_password_file: str = field(
        default="",
        metadata=_opt("file holding the Redis password (a mounted secret)", str, "PATH", section="state"),
    )
    redis_ca: str = field(
        default="", metadata=_opt("rediss://: CA certificate file (PEM)", str, "PATH", section="state")
    )
    redis_cert: str = field(
        default="",
        metadata=_opt(
            "rediss://: client certificate file (PEM), with --redis-key", str, "PATH", section="state"
        ),
    )
    redis_key: str = field(
        default="", metadata=_opt("rediss://: client key file (PEM)", str, "PATH", section="state")
    )
    data_dir: str = field(
        default="iis-portscan-data",
        metadata=_opt("local state folder (RocksDB files)", str, "PATH", section="state"),
    )
    standby_replicas: int = field(
        default=1,
        metadata=_opt("faust standby replicas of the window state (RocksDB)", int, "N", section="state"),
    )
    rocksdb_memory: int = field(
        default=64,
        metadata=_opt(
            "memory of each RocksDB partition database (active or standby) in MiB: half block cache, "
            "half two write buffers (faust's defaults allow 2.2 GiB per database)",
            int,
            "MIB",
            section="state",
        ),
    )
    changelog_restore: str = field(
        default="batched",
        metadata=_opt(
            "how recovery and standby replicas apply the RocksDB changelog: batched (a fetch at a time) "
            "or per-record (faust's own path; the baseline `make bench` measures beside ours)",
            str,
            section="state",
            choices=("batched", "per-record"),
        ),
    )
    engine: str = field(
        default="auto",
        metadata=_opt(
            "the per-event hot path: auto (native when the extension is built and passes its self-check, "
            "else python), native, or python (the pure-Python core); both give the same state and alerts",
            str,
            section="engine",
            choices=ENGINES,
        ),
    )
    max_open_windows: int = field(
        default=500_000,
        metadata=_opt(
            "open windows a worker holds in memory, over all its partitions (0 = unbounded): past it the "
            "least recently touched are spilled to the store and read back when their key returns, so "
            "the answer stays exact; ~400-600 bytes each at the default (README, Memory model)",
            int,
            "N",
            section="state",
        ),
    )
    grace: int = field(
        default=120_000,
        metadata=_opt(
            "event-time delay before a window closes (watermark = max time - grace)",
            parse_duration_ms,
            "DURATION",
            section="time",
        ),
    )
    idle_timeout: int = field(
        default=60_000,
        metadata=_opt(
            "after this long without input a partition's watermark follows the wall clock (0 = never)",
            parse_duration_ms,
            "DURATION",
            section="time",
        ),
    )
    retention: int = field(
        default=86_400_000,
        metadata=_opt(
            "closed windows are kept this long in event time for late events",
            parse_duration_ms,
            "DURATION",
            section="time",
        ),
    )
    max_skew: int = field(
        default=900_000,
        metadata=_opt(
            "events further than this ahead of the wall clock are dead-lettered",
            parse_duration_ms,
            "DURATION",
            section="time",
        ),
    )
    emit: str = field(
        default="early,final",
        metadata=_opt(
            "alert phases: early (threshold reached), final (window closed); late always",
            str,
            "early,final",
            section="time",
        ),
    )
    session_timeout: int = field(
        default=30_000,
        metadata=_opt(
            "consumer-group session timeout: how soon a dead worker's partitions move (6s..5m)",
            parse_duration_ms,
            "DURATION",
            section="worker",
        ),
    )
    batch_size: int = field(
        default=5000, metadata=_opt("max events per processing batch", int, "N", section="worker")
    )
    batch_wait: int = field(
        default=100,
        metadata=_opt(
            "max time a fetch waits on the broker for new input (bounds alert latency when input is slow)",
            parse_duration_ms,
            "DURATION",
            section="worker",
        ),
    )
    checkpoint_interval: int = field(
        default=1000,
        metadata=_opt(
            "write changed windows and commit input offsets this often: longer = fewer state writes, "
            "more input replayed after a crash (alerts are sent at once either way)",
            parse_duration_ms,
            "DURATION",
            section="worker",
        ),
    )
    connect_timeout: int = field(
        default=30_000,
        metadata=_opt(
            "at start, how long to wait for Kafka (and Redis) before giving up with an error",
            parse_duration_ms,
            "DURATION",
            section="kafka",
        ),
    )
    redis_ttl: int = field(
        default=0,
        metadata=_opt(
            "Redis store: expire a partition's keys this long (wall clock) after their last write; 0 = "
            "never (event-time retention deletes closed windows; a TTL shorter than an outage or a lag "
            "loses open windows)",
            parse_duration_ms,
            "DURATION",
            section="state",
        ),
    )
    web_port: int = field(
        default=0,
        metadata=_opt(
            "serve /healthz, /readyz and /metrics (Prometheus text) on this port; 0 = no web server",
            int,
            "PORT",
            section="worker",
        ),
    )
    web_host: str = field(
        default="0.0.0.0",
        metadata=_opt(
            "address the web server binds: all interfaces, as a container or a scraper on another host "
            "needs; 127.0.0.1 keeps it local",
            str,
            "ADDRESS",
            section="worker",
        ),
    )
    stall_timeout: int = field(
        default=120_000,
        metadata=_opt(
            "/healthz fails after this long without fetch progress while input is waiting",
            parse_duration_ms,
            "DURATION",
            section="worker",
        ),
    )
    drain_timeout: int = field(
        default=30_000,
        metadata=_opt(
            "on SIGTERM: stop fetching, finish the batch, checkpoint, commit, close; exit at the latest "
            "after this long (what is not checkpointed by then is read again by the next worker)",
            parse_duration_ms,
            "DURATION",
            section="worker",
        ),
    )
    group_instance_id: str = field(
        default="",
        metadata=_opt(
            "static group membership (e.g. the pod name): a restart within the session timeout moves no "
            "partition; unique per worker",
            str,
            "ID",
            section="worker",
        ),
    )
    allowlist: str = field(
        default="",
        metadata=_opt(
            "allowlist file (CSV with a header field,value,reason,owner,expires[,tenant], or JSON lines "
            "with those keys): windows whose cIP, Computer or sIP matches an entry (exact value or CIDR "
            "range; with a tenant, of that tenant's windows only) are not alerted; the worker reloads it "
            "when it changes",
            str,
            "PATH",
            section="soc",
        ),
    )
    allowlist_topic: str = field(
        default="",
        metadata=_opt(
            'compacted topic of allowlist entries (key field:value, or ["tenant","field","value"] '
            "for a tenant's; value a JSON entry; a tombstone removes it), followed by every worker beside "
            "--allowlist",
            str,
            "TOPIC",
            section="soc",
        ),
    )
    notify_topic: str = field(
        default="",
        metadata=_opt(
            "topic of notifications: one page per entity per suppression period, then its summary "
            "(same key) when the period closes; empty = none",
            str,
            "TOPIC",
            section="soc",
        ),
    )
    notify_by: str = field(
        default="cIP",
        metadata=_opt(
            "the entity a notification is about: group-key columns",
            str,
            "cIP[,Computer][,sIP]",
            section="soc",
        ),
    )
    suppress_for: int = field(
        default=3_600_000,
        metadata=_opt(
            "suppression period of notifications, in event time, epoch-aligned (a multiple of --bin)",
            parse_duration_ms,
            "DURATION",
            section="soc",
        ),
    )
    notify_cap: int = field(
        default=150,
        metadata=_opt(
            "most pages per suppression period (per detector partition); beyond it one summary record "
            "counts the entities not paged (0 = no cap)",
            int,
            "N",
            section="soc",
        ),
    )
    alert_entities: bool = field(
        default=False,
        metadata=_opt(
            "add Sentinel entity mappings, custom details and a title to every alert (after the rule's "
            "columns)",
            parse_bool,
            "BOOL",
            section="soc",
        ),
    )
    # Tenants (issue 24, item 5; streams.core.tenant).
    tenant_field: str = field(
        default="",
        metadata=_opt(
            "where each event's tenant is read: header:NAME (a Kafka header), field:PATH (a record or "
            "envelope field, e.g. field:TenantId, field:_ResourceId, field:fields.tenant) or fixed:VALUE; "
            "the tenant then comes first in every group key, the AlertId and the alert's TenantId; "
            "empty = no tenants",
            str,
            "SOURCE:NAME",
            section="tenants",
        ),
    )
    tenant_default: str = field(
        default="",
        metadata=_opt(
            "the tenant of an event whose tenant is missing or empty (empty = such events are "
            "dead-lettered, reason tenant-missing)",
            str,
            "TENANT",
            section="tenants",
        ),
    )
    tenant_thresholds: str = field(
        default="",
        metadata=_opt(
            "per-tenant thresholds: CSV with the header tenant,threshold (or JSON lines with those keys); "
            "a tenant not listed uses --threshold; the worker reloads it when it changes",
            str,
            "PATH",
            section="tenants",
        ),
    )
    log_level: str = field(default="info", metadata=_opt("log level", str, "LEVEL", section="logging"))
    log_format: str = field(
        default="text",
        metadata=_opt(
            "text, or json: one object per line for log shippers",
            str,
            section="logging",
            choices=("text", "json"),
        ),
    )

    def __post_init__(self) -> None:
        for f in fields(self):  # declared choices (`_opt(choices=...)`)
            allowed, value = f.metadata["choices"], getattr(self, f.name)
            if allowed and value not in allowed:
                listed = ", ".join(allowed[:-1]) + f" or {allowed[-1]}"
                raise ConfigError(
                    f"{self.flag(f.name)} / {self.env_name(f.name)} takes {listed}, got {value!r}"
                )
        if not set(self.emit_phases()) <= {"early", "final"}:
            raise ConfigError(f"--emit / PORTSCAN_EMIT takes early and/or final, got {self.emit!r}")
        try:
            kind = StoreKind.of(self.store)
        except ValueError as exc:
            raise ConfigError(f"--store / PORTSCAN_STORE {exc}") from None
        tls = [self.flag(n) for n in ("redis_ca", "redis_cert", "redis_key") if getattr(self, n)]
        if tls and kind is not StoreKind.REDIS_TLS:
            raise ConfigError(
                f"{', '.join(tls)} set but --store / PORTSCAN_STORE is not a rediss:// URL: the connection "
                "would be plaintext (password included); use rediss://host:port/db"
            )
        if bool(self.redis_cert) != bool(self.redis_key):
            raise ConfigError("--redis-cert and --redis-key go together")
        for name in ("partitions", "replication", "batch_size", "checkpoint_interval", "rocksdb_memory"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{self.flag(name)} / {self.env_name(name)} must be at least 1")
        if self.max_open_windows < 0:
            raise ConfigError(
                f"{self.flag('max_open_windows')} / {self.env_name('max_open_windows')} must be 0 "
                "(unbounded) or more"
            )
        if not _APP_ID.fullmatch(self.app_id):
            raise ConfigError(
                f"--app-id / PORTSCAN_APP_ID may hold only letters, digits, '.', '_' and '-' (1-200 of "
                f"them), got {self.app_id!r}"
            )
        problem = w3c_fields_problem(self.w3c_fields or None)
        if problem is not None:
            raise ConfigError(f"--w3c-fields / PORTSCAN_W3C_FIELDS: {problem}")
        try:
            self.rule_params()
        except RuleConfigError as exc:
            raise ConfigError(str(exc)) from exc
        self._check_soc()

    def _check_soc(self) -> None:
        """The issue-24 settings (allowlists, notifications)."""
        by = self.notify_fields()
        if not by or len(set(by)) != len(by) or not set(by) <= {"cIP", "Computer", "sIP"}:
            raise ConfigError(
                f"--notify-by / PORTSCAN_NOTIFY_BY takes distinct columns of cIP, Computer, sIP, got "
                f"{self.notify_by!r}"
            )
        if self.suppress_for < self.bin or self.suppress_for % self.bin:
            raise ConfigError(
                "--suppress-for / PORTSCAN_SUPPRESS_FOR must be a multiple of --bin (a window lies in one "
                f"period), got {format_duration_ms(self.suppress_for)} with bin "
                f"{format_duration_ms(self.bin)}"
            )
        if self.notify_cap < 0:
            raise ConfigError("--notify-cap / PORTSCAN_NOTIFY_CAP must be >= 0 (0 = no cap)")
        self.tenant_spec()
        if self.tenant_thresholds and not self.tenant_field:
            raise ConfigError("--tenant-thresholds / PORTSCAN_TENANT_THRESHOLDS needs --tenant-field")

    def tenant_spec(self) -> TenantSpec | None:
        """core.tenant.TenantSpec of --tenant-field and --tenant-default (None: no tenants)."""
        try:
            return TenantSpec.parse(self.tenant_field, self.tenant_default)
        except TenantError as exc:
            raise ConfigError(f"--tenant-field / PORTSCAN_TENANT_FIELD: {exc}") from None

    def notify_fields(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.notify_by.split(",") if p.strip())

    def notify_params(self) -> NotifyParams:
        """core.notify.NotifyParams from the --notify-* settings."""
        by = self.notify_fields()
        return NotifyParams(
            by=("TenantId", *by) if self.tenant_field else by,  # a tenant's pages never merge with another's
            period_ms=self.suppress_for,
            cap=self.notify_cap,
            retention_ms=self.retention,
            bin_ms=self.bin,
        )

    def __repr__(self) -> str:
        """Every setting, secrets redacted: the Redis password (and one in the --store URL), the values of
        the Kafka client properties (any may be a secret or a reference to one)."""
        shown: list[str] = []
        for f in fields(self):
            value: Any = getattr(self, f.name)
            if f.metadata["secret"] and value:
                value = REDACTED
            elif f.name == "kafka_config":
                value = tuple(f"{item.partition('=')[0].strip()}={REDACTED}" for item in value)
            elif f.name == "store":
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    def store_kind(self) -> StoreKind:
        """The backend --store names (validated at construction)."""
        return StoreKind.of(self.store)

    def rocksdb_options(self) -> dict[str, int]:
        """faust's RocksDB options for one partition database, from --rocksdb-memory."""
        mib = 1024 * 1024
        return {
            "block_cache_size": self.rocksdb_memory * mib // 2,
            "write_buffer_size": max(1, self.rocksdb_memory // 4) * mib,
            "max_write_buffer_number": 2,
        }

    def emit_phases(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.emit.split(",") if p.strip())

    def stream_params(self) -> StreamParams:
        phases = self.emit_phases()
        return StreamParams(
            rule=self.rule_params(),
            grace_ms=self.grace,
            idle_timeout_ms=self.idle_timeout,
            retention_ms=self.retention,
            max_skew_ms=self.max_skew,
            early="early" in phases,
            final="final" in phases,
        )

    def rule_params(self) -> RuleParams:
        return RuleParams(
            bin_ms=self.bin,
            threshold=self.threshold,
            max_set_size=self.max_set_size,
            plus_as_space=self.url_plus == "space",
            max_value_bytes=self.max_value_bytes,
            max_record_bytes=self.max_record_bytes,
            max_alert_bytes=self.max_alert_bytes,
            max_set_bytes=self.max_set_bytes,
            nul_as_text=self.alert_nul == "text",
        )

    # ------------------------------------------------------------------ loading

    @staticmethod
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    @staticmethod
    def env_name(name: str) -> str:
        return ENV_PREFIX + name.upper()

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def select(cls, entries: Sequence[str]) -> tuple[str, ...]:
        """The settings named by `entries`: section names (every setting of the section) and setting
        names, in declaration order."""
        unknown = [e for e in entries if e not in SECTIONS and e not in cls.names()]
        if unknown:
            raise ValueError(f"neither a section nor a setting: {', '.join(unknown)}")
        return tuple(f.name for f in fields(cls) if f.name in entries or f.metadata["section"] in entries)

    @classmethod
    def shown_default(cls, name: str) -> str:
        """A setting's default as --help and the README's configuration table show it: a duration in its
        largest whole unit, a boolean as the variable takes it, an empty one as `none`."""
        f = {f.name: f for f in fields(cls)}[name]
        default: Any = f.default
        if default in ("", ()):
            return "none"
        if f.metadata["secret"]:
            return "<secret>"
        if f.metadata["parse"] is parse_duration_ms:
            return format_duration_ms(int(default))
        if isinstance(default, bool):
            return "true" if default else "false"
        return str(default)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
        """Declare the flags of the named settings on a (sub)command parser, one argument group per
        section (in SECTIONS order); defaults stay None, so that the variable or the default applies."""
        chosen = [f for f in fields(cls) if f.name in names]
        for section, title in SECTIONS.items():
            members = [f for f in chosen if f.metadata["section"] == section]
            if not members:
                continue
            group = parser.add_argument_group(title)
            for f in members:
                meta = f.metadata
                shown = cls.shown_default(f.name)
                text = f"{meta['help']} [env {cls.env_name(f.name)}; default {shown}]".replace("%", "%%")
                if meta["bare"]:  # a switch: present means true
                    group.add_argument(
                        cls.flag(f.name), dest=f.name, action="store_const", const="true", help=text
                    )
                    continue
                group.add_argument(
                    cls.flag(f.name),
                    dest=f.name,
                    default=None,
                    action="append" if meta["repeat"] else "store",
                    metavar=meta["metavar"],
                    help=text,
                )

    @classmethod
    def load(
        cls, args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings from CLI values (strings), then the environment, then the defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = getattr(args, f.name, None) if args is not None else None
            source = cls.flag(f.name)
            if raw is None:
                raw = env.get(cls.env_name(f.name))
                source = cls.env_name(f.name)
            if raw is None:
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                raise ConfigError(f"{source}: {exc}") from exc
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    # ------------------------------------------------------------------ clients

    def redis_store_options(self) -> dict[str, Any]:
        """Keyword arguments of streams.state.redis.RedisStore from the --redis-* settings."""
        tls = {
            name: path
            for name, path in (
                ("ssl_ca_certs", self.redis_ca),
                ("ssl_certfile", self.redis_cert),
                ("ssl_keyfile", self.redis_key),
            )
            if path
        }
        return {"username": self.redis_username or None, "password": self.redis_password_value(), "tls": tls}

    def redis_password_value(self) -> str | None:
        """The Redis password from the variable/flag or the file (None: the URL's, if any)."""
        if self.redis_password_file:
            try:
                with open(self.redis_password_file, encoding="utf-8") as fh:
                    return fh.read().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(
                    f"--redis-password-file: cannot read {self.redis_password_file}: {exc.strerror}"
                ) from None
        return self.redis_password or None

"""`iis-portscan alerts`: follow the alert topic and print alerts (JSON lines, or a table)."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any, TextIO

import orjson

from streams.cli.follow import follow
from streams.core.escape import dumps, printable
from streams.settings import Settings

HEADER = (
    f"{'phase':<6} {'rev':>5} {'TimeGenerated':<24} {'cIP':<16} {'Computer':<22} {'sIP':<12} {'ports':>5} "
    f"{'distinct':>8} {'conns':>6}"
)


def pretty(alert: dict[str, Any]) -> str:
    """One table row. Every value is made printable (the client controls cIP, Computer and sIP: a newline
    or an escape sequence would forge rows or drive the operator's terminal)."""

    def cell(name: str, default: Any = "-") -> str:
        return printable(str(alert.get(name, default)))

    row = (
        f"{cell('Phase'):<6} {cell('Revision', 0):>5} {cell('TimeGenerated'):<24} "
        f"{cell('cIP'):<16} {cell('Computer')[:22]:<22} {cell('sIP'):<12} {cell('portCount'):>5} "
        f"{cell('DistinctPortCount'):>8} {cell('ConnectionsCount'):>6}"
    )
    return f"{row} tenant {cell('TenantId')}" if "TenantId" in alert else row  # --tenant-field


def json_line(record: Any) -> str:
    """A record as one JSON line: the same value as published, whatever its producer wrote (raw newlines
    between tokens, DEL, C1 or bidi characters in strings), escaped as streams.core.escape.dumps does."""
    return dumps(record).decode()


def run_follow(
    settings: Settings, as_table: bool, idle_exit_s: float, max_alerts: int, out: TextIO = sys.stdout
) -> int:
    latest: dict[str, str] = {}

    def show(value: bytes) -> None:
        record = orjson.loads(value)
        alert = record
        if "class_uid" in alert:  # an OCSF Detection Finding (--alert-format ocsf): the alert within
            alert = alert["unmapped"]
        latest[alert["AlertId"]] = alert.get("Phase", "-")
        out.write((pretty(alert) if as_table else json_line(record)) + "\n")
        out.flush()

    if as_table:
        out.write(HEADER + "\n")
    seen = follow(settings, settings.alert_topic, "alerts", idle_exit_s, max_alerts, show)
    if as_table:
        phases = ", ".join(f"{n} {p}" for p, n in sorted(Counter(latest.values()).items()))
        out.write(f"{seen} alert records for {len(latest)} windows (latest revision: {phases or 'none'})\n")
    return 0

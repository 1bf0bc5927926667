"""`iis-portscan notifications`: follow the notify topic (--notify-topic) and print pages and summaries."""

from __future__ import annotations

import sys
from typing import Any, TextIO

import orjson

from streams.cli.alerts import json_line
from streams.cli.follow import follow
from streams.core.escape import printable
from streams.settings import Settings

HEADER = f"{'kind':<8}{'period start':<26}{'entity':<40}{'windows':>8}{'max ports':>10}{'suppressed':>11}"


def pretty(note: dict[str, Any]) -> str:
    """One table row; the entity's values only (the attacker controls them: made printable, cut)."""
    entity = printable(" ".join(str(v) for v in note.get("Entity", {}).values()))
    if note["Kind"] == "page":
        first = note["FirstAlert"]
        windows, ports, suppressed = "1", str(first["portCount"]), "-"
    elif note["Kind"] == "summary":
        windows, ports = str(note["WindowCount"]), str(note["MaxPortCount"])
        suppressed = str(note["SuppressedRepeats"])
    else:  # cap
        entity, windows, ports, suppressed = f"{note['NotPaged']} entities not paged", "-", "-", "-"
    return (
        f"{note['Kind']:<8}{note['PeriodStart']:<26}{entity[:39]:<40}{windows:>8}{ports:>10}{suppressed:>11}"
    )


def run_notifications(
    settings: Settings, as_table: bool, idle_exit_s: float, max_records: int, out: TextIO = sys.stdout
) -> int:
    def show(value: bytes) -> None:
        note = orjson.loads(value)
        out.write((pretty(note) if as_table else json_line(note)) + "\n")
        out.flush()

    if as_table:
        out.write(HEADER + "\n")
    follow(settings, settings.notify_topic, "notifications", idle_exit_s, max_records, show)
    return 0

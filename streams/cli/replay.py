"""`iis-portscan replay`: the rule over files, offline, in any event order."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

import orjson

from streams.core.allowlist import Allowlist, AllowlistError, judge
from streams.core.entities import add_entities, ocsf_finding
from streams.core.escape import dumps, printable
from streams.core.notify import notify_all
from streams.core.offline import OfflineRule
from streams.core.records import IISEvent, ParseError
from streams.io.sources import SourceOptions, iter_file, open_binary
from streams.settings import Settings

MAX_ERRORS_SHOWN = 10_000


class Progress:
    """A one-line progress bar on a terminal's stderr; silent elsewhere or for small inputs."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.total = total
        self.enabled = total > 8_000_000 and stream.isatty()
        self.next_at = 0.0

    def update(self, done: int, events: int) -> None:
        now = time.monotonic()
        if not self.enabled or now < self.next_at:
            return
        self.next_at = now + 0.25
        share = min(done / self.total, 1.0)
        bar = "#" * int(share * 30)
        self.stream.write(f"\r[{bar:<30}] {share:6.1%} {events:,} events")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 70 + "\r")
            self.stream.flush()


def _size(path: str) -> int:
    if path == "-":
        return 0
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def load_allowlist(settings: Settings) -> Allowlist | None:
    """The --allowlist file's entries (None without one); raises ConfigError naming the line."""
    if not settings.allowlist:
        return None
    from streams.io.allowlist_file import AllowlistFile
    from streams.settings import ConfigError

    try:
        return Allowlist.of(AllowlistFile(settings.allowlist).read())
    except AllowlistError as exc:
        raise ConfigError(f"--allowlist: {exc}") from None


@dataclass
class ReadStats:
    """What reading the input gave: valid events, bad records by reason, files that failed."""

    events: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    shown: int = 0
    failed_files: int = 0

    def report(self, err: TextIO) -> str:
        """Print the count of bad records not shown; the summary's bad-record part."""
        bad = sum(self.errors.values())
        if self.shown < bad:
            err.write(f"... {bad - self.shown} more bad records not shown\n")
        by_reason = ", ".join(f"{reason} {n}" for reason, n in sorted(self.errors.items()))
        return f"{bad} bad records{f' ({by_reason})' if bad else ''}"


def read_events(
    paths: Sequence[str], options: SourceOptions, add: Callable[[IISEvent], None], err: TextIO
) -> ReadStats:
    """One pass over every file: each valid event to `add`, bad input reported on `err`, a progress
    bar on a terminal."""
    stats = ReadStats()
    errors = stats.errors
    events = 0
    progress = Progress(err, sum(_size(p) for p in paths))
    done_before = 0
    for path in paths:
        try:
            reader, raw = open_binary(path)
        except OSError as exc:
            err.write(printable(f"{path}: cannot open: {exc.strerror or exc}") + "\n")
            stats.failed_files += 1
            continue
        try:
            for location, result in iter_file(path, options, reader):
                if isinstance(result, ParseError):
                    errors[result.reason.value] += 1
                    if stats.shown < MAX_ERRORS_SHOWN:
                        err.write(printable(f"{location}: {result.reason.value}: {result.detail}") + "\n")
                        stats.shown += 1
                    continue
                add(result)
                events += 1
                if events & 0xFFFF == 0:
                    progress.update(done_before + raw.tell(), events)
        except (OSError, EOFError) as exc:  # truncated gzip, I/O error: report, keep what was read
            err.write(printable(f"{path}: read error: {exc}") + "\n")
            stats.failed_files += 1
        finally:
            if path != "-":
                raw.close()
        done_before += _size(path)
    progress.close()
    stats.events = events
    return stats


def run_replay(
    paths: Sequence[str],
    settings: Settings,
    options: SourceOptions,
    out: BinaryIO,
    err: TextIO,
    notify_out: BinaryIO | None = None,
) -> int:
    """Run the rule over every file; alerts to `out` as JSON lines, bad input reported on `err`; with
    `notify_out`, the notifications of the alerts (core.notify) as JSON lines there."""
    from streams.io.tenant_file import replay_thresholds

    allowlist = load_allowlist(settings)
    rule = OfflineRule(settings.rule_params(), replay_thresholds(settings))
    stats = read_events(paths, options, rule.add, err)
    verdict = judge(rule.alerts(), allowlist)  # the `where ... !in (...)` clause, see core.allowlist
    alerts = verdict.kept
    if settings.alert_entities:
        alerts = [add_entities(a, rule.params.max_record_bytes) for a in alerts]
    notes = 0
    if notify_out is not None:
        records = notify_all(alerts, settings.notify_params())
        for _, record in records:
            notify_out.write(dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        notify_out.flush()
        notes = sum(1 for _, r in records if r["Kind"] == "page")
    ocsf = settings.alert_format == "ocsf"  # one OCSF Detection Finding per alert, bounded like an alert
    max_bytes = rule.params.max_alert_bytes
    for alert in alerts:
        record = ocsf_finding(alert, max_bytes) if ocsf else alert
        out.write(dumps(record, option=orjson.OPT_APPEND_NEWLINE))
    out.flush()
    bad = stats.report(err)
    err.write(
        f"replay: {stats.events} events, {len(rule.windows)} windows, {len(alerts)} alerts, {bad}"
        f"{f', {len(verdict.suppressed)} allowlisted' if allowlist is not None else ''}"
        f"{f', {notes} notifications' if notify_out is not None else ''}\n"
    )
    return 1 if stats.failed_files else 0


def main_replay(
    paths: Sequence[str],
    settings: Settings,
    options: SourceOptions,
    output: str | None,
    notify: str | None = None,
) -> int:
    with ExitStack() as stack:
        out = stack.enter_context(open(output, "wb")) if output else sys.stdout.buffer
        notify_out = stack.enter_context(open(notify, "wb")) if notify else None
        return run_replay(paths or ["-"], settings, options, out, sys.stderr, notify_out)

"""The per-tenant thresholds file (--tenant-thresholds): read at start, and again whenever it changes."""

from __future__ import annotations

import logging
from dataclasses import replace

from streams.core.allowlist import AllowlistError
from streams.core.engine import StreamParams
from streams.core.tenant import TenantError, TenantThresholds, parse_thresholds
from streams.io.allowlist_file import AllowlistFile
from streams.settings import ConfigError, Settings

log = logging.getLogger("iis-portscan")


class ThresholdsFile:
    """The file and the table it fills (`thresholds`, which the engines read). A file that cannot be used
    at start stops the worker (TenantError); later, it keeps the previous table (logged, counted)."""

    def __init__(self, path: str, thresholds: TenantThresholds, max_set_size: int) -> None:
        self.file = AllowlistFile(path)  # the same change detection as the allowlist's
        self.thresholds = thresholds
        self.max_set_size = max_set_size
        self.errors = 0
        thresholds.replace(self.read())
        self.reloads = 1  # reads, the first included (iis_portscan_tenant_thresholds_reloads_total)

    def read(self) -> dict[str, int]:
        try:
            text = self.file.read_text()
        except AllowlistError as exc:
            raise TenantError(str(exc)) from None
        return parse_thresholds(text, self.max_set_size, self.file.path)

    def refresh(self) -> bool:
        """Reload a changed file; True when the table changed."""
        if not self.file.changed():
            return False
        try:
            table = self.read()
        except TenantError as exc:
            self.errors += 1
            log.error("tenant thresholds not reloaded, the previous ones stay in force: %s", exc)
            return False
        self.reloads += 1
        if table == self.thresholds.by_tenant:
            return False
        self.thresholds.replace(table)
        log.info("tenant thresholds in force: %d tenants", len(table))
        return True


def load_thresholds(path: str, default: int, max_set_size: int) -> tuple[TenantThresholds, ThresholdsFile]:
    """The table of a thresholds file and its watcher (raises TenantError naming the file and line)."""
    thresholds = TenantThresholds(default)
    return thresholds, ThresholdsFile(path, thresholds, max_set_size)


def tenant_stream_params(settings: Settings) -> tuple[StreamParams, ThresholdsFile | None]:
    """The worker's stream parameters with the per-tenant thresholds of --tenant-thresholds, and the
    file's watcher (None without one); raises ConfigError for a file that cannot be used."""
    params = settings.stream_params()
    if not settings.tenant_thresholds:
        return params, None
    try:
        table, watcher = load_thresholds(
            settings.tenant_thresholds, settings.threshold, settings.max_set_size
        )
    except TenantError as exc:
        raise ConfigError(f"--tenant-thresholds: {exc}") from None
    return replace(params, tenant_thresholds=table), watcher


def replay_thresholds(settings: Settings) -> TenantThresholds | None:
    """`replay --tenant-thresholds`: the file's table, read once (ConfigError when it cannot be used)."""
    if not settings.tenant_thresholds:
        return None
    try:
        return load_thresholds(settings.tenant_thresholds, settings.threshold, settings.max_set_size)[0]
    except TenantError as exc:
        raise ConfigError(f"--tenant-thresholds: {exc}") from None

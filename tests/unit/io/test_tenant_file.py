"""The per-tenant thresholds file (streams.io.tenant_file): read at start, reloaded when it changes, the
previous table kept when a new version cannot be used."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.core.tenant import TenantError
from streams.io.tenant_file import load_thresholds, replay_thresholds, tenant_stream_params
from streams.settings import ConfigError, Settings


def rewrite(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a new mtime however fast


def test_reloaded_on_change_and_a_bad_version_keeps_the_previous(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.csv"
    path.write_text("tenant,threshold\ncontoso,20\n")
    table, watcher = load_thresholds(str(path), 30, 128)
    assert table.of("contoso") == 20 and table.of("other") == 30
    assert watcher.refresh() is False  # unchanged
    rewrite(path, "tenant,threshold\ncontoso,40\nfabrikam,5\n")
    assert watcher.refresh() is True and table.of("contoso") == 40 and table.of("fabrikam") == 5
    assert watcher.reloads == 2
    rewrite(path, "tenant,threshold\ncontoso,0\n")
    assert watcher.refresh() is False and watcher.errors == 1 and table.of("contoso") == 40
    path.unlink()
    assert watcher.refresh() is False and watcher.errors == 2 and table.of("fabrikam") == 5


def test_a_bad_file_at_start_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.csv"
    path.write_text("tenant,threshold\ncontoso,500\n")
    with pytest.raises(TenantError):
        load_thresholds(str(path), 30, 128)
    settings = Settings(tenant_field="field:TenantId", tenant_thresholds=str(path))
    with pytest.raises(ConfigError, match=r"thresholds.csv:2: threshold must be"):
        tenant_stream_params(settings)
    with pytest.raises(ConfigError):
        replay_thresholds(settings)
    with pytest.raises(ConfigError, match="needs --tenant-field"):
        Settings(tenant_thresholds=str(path))
    with pytest.raises(ConfigError, match="--tenant-field"):
        Settings(tenant_field="tenant")


def test_settings_without_tenants_change_nothing(tmp_path: Path) -> None:
    params, watcher = tenant_stream_params(Settings())
    assert watcher is None and params == Settings().stream_params() and params.tenant_thresholds is None
    assert Settings().notify_params().by == ("cIP",)
    assert Settings(tenant_field="fixed:a").notify_params().by == ("TenantId", "cIP")
    assert Settings().tenant_spec() is None and replay_thresholds(Settings()) is None

"""Settings: defaults are the rule's; CLI beats environment beats default; errors name the source."""

from __future__ import annotations

import argparse

import pytest

from streams.settings import ConfigError, Settings, parse_duration_ms


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    Settings.add_arguments(p, Settings.names())
    return p


def test_defaults_are_the_rules() -> None:
    s = Settings.load(None, {})
    assert (s.bin, s.threshold, s.max_set_size, s.url_plus) == (600_000, 30, 128, "space")
    assert s.rule_params().plus_as_space


def test_precedence_cli_env_default() -> None:
    env = {"PORTSCAN_THRESHOLD": "40", "PORTSCAN_BIN": "5m", "PORTSCAN_BROKERS": "k:1"}
    s = Settings.load(parser().parse_args(["--threshold", "50"]), env)
    assert (s.threshold, s.bin, s.brokers) == (50, 300_000, "k:1")


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("600", 600_000),
        ("10m", 600_000),
        ("120s", 120_000),
        ("24h", 86_400_000),
        ("1d", 86_400_000),
        ("250ms", 250),
        ("1.5s", 1500),
    ],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"PORTSCAN_THRESHOLD": "many"}, "PORTSCAN_THRESHOLD"),
        ({"PORTSCAN_BIN": "10 minutes"}, "PORTSCAN_BIN"),
        ({"PORTSCAN_URL_PLUS": "maybe"}, "url-plus"),
        ({"PORTSCAN_THRESHOLD": "200"}, "never be reached"),
        ({"PORTSCAN_THRESHOLD": "0"}, "at least 1"),
        ({"PORTSCAN_BIN": "0"}, "positive"),
        ({"PORTSCAN_ROCKSDB_MEMORY": "0"}, "PORTSCAN_ROCKSDB_MEMORY"),
    ],
)
def test_errors_name_the_setting(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Settings.load(None, env)


def test_unlimited_sets_allow_any_threshold() -> None:
    s = Settings.load(None, {"PORTSCAN_THRESHOLD": "200", "PORTSCAN_MAX_SET_SIZE": "0"})
    assert s.rule_params().threshold == 200


def test_rocksdb_memory_bounds_each_partition_database() -> None:
    opts = Settings.load(None, {"PORTSCAN_ROCKSDB_MEMORY": "128"}).rocksdb_options()
    mib = 1024 * 1024
    assert opts["block_cache_size"] == 64 * mib
    assert opts["write_buffer_size"] * opts["max_write_buffer_number"] == 64 * mib
    small = Settings.load(None, {"PORTSCAN_ROCKSDB_MEMORY": "2"}).rocksdb_options()
    assert small["write_buffer_size"] >= mib  # never a zero-sized memtable


@pytest.mark.parametrize(
    "tls",
    [{"PORTSCAN_REDIS_CA": "/ca.pem"}, {"PORTSCAN_REDIS_CERT": "/c.pem", "PORTSCAN_REDIS_KEY": "/k.pem"}],
)
@pytest.mark.parametrize("store", ["redis://:pw@redis:6379/0", "rocksdb://", "memory://"])
def test_redis_tls_options_need_a_rediss_url(tls: dict[str, str], store: str) -> None:
    """--redis-ca and the client certificate were ignored with redis://: plaintext, password in clear."""
    with pytest.raises(ConfigError, match="rediss://"):
        Settings.load(None, {"PORTSCAN_STORE": store, **tls})
    assert Settings.load(None, {"PORTSCAN_STORE": "rediss://redis:6380/0", **tls}).redis_store_options()[
        "tls"
    ]


def test_redis_client_certificate_and_key_go_together() -> None:
    with pytest.raises(ConfigError, match="together"):
        Settings.load(None, {"PORTSCAN_STORE": "rediss://redis:6380/0", "PORTSCAN_REDIS_CERT": "/c.pem"})

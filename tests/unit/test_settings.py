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


# ---------------------------------------------------------------- sections and choices as data


def test_every_setting_declares_a_known_section() -> None:
    """A setting added without `section=` (or with a misspelt one) would be in no --help group and
    reach no command but the worker."""
    from dataclasses import fields

    from streams.settings import SECTIONS

    missing = [f.name for f in fields(Settings) if f.metadata["section"] not in SECTIONS]
    assert missing == []


@pytest.mark.parametrize(
    ("name", "bad"),
    [("alert_nul", "nul"), ("url_plus", "plus"), ("input_format", "xml"), ("log_format", "yaml")],
)
def test_declared_choices_are_checked_for_flag_and_variable_alike(name: str, bad: str) -> None:
    from dataclasses import fields

    declared = {f.name: f.metadata for f in fields(Settings)}[name]
    allowed = declared["choices"]
    assert declared["metavar"] == "|".join(allowed)
    env = Settings.env_name(name)
    with pytest.raises(
        ConfigError, match=f"{Settings.flag(name)} / {env} takes .* or {allowed[-1]}, got '{bad}'"
    ):
        Settings.load(None, {env: bad})
    args = argparse.Namespace(**{name: bad})
    with pytest.raises(ConfigError, match=f"got '{bad}'"):
        Settings.load(args, {})
    for value in allowed:
        assert getattr(Settings.load(None, {env: value}), name) == value


def test_select_takes_sections_and_single_settings_in_declaration_order() -> None:
    chosen = Settings.select(("app_id", "files", "threshold"))
    assert chosen == ("threshold", "max_line_bytes", "max_document_bytes", "app_id")
    with pytest.raises(ValueError, match="neither a section nor a setting: nope"):
        Settings.select(("rule", "nope"))


def test_help_is_grouped_by_section_per_command() -> None:
    from streams.cli import COMMANDS, build_parser
    from streams.settings import SECTIONS

    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    titles = {name: {g.title for g in sub._action_groups} for name, sub in subcommands.items()}
    assert set(SECTIONS.values()) - {SECTIONS["files"]} <= titles["worker"]
    assert SECTIONS["files"] not in titles["worker"]  # the worker applies no file bound (its COMMANDS entry)
    assert {SECTIONS[s] for s in ("rule", "output", "input", "files", "soc")} <= titles["replay"]
    assert SECTIONS["kafka"] not in titles["replay"] and SECTIONS["rule"] not in titles["produce"]
    assert set(COMMANDS) >= {"replay", "worker", "produce", "alerts", "notifications", "topics create"}


def test_worker_replay_and_produce_take_every_input_setting() -> None:
    """So that replay and the stream cannot read the same input differently (--w3c-dash-as-empty was
    replay's alone, --computer not honoured from PORTSCAN_COMPUTER by replay and produce)."""
    from streams.cli import COMMANDS, build_parser

    inputs = Settings.select(("input",))
    assert {"computer", "w3c_dash_as_empty", "input_format", "w3c_fields"} <= set(inputs)
    for command in ("worker", "replay", "produce"):
        assert set(inputs) <= set(Settings.select(COMMANDS[command])), command
    for command in (
        "replay",
        "produce",
    ):  # the file bounds: files only (see test_worker_applies_no_file_bound)
        assert set(Settings.select(("files",))) <= set(Settings.select(COMMANDS[command])), command
    parser = build_parser()
    for argv in (["worker"], ["replay"], ["produce"]):
        args = parser.parse_args([*argv, "--w3c-dash-as-empty", "--computer", "WEB7"])
        settings = Settings.load(args, {})
        assert settings.w3c_dash_as_empty and settings.computer == "WEB7"


def test_the_workers_reader_follows_the_input_settings() -> None:
    from streams.core.records import IISEvent
    from streams.io.sources import SourceOptions, message_reader

    line = b"2026-01-01 00:00:03 10.0.0.11 GET / - 443 - 198.51.100.7 curl/8 - 200 0 0 46"
    worker = Settings.load(None, {"PORTSCAN_W3C_DASH_AS_EMPTY": "true", "PORTSCAN_INPUT_FORMAT": "raw"})
    ((_, unnamed),) = message_reader(SourceOptions.of(worker, files=False)).read(line)
    assert not isinstance(unnamed, IISEvent)  # no host named, no --computer: a dead letter
    named = worker.with_(computer="WEB7")
    ((_, event),) = message_reader(SourceOptions.of(named, files=False)).read(line)
    assert isinstance(event, IISEvent) and event.Computer == "WEB7" and event.csUserName == ""


def test_worker_applies_no_file_bound(capsys: pytest.CaptureFixture[str]) -> None:
    """`worker --help` showed --max-line-bytes and --max-document-bytes, which the worker never applied: a
    Kafka message is bounded by the broker (max.message.bytes) before the worker reads it. The worker takes
    neither flag, and its reader reads a message longer than --max-line-bytes as any other (what it
    applies: nothing of the file bounds)."""
    import orjson

    from streams.cli import build_parser
    from streams.core.records import IISEvent
    from streams.io.sources import SourceOptions, message_reader

    parser = build_parser()
    for flag in ("--max-line-bytes", "--max-document-bytes"):
        with pytest.raises(SystemExit):
            parser.parse_args(["worker", flag, "2048"])
        assert "unrecognized arguments" in capsys.readouterr().err
        for command in ("replay", "produce"):
            assert (
                getattr(
                    Settings.load(parser.parse_args([command, flag, "2048"]), {}), flag[2:].replace("-", "_")
                )
                == 2048
            )
    record = {
        "TimeGenerated": "2026-01-01T00:00:03Z",
        "Computer": "WEB7",
        "cIP": "198.51.100.7",
        "sIP": "10.0.0.11",
        "sPort": 443,
        "csUriQuery": "q=" + "x" * 3000,
        "Type": "W3CIISLog",
    }
    message = orjson.dumps(record)
    worker = Settings.load(None, {"PORTSCAN_MAX_LINE_BYTES": "1024"})
    assert len(message) > worker.max_line_bytes
    ((_, event),) = message_reader(SourceOptions.of(worker, files=False)).read(message)
    assert isinstance(event, IISEvent) and event.csUriQuery == record["csUriQuery"]


def test_readme_configuration_table_matches_the_declarations() -> None:
    """README's configuration table lists every setting once, with its flag, variable, default (as --help
    shows it) and the commands that take its flag (streams.cli COMMANDS): it had drifted to about 17
    settings fewer than --help. A setting added, renamed, re-defaulted or moved between commands fails
    here until the table says so."""
    import re
    from dataclasses import fields
    from pathlib import Path

    from streams.cli import COMMANDS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    row = re.compile(r"^\| `(--[a-z0-9-]+)` \| `(PORTSCAN_[A-Z0-9_]+)` \| `([^`]*)` \| ([^|]*) \| [^|]+ \|$")
    rows = [row.match(line) for line in section.splitlines() if line.startswith("| `--")]
    assert None not in rows, (
        "a row of the table is not | `--flag` | `VARIABLE` | `default` | commands | what |"
    )
    listed = [m.groups() for m in rows if m is not None]
    expected = [
        (
            Settings.flag(f.name),
            Settings.env_name(f.name),
            Settings.shown_default(f.name),
            ", ".join(c for c, entries in COMMANDS.items() if f.name in Settings.select(entries)),
        )
        for f in fields(Settings)
    ]
    assert sorted(set(expected) - set(listed)) == []  # a setting missing, or listed otherwise than declared
    assert sorted(set(listed) - set(expected)) == []  # a row that names no setting as declared
    assert len(listed) == len(expected)  # each once

"""streams.io.sources: which files are W3C logs, the site a log's folder stands for, gzip seen through,
the input options built from settings (one type for the worker, replay and produce)."""

from __future__ import annotations

import gzip
import socket
from pathlib import Path

import pytest

from streams.core.records import IISEvent
from streams.io.sources import SourceOptions, is_w3c_file, message_reader, open_binary, site_name_for
from streams.settings import ConfigError, Settings

LINE = b"2026-01-01 00:00:03 10.0.0.11 GET / - 443 - 198.51.100.7 curl/8 - 200 0 0 46"


@pytest.mark.parametrize(
    ("path", "first", "w3c"),
    [
        ("u_ex260101.log", b"{", True),
        ("u_ex260101.LOG.gz", b"", True),
        ("events.jsonl", b"#Fields: date", False),
        ("stdin", b"\xef\xbb\xbf#Software: IIS", True),  # by its first line, byte-order mark and all
        ("stdin", b'{"cIP": "x"}', False),
    ],
)
def test_w3c_files_by_name_else_by_a_directive(path: str, first: bytes, w3c: bool) -> None:
    assert is_w3c_file(path, first) is w3c


def test_a_w3svc_folder_names_the_site(tmp_path: Path) -> None:
    site = tmp_path / "W3SVC12"
    site.mkdir()
    assert site_name_for(str(site / "u_ex.log")) == "W3SVC12"
    assert site_name_for(str(tmp_path / "u_ex.log")) == "-"
    assert site_name_for("-") == "-"


def test_gzip_is_seen_through(tmp_path: Path) -> None:
    packed = tmp_path / "a.log.gz"
    packed.write_bytes(gzip.compress(b"#Fields: date\n"))
    reader, raw = open_binary(str(packed))
    try:
        assert reader.read() == b"#Fields: date\n"
    finally:
        raw.close()


def test_options_of_settings_carry_every_input_setting() -> None:
    settings = Settings(
        computer="WEB7", w3c_dash_as_empty=True, input_format="raw", w3c_fields="", max_line_bytes=4096
    )
    options = SourceOptions.of(settings)
    assert (options.computer, options.dash_as_null, options.input_format, options.max_line_bytes) == (
        "WEB7",
        True,
        "raw",
        4096,
    )
    assert options.files and not SourceOptions.of(settings, files=False).files


def test_files_fall_back_to_this_host_the_worker_to_none() -> None:
    files = message_reader(SourceOptions(input_format="raw"))
    ((_, event),) = files.read(LINE)
    assert isinstance(event, IISEvent) and event.Computer == socket.gethostname()
    worker = message_reader(SourceOptions(input_format="raw", files=False))
    ((_, error),) = worker.read(LINE)
    assert not isinstance(error, IISEvent)


@pytest.mark.parametrize(
    "options",
    [
        {"input_format": "xml"},
        {"w3c_fields": "date nosuch(field)"},
        {"max_line_bytes": 100},
        {"max_line_bytes": 4096, "max_document_bytes": 2048},
    ],
)
def test_unusable_options_are_refused_by_name(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="--"):
        SourceOptions(**options)  # type: ignore[arg-type]

"""Reading input files: JSONL / JSON / envelopes and W3C .log files, gzip or not, or stdin.

An adapter around the core parsers: it opens, sniffs and iterates; every result carries its
location (file and line) so bad input can be reported precisely.
"""

from __future__ import annotations

import gzip
import io
import re
import socket
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from streams.core.parse import event_from_record, parse_json, records_of
from streams.core.records import IISEvent, ParseError, Reason
from streams.core.w3c import W3CParser

_SITE_DIR = re.compile(r"W3SVC\d+", re.IGNORECASE)
_BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark, as Windows tools write it at the start of a file


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """How files are read: the W3C-only knobs (Computer and '-' handling)."""

    computer: str | None = None
    dash_as_null: bool = False


def open_binary(path: str) -> tuple[BinaryIO, BinaryIO]:
    """Open a file (or '-' for stdin) and see through gzip; returns (reader, raw) for progress."""
    raw: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type]
    head = buffered.peek(2)[:2]
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=buffered), raw  # type: ignore[return-value]
    return buffered, raw


def _is_w3c(path: str, first: bytes) -> bool:
    name = path.lower().removesuffix(".gz")
    if name.endswith((".log", ".txt")):
        return True
    if name.endswith((".json", ".jsonl", ".ndjson")):
        return False
    return first.lstrip().removeprefix(_BOM).startswith(b"#")


def site_name_for(path: str) -> str:
    """The `W3SVC<n>` folder a log sits in stands for its site when s-sitename is not logged."""
    if path == "-":
        return "-"
    parent = Path(path).resolve().parent.name
    return parent if _SITE_DIR.fullmatch(parent) else "-"


def iter_file(
    path: str, options: SourceOptions, reader: BinaryIO
) -> Iterator[tuple[str, IISEvent | ParseError]]:
    """Yield (location, event or error) for every record of one opened file.

    Damaged gzip data raises OSError (gzip.BadGzipFile) or EOFError (truncated), as reading does."""
    try:
        first_line = reader.readline()
    except zlib.error as exc:
        raise _bad_gzip(exc) from exc
    first_line = first_line.removeprefix(_BOM)  # orjson rejects it; the W3C parser would skip it
    lines = _chain_first(first_line, reader)
    if _is_w3c(path, first_line.lstrip()):
        yield from _iter_w3c(path, options, lines)
    else:
        yield from _iter_json(path, first_line, lines, reader)


def _bad_gzip(exc: zlib.error) -> OSError:
    return gzip.BadGzipFile(f"corrupt gzip data: {exc}")


def _chain_first(first: bytes, reader: BinaryIO) -> Iterator[bytes]:
    if first:
        yield first
    try:
        yield from reader
    except zlib.error as exc:  # a damaged deflate stream: an OSError like gzip's other errors
        raise _bad_gzip(exc) from exc


def _decode(raw: bytes) -> str | ParseError:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return ParseError(Reason.UNDECODABLE, "line is not UTF-8")


def _iter_w3c(
    path: str, options: SourceOptions, lines: Iterator[bytes]
) -> Iterator[tuple[str, IISEvent | ParseError]]:
    parser = W3CParser(
        computer=options.computer,
        default_computer=socket.gethostname(),
        site_name=site_name_for(path),
        dash_as_null=options.dash_as_null,
    )
    for number, raw in enumerate(lines, 1):
        text = _decode(raw)
        result = text if isinstance(text, ParseError) else parser.feed(text)
        if result is not None:
            yield f"{path}:{number}", result


def _iter_json(
    path: str, first_line: bytes, lines: Iterator[bytes], reader: BinaryIO
) -> Iterator[tuple[str, IISEvent | ParseError]]:
    stripped = first_line.strip()
    whole_document = stripped.startswith(b"[")
    if stripped and not whole_document:
        try:
            orjson.loads(stripped)
        except orjson.JSONDecodeError:
            whole_document = True  # a pretty-printed document spans lines
    if whole_document:
        data = b"".join(lines)
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            doc = None
        if doc is not None:
            for index, record in enumerate(records_of(doc), 1):
                yield f"{path}:record {index}", event_from_record(record)
            return
        lines = iter(data.splitlines(keepends=True))
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        for result in parse_json(line):
            yield f"{path}:{number}", result

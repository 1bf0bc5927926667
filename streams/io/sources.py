"""Reading input files: JSON lines of any message shape, JSON documents, W3C .log files; gzip or not.

An adapter around the core readers: it opens, sniffs and iterates; every result carries its
location (file and line) so bad input can be reported precisely. A W3C `.log` file is read with one
`W3CParser`; any other file is a sequence of messages as they would travel on Kafka (one per line:
W3CIISLog JSON, a shipper's envelope, an ECS or NXLog record, or a raw W3C line as text; or one
pretty-printed JSON document), each read by `streams.core.shippers.MessageReader`.

Input is bounded whatever the file holds (a 150 KB gzip can inflate to one 427 MB line): a line longer
than `max_line_bytes` is skipped and reported (Reason too-large), reading on at the next line; a file read
as one JSON document stops being read once the document exceeds `max_document_bytes` (reported once).
"""

from __future__ import annotations

import gzip
import io
import re
import socket
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from streams.core.native import claimer
from streams.core.parse import records_of
from streams.core.records import IISEvent, ParseError, Reason
from streams.core.shippers import FORMATS, MessageReader, Read, parse_w3c_fields, w3c_fields_problem
from streams.core.tenant import TenantSpec
from streams.core.w3c import W3CParser
from streams.settings import ConfigError, Settings

_SITE_DIR = re.compile(r"W3SVC\d+", re.IGNORECASE)
_BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark, as Windows tools write it at the start of a file
MIB = 1024 * 1024
DEFAULT_MAX_LINE_BYTES = 1 * MIB
DEFAULT_MAX_DOCUMENT_BYTES = 64 * MIB
Line = bytes | int  # a line, or the length of a line over the bound (skipped, not kept)


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """How input is read: the worker's messages, replay's and produce's files (one type for the three,
    built from the --input and --files settings by `of`).

    `computer`: for a W3C .log file, every line's Computer; for messages, the Computer of those that
    name no host (neither the line's s-computername nor the envelope's host). Unset: this host's name
    when `files` (replay's and produce's files), else none (the worker: such records are dead-lettered).
    `dash_as_null`: read a W3C '-' (and NXLog's null, ECS's absent field) as "". `input_format`: auto
    (recognise each message) or one of shippers.FORMATS. `w3c_fields`: the layout of W3C lines
    without a #Fields header (space-separated ids; empty = IIS's default W3C fields).
    `max_line_bytes`, `max_document_bytes`: the input bounds (see the module docstring). `tenant`: the
    tenant set on every event (core.tenant; for `files`, `field:` or `fixed:`: a file has no Kafka headers).
    `engine`: the hot path chosen by --engine (core.native.choose), never a different answer.
    """

    computer: str | None = None
    dash_as_null: bool = False
    input_format: str = "auto"
    w3c_fields: str = ""
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES
    tenant: TenantSpec | None = None
    files: bool = True
    engine: str = "python"  # python or native (core.native): which decodes a plain W3CIISLog line

    @classmethod
    def of(
        cls, settings: Settings, files: bool = True, tenant: TenantSpec | str | None = "configured"
    ) -> SourceOptions:
        """The input options of every command, from one Settings; `tenant`: in place of --tenant-field's
        (the detector behind the router reads the router's header)."""
        return cls(
            computer=settings.computer or None,
            dash_as_null=settings.w3c_dash_as_empty,
            input_format=settings.input_format,
            w3c_fields=settings.w3c_fields,
            max_line_bytes=settings.max_line_bytes,
            max_document_bytes=settings.max_document_bytes,
            tenant=settings.tenant_spec() if isinstance(tenant, str) else tenant,
            files=files,
        )

    def __post_init__(self) -> None:
        if self.files and self.tenant is not None and self.tenant.source == "header":
            raise ConfigError(
                f"--tenant-field {self.tenant}: files carry no Kafka headers; use fixed:TENANT for a file of "
                "one tenant, or field:NAME"
            )
        if self.input_format != "auto" and self.input_format not in FORMATS:
            raise ConfigError(f"--input-format takes auto, {', '.join(FORMATS)}, got {self.input_format!r}")
        problem = w3c_fields_problem(self.w3c_fields or None)
        if problem is not None:
            raise ConfigError(f"--w3c-fields / PORTSCAN_W3C_FIELDS: {problem}")
        if self.max_line_bytes < 1024 or self.max_document_bytes < self.max_line_bytes:
            raise ConfigError(
                "--max-line-bytes must be at least 1024 and --max-document-bytes at least --max-line-bytes"
            )


def message_reader(options: SourceOptions) -> MessageReader:
    """The reader of messages: one per file (layouts learnt from #Fields lines stay within it), one
    each for the worker's router and detector."""
    return MessageReader(
        computer=options.computer or (socket.gethostname() if options.files else None),
        w3c_fields=options.w3c_fields or None,
        dash_as_null=options.dash_as_null,
        force=None if options.input_format == "auto" else options.input_format,
        tenant=options.tenant,
    )


@dataclass(frozen=True, slots=True)
class FileMessage:
    """One message of a file: where it is, its bytes as they would travel on Kafka (None for a line
    of a W3C .log file, which is no message of its own), and what it holds."""

    location: str
    value: bytes | None
    results: Read


def open_binary(path: str) -> tuple[BinaryIO, BinaryIO]:
    """Open a file (or '-' for stdin) and see through gzip; returns (reader, raw) for progress."""
    raw: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[type-var]
    head = buffered.peek(2)[:2]
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=buffered), raw  # type: ignore[return-value]
    return buffered, raw


def is_w3c_file(path: str, first_line: bytes) -> bool:
    """A W3C log file (read with one parser, directives and all) rather than a file of messages:
    by its name (.log, .txt), else by a first line that is a directive."""
    name = path.lower().removesuffix(".gz")
    if name.endswith((".log", ".txt")):
        return True
    if name.endswith((".json", ".jsonl", ".ndjson")):
        return False
    return first_line.lstrip().removeprefix(_BOM).startswith(b"#")


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
    first_line, lines = _lines_of(reader, options.max_line_bytes)
    if is_w3c_file(path, first_line):
        yield from _iter_w3c(path, options, lines)
        return
    for message in _iter_messages(path, options, first_line, lines):
        location = message.location
        for _, result in message.results:
            yield location, result


def iter_messages(path: str, options: SourceOptions, reader: BinaryIO) -> Iterator[FileMessage]:
    """Every message of one opened file, with what it holds (a W3C .log file: one per line).

    An array or `{"records": [...]}` envelope is split into one message per element."""
    first_line, lines = _lines_of(reader, options.max_line_bytes)
    if is_w3c_file(path, first_line):
        for location, result in _iter_w3c(path, options, lines):
            yield FileMessage(location, None, [(None, result)])
        return
    yield from _iter_messages(path, options, first_line, lines)


def _lines_of(reader: BinaryIO, limit: int) -> tuple[bytes, Iterator[Line]]:
    """The first line (without a byte-order mark; b"" when it is over the bound) and an iterator over
    every line, the first included."""
    lines = _bounded_lines(reader, limit)
    first = next(lines, b"")
    if isinstance(first, bytes):
        first = first.removeprefix(_BOM)  # orjson rejects it; the W3C parser would skip it
    return (first if isinstance(first, bytes) else b""), _chain_first(first, lines)


def _bad_gzip(exc: zlib.error) -> OSError:
    return gzip.BadGzipFile(f"corrupt gzip data: {exc}")


def _bounded_lines(reader: BinaryIO, limit: int) -> Iterator[Line]:
    """Every line of at most `limit` bytes (its newline aside); for a longer one, its length, read in
    pieces and never held whole."""
    try:
        while True:
            line = reader.readline(limit + 1)
            if not line:
                return
            if len(line) <= limit or line.endswith(b"\n"):
                yield line
                continue
            size = len(line)
            while not line.endswith(b"\n"):
                line = reader.readline(MIB)
                if not line:
                    break
                size += len(line)
            yield size - line.endswith(b"\n")
    except zlib.error as exc:  # a damaged deflate stream: an OSError like gzip's other errors
        raise _bad_gzip(exc) from exc


def _chain_first(first: Line, lines: Iterator[Line]) -> Iterator[Line]:
    if first != b"":
        yield first
    yield from lines


def _too_long(size: int, limit: int) -> ParseError:
    return ParseError(Reason.TOO_LARGE, f"line of {size} bytes over --max-line-bytes {limit}: skipped")


def _decode(raw: bytes) -> str | ParseError:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return ParseError(Reason.UNDECODABLE, "line is not UTF-8")


def _iter_w3c(
    path: str, options: SourceOptions, lines: Iterator[Line]
) -> Iterator[tuple[str, IISEvent | ParseError]]:
    parser = W3CParser(
        computer=options.computer,
        default_computer=socket.gethostname(),
        site_name=site_name_for(path),
        dash_as_null=options.dash_as_null,
        fields=parse_w3c_fields(options.w3c_fields or None),  # lines before any #Fields directive
    )
    tenant = options.tenant
    for number, raw in enumerate(lines, 1):
        if isinstance(raw, int):
            yield f"{path}:{number}", _too_long(raw, options.max_line_bytes)
            continue
        text = _decode(raw)
        result = text if isinstance(text, ParseError) else parser.feed(text)
        if result is not None:
            if tenant is not None and type(result) is IISEvent:  # a line has no fields but its columns
                result = tenant.stamp([(None, result)], None)[0][1]
            yield f"{path}:{number}", result


def _iter_messages(
    path: str, options: SourceOptions, first_line: bytes, lines: Iterable[Line]
) -> Iterator[FileMessage]:
    reader = message_reader(options)
    # The first reading, as the detector's (core.native.claimer); it reads no tenant: with --tenant-field
    # every line goes the reader's way.
    plain = options.input_format in ("auto", "w3ciislog") and options.tenant is None
    claim = claimer(options.engine) if plain else None
    if _starts_document(first_line):  # a pretty-printed document spans lines
        held = bytearray()  # one buffer, not a list of lines: millions of short lines cost 5x as objects
        skipped: dict[int, int] = {}  # line index -> length of the over-long lines, not held
        size = 0
        for index, raw in enumerate(lines):
            size += raw if isinstance(raw, int) else len(raw)
            if size > options.max_document_bytes:
                detail = (
                    f"JSON document over --max-document-bytes {options.max_document_bytes}: "
                    "the rest of the file is not read"
                )
                yield FileMessage(f"{path}:1", None, [(None, ParseError(Reason.TOO_LARGE, detail))])
                return
            if isinstance(raw, int):
                skipped[index] = raw
            else:
                held += raw
        doc = None
        if not skipped:
            try:
                doc = orjson.loads(held)
            except orjson.JSONDecodeError:
                doc = None
        if doc is not None:
            del held
            for index, record in enumerate(records_of(doc), 1):
                yield FileMessage(f"{path}:record {index}", orjson.dumps(record), reader.read_record(record))
            return
        lines = _held_lines(held, skipped)  # not one document: read it line by line
    for number, raw in enumerate(lines, 1):
        if isinstance(raw, int):
            yield FileMessage(f"{path}:{number}", None, [(None, _too_long(raw, options.max_line_bytes))])
            continue
        line = raw.strip()
        if not line:
            continue
        location = f"{path}:{number}"
        if claim is not None:
            event = claim(line)
            if event is not None:  # a plain W3CIISLog record, read natively
                yield FileMessage(location, line, [(None, event)])
                continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            yield FileMessage(location, line, reader.read_text(line))  # a raw W3C line, or broken JSON
            continue
        records = records_of(doc)
        if len(records) == 1 and records[0] is doc:
            yield FileMessage(location, line, reader.read_record(doc))
            continue
        for record in records:  # an envelope or array on one line: each record a message of its own
            yield FileMessage(location, orjson.dumps(record), reader.read_record(record))


def _held_lines(held: bytearray, skipped: dict[int, int]) -> Iterator[Line]:
    """The lines of a held document again, one at a time, the skipped ones (their lengths) in place."""
    start, index, end_of = 0, 0, len(held)
    while True:
        while index in skipped:
            yield skipped[index]
            index += 1
        if start >= end_of:
            return
        end = held.find(b"\n", start)
        end = end_of if end < 0 else end + 1
        yield bytes(held[start:end])
        start = end
        index += 1


def _starts_document(first_line: bytes) -> bool:
    """A first line that opens a JSON document spanning lines: an array, or an object not closed on it."""
    stripped = first_line.strip()
    if stripped.startswith(b"["):
        return True
    if stripped.startswith(b"{"):
        try:
            orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return True
    return False

"""`iis-portscan produce`: send JSONL/JSON or W3C logs to the input topic, keyed for the detector."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

import orjson
from confluent_kafka import KafkaError, Message, Producer

from streams.core.parse import decode_records, event_from_record, records_of
from streams.core.records import IISEvent, ParseError
from streams.core.timefmt import format_iso_ms
from streams.delivery import producer_config
from streams.processor import routing_key
from streams.settings import Settings
from streams.sources import SourceOptions, _chain_first, _is_w3c, iter_file, open_binary


def event_record(ev: IISEvent) -> dict[str, Any]:
    """A W3C log line as a W3CIISLog JSON record."""
    return {
        "TimeGenerated": format_iso_ms(ev.time_ms),
        "Computer": ev.Computer,
        "cIP": ev.cIP,
        "sIP": ev.sIP,
        "sPort": ev.sPort,
        "csMethod": ev.csMethod,
        "csUriQuery": ev.csUriQuery,
        "csUserName": ev.csUserName,
        "sSiteName": ev.sSiteName,
        "csUserAgent": ev.csUserAgent,
        "scStatus": ev.scStatus,
        "scSubStatus": ev.scSubStatus,
        "scWin32Status": ev.scWin32Status,
        "Type": "W3CIISLog",
    }


def messages(path: str, options: SourceOptions, err: TextIO) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) per record. Invalid records are sent unkeyed: the worker dead-letters them."""
    reader, raw = open_binary(path)
    try:
        first = reader.peek(1)[:1] if hasattr(reader, "peek") else b""
        if _is_w3c(path, first):
            for location, result in iter_file(path, options, reader):
                if isinstance(result, ParseError):
                    err.write(f"{location}: {result}\n")
                    continue
                yield routing_key(result), orjson.dumps(event_record(result))
            return
        first = reader.readline()
        lines: Iterable[bytes] = _chain_first(first, reader)
        if _whole_document(first):  # a pretty-printed array or envelope spans lines: send its records
            data = b"".join(lines)
            try:
                lines = [orjson.dumps(r) for r in records_of(orjson.loads(data))]
            except orjson.JSONDecodeError:  # not one document: JSON lines whose first line is bad
                lines = data.splitlines()
        for line in lines:
            line = line.strip()
            if not line:
                continue
            for index, record in decode_records(line):
                event = record if isinstance(record, ParseError) else event_from_record(record)
                if isinstance(event, ParseError):
                    yield None, line if index is None else orjson.dumps(record)
                else:
                    yield routing_key(event), line if index is None else orjson.dumps(record)
    finally:
        if path != "-":
            raw.close()


def _whole_document(first: bytes) -> bool:
    stripped = first.strip()
    if stripped.startswith(b"["):
        return True
    try:
        orjson.loads(stripped or b"null")
    except orjson.JSONDecodeError:
        return True
    return False


def run_produce(
    paths: Sequence[str], settings: Settings, options: SourceOptions, err: TextIO = sys.stderr
) -> int:
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _msg: Message) -> None:
        if error is not None:
            failures.append(error)

    producer = Producer(
        producer_config(settings.brokers, linger_ms=20, client=settings.kafka_client().librdkafka())
    )
    sent = unkeyed = 0
    try:
        for path in paths or ["-"]:
            for key, value in messages(path, options, err):
                while True:
                    try:
                        producer.produce(settings.input_topic, value=value, key=key, on_delivery=delivered)
                        break
                    except BufferError:
                        producer.poll(0.1)  # local queue full: let deliveries drain
                sent += 1
                unkeyed += key is None
                if sent % 10_000 == 0:
                    producer.poll(0)
    finally:
        remaining = producer.flush(60)
    if remaining or failures:
        err.write(
            f"produce: {len(failures)} failed deliveries, {remaining} not delivered: "
            f"{failures[0] if failures else ''}\n"
        )
        return 1
    err.write(f"produce: {sent} records to {settings.input_topic} ({unkeyed} invalid, sent unkeyed)\n")
    return 0

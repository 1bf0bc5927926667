"""`iis-portscan produce`: send JSONL/JSON or W3C logs to the input topic, keyed for the detector."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

import orjson
from confluent_kafka import KafkaError, Message, Producer

from streams.core.escape import printable
from streams.core.records import IISEvent, ParseError
from streams.core.tenant import TenantSpec
from streams.core.timefmt import format_iso_ms
from streams.core.windows import routing_key
from streams.io.sources import SourceOptions, iter_messages, open_binary
from streams.kafka.client_config import kafka_client
from streams.kafka.producer import producer_config
from streams.settings import ConfigError, Settings


def event_record(ev: IISEvent, tenant_key: str | None = None) -> dict[str, Any]:
    """A W3C log line as a W3CIISLog JSON record; with `tenant_key` (the PATH of a `field:PATH` tenant) the
    event's tenant under that key, where the worker's --tenant-field reads it (core.tenant.lookup reads
    the dotted key itself first)."""
    record = {
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
    if tenant_key is not None:  # never a column of the record (`tenant_key` refuses those)
        record[tenant_key] = ev.tenant
    return record


def tenant_key(spec: TenantSpec | None, ev: IISEvent) -> str | None:
    """Where a W3C line's record carries its tenant: the PATH of `field:PATH` (None: no tenants, or
    `fixed:`, which the worker needs nothing for; files refuse `header:`). A PATH that is one of the
    record's columns is refused: the line's tenant (--tenant-default: a line has no fields but its
    columns) would overwrite that column, or the worker would read the column as a different tenant."""
    if spec is None or spec.source != "field":
        return None
    if spec.name in event_record(ev):
        raise ConfigError(
            f"produce --tenant-field {spec}: a W3C .log line's record has its own {spec.name} column, which "
            "the worker would read as the tenant; name another field for a W3C file (e.g. field:TenantId)"
        )
    return spec.name


def messages(path: str, options: SourceOptions, err: TextIO) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) per message, keyed by the routing key of the event it holds.

    A line of a W3C .log file is sent as its W3CIISLog record (bad lines are reported on `err`, not
    sent). Any other message is sent as it is (a shipper's envelope stays one), an array or envelope
    record by record; a message that holds no event (invalid: the worker dead-letters it; or a W3C
    directive, which the worker needs to read the lines after it) or events of different keys goes
    unkeyed. With a `field:PATH` tenant a W3C line's record carries its tenant at PATH (`tenant_key`)."""
    reader, raw = open_binary(path)
    key_of_tenant: str | None = None
    try:
        for message in iter_messages(path, options, reader):
            if message.value is None:
                for _, result in message.results:
                    if isinstance(result, ParseError):
                        err.write(printable(f"{message.location}: {result}") + "\n")
                        continue
                    if key_of_tenant is None:
                        key_of_tenant = tenant_key(options.tenant, result) or ""
                    record = event_record(result, key_of_tenant or None)
                    yield routing_key(result), orjson.dumps(record)
                continue
            keys = {routing_key(r) if isinstance(r, IISEvent) else None for _, r in message.results}
            yield (keys.pop() if len(keys) == 1 else None), message.value
    finally:
        if path != "-":
            raw.close()


def run_produce(
    paths: Sequence[str], settings: Settings, options: SourceOptions, err: TextIO = sys.stderr
) -> int:
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _msg: Message) -> None:
        if error is not None:
            failures.append(error)

    producer = Producer(
        producer_config(settings.brokers, linger_ms=20, client=kafka_client(settings).librdkafka())
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
            f"{printable(str(failures[0])) if failures else ''}\n"
        )
        return 1
    err.write(
        f"produce: {sent} records to {settings.input_topic} "
        f"({unkeyed} sent unkeyed: invalid, or W3C directives)\n"
    )
    return 0

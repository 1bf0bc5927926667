"""`iis-portscan produce` framing: what each input file becomes as (key, value) messages (no broker)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.cli.produce import messages
from streams.core.windows import routing_key
from streams.io.sources import SourceOptions

GOOD = {"TimeGenerated": "2026-01-01T00:00:00Z", "cIP": "a", "Computer": "b", "sIP": "c", "sPort": 1}


def test_pretty_array_and_envelope_are_sent_record_by_record(tmp_path: Path) -> None:
    arr = tmp_path / "a.json"
    arr.write_bytes(orjson.dumps([GOOD, {"cIP": "x"}], option=orjson.OPT_INDENT_2))
    env = tmp_path / "e.json"
    env.write_bytes(orjson.dumps({"records": [GOOD, GOOD]}, option=orjson.OPT_INDENT_2))
    err = io.StringIO()
    assert [k for k, _ in messages(str(arr), SourceOptions(), err)] == [b"a|b|c", None]
    assert [orjson.loads(v) for _, v in messages(str(env), SourceOptions(), err)] == [GOOD, GOOD]


def test_jsonl_lines_keep_their_bytes_and_bad_lines_go_unkeyed(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(orjson.dumps(GOOD) + b"\n{broken\n\n" + orjson.dumps({"records": [GOOD]}) + b"\n")
    out = list(messages(str(path), SourceOptions(), io.StringIO()))
    assert out == [(b"a|b|c", orjson.dumps(GOOD)), (None, b"{broken"), (b"a|b|c", orjson.dumps(GOOD))]


def test_w3c_lines_become_w3ciislog_records(tmp_path: Path) -> None:
    path = tmp_path / "u_ex.log"
    path.write_text(
        "#Fields: date time c-ip s-ip s-port\n2026-01-01 00:00:00 1.2.3.4 10.0.0.1 80\nbad line\n"
    )
    err = io.StringIO()
    out = list(messages(str(path), SourceOptions(computer="WEB9"), err))
    assert len(out) == 1 and out[0][0] == b"1.2.3.4|WEB9|10.0.0.1"
    assert orjson.loads(out[0][1])["sPort"] == 80
    assert "field-count" in err.getvalue()


def test_bad_first_line_does_not_turn_jsonl_into_a_document(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"\xff\xfe bad\n{broken\n" + orjson.dumps(GOOD) + b"\n")
    out = list(messages(str(path), SourceOptions(), io.StringIO()))
    assert out == [(None, b"\xff\xfe bad"), (None, b"{broken"), (b"a|b|c", orjson.dumps(GOOD))]


class _Message:
    """A consumed Kafka message as the worker's decoder reads it (value, headers, position)."""

    def __init__(self, key: bytes | None, value: bytes) -> None:
        self.key, self.value, self.headers = key, value, None
        self.topic, self.partition, self.offset = "w3ciislog", 0, 7


@pytest.mark.parametrize("path", ["TenantId", "fields.tenant"])
def test_a_w3c_lines_tenant_reaches_the_worker_with_the_same_tenant_field(tmp_path: Path, path: str) -> None:
    """produce --tenant-field field:PATH keyed a W3C line by its tenant (--tenant-default: a line has no
    fields) but sent a record without it, so a worker with the same --tenant-field found none (a dead
    letter, tenant-missing). The record carries it at PATH: the worker's decoder (its fast path, else its
    reader) gives the tenant produce keyed by."""
    from streams.io.sources import message_reader
    from streams.kafka.messages import MessageDecoder
    from streams.settings import Settings

    log = tmp_path / "u_ex.log"
    log.write_text("#Fields: date time c-ip s-ip s-port\n2026-01-01 00:00:00 1.2.3.4 10.0.0.1 80\n")
    producer = Settings(tenant_field=f"field:{path}", tenant_default="contoso", computer="WEB9")
    ((key, value),) = list(messages(str(log), SourceOptions.of(producer), io.StringIO()))
    assert key == b"contoso|1.2.3.4|WEB9|10.0.0.1"
    worker = Settings(tenant_field=f"field:{path}")  # no default: a record without a tenant is refused
    decoder = MessageDecoder(message_reader(SourceOptions.of(worker, files=False)), worker.tenant_spec())
    dead: list[Any] = []
    event = decoder.single(value)
    if event is None:  # a dotted PATH: the reader's way
        events = [ev for _, ev in decoder.events(_Message(key, value), 0, dead, False)]
        assert [d["Reason"] for _, d in dead] == [] and len(events) == 1
        event = events[0]
    assert event.tenant == "contoso"
    assert routing_key(event) == key  # the worker's router keys it as produce did


def test_a_fixed_tenant_needs_nothing_in_the_record_and_a_column_is_refused(tmp_path: Path) -> None:
    from streams.settings import ConfigError, Settings

    log = tmp_path / "u_ex.log"
    log.write_text("#Fields: date time c-ip s-ip s-port\n2026-01-01 00:00:00 1.2.3.4 10.0.0.1 80\n")
    fixed = SourceOptions.of(Settings(tenant_field="fixed:contoso", computer="WEB9"))
    ((key, value),) = list(messages(str(log), fixed, io.StringIO()))
    assert key == b"contoso|1.2.3.4|WEB9|10.0.0.1" and "contoso" not in orjson.loads(value).values()
    column = SourceOptions.of(Settings(tenant_field="field:sSiteName", tenant_default="contoso"))
    with pytest.raises(ConfigError, match="own sSiteName column"):
        list(messages(str(log), column, io.StringIO()))

"""Log, terminal and JSON injection (issue 23, item 3): the client's strings reach the worker's log, the
operator's terminal and every JSON line we publish or print with their controls and bidi characters
escaped; JSON stays valid and decodes to the same value."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import logs
from streams.cli import alerts as alerts_cli
from streams.cli import main
from streams.core.escape import dumps, escape_json, printable
from streams.kafka.messages import DeadLetter
from streams.kafka.publisher import Publisher
from tests.harness import RecordingProducer

FORGED = "\n[2026-01-01 00:00:00,000] INFO iis-portscan: all clear\x1b]0;owned\x07\x1b[2J"
# Every character class the issue names: C0, DEL, C1 (U+009B is CSI), line and paragraph separators,
# bidi embeddings, overrides and isolates, and the bidi marks.
NASTY = "".join(map(chr, [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F),
                          *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]))  # fmt: skip
RAW_IN_JSON = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def no_raw(text: str) -> bool:
    return RAW_IN_JSON.search(text) is None


# --- the escaping functions --------------------------------------------------------------------------


@settings(max_examples=120, deadline=None)
@given(st.recursive(st.text() | st.integers(), lambda k: st.lists(k) | st.dictionaries(st.text(), k)))
def test_json_output_round_trips_and_holds_no_raw_control(value: Any) -> None:
    try:
        plain = orjson.dumps(value)
    except orjson.JSONEncodeError:  # lone surrogates: orjson refuses them, so do we
        return
    out = dumps(value)
    assert orjson.loads(out) == value
    assert no_raw(out.decode())
    if no_raw(plain.decode()):
        assert out is plain or out == plain  # untouched when there is nothing to escape


def test_every_named_character_is_escaped_in_json() -> None:
    out = dumps({"k" + NASTY: NASTY})
    assert no_raw(out.decode()) and out.isascii()
    assert orjson.loads(out) == {"k" + NASTY: NASTY}
    assert escape_json(b'{"a":"plain ascii"}') == b'{"a":"plain ascii"}'


@given(st.text())
def test_printable_leaves_nothing_a_terminal_acts_on(text: str) -> None:
    out = printable(text)
    assert out.isprintable()
    if text.isprintable():
        assert out == text


# --- the worker's log ------------------------------------------------------------------------------


def log_output(fmt: str, message: str, *args: Any, exc: BaseException | None = None) -> str:
    config = logs.logging_config("info", fmt)
    formatter = logs.TextFormatter() if fmt == "text" else logs.JsonFormatter()
    assert config["formatters"]["main"]["()"].endswith(type(formatter).__name__)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("iis-portscan.test-injection")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        if exc is None:
            logger.warning(message, *args)
        else:
            try:
                raise exc
            except type(exc):
                logger.exception(message, *args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_text_log_line_cannot_be_forged_or_drive_the_terminal() -> None:
    out = log_output("text", "bad record from %s", "WEB01" + FORGED + NASTY)
    assert out.count("\n") == 1 and out.endswith("\n")
    assert out[:-1].isprintable()
    assert "\\x0a[2026-01-01 00:00:00,000] INFO iis-portscan: all clear\\x1b]0;owned\\x07" in out


def test_text_log_traceback_keeps_its_lines_but_none_can_pass_for_a_log_line() -> None:
    out = log_output("text", "failed", exc=ValueError("value " + FORGED))
    lines = out.rstrip("\n").split("\n")
    assert len(lines) > 2 and all(line.isprintable() for line in lines)
    assert all(line.startswith("  ") for line in lines[1:]), lines
    assert not any(line.startswith("[") for line in lines[1:])


def test_json_log_escapes_c1_and_bidi() -> None:
    out = log_output("json", "computer %s", NASTY)
    assert out.count("\n") == 1 and no_raw(out[:-1])
    assert orjson.loads(out)["message"] == "computer " + NASTY


# --- the terminal: iis-portscan alerts ------------------------------------------------------------------


ALERT: dict[str, Any] = {
    "Phase": "early",
    "Revision": 1,
    "TimeGenerated": "2026-01-01T00:00:00.000Z",
    "cIP": "198.51.100.7\x1b[2J",
    "Computer": "WEB01" + FORGED,
    "sIP": "10.0.0.1\u202e",
    "portCount": 30,
    "DistinctPortCount": 30,
    "ConnectionsCount": 31,
    "AlertId": "a",
}


def test_pretty_row_is_one_printable_line() -> None:
    row = alerts_cli.pretty(ALERT)
    assert row.isprintable() and "\n" not in row
    assert "\\x1b[2J" in row and "\\u202e" in row


def test_json_lines_of_the_follower_are_escaped_and_the_same_value() -> None:
    line = alerts_cli.json_line(ALERT)
    assert "\n" not in line and no_raw(line) and line.isascii()
    assert orjson.loads(line) == ALERT


# --- what we publish -----------------------------------------------------------------------------------


def test_published_alerts_and_dead_letters_are_escaped() -> None:
    producer = RecordingProducer()
    publisher = Publisher(producer, "alerts", "dlq")  # type: ignore[arg-type]
    letter: DeadLetter = (b"k", {"Reason": "invalid_json", "Detail": NASTY})
    publisher.send([ALERT], [letter])
    for _, _, value in producer.sent:
        assert value is not None and no_raw(value.decode()), value
    assert producer.on("alerts") == [ALERT]
    assert producer.on("dlq") == [letter[1]]


def test_replay_output_and_report_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = [
        {
            "TimeGenerated": f"2026-01-01T12:00:{i % 60:02d}Z",
            "cIP": "198.51.100.7",
            "Computer": "WEB01",
            "sIP": "10.0.0.11",
            "sPort": 1000 + i,
            "csUserAgent": "agent\u202e\x85\u2028" + FORGED,
        }
        for i in range(40)
    ]
    lines = [orjson.dumps(r) for r in records]
    lines.append(orjson.dumps({**records[0], "TimeGenerated": FORGED}))  # bad: reported on stderr
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "alerts.jsonl"
    assert main(["replay", str(path), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    (alert_line,) = out.read_bytes().splitlines()
    assert no_raw(alert_line.decode())
    assert orjson.loads(alert_line)["set_csUserAgent"] == ["agent\u202e\x85\u2028" + FORGED]
    assert all(line.isprintable() for line in err.splitlines()), err
    assert len(err.splitlines()) == 2, err  # the bad record's line and the summary


def test_a_hostile_tenant_is_escaped_in_the_table_and_the_json() -> None:
    alert = {**ALERT, "TenantId": "contoso\x1b]0;owned\x07\u202e" + FORGED}
    row = alerts_cli.pretty(alert)
    assert row.isprintable() and "\n" not in row and "tenant contoso\\x1b]0;owned\\x07\\u202e" in row
    line = alerts_cli.json_line(alert)
    assert no_raw(line) and line.isascii() and orjson.loads(line) == alert

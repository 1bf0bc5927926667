"""`iis-portscan produce` framing: what each input file becomes as (key, value) messages (no broker)."""

from __future__ import annotations

import io
from pathlib import Path

import orjson

from streams.cli.produce import messages
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

"""`iis-portscan replay` as a user runs it: files of every format, bad lines reported, order of output."""

from __future__ import annotations

import gzip
import io
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.cli import main
from streams.core.offline import offline_alerts
from streams.core.parse import event_from_record
from streams.core.records import IISEvent
from streams.io.sample import Workload, generate

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "iis" / "elastic-beats-iis-access-test.log"


def run(
    args: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> tuple[int, list[dict[str, Any]], str]:
    out = tmp_path / "alerts.jsonl"
    code = main(["replay", *args, "--output", str(out)])
    err = capsys.readouterr().err
    alerts = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    return code, alerts, err


def scan_records(cip: str, ports: range, t0: str = "2026-01-01T12:0") -> list[dict[str, Any]]:
    return [
        {
            "TimeGenerated": f"{t0}{i % 10}:0{i % 7}.5Z",
            "cIP": cip,
            "Computer": "WEB01",
            "sIP": "10.0.0.11",
            "sPort": p,
            "scStatus": "404",
            "scSubStatus": "0",
            "scWin32Status": "2",
        }
        for i, p in enumerate(ports)
    ]


def test_fixture_every_line_parsed_or_reported(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, alerts, err = run([str(FIXTURE), "--threshold", "1", "--computer", "IIS01"], capsys, tmp_path)
    assert code == 0
    assert len(alerts) == 2 and {a["ConnectionsCount"] for a in alerts} == {1}
    assert all(a["Computer"] == "IIS01" for a in alerts)
    assert f"{FIXTURE}:10: missing-field" in err
    assert f"{FIXTURE}:16: field-count" in err and f"{FIXTURE}:17: field-count" in err
    assert "2 events" in err and "3 bad records" in err


def test_formats_gzip_envelope_array_w3c_and_stdin(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = scan_records("198.51.100.1", range(1, 41))
    b = scan_records("198.51.100.2", range(100, 135))
    c = scan_records("198.51.100.3", range(200, 232))
    with gzip.open(tmp_path / "a.jsonl.gz", "wb") as fh:
        fh.write(b"\n".join(orjson.dumps(r) for r in a[:20]) + b"\n\n")
    (tmp_path / "a2.json").write_bytes(orjson.dumps({"records": a[20:]}, option=orjson.OPT_INDENT_2))
    (tmp_path / "b.json").write_bytes(orjson.dumps(b, option=orjson.OPT_INDENT_2))
    site = tmp_path / "W3SVC3"
    site.mkdir()
    lines = [
        "#Software: Microsoft Internet Information Services 10.0",
        "#Fields: time c-ip s-ip s-port cs-method",
        "#Date: 2026-01-01 12:00:00",
    ]
    lines += [f"12:0{i % 10}:00 198.51.100.3 10.0.0.11 {r['sPort']} GET" for i, r in enumerate(c)]
    (site / "u_ex260101.log").write_text("\r\n".join(lines) + "\r\n")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n".join(orjson.dumps(r) for r in b))))
    args = [
        str(tmp_path / "a.jsonl.gz"),
        str(tmp_path / "a2.json"),
        str(tmp_path / "b.json"),
        str(site / "u_ex260101.log"),
        "-",
        "--computer",
        "WEB01",
    ]
    code, alerts, err = run(args, capsys, tmp_path)
    assert code == 0, err
    by_ip = {x["cIP"]: x for x in alerts}
    assert by_ip["198.51.100.1"]["portCount"] == 40
    assert by_ip["198.51.100.2"]["ConnectionsCount"] == 70  # file and stdin: the same events twice
    assert by_ip["198.51.100.2"]["portCount"] == 35
    assert by_ip["198.51.100.3"]["set_sSiteName"] == ["W3SVC3"]
    assert [x["portCount"] for x in alerts] == [40, 35, 32]
    assert "0 bad records" in err


def test_bad_lines_reported_and_counted_never_stop_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = scan_records("198.51.100.9", range(1, 31))
    raw = [orjson.dumps(r) for r in good]
    raw.insert(3, b"{broken json")
    raw.insert(7, b'{"cIP": "x"}')
    raw.insert(9, b"\xff\xfe not utf8")
    raw.insert(12, b'{"TimeGenerated": "2026-13-01T00:00:00Z", "cIP": "a", "Computer": "b", "sIP": "c"}')
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(raw) + b"\n")
    code, alerts, err = run([str(path), str(tmp_path / "missing.jsonl")], capsys, tmp_path)
    assert code == 1  # a file could not be opened; everything readable was still processed
    assert len(alerts) == 1 and alerts[0]["portCount"] == 30
    assert f"{path}:4: invalid-json" in err
    assert f"{path}:8: missing-field" in err
    assert f"{path}:10: undecodable" in err
    assert f"{path}:13: invalid-time" in err
    assert "missing.jsonl: cannot open" in err
    assert "4 bad records" in err


def test_any_order_same_alerts_sorted(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    records = list(generate(Workload(events=30_000, seed=5, scan_share=0.15)))
    random.Random(1).shuffle(records)
    path = tmp_path / "shuffled.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records))
    code, alerts, _ = run([str(path)], capsys, tmp_path)
    assert code == 0
    expected = offline_alerts(e for e in map(event_from_record, records) if isinstance(e, IISEvent))
    assert alerts == orjson.loads(orjson.dumps(expected))
    keys = [(-x["portCount"], x["TimeGenerated"], x["cIP"]) for x in alerts]
    assert keys == sorted(keys) and len(alerts) > 3


def test_options_change_the_rule(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in scan_records("198.51.100.4", range(1, 201))))
    _, default, _ = run([str(path)], capsys, tmp_path)
    assert default[0]["portCount"] == 128 and default[0]["DistinctPortCount"] == 200
    _, unlimited, _ = run([str(path), "--max-set-size", "0"], capsys, tmp_path)
    assert unlimited[0]["portCount"] == 200
    _, none, _ = run(
        [str(path), "--threshold", "129", "--max-set-size", "0", "--bin", "1s"], capsys, tmp_path
    )
    assert none == []


def test_installed_console_script(tmp_path: Path) -> None:
    exe = shutil.which("iis-portscan", path=str(Path(sys.executable).parent))
    assert exe, "the iis-portscan console script is not installed in this environment"
    data = b"\n".join(orjson.dumps(r) for r in scan_records("198.51.100.5", range(1, 31)))
    proc = subprocess.run([exe, "replay", "-"], input=data, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert [orjson.loads(x)["portCount"] for x in proc.stdout.splitlines()] == [30]
    bad = subprocess.run(
        [exe, "replay", "--threshold", "500"], input=b"", capture_output=True, timeout=60, check=False
    )
    assert bad.returncode == 2 and b"never be reached" in bad.stderr


def test_replay_takes_computer_and_dash_as_empty_from_the_environment_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PORTSCAN_COMPUTER and PORTSCAN_W3C_DASH_AS_EMPTY reach replay as they reach the worker (before,
    replay read only its own --computer and --w3c-dash-as-empty flags)."""
    log = Path(__file__).resolve().parents[1] / "data" / "shippers" / "W3SVC1" / "u_ex260101.log"
    monkeypatch.setenv("PORTSCAN_COMPUTER", "FROM-ENV")
    monkeypatch.setenv("PORTSCAN_W3C_DASH_AS_EMPTY", "true")
    code, alerts, _ = run([str(log)], capsys, tmp_path)
    assert code == 0 and len(alerts) == 2
    assert {a["Computer"] for a in alerts} == {"FROM-ENV"}
    assert all("-" not in a["set_csUserName"] for a in alerts)
    monkeypatch.delenv("PORTSCAN_W3C_DASH_AS_EMPTY")
    code, alerts, _ = run([str(log), "--computer", "FROM-FLAG"], capsys, tmp_path)
    assert {a["Computer"] for a in alerts} == {"FROM-FLAG"}  # the flag wins over the variable
    assert any("-" in a["set_csUserName"] for a in alerts)


def test_replay_reads_a_line_as_the_stream_does_whatever_a_whole_record_parse_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record with a number past a double's range in a column the rule does not read is an event to
    the stream (its first reading skips that field), so it is one to replay too, with either engine
    (replay --engine python dead-lettered it as invalid-json: a scan the stream alerted on was missed)."""
    from streams.core.native import native_problem
    from streams.core.parse import single_event

    base = '{"TimeGenerated":"2026-01-01T10:00:00Z","cIP":"10.0.0.1","Computer":"web1","sIP":"10.1.1.1",'
    lines = [
        f'{base}"sPort":{1000 + i},"csMethod":"GET","csUriQuery":"-","csUserName":"-","sSiteName":"W3SVC1",'
        f'"csUserAgent":"a","scStatus":"200","scSubStatus":"0","scWin32Status":"0",'
        f'"x":{"-" if i % 2 else ""}1e400}}'
        for i in range(40)
    ]
    assert all(single_event(line.encode()) is not None for line in lines)  # what the detector reads
    source = tmp_path / "inf.jsonl"
    source.write_text("\n".join(lines) + "\n")
    for engine in ("python",) if native_problem() else ("python", "native"):
        assert main(["replay", str(source), "--engine", engine, "--output", str(tmp_path / "out.jsonl")]) == 0
        assert "40 events, 1 windows, 1 alerts, 0 bad records" in capsys.readouterr().err

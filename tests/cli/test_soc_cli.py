"""`replay --allowlist`, `--notify`, `--sweep`, `--alert-entities` as a user runs them, and the worker's
allowlist gate (streams.kafka.gate) reloading a changed file, keeping the old list for a bad one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.cli import main
from streams.core.offline import offline_alerts
from streams.core.parse import event_from_record
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.io.allowlist_file import AllowlistFile
from streams.io.sample import Workload, generate
from streams.kafka.gate import Gate
from streams.settings import ConfigError, Settings


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    records = list(generate(Workload(events=8000, seed=4, span_ms=3_600_000)))
    path = tmp_path_factory.mktemp("soc") / "sample.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records))
    events = [e for e in map(event_from_record, records) if isinstance(e, IISEvent)]
    return path, offline_alerts(events)


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_replay_allowlist_notify_entities(
    sample: tuple[Path, list[dict[str, Any]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, alerts = sample
    top = alerts[0]["cIP"]
    allowlist = tmp_path / "allowlist.csv"
    allowlist.write_text(f"field,value,reason\ncIP,{top},pen test\n")
    out, notes = tmp_path / "alerts.jsonl", tmp_path / "notes.jsonl"
    args = ["--allowlist", str(allowlist), "--notify", str(notes), "--alert-entities", "true"]
    code = main(["replay", str(path), *args, "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 0
    got = lines(out)
    want = [a for a in alerts if a["cIP"] != top]
    assert [a["AlertId"] for a in got] == [a["AlertId"] for a in want]
    assert all(a["AlertDisplayName"].startswith("Port scan from ") and a["AllowlistVersion"] for a in got)
    suppressed = len(alerts) - len(want)
    pages = [n for n in lines(notes) if n["Kind"] == "page"]
    assert len(pages) >= len({a["cIP"] for a in want})  # one per client and hour
    assert f"{suppressed} allowlisted, {len(pages)} notifications" in err


def test_replay_refuses_a_bad_allowlist_naming_the_line(
    sample: tuple[Path, list[dict[str, Any]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = sample
    allowlist = tmp_path / "allowlist.csv"
    allowlist.write_text("field,value\ncIP,1.2.3.4\nuser,bob\n")
    assert main(["replay", str(path), "--allowlist", str(allowlist)]) == 2
    assert f"{allowlist}:3: field must be one of" in capsys.readouterr().err


def test_sweep_table_and_output_dir(
    sample: tuple[Path, list[dict[str, Any]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, alerts = sample
    out_dir = tmp_path / "sweep"
    code = main(
        [
            "replay",
            str(path),
            "--sweep",
            "threshold=20,30",
            "--sweep",
            "bin=10m",
            "--output-dir",
            str(out_dir),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    rows = [line.split() for line in captured.out.splitlines()]
    assert rows[0] == ["bin", "threshold", "windows", "clients", "notifications"]
    by = {(r[0], int(r[1])): r for r in rows[1:]}
    assert int(by[("10m", 30)][2]) == len(alerts)
    assert int(by[("10m", 30)][3]) == len({a["cIP"] for a in alerts})
    assert lines(out_dir / "alerts-bin10m-threshold30.jsonl") == alerts
    events = [event_from_record(orjson.loads(line)) for line in path.read_bytes().splitlines()]
    valid = [e for e in events if isinstance(e, IISEvent)]
    assert lines(out_dir / "alerts-bin10m-threshold20.jsonl") == offline_alerts(
        valid, RuleParams(threshold=20)
    )
    assert "read once" in captured.err
    assert main(["replay", str(path), "--sweep", "ports=3"]) == 2


def test_settings_of_notifications_are_validated() -> None:
    with pytest.raises(ConfigError, match="multiple of --bin"):
        Settings(suppress_for=15 * 60_000, bin=10 * 60_000)
    with pytest.raises(ConfigError, match="notify-by"):
        Settings(notify_by="cIP,user")
    with pytest.raises(ConfigError, match="notify-by"):
        Settings(notify_by="cIP,cIP")
    assert Settings(notify_by="cIP, sIP").notify_params().by == ("cIP", "sIP")


def test_gate_reloads_a_changed_file_and_keeps_the_old_list_for_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "allowlist.jsonl"
    path.write_text('{"field": "cIP", "value": "198.51.100.7"}\n')
    gate = Gate(RuleParams(), AllowlistFile(str(path)))
    assert gate.allowlist is not None and len(gate.allowlist) == 1
    first = gate.allowlist.version
    gate.refresh()
    assert gate.allowlist.version == first  # unchanged file: not read again
    path.write_text('{"field": "cIP", "value": "198.51.100.7"}\n{"field": "sIP", "value": "10.0.0.0/8"}\n')
    os.utime(path, ns=(1, 1))  # a new mtime even within the file system's timestamp granularity
    gate.refresh()
    assert len(gate.allowlist) == 2 and gate.counts["allowlist_reloads"] == 2
    second = gate.allowlist.version
    path.write_text('{"field": "cIP", "value": "not closed\n')
    gate.refresh()
    assert gate.allowlist.version == second and gate.counts["allowlist_errors"] == 1
    alert = {
        "cIP": "203.0.113.1",
        "Computer": "W",
        "sIP": "10.1.1.1",
        "WindowStart": "2026-01-01T00:00:00.000Z",
    }
    kept, writes = gate.judge(0, [dict(alert), dict(alert, sIP="192.0.2.1")], 0)
    assert [a["sIP"] for a in kept] == ["192.0.2.1"] and writes == {}
    assert gate.allowlisted == {"sIP:10.0.0.0/8": 1}

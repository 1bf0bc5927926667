"""`iis-portscan replay` and `produce` over files of shipper messages, as a user runs them.

Every fixture of tests/data/shippers holds the same IIS requests in one shipper's shape; `replay` must
print exactly the alerts it prints for their W3CIISLog twin.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from streams.cli.produce import messages
from streams.core.parse import event_from_record
from streams.core.records import IISEvent
from streams.core.windows import routing_key
from streams.io.sources import SourceOptions

DATA = Path(__file__).resolve().parents[1] / "data" / "shippers"
SHIPPERS = ("filebeat", "fluentbit", "vector", "cribl", "logstash", "ecs-envelope", "ecs", "nxlog")


def exe() -> str:
    found = shutil.which("iis-portscan", path=str(Path(sys.executable).parent))
    assert found, "the console script is installed in the venv"
    return found


def replay(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> tuple[int, bytes, str]:
    proc = subprocess.run(
        [exe(), "replay", *args], input=stdin, capture_output=True, timeout=120, check=False, env=env
    )
    return proc.returncode, proc.stdout, proc.stderr.decode()


@pytest.fixture(scope="module")
def twin_alerts() -> bytes:
    code, out, err = replay(str(DATA / "w3ciislog.jsonl"))
    assert code == 0, err
    assert len(out.splitlines()) == 2 and "236 events" in err and "0 bad records" in err
    return out


@pytest.mark.parametrize("name", SHIPPERS)
def test_replay_of_each_shippers_file_prints_the_twins_alerts(name: str, twin_alerts: bytes) -> None:
    code, out, err = replay(str(DATA / f"{name}.jsonl"))
    assert code == 0, err
    assert out == twin_alerts
    assert "236 events" in err and "0 bad records" in err


def test_replay_mixed_formats_the_log_and_stdin(twin_alerts: bytes) -> None:
    for args, stdin in (
        ([str(DATA / "mixed.jsonl"), "--computer", "WEB01"], None),  # bare lines name no host
        ([str(DATA / "W3SVC1" / "u_ex260101.log"), "--computer", "WEB01"], None),
        (["-"], (DATA / "filebeat.jsonl").read_bytes()),
    ):
        code, out, err = replay(*args, stdin=stdin)
        assert code == 0, err
        assert out == twin_alerts, args
        assert "0 bad records" in err


def test_input_format_and_w3c_fields_flags(tmp_path: Path) -> None:
    code, out, err = replay(str(DATA / "filebeat.jsonl"), "--input-format", "ecs")
    assert code == 0 and out == b"" and "236 bad records (missing-field 236)" in err
    assert "filebeat.jsonl:1: missing-field: ECS document: source.ip is missing" in err
    # Header-less lines in another layout: the field list from the flag (or PORTSCAN_W3C_FIELDS).
    layout = "date time s-sitename s-ip s-port c-ip"
    lines = []
    for i, port in enumerate(range(1000, 1035)):  # one request every 10 s from 00:00:00, ports 1000-1034
        text = f"2026-01-01 00:{i // 6:02d}:{i % 6}0 W3SVC3 10.0.0.1 {port} 192.0.2.9"
        lines.append(orjson.dumps({"message": text, "host": "H", "source_type": "file"}))
    path = tmp_path / "vector.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    code, out, err = replay(str(path), "--w3c-fields", layout)
    assert code == 0, err
    [alert] = [orjson.loads(x) for x in out.splitlines()]
    assert (alert["portCount"], alert["set_sSiteName"], alert["Computer"]) == (35, ["W3SVC3"], "H")
    env = {"PORTSCAN_W3C_FIELDS": layout, "PATH": str(Path(sys.executable).parent)}
    assert replay(str(path), env=env)[1] == out
    assert "field-count" in replay(str(path))[2]  # the default layout does not fit these lines
    code, _, err = replay(str(path), "--w3c-fields", "date time s-port")
    assert code == 2 and "--w3c-fields" in err and "does not hold c-ip, s-ip" in err
    code, _, err = replay(str(path), "--input-format", "yaml")
    assert code == 2 and "--input-format" in err


def test_produce_sends_shipper_messages_as_they_are_keyed_like_their_events() -> None:
    twin = [event_from_record(orjson.loads(x)) for x in (DATA / "w3ciislog.jsonl").read_bytes().splitlines()]
    keys = [routing_key(e) for e in twin if isinstance(e, IISEvent)]
    for name in ("fluentbit", "ecs", "nxlog"):
        path = DATA / f"{name}.jsonl"
        sent = list(messages(str(path), SourceOptions(), io.StringIO()))
        assert [
            value for _, value in sent
        ] == path.read_bytes().splitlines()  # the shipper's bytes, unchanged
        assert [key for key, _ in sent if key is not None] == keys
        assert sum(key is None for key, _ in sent) == (8 if name == "fluentbit" else 0)  # its directives
    err = io.StringIO()
    log = list(messages(str(DATA / "W3SVC1" / "u_ex260101.log"), SourceOptions(computer="WEB01"), err))
    assert [key for key, _ in log] == keys and not err.getvalue()  # a .log becomes W3CIISLog records
    assert orjson.loads(log[0][1])["sSiteName"] == "W3SVC1"

"""Alerts that downstream systems accept (issue 23, item 5): a byte budget per set and for the whole alert,
small by default and raisable; counts exact; `replay` and the stream trim alike; NUL written as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.cli import main
from streams.core.alerts import NUL_TEXT, SET_COLUMNS, TRIMMABLE
from streams.core.escape import dumps
from streams.core.offline import offline_alerts
from streams.core.records import IISEvent
from streams.core.rule import DEFAULT_MAX_ALERT_BYTES, DEFAULT_MAX_SET_BYTES, RuleConfigError, RuleParams
from streams.settings import ConfigError, Settings

from .test_engine import NOW, PARAMS, T0, Sim, offsets

ISSUE_SIZE = 515_000  # the issue's alert: 130 requests, 516 KB, portCount after byte 515,300


def scanner(requests: int = 130, query: str = "q", agent: str = "ua") -> list[IISEvent]:
    """One client, one port per request, with long client-controlled strings (cut at 1,024 bytes)."""
    return [
        IISEvent(
            T0 + i,
            "203.0.113.9",
            "WEB01",
            "10.0.0.11",
            1000 + i,
            csMethod=f"{i:03d}M{'E' * 1100}",
            csUriQuery=f"{query}={i:03d}{'x' * 1100}",
            csUserName=f"{i:03d}user{'u' * 1100}",
            sSiteName=f"{i:03d}W3SVC{'1' * 1100}",
            csUserAgent=f"{i:03d}{agent}{'a' * 1100}",
            scStatus="404",
            scSubStatus="0",
            scWin32Status="2",
        )
        for i in range(requests)
    ]


def check_budget(alert: dict[str, Any], max_alert: int, max_set: int) -> None:
    assert len(dumps(alert)) <= max_alert
    for name in TRIMMABLE:
        assert len(dumps(alert[name])) <= max_set, name
    assert alert["ConnectionsCount"] == alert["DistinctPortCount"] == 130
    assert alert["portCount"] == 128  # capped by --max-set-size, as the rule's makeset


def test_the_issue_alert_is_small_by_default_with_exact_counts() -> None:
    unbounded = RuleParams(max_alert_bytes=900_000, max_set_bytes=900_000)
    (big,) = offline_alerts(scanner(), unbounded)
    assert len(dumps(big)) > ISSUE_SIZE  # the alert the issue measured
    (alert,) = offline_alerts(scanner())
    check_budget(alert, DEFAULT_MAX_ALERT_BYTES, DEFAULT_MAX_SET_BYTES)
    assert set(alert["TrimmedSets"]) == {"set_csMethod", "set_decodedUriQuery", "set_csUserName",
                                         "set_sSiteName", "set_csUserAgent"}  # fmt: skip
    for name in alert["TrimmedSets"]:  # members dropped from the end: what is left is big's first ones
        assert alert[name] and alert[name] == big[name][: len(alert[name])]
    assert alert["set_sPort"] == big["set_sPort"]
    assert {k: v for k, v in alert.items() if k not in (*SET_COLUMNS, "TrimmedSets", "Parameters")} == {
        k: v for k, v in big.items() if k not in (*SET_COLUMNS, "TrimmedSets", "Parameters")
    }


def test_the_budgets_are_raisable_and_recorded_in_the_alert() -> None:
    params = RuleParams(max_alert_bytes=200_000, max_set_bytes=50_000)
    (alert,) = offline_alerts(scanner(), params)
    check_budget(alert, 200_000, 50_000)
    assert len(dumps(alert)) > 150_000
    assert alert["Parameters"]["MaxAlertBytes"] == 200_000 and alert["Parameters"]["MaxSetBytes"] == 50_000
    with pytest.raises(RuleConfigError):
        RuleParams(max_alert_bytes=1_000_000)  # above max record bytes
    with pytest.raises(RuleConfigError):
        RuleParams(max_alert_bytes=1000)
    settings = Settings.load(None, {"PORTSCAN_MAX_ALERT_BYTES": "65536", "PORTSCAN_MAX_SET_BYTES": "8192"})
    assert (settings.rule_params().max_alert_bytes, settings.rule_params().max_set_bytes) == (65_536, 8_192)
    with pytest.raises(ConfigError):
        Settings.load(None, {"PORTSCAN_ALERT_NUL": "drop"})


def test_ports_are_trimmed_last_and_portcount_stays_exact() -> None:
    events = [IISEvent(T0 + p, "203.0.113.9", "WEB01", "10.0.0.11", p) for p in range(5000)]
    (alert,) = offline_alerts(events, RuleParams(max_set_size=0))
    assert alert["portCount"] == alert["DistinctPortCount"] == 5000
    assert "set_sPort" in alert["TrimmedSets"]
    assert alert["set_sPort"] == list(range(len(alert["set_sPort"])))  # the smallest ports kept
    assert len(dumps(alert["set_sPort"])) <= DEFAULT_MAX_SET_BYTES


def test_stream_and_replay_trim_alike() -> None:
    events = scanner()
    sim = Sim(PARAMS)
    sim.feed(offsets(events))
    sim.tick(NOW + 120_000)  # idle: the window closes, its final alert goes out
    (final,) = [a for a in sim.published if a["Phase"] == "final"]
    (replayed,) = offline_alerts(events)
    assert {k: v for k, v in final.items() if k not in ("Revision", "Phase")} == replayed
    assert len(dumps(final)) <= DEFAULT_MAX_ALERT_BYTES


def test_nul_is_text_by_default_and_kept_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [
        IISEvent(T0 + p, "203.0.113.9", "WEB01", "10.0.0.11", p, csUriQuery=f"id=1%00{p % 2}&x=%00")
        for p in range(40)
    ]
    (alert,) = offline_alerts(events)
    data = dumps(alert)
    assert b"\\u0000" not in data.replace(b"\\\\u0000", b"")  # no JSON NUL escape: jsonb accepts it
    assert alert["set_decodedUriQuery"] == sorted({f"id=1{NUL_TEXT}{p}&x={NUL_TEXT}" for p in (0, 1)})
    (kept,) = offline_alerts(events, RuleParams(nul_as_text=False))
    assert kept["set_decodedUriQuery"] == ["id=1\x000&x=\x00", "id=1\x001&x=\x00"]
    # replay takes the setting, and so does the worker (the same Settings.rule_params)
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records_of(events)))
    for flag, want in (([], alert), (["--alert-nul", "keep"], kept)):
        out = tmp_path / "out.jsonl"
        assert main(["replay", str(path), "--output", str(out), *flag]) == 0
        assert orjson.loads(out.read_bytes())["set_decodedUriQuery"] == want["set_decodedUriQuery"]
    capsys.readouterr()


def records_of(events: list[IISEvent]) -> list[dict[str, Any]]:
    from streams.core.parse import event_record

    return [event_record(e) for e in events]

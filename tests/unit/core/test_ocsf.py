"""Alerts as OCSF Detection Findings: the mapping, activity per phase, determinism, hostile keys, size."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import orjson
import pytest

from streams.core.aggregate import WindowAgg
from streams.core.alerts import RULE_COLUMNS, build_alert
from streams.core.engine import PartitionEngine, StreamParams
from streams.core.ocsf import OCSF_VERSION, is_hostname, is_ip, revision_of, to_ocsf
from streams.core.offline import offline_alerts
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.core.state_records import Meta, encode_writes
from streams.core.windows import META_KEY, WindowKey

T0 = 1_767_268_800_000  # 2026-01-01T12:00:00Z
BIN = 600_000
NOW = T0 + 30 * BIN
STREAM = StreamParams(grace_ms=120_000, idle_timeout_ms=60_000, retention_ms=3_600_000, max_skew_ms=10**12)
EXAMPLE = resources.files("streams") / "schemas" / "examples" / "alert.example.json"


def example_alert() -> dict[str, Any]:
    return dict(json.loads(EXAMPLE.read_text()))


def ev(
    t: int, port: int, cip: str = "198.51.100.7", computer: str = "WEB01", sip: str = "10.0.0.11"
) -> IISEvent:
    return IISEvent(t, cip, computer, sip, port)


def stream(batches: list[list[IISEvent]], params: StreamParams = STREAM) -> list[dict[str, Any]]:
    """Every alert the engine publishes over the batches (a dict store, writes after alerts)."""
    store: dict[bytes, bytes] = {}
    engine = PartitionEngine(params, Meta.from_bytes(store.get(META_KEY)), NOW)
    published: list[dict[str, Any]] = []
    offset = 0
    for events in batches:
        batch = list(enumerate(events, offset))
        offset += len(events)
        plan = engine.plan(batch)
        out = engine.step(plan, {k: store.get(k) for k in plan.load}, NOW)
        published.extend(out.alerts)
        store.update(encode_writes(out.writes))
    return published


def scan_batches() -> list[list[IISEvent]]:
    """A window that alerts early, is closed by another client's event (final), then revised (late)."""
    return [
        [ev(T0 + i, i) for i in range(30)],
        [ev(T0 + BIN + 120_000, 1, cip="203.0.113.50")],
        [ev(T0 + 5, 999)],
    ]


def test_example_alert_maps_to_a_detection_finding() -> None:
    alert = example_alert()
    rec = to_ocsf(alert)
    assert (rec["class_uid"], rec["category_uid"], rec["activity_id"], rec["type_uid"]) == (
        2004,
        2,
        1,
        200401,
    )
    assert (rec["class_name"], rec["category_name"], rec["activity_name"], rec["type_name"]) == (
        "Detection Finding",
        "Findings",
        "Create",
        "Detection Finding: Create",
    )
    assert (rec["severity_id"], rec["severity"], rec["status_id"], rec["status"]) == (3, "Medium", 1, "New")
    info = rec["finding_info"]
    assert info["uid"] == alert["AlertId"]
    assert info["title"] == alert["RuleName"]
    assert info["analytic"] == {
        "uid": "44a555d8-ecee-4a25-95ce-055879b4b14b",
        "name": "High count of connections by client IP on many ports",
        "type_id": 1,
        "type": "Rule",
        "version": alert["RuleVersion"],
    }
    assert info["attacks"] == [
        {
            "tactic": {"uid": "TA0001", "name": "Initial Access"},
            "technique": {"uid": "T1190", "name": "Exploit Public-Facing Application"},
        }
    ]
    first, last = 1_767_269_400_007, 1_767_269_436_007  # FirstSeen, LastSeen of the example
    assert (info["first_seen_time"], info["last_seen_time"]) == (first, last)
    assert (rec["time"], rec["start_time"], rec["end_time"], rec["duration"]) == (last, first, last, 36_000)
    assert rec["count"] == alert["ConnectionsCount"] == 31
    meta = rec["metadata"]
    assert meta["version"] == OCSF_VERSION
    assert meta["product"]["name"] == "iis-portscan" and meta["product"]["vendor_name"]
    assert meta["correlation_uid"] == alert["AlertId"]
    assert (meta["sequence"], meta["uid"]) == (63, f"{alert['AlertId']}:63")  # replay: 2 x 31 + 1
    assert rec["evidences"] == [
        {
            "src_endpoint": {"ip": "203.0.113.9"},
            "dst_endpoint": {"ip": "10.0.0.11", "hostname": "WEB01.contoso.local"},
        }
    ]
    assert [(o["name"], o["type_id"], o["value"]) for o in rec["observables"]] == [
        ("evidences.src_endpoint.ip", 2, "203.0.113.9"),
        ("evidences.dst_endpoint.ip", 2, "10.0.0.11"),
        ("evidences.dst_endpoint.hostname", 1, "WEB01.contoso.local"),
    ]
    assert "203.0.113.9" in rec["message"] and "31 distinct ports" in rec["message"]


def test_unmapped_is_the_alert_unchanged_and_the_alert_is_not_touched() -> None:
    alert = example_alert()
    before = copy.deepcopy(alert)
    rec = to_ocsf(alert)
    assert rec["unmapped"] == before == alert
    assert tuple(rec["unmapped"])[:16] == RULE_COLUMNS
    assert rec["unmapped"] is not alert


def test_deterministic() -> None:
    alert = example_alert()
    assert orjson.dumps(to_ocsf(alert)) == orjson.dumps(to_ocsf(copy.deepcopy(alert)))
    assert orjson.dumps(to_ocsf(alert, 900_000)) == orjson.dumps(to_ocsf(alert))


@pytest.mark.parametrize(
    ("phase", "activity", "type_uid"),
    [(None, 1, 200401), ("early", 1, 200401), ("final", 2, 200402), ("late", 2, 200402)],
)
def test_activity_follows_the_phase(phase: str | None, activity: int, type_uid: int) -> None:
    alert = example_alert()
    if phase is not None:
        alert.update(Revision=62, Phase=phase)
    rec = to_ocsf(alert)
    assert (rec["activity_id"], rec["type_uid"]) == (activity, type_uid)
    assert rec["activity_name"] == ("Create" if activity == 1 else "Update")
    assert rec["metadata"]["sequence"] == (63 if phase is None else 62)


def test_stream_revisions_then_replay_agree() -> None:
    batches = scan_batches()
    published = stream(batches)
    assert [a["Phase"] for a in published] == ["early", "final", "late"]
    records = [to_ocsf(a) for a in published]
    assert [r["activity_id"] for r in records] == [1, 2, 2]
    assert len({r["finding_info"]["uid"] for r in records}) == 1
    assert len({r["metadata"]["uid"] for r in records}) == 3
    sequences = [r["metadata"]["sequence"] for r in records]
    assert sequences == sorted(sequences) == [a["Revision"] for a in published]
    times = [r["time"] for r in records]
    assert times == sorted(times)
    (replayed,) = offline_alerts(e for batch in batches for e in batch)
    assert revision_of(replayed) == published[-1]["Revision"]
    latest, offline = records[-1], to_ocsf(replayed)

    def shared(rec: dict[str, Any]) -> dict[str, Any]:
        out = {
            k: v for k, v in rec.items() if k not in ("activity_id", "activity_name", "type_uid", "type_name")
        }
        out["unmapped"] = {k: v for k, v in rec["unmapped"].items() if k not in ("Revision", "Phase")}
        return out

    assert shared(latest) == shared(offline)  # the stream's latest revision is replay's finding, updated


def test_a_window_first_seen_closed_is_an_update() -> None:
    published = stream([[ev(T0 + 3 * BIN, 1, cip="203.0.113.50")], [ev(T0 + i, i) for i in range(30)]])
    assert [a["Phase"] for a in published] == ["late"]
    assert to_ocsf(published[0])["activity_id"] == 2


@pytest.mark.parametrize(
    ("cip", "src"),
    [
        ("2001:db8::7", {"ip": "2001:db8::7"}),
        ("::ffff:198.51.100.7", {"ip": "::ffff:198.51.100.7"}),
        ("client-7", {"name": "client-7"}),
        ("198.51.100.7 ", {"name": "198.51.100.7 "}),
        ("1" * 300, {"name": "1" * 300}),
        ("", None),
    ],
)
def test_client_address_becomes_ip_only_when_it_is_one(cip: str, src: dict[str, str] | None) -> None:
    key = WindowKey(T0, cip, "WEB 01 (lab)", "")
    agg = WindowAgg()
    for p in range(30):
        agg.add(T0 + p, p, ("-",) * 9, 128)
    rec = to_ocsf(build_alert(key, agg, RuleParams()))
    (evidence,) = rec["evidences"]
    assert evidence.get("src_endpoint") == src
    assert evidence["dst_endpoint"] == {"name": "WEB 01 (lab)"}  # not a DNS name, no server address
    names = [o["name"] for o in rec.get("observables", [])]
    assert names == (["evidences.src_endpoint.ip"] if src and "ip" in src else [])
    assert rec["unmapped"]["cIP"] == cip


def test_no_endpoint_at_all_means_no_evidence() -> None:
    key = WindowKey(T0, "", "", "")
    agg = WindowAgg()
    for p in range(30):
        agg.add(T0 + p, p, ("-",) * 9, 128)
    rec = to_ocsf(build_alert(key, agg, RuleParams()))
    assert "evidences" not in rec and "observables" not in rec


def test_address_and_hostname_checks() -> None:
    assert is_ip("10.0.0.1") and is_ip("2001:db8::1") and is_ip("fe80::1%eth0")
    assert not is_ip("10.0.0.256") and not is_ip("010.0.0.1") and not is_ip("") and not is_ip("10.0.0.1\n")
    assert not is_ip("0000:0000:0000:0000:0000:ffff:255.255.255.255")  # 45 chars: over ip_t's 40
    assert is_hostname("WEB01") and is_hostname("web-01.contoso.local")
    assert not is_hostname("-web") and not is_hostname("web_01") and not is_hostname("web 01")
    assert not is_hostname("a" * 64) and not is_hostname("WEB01\n") and not is_hostname("")


def test_max_bytes_bounds_the_record_like_fit_alert_and_replay_and_stream_trim_alike() -> None:
    params = RuleParams(max_set_size=0, max_record_bytes=65_536, max_alert_bytes=65_536, max_set_bytes=65_536)
    key = WindowKey(T0, "203.0.113.9", "WEB01", "10.0.0.11")
    agg = WindowAgg()
    for p in range(2000):
        agg.add(
            T0 + p,
            p,
            (f"user{p:04d}", f"q={'x' * 40}{p}", "W3SVC1", "ua", "GET", "404.0", "See", "2", "f"),
            0,
        )
    alert = build_alert(key, agg, params)
    assert alert["TrimmedSets"]  # the alert itself was trimmed to 65,536 bytes
    plain = to_ocsf(alert)
    assert len(orjson.dumps(plain)) > 65_536  # the finding around it does not fit any more
    before = copy.deepcopy(alert)
    fitted = to_ocsf(alert, 65_536)
    assert alert == before  # the caller's alert and its lists are untouched
    assert len(orjson.dumps(fitted)) <= 65_536
    kept = fitted["unmapped"]
    assert (kept["ConnectionsCount"], kept["portCount"], kept["DistinctPortCount"]) == (2000, 2000, 2000)
    assert fitted["count"] == 2000
    assert set(alert["TrimmedSets"]) <= set(kept["TrimmedSets"])
    assert all(kept[n] == alert[n][: len(kept[n])] for n in kept["TrimmedSets"])  # largest members dropped
    streamed = to_ocsf({**alert, "Revision": 4001, "Phase": "final"}, 65_536)
    assert len(orjson.dumps(streamed)) <= 65_536
    assert {k: v for k, v in streamed["unmapped"].items() if k not in ("Revision", "Phase")} == kept
    small = example_alert()
    assert to_ocsf(small, 65_536) == to_ocsf(small)  # nothing to trim: the same record


def test_unknown_severity_and_tactics_are_not_invented() -> None:
    alert = {**example_alert(), "Severity": "Unheard", "Tactics": ["Unknown"], "Techniques": ["T0000"]}
    rec = to_ocsf(alert)
    assert (rec["severity_id"], rec["severity"]) == (0, "Unknown")
    assert rec["finding_info"]["attacks"] == []


def test_a_malformed_time_is_an_error() -> None:
    with pytest.raises(ValueError, match="LastSeen"):
        to_ocsf({**example_alert(), "LastSeen": "yesterday"})

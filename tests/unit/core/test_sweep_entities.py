"""Back-testing (core.sweep) equals one replay per combination; entities and details (core.entities) stay
within Sentinel's limits and after the rule's columns."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from streams.core.alerts import RULE_COLUMNS
from streams.core.allowlist import Allowlist, judge, make_entry
from streams.core.entities import ADDED, MAX_DETAILS, MAX_TITLE, add_entities
from streams.core.notify import NotifyParams, notify_all
from streams.core.offline import offline_alerts
from streams.core.parse import event_from_record
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.core.sweep import Sweep, SweepError, parse_sweep
from streams.io.sample import Workload, generate
from streams.settings import parse_duration_ms

BASE = RuleParams()


def sample_events() -> list[IISEvent]:
    events = [event_from_record(r) for r in generate(Workload(events=6000, seed=3, span_ms=3_600_000))]
    return [e for e in events if isinstance(e, IISEvent)]


def test_sweep_rows_equal_one_replay_per_combination() -> None:
    events = sample_events()
    thresholds, bins = parse_sweep(["threshold=10,30", "bin=5m,10m"], parse_duration_ms, BASE)
    assert (thresholds, bins) == ([10, 30], [300_000, 600_000])
    sweep = Sweep(BASE, thresholds, bins)
    for e in events:
        sweep.add(e)
    first = offline_alerts(events, BASE)[0]
    allowlist = Allowlist.of([make_entry({"field": "cIP", "value": first["cIP"]})])
    notify = NotifyParams(period_ms=3_600_000, cap=0)
    rows = sweep.rows(allowlist, notify)
    assert [(r.bin_ms, r.threshold) for r, _ in rows] == [(b, t) for b in bins for t in thresholds]
    for row, alerts in rows:
        params = replace(BASE, bin_ms=row.bin_ms, threshold=row.threshold)
        verdict = judge(offline_alerts(events, params), allowlist)
        assert alerts == verdict.kept
        assert row.windows == len(verdict.kept) and row.allowlisted == len(verdict.suppressed)
        assert row.clients == len({a["cIP"] for a in verdict.kept})
        pages = notify_all(verdict.kept, replace(notify, bin_ms=row.bin_ms))
        assert row.notifications == sum(1 for _, r in pages if r["Kind"] == "page")
    assert rows[0][0].windows > rows[1][0].windows  # threshold 10 finds more than 30


@pytest.mark.parametrize("arg", ["threshold", "threshold=", "ports=1,2", "bin=10x", "threshold=500"])
def test_bad_sweep_arguments(arg: str) -> None:
    with pytest.raises(SweepError):
        parse_sweep([arg], parse_duration_ms, BASE)


def test_entities_after_the_rule_columns_within_sentinel_limits() -> None:
    alert = offline_alerts(sample_events(), BASE)[0]
    out = add_entities(dict(alert))
    assert list(out)[: len(RULE_COLUMNS)] == list(RULE_COLUMNS)
    assert list(out)[-len(ADDED) :] == list(ADDED)
    assert {k: out[k] for k in alert} == alert  # nothing of the alert changes
    assert out["AlertEntities"] == [
        {"Type": "ip", "Address": alert["cIP"]},
        {"Type": "host", "HostName": alert["Computer"]},
        {"Type": "ip", "Address": alert["sIP"]},
    ]
    assert [m["fieldMappings"][0]["columnName"] for m in out["EntityMappings"]] == ["cIP", "Computer", "sIP"]
    details = out["CustomDetails"]
    assert len(details) <= MAX_DETAILS and len(orjson.dumps(details)) <= 65_536
    assert details["portCount"] == [str(alert["portCount"])]
    assert details["FirstPorts"] == [str(p) for p in alert["set_sPort"][:10]]
    assert out["AlertDisplayName"] == f"Port scan from {alert['cIP']} against {alert['Computer']}"


def test_title_is_cut_and_a_record_near_its_limit_drops_details() -> None:
    alert = offline_alerts(sample_events(), BASE)[0]
    long = dict(alert, Computer="W" * 300)
    assert len(add_entities(long)["AlertDisplayName"]) == MAX_TITLE
    size = len(orjson.dumps(add_entities(dict(alert))))
    fitted = add_entities(dict(alert), size - 1)
    assert fitted["CustomDetails"] == {} and fitted["AlertEntities"]


def test_ocsf_finding_maps_the_host_entity_to_resources_and_validates() -> None:
    import json
    from importlib import resources

    from jsonschema import Draft202012Validator
    from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

    from streams.core.entities import ocsf_finding

    alert = add_entities(dict(offline_alerts(sample_events(), BASE)[0]))
    finding = ocsf_finding(alert, 900_000)
    assert finding["resources"] == [
        {
            "type": "Host",
            "name": alert["Computer"],
            "uid": alert["Computer"],
            "hostname": alert["Computer"],
            "ip": alert["sIP"],
        }
    ]
    assert {o["value"] for o in finding["observables"]} >= {alert["cIP"], alert["sIP"]}
    ours = json.loads(
        (resources.files("streams") / "schemas" / "ocsf-detection-finding.schema.json").read_text()
    )
    assert list(Draft202012Validator(ours).iter_errors(finding)) == []
    published = OcsfJsonSchemaEmbedded(dict(get_ocsf_schema(version="1.8.0"))).get_class_schema(
        "detection_finding"
    )
    assert [e.message for e in Draft202012Validator(published).iter_errors(finding)] == []
    assert "resources" not in ocsf_finding(
        offline_alerts(sample_events(), BASE)[0], 900_000
    )  # without entities

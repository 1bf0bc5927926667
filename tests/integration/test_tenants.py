"""Tenants on the real broker (issue 24, item 5): one topic carrying two tenants' copies of the same
traffic (identical cIP, Computer, sIP). A worker with `--tenant-field field:TenantId`, per-tenant
thresholds and a tenant's allowlist row publishes exactly what `replay` with the same settings prints
over the same input: every AlertId, revision's content and TenantId; records without a tenant are
dead-lettered with reason tenant-missing. Unkeyed input (the router re-keys it by tenant first and
forwards the tenant in a header), and input keyed as `produce --tenant-field` keys it (tenant|cIP|...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.core.offline import offline_alerts
from streams.core.parse import event_from_record
from streams.core.records import IISEvent

from .workerkit import (
    Job,
    await_answer,
    jsonl,
    latest,
    produce,
    recent_workload,
    schema_errors,
    values_of,
    view,
)


@pytest.mark.parametrize("keyed", [False, True], ids=["router", "input-keyed"])
def test_a_worker_with_two_tenants_on_one_topic_equals_replay(job: Job, tmp_path: Path, keyed: bool) -> None:
    base = recent_workload(5000, seed=11, scan_share=0.15)
    records = [{**r, "TenantId": tenant} for r in base for tenant in ("contoso", "fabrikam")]
    orphans = [{k: v for k, v in r.items() if k != "TenantId"} for r in base[:5]]
    thresholds = tmp_path / "thresholds.csv"
    thresholds.write_text("tenant,threshold\nfabrikam,60\n")
    events = [e for e in map(event_from_record, base) if isinstance(e, IISEvent)]
    scanners = sorted({a["cIP"] for a in offline_alerts(events)})
    allowlist = tmp_path / "allowlist.csv"
    allowlist.write_text(f"field,value,reason,tenant\ncIP,{scanners[0]},contoso's pen test,contoso\n")
    settings = {
        "tenant_field": "field:TenantId",
        "tenant_thresholds": str(thresholds),
        "allowlist": str(allowlist),
    }
    env = job.env(
        store="memory://", idle_timeout="2s", partitions="2", input_keyed=str(keyed).lower(), **settings
    )

    inputs = tmp_path / "input.jsonl"
    inputs.write_bytes(jsonl(records + orphans))
    out = tmp_path / "replay.jsonl"
    summary = job.cli("replay", str(inputs), "--output", str(out), env=env)
    assert "5 bad records (tenant-missing 5)" in summary
    want = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    tenants = {a["TenantId"] for a in want}
    assert tenants == {"contoso", "fabrikam"}
    # the thresholds differ, so the tenants' answers do: never one merged answer
    contoso = {a["cIP"] for a in want if a["TenantId"] == "contoso"}
    fabrikam = {a["cIP"] for a in want if a["TenantId"] == "fabrikam"}
    assert scanners[0] not in contoso and fabrikam - contoso == {scanners[0]}  # contoso's allowlist row
    assert len(fabrikam) < len(scanners)  # fabrikam's threshold

    job.cli("topics", "create", env=env)
    alerts = job.reader(job.alert_topic)
    dead = job.reader(job.dlq_topic)
    worker = job.start_worker(env=env, web=True)

    def key(r: dict[str, Any]) -> bytes | None:
        tenant = f"{r['TenantId']}|" if "TenantId" in r else ""
        return f"{tenant}{r['cIP']}|{r['Computer']}|{r['sIP']}".encode() if keyed else None

    produce(job.brokers, job.input_topic, [(key(r), orjson.dumps(r)) for r in records + orphans])
    await_answer(alerts, view(want), worker.check_alive, "the two tenants' alerts")
    current = latest(values_of(alerts.records))
    by_id: dict[str, Any] = {a["AlertId"]: a for a in want}
    assert {aid: a["TenantId"] for aid, a in current.items()} == {
        aid: a["TenantId"] for aid, a in by_id.items()
    }
    assert {aid: a["Parameters"]["PortThreshold"] for aid, a in current.items()} == {
        aid: a["Parameters"]["PortThreshold"] for aid, a in by_id.items()
    }
    assert schema_errors(current.values(), "alert.schema.json") == []
    dead.poll_until(
        lambda got: len(got) >= len(orphans), 60, worker.check_alive, "tenant-missing dead letters"
    )
    assert [d["Reason"] for d in values_of(dead.records)] == ["tenant-missing"] * len(orphans)
    assert worker.metric("iis_portscan_dead_letters_total") == len(orphans)  # the only reason here
    assert worker.metric("iis_portscan_tenant_thresholds_reloads_total") == 1
    assert worker.stop() == 0

"""Tenants through the adapter (streams.kafka.messages, router, detector): header, field and fixed
tenants, the router's src-tenant header and key, dead letters for events without a tenant."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from faust.types import TP

from streams.core.engine import StreamParams
from streams.core.offline import offline_alerts
from streams.core.parse import event_from_record
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.core.shippers import MessageReader
from streams.core.tenant import H_TENANT, TenantSpec
from streams.kafka.detector import Detector
from streams.kafka.messages import MessageDecoder, detector_tenant
from streams.kafka.metrics import Metrics
from streams.kafka.publisher import Publisher
from streams.kafka.router import Router
from streams.state.memory import MemoryStore
from tests.harness import Msg, RecordingProducer

T0 = 1_767_268_800_000
NOW = T0 + 3_600_000
RULE = RuleParams(threshold=10)


def record(i: int, port: int, **extra: Any) -> dict[str, Any]:
    return {
        "TimeGenerated": f"2026-01-01T12:00:{i % 60:02d}Z",
        "cIP": "198.51.100.7",
        "Computer": "WEB01",
        "sIP": "10.0.0.11",
        "sPort": port,
        **extra,
    }


def detector(spec: TenantSpec | None, trusted: bool) -> tuple[Detector, RecordingProducer]:
    producer = RecordingProducer()
    tenant = detector_tenant(spec, trusted)
    reader = MessageReader(tenant=tenant)
    det = Detector(
        StreamParams(rule=RULE, max_skew_ms=10**12),
        MemoryStore(),
        Publisher(producer, "alerts", "dlq"),  # type: ignore[arg-type]
        lambda done: None,
        checkpoint_ms=1,
        clock=lambda: NOW,
        trust_headers=trusted,
        reader=reader,
        tenant=tenant,
    )
    return det, producer


def route(spec: TenantSpec | None, msgs: list[Msg]) -> tuple[list[Msg], list[dict[str, Any]]]:
    """The router's output as the detector's input (the repartition topic), and its dead letters."""
    producer = RecordingProducer()  # records each send's headers too
    router = Router(
        MessageDecoder(MessageReader(tenant=spec), spec),
        Publisher(producer, "alerts", "dlq"),  # type: ignore[arg-type]
        Metrics(),
        "by-key",
        clock=lambda: NOW,
    )
    asyncio.run(router.route({TP("in", 0): msgs}))
    out = [
        Msg("by-key", 0, i, key, value, headers)
        for i, ((topic, key, value), headers) in enumerate(zip(producer.sent, producer.headers))
        if topic == "by-key"
    ]
    return out, producer.on("dlq")


def expected(events: list[dict[str, Any]], tenants: list[str]) -> list[tuple[str, int, str]]:
    parsed = []
    for rec, tenant in zip(events, tenants):
        ev = event_from_record(rec)
        assert isinstance(ev, IISEvent)
        ev.tenant = tenant
        parsed.append(ev)
    return sorted((a["TenantId"], a["portCount"], a["AlertId"]) for a in offline_alerts(parsed, RULE))


def final(producer: RecordingProducer) -> list[tuple[str, int, str]]:
    latest: dict[str, dict[str, Any]] = {}
    for a in producer.on("alerts"):
        if a["Revision"] >= latest.get(a["AlertId"], {"Revision": -1})["Revision"]:
            latest[a["AlertId"]] = a
    return sorted((a["TenantId"], a["portCount"], a["AlertId"]) for a in latest.values())


def run_both(spec: TenantSpec, msgs: list[Msg]) -> tuple[RecordingProducer, RecordingProducer, list[Any]]:
    """The same input through router + detector, and through a detector on a keyed input."""
    forwarded, dead = route(spec, msgs)
    behind, out1 = detector(spec, trusted=True)
    keyed, out2 = detector(spec, trusted=False)

    async def go() -> None:
        await behind.process({TP("by-key", 0): forwarded})
        await keyed.process({TP("in", 0): msgs})
        await behind.tick([0])
        await keyed.tick([0])

    asyncio.run(go())
    return out1, out2, dead


@pytest.mark.parametrize("source", ["header", "field"])
def test_two_tenants_on_one_topic_through_the_router_and_keyed(source: str) -> None:
    events, tenants, msgs = [], [], []
    for i in range(24):
        tenant = "contoso" if i % 2 else "fabrikam"
        port = 1 + i // 2  # 12 ports each; 24 together (never mixed: each tenant its own 12)
        rec = record(i, port, TenantId=tenant) if source == "field" else record(i, port)
        headers = [("X-Tenant", tenant.encode())] if source == "header" else []
        events.append(rec)
        tenants.append(tenant)
        msgs.append(Msg("in", 0, i, None, orjson.dumps(rec), headers))
    # one envelope of both tenants (field) / one message with the header (header)
    envelope = [record(30 + j, 100 + j, TenantId="contoso") for j in range(3)]
    if source == "field":
        envelope.append(record(40, 200, TenantId="fabrikam"))
    msgs.append(Msg("in", 0, 24, None, orjson.dumps({"records": envelope}), [("X-Tenant", b"contoso")]))
    events += envelope
    tenants += [r.get("TenantId", "contoso") for r in envelope]
    spec = TenantSpec.parse(f"{source}:X-Tenant" if source == "header" else "field:TenantId")
    assert spec is not None
    out1, out2, dead = run_both(spec, msgs)
    want = expected(events, tenants)
    assert [t for t, _, _ in want] == ["contoso", "fabrikam"]
    assert final(out1) == want and final(out2) == want and dead == []
    forwarded, _ = route(spec, msgs)
    assert all(dict(m.headers)[H_TENANT] in (b"contoso", b"fabrikam") for m in forwarded)
    assert {m.key.split(b"|")[0] for m in forwarded if m.key} == {b"contoso", b"fabrikam"}


def test_events_without_a_tenant_are_dead_lettered_or_take_the_default() -> None:
    msgs = [
        Msg("in", 0, 0, None, orjson.dumps(record(0, 1)), []),
        Msg("in", 0, 1, None, orjson.dumps(record(1, 2)), [("X-Tenant", b"")]),
        Msg("in", 0, 2, None, orjson.dumps(record(2, 3)), [("X-Tenant", b"x" * 300)]),
        Msg("in", 0, 3, None, orjson.dumps({"records": [record(3, 4), record(4, 5)]}), []),
    ]
    spec = TenantSpec("header", "X-Tenant")
    forwarded, dead = route(spec, msgs)
    assert forwarded == []
    assert [(d["Reason"], d["RecordIndex"]) for d in dead] == [
        ("tenant-missing", None),
        ("tenant-missing", None),
        ("invalid-field", None),
        ("tenant-missing", 0),
        ("tenant-missing", 1),
    ]
    keyed, producer = detector(spec, trusted=False)
    asyncio.run(keyed.process({TP("in", 0): msgs}))
    assert [d["Reason"] for d in producer.on("dlq")] == [d["Reason"] for d in dead]
    assert keyed.metrics.dead["tenant-missing"] == 4
    # with a default, the missing ones are the default tenant's; the bad one is still refused
    forwarded, dead = route(TenantSpec("header", "X-Tenant", "shared"), msgs)
    assert [dict(m.headers)[H_TENANT] for m in forwarded] == [b"shared"] * 4
    assert [d["Reason"] for d in dead] == ["invalid-field"]


def test_a_forwarded_record_without_the_routers_tenant_header_is_refused_behind_the_router() -> None:
    det, producer = detector(TenantSpec("field", "TenantId"), trusted=True)
    msg = Msg("by-key", 0, 0, b"k", orjson.dumps(record(0, 1, TenantId="spoofed")), [])
    asyncio.run(det.process({TP("by-key", 0): [msg]}))
    assert [d["Reason"] for d in producer.on("dlq")] == ["tenant-missing"]


def test_without_tenants_the_router_forwards_as_before() -> None:
    msgs = [Msg("in", 0, 0, None, orjson.dumps(record(0, 1)), [])]
    forwarded, _ = route(None, msgs)
    assert forwarded[0].key == b"198.51.100.7|WEB01|10.0.0.11"
    assert [name for name, _ in forwarded[0].headers] == [
        "src-topic",
        "src-partition",
        "src-offset",
        "src-index",
    ]
    assert forwarded[0].value == msgs[0].value

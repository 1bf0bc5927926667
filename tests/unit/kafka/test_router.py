"""The router (streams.kafka.router) with the decoder, the detector and the publisher it feeds, in
process (tests.harness.InProcessWorker): what the router forwards, where, with which headers, and
that router + detector together give the batch rule's alerts, exactly once when input is read twice.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from faust.types import TP

from streams.core.engine import StreamParams
from streams.core.offline import offline_alerts
from streams.core.parse import single_event
from streams.core.records import IISEvent
from streams.core.shippers import MessageReader
from streams.core.windows import routing_key
from streams.kafka.messages import H_INDEX, H_OFFSET, H_PARTITION, H_TOPIC
from tests.harness import T0, InProcessWorker

SHIPPERS = Path(__file__).resolve().parents[2] / "data" / "shippers"
KEYS = ("AlertId", "ConnectionsCount", "portCount", "FirstSeen", "LastSeen")


def record(t: int, port: int, cip: str = "198.51.100.7", computer: str = "WEB01") -> bytes:
    seconds = (t - T0) // 1000
    return orjson.dumps(
        {
            "TimeGenerated": f"2026-01-01T12:{seconds // 60:02d}:{seconds % 60:02d}Z",
            "cIP": cip,
            "Computer": computer,
            "sIP": "10.0.0.11",
            "sPort": port,
        }
    )


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def final_alerts(alerts: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return sorted(tuple(str(a[k]) for k in KEYS) for a in alerts if a["Phase"] == "final")


def test_records_are_keyed_by_their_group_key_with_their_input_position() -> None:
    worker = InProcessWorker(partitions=3)
    values = [record(T0 + i * 1000, 1000 + i, cip=f"198.51.100.{i % 5}") for i in range(20)]
    msgs = worker.input(values, partition=2)

    run(worker.route(msgs))
    sent = [
        (k, v, h) for (t, k, v), h in zip(worker.producer.sent, worker.producer.headers) if t == worker.BY_KEY
    ]
    assert [v for _, v, _ in sent] == values  # a W3CIISLog record is forwarded as it came
    for (key, value, headers), msg in zip(sent, msgs):
        event = single_event(value)
        assert isinstance(event, IISEvent) and key == routing_key(event)
        assert dict(headers) == {
            H_TOPIC: b"w3ciislog",
            H_PARTITION: b"2",
            H_OFFSET: str(msg.offset).encode(),
            H_INDEX: b"",
        }
    partitions: dict[bytes, set[int]] = {}
    for tp, fetched in worker.producer.take().items():
        for msg in fetched:
            partitions.setdefault(msg.key or b"", set()).add(tp.partition)
    assert len(partitions) == 5 and all(len(p) == 1 for p in partitions.values())  # one key, one partition
    assert worker.metrics.counts["routed"] == 20
    assert worker.producer.delivered == len(worker.producer.sent)  # route returns once all are acknowledged


def test_bad_input_is_dead_lettered_by_the_router_and_never_forwarded() -> None:
    worker = InProcessWorker()
    good = record(T0, 80)
    run(worker.feed([b"not json", good, b'{"cIP": "198.51.100.7"}', None]))
    letters = worker.dead_letters()
    assert [(d["SourceTopic"], d["SourceOffset"]) for d in letters] == [
        ("w3ciislog", 0),
        ("w3ciislog", 2),
        ("w3ciislog", 3),
    ]
    assert sum(worker.metrics.dead.values()) == 3
    assert worker.metrics.counts["routed"] == 1
    assert [v for t, _, v in worker.producer.sent if t == worker.BY_KEY] == [good]


def test_envelopes_are_forwarded_as_one_record_per_event_with_their_index() -> None:
    """A shipper's message is read by the router (layouts and all) and forwarded as self-contained
    W3CIISLog records, which the detector reads on its fast path; the index names each in its message."""
    worker = InProcessWorker(reader=MessageReader(computer="WEB01"))
    lines = [line.encode() for line in (SHIPPERS / "filebeat.jsonl").read_text().splitlines() if line.strip()]
    run(worker.route(worker.input(lines)))
    forwarded = [
        (v, dict(h))
        for (t, _, v), h in zip(worker.producer.sent, worker.producer.headers)
        if t == worker.BY_KEY
    ]
    reader = MessageReader(computer="WEB01")
    expected = [
        (offset, index)
        for offset, line in enumerate(lines)
        for index, result in reader.read(line)
        if isinstance(result, IISEvent)
    ]
    assert len(forwarded) == len(expected) > 200
    assert [(int(h[H_OFFSET]), h[H_INDEX]) for _, h in forwarded] == [
        (offset, b"" if index is None else str(index).encode()) for offset, index in expected
    ]
    assert all(single_event(v) is not None for v, _ in forwarded)  # the detector's fast path reads them


def test_router_and_detector_together_give_the_batch_rules_alerts() -> None:
    events = []
    values = []
    for i in range(90):
        cip = f"203.0.113.{i % 3}"
        t = T0 + i * 5_000
        values.append(record(t, 2000 + i // 3, cip=cip))
        event = single_event(values[-1])
        assert isinstance(event, IISEvent)
        events.append(event)
    # Later events of other clients move each detector partition's watermark past every window.
    closers = [record(T0 + 40 * 60_000, 1, cip=f"192.0.2.{i}") for i in range(1, 9)]
    params = StreamParams(max_skew_ms=10**12)
    worker = InProcessWorker(params, partitions=2)

    async def go() -> None:
        for start in range(0, len(values), 17):  # several fetches of two input partitions
            await worker.feed(values[start : start + 17], partition=start % 2)
        await worker.feed(closers)
        await worker.close()

    run(go())
    expected = offline_alerts(events, params.rule)
    assert len(expected) == 3
    assert {tp.partition for a in worker.acks for tp in a} == {0, 1}  # both detector partitions worked
    assert final_alerts(worker.alerts()) == sorted(tuple(str(a[k]) for k in KEYS) for a in expected)


def test_input_routed_twice_after_a_crash_is_counted_once() -> None:
    """The router forwards again what it forwarded before the input offset was committed; the
    detector trusts the positions in the headers of its own repartition topic and applies it once."""
    values = [record(T0 + i * 1000, 3000 + i) for i in range(40)]
    closer = record(T0 + 40 * 60_000, 1, cip="192.0.2.1")
    worker = InProcessWorker(partitions=1)

    async def go() -> None:
        msgs = worker.input(values)
        await worker.route(msgs[:25])
        await worker.detect()
        await worker.route(msgs)  # offsets 0-24 again, as after a crash of the router
        await worker.detect()
        await worker.feed([closer])
        await worker.close()

    run(go())
    (final,) = [a for a in worker.alerts() if a["Phase"] == "final"]
    assert final["ConnectionsCount"] == 40 and final["portCount"] == 40
    assert worker.metrics.counts["events_already_applied"] == 25
    assert max(a[TP(worker.BY_KEY, 0)] for a in worker.acks) == 25 + 40  # every forwarded record, done

"""The processor in process: the adapter between fetched records and the core, over the memory store
with a recording producer (what the tests claim is the processor's own logic, not Kafka's).

Pinned: positions in `src-*` headers are trusted only on the app's repartition topic; a partition
revoked from the worker is neither processed nor re-created; records the broker refuses become
dead letters; acknowledgement comes only after a checkpoint; dead letters are bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson
import pytest
from faust.types import TP

from streams.core.rule import RuleParams
from streams.kafka.detector import Detector
from streams.kafka.messages import H_INDEX, H_OFFSET, H_PARTITION, H_TOPIC
from streams.state.memory import MemoryStore
from tests.harness import T0, Msg, later
from tests.harness import make_detector as make

TOPIC = "in"


def event(t: int, port: int, cip: str = "198.51.100.7") -> bytes:
    return orjson.dumps(
        {
            "TimeGenerated": f"2026-01-01T12:{(t - T0) // 60_000:02d}:{(t - T0) // 1000 % 60:02d}Z",
            "cIP": cip,
            "Computer": "WEB01",
            "sIP": "10.0.0.11",
            "sPort": port,
        }
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def spoofed(offset: int, value: bytes) -> Msg:
    headers = [(H_TOPIC, b"in"), (H_PARTITION, b"0"), (H_OFFSET, str(10**12).encode()), (H_INDEX, b"")]
    return Msg(TOPIC, 0, offset, b"k", value, headers)


def test_spoofed_position_headers_on_the_input_cannot_suppress_events() -> None:
    processor, producer, _ = make(trust_headers=False)
    tp = TP(TOPIC, 0)

    async def go() -> None:
        # one event claiming input offset 10**12, then 30 real ones on distinct ports
        await processor.process({tp: [spoofed(0, event(T0, 1))]})
        real = [Msg(TOPIC, 0, 1 + i, b"k", event(T0 + 1000 * i, 2 + i)) for i in range(30)]
        await processor.process({tp: real})

    run(go())
    alerts = producer.on("alerts")
    assert alerts and alerts[-1]["ConnectionsCount"] == 31 and alerts[-1]["DistinctPortCount"] == 31


def test_trusted_headers_dedupe_a_record_the_router_forwarded_twice() -> None:
    """The counterpart: on the repartition topic, the same original position is applied once."""
    processor, producer, _ = make(trust_headers=True)
    tp = TP(TOPIC, 0)

    def forwarded(offset: int, source_offset: int, port: int) -> Msg:
        headers = [(H_TOPIC, b"raw"), (H_PARTITION, b"3"), (H_OFFSET, str(source_offset).encode())]
        return Msg(TOPIC, 0, offset, b"k", event(T0 + source_offset, port), headers)

    async def go() -> None:
        await processor.process({tp: [forwarded(i, i, i) for i in range(30)]})
        await processor.process({tp: [forwarded(30 + i, i, i) for i in range(30)]})  # forwarded again

    run(go())
    assert max(a["ConnectionsCount"] for a in producer.on("alerts")) == 30


def test_revoked_partition_is_not_processed_nor_recreated() -> None:
    processor, _, acks = make(trust_headers=False)
    tp = TP(TOPIC, 0)

    async def go() -> None:
        await processor.process({tp: [Msg(TOPIC, 0, 0, b"k", event(T0, 1))]})
        assert 0 in processor.engines
        await processor.drop([0])  # revoked: checkpointed, forgotten
        acked = list(acks)
        await processor.process({tp: [Msg(TOPIC, 0, 1, b"k", event(T0, 2))]})  # fetched before it
        assert 0 not in processor.engines and acks == acked
        await processor.tick([0])
        assert 0 not in processor.engines
        with pytest.raises(RuntimeError):
            await processor.engine(0)
        processor.assign([0])  # assigned again: its own again
        await processor.process({tp: [Msg(TOPIC, 0, 1, b"k", event(T0, 2))]})
        assert 0 in processor.engines
        await processor.close()

    run(go())
    assert acks[-1] == {tp: 1}


def test_acknowledged_only_after_the_checkpoint_delivered_and_wrote() -> None:
    processor, producer, acks = make(trust_headers=False)
    processor.checkpoint_s = 3600.0
    tp = TP(TOPIC, 0)

    async def go() -> None:
        await processor.process({tp: [Msg(TOPIC, 0, i, b"k", event(T0 + i, i)) for i in range(30)]})
        assert acks == [] and producer.on("alerts")  # sent, not yet checkpointed
        await processor.close()

    run(go())
    assert acks == [{tp: 29}] and producer.delivered == len(producer.sent)


def test_refused_record_becomes_an_unpublishable_dead_letter() -> None:
    processor, producer, _ = make(trust_headers=False, too_large=1000)
    tp = TP(TOPIC, 0)

    async def go() -> None:
        await processor.process({tp: [Msg(TOPIC, 0, i, b"k", event(T0 + i, i)) for i in range(40)]})
        await processor.close()

    run(go())
    assert producer.on("alerts") == []  # the alert (over 1000 bytes) was refused...
    (letter,) = [d for d in producer.on("dlq") if d["Reason"] == "unpublishable"]
    assert letter["SourceTopic"] == "alerts" and letter["SourcePartition"] is None
    assert processor.metrics.dead["unpublishable"] == 1


def test_dead_letter_of_a_huge_payload_is_bounded_with_length_and_digest() -> None:
    processor, producer, _ = make(trust_headers=False)
    tp = TP(TOPIC, 0)
    payload = b"\xff" + b"x" * 800_000  # not UTF-8

    async def go() -> None:
        await processor.process({tp: [Msg(TOPIC, 0, 0, b"k" * 100_000, payload)]})
        await processor.close()

    run(go())
    (letter,) = producer.on("dlq")
    assert letter["Reason"] == "undecodable" and letter["PayloadTruncated"] is True
    assert letter["PayloadBytes"] == len(payload)
    assert letter["PayloadSha256"] == hashlib.sha256(payload).hexdigest()
    assert len(orjson.dumps(letter)) < 200_000


class FailingStore(MemoryStore):
    """A memory store whose writes fail from `fail_from` on, as Redis does when the worker stops
    during an outage."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    async def write_partitions(self, changes: Any) -> None:
        if self.failing:
            from streams.errors import StoreUnavailable

            raise StoreUnavailable("store down")
        await super().write_partitions(changes)


def test_a_failed_checkpoint_acknowledges_nothing_afterwards() -> None:
    """The field bug: a checkpoint whose write failed drained its pending writes, so the checkpoint at
    shutdown found nothing to write and acknowledged input whose effect was never stored."""
    store = FailingStore()
    processor, _, acks = make(trust_headers=True, store=store, checkpoint_ms=3_600_000)
    tp = TP(TOPIC, 0)

    async def go() -> None:
        await processor.process({tp: [Msg(TOPIC, 0, 0, b"k", event(T0, 1))]})
        await processor.close()  # a good checkpoint
        assert acks == [{tp: 0}]
        store.failing = True
        await processor.process({tp: [Msg(TOPIC, 0, i, b"k", event(T0 + i, i)) for i in range(1, 40)]})
        from streams.errors import StoreUnavailable

        with pytest.raises(StoreUnavailable):
            await processor.close()
        store.failing = False  # even with the store back, this processor acknowledges nothing more
        with pytest.raises(StoreUnavailable):
            await processor.close()

    run(go())
    assert acks == [{tp: 0}]


def overdue(processor: Detector) -> None:
    """Every partition's last checkpoint, and the worker's, two intervals ago."""
    later(processor, 2 * processor.checkpoint_s)


def fetch(partitions: range, offset: int) -> dict[Any, list[Msg]]:
    return {TP(TOPIC, p): [Msg(TOPIC, p, offset, b"k", event(T0 + offset, offset + 1))] for p in partitions}


def test_checkpoints_are_staggered_one_group_of_partitions_after_a_batch() -> None:
    """Four partitions all due: a batch checkpoints one of them (the longest-waiting), the next batch
    none until a quarter of the interval passed, then the next; the timer as a batch while batches
    come, and all due once none came since its last tick."""
    processor, _, acks = make(trust_headers=False)
    processor.checkpoint_s = 60.0

    async def go() -> None:
        await processor.process(fetch(range(2, 3), 0))  # partition 2 first: it waits longest
        later(processor, 1)
        await processor.process(fetch(range(4), 0))  # engines created: nothing is due yet
        assert acks == []
        overdue(processor)
        await processor.process(fetch(range(4), 1))
        assert acks == [{TP(TOPIC, 2): 1}]
        await processor.process(fetch(range(4), 2))  # within a quarter interval of the last checkpoint
        assert len(acks) == 1
        later(processor, processor.checkpoint_s / 4)
        await processor.process(fetch(range(4), 3))
        assert len(acks) == 2 and len(acks[1]) == 1 and TP(TOPIC, 2) not in acks[1]
        await processor.tick([])  # a batch since the last tick: as after a batch (within the spacing)
        assert len(acks) == 2
        await processor.tick([])  # idle housekeeping: every partition due, at once
        assert len(acks) == 3 and acks[2] == {
            TP(TOPIC, p): 3 for p in (0, 1, 3) if TP(TOPIC, p) not in acks[1]
        }
        assert processor.pending[2]  # changed since its checkpoint, not due yet: held
        await processor.close()  # at shutdown, everything
        assert acks[3] == {TP(TOPIC, 2): 3}
        assert not any(processor.pending.values()) and not processor.unacked

    run(go())


def test_a_worker_with_many_partitions_checkpoints_them_in_four_groups() -> None:
    """Twelve partitions due: each staggered checkpoint takes three, so a worker waits for the broker's
    acknowledgements at most four times an interval, whatever its partition count."""
    processor, _, acks = make(trust_headers=False)
    processor.checkpoint_s = 60.0

    async def go() -> None:
        await processor.process(fetch(range(12), 0))
        overdue(processor)
        for round_ in range(1, 5):
            await processor.process(fetch(range(12), round_))
            later(processor, processor.checkpoint_s / 4)
        assert [len(a) for a in acks] == [3, 3, 3, 3]
        assert {tp.partition for a in acks for tp in a} == set(range(12))

    run(go())


class StagingStore(MemoryStore):
    """A memory store with a log sent ahead (WindowStore.stages_writes): what is staged is written only
    when committed; `fail` makes the commit fail, as a changelog the broker does not acknowledge."""

    stages_writes = True

    def __init__(self) -> None:
        super().__init__()
        self.staged: list[dict[int, dict[bytes, bytes]]] = []
        self.fail = False

    def stage(self, changes: Any) -> object:
        self.staged.append(dict(changes))
        return dict(changes)

    async def commit_staged(self, staged: Any) -> None:
        if self.fail:
            from streams.kafka.producer import DeliveryError

            raise DeliveryError("changelog not acknowledged")
        await self.write_partitions(staged)


def test_a_staged_checkpoint_is_acknowledged_by_the_next_and_serves_reads_until_written() -> None:
    """With a store that sends its log ahead, a staggered checkpoint sends and returns: its input is
    acknowledged only once the next checkpoint committed it, and a late event of a window it holds
    (closed, gone from memory, not yet in the store) reads the staged record, not an empty window."""
    store = StagingStore()
    processor, producer, acks = make(trust_headers=True, store=store, checkpoint_ms=60_000)
    tp = TP(TOPIC, 0)
    window = [Msg(TOPIC, 0, i, b"k", event(T0 + 1000 * i, i + 1)) for i in range(30)]
    closer = Msg(TOPIC, 0, 30, b"k", event(T0 + 13 * 60_000, 1, cip="203.0.113.9"))

    async def go() -> None:
        await processor.process({tp: [*window, closer]})  # the window reaches 30 ports and closes
        assert [a["Phase"] for a in producer.on("alerts")] == ["early", "final"]
        overdue(processor)
        await processor.process(
            {tp: [Msg(TOPIC, 0, 31, b"k", event(T0 + 13 * 60_000, 2, cip="203.0.113.9"))]}
        )
        assert len(store.staged) == 1 and acks == []  # staged: sent, not acknowledged
        assert await store.get_many(0, list(store.staged[0][0])) == dict.fromkeys(store.staged[0][0])
        late = Msg(TOPIC, 0, 32, b"k", event(T0 + 5 * 60_000, 31))
        await processor.process({tp: [late]})
        (alert,) = [a for a in producer.on("alerts") if a["Phase"] == "late"]
        assert alert["portCount"] == 31 and alert["ConnectionsCount"] == 31
        await processor.close()  # commits the staged checkpoint, then everything since

    run(go())
    assert acks == [{tp: 31}, {tp: 32}]
    assert not processor.unacked and processor.staged is None


def test_a_staged_checkpoint_that_fails_to_commit_acknowledges_nothing() -> None:
    store = StagingStore()
    processor, _, acks = make(trust_headers=True, store=store, checkpoint_ms=60_000)
    tp = TP(TOPIC, 0)

    async def go() -> None:
        await processor.process({tp: [Msg(TOPIC, 0, 0, b"k", event(T0, 1))]})
        overdue(processor)
        await processor.process({tp: [Msg(TOPIC, 0, 1, b"k", event(T0 + 1000, 2))]})
        assert len(store.staged) == 1
        store.fail = True
        from streams.kafka.producer import DeliveryError

        with pytest.raises(DeliveryError):
            await processor.close()
        store.fail = False
        with pytest.raises(DeliveryError):  # broken: never acknowledges again
            await processor.close()

    run(go())
    assert acks == []


# --- Bounded open windows: restore reads only what can be open; spilling stays exact ----------------


class CountingStore(MemoryStore):
    """A memory store that counts the window records each read returns."""

    def __init__(self) -> None:
        super().__init__()
        self.read = 0

    async def load_partition(self, partition: int) -> list[tuple[bytes, bytes]]:
        records = await super().load_partition(partition)
        self.read += len(records)
        return records

    async def scan_windows(self, partition: int, from_start_ms: int, to_start_ms: int | None = None) -> Any:
        async for chunk in super().scan_windows(partition, from_start_ms, to_start_ms):
            self.read += len(chunk)
            yield chunk

    async def get_many(self, partition: int, keys: Any) -> dict[bytes, bytes | None]:
        found = await super().get_many(partition, keys)
        self.read += sum(v is not None for v in found.values())
        return found


def scan_bins(bins: int, clients: int) -> list[Msg]:
    """`clients` one-request windows in each of `bins` consecutive bins, in time order."""
    return [
        Msg(TOPIC, 0, n, b"k", event(T0 + b * 600_000 + 1000 * i, 80, cip=f"198.51.100.{i}"))
        for n, (b, i) in enumerate((b, i) for b in range(bins) for i in range(clients))
    ]


def test_a_restore_reads_the_meta_record_and_only_windows_that_can_still_be_open() -> None:
    """Three bins of 20 windows each, the first two closed by the watermark: a new owner of the
    partition reads the 20 open ones, not the 40 closed ones (it used to read every stored window)."""
    store = CountingStore()
    processor, _, _ = make(trust_headers=False, store=store)
    msgs = scan_bins(3, 20)
    closer = Msg(TOPIC, 0, len(msgs), b"k", event(T0 + 2 * 600_000 + 120_000, 80, cip="203.0.113.1"))

    async def go() -> None:
        await processor.process({TP(TOPIC, 0): [*msgs, closer]})
        await processor.close()
        assert processor.engines[0].open_count() == 21
        store.read = 0
        again, _, _ = make(trust_headers=False, store=store)
        engine = await again.engine(0)
        assert engine.open_count() == 21 and engine.watermark == T0 + 2 * 600_000
        assert store.read == 21

    run(go())


def test_a_restore_holds_at_most_the_bound_and_reads_the_rest_back_when_needed() -> None:
    store = MemoryStore()
    rule = RuleParams(threshold=3)
    processor, _, _ = make(trust_headers=False, store=store, rule=rule)
    tp = TP(TOPIC, 0)
    msgs = [
        Msg(TOPIC, 0, n, b"k", event(T0 + 1000 * n, n // 10, cip=f"198.51.100.{n % 10}")) for n in range(40)
    ]

    async def go() -> None:
        await processor.process({tp: msgs})  # 10 windows of 4 ports, early alerts sent
        await processor.close()
        again, producer, _ = make(trust_headers=False, store=store, rule=rule, max_open_windows=3)
        engine = await again.engine(0)
        assert (engine.open_count(), engine.spilled_count()) == (3, 7)
        await again.process({tp: [Msg(TOPIC, 0, 40, b"k", event(T0 + 13 * 60_000, 1, cip="203.0.113.1"))]})
        finals = sorted(a["cIP"] for a in producer.on("alerts") if a["Phase"] == "final")
        assert finals == sorted(f"198.51.100.{i}" for i in range(10))
        assert [a for a in producer.on("alerts") if a["Phase"] == "early"] == []  # not repeated
        assert again.metrics.counts["spilled_windows_closed"] == 7

    run(go())


@pytest.mark.parametrize("staging", [False, True], ids=["memory", "staged"])
@pytest.mark.parametrize("seed", range(8))
def test_a_tiny_bound_equals_replay_through_checkpoints_and_crashes(staging: bool, seed: int) -> None:
    """At most 0-3 open windows in memory, checkpoints at random points, crashes that lose what was
    not checkpointed (alerts not yet delivered included): the latest revision of every window is
    replay's. Spilled windows reach the store through pending writes (and a staged checkpoint), are
    read back from there, and are closed by a scan that prefers them over the store's copies."""
    import random

    from streams.core.offline import offline_alerts
    from streams.core.parse import event_from_record

    rnd = random.Random(seed)
    rule = RuleParams(threshold=8)
    rows = [
        (T0 + 1000 * rnd.randrange(1800), rnd.randint(1, 20), f"198.51.100.{rnd.randrange(12)}")
        for _ in range(500)
    ]
    msgs = [Msg(TOPIC, 0, n, b"k", event(t, port, cip)) for n, (t, port, cip) in enumerate(rows)]
    msgs.append(Msg(TOPIC, 0, len(msgs), b"k", event(T0 + 45 * 60_000, 1, cip="203.0.113.1")))
    store: MemoryStore = StagingStore() if staging else MemoryStore()
    tp = TP(TOPIC, 0)
    published: list[dict[str, Any]] = []

    async def go() -> None:
        crashes = 3
        processor, producer, acks = make(
            False, rule=rule, store=store, checkpoint_ms=60_000, max_open_windows=rnd.randint(0, 3)
        )
        pos = 0
        while pos < len(msgs):
            batch = msgs[pos : pos + rnd.randint(1, 40)]
            await processor.process({tp: batch})
            pos += len(batch)
            if rnd.random() < 0.3:
                overdue(processor)  # the next batch checkpoints
            if crashes and rnd.random() < 0.1:  # what was not delivered or acknowledged is lost
                crashes -= 1
                published.extend(producer.on("alerts")[: producer.delivered])
                pos = acks[-1][tp] + 1 if acks else 0
                processor, producer, acks = make(
                    False, rule=rule, store=store, checkpoint_ms=60_000, max_open_windows=rnd.randint(0, 3)
                )
        await processor.close()
        published.extend(producer.on("alerts"))

    run(go())
    latest: dict[str, dict[str, Any]] = {}
    for a in published:
        if a["AlertId"] not in latest or a["Revision"] >= latest[a["AlertId"]]["Revision"]:
            latest[a["AlertId"]] = a
    events = [event_from_record(orjson.loads(m.value or b"")) for m in msgs]
    expected = offline_alerts([e for e in events if not hasattr(e, "reason")], rule)  # type: ignore[misc]
    columns = ("AlertId", "ConnectionsCount", "portCount", "set_sPort", "FirstSeen", "LastSeen")
    assert len(expected) > 5
    assert sorted(tuple(str(a[c]) for c in columns) for a in latest.values()) == sorted(
        tuple(str(a[c]) for c in columns) for a in expected
    )

"""Two owners of one partition on shared Redis: the one that claimed it last is the only one that writes.

A revocation that outlasts the rebalance timeout, or a session expiry, leaves the old owner with a
checkpoint to write after the new owner restored the partition. Before fencing that checkpoint overwrote
the new owner's newer records (an unconditional MULTI/EXEC). Now each owner claims the partition when it
restores it (an epoch in Redis), every checkpoint is conditional on the claim, and the fenced-off owner
acknowledges nothing of the partition and lets it go; its other partitions are written as usual.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
from faust.types import TP

from streams.core.engine import StreamParams
from streams.core.state_records import WindowRecord
from streams.core.windows import META_KEY
from streams.kafka.detector import Detector
from streams.kafka.publisher import Publisher
from streams.state.redis import RedisStore
from tests.harness import Msg, RecordingProducer

pytestmark = pytest.mark.integration
T0 = 1_767_268_800_000  # 2026-01-01T12:00:00Z
NOW = T0 + 3_600_000


def request(i: int, cip: str = "198.51.100.7") -> bytes:
    return orjson.dumps(
        {
            "TimeGenerated": f"2026-01-01T12:00:{i % 60:02d}Z",
            "cIP": cip,
            "Computer": "WEB01",
            "sIP": "10.0.0.11",
            "sPort": 1000 + i,
        }
    )


def owner(url: str, app_id: str) -> tuple[Detector, RecordingProducer, list[dict[Any, int]], RedisStore]:
    store = RedisStore(url, app_id)
    producer = RecordingProducer()
    acks: list[dict[Any, int]] = []
    detector = Detector(
        StreamParams(max_skew_ms=10**12),
        store,
        Publisher(producer, "alerts", "dlq"),  # type: ignore[arg-type]
        acks.append,
        checkpoint_ms=3_600_000,  # checkpoints only when the test asks (drop, close)
        clock=lambda: NOW,
    )
    return detector, producer, acks, store


def fetch(partition: int, first: int, n: int, cip: str = "198.51.100.7") -> dict[TP, list[Msg]]:
    tp = TP("in", partition)
    return {tp: [Msg("in", partition, first + i, None, request(first + i, cip)) for i in range(n)]}


def test_the_old_owners_checkpoint_is_refused_after_the_new_owner_claimed(redis_url: str) -> None:
    app_id = f"fence-{uuid.uuid4().hex[:8]}"

    async def go() -> None:
        old, _, old_acks, old_store = owner(redis_url, app_id)
        new, _, new_acks, new_store = owner(redis_url, app_id)
        try:
            await old.process(fetch(0, 0, 20))  # partition 0: 20 events, not checkpointed yet
            await old.process(fetch(1, 0, 5, cip="203.0.113.1"))  # partition 1: only the old owner's
            await new.process(fetch(0, 0, 35))  # the new owner restored partition 0 and read further
            await new.close()  # its checkpoint: 35 events of partition 0
            assert new_acks == [{TP("in", 0): 34}]
            await old.close()  # the old owner's late checkpoint: partition 0 refused, partition 1 written
            assert old_acks == [{TP("in", 1): 4}]
            assert 0 not in old.engines and 0 in old.revoked
            assert old.metrics.counts["partitions_fenced"] == 1
            stored = dict(await new_store.load_partition(0))
            (record,) = [WindowRecord.from_bytes(v) for k, v in stored.items() if k != META_KEY]
            assert record.count == 35  # the new owner's, not overwritten by the old owner's 20
            assert len(await old_store.load_partition(1)) == 2  # its meta and its window
            await old.process(fetch(0, 20, 5))  # later records of the lost partition: left alone
            assert old.metrics.counts["stale_batches_skipped"] == 1
        finally:
            await new_store.delete_all()
            await old_store.close()
            await new_store.close()

    asyncio.run(asyncio.wait_for(go(), 60))

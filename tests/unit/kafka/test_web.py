"""streams.kafka.web.WorkerStatus: readiness, which partitions may idle, and the scrape's snapshot,
over a stand-in for faust's app (its consumer's lags, rebalancing, recovery)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.kafka.web import WorkerStatus
from streams.state.redis import RedisStore
from tests.harness import make_detector

SOURCE, INPUT = "app-w3ciislog-by-key", "w3ciislog"


class Consumer:
    def __init__(self, lags: dict[TP, int | None]) -> None:
        self._lags = lags
        self.stale_batches = 4

    def lags(self, topics: list[str]) -> dict[TP, int | None]:
        return {tp: n for tp, n in self._lags.items() if tp.topic in topics}

    def stalled_seconds(self, topics: list[str]) -> float:
        return 7.0


def status(lags: dict[TP, int | None], recovering: bool = False, store: Any = None) -> WorkerStatus:
    recovery = SimpleNamespace(in_recovery=recovering, active_remaining_total=lambda: 12)
    app = SimpleNamespace(
        rebalancing=False, tables=SimpleNamespace(recovery=recovery), consumer=Consumer(lags)
    )
    detector, _, _ = make_detector(trust_headers=True, store=store)
    store = detector.store
    return WorkerStatus(app, detector, store, detector.metrics, SOURCE, [SOURCE, INPUT])


def test_not_ready_before_the_first_assignment_nor_while_recovering() -> None:
    ready = status({})
    assert not ready.settled() and ready.not_ready_because() == "waiting for partitions"
    ready.assigned_once = True
    assert ready.settled()
    recovering = status({}, recovering=True)
    recovering.assigned_once = True
    assert not recovering.settled() and recovering.not_ready_because() == "recovering state"


def test_only_caught_up_source_partitions_idle_and_none_while_the_input_lags() -> None:
    lags: dict[TP, int | None] = {TP(SOURCE, 0): 0, TP(SOURCE, 1): 5, TP(SOURCE, 2): None, TP(INPUT, 0): 0}
    worker = status(lags)
    assert worker.caught_up() == []  # not settled yet
    worker.assigned_once = True
    assert worker.caught_up() == [0]
    lags[TP(INPUT, 0)] = 3  # the router's input lags: the repartition topic only looks caught up
    assert worker.caught_up() == []


def test_the_snapshot_carries_the_consumer_and_store_counters() -> None:
    store = RedisStore("redis://127.0.0.1:1/0", "a")
    store.stats["retries"] += 2
    worker = status({TP(SOURCE, 0): 9, TP(INPUT, 1): None}, recovering=True, store=store)
    worker.assigned_once = True
    snap = worker.snapshot()
    assert not snap.ready and snap.recovery_remaining_records == 12
    assert snap.consumer_lag == {(SOURCE, 0): 9} and snap.fetch_stalled_seconds == 0.0  # not settled
    assert snap.open_windows == 0 and snap.partitions == 0
    counts = worker.metrics.counts
    assert (counts["fetches_not_handed_on"], counts["store_retries"], counts["store_errors"]) == (4, 2, 0)

"""What streams.kafka.faust_compat relies on in the installed faust (and aiokafka): the only module that
touches their internals. A faust upgrade that renames or reshapes any of these fails here, by name,
instead of breaking the worker silently."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.tables.recovery import Recovery
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.kafka.faust_compat import BatchingConsumer

STREAMS = Path(__file__).resolve().parents[3] / "streams"


def test_consumer_internals_the_batching_consumer_overrides_or_reads() -> None:
    base = faust_consumer.Consumer
    for name in ("_drain_messages", "_new_offset", "_filter_tps_with_pending_acks", "on_partitions_revoked"):
        assert callable(getattr(base, name, None)), name
    for name in ("_add_gap", "_wait_next_records", "_to_message", "commit", "highwater", "assignment"):
        assert callable(getattr(faust_aiokafka.Consumer, name, None)), name
    params = inspect.signature(base._wait_next_records).parameters
    assert "timeout" in params
    # attributes the batching consumer reads or writes: set in Consumer.__init__ or declared on the class
    source = inspect.getsource(base.__init__) + "".join(f"self.{name}" for name in base.__annotations__)
    for attribute in (
        "_read_offset",
        "_committed_offset",
        "_n_acked",
        "_commit_every",
        "_buffered_partitions",
    ):
        assert f"self.{attribute}" in source, attribute


def test_consumer_thread_factory_and_fetch_wait() -> None:
    thread = faust_aiokafka.AIOKafkaConsumerThread
    assert callable(getattr(thread, "_create_worker_consumer", None))
    import aiokafka

    consumer = aiokafka.AIOKafkaConsumer.__init__
    assert "fetch_max_wait_ms" in inspect.signature(consumer).parameters
    assert "_fetch_max_wait_ms" in inspect.getsource(aiokafka.AIOKafkaConsumer.__init__)
    assert callable(getattr(faust_aiokafka.Consumer, "_new_consumer_thread", None))


def test_app_hooks_and_conf() -> None:
    for name in ("_stop_consumer", "_new_transport", "on_partitions_revoked", "on_partitions_assigned"):
        assert hasattr(faust.App, name), name
    conf = faust.App("compat-probe").conf
    for name in ("consumer_group_instance_id", "broker_credentials", "topic_allow_declare"):
        assert hasattr(conf, name), name


def test_table_and_recovery_internals() -> None:
    from faust.stores import rocksdb

    assert callable(getattr(rocksdb.Store, "_db_for_partition", None))
    assert "offset_key" in vars(rocksdb.Store) or hasattr(rocksdb.Store, "offset_key")
    assert callable(getattr(Recovery, "active_remaining_total", None))
    assert "in_recovery" in inspect.getsource(Recovery)


def test_what_the_changelog_applier_drives_in_recovery() -> None:
    """changelog_applier moves the recovery service's offsets and signals the end of recovery as
    `Recovery._slurp_changelogs` does: the names it uses, and that faust's loop does the same."""
    from faust.stores import rocksdb
    from faust.tables.manager import TableManager

    source = inspect.getsource(Recovery)
    for name in ("active_tps", "standby_tps", "active_offsets", "standby_offsets", "signal_recovery_end"):
        assert f"self.{name}" in source, name
    for name in ("need_recovery", "standby_remaining_total"):
        assert callable(getattr(Recovery, name, None)), name
    slurp = inspect.getsource(Recovery._slurp_changelogs.fun)  # a mode ServiceTask
    # a recovery starts (where the applier clears the end signal), then waits for that signal
    restart = inspect.getsource(Recovery._restart_recovery.fun)
    started = restart.index("self._set_recovery_started()")
    assert 0 < started < restart.index("self.signal_recovery_end.wait()")
    assert "offsets[tp] = offset" in slurp and "self.signal_recovery_end.set()" in slurp
    assert "self.tables.on_standbys_ready()" in slurp
    assert callable(getattr(TableManager, "on_standbys_ready", None))
    assert "standbys_ready" in inspect.getsource(TableManager)
    # what faust's RocksDB store writes per changelog batch: the records, then the offset under offset_key
    applied = inspect.getsource(rocksdb.Store.apply_changelog_batch)
    assert "delete(msg.key)" in applied and "put(msg.key, msg.value)" in applied
    assert "self.offset_key, str(offset).encode()" in inspect.getsource(rocksdb.Store.set_persisted_offset)


def test_no_other_module_touches_faust_internals() -> None:
    """grep: faust's private names appear in faust_compat only."""
    private = (
        "_drain_messages",
        "_read_offset",
        "_add_gap",
        "_n_acked",
        "_committed_offset",
        "_db_for_partition",
        "_wait_next_records",
        "_fetch_max_wait_ms",
        "_stop_consumer",
        "_new_transport",
    )
    offenders = []
    for path in STREAMS.rglob("*.py"):
        if path.name == "faust_compat.py":
            continue
        text = path.read_text()
        offenders += [f"{path.relative_to(STREAMS)}: {name}" for name in private if name in text]
    assert offenders == []


# ------------------------------------------------------------------ fetches not handed on

A, B = TP("a", 0), TP("b", 0)


class FetchingConsumer(BatchingConsumer):
    """The batching consumer's fetch loop over partitions held in memory, as aiokafka serves them: a
    fetch returns records from the partition's position and moves the position past them; `seek` moves
    it back. `before_fetch[i]` runs while fetch i is outstanding (a rebalance starting, say)."""

    def __init__(
        self, ends: dict[TP, int], before_fetch: dict[int, Callable[[FetchingConsumer], None]]
    ) -> None:
        self.app = SimpleNamespace(
            batch_handlers={},
            state_topics=set(),
            consumer_generation_id=1,
            topics=SimpleNamespace(acks_enabled_for=lambda topic: True),
            monitor=SimpleNamespace(track_tp_end_offset=lambda tp, offset: None),
        )
        self.transport = SimpleNamespace(app=SimpleNamespace(should_stop=True))
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self._read_offset: dict[TP, int | None] = {}
        self._done_through = {}
        self._buffered_partitions = set()
        self.read_through = {}
        self._commit_every = None
        self._n_acked = 0
        self.stale_batches = 0
        self.last_progress = 0.0
        self.flow_active = True
        self.callback = None
        self._stopped = asyncio.Event()
        self.fetcher = SimpleNamespace(_stopped=asyncio.Event())
        self.ends = ends
        self.positions = dict.fromkeys(ends, 0)
        self.before_fetch = before_fetch
        self.fetches = 0
        self.on_handled_a: Callable[[FetchingConsumer], None] = lambda c: None

    @property
    def should_stop(self) -> bool:
        return False

    async def sleep(self, seconds: float, *args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0)

    def highwater(self, tp: TP) -> int:
        return self.ends[tp]

    def assignment(self) -> set[TP]:
        return set(self.ends)

    async def seek(self, partition: TP, offset: int) -> None:  # faust's: the position and the read offset
        self.positions[partition] = offset
        self._read_offset[partition] = offset if offset else None

    async def _wait_next_records(self, timeout: float) -> tuple[dict[TP, list[Any]], set[TP] | None]:
        self.fetches += 1
        self.before_fetch.get(self.fetches, lambda c: None)(self)
        records = {}
        for tp, position in self.positions.items():
            chunk = [SimpleNamespace(offset=o) for o in range(position, min(position + 10, self.ends[tp]))]
            if chunk:
                records[tp] = chunk
                self.positions[tp] = chunk[-1].offset + 1
        if all(self.positions[tp] >= end for tp, end in self.ends.items()) and self.fetches > 8:
            self._stopped.set()
        return records, None


def run_fetch_loop(consumer: FetchingConsumer) -> dict[TP, list[int]]:
    """Every offset each partition's handler received, in order."""
    got: dict[TP, list[int]] = {tp: [] for tp in consumer.ends}
    topics = {tp.topic for tp in consumer.ends}
    for topic in topics:

        async def handle(fetch: dict[TP, Any], topic: str = topic) -> None:
            for tp, records in fetch.items():
                got[tp].extend(r.offset for r in records)
            if topic == "a":
                consumer.on_handled_a(consumer)

        consumer.app.batch_handlers[topic] = handle
    asyncio.run(asyncio.wait_for(consumer._drain_messages(consumer.fetcher), 10))
    return got


def test_a_fetch_returned_while_the_flow_is_stopped_is_read_again(caplog: pytest.LogCaptureFixture) -> None:
    """A fetch parked across a rebalance returns after recovery seeked and before the flow resumed: it is
    not handed on, and the partition is seeked back to its first record, so that it is read again (without
    the seek, aiokafka's position is past it and its records are lost)."""

    def stop_flow(c: FetchingConsumer) -> None:
        c.flow_active = False

    def resume_flow(c: FetchingConsumer) -> None:
        c.flow_active = True

    consumer = FetchingConsumer({A: 40}, {2: stop_flow, 3: resume_flow})
    with caplog.at_level(logging.INFO, "iis-portscan"):
        got = run_fetch_loop(consumer)
    assert got[A] == list(range(40))
    assert consumer.stale_batches == 1
    assert "seeked back to offset 10" in caplog.text


def test_a_batch_left_when_a_rebalance_began_during_the_previous_handler_is_read_again() -> None:
    """One fetch of two topics: while topic a's handler runs, a rebalance begins (the generation
    changes), so topic b's batch is not handed on: b is seeked back and read in full later."""

    def rebalance_once(c: FetchingConsumer) -> None:
        if c.fetches == 1:
            c.app.consumer_generation_id += 1

    consumer = FetchingConsumer({A: 30, B: 30}, {})
    consumer.on_handled_a = rebalance_once
    got = run_fetch_loop(consumer)
    assert got[A] == list(range(30)) and got[B] == list(range(30))
    assert consumer.stale_batches == 1

"""What streams.kafka.faust_compat relies on in the installed faust (and aiokafka): the only module that
touches their internals. A faust upgrade that renames or reshapes any of these fails here, by name,
instead of breaking the worker silently."""

from __future__ import annotations

import inspect
from pathlib import Path

import faust
from faust.tables.recovery import Recovery
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

STREAMS = Path(__file__).resolve().parents[2] / "streams"


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

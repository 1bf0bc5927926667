"""Checkpointed state (core.checkpoint): changes held across steps, written once; equal to replay."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.checkpoint import PendingWrites
from streams.core.engine import StepResult, StreamParams
from streams.core.offline import offline_alerts
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.core.state_records import Meta, WindowRecord
from streams.core.windows import META_KEY
from tests.unit.core.test_engine import (
    BIN,
    CRASH_PARAMS,
    NOW,
    T0,
    Sim,
    ev,
    offsets,
    scenario,
    seeded_scenario,
    view,
)


class CheckpointSim(Sim):
    """What the processor does: steps add to PendingWrites; a checkpoint drains them into the store
    and commits the input position; a crash loses the engine, the pending writes and the uncommitted
    input."""

    def __init__(self, params: StreamParams = CRASH_PARAMS) -> None:
        super().__init__(params)
        self.pending = PendingWrites()

    def crash(self) -> None:
        super().crash()
        self.pending = PendingWrites()

    def feed(self, batch: list[tuple[int, IISEvent]], now: int = NOW, write: bool = True) -> None:
        """A step whose writes wait in `pending` for the next checkpoint (`write` is Sim's: unused)."""
        loaded: dict[bytes, bytes | WindowRecord | None] = {}
        plan = self.engine.plan(batch)
        for key in plan.load:
            held = self.pending.get(key)
            loaded[key] = held if held is not None else self.store.get(key)
        self._emit(self.engine.step(plan, loaded, now))

    def tick(self, now: int) -> None:
        self._emit(self.engine.tick(now))

    def _emit(self, out: StepResult) -> None:
        self.published.extend(out.alerts)
        self.pending.add(out)

    def checkpoint(self) -> int:
        writes, expire_before = self.pending.drain()
        self._write(writes, expire_before)
        return len(writes)


def run_with_checkpoints(
    rows: list[tuple[int, int, str]], rnd: random.Random, sizes: list[int], crashes: int
) -> CheckpointSim:
    events = [ev(T0 + t, port, cip=c) for t, port, c in rows]
    rnd.shuffle(events)
    sim = CheckpointSim()
    stream = offsets(events)
    pos, committed, step = 0, 0, 0
    while pos < len(stream):
        size = sizes[step % len(sizes)]
        step += 1
        sim.feed(stream[pos : pos + size])
        pos += size
        if crashes > 0 and rnd.random() < 0.2:  # crash: everything since the last checkpoint is lost
            crashes -= 1
            sim.crash()
            pos = committed
            continue
        if rnd.random() < 0.3:  # a checkpoint, then the input offset is committed
            sim.checkpoint()
            committed = pos
    sim.tick(NOW + 10 * BIN)
    sim.checkpoint()
    assert view(sim.latest().values()) == view(offline_alerts(events, CRASH_PARAMS.rule))
    return sim


@given(
    scenario,
    st.randoms(use_true_random=False),
    st.lists(st.integers(1, 60), min_size=1, max_size=8),
    st.integers(0, 3),
)
def test_checkpointed_state_equals_replay_for_any_batching_and_crashes(
    rows: list[tuple[int, int, str]], rnd: random.Random, sizes: list[int], crashes: int
) -> None:
    run_with_checkpoints(rows, rnd, sizes, crashes)


@pytest.mark.parametrize("seed", range(25))
def test_seeded_checkpoint_crash_scenarios_equal_replay(seed: int) -> None:
    run_with_checkpoints(*seeded_scenario(seed))


def test_a_window_changed_by_many_steps_is_written_once_with_its_latest_state() -> None:
    sim = CheckpointSim()
    for i in range(10):
        sim.feed([(i, ev(T0 + i, i))])
    writes, _ = sim.pending.drain()
    assert list(writes) == [META_KEY, *sim.engine.open]  # the meta record (the watermark moved), one window
    assert Meta.from_bytes(writes[META_KEY]) == sim.engine.meta
    assert WindowRecord.from_bytes(writes[list(writes)[1]]).count == 10


def test_meta_is_written_first_and_expiry_keeps_the_highest_bound() -> None:
    pending = PendingWrites()
    rec = WindowRecord()
    pending.add(StepResult(writes={b"0000000000001x": rec}, expire_before_ms=5))
    pending.add(StepResult(writes={META_KEY: Meta(7, 9)}, expire_before_ms=3))
    writes, expire = pending.drain()
    assert next(iter(writes)) == META_KEY and Meta.from_bytes(writes[META_KEY]) == Meta(7, 9)
    assert expire == 5
    assert not pending and pending.drain() == ({}, None)


def test_a_held_record_is_what_the_engine_continues_from() -> None:
    """A window closed by the watermark leaves the engine's memory but not the pending writes: a late
    event for it must continue from the held record, not from the stale store."""
    sim = CheckpointSim(StreamParams(rule=RuleParams(threshold=3), grace_ms=0, max_skew_ms=10**12))
    sim.feed([(0, ev(T0, 1)), (1, ev(T0 + 1, 2))])
    sim.feed([(2, ev(T0 + 2 * BIN, 1, cip="other"))])  # watermark passes the first window: closed
    sim.feed([(3, ev(T0 + 5, 3))])  # late: takes the closed window to the threshold
    late = [a for a in sim.published if a["Phase"] == "late"]
    assert len(late) == 1 and late[0]["ConnectionsCount"] == 3

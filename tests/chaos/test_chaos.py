"""The randomized whole-system tier: from a seed, a scenario (data, partition layout, topology, store,
hosts and faults: tests/chaos/scenario.py) runs against the real broker and Redis (tests/chaos/kit.py),
and its final alerts must equal `replay` over the same events, every compared column, each `final`, with
every bad record dead-lettered once by key.

- `make test`: FIXED_SEEDS (chosen to cover every dimension of scenario.ALL_DIMENSIONS, which
  test_fixed_seeds_cover_every_dimension checks without services) and REGRESSION_SEEDS.
- `make chaos SEED=N` (or SEED=N,M): exactly those scenarios; `make chaos RUNS=200`: 200 fresh seeds
  from CHAOS_BASE (the Makefile sets it from the clock and prints it).

A failure says the seed and the scenario, which windows are wrong (with their by-key partition) and what
the run did when.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.integration.conftest import KafkaTopics, forget_job
from tests.integration.private_services import PrivateKafka, private_redis
from tests.integration.workerkit import Job

from .kit import Run
from .scenario import ALL_DIMENSIONS, make_scenario

# Seeds of `make test`: together they cover every dimension (see the test below), within a few minutes.
# Picked by scenario.pick_seeds(range(1, 3000), ...): greedy coverage, cheapest first.
FIXED_SEEDS: list[int] = [165, 645, 808, 1333, 1512, 1781]
# Every seed that ever failed, with what it found (kept as regression cases).
REGRESSION_SEEDS: list[int] = [
    # Router topology with input partitions that never hold a record (issue 22: caught_up() sees their
    # lag as None, so no partition is ever idle): the newest window of one by-key partition keeps its
    # early, partial alert and no final comes. Every run of these failed on 7890dfc.
    5,  # 4 partitions, 2 empty, 3 hosts, rebalance: by-key partition 2's last window early 30-33 of 54
    27,  # 8 partitions, 7 empty: by-key partition 1's last window early (210 conns), never final
    34,  # 6 partitions, 5 empty, broker restart: two last windows early at 34/66 and 30/33
    40,  # 8 partitions, 3 empty, SIGKILL + restart: by-key partition 7's last window early 74 of 153
    # Router, 4 partitions, 2 late, 3 hosts, SIGKILL + restart: once (of 2 runs) the group had not
    # committed every input record 120 s after the feed ended (no detail recorded then; rerun passed).
    26,
]


def chosen_seeds() -> list[int]:
    """CHAOS_SEED (comma-separated), else CHAOS_RUNS fresh seeds from CHAOS_BASE, else the fixed set."""
    if os.environ.get("CHAOS_SEED"):
        return [int(s) for s in os.environ["CHAOS_SEED"].split(",") if s.strip()]
    if os.environ.get("CHAOS_RUNS"):
        base = int(os.environ.get("CHAOS_BASE") or 1_000_000)
        return [base + i for i in range(int(os.environ["CHAOS_RUNS"]))]
    return sorted(set(FIXED_SEEDS + REGRESSION_SEEDS))


def test_fixed_seeds_cover_every_dimension() -> None:
    """The fixed seeds exercise every value of every dimension at least once (no services needed)."""
    covered: set[str] = set()
    for seed in FIXED_SEEDS:
        covered |= make_scenario(seed).dimensions()
    assert ALL_DIMENSIONS <= covered, f"not covered: {sorted(ALL_DIMENSIONS - covered)}"


def keep_log(job: Job, seed: int) -> None:
    """A failed scenario's whole job log (every worker's lines) to CHAOS_LOG_DIR, if set."""
    folder = os.environ.get("CHAOS_LOG_DIR")
    if folder and job.log.exists():
        Path(folder).mkdir(parents=True, exist_ok=True)
        target = Path(folder) / f"seed-{seed}-{job.name}.log"
        shutil.copyfile(job.log, target)
        sys.stderr.write(f"chaos: the job log is kept in {target}\n")


class LazyBroker:
    """A private broker for the scenarios that freeze or restart one: started on first need, shared by
    this test process's later scenarios, stopped at the end of the module."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.broker: PrivateKafka | None = None

    def get(self) -> PrivateKafka:
        if self.broker is None:
            self.broker = PrivateKafka(self.folder)
            self.broker.start()
        self.broker.ensure_running()
        return self.broker

    def close(self) -> None:
        if self.broker is not None:
            self.broker.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def lazy_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LazyBroker]:
    holder = LazyBroker(tmp_path_factory.mktemp("chaos-kafka"))
    try:
        yield holder
    finally:
        holder.close()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("seed", chosen_seeds())
def test_scenario_equals_replay(
    seed: int,
    brokers: str,
    unique_name: str,
    tmp_path: Path,
    kafka_admin: AdminClient,
    kafka_topics: KafkaTopics,
    lazy_broker: LazyBroker,
) -> None:
    scenario = make_scenario(seed)
    sys.stderr.write(f"chaos scenario {scenario.describe()}\n")
    broker = lazy_broker.get() if scenario.broker_faults else None
    job = Job(unique_name, broker.address if broker else brokers, tmp_path)
    run: Run | None = None
    with ExitStack() as stack:
        redis = stack.enter_context(private_redis(tmp_path / "redis")) if scenario.store == "redis" else None
        try:
            run = Run(scenario, job, tmp_path, broker, redis)
            run.run()
        except AssertionError as exc:
            keep_log(job, seed)
            done = "\n".join(run.events) if run is not None else ""
            raise AssertionError(
                f"chaos {scenario.describe()}\nreplay it: make chaos SEED={seed}\n{exc}\n"
                + ("" if "what the run did" in str(exc) else f"what the run did:\n{done}")
            ) from None
        finally:
            if run is not None:
                run.close()
            job.close()
            if broker is not None:
                broker.ensure_running()
            forget_job(job, None if broker else kafka_admin, kafka_topics)

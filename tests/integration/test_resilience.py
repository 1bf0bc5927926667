"""Crashes, rebalances and Redis restarts do not lose, invent or double-count: real broker, real Redis.

Each test produces one generated workload with many scans (made once per module) into its job's topic,
runs `iis-portscan worker` processes, and disturbs them once a worker has processed, or the job's group
has committed, a given share of the input - not after a sleep, so the disturbance lands mid-stream on a
fast machine as on a slow one, which each test asserts (the group had not committed the whole input
when it came). The latest revision per AlertId must equal `replay` (core.offline.offline_alerts) over the same
events, with no dead letter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .private_services import private_redis
from .workerkit import (
    STARTUP_AND_WORK_S,
    Job,
    WorkerProcess,
    await_answer,
    expected_view,
    jsonl,
    no_dead_letters,
    recent_workload,
)

pytestmark = pytest.mark.slow

EVENTS = 120_000
BUDGET_S = 420.0  # a workload this size, four crashes and recoveries, on a loaded 2-core host
OUTAGE_S = 4.0  # how long Redis stays down


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The module's input file (120,000 recent events, 8% of them scans) and replay's answer over it."""
    records = recent_workload(EVENTS, seed=21, benign_clients=3_000, scan_share=0.08)
    path = tmp_path_factory.mktemp("resilience") / "events.jsonl"
    path.write_bytes(jsonl(records))
    expected = expected_view(records)
    assert len(expected) > 50
    return path, expected


def settings(store: str, keyed: bool = True) -> dict[str, str]:
    return {
        "store": store,
        "input_keyed": "true" if keyed else "false",
        "partitions": "4",
        "idle_timeout": "3s",
        "batch_size": "2000",
        "standby_replicas": "0",
        "session_timeout": "6s",  # the broker's minimum: a killed member is waited out soonest
        # Offsets are committed at each checkpoint: often, so that a kill triggered by progress lands
        # mid-stream (the worker never gets a whole share ahead of what it committed).
        "checkpoint_interval": "250ms",
    }


def start(job: Job, env: dict[str, str], data_dir: Path) -> WorkerProcess:
    return job.start_worker("--data-dir", str(data_dir), env=env, web=True)


def finish(job: Job, expected: dict[str, dict[str, Any]], alive: Any) -> None:
    """The answer equals replay's, every window closed, and no dead letter."""
    alerts, dlq = job.reader(job.alert_topic), job.reader(job.dlq_topic)
    await_answer(alerts, expected, alive, "alerts after the disturbances", dlq=dlq, timeout=240)
    dlq.poll(1.0)
    no_dead_letters(dlq)
    assert "Traceback" not in job.log.read_text(errors="replace").rsplit("===== ", 1)[-1]


@pytest.fixture
def wipe_redis(redis_url: str, job: Job) -> Iterator[None]:
    """The job's keys in the shared Redis are deleted after the test."""
    yield
    from streams.state.redis import RedisStore

    async def wipe() -> None:
        store = RedisStore(redis_url, job.name, 1000)
        await store.delete_all()
        await store.close()

    asyncio.run(wipe())


@pytest.mark.parametrize(
    ("store", "keyed", "static"),
    [
        pytest.param("rocksdb://", True, False, id="rocksdb-keyed"),
        # A restarted worker with the same --group-instance-id (as a StatefulSet runs it) takes its place
        # in the group at once; without one, the group waits out the killed member's session.
        pytest.param("redis", True, True, id="redis-keyed-static"),
        pytest.param("redis", False, True, id="redis-router-static"),
    ],
)
def test_sigkill_mid_stream_equals_replay(
    store: str,
    keyed: bool,
    static: bool,
    redis_url: str,
    job: Job,
    tmp_path: Path,
    workload: tuple[Path, dict[str, dict[str, Any]]],
    wipe_redis: None,
) -> None:
    """Four SIGKILLs, each once the worker has processed 30% of what is left of the input; with
    RocksDB the third restart is on an empty data dir ("another host"), so state must come back from the
    changelog."""
    path, expected = workload
    job.extend_budget(BUDGET_S)
    env = job.env(**settings(redis_url if store == "redis" else store, keyed))
    if static:
        env["PORTSCAN_GROUP_INSTANCE_ID"] = "worker-0"
    job.cli("topics", "create", env=env)
    job.cli("produce", str(path), env=env)
    # The detector's source: the input when keyed, else the repartition topic the router fills.
    source = job.input_topic if keyed else job.repartition_topic
    data_dir = tmp_path / "state-a"
    committed = 0
    for round_ in range(4):
        if round_ == 2 and store == "rocksdb://":
            data_dir = tmp_path / "state-b"
        worker = start(job, env, data_dir)
        # Killed once it has processed 30% of what is left (it starts from the committed offsets).
        worker.wait_metric("iis_portscan_events_total", (EVENTS - committed) * 3 // 10, job.budget(120))
        worker.kill()
        before, (committed, _) = committed, job.progress(source)
        assert committed < EVENTS, f"kill {round_ + 1} came after the whole input was committed"
        assert committed >= before
    worker = start(job, env, data_dir)
    finish(job, expected, worker.check_alive)


@pytest.mark.parametrize("standbys", [0, 1])
def test_rebalance_two_workers_one_leaves_and_returns(
    standbys: int, job: Job, tmp_path: Path, workload: tuple[Path, dict[str, dict[str, Any]]]
) -> None:
    """Two worker processes share 4 partitions; one stops mid-stream once both process input (its
    windows move over via the changelog) and starts again once the group has committed more (the other
    worker took its partitions over). With a
    standby replica, each worker keeps the other's partitions up to date from the changelog, and a
    partition that moves over is recovered from where its standby got to."""
    path, expected = workload
    job.extend_budget(BUDGET_S)
    env = job.env(**{**settings("rocksdb://"), "standby_replicas": str(standbys)})
    job.cli("topics", "create", env=env)
    # The first half now, the second once b has left: b leaves mid-stream however fast the workers are
    # (a fast worker took the whole input before the second one had joined the group).
    lines = path.read_bytes().splitlines(keepends=True)
    first, rest = tmp_path / "first.jsonl", tmp_path / "rest.jsonl"
    first.write_bytes(b"".join(lines[: len(lines) // 2]))
    rest.write_bytes(b"".join(lines[len(lines) // 2 :]))
    job.cli("produce", str(first), env=env)
    a = start(job, env, tmp_path / "a")
    b = start(job, env, tmp_path / "b")
    # Both process input: the group has settled with both (a SIGTERM during the group's first
    # rebalance is another case: the drain timeout bounds it).
    for worker in (a, b):
        worker.wait_metric("iis_portscan_events_total", 1, job.budget(STARTUP_AND_WORK_S))
    assert b.stop() == 0  # leaves the group: a takes its partitions over
    left_at = job.progress(job.input_topic)[0]
    job.cli("produce", str(rest), env=env)
    job.wait_progress(job.input_topic, left_at + 1, a.check_alive)  # a has taken b's partitions over
    b = start(job, env, tmp_path / "b")  # comes back: the partitions are shared again

    def both_alive() -> None:
        a.check_alive()
        b.check_alive()

    assert job.progress(job.input_topic)[0] < EVENTS, "b came back after the whole input was committed"
    finish(job, expected, both_alive)


def test_redis_restart_mid_stream(
    job: Job, tmp_path: Path, workload: tuple[Path, dict[str, dict[str, Any]]]
) -> None:
    """Our own Redis (AOF on) is stopped and started while the worker runs: it waits, retries, and the
    answer is still exact."""
    path, expected = workload
    job.extend_budget(BUDGET_S)
    with private_redis(tmp_path / "redis") as redis:
        env = job.env(**settings(redis.url()))
        job.cli("topics", "create", env=env)
        job.cli("produce", str(path), env=env)
        worker = start(job, env, tmp_path / "w")
        job.wait_progress(job.input_topic, EVENTS // 4, worker.check_alive)
        redis.stop()  # SIGTERM: Redis flushes its AOF and exits
        assert job.progress(job.input_topic)[0] < EVENTS, "Redis stopped after the whole input was committed"
        time.sleep(OUTAGE_S)
        worker.check_alive()  # the worker waits for Redis rather than exit
        redis.start()
        finish(job, expected, worker.check_alive)
        text = job.log.read_text(errors="replace")
        assert "retrying in" in text and "succeeded again" in text

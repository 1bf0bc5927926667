"""Crashes and Redis restarts do not lose, invent or double-count: real broker, real Redis, real SIGKILL.

Each test produces a generated workload with many scans into a fresh topic, runs `iis-portscan worker`
as a subprocess, kills it with SIGKILL at random moments while it works, restarts it, and checks that
the latest revision per AlertId equals `replay` (core.batch.detect) over the same events.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError
from confluent_kafka.admin import AdminClient

from streams.core.batch import detect
from streams.core.parse import event_from_record
from streams.core.records import IISEvent
from streams.io.sample import Workload, generate

COMPARED = (
    "AlertId",
    "TimeGenerated",
    "cIP",
    "Computer",
    "sIP",
    "set_sPort",
    "ConnectionsCount",
    "portCount",
    "DistinctPortCount",
    "FirstSeen",
    "LastSeen",
    "set_scStatusFull",
    "set_csUserAgent",
)
EVENTS = 200_000


def cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args], env=env, capture_output=True, timeout=timeout, check=True
    )


class Worker:
    """One `iis-portscan worker` process, its log appended to a file."""

    def __init__(self, env: dict[str, str], log: Path, data_dir: Path) -> None:
        self.log = log
        with log.open("ab") as fh:
            fh.write(f"\n===== start {time.strftime('%X')} data-dir {data_dir}\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker", "--data-dir", str(data_dir)],
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )

    def wait_until_working(self, timeout_s: float = 120.0) -> None:
        """Until this run has restored its partitions and is processing (its log says so)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker exited early; see {self.log}"
            if b"restored" in self.log.read_bytes().split(b"===== start")[-1]:
                return
            time.sleep(0.2)
        raise AssertionError(f"worker did not start processing within {timeout_s}s; see {self.log}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def read_all(
    brokers: str, topic: str, idle_s: float = 3.0, limit_s: float = 60.0
) -> list[tuple[bytes, bytes]]:
    """Everything on a topic, read until it has been quiet for idle_s."""
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"reader-{os.urandom(4).hex()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + limit_s
    last = time.monotonic()
    try:
        while time.monotonic() < deadline and time.monotonic() - last < idle_s:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                continue
            out.append((msg.key(), msg.value()))
            last = time.monotonic()
    finally:
        consumer.close()
    return out


def view(alerts: Any) -> list[tuple[str, ...]]:
    return sorted(tuple(str(a[k]) for k in COMPARED) for a in alerts)


def latest(records: list[tuple[bytes, bytes]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for _, value in records:
        alert = orjson.loads(value)
        cur = out.get(alert["AlertId"])
        if cur is None or alert["Revision"] >= cur["Revision"]:
            out[alert["AlertId"]] = alert
    return out


@pytest.fixture
def workload(tmp_path: Path) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    start = int(time.time() * 1000) // 600_000 * 600_000 - 4 * 3_600_000  # recent, closes on idle
    records = list(
        generate(
            Workload(
                events=EVENTS,
                seed=21,
                start_ms=start,
                span_ms=3 * 3_600_000,
                benign_clients=3_000,
                scan_share=0.08,
            )
        )
    )
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records))
    yield path, records


def job_env(brokers: str, name: str, store: str, keyed: bool = True) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PORTSCAN_BROKERS": brokers,
            "PORTSCAN_APP_ID": name,
            "PORTSCAN_INPUT_TOPIC": f"{name}-in",
            "PORTSCAN_ALERT_TOPIC": f"{name}-alerts",
            "PORTSCAN_DLQ_TOPIC": f"{name}-dlq",
            "PORTSCAN_INPUT_KEYED": "true" if keyed else "false",
            "PORTSCAN_PARTITIONS": "4",
            "PORTSCAN_STORE": store,
            "PORTSCAN_IDLE_TIMEOUT": "3s",
            "PORTSCAN_BATCH_SIZE": "2000",
            "PORTSCAN_STANDBY_REPLICAS": "0",
            "PORTSCAN_SESSION_TIMEOUT": "8s",
        }
    )
    return env


def delete_topics(brokers: str, prefix: str) -> None:
    client = AdminClient({"bootstrap.servers": brokers})
    mine = [t for t in client.list_topics(timeout=10).topics if t.startswith(prefix)]
    if mine:
        for f in client.delete_topics(mine, operation_timeout=30).values():
            try:
                f.result(30)
            except Exception:
                pass


def wait_for_answer(
    brokers: str, topic: str, expected: list[dict[str, Any]], limit_s: float
) -> dict[str, Any]:
    """Poll the alert topic until the latest revisions equal the expected answer (or time runs out)."""
    deadline = time.monotonic() + limit_s
    got: dict[str, Any] = {}
    while time.monotonic() < deadline:
        got = latest(read_all(brokers, topic, idle_s=2.0))
        # Closed: `final`, or `late` when an event replayed after a rebalance reached a window the
        # restored watermark had closed (the same content: a revision's number follows its content).
        closed = all(a["Phase"] in ("final", "late") for a in got.values())
        if view(got.values()) == view(expected) and closed:
            break
        time.sleep(2)
    return got


@pytest.mark.parametrize(("store", "keyed"), [("rocksdb://", True), ("redis", True), ("redis", False)])
def test_sigkill_at_random_moments_equals_replay(
    store: str,
    keyed: bool,
    brokers: str,
    redis_url: str,
    unique_name: str,
    tmp_path: Path,
    workload: tuple[Path, list[dict[str, Any]]],
) -> None:
    path, records = workload
    name = unique_name[:40]
    env = job_env(brokers, name, redis_url if store == "redis" else store, keyed)
    log = tmp_path / "worker.log"
    expected = detect(e for e in map(event_from_record, records) if isinstance(e, IISEvent))
    assert len(expected) > 50
    rnd = random.Random(5)
    worker: Worker | None = None
    try:
        cli("topics", "create", env=env)
        cli("produce", str(path), env=env)
        data_dir = tmp_path / "state-a"
        for round_ in range(4):
            if round_ == 2 and store == "rocksdb://":
                data_dir = tmp_path / "state-b"  # "another host": state must come back from the changelog
            worker = Worker(env, log, data_dir)
            worker.wait_until_working()
            time.sleep(rnd.uniform(0.5, 4.0))  # SIGKILL at a random moment while it works
            assert worker.proc.poll() is None, f"worker exited early; see {log}"
            worker.kill()
        worker = Worker(env, log, data_dir)
        got = wait_for_answer(brokers, f"{name}-alerts", expected, limit_s=240)
        assert view(got.values()) == view(expected), f"see {log}"
        dead = read_all(brokers, f"{name}-dlq", idle_s=1.0)
        assert dead == [], [orjson.loads(v)["Reason"] for _, v in dead[:5]]
        assert b"Traceback" not in log.read_bytes().split(b"===== start")[-1]
    except BaseException:
        sys.stderr.write(log.read_text(errors="replace")[-6000:] if log.exists() else "no log")
        raise
    finally:
        if worker is not None:
            worker.stop()
        delete_topics(brokers, name)
        if store == "redis":
            import asyncio

            from streams.state.redis import RedisStore

            async def wipe() -> None:
                s = RedisStore(redis_url, name, 1000)
                await s.delete_all()
                await s.close()

            asyncio.run(wipe())
        shutil.rmtree(tmp_path / "state-a", ignore_errors=True)


def _run_scenario(
    env: dict[str, str], brokers: str, path: Path, records: list[dict[str, Any]], tmp_path: Path, body: Any
) -> None:
    """Topics, produce, run `body(log)` (which manages workers), then compare with replay."""
    name = env["PORTSCAN_APP_ID"]
    log = tmp_path / "worker.log"
    expected = detect(e for e in map(event_from_record, records) if isinstance(e, IISEvent))
    workers: list[Worker] = []
    try:
        cli("topics", "create", env=env)
        cli("produce", str(path), env=env)
        body(log, workers)
        got = wait_for_answer(brokers, f"{name}-alerts", expected, limit_s=240)
        assert view(got.values()) == view(expected), f"see {log}"
        assert read_all(brokers, f"{name}-dlq", idle_s=1.0) == []
    except BaseException:
        sys.stderr.write(log.read_text(errors="replace")[-6000:] if log.exists() else "no log")
        raise
    finally:
        for w in workers:
            w.stop()
        delete_topics(brokers, name)


def test_rebalance_two_workers_one_leaves_and_returns(
    brokers: str, unique_name: str, tmp_path: Path, workload: tuple[Path, list[dict[str, Any]]]
) -> None:
    """Two worker processes share 4 partitions; one stops mid-stream (its windows move over via the
    changelog) and later starts again."""
    path, records = workload
    env = job_env(brokers, unique_name[:40], "rocksdb://")

    def body(log: Path, workers: list[Worker]) -> None:
        a = Worker(env, log, tmp_path / "a")
        b = Worker(env, log, tmp_path / "b")
        workers += [a, b]
        a.wait_until_working()
        time.sleep(3)
        b.stop()  # leaves the group mid-stream
        time.sleep(6)
        workers.append(Worker(env, log, tmp_path / "b"))  # and comes back

    _run_scenario(env, brokers, path, records, tmp_path, body)


def test_redis_restart_mid_stream(
    brokers: str, unique_name: str, tmp_path: Path, workload: tuple[Path, list[dict[str, Any]]]
) -> None:
    """Our own Redis (AOF on) is stopped and started while the worker runs: it waits, retries, and the
    answer is still exact."""
    path, records = workload
    redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = 26379 + random.randrange(1000)
    rdir = tmp_path / "redis"
    rdir.mkdir()

    def start_redis() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                redis_bin,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(rdir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if (
                subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip()
                == b"PONG"
            ):
                return proc
            time.sleep(0.1)
        raise AssertionError("redis-server did not start")

    redis = start_redis()
    env = job_env(brokers, unique_name[:40], f"redis://127.0.0.1:{port}/0")

    def body(log: Path, workers: list[Worker]) -> None:
        nonlocal redis
        w = Worker(env, log, tmp_path / "w")
        workers.append(w)
        w.wait_until_working()
        time.sleep(1.5)
        redis.terminate()  # SIGTERM: Redis flushes its AOF and exits
        redis.wait(20)
        time.sleep(4)
        redis = start_redis()
        assert w.proc.poll() is None, "the worker must wait for Redis, not exit"

    try:
        _run_scenario(env, brokers, path, records, tmp_path, body)
        text = (tmp_path / "worker.log").read_text(errors="replace")
        assert "retrying in" in text and "succeeded again" in text
    finally:
        redis.terminate()
        redis.wait(20)

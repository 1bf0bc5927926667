"""What a running worker exposes to others (issue 23): its web port and its files.

Against the shared test broker: with `--web-port` the port serves `/healthz`, `/readyz` and `/metrics` and
every other path answers 404 (faust's own views would serve the stored windows, with the clients' queries
and user agents, at `/table/windows/<key>/`); the data directory the worker creates is 0700 and nothing in
it is readable by other users (umask 077).
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from .workerkit import (
    Job,
    expected_view,
    free_port,
    http_get,
    latest,
    recent_workload,
    send,
    values_of,
    view,
)

pytestmark = pytest.mark.integration

SERVED = ("/healthz", "/readyz", "/metrics")
# faust's default views (tables, router, statistics, graph, performance, the production index), near
# misses of ours, and anything else.
NOT_SERVED = (
    "/",
    "/table/",
    "/table/windows/",
    "/table/windows/x/",
    "/router/",
    "/router/topics",
    "/router/windows/",
    "/router/windows/x/",
    "/assignment/",
    "/graph/",
    "/performance/",
    "/stats/",
    "/metrics/",
    "/metrics/x",
    "/healthz/",
    "/readyz/x",
    "/static/",
    "/favicon.ico",
    "/anything",
)


def wait_for(port: int, path: str, timeout: float, job: Job) -> None:
    deadline = time.monotonic() + job.budget(timeout)
    while time.monotonic() < deadline:
        job.workers[-1].check_alive()
        if http_get(port, path)[0] == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"{path}: not 200 within {timeout:.0f}s")


def test_web_port_serves_health_and_metrics_only(job: Job, tmp_path: Path) -> None:
    port = free_port()
    env = job.env(web_port=str(port), web_host="127.0.0.1", data_dir=str(tmp_path / "state"))
    with job.worker(env=env):
        wait_for(port, "/readyz", 60, job)
        send(job, recent_workload(500, seed=23))  # the windows table holds something
        for path in SERVED:
            assert http_get(port, path)[0] == 200, path
        served = {path: http_get(port, path)[0] for path in NOT_SERVED}
        assert {p: s for p, s in served.items() if s != 404} == {}


def test_state_is_readable_by_the_worker_user_only(job: Job, tmp_path: Path) -> None:
    """The data directory holds every client's user names, queries and agents: the worker creates it 0700
    and everything in it without group or other permissions (umask 077), whatever the caller's umask."""
    data_dir = tmp_path / "state"  # the worker creates it
    records = recent_workload(3000, seed=24)
    env = job.env(data_dir=str(data_dir), input_keyed="true", checkpoint_interval="200ms")
    job.cli("topics", "create", env=env)
    old = os.umask(0o022)  # the usual umask, inherited by the worker
    try:
        with job.worker(env=env) as proc:
            send(job, records)
            reader = job.reader(job.alert_topic)
            want = expected_view(records)
            reader.poll_until(lambda got: view(latest(values_of(got)).values()) == want, 90, proc.check_alive)
            # the windows are checkpointed (RocksDB files written) before the alerts' offsets commit
            deadline = time.monotonic() + job.budget(30)
            while not any(files for _, _, files in os.walk(data_dir)) and time.monotonic() < deadline:
                time.sleep(0.5)
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(data_dir).st_mode)
    assert mode == 0o700, f"data dir mode {mode:o}"
    seen, loose = 0, []
    for root, dirs, files in os.walk(data_dir):
        for name in dirs + files:
            path = os.path.join(root, name)
            seen += 1
            if stat.S_IMODE(os.lstat(path).st_mode) & 0o077:
                loose.append(f"{path}: {stat.S_IMODE(os.lstat(path).st_mode):o}")
    assert seen > 3, "the worker wrote no state"
    assert loose == [], "readable by others:\n" + "\n".join(loose[:20])

"""What a running worker exposes to others (issue 23): its web port and its files.

Against the shared test broker: with `--web-port` the port serves `/healthz`, `/readyz` and `/metrics` and
every other path answers 404 (faust's own views would serve the stored windows, with the clients' queries
and user agents, at `/table/windows/<key>/`).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .workerkit import Job, free_port, http_get, recent_workload, send

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

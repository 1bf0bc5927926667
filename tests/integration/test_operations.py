"""Running it in production: health and readiness endpoints, lag metrics, graceful drain, OCSF output.

Against the shared test broker: `/healthz` answers within seconds of start, `/readyz` once partitions are
assigned; the lag metric of every input partition reaches 0 when the worker has caught up; SIGTERM then
exits 0 within the drain time with every input offset committed to the end, so a restarted worker
re-emits nothing; the worker publishes OCSF Detection Findings with `--alert-format ocsf`.
(`/healthz` turning red on a frozen broker is in test_field_faults.py, which has a broker of its own.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import KafkaTopics
from .workerkit import (
    Job,
    Record,
    expected_view,
    free_port,
    http_get,
    latest,
    metric_samples,
    recent_workload,
    schema_errors,
    send,
    values_of,
    view,
)

pytestmark = pytest.mark.integration
DRAIN_S = 20.0


def poll(predicate: Callable[[], bool], timeout: float, what: str, job: Job) -> float:
    """Seconds until `predicate()` holds (the latest worker alive); fails after `timeout`."""
    started = time.monotonic()
    deadline = started + job.budget(timeout)
    while time.monotonic() < deadline:
        job.workers[-1].check_alive()
        if predicate():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def test_endpoints_lag_and_graceful_drain(job: Job, tmp_path: Path, kafka_topics: KafkaTopics) -> None:
    port = free_port()
    records = recent_workload(6000, seed=11)
    env = job.env(
        web_port=str(port),
        web_host="127.0.0.1",
        data_dir=str(tmp_path / "state"),
        drain_timeout=f"{DRAIN_S}s",
    )
    with job.worker(env=env) as proc:
        healthy_after = poll(lambda: http_get(port, "/healthz")[0] == 200, 60, "/healthz 200", job)
        poll(lambda: http_get(port, "/readyz")[0] == 200, 60, "/readyz 200", job)
        status, body = http_get(port, "/metrics")
        assert status == 200 and "# HELP iis_portscan_consumer_lag" in body and "# TYPE" in body
        send(job, records)
        reader = job.reader(job.alert_topic)
        want = expected_view(records)
        reader.poll_until(lambda got: view(latest(values_of(got)).values()) == want, 90, proc.check_alive)

        def caught_up() -> bool:
            lags = metric_samples(http_get(port, "/metrics")[1], "iis_portscan_consumer_lag")
            # every partition of the input and of the repartition topic reported, all at 0
            return len(lags) == 8 and all(v == 0 for v in lags.values())

        poll(caught_up, 60, "consumer lag 0 on every input partition", job)
        text = http_get(port, "/metrics")[1]
        assert metric_samples(text, "iis_portscan_events_total")[""] == len(records)
        assert metric_samples(text, "iis_portscan_ready")[""] == 1
        assert metric_samples(text, "iis_portscan_fetch_stalled_seconds")[""] == 0
        assert len(metric_samples(text, "iis_portscan_watermark_seconds")) == 4
        alerts_before = len(reader.records)
        started = time.monotonic()
        code = proc.stop()
        drained_in = time.monotonic() - started
    assert code == 0, f"exit code {code} after SIGTERM"
    assert drained_in < DRAIN_S, f"drain took {drained_in:.1f}s"
    for topic in (job.input_topic, job.repartition_topic):
        pairs = job.offsets(topic)
        assert all(c == end for c, end in pairs), f"{topic}: committed/end {pairs}"
    # A restarted worker re-emits nothing: everything it reads again was committed.
    with job.worker(env=env):
        poll(lambda: http_get(port, "/readyz")[0] == 200, 60, "/readyz 200 after restart", job)
        time.sleep(3)
        reader.poll(2)
        assert len(reader.records) == alerts_before, "the restarted worker re-emitted alerts"
    assert healthy_after < 30


def test_worker_publishes_ocsf_findings(job: Job, tmp_path: Path) -> None:
    records = recent_workload(3000, seed=12)
    env = job.env(alert_format="ocsf", data_dir=str(tmp_path / "state"), input_keyed="true")
    want = expected_view(records)
    job.cli("topics", "create", env=env)
    with job.worker(env=env) as proc:
        send(job, records)
        reader = job.reader(job.alert_topic)

        def answered(got: list[Record]) -> bool:
            findings = values_of(got)
            return view(latest(f["unmapped"] for f in findings).values()) == want

        got = reader.poll_until(answered, 90, proc.check_alive)
    findings = values_of(got)
    assert {f["class_uid"] for f in findings} == {2004}
    assert {f["type_uid"] for f in findings} == {200401, 200402}  # Create (early), Update (final)
    assert schema_errors(findings, "ocsf-detection-finding.schema.json") == []


@pytest.mark.slow
def test_static_membership_restart_moves_no_partition(job: Job, tmp_path: Path) -> None:
    """Two workers with --group-instance-id: one restarts within the session timeout, and the other sees
    no rebalance (without static membership, the leave and the rejoin would each revoke its partitions)."""
    ports = [free_port(), free_port()]
    env = job.env(session_timeout="30s", web_host="127.0.0.1")

    def worker_args(i: int) -> tuple[str, ...]:
        return (
            "--group-instance-id",
            f"w{i}",
            "--web-port",
            str(ports[i]),
            "--data-dir",
            str(tmp_path / f"w{i}"),
        )

    def rebalances(i: int) -> float:
        text = http_get(ports[i], "/metrics")[1]
        return metric_samples(text, "iis_portscan_rebalances_total").get("", -1.0)

    job.cli("topics", "create", env=env)
    with job.worker(*worker_args(1), env=env) as other:
        with job.worker(*worker_args(0), env=env) as first:
            poll(
                lambda: http_get(ports[0], "/readyz")[0] == 200 and http_get(ports[1], "/readyz")[0] == 200,
                60,
                "both ready",
                job,
            )

            def settled_count() -> float:  # the count once the group has stopped changing
                before = rebalances(1)
                time.sleep(3)
                return before if rebalances(1) == before else -1.0

            poll(lambda: settled_count() >= 1, 60, "the group settled", job)
            before = rebalances(1)
            assert first.stop() == 0
        with job.worker(*worker_args(0), env=env):
            poll(lambda: http_get(ports[0], "/readyz")[0] == 200, 60, "the restarted worker ready", job)
            time.sleep(5)  # a rebalance, if any, would reach the other worker by now
            assert rebalances(1) == before, "the restart moved partitions"
        other.check_alive()

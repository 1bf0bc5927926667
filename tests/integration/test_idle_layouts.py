"""Idle closing under the partition layouts real topics have: input partitions that never held a record.

A topic routinely has more partitions than shippers or hosts; a partition with no record and no committed
offset has no lag known from fetches (no committed offset to count from). Such a partition used to look
lagging forever, which kept every window of the worker from closing by idleness (with the router: of every
partition): the last windows before a quiet period kept their early, partial alert. Pinned here: one
scanner's requests all in one partition of a 4-partition input topic give `early` then `final`, in both
topologies; and the README's path (`topics create --partitions 8`, `produce` of one scanner's log, keyed,
so seven partitions stay empty).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from .workerkit import (
    BIN_MS,
    STARTUP_AND_WORK_S,
    Job,
    await_answer,
    event,
    expected_view,
    keyed,
    latest,
    now_ms,
    produce,
    revisions_by_id,
    values_of,
)

IDLE = ("--idle-timeout", "3s", "--grace", "5s")


def scan(cip: str, ports: int) -> list[dict[str, object]]:
    """One client's requests to `ports` ports, two hours ago (so that idleness, not the wall clock,
    closes its window: see core.engine.PartitionEngine.tick)."""
    start = (now_ms() - 2 * 3_600_000) // BIN_MS * BIN_MS + 60_000
    return [event(start + i * 1000, cip, 8000 + i) for i in range(ports)]


@pytest.mark.integration
@pytest.mark.parametrize("input_keyed", ["false", "true"], ids=["router", "keyed"])
def test_one_partition_of_four_with_data_closes_by_idleness(
    job: Job, tmp_path: Path, input_keyed: str
) -> None:
    env = job.env(partitions="4", input_keyed=input_keyed)
    job.cli("topics", "create", env=env)
    alerts = job.reader(job.alert_topic)
    worker = job.start_worker(*IDLE, "--data-dir", str(tmp_path / "data"), env=env, web=True)
    worker.wait_metric("iis_portscan_ready", 1, STARTUP_AND_WORK_S)
    records = scan("203.0.113.50", 40)
    produce(job.brokers, job.input_topic, keyed(records), partition=0)  # partitions 1-3 stay empty

    await_answer(alerts, expected_view(records), worker.check_alive, "early, then final")
    revisions = revisions_by_id(values_of(alerts.records))
    assert [[phase for _, phase in revs] for revs in revisions.values()] == [["early", "final"]]
    assert worker.metric("iis_portscan_overdue_open_windows") == 0


@pytest.mark.integration
def test_readme_path_eight_partitions_one_scanner(job: Job, tmp_path: Path) -> None:
    """`topics create --partitions 8`, a worker (the default topology: the router), `produce` of one
    scanner's W3C log (keyed: one partition of eight holds it): `early`, then `final` after the idle
    timeout."""
    records = scan("198.51.100.23", 45)
    log = tmp_path / "u_ex251102.log"
    fields = (
        "date time s-sitename s-computername s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip"
    )
    fields += " cs(User-Agent) sc-status sc-substatus sc-win32-status"
    lines = ["#Software: Microsoft Internet Information Services 10.0", f"#Fields: {fields}"]
    for r in records:
        date, time_ = str(r["TimeGenerated"]).rstrip("Z").split("T")
        lines.append(
            f"{date} {time_[:8]} W3SVC1 {r['Computer']} {r['sIP']} GET / - {r['sPort']} - {r['cIP']} "
            f"masscan/1.3 404 0 2"
        )
    log.write_text("\n".join(lines) + "\n")
    env = job.env(partitions="8")
    job.cli("topics", "create", "--partitions", "8", env=env)
    alerts = job.reader(job.alert_topic)
    worker = job.start_worker("--idle-timeout", "5s", "--data-dir", str(tmp_path / "data"), env=env, web=True)
    worker.wait_metric("iis_portscan_ready", 1, STARTUP_AND_WORK_S)
    out = job.cli("produce", str(log), env=env)
    assert "45 records" in out, out

    alerts.poll_until(
        lambda got: any(a["Phase"] == "final" for a in values_of(got)),
        STARTUP_AND_WORK_S,
        worker.check_alive,
        "a final alert",
    )
    (alert,) = latest(values_of(alerts.records)).values()
    assert (alert["cIP"], alert["portCount"], alert["Phase"]) == ("198.51.100.23", 45, "final")
    assert [p for _, p in next(iter(revisions_by_id(values_of(alerts.records)).values()))] == [
        "early",
        "final",
    ]
    assert orjson.loads(orjson.dumps(alert))["ConnectionsCount"] == 45

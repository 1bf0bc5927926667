"""The worker reads what log shippers put on Kafka: each shipper's messages give `replay`'s alerts.

The fixtures in tests/data/shippers/ hold the same IIS requests as Filebeat, Fluent Bit, Vector, Cribl,
Logstash, ECS (envelope and document) and NXLog messages, and mixed on one topic. Each file goes to its
own job's input topic as it is, one message per line, keyed by the file so that a source's lines stay in
order on one partition (as a shipper keyed by host or path sends them); the worker's latest alerts must
equal `replay` over the W3CIISLog twin of the same requests. The default topology (router and
repartition topic) reads every format; the keyed topology reads the mixed file directly in the detector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.core.offline import offline_alerts
from streams.core.parse import event_from_record
from streams.core.records import IISEvent

from .workerkit import (
    Job,
    Record,
    latest,
    produce,
    values_of,
    view,
    view_diff,
)

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parents[1] / "data" / "shippers"
FORMATS = ("filebeat", "fluentbit", "vector", "cribl", "logstash", "ecs-envelope", "ecs", "nxlog", "mixed")


def expected() -> dict[str, dict[str, Any]]:
    """`replay` over the W3CIISLog twin of the fixtures."""
    records = [orjson.loads(line) for line in (DATA / "w3ciislog.jsonl").read_bytes().splitlines() if line]
    events = [e for e in map(event_from_record, records) if isinstance(e, IISEvent)]
    assert len(events) == len(records)
    return view(offline_alerts(events))


def run(job: Job, tmp_path: Path, name: str, **settings: str) -> None:
    lines = [line for line in (DATA / f"{name}.jsonl").read_bytes().splitlines() if line.strip()]
    # --computer: the mixed file has bare W3C lines, which name no host (the others' hosts win)
    env = job.env(idle_timeout="2s", data_dir=str(tmp_path / "state"), computer="WEB01", **settings)
    job.cli("topics", "create", env=env)
    want = expected()
    assert len(want) >= 2, "the fixture should alert"
    with job.worker(env=env) as proc:
        produce(job.brokers, job.input_topic, [(name.encode(), line) for line in lines])
        reader = job.reader(job.alert_topic)

        def answered(got: list[Record]) -> bool:
            current = latest(values_of(got))
            return view(current.values()) == want and all(a["Phase"] != "early" for a in current.values())

        try:
            reader.poll_until(answered, 90, proc.check_alive, f"{name}: alerts == replay, all closed")
        except AssertionError as exc:
            got = view(latest(values_of(reader.records)).values())
            raise AssertionError(f"{exc}\n{view_diff(got, want)}") from None
        dead = job.reader(job.dlq_topic)
        dead.poll(1.0)
        assert dead.records == [], (
            f"{name}: dead letters {[d['Detail'] for d in values_of(dead.records)][:3]}"
        )


@pytest.mark.parametrize("name", FORMATS)
def test_each_shipper_format_equals_replay(job: Job, tmp_path: Path, name: str) -> None:
    run(job, tmp_path, name)


def test_mixed_formats_read_by_the_detector_on_keyed_input(job: Job, tmp_path: Path) -> None:
    run(job, tmp_path, "mixed", input_keyed="true", partitions="1")

"""The worker's metrics: plain counters on the hot path, Prometheus text (prometheus-client) at scrape time.

Counting an event must cost a dict increment, not a library call, so the detector keeps `Counter`s
and a scrape turns them, and a snapshot of the worker's state (lag, watermarks, readiness), into metric
families. Names follow the Prometheus conventions (`_total` counters, `_seconds` units); the list that
dashboards and alert rules may use is deploy/observability/METRICS.txt, checked by the tests.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series beside every counter and histogram
PREFIX = "iis_portscan_"
COUNTER_HELP = {
    "messages": "input messages read (a message may hold an envelope of records)",
    "events": "valid events processed",
    "batches": "fetches processed",
    "routed": "events forwarded by the router to the repartition topic",
    "records_written": "window and watermark records written to the store",
    "checkpoints": "checkpoints completed (alerts delivered, state written, input acknowledged)",
    "windows_expired": "closed windows deleted past the retention",
    "windows_spilled": "open windows spilled to the store past --max-open-windows (read back when needed)",
    "spilled_windows_closed": "spilled windows read back from the store when the watermark closed their bin",
    "stale_batches_skipped": "fetched batches of partitions revoked before they were processed",
    "fetches_not_handed_on": "partition fetches not handed on (a rebalance began, or paused): read again",
    "partitions_fenced": "partitions let go because another worker claimed them in the shared store",
    "events_already_applied": "events skipped because their window had applied them (input read twice)",
    "dead_letters_unsendable": "dead letters the broker refused (logged, not sent)",
    "rebalances": "consumer-group rebalances this worker went through",
    "store_retries": "store operations retried after an error (Redis outage)",
    "store_errors": "store operations that failed",
}
SOC_HELP = {  # streams.kafka.gate's counters (issue 24)
    "allowlist_reloads": "times the allowlist file was read (at start and on every change)",
    "allowlist_errors": "allowlist file versions refused (the previous list stayed in force) and allowlist "
    "topic records ignored",
    "notifications_page": "notification pages sent (one per entity per suppression period)",
    "notifications_summary": "notification summaries sent (at a period's close, or revised by a late alert)",
    "notifications_cap": "cap records sent (a period's pages reached --notify-cap)",
    "notifications_suppressed": "alerts that joined a notification without paging",
    "tenant_thresholds_reloads": "times the --tenant-thresholds file was read (at start and on every change)",
    "tenant_thresholds_errors": "--tenant-thresholds versions refused (the previous table stayed in force)",
}
SECONDS_HELP = {
    "processing": "seconds spent processing batches",
    "publishing": "seconds spent sending alerts and dead letters and waiting for their delivery",
    "state_writing": "seconds spent writing state at checkpoints",
}


@dataclass
class Snapshot:
    """The worker's state at scrape time (from the app: consumer, recovery, engines)."""

    ready: bool = False
    partitions: int = 0
    open_windows: int = 0
    max_open_windows: int = 0
    spilled_windows: int = 0
    overdue_open_windows: int = 0
    consumer_lag: dict[tuple[str, int], int] = field(default_factory=dict)
    event_time_lag_seconds: dict[int, float] = field(default_factory=dict)
    watermark_seconds: dict[int, float] = field(default_factory=dict)
    recovery_remaining_records: int = 0
    fetch_stalled_seconds: float = 0.0
    last_checkpoint_timestamp_seconds: float = 0.0


class Metrics(Collector):
    """Counters (the hot path increments these dicts) and the Prometheus view of them."""

    def __init__(self, snapshot: Callable[[], Snapshot] = Snapshot) -> None:
        self.counts: Counter[str] = Counter()
        self.dead: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)  # time spent, by activity
        self.allowlisted: Counter[str] = Counter()  # alerts not published, by allowlist entry id
        self.soc: Counter[str] = Counter()  # SOC_HELP
        self.snapshot = snapshot
        self.registry = CollectorRegistry(auto_describe=True)
        self.checkpoint_seconds = Histogram(
            PREFIX + "checkpoint_seconds",
            "duration of a checkpoint: delivery wait, state write, acknowledgement",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.registry.register(self)

    def render(self) -> bytes:
        """The Prometheus text exposition, with HELP and TYPE lines."""
        return generate_latest(self.registry)

    def describe(self) -> list[Metric]:
        return []  # families vary with what was counted: collected at scrape time only

    def collect(self) -> Iterator[Metric]:
        for name, help_ in COUNTER_HELP.items():
            counter = CounterMetricFamily(PREFIX + name, help_)
            counter.add_metric([], self.counts.get(name, 0))
            yield counter
        dead = CounterMetricFamily(
            PREFIX + "dead_letters", "records dead-lettered, by reason", labels=["reason"]
        )
        for reason, n in sorted(self.dead.items()):
            dead.add_metric([reason], n)
        yield dead
        alerts = CounterMetricFamily(PREFIX + "alerts", "alerts published, by phase", labels=["phase"])
        for phase, n in sorted(self.alerts.items()):
            alerts.add_metric([phase], n)
        yield alerts
        allowlisted = CounterMetricFamily(
            PREFIX + "allowlisted_alerts",
            "alerts of allowlisted windows not published, by allowlist entry (field:value)",
            labels=["entry"],
        )
        for entry, n in sorted(self.allowlisted.items()):
            allowlisted.add_metric([entry], n)
        yield allowlisted
        for name, help_ in SOC_HELP.items():
            counter = CounterMetricFamily(PREFIX + name, help_)
            counter.add_metric([], self.soc.get(name, 0))
            yield counter
        for name, help_ in SECONDS_HELP.items():
            spent = CounterMetricFamily(PREFIX + name + "_seconds", help_)
            spent.add_metric([], self.seconds.get(name, 0.0))
            yield spent
        yield from self._gauges(self.snapshot())

    @staticmethod
    def _gauges(snap: Snapshot) -> Iterator[Metric]:
        def gauge(name: str, help_: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(PREFIX + name, help_, value=value)

        yield gauge("ready", "1 when partitions are assigned and state is recovered", float(snap.ready))
        yield gauge("partitions", "detector partitions this worker owns", snap.partitions)
        yield gauge("open_windows", "windows held open in memory", snap.open_windows)
        yield gauge(
            "max_open_windows", "the bound on open windows in memory (0 = unbounded)", snap.max_open_windows
        )
        yield gauge(
            "spilled_windows", "open windows held in the store only, past the bound", snap.spilled_windows
        )
        yield gauge(
            "overdue_open_windows",
            "open windows that idleness should have closed: their partition had no input for idle "
            "timeout + one bin and they ended more than grace ago (0 unless something is wrong)",
            snap.overdue_open_windows,
        )
        yield gauge(
            "recovery_remaining_records",
            "changelog records left to recover before processing starts",
            snap.recovery_remaining_records,
        )
        yield gauge(
            "fetch_stalled_seconds",
            "seconds without fetch progress while input is waiting (0 when caught up)",
            snap.fetch_stalled_seconds,
        )
        yield gauge(
            "last_checkpoint_timestamp_seconds",
            "wall-clock time of the last completed checkpoint",
            snap.last_checkpoint_timestamp_seconds,
        )
        lag = GaugeMetricFamily(
            PREFIX + "consumer_lag",
            "records between the partition's end offset and the next to be processed",
            labels=["topic", "partition"],
        )
        for (topic, partition), n in sorted(snap.consumer_lag.items()):
            lag.add_metric([topic, str(partition)], n)
        yield lag
        yield _per_partition(
            "event_time_lag_seconds",
            "wall clock minus the newest event time seen, per detector partition",
            snap.event_time_lag_seconds,
        )
        yield _per_partition(
            "watermark_seconds",
            "the partition's event-time watermark (epoch seconds)",
            snap.watermark_seconds,
        )


def _per_partition(name: str, help_: str, values: dict[int, float]) -> GaugeMetricFamily:
    """A gauge labelled by detector partition."""
    family = GaugeMetricFamily(PREFIX + name, help_, labels=["partition"])
    for partition, value in sorted(values.items()):
        family.add_metric([str(partition)], value)
    return family


def summary(metrics: Metrics, extra: dict[str, Any]) -> str:
    """One log line of the counters (every 30 s)."""
    parts = [f"{k}={v}" for k, v in sorted(metrics.counts.items())]
    parts += [f"alerts_{k}={v}" for k, v in sorted(metrics.alerts.items())]
    parts += [f"dead_{k}={v}" for k, v in sorted(metrics.dead.items())]
    parts += [f"{k}={v}" for k, v in sorted(extra.items())]
    return " ".join(parts)

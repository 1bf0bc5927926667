"""What a worker says about itself: `WorkerStatus` (ready, caught up, the metrics snapshot) and the
pages that serve it (/healthz, /readyz, /metrics), nothing else of faust's web server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust
from faust.web import Request, Response, View
from faust.web.base import BlueprintManager

from streams.kafka.detector import Detector
from streams.kafka.faust_compat import recovery_state
from streams.kafka.messages import wall_ms
from streams.kafka.metrics import Metrics, Snapshot
from streams.state.base import WindowStore

PROMETHEUS_TEXT = "text/plain; version=0.0.4"  # aiohttp adds the charset itself


@dataclass
class WorkerStatus:
    """The worker's state as /readyz, /healthz, /metrics and the idle timer see it.

    `source`: the detector's topic; `consumed`: every topic the worker reads (the input too, when a
    router re-keys it into `source`)."""

    app: Any
    detector: Detector
    store: WindowStore
    metrics: Metrics
    source: str
    consumed: list[str]
    assigned_once: bool = False  # set by the first assignment

    def settled(self) -> bool:
        """Assigned, not rebalancing, state recovered: what /readyz reports."""
        return self.assigned_once and not self.app.rebalancing and not recovery_state(self.app)[0]

    def not_ready_because(self) -> str:
        return "recovering state" if recovery_state(self.app)[0] else "waiting for partitions"

    def caught_up(self) -> list[int]:
        """Detector partitions whose position is at the end offset: only those may idle. With the
        router, none while this worker's own input partitions still lag (the repartition topic only
        looks caught up then). A partition that never held a record is caught up (its lag is 0 once
        its end offset is known: `ask_offsets`); one whose lag is still unknown is not."""
        if not self.settled():
            return []
        lags = self.app.consumer.lags(self.consumed)
        if any(n != 0 for tp, n in lags.items() if tp.topic != self.source):
            return []
        return sorted(tp.partition for tp, n in lags.items() if tp.topic == self.source and n == 0)

    def snapshot(self) -> Snapshot:
        """The gauges of a scrape, and the counters kept outside the detector (consumer, store)."""
        detector, now = self.detector, wall_ms()
        event_lag, watermarks = detector.clocks(now)
        _, remaining = recovery_state(self.app)
        try:
            lags = self.app.consumer.lags(self.consumed)
            stalled = 0.0 if not self.settled() else self.app.consumer.stalled_seconds(self.consumed)
        except Exception:  # the consumer is not started yet
            lags, stalled = {}, 0.0
        self.metrics.counts["fetches_not_handed_on"] = getattr(self.app.consumer, "stale_batches", 0)
        for name, n in self.store.counts().items():
            self.metrics.counts[f"store_{name}"] = n
        return Snapshot(
            ready=self.settled(),
            partitions=len(detector.engines),
            open_windows=detector.open_windows(),
            max_open_windows=detector.max_open,
            spilled_windows=detector.spilled_windows(),
            overdue_open_windows=detector.overdue(now),
            consumer_lag={(tp.topic, tp.partition): n for tp, n in lags.items() if n is not None},
            event_time_lag_seconds=event_lag,
            watermark_seconds=watermarks,
            recovery_remaining_records=remaining,
            fetch_stalled_seconds=stalled,
            last_checkpoint_timestamp_seconds=detector.last_checkpoint_wall,
        )


def serve_only_our_pages(app: faust.App) -> None:
    """The web port serves /healthz, /readyz and /metrics, nothing else: faust's own views (its blueprints:
    /table/ serves the stored windows, the clients' queries and user agents included; /router/, /, /stats/,
    /graph/, /performance/) are never registered. Our pages are app.page views, not blueprints."""
    app.web.blueprints = BlueprintManager()


def serve_pages(app: faust.App, status: WorkerStatus, stall_timeout_s: float) -> None:
    """/metrics (Prometheus text), /healthz (alive: the consumer has not stalled with input waiting
    for longer than `stall_timeout_s`), /readyz (WorkerStatus.settled)."""
    serve_only_our_pages(app)

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(status.metrics.render(), content_type=PROMETHEUS_TEXT)

    @app.page("/healthz")
    class HealthView(View):
        """Alive: the event loop answers, and the consumer has not stalled with input waiting."""

        async def get(self, request: Request) -> Response:
            stalled = status.snapshot().fetch_stalled_seconds
            if stalled > stall_timeout_s:
                return self.text(
                    f"stalled: no fetch progress for {stalled:.0f}s with input waiting\n", status=503
                )
            return self.text("ok\n")

    @app.page("/readyz")
    class ReadyView(View):
        """Ready: partitions assigned and state recovered; not during a rebalance or recovery."""

        async def get(self, request: Request) -> Response:
            if status.settled():
                return self.text("ready\n")
            return self.text(f"not ready: {status.not_ready_because()}\n", status=503)

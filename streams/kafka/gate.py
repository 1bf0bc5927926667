"""Where alerts leave the detector: the allowlist (file and topic, reloaded on change), entity details,
and notifications with their durable per-partition state (streams.core.allowlist, .entities, .notify).

The detector calls `restore` when it creates a partition's engine (the notification records of the
partition's store are taken out before the engine sees the rest), `judge` with each step's alerts before
it sends them, and `drop` when the partition is revoked. `judge` returns the alerts to publish, sends the
notifications through the publisher (before the alerts' checkpoint, like the alerts), and returns the
notification state records to write with that checkpoint, so they follow the windows' order of effects.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from streams.core.allowlist import Allowlist, AllowlistError, Entry, entry_of_record, judge
from streams.core.entities import add_entities
from streams.core.escape import dumps
from streams.core.notify import Notifier, NotifyParams, Period
from streams.core.rule import RuleParams
from streams.errors import ServiceUnreachable
from streams.io.allowlist_file import AllowlistFile
from streams.kafka.client_config import librdkafka_client
from streams.kafka.metrics import Metrics
from streams.kafka.producer import AsyncProducer
from streams.settings import ConfigError, Settings

log = logging.getLogger("iis-portscan")
PARTITION_HEADER = "notify-partition"  # the detector partition whose notifier sent a notify record


def page_reader(topic: str, client_config: dict[str, Any], timeout_s: float) -> Callable[[int], list[Any]]:
    """A function reading the notify topic whole (compacted, and deleted past twice the retention) and
    returning the pages that one detector partition sent; for `Gate.restore`, in a thread."""

    def read(partition: int) -> list[dict[str, Any]]:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

        consumer = Consumer(
            {**client_config, "group.id": f"{topic}-reader", "enable.auto.commit": False,
             "enable.partition.eof": True}
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        wanted = str(partition).encode()
        pages: list[dict[str, Any]] = []
        try:
            meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
            if meta is None or meta.error is not None:
                return pages
            parts = sorted(meta.partitions)
            pending = set()
            for p in parts:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
                if high > low:
                    pending.add(p)
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            while pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{topic} not read to its end within {timeout_s:g}s")
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                        continue
                    raise RuntimeError(error.str())
                headers = dict(msg.headers() or ())
                value = msg.value()
                if headers.get(PARTITION_HEADER) == wanted and value is not None:
                    record = orjson.loads(value)
                    if isinstance(record, dict) and record.get("Kind") == "page":
                        pages.append(record)
        finally:
            consumer.close()
        return pages

    return read


class AllowlistTopic:
    """Follows a compacted allowlist topic in a thread: every entry, tombstones removing them.

    `wait_caught_up` blocks until the end offsets seen at start are read, so a worker starts judging
    with the whole list, not the part read so far."""

    def __init__(self, topic: str, client_config: dict[str, Any]) -> None:
        from confluent_kafka import Consumer

        self.topic = topic
        self.entries: dict[str, Entry] = {}
        self.version = 0  # bumped on every change
        self.errors = 0
        self.lock = threading.Lock()
        self.caught_up = threading.Event()
        self.stopping = threading.Event()
        self.consumer = Consumer(
            {
                **client_config,
                "group.id": f"{topic}-follower",  # required; never joined (partitions are assigned)
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        self.thread = threading.Thread(target=self._run, name="allowlist-topic", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def wait_caught_up(self, timeout_s: float) -> bool:
        return self.caught_up.wait(timeout_s)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

        try:
            parts: list[int] = []
            while not parts and not self.stopping.is_set():
                meta = self.consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
                if meta is not None and meta.error is None and meta.partitions:
                    parts = sorted(meta.partitions)
                else:
                    self.stopping.wait(0.5)
            self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
            ends = {
                p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
                for p in parts
            }
            pending_eof = {p for p in parts if ends[p][1] > ends[p][0]}
            if not pending_eof:
                self.caught_up.set()
            while not self.stopping.is_set():
                msg = self.consumer.poll(0.5)
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending_eof.discard(msg.partition())
                        if not pending_eof:
                            self.caught_up.set()
                    else:
                        log.warning("allowlist topic %s: %s", self.topic, error.str())
                    continue
                self._apply(msg.key(), msg.value(), msg.offset() or 0)  # a record has its offset
        except Exception:  # never kill the worker from this thread: logged, the last list stays
            log.exception("allowlist topic %s: follower stopped", self.topic)
        finally:
            self.consumer.close()

    def _apply(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        try:
            entry_id, entry = entry_of_record(key, value)
        except AllowlistError as exc:
            self.errors += 1
            log.error("allowlist topic %s offset %d: ignored: %s", self.topic, offset, exc)
            return
        with self.lock:
            if entry is None:
                self.entries.pop(entry_id, None)
            else:
                self.entries[entry_id] = entry
            self.version += 1


class Gate:
    """The allowlist in force, entity details, and one Notifier per detector partition."""

    def __init__(
        self,
        rule: RuleParams,
        allowlist_file: AllowlistFile | None = None,
        allowlist_topic: AllowlistTopic | None = None,
        entities: bool = False,
        notify: NotifyParams | None = None,
        producer: AsyncProducer | None = None,
        notify_topic: str = "",
    ) -> None:
        self.rule = rule
        self.file = allowlist_file
        self.topic = allowlist_topic
        self.entities = entities
        self.notify = notify
        self.producer = producer
        self.notify_topic = notify_topic
        self.read_pages: Callable[[int], list[dict[str, Any]]] | None = None  # see `restore`
        self.allowlist: Allowlist | None = None
        self._file_entries: list[Entry] = []
        self._topic_version = -1
        self._topic_errors = 0
        self.notifiers: dict[int, Notifier] = {}
        self.allowlisted: Counter[str] = Counter()  # alerts suppressed, by entry id
        self.counts: Counter[str] = Counter()
        if self.file is not None:
            self._file_entries = self.file.read()  # at start: a bad file stops the worker (ConfigError)
            self.counts["allowlist_reloads"] += 1
        self._rebuild()

    @property
    def active(self) -> bool:
        return self.file is not None or self.topic is not None or self.entities or self.notify is not None

    # ------------------------------------------------------------------ the allowlist

    def refresh(self) -> None:
        """Pick up a changed file or topic (the app's timer calls this every second). A file that
        cannot be used keeps the previous list: logged and counted, never a stop."""
        changed = False
        if self.file is not None and self.file.changed():
            try:
                self._file_entries = self.file.read()
                self.counts["allowlist_reloads"] += 1
                changed = True
            except AllowlistError as exc:
                self.counts["allowlist_errors"] += 1
                log.error("allowlist not reloaded, the previous one stays in force: %s", exc)
        if self.topic is not None and self.topic.version != self._topic_version:
            changed = True
        if self.topic is not None and self.topic.errors != self._topic_errors:
            self.counts["allowlist_errors"] += self.topic.errors - self._topic_errors  # bad topic records
            self._topic_errors = self.topic.errors
        if changed:
            before = self.allowlist.version if self.allowlist is not None else ""
            self._rebuild()
            after = self.allowlist.version if self.allowlist is not None else ""
            if after != before:
                log.info("allowlist %s in force: %d entries", after or "(empty)", len(self.allowlist or ()))

    def _rebuild(self) -> None:
        if self.file is None and self.topic is None:
            self.allowlist = None
            return
        entries = list(self._file_entries)
        if self.topic is not None:
            with self.topic.lock:
                self._topic_version = self.topic.version
                entries.extend(self.topic.entries.values())  # the topic's entry wins over the file's
        self.allowlist = Allowlist.of(entries)

    # ------------------------------------------------------------------ the detector's hooks

    async def restore(
        self, partition: int, records: Sequence[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        """A partition's stored records without the notification state, which this takes; then the pages
        this partition delivered after its last checkpoint, read back from the notify topic, count as
        sent (core.notify: no page twice after a crash)."""
        if self.notify is None:
            return list(records)
        notifier = Notifier(self.notify, partition)
        rest = notifier.restore(records)
        if self.read_pages is not None:
            try:
                pages = await asyncio.to_thread(self.read_pages, partition)
                new = notifier.mark_paged(pages)
                if new:
                    log.info("partition %d: %d pages delivered before a restart read back", partition, new)
            except Exception as exc:  # never a stop: the stored state alone may page once more
                log.warning(
                    "partition %d: notify topic not read back (%s): a page may repeat", partition, exc
                )
        self.notifiers[partition] = notifier
        return rest

    def drop(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.notifiers.pop(partition, None)

    def judge(
        self, partition: int, alerts: list[dict[str, Any]], watermark: int
    ) -> tuple[list[dict[str, Any]], dict[bytes, Period]]:
        """(alerts to publish, notification state records to write with the checkpoint). The
        notifications are sent here, before the caller sends the alerts; both precede the checkpoint
        that writes the state."""
        kept = alerts
        if self.allowlist is not None:
            verdict = judge(alerts, self.allowlist)
            for entry, _ in verdict.suppressed:
                self.allowlisted[entry.id] += 1
            kept = verdict.kept
        if self.entities:
            kept = [add_entities(a, self.rule.max_record_bytes) for a in kept]
        notifier = self.notifiers.get(partition)
        if notifier is None:
            return kept, {}
        notified = notifier.observe(kept, watermark)
        self.counts["notifications_suppressed"] += notified.suppressed
        assert self.producer is not None
        header = [(PARTITION_HEADER, str(partition).encode())]  # read back by `restore`
        for key, record in notified.records:
            self.counts[f"notifications_{record['Kind']}"] += 1
            self.producer.send(self.notify_topic, key, dumps(record), headers=header)
        return kept, notified.writes


def open_gate(settings: Settings, producer: AsyncProducer, metrics: Metrics) -> Gate:
    """The allowlist (file, topic: read to its end before the worker starts), entities and
    notifications (streams.kafka.gate). Raises ConfigError for a bad file, ServiceUnreachable when the
    topic cannot be read within --connect-timeout."""
    file = AllowlistFile(settings.allowlist) if settings.allowlist else None
    topic = None
    if settings.allowlist_topic:
        client = librdkafka_client(settings)
        topic = AllowlistTopic(settings.allowlist_topic, client)
        topic.start()
        if not topic.wait_caught_up(settings.connect_timeout / 1000):
            topic.stop()
            raise ServiceUnreachable(
                f"allowlist topic {settings.allowlist_topic}: not read to its end within "
                f"{settings.connect_timeout / 1000:g}s"
            )
    try:
        gate = Gate(
            settings.rule_params(),
            file,
            topic,
            entities=settings.alert_entities,
            notify=settings.notify_params() if settings.notify_topic else None,
            producer=producer,
            notify_topic=settings.notify_topic,
        )
    except AllowlistError as exc:
        if topic is not None:
            topic.stop()
        raise ConfigError(f"--allowlist: {exc}") from None
    if settings.notify_topic:
        client = librdkafka_client(settings)
        gate.read_pages = page_reader(settings.notify_topic, client, settings.connect_timeout / 1000)
    gate.allowlisted = metrics.allowlisted
    gate.counts = metrics.soc
    gate.counts["allowlist_reloads"] += int(file is not None)
    if gate.allowlist is not None:
        log.info(
            "allowlist %s in force: %d entries", gate.allowlist.version or "(empty)", len(gate.allowlist)
        )
    return gate

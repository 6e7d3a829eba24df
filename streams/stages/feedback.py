"""The feedback stage: check each recipient's status report against the alert ledger, keep
the current status per alert, and export outcome metrics from those tables.

`feedback`, `alerts.ledger` and `alerts.status` are all keyed by alert id and have the same
partition count, so the worker that owns partition p of `feedback` reads partition p of the
ledger and of the status table and has everything it needs to validate, locally. A feedback
record a foreign client put on another partition is forwarded to the right one first.

Each batch is one transaction (status updates, dead letters, offsets): a replayed batch can
never apply a status twice, and a duplicate report is rejected rather than double counted.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    Message,
    TopicPartition,
)

from threatroute.deadletter import dead_letter
from threatroute.errors import ConfigError, InvalidRecord
from threatroute.outcomes import (
    AlertFacts,
    AlertStatus,
    BaselineWindow,
    Snapshot,
    alert_facts,
    apply_feedback,
    summarise,
)
from threatroute.streams.config import Config
from threatroute.streams.kafka.admin import admin
from threatroute.streams.kafka.clients import consumer_settings, decode, encode, slot, value_of
from threatroute.streams.kafka.transactions import (
    RESTORE_SECONDS,
    batch_transaction,
    poll_batch,
    transactional_producer,
)
from threatroute.streams.runtime.metrics import Metrics
from threatroute.streams.runtime.views import at_eof, replay_consumer

log = logging.getLogger(__name__)
SOURCE, LEDGER, STATUS, INVALID = "feedback", "alerts.ledger", "alerts.status", "feedback.invalid"
GROUP = "threatroute-feedback"
SNAPSHOT_SECONDS = 5.0  # a scrape reuses a snapshot this young instead of recomputing


def partition_for(key: bytes, partitions: int) -> int:
    """librdkafka's default partitioner (consistent_random): CRC32 of the key."""
    return zlib.crc32(key) % partitions


class Tables:
    """Ledger facts and statuses of the partitions this worker owns, fed by a replay reader."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.alerts: dict[int, dict[str, AlertFacts]] = {}
        self.statuses: dict[int, dict[str, AlertStatus]] = {}
        self.lock = threading.Lock()
        self._reader: Consumer | None = None
        self._eof_at: dict[tuple[str, int], int] = {}  # partition-EOF offsets seen per slot

    def assign(self, partitions: list[int]) -> None:
        with self.lock:
            for p in partitions:
                self.alerts[p], self.statuses[p] = {}, {}
            self._reassign()
        # beyond the transaction timeout: a killed worker's open transaction holds the end back
        self.catch_up(deadline=time.monotonic() + RESTORE_SECONDS)

    def revoke(self, partitions: list[int]) -> None:
        with self.lock:
            for p in partitions:
                self.alerts.pop(p, None)
                self.statuses.pop(p, None)
            self._reassign()

    def _reassign(self) -> None:
        # a fresh reader replays the owned partitions of both tables from their beginning
        if self._reader is not None:
            self._reader.close()
        self._eof_at = {}
        self._reader = replay_consumer(self.config)
        self._reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                             for p in self.alerts for topic in (LEDGER, STATUS)])

    def catch_up(self, deadline: float, required: bool = True) -> None:
        """Apply everything committed to the owned table partitions up to now (or deadline).

        Caught up means: the reader hit partition-EOF at or past the high watermark read at
        the start. (Offsets alone can't tell: transaction markers take offsets too.)
        """
        reader = self._reader
        if reader is None or not self.alerts:
            return
        highs = {}
        for p in list(self.alerts):
            for topic in (LEDGER, STATUS):
                high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                if high > 0:
                    highs[(topic, p)] = high
        while time.monotonic() < deadline:
            if all(self._eof_at.get(slot, -1) >= high for slot, high in highs.items()):
                return
            for message in reader.consume(1000, timeout=0.1):
                if at_eof(message):
                    self._eof_at[slot(message)] = message.offset() or 0
                elif message.error() is None:
                    self._eof_at[slot(message)] = -1
                    self._apply(message)
        if required:
            log.warning("table catch-up hit its deadline; a transaction may still be open")

    def _apply(self, message: Message) -> None:
        key = (message.key() or b"").decode(errors="replace")
        topic, partition = slot(message)
        table = self.alerts if topic == LEDGER else self.statuses
        with self.lock:
            rows = table.get(partition)
            if rows is None:
                return
            if message.value() is None:
                rows.pop(key, None)
                return
            try:
                value = decode(value_of(message))
                rows[key] = (alert_facts(value) if message.topic() == LEDGER  # type: ignore[assignment]
                             else AlertStatus.from_json(value))
            except (ValueError, InvalidRecord) as exc:
                log.error("%s[%d]: unreadable record for %s: %s", message.topic(),
                          message.partition(), key, exc)

    def snapshot(self, window: BaselineWindow) -> Snapshot:
        with self.lock:
            alerts = [facts for rows in self.alerts.values() for facts in rows.values()]
            statuses = {k: v for rows in self.statuses.values() for k, v in rows.items()}
        return summarise(alerts, statuses, datetime.now(UTC), window)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


class FeedbackStage:
    name = "feedback"

    def __init__(self, config: Config, metrics: Metrics, instance: str | None = None,
                 batch_size: int = 500, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 window: BaselineWindow | None = None) -> None:
        self.config, self.batch_size, self.clock = config, batch_size, clock
        self.window = window or BaselineWindow()
        self.partitions = self._check_partitions()
        self.tables = Tables(config)
        self.metrics = metrics
        self.stage_metrics = metrics.stage(self.name)
        self._snapshot: tuple[float, Snapshot] | None = None
        metrics.add_outcomes(self.snapshot)
        self.producer = transactional_producer(config, GROUP, instance)
        self.consumer = Consumer(consumer_settings(config, GROUP,
                                                   **{"isolation.level": "read_committed"}))

    def _check_partitions(self) -> int:
        topics = admin(self.config).list_topics(timeout=30).topics
        counts = {t: len(topics[t].partitions) if t in topics else 0
                  for t in (SOURCE, LEDGER, STATUS)}
        if len(set(counts.values())) != 1 or not counts[SOURCE]:
            raise ConfigError(f"feedback, alerts.ledger and alerts.status need the same partition "
                              f"count ({counts}); run `threatroute topics create`")
        return counts[SOURCE]

    def snapshot(self) -> Snapshot:
        cached = self._snapshot
        if cached and time.monotonic() - cached[0] < SNAPSHOT_SECONDS:
            return cached[1]
        snap = self.tables.snapshot(self.window)
        self._snapshot = (time.monotonic(), snap)
        return snap

    def run(self, stop: threading.Event) -> None:
        producer = self.producer
        self.consumer.subscribe(
            [SOURCE], on_assign=lambda c, ps: self.tables.assign([tp.partition for tp in ps]),
            on_revoke=self._revoke, on_lost=self._revoke)
        try:
            while not stop.is_set():
                messages = poll_batch(self.consumer, self.batch_size)
                if not messages:
                    # best effort while idle: keeps the exported outcomes fresh
                    self.tables.catch_up(deadline=time.monotonic() + 0.5, required=False)
                    self.stage_metrics.idle()
                    self.stage_metrics.lag(self.consumer)
                    continue
                started = time.perf_counter()
                # alerts reach recipients only after the ledger commit: catching up first
                # means a fresh alert's feedback is never wrongly refused as unknown
                self.tables.catch_up(deadline=time.monotonic() + 10)
                with batch_transaction(producer, self.consumer, messages):
                    outcomes = [self._handle(m) for m in messages]
                accepted, invalid = outcomes.count("accepted"), outcomes.count("invalid")
                self._snapshot = None
                self.metrics.feedback_records.labels("accepted").inc(accepted)
                self.metrics.feedback_records.labels("invalid").inc(invalid)
                self.stage_metrics.batch(len(messages), accepted, invalid,
                                         time.perf_counter() - started, ())
                self.stage_metrics.lag(self.consumer)
        finally:
            self.consumer.close()
            self.tables.close()

    def _revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.tables.revoke([tp.partition for tp in partitions])
        self.stage_metrics.forget_partitions(partitions)

    def _handle(self, message: Message) -> str:
        """Apply one feedback record inside the open transaction: accepted, invalid, forwarded."""
        raw, key = value_of(message), message.key() or b""
        _, partition = slot(message)
        if key and partition_for(key, self.partitions) != partition:
            self.producer.produce(SOURCE, raw, key, partition=partition_for(key, self.partitions))
            return "forwarded"  # judged when it comes round on its own partition
        try:
            try:
                feedback = decode(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise InvalidRecord(f"not JSON: {exc}") from None
            alert_id = feedback.get("alert_id") if isinstance(feedback, dict) else None
            if key and isinstance(alert_id, str) and alert_id.encode() != key:
                raise InvalidRecord("message key is not the record's alert_id", "alert_id")
            facts = self.tables.alerts.get(partition, {}).get(alert_id) \
                if isinstance(alert_id, str) else None
            current = self.tables.statuses.get(partition, {}).get(alert_id) \
                if isinstance(alert_id, str) else None
            status = apply_feedback(feedback, facts, current, self.clock())
        except InvalidRecord as exc:
            self.producer.produce(INVALID, encode(dead_letter(
                raw, exc.reason, stage=self.name, field=exc.field,
                origin={"topic": SOURCE, "partition": partition, "offset": message.offset()})))
            return "invalid"
        with self.tables.lock:
            self.tables.statuses.setdefault(partition, {})[status.alert_id] = status
        self.producer.produce(STATUS, encode(status.to_json()), status.alert_id,
                              partition=partition)
        return "accepted"

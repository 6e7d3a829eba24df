"""The match stage: enriched indicators -> one alert per recipient, deduplicated, exactly once.

State: one `AlertState` per (recipient, indicator key), kept in memory per input partition and
backed by the compacted changelog `match.state` (partition p of the changelog holds the state
of input partition p). On assignment a partition's state is restored from the changelog
before its records are processed.

Each batch is one Kafka transaction: alerts to `alerts.<recipient>`, the ledger, the changelog
and the consumer offsets commit together or not at all. A kill -9 at any point therefore
neither loses an indicator nor sends an alert twice (consumers read committed data, which is
librdkafka's default).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    Message,
    TopicPartition,
)

from threatroute.contract import check_key, check_record
from threatroute.deadletter import dead_letter
from threatroute.errors import ConfigError, InvalidRecord
from threatroute.matchers.dedup import AlertState, DedupPolicy, decide
from threatroute.matchers.formats import alert_record, render
from threatroute.matchers.index import MatchIndex
from threatroute.matchers.privacy import DEFAULT as PRIVATE
from threatroute.matchers.privacy import AlertContent, content_of
from threatroute.record import indicator_key
from threatroute.registry import Recipient
from threatroute.streams.config import Config
from threatroute.streams.kafka.admin import admin
from threatroute.streams.kafka.clients import consumer_settings, decode, encode, slot
from threatroute.streams.kafka.transactions import (
    RESTORE_SECONDS,
    batch_transaction,
    poll_batch,
    transactional_producer,
)
from threatroute.streams.runtime.metrics import StageMetrics
from threatroute.streams.runtime.registry import ensure_recipient_topics, registry_view
from threatroute.streams.runtime.views import CompactedView, at_eof, json_fold, replay_consumer

log = logging.getLogger(__name__)
SOURCE, STATE, LEDGER, STATUS = "indicators.enriched", "match.state", "alerts.ledger", \
    "alerts.status"
INVALID = "indicators.invalid"
GROUP = "threatroute-match"
NOTIFYING = ("new", "renotify", "recurrence")  # actions that put an alert on a recipient topic


class Routing:
    """The match index and each recipient's format, rebuilt atomically on registry change."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self.index = MatchIndex.build([], default_tlp=config.default_tlp)
        self.formats: dict[str, str] = {}
        self.contents: dict[str, AlertContent] = {}

    def rebuild(self, recipients: Mapping[str, Recipient]) -> None:
        # the recipients' topics exist before the index routes to them (import creates them;
        # this covers recipients written to the topic some other way)
        ensure_recipient_topics(self._config, recipients)
        formats = {rid: r.format for rid, r in recipients.items()}
        contents = {rid: content_of(r) for rid, r in recipients.items()}
        index = MatchIndex.build(recipients.values(), default_tlp=self._config.default_tlp)
        # readers see old or new, never a mix
        self.index, self.formats, self.contents = index, formats, contents
        log.info("match index rebuilt: %d recipients", len(recipients))


def remediation_fold() -> Any:
    """alerts.status -> {alert id: time it was reported remediated}."""
    def remediated_at(value: dict[str, Any]) -> str | None:
        return value.get("remediated_at") if value.get("status") == "remediated" else None

    inner = json_fold(remediated_at)

    def fold(state: dict[str, Any], message: Message) -> bool:
        changed = inner(state, message)
        key = (message.key() or b"").decode(errors="replace")
        if state.get(key, 0) is None:  # not (or no longer) remediated: nothing to remember
            del state[key]
        return changed

    return fold


class MatchStage:
    name = "match"

    def __init__(self, config: Config, metrics: StageMetrics | None = None,
                 instance: str | None = None, batch_size: int = 2000,
                 clock: Any = lambda: datetime.now(UTC)) -> None:
        self.config, self.batch_size, self.clock = config, batch_size, clock
        self.metrics = metrics
        self.policy = DedupPolicy(timedelta(hours=config.dedup_window_hours),
                                  timedelta(hours=config.renotify_hours))
        self.routing = Routing(config)
        self.states: dict[int, dict[str, AlertState]] = {}
        self.counts: Counter[str] = Counter()
        self._check_partitions()
        self.registry = registry_view(config, self.routing.rebuild)
        self.remediations: CompactedView[str] = CompactedView(config, STATUS, remediation_fold())
        self.producer = transactional_producer(config, GROUP, instance)
        self.consumer = Consumer(consumer_settings(config, GROUP,
                                                   **{"isolation.level": "read_committed"}))

    def _check_partitions(self) -> None:
        client = admin(self.config)
        topics = client.list_topics(timeout=30).topics
        source, state = (len(topics[t].partitions) if t in topics else 0 for t in (SOURCE, STATE))
        if not source or source != state:
            raise ConfigError(f"{STATE} must have as many partitions as {SOURCE} "
                              f"({state} vs {source}); run `threatroute topics create`")

    # -- partition state ----------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.states.update(self._restore([tp.partition for tp in partitions]))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.states.pop(tp.partition, None)
        if self.metrics:
            self.metrics.forget_partitions(partitions)

    def _restore(self, partitions: list[int]) -> dict[int, dict[str, AlertState]]:
        """Read the changelog partitions to their ends (committed records only), together."""
        reader = replay_consumer(self.config)
        states: dict[int, dict[str, AlertState]] = {p: {} for p in partitions}
        behind = set(partitions)
        try:
            reader.assign([TopicPartition(STATE, p, OFFSET_BEGINNING) for p in partitions])
            # a transaction left open by a killed worker holds the end back until the broker
            # aborts it (TRANSACTION_TIMEOUT_MS), so allow well beyond that
            deadline = time.monotonic() + RESTORE_SECONDS
            while behind:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"restoring {STATE} partitions {sorted(behind)} timed out")
                for message in reader.consume(1000, timeout=0.2):
                    if at_eof(message):
                        behind.discard(message.partition())
                    elif message.error() is None:
                        state = states[slot(message)[1]]
                        key = (message.key() or b"").decode()
                        value = message.value()
                        if value is None:
                            state.pop(key, None)
                        else:
                            state[key] = AlertState.from_json(decode(value))
        finally:
            reader.close()
        log.info("restored %d alert states of partitions %s",
                 sum(map(len, states.values())), sorted(partitions))
        return states

    # -- the loop -----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        self.registry.start()
        self.remediations.start()
        producer = self.producer
        self.consumer.subscribe([SOURCE], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        last_expiry = time.monotonic()
        try:
            while not stop.is_set():
                messages = poll_batch(self.consumer, self.batch_size)
                expire = time.monotonic() - last_expiry > 600
                if not messages and not expire:
                    if self.metrics:
                        self.metrics.idle()
                        self.metrics.lag(self.consumer)
                    continue
                started, before = time.perf_counter(), self.counts.copy()
                with batch_transaction(producer, self.consumer, messages):
                    observed = [self._route(message) for message in messages]
                    if expire:
                        self._expire()
                        last_expiry = time.monotonic()
                self.counts["consumed"] += len(messages)
                if self.metrics:
                    sent = sum(self.counts[a] - before[a] for a in NOTIFYING)
                    self.metrics.batch(len(messages), sent,
                                       self.counts["refused"] - before["refused"],
                                       time.perf_counter() - started, [o for o in observed if o])
                    self.metrics.lag(self.consumer)
        finally:
            self.consumer.close()
            self.registry.stop()
            self.remediations.stop()

    def _route(self, message: Message) -> str | None:
        """Route one record inside the open transaction; returns its time.observation."""
        raw = message.value() or b""
        try:
            record = decode(raw)
            reason = check_record(record, len(raw)) or check_key(message.key())  # the contract
            if reason:
                raise InvalidRecord(reason)
            # our stages always key by indicator key; a record produced by hand may lack one
            raw_key = message.key()
            key = raw_key.decode() if raw_key else indicator_key(record)
            matches = self.routing.index.match(record)
        except Exception as exc:  # bad input costs one record, never the stage
            self.producer.produce(INVALID, encode(dead_letter(
                raw, f"match failed: {type(exc).__name__}: {exc}"[:300], stage=self.name)))
            self.counts["refused"] += 1
            return None
        _, partition = slot(message)
        states = self.states.setdefault(partition, {})
        now = self.clock().replace(microsecond=0)
        sent_at = now.isoformat()
        for match in matches:
            state_key = f"{match.recipient_id}|{key}"
            previous = states.get(state_key)
            remediated = self.remediations.get(previous.alert_id) if previous else None
            action, state = decide(previous, match.recipient_id, key, now, self.policy, remediated)
            states[state_key] = state
            self.producer.produce(STATE, encode(state.to_json()), state_key,
                                  partition=partition)
            alert = alert_record(state, action, record, match.reasons, sent_at)
            self.producer.produce(LEDGER, encode(alert), state.alert_id)
            if action.notifies:
                fmt = self.routing.formats.get(match.recipient_id, "json")
                content = self.routing.contents.get(match.recipient_id, PRIVATE)
                self.producer.produce(f"alerts.{match.recipient_id}",
                                      render(alert, fmt, content), key)
            self.counts[action.value] += 1
            self._poll()
        observed = record.get("time", {}).get("observation") if isinstance(record, dict) else None
        return observed if isinstance(observed, str) else None

    def _expire(self) -> None:
        """Tombstone states not seen for longer than the dedup window."""
        cutoff = (self.clock() - self.policy.window).isoformat()
        for partition, states in self.states.items():
            for state_key in [s for s, st in states.items() if st.last_seen < cutoff]:
                del states[state_key]
                self.producer.produce(STATE, None, state_key, partition=partition)

    def _poll(self) -> None:
        try:
            self.producer.poll(0)
        except BufferError:
            self.producer.flush(10)


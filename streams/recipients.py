"""The recipient registry on Kafka: import to the compacted `recipients` topic, read it back,
and keep a live view that tells workers when it changes.

Key = recipient id; value = `Recipient.to_json()`; a removed recipient is a tombstone (null
value), so compaction leaves exactly the current registry on the topic.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from streams.config import Config
from streams.kafka import AckedProducer, encode
from streams.topics import TopicSpec, admin, ensure_topics
from threatroute.registry import Recipient, RegistryError, diff_registry, load_registry

TOPIC = "recipients"
log = logging.getLogger(__name__)


def _reader(config: Config) -> Consumer:
    # no group offsets: every reader replays the whole compacted topic
    return Consumer({**config.kafka_settings(), "group.id": f"registry-reader-{uuid.uuid4()}",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})


def apply(state: dict[str, Recipient], message: Message) -> bool:
    """Fold one topic record into `state`; returns True if it changed anything."""
    key = (message.key() or b"").decode(errors="replace")
    if message.value() is None:
        return state.pop(key, None) is not None
    try:
        recipient = Recipient.from_json(json.loads(message.value()))
    except (ValueError, RegistryError) as exc:
        # a bad value someone produced by hand: keep serving the last good registry
        log.error("recipients topic: ignoring bad value for %r at offset %s: %s", key,
                  message.offset(), exc)
        return False
    if state.get(recipient.id) == recipient:
        return False
    state[recipient.id] = recipient
    return True


def read_registry(config: Config, timeout: float = 30.0) -> dict[str, Recipient]:
    """The registry as the topic holds it now (reads to the current end and stops)."""
    consumer = _reader(config)
    try:
        partitions = consumer.list_topics(TOPIC, timeout=timeout).topics[TOPIC].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=timeout)[1]
                for p in partitions}
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in partitions])
        state: dict[str, Recipient] = {}
        while pending:
            message = consumer.poll(timeout)
            if message is None:
                raise TimeoutError(f"reading {TOPIC} did not reach its end in {timeout}s")
            if message.error():
                continue
            apply(state, message)
            if message.offset() + 1 >= ends[message.partition()]:
                pending.discard(message.partition())
        return state
    finally:
        consumer.close()


@dataclass(frozen=True)
class ImportResult:
    upserts: list[str]
    deletions: list[str]
    topics_created: list[str]


def import_registry(config: Config, text: str, create_alert_topics: bool = True
                    ) -> ImportResult:
    """Validate the YAML, then write only the changes and tombstones for removed recipients."""
    desired = load_registry(text)  # raises RegistryError naming entry and field
    current = read_registry(config)
    upserts, deletions = diff_registry(current, desired)
    producer = AckedProducer(config)
    for recipient in upserts:
        producer.send(TOPIC, encode(recipient.to_json()), recipient.id)
    for recipient_id in deletions:
        producer.send(TOPIC, None, recipient_id)
    producer.flush()
    created: list[str] = []
    if create_alert_topics and desired:
        default = config.topic("alerts.ledger")
        specs = [TopicSpec(r.topic, default.partitions, default.replication,
                           {"retention.ms": default.configs.get("retention.ms", "604800000")})
                 for r in desired]
        outcome = ensure_topics(admin(config), specs)
        created = sorted(t for t, done in outcome.items() if done == "created")
    return ImportResult([r.id for r in upserts], deletions, created)


class RegistryView:
    """A live copy of the registry, kept by a background thread that follows the topic.

    `on_change(recipients)` is called once the view has caught up with the topic and again
    after every batch of changes, from the view's thread; it should build a new index and
    swap it in atomically (an attribute assignment).
    """

    def __init__(self, config: Config,
                 on_change: Callable[[Mapping[str, Recipient]], None]) -> None:
        self._config = config
        self._on_change = on_change
        self._stop = threading.Event()
        self.ready = threading.Event()
        self.state: dict[str, Recipient] = {}
        self.version = 0
        self._thread = threading.Thread(target=self._follow, name="registry-view", daemon=True)

    def start(self, timeout: float = 30.0) -> RegistryView:
        self._thread.start()
        if not self.ready.wait(timeout):
            raise TimeoutError(f"registry view did not catch up with {TOPIC} in {timeout}s")
        return self

    def _follow(self) -> None:
        consumer = _reader(self._config)
        try:
            partitions = consumer.list_topics(TOPIC, timeout=30).topics[TOPIC].partitions
            ends = {p: consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=30)[1]
                    for p in partitions}
            consumer.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in partitions])
            position = {p: 0 for p in partitions}
            while not self._stop.is_set():
                changed = False
                for message in consumer.consume(500, timeout=0.5):
                    if message.error():
                        continue
                    changed |= apply(self.state, message)
                    position[message.partition()] = message.offset() + 1
                caught_up = all(position[p] >= end for p, end in ends.items())
                if caught_up and (changed or not self.ready.is_set()):
                    self.version += 1
                    self._on_change(dict(self.state))
                    self.ready.set()
        except Exception:  # the view must not die silently: workers would route on stale data
            log.exception("registry view stopped")
            raise
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

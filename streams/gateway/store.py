"""What the gateway knows, all read from Kafka topics: no second database.

- `AlertStore`: each recipient's alerts, read from its own `alerts.<id>` topic by an assigned
  consumer (no group) to the topic's current end, kept in memory per recipient (least
  recently used recipients dropped beyond a bound) and topped up from the last position on
  the next request. A cache rebuilt from the topic at any time, never a source of truth.
- `Directory`: the registry (`recipients`), token hashes (`gateway.tokens`) and accepted
  statuses (`alerts.status`), each a live view of a compacted topic.
- `Writer`: produces a recipient's feedback to `feedback.<id>` and contributions to
  `contributions.<id>` and waits for the broker's acknowledgement before answering.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from threatroute import topics
from threatroute.errors import InvalidRecord, ThreatrouteError
from threatroute.matchers.received import Received, read_alert
from threatroute.outcomes import AlertStatus
from threatroute.registry import Recipient
from threatroute.streams.config import Config
from threatroute.streams.gateway.taxii import TaxiiObject, objects_of
from threatroute.streams.kafka.admin import admin, ensure_topics
from threatroute.streams.kafka.clients import producer_settings
from threatroute.streams.kafka.replay import read_to_end
from threatroute.streams.runtime.registry import registry_view
from threatroute.streams.runtime.views import CompactedView, json_fold
from threatroute.tokens import TokenRecord

log = logging.getLogger(__name__)
READ_DEADLINE = 10.0  # seconds one top-up may take before the request is served as is


@dataclass(frozen=True, slots=True)
class Sent:
    """One alert message as it sits on the recipient's topic."""

    received: Received
    timestamp_ms: int
    partition: int
    offset: int


@dataclass
class AlertBook:
    """One recipient's alerts: the latest message per alert id, and the TAXII objects."""

    recipient: str
    positions: dict[int, int] = field(default_factory=dict)  # next offset per partition
    latest: dict[str, Sent] = field(default_factory=dict)
    objects: list[TaxiiObject] = field(default_factory=list)  # sorted by order
    unreadable: int = 0
    added_in_ms: dict[int, int] = field(default_factory=dict)  # objects per millisecond
    refreshed: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, message: Message) -> None:
        topic_partition = message.partition() or 0
        offset = message.offset() or 0
        self.positions[topic_partition] = offset + 1
        _, stamp = message.timestamp()
        try:
            received = read_alert(message.value() or b"", message.key(), stamp)
        except (InvalidRecord, UnicodeDecodeError) as exc:
            # not ours to dead-letter (the topic is the match stage's output): counted, logged
            self.unreadable += 1
            log.error("alerts.%s[%d]@%d: unreadable alert: %s", self.recipient,
                      topic_partition, offset, exc)
            return
        sent = Sent(received, stamp, topic_partition, offset)
        previous = self.latest.get(received.alert_id)
        if previous is None or (stamp, offset) >= (previous.timestamp_ms, previous.offset):
            self.latest[received.alert_id] = sent
        # a date_added of its own for every object (streams/gateway/taxii.py)
        used = self.added_in_ms.get(stamp, 0)
        self.added_in_ms[stamp] = used + len(received.stix)
        for item in objects_of(received.stix, stamp * 1000 + used, topic_partition, offset):
            bisect.insort(self.objects, item, key=lambda o: o.order)


class AlertStore:
    """Recipients' alerts, each read from its own topic on demand (see module docstring)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.settings = config.gateway
        self._reader = Consumer({**config.kafka_settings(), "group.id": f"gateway-{uuid.uuid4()}",
                                 "enable.auto.commit": False, "enable.partition.eof": True,
                                 "isolation.level": "read_committed", "fetch.wait.max.ms": 10})
        self._reader_lock = threading.Lock()
        self._books: OrderedDict[str, AlertBook] = OrderedDict()
        self._books_lock = threading.Lock()

    def book(self, recipient: str) -> AlertBook:
        """The recipient's alerts, topped up from its topic if older than refresh_seconds."""
        with self._books_lock:
            book = self._books.get(recipient)
            if book is None:
                book = self._books[recipient] = AlertBook(recipient)
            self._books.move_to_end(recipient)
            while len(self._books) > self.settings.cached_recipients:
                self._books.popitem(last=False)
        with book.lock:
            if time.monotonic() - book.refreshed >= self.settings.refresh_seconds:
                self._top_up(book)
                book.refreshed = time.monotonic()
        return book

    def _top_up(self, book: AlertBook) -> None:
        topic = topics.alerts_topic(book.recipient)
        with self._reader_lock:
            try:
                metadata = self._reader.list_topics(topic, timeout=10).topics.get(topic)
                if metadata is None or metadata.error is not None:
                    return  # no alerts yet: the topic appears with the first import
                start = [TopicPartition(topic, p, book.positions.get(p, OFFSET_BEGINNING))
                         for p in metadata.partitions]
                messages = read_to_end(self._reader, start, READ_DEADLINE)
            except TimeoutError as exc:
                log.warning("%s; serving what was read", exc)
                return
            except KafkaException as exc:
                # transient (the broker unreachable or restarting, a partition whose leader is
                # still being elected): the next request tops up again
                log.warning("alerts of %s not topped up: %s; serving what was read",
                            book.recipient, exc.args[0].str() if exc.args else exc)
                return
        for message in messages:
            book.add(message)

    def close(self) -> None:
        with self._reader_lock:
            self._reader.close()


class Directory:
    """Live views of the registry, the token hashes and the accepted statuses."""

    def __init__(self, config: Config) -> None:
        self.recipients: dict[str, Recipient] = {}
        self.by_hash: dict[str, str] = {}
        self.tokens = CompactedView(config, topics.GATEWAY_TOKENS, json_fold(TokenRecord.from_json),
                                    self._tokens_changed)
        self.statuses = CompactedView(config, topics.STATUS, json_fold(AlertStatus.from_json))
        self.registry = registry_view(config, self._registry_changed)

    def _tokens_changed(self, state: Mapping[str, TokenRecord]) -> None:
        self.by_hash = {record.hash: recipient for recipient, record in state.items()}

    def _registry_changed(self, state: Mapping[str, Recipient]) -> None:
        self.recipients = dict(state)

    def start(self) -> Directory:
        for view in (self.registry, self.tokens, self.statuses):
            view.start()
        return self

    def token_of(self, recipient: str) -> TokenRecord | None:
        return self.tokens.get(recipient) if recipient in self.recipients else None

    def recipient_by_hash(self, digest: str) -> str | None:
        recipient = self.by_hash.get(digest)
        return recipient if recipient in self.recipients else None

    def status(self, alert_id: str) -> AlertStatus | None:
        return self.statuses.get(alert_id)

    def stop(self) -> None:
        for view in (self.registry, self.tokens, self.statuses):
            view.stop()


class WriteError(ThreatrouteError):
    """The broker did not take a record the gateway was asked to write."""


class Writer:
    """Produces to a recipient's own topics; `send` returns once the broker has the record."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._producer = Producer(producer_settings(config, **{"linger.ms": 1}))
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, topic: str) -> None:
        """Create a recipient's `topic` as configured (`[topics."feedback.*"]`...) if missing:
        `recipients import` makes them, this covers recipients imported before it did."""
        if topic in self._ready:
            return
        with self._lock:
            ensure_topics(admin(self.config), [self.config.recipient_topic(topic)])
            self._ready.add(topic)

    def send(self, topic: str, values: list[tuple[str | None, bytes]],
             timeout: float = 30.0) -> None:
        results: list[KafkaError | None] = []
        done = threading.Event()

        def delivered(error: KafkaError | None, _message: Message) -> None:
            results.append(error)
            if len(results) == len(values):
                done.set()

        for key, value in values:
            self._producer.produce(topic, value, key, on_delivery=delivered)
        deadline = time.monotonic() + timeout
        while not done.is_set() and time.monotonic() < deadline:
            self._producer.poll(0.05)
        failed = [e for e in results if e is not None]
        if not done.is_set() or failed:
            raise WriteError(f"{topic}: " + (failed[0].str() if failed else "not acknowledged"))

    def close(self) -> None:
        self._producer.flush(10)

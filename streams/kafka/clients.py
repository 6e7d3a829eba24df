"""Thin wrappers over confluent-kafka: client settings, JSON serde, acknowledged producing.

Only `streams/` imports a Kafka client; everything else sees plain dicts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Message, Producer

from threatroute.errors import ThreatrouteError
from threatroute.streams.config import Config

log = logging.getLogger(__name__)


class DeliveryError(ThreatrouteError):
    """The broker did not acknowledge some records; nothing after them may be committed.
    `error`: the first delivery failure's KafkaError (None: not acknowledged in time)."""

    def __init__(self, message: str, error: KafkaError | None = None) -> None:
        super().__init__(message)
        self.error = error


def slot(message: Message) -> tuple[str, int]:
    """(topic, partition) of a consumed message. confluent-kafka types both Optional; they
    are only None on error events, which callers filter out first."""
    topic, partition = message.topic(), message.partition()
    if topic is None or partition is None:
        raise ValueError("an error event has no topic partition")
    return topic, partition


def value_of(message: Message) -> bytes:
    """The value, with a tombstone (null) as b"" for callers that have checked for one."""
    return message.value() or b""


def encode(record: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, for any JSON-shaped record: never raises on its text.

    orjson is 2-3x faster than json on the hot path; json is the fallback for what orjson
    refuses: an integer beyond 64 bits, and text that is not valid Unicode (a lone surrogate,
    `"\ud800"` in a JSON input, or a file name that is not UTF-8), which becomes U+FFFD. The
    record contract keeps both out of indicators; this keeps a dead letter's reason or origin
    from crashing the producer that reports them.
    """
    try:
        return orjson.dumps(record)
    except TypeError:
        text = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)
        try:
            return text.encode()
        except UnicodeEncodeError:  # lone surrogates: the UTF-16 round trip replaces them
            repaired = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
            return repaired.encode()


def decode(value: bytes | None) -> Any:
    """JSON from a message value (None for a tombstone); raises ValueError on bad input."""
    return orjson.loads(value) if value is not None else None


def producer_settings(config: Config, **extra: Any) -> dict[str, Any]:
    return {
        **config.kafka_settings(),
        # idempotence: broker-side dedup of retried sends, ordered per partition
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        **extra,
    }


def consumer_settings(config: Config, group: str, **extra: Any) -> dict[str, Any]:
    return {
        **config.kafka_settings(),
        "group.id": group,
        # offsets are committed by the loop only after outputs are acknowledged
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "fetch.wait.max.ms": 100,
        # a killed worker's partitions move after this long (librdkafka's default is 45 s)
        "session.timeout.ms": 15000,
        # a rebalance waits for every member to learn of it from its next heartbeat: at
        # librdkafka's 3 s, the 8 publish loops of a starting process took ~7 s to hold their
        # partitions (cooperative: two rounds); at 1 s, ~2.7 s
        "heartbeat.interval.ms": 1000,
        **extra,
    }


class AckedProducer:
    """A producer that knows whether everything it sent was acknowledged."""

    def __init__(self, config: Config, **extra: Any) -> None:
        self._producer = Producer(producer_settings(config, **extra))
        self.failed: list[str] = []
        self.first_error: KafkaError | None = None
        self.sent = 0

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed.append(f"{msg.topic()}: {err.str()}")
            self.first_error = self.first_error or err

    def send(self, topic: str, value: bytes | None, key: str | bytes | None = None,
             headers: list[tuple[str, str | bytes | None]] | None = None,
             partition: int | None = None, timestamp: int | None = None) -> None:
        # timestamp (ms): kept from the record's origin; 0 is the producer's clock
        stamp = timestamp or 0
        while True:
            try:
                if partition is None:
                    self._producer.produce(topic, value, key, on_delivery=self._on_delivery,
                                           headers=headers, timestamp=stamp)
                else:
                    self._producer.produce(topic, value, key, partition,
                                           on_delivery=self._on_delivery, headers=headers,
                                           timestamp=stamp)
                break
            except BufferError:  # local queue full: let librdkafka drain, then retry
                self._producer.poll(0.05)
        self.sent += 1
        if self.sent % 1000 == 0:  # serve delivery reports now and then; flush serves the rest
            self._producer.poll(0)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait for every acknowledgement; raise DeliveryError if any send failed."""
        remaining = self._producer.flush(timeout)
        if remaining:
            raise DeliveryError(f"{remaining} records not acknowledged within {timeout}s")
        if self.failed:
            failures, self.failed = self.failed, []
            error, self.first_error = self.first_error, None
            raise DeliveryError(f"{len(failures)} records refused, e.g. {failures[0]}", error)

    def forget_failures(self) -> None:
        """A batch is abandoned: failures reported so far belong to it, not to the next."""
        self.failed, self.first_error = [], None


def make_consumer(config: Config, group: str, topics: list[str],
                  on_revoke: Callable[..., None] | None = None, **extra: Any) -> Consumer:
    consumer = Consumer(consumer_settings(config, group, **extra))
    if on_revoke:
        consumer.subscribe(topics, on_revoke=on_revoke, on_lost=on_revoke)
    else:
        consumer.subscribe(topics)
    return consumer

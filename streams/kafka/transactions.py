"""How a batch commits: offsets after acknowledgement, or one transaction per batch.

The consume loop (streams/runtime/loop.py) is given one of these strategies; it begins a
batch, produces every output through it, then commits the batch's offsets through it.

Exactly-once batches (match, feedback): one Kafka transaction holds a batch's outputs, its
tables' changelog records and its consumer offsets. Fencing of a zombie worker comes from the
consumer group generation (KIP-447: offsets are sent with the group metadata), so each process
may use its own transactional id.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Protocol

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from threatroute.streams.config import Config
from threatroute.streams.kafka.clients import AckedProducer

log = logging.getLogger(__name__)

# a killed worker's open transaction is aborted by the broker after this long; batches take
# well under a second, so short is safe and lets a restarted worker restore its state sooner
TRANSACTION_TIMEOUT_MS = 15_000
# how long a restarting worker waits for the end of a changelog (an open transaction holds it)
RESTORE_SECONDS = 3 * TRANSACTION_TIMEOUT_MS / 1000
Headers = list[tuple[str, bytes]] | None


class CommitStrategy(Protocol):
    def begin(self) -> None: ...

    def produce(self, topic: str, value: bytes | None, key: str | bytes | None,
                partition: int | None = None, headers: Headers = None) -> None: ...

    def commit(self, consumer: Consumer, offsets: list[TopicPartition]) -> None: ...

    def abort(self) -> None: ...


class AfterAcknowledgement:
    """At-least-once: offsets are committed only after every output of the batch (results and
    dead letters) is acknowledged. A crash before the commit re-delivers the batch; outputs
    are keyed, so downstream dedup (matching) absorbs the repeats."""

    def __init__(self, producer: AckedProducer) -> None:
        self.producer = producer

    def begin(self) -> None:
        pass

    def produce(self, topic: str, value: bytes | None, key: str | bytes | None,
                partition: int | None = None, headers: Headers = None) -> None:
        self.producer.send(topic, value, key, headers, partition)  # type: ignore[arg-type]

    def commit(self, consumer: Consumer, offsets: list[TopicPartition]) -> None:
        self.producer.flush()  # raises DeliveryError: then nothing is committed, batch re-read
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # partitions moved to another worker mid-batch: it re-reads them (at-least-once)
            log.warning("commit failed, batch will be re-delivered: %s", exc)

    def abort(self) -> None:
        pass


class InTransaction:
    """Exactly-once: everything produced between `begin` and `commit` commits together with
    the offsets. On a Kafka error the transaction is aborted and the error raised: the stage
    stops, and whoever gets its partitions re-reads the batch from the committed offsets."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self._sent = 0

    def begin(self) -> None:
        self.producer.begin_transaction()

    def produce(self, topic: str, value: bytes | None, key: str | bytes | None,
                partition: int | None = None, headers: Headers = None) -> None:
        extra: dict[str, object] = {} if partition is None else {"partition": partition}
        if headers:
            extra["headers"] = headers
        while True:
            try:
                self.producer.produce(topic, value, key, **extra)  # type: ignore[arg-type]
                break
            except BufferError:  # local queue full: let librdkafka drain, then retry
                self.producer.poll(0.05)
        self._sent += 1
        if self._sent % 1000 == 0:  # serve delivery reports now and then
            self.producer.poll(0)

    def commit(self, consumer: Consumer, offsets: list[TopicPartition]) -> None:
        if offsets:
            self.producer.send_offsets_to_transaction(offsets,
                                                      consumer.consumer_group_metadata(), 30)
        self.producer.commit_transaction(60)

    def abort(self) -> None:
        try:
            self.producer.abort_transaction(30)
        except KafkaException:
            log.exception("abort failed")


def transactional_producer(config: Config, group: str, instance: str | None = None) -> Producer:
    """`instance` pins the transactional id; by default it is unique per process."""
    instance = instance or f"{socket.gethostname()}-{os.getpid()}"
    producer = Producer({**config.kafka_settings(), "transactional.id": f"{group}-{instance}",
                         "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS, "linger.ms": 5,
                         "compression.type": "lz4"})
    producer.init_transactions(30)
    return producer

"""Exactly-once batches for the stateful stages (match, feedback): one Kafka transaction
holds a batch's outputs, its state changelog records and its consumer offsets.

Fencing of a zombie worker comes from the consumer group generation (KIP-447: offsets are
sent with the group metadata), so each process may use its own transactional id.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import Consumer, KafkaException, Message, Producer

from threatroute.streams.config import Config
from threatroute.streams.runtime.loop import next_offsets

log = logging.getLogger(__name__)

# a killed worker's open transaction is aborted by the broker after this long; batches take
# well under a second, so short is safe and lets a restarted worker restore its state sooner
TRANSACTION_TIMEOUT_MS = 15_000
# how long a restarting worker waits for the end of a changelog (an open transaction holds it)
RESTORE_SECONDS = 3 * TRANSACTION_TIMEOUT_MS / 1000


def transactional_producer(config: Config, group: str, instance: str | None = None) -> Producer:
    """`instance` pins the transactional id; by default it is unique per process."""
    instance = instance or f"{socket.gethostname()}-{os.getpid()}"
    producer = Producer({**config.kafka_settings(), "transactional.id": f"{group}-{instance}",
                         "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS, "linger.ms": 5,
                         "compression.type": "lz4"})
    producer.init_transactions(30)
    return producer


def poll_batch(consumer: Consumer, size: int, timeout: float = 0.5) -> list[Message]:
    return [m for m in consumer.consume(size, timeout=timeout) if m.error() is None]


@contextmanager
def batch_transaction(producer: Producer, consumer: Consumer,
                      messages: list[Message]) -> Iterator[None]:
    """Everything produced inside commits together with the offsets after `messages`.

    On a Kafka error the transaction is aborted and the error raised: the stage stops, and
    whoever gets its partitions re-reads the batch from the last committed offsets.
    """
    producer.begin_transaction()
    try:
        yield
        if messages:
            producer.send_offsets_to_transaction(next_offsets(messages),
                                                 consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(60)
    except KafkaException:
        try:
            producer.abort_transaction(30)
        except KafkaException:
            log.exception("abort failed")
        raise

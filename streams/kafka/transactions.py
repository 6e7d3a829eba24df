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
import threading
import time
from collections.abc import Callable
from typing import Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from threatroute.streams.config import Config
from threatroute.streams.kafka.clients import AckedProducer

log = logging.getLogger(__name__)

# a killed worker's open transaction is aborted by the broker after this long; batches take
# well under a second, so short is safe and lets a restarted worker restore its state sooner
TRANSACTION_TIMEOUT_MS = 15_000
# how long a restarting worker waits for the end of a changelog (an open transaction holds it)
RESTORE_SECONDS = 3 * TRANSACTION_TIMEOUT_MS / 1000
# how long a commit whose outcome is not known yet (a retriable error) is resumed before the
# loop abandons the batch (then a new producer settles it: commit completed or aborted)
COMMIT_SECONDS = 60.0
TXN_CALL_SECONDS = 30  # the timeout given to each transactional call
TXN_STUCK_SECONDS = TXN_CALL_SECONDS + 15.0  # a call still blocked after this is given up
_STUCK: list[Producer] = []  # producers a blocked call is still inside: never destroyed
Headers = list[tuple[str, bytes]] | None


class CommitStrategy(Protocol):
    def begin(self) -> None: ...

    def produce(self, topic: str, value: bytes | None, key: str | bytes | None,
                partition: int | None = None, headers: Headers = None) -> None: ...

    def commit(self, consumer: Consumer, offsets: list[TopicPartition]) -> None: ...

    def abort(self, recreate: bool = False) -> None:
        """Abandon the batch: afterwards a new one may begin. `recreate`: the producer is
        unusable (fenced, fatal): make a new one. Raises a Kafka error if it could not (the
        broker is still away): the loop retries it."""


class AfterAcknowledgement:
    """At-least-once: offsets are committed only after every output of the batch (results and
    dead letters) is acknowledged. A crash before the commit re-delivers the batch; outputs
    are keyed, so downstream dedup (matching) absorbs the repeats."""

    def __init__(self, producer: AckedProducer,
                 remake: Callable[[], AckedProducer] | None = None) -> None:
        self.producer = producer
        self.remake = remake

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

    def abort(self, recreate: bool = False) -> None:
        # what is still queued may yet be delivered: the batch is redone anyway (repeats are
        # allowed here), and its failures must not fail the next batch
        if recreate and self.remake is not None:
            self.producer = self.remake()
        self.producer.forget_failures()


class InTransaction:
    """Exactly-once: everything produced between `begin` and `commit` commits together with
    the offsets. On a Kafka error the loop aborts the transaction (`abort`), rewinds to the
    committed offsets and redoes the batch; a producer that is fenced or fatally failed is
    replaced by a new one with the same transactional id (`remake`)."""

    def __init__(self, producer: Producer, remake: Callable[[], Producer] | None = None) -> None:
        self.producer = producer
        self.remake = remake
        self._sent = 0
        self._open = False  # a transaction has begun and is neither committed nor aborted
        self._unsettled = False  # its commit's outcome is unknown: only a new producer ends it

    def begin(self) -> None:
        self.producer.begin_transaction()
        self._open = True

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
            metadata = consumer.consumer_group_metadata()
            self._bounded(lambda: self.producer.send_offsets_to_transaction(
                offsets, metadata, TXN_CALL_SECONDS))
        deadline = time.monotonic() + COMMIT_SECONDS
        while True:
            try:
                self._bounded(lambda: self.producer.commit_transaction(TXN_CALL_SECONDS))
                break
            except KafkaException as exc:
                error = exc.args[0]
                # retriable: the commit goes on in the background and its outcome is not
                # known yet; calling again resumes it (aborting now could undo a commit)
                if (not isinstance(error, KafkaError) or not error.retriable()
                        or error.txn_requires_abort()):
                    raise
                if time.monotonic() > deadline:
                    self._unsettled = True
                    raise
        self._open = False

    def _bounded(self, call: Callable[[], object]) -> None:
        """Run a transactional call, but give up on it after TXN_STUCK_SECONDS.

        librdkafka's send_offsets_to_transaction can block far past its own timeout when the
        group coordinator went away mid-call (librdkafka issues #5456, #5511): seen here for
        minutes after a broker restart. The call runs on a helper thread; if it does not
        return in time the producer is given up (a fatal fault: the loop makes a new one,
        whose init_transactions fences this one) and kept, never destroyed under the thread
        still inside it."""
        done = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            try:
                call()
            except BaseException as exc:
                failed.append(exc)
            finally:
                done.set()

        threading.Thread(target=run, name="transaction-call", daemon=True).start()
        if not done.wait(TXN_STUCK_SECONDS):
            _STUCK.append(self.producer)
            raise KafkaException(KafkaError(
                KafkaError._TIMED_OUT, f"transactional call blocked over {TXN_STUCK_SECONDS}s",
                fatal=True))
        if failed:
            raise failed[0]

    def abort(self, recreate: bool = False) -> None:
        recreate = recreate or self._unsettled
        if not recreate and self._open:
            try:
                self._bounded(lambda: self.producer.abort_transaction(TXN_CALL_SECONDS))
            except KafkaException as exc:
                error = exc.args[0]
                if isinstance(error, KafkaError) and error.retriable() and not error.fatal():
                    raise  # the broker is away: the loop tries again once it answers
                recreate = True  # fatal, or a state only a new producer gets out of
        if recreate:
            if self.remake is None:
                raise KafkaException(KafkaError(KafkaError._FATAL,
                                                "producer failed and cannot be replaced"))
            # the new producer's init_transactions fences the old one and ends its
            # transaction (aborts it, or completes a commit the broker had accepted)
            log.info("making a new transactional producer")
            self.producer = self.remake()
        self._open = self._unsettled = False


def transactional_producer(config: Config, group: str, instance: str | None = None) -> Producer:
    """`instance` pins the transactional id; by default it is unique per process."""
    instance = instance or f"{socket.gethostname()}-{os.getpid()}"
    producer = Producer({**config.kafka_settings(), "transactional.id": f"{group}-{instance}",
                         "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS, "linger.ms": 5,
                         "compression.type": "lz4"})
    producer.init_transactions(30)
    return producer

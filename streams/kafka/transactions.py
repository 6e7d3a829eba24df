"""How batches commit: offsets after acknowledgement, or in a Kafka transaction.

The consume loop (streams/runtime/loop.py) is given one of these strategies; it begins a
batch, produces every output through it, then hands it the batch's offsets (`commit`).

A commit spans the batches of up to `COMMIT_INTERVAL` (Kafka Streams' commit.interval.ms
under exactly-once): `commit` only notes a batch's offsets until the open commit is that old,
then commits them all. Meanwhile the producer sends in the background while the next batch
is processed, instead of the loop waiting for the broker after every batch; a commit's fixed
cost (acknowledgements, the transaction markers on every partition it wrote) is paid once per
interval. The loop `flush`es what is open when it has nothing to do, before partitions are
revoked and when it stops; a batch's `done` callback runs once it is committed.

Exactly-once (match, feedback): one Kafka transaction holds the outputs, the tables'
changelog records and the consumer offsets of its batches. Fencing of a zombie worker comes
from the consumer group generation (KIP-447: offsets are sent with the group metadata), so
each process may use its own transactional id. A failed transaction loses nothing: every
batch of it is redone from the committed offsets, with the tables restored from the
committed changelogs (the loop's rewind, or whoever gets the partitions).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

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
# the longest a commit stays open across batches (seconds): alerts become visible to
# read-committed consumers at most this much later; measured in `threatroute bench`
COMMIT_INTERVAL = 0.1
TXN_CALL_SECONDS = 30  # the timeout given to each transactional call
TXN_STUCK_SECONDS = TXN_CALL_SECONDS + 15.0  # a call still blocked after this is given up
_STUCK: list[Producer] = []  # producers a blocked call is still inside: never destroyed
Headers = list[tuple[str, bytes]] | None
Done = Callable[[], None]


class CommitStrategy(Protocol):
    def begin(self) -> None: ...

    def produce(self, topic: str, value: bytes | None, key: str | bytes | None,
                partition: int | None = None, headers: Headers = None,
                timestamp: int | None = None) -> None: ...

    def commit(self, consumer: Consumer, offsets: list[TopicPartition],
               done: Done | None = None) -> None:
        """The batch is complete: commit it now or with the next ones, once the open commit
        is COMMIT_INTERVAL old; `done` runs once it is committed."""

    def flush(self, consumer: Consumer) -> None:
        """Commit what is open now (nothing to do, partitions revoked, stopping)."""

    def due(self) -> float | None:
        """Seconds until the open commit is due (0.0: now), None if nothing is open."""

    def abort(self, recreate: bool = False) -> None:
        """Abandon the batch: afterwards a new one may begin. `recreate`: the producer is
        unusable (fenced, fatal): make a new one. Raises a Kafka error if it could not (the
        broker is still away): the loop retries it."""


class Pending:
    """The batches of the open commit: their offsets (the highest next offset per partition),
    their `done` callbacks, and when the first of them began."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.began: float | None = None
        self.offsets: dict[tuple[str, int], int] = {}
        self.done: list[Done] = []

    def begin(self) -> bool:
        """Note a batch beginning; True if it opens a new commit."""
        if self.began is not None:
            return False
        self.began = time.monotonic()
        return True

    def add(self, offsets: list[TopicPartition], done: Done | None) -> bool:
        """Note a finished batch; True if the open commit is now due."""
        for tp in offsets:
            where = (tp.topic, tp.partition)
            self.offsets[where] = max(self.offsets.get(where, -1), tp.offset)
        if done is not None:
            self.done.append(done)
        return self.due() == 0.0

    def due(self) -> float | None:
        if self.began is None:
            return None
        return max(0.0, self.began + self.interval - time.monotonic())

    def take(self) -> tuple[list[TopicPartition], list[Done]]:
        offsets = [TopicPartition(t, p, o) for (t, p), o in self.offsets.items()]
        done = self.done
        self.clear()
        return offsets, done

    def clear(self) -> None:
        self.began, self.offsets, self.done = None, {}, []


class AfterAcknowledgement:
    """At-least-once: offsets are committed only after every output of the batch (results and
    dead letters) is acknowledged. A crash before the commit re-delivers the batch; outputs
    are keyed, so downstream dedup (matching) absorbs the repeats."""

    def __init__(self, producer: AckedProducer,
                 remake: Callable[[], AckedProducer] | None = None,
                 interval: float = COMMIT_INTERVAL) -> None:
        self.producer = producer
        self.remake = remake
        self.pending = Pending(interval)

    def begin(self) -> None:
        self.pending.begin()

    def produce(self, topic: str, value: bytes | None, key: str | bytes | None,
                partition: int | None = None, headers: Headers = None,
                timestamp: int | None = None) -> None:
        self.producer.send(topic, value, key, headers, partition,  # type: ignore[arg-type]
                           timestamp)

    def commit(self, consumer: Consumer, offsets: list[TopicPartition],
               done: Done | None = None) -> None:
        if self.pending.add(offsets, done):
            self.flush(consumer)

    def flush(self, consumer: Consumer) -> None:
        if self.pending.began is None:
            return
        # raises DeliveryError: then nothing is committed, the batches are re-read
        self.producer.flush()
        offsets, done = self.pending.take()
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                # partitions moved to another worker meanwhile: it re-reads them
                log.warning("commit failed, batches will be re-delivered: %s", exc)
        for callback in done:
            callback()

    def due(self) -> float | None:
        return self.pending.due()

    def abort(self, recreate: bool = False) -> None:
        self.pending.clear()
        # what is still queued may yet be delivered: the batch is redone anyway (repeats are
        # allowed here), and its failures must not fail the next batch
        if recreate and self.remake is not None:
            self.producer = self.remake()
        self.producer.forget_failures()


class InTransaction:
    """Exactly-once: everything produced in the open transaction (the batches of up to
    COMMIT_INTERVAL) commits together with their offsets. On a Kafka error the loop aborts
    the transaction (`abort`), rewinds to the committed offsets and redoes its batches; a
    producer that is fenced or fatally failed is replaced by a new one with the same
    transactional id (`remake`)."""

    def __init__(self, producer: Producer, remake: Callable[[], Producer] | None = None,
                 interval: float = COMMIT_INTERVAL) -> None:
        self.producer = producer
        self.remake = remake
        self.pending = Pending(interval)
        self._sent = 0
        self._open = False  # a transaction has begun and is neither committed nor aborted
        self._unsettled = False  # its commit's outcome is unknown: only a new producer ends it

    def begin(self) -> None:
        if self._open:
            return  # the batch joins the open transaction
        self.producer.begin_transaction()
        self._open = True
        self.pending.begin()

    def produce(self, topic: str, value: bytes | None, key: str | bytes | None,
                partition: int | None = None, headers: Headers = None,
                timestamp: int | None = None) -> None:
        extra: dict[str, object] = {} if partition is None else {"partition": partition}
        if headers:
            extra["headers"] = headers
        if timestamp:
            extra["timestamp"] = timestamp
        while True:
            try:
                self.producer.produce(topic, value, key, **extra)  # type: ignore[arg-type]
                break
            except BufferError:  # local queue full: let librdkafka drain, then retry
                self.producer.poll(0.05)
        self._sent += 1
        if self._sent % 1000 == 0:  # serve delivery reports now and then
            self.producer.poll(0)

    def commit(self, consumer: Consumer, offsets: list[TopicPartition],
               done: Done | None = None) -> None:
        if self.pending.add(offsets, done):
            self.flush(consumer)

    def due(self) -> float | None:
        return self.pending.due()

    def flush(self, consumer: Consumer) -> None:
        if not self._open:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self.pending.offsets.items()]
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
        _, done = self.pending.take()
        for callback in done:
            callback()

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
        self.pending.clear()
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


def transactional_producer(config: Config, group: str, instance: str | None = None,
                           on_error: Callable[[KafkaError], None] | None = None) -> Producer:
    """`instance` pins the transactional id; by default it is unique per process. `on_error`:
    librdkafka's error_cb (served in the producer's poll and flush)."""
    instance = instance or f"{socket.gethostname()}-{os.getpid()}"
    extra: dict[str, Any] = {"error_cb": on_error} if on_error is not None else {}
    producer = Producer({**config.kafka_settings(), "transactional.id": f"{group}-{instance}",
                         "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS, "linger.ms": 5,
                         "compression.type": "lz4", **extra})
    producer.init_transactions(30)
    producer.poll(0)  # what it met while it started (the broker away) reaches on_error now
    return producer

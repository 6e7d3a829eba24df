"""The one consume loop every stage runs: poll a batch, decode, run the stage's step, produce
what it returns, commit.

A stage (streams/runtime/step.py) never touches Kafka: it turns decoded inputs into a `Step`.
What differs between stages is passed in:

- a commit strategy (streams/kafka/transactions.py): `AfterAcknowledgement` (at-least-once:
  offsets committed once every output is acknowledged) or `InTransaction` (exactly-once: the
  batch's outputs, its tables' changelog records and its offsets in one Kafka transaction);
- a failure policy: what a refused input becomes (`DeadLetters`: its original bytes, the
  reason and where it came from, on the stage's dead-letter topic).

Nothing else in streams/ consumes for stage processing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from threatroute.deadletter import dead_letter
from threatroute.streams.kafka.clients import decode, encode, slot
from threatroute.streams.kafka.transactions import CommitStrategy
from threatroute.streams.runtime.metrics import StageMetrics
from threatroute.streams.runtime.step import (
    Input,
    Output,
    RecordCheck,
    Refused,
    Stage,
    Step,
    indicator_contract,
)

log = logging.getLogger(__name__)


@dataclass
class StageStats:
    """What one run of a stage did, for the CLI's closing summary (Prometheus gets the live
    figures from StageMetrics); read only after the stage's thread has ended."""

    consumed: int = 0
    produced: int = 0
    refused: int = 0
    batches: int = 0


# -- failure policies ----------------------------------------------------------------------
FailurePolicy = Callable[[Refused], Output]


@dataclass(frozen=True)
class DeadLetters:
    """A refused input becomes a dead letter on `topic`: original bytes, reason, field, and
    the topic, partition and offset it was read from."""

    topic: str
    stage: str

    def __call__(self, refused: Refused) -> Output:
        source = refused.origin
        origin = None if source is None else {
            "topic": source.topic, "partition": source.partition, "offset": source.offset}
        return Output(self.topic, None, dead_letter(refused.raw, refused.reason,
                                                    stage=self.stage, field=refused.field,
                                                    origin=origin), counted=False)


# -- the loop --------------------------------------------------------------------------------
def decode_batch(messages: list[Message], raw_input: bool = False,
                 check: RecordCheck | None = indicator_contract
                 ) -> tuple[list[Input], list[Refused]]:
    """The messages as JSON objects that pass `check` (a stage's input contract; None: any
    object), or (`raw_input`) the bytes alone for a stage that reads another format. The
    rest is refused, with where it came from."""
    inputs, refused = [], []
    for message in messages:
        raw, key = message.value() or b"", message.key()
        topic, partition = message.topic() or "", message.partition() or 0
        offset, stamp, reason = message.offset() or 0, message.timestamp()[1], None
        record: Any = {}
        if not raw_input:
            try:
                record = decode(raw)
                reason = check(record, len(raw), key) if check else None
                if reason is None and not isinstance(record, dict):
                    reason = f"expected a JSON object, got {type(record).__name__}"
            except (ValueError, UnicodeDecodeError) as exc:
                reason = f"not JSON: {exc}"
        if reason is None:
            headers = tuple((pair[0], _header_bytes(pair[1]))
                            for pair in message.headers() or [])
            inputs.append(Input(key, record, raw, topic, partition, offset, stamp, headers))
        else:
            refused.append(Refused(raw, reason[:300], None,
                                   Input(key, {}, raw, topic, partition, offset, stamp)))
    return inputs, refused


def next_offsets(messages: list[Message]) -> list[TopicPartition]:
    highest: dict[tuple[str, int], int] = {}
    for message in messages:
        where = slot(message)
        highest[where] = max(highest.get(where, -1), message.offset() or 0)
    return [TopicPartition(t, p, o + 1) for (t, p), o in highest.items()]


def subscribe(consumer: Consumer, stage: Stage, metrics: StageMetrics | None) -> None:
    def revoked(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
        stage.revoked(_slots(partitions))
        if metrics:
            metrics.forget_partitions(partitions)

    consumer.subscribe(list(stage.subscription),
                       on_assign=lambda _consumer, partitions: stage.assigned(_slots(partitions)),
                       on_revoke=revoked, on_lost=revoked)


def _slots(partitions: list[TopicPartition]) -> list[tuple[str, int]]:
    return [(tp.topic, tp.partition) for tp in partitions]


def run_stage(stage: Stage, consumer: Consumer, commit: CommitStrategy, failure: FailurePolicy,
              stop: threading.Event, stats: StageStats | None = None, batch_size: int = 2000,
              poll_timeout: float = 0.5, metrics: StageMetrics | None = None) -> StageStats:
    """Run `stage` until `stop` is set; returns its stats. Never returns on bad input.

    `consumer` is made but not yet subscribed; the loop subscribes it to `stage.subscription` with
    the stage's partition hooks and closes it at the end. Records carrying the header
    `stage.skip_header` are committed past without processing (streams/runtime/chain.py).
    """
    stats = stats or StageStats()
    due = [time.monotonic() + p.seconds for p in stage.periodic]
    subscribe(consumer, stage, metrics)
    try:
        while not stop.is_set():
            messages = [m for m in consumer.consume(num_messages=batch_size,
                                                    timeout=poll_timeout) if not _is_error(m)]
            ticking = [i for i, at in enumerate(due) if time.monotonic() >= at]
            if not messages and not ticking:
                stage.catch_up(busy=False)
                if metrics:  # idle is not stalled
                    metrics.idle()
                    metrics.lag(consumer)
                continue
            started = time.perf_counter()
            stage.catch_up(busy=True)
            step = Step(stage.clock())
            wanted = [m for m in messages if not _carried(m, stage.skip_header)] \
                if stage.skip_header else messages
            inputs, refused = decode_batch(wanted, stage.raw_input, stage.check)
            step.refused.extend(refused)
            if inputs:
                stage.process(inputs, step)
            for i in ticking:
                stage.periodic[i].run(step)
                due[i] = time.monotonic() + stage.periodic[i].seconds
            outputs = [*step.outputs, *stage.changes()]
            produced = sum(output.counted for output in outputs)
            outputs += map(failure, step.refused)
            if not messages and not outputs:
                continue  # periodic work that found nothing to do
            offsets = next_offsets(messages) if messages else _positions(consumer)
            commit.begin()
            try:
                for output in outputs:
                    value = output.value
                    commit.produce(output.topic,
                                   encode(value) if isinstance(value, dict) else value,
                                   output.key, output.partition,
                                   list(output.headers) if output.headers else None)
                commit.commit(consumer, offsets)
            except BaseException:
                commit.abort()
                raise
            stage.committed(step)
            stats.consumed += len(messages)
            stats.produced += produced
            stats.refused += len(step.refused)
            stats.batches += 1 if messages else 0
            if metrics:
                metrics.batch(len(messages), produced, len(step.refused),
                              time.perf_counter() - started, step.observed)
                metrics.lag(consumer)
    finally:
        consumer.close()  # leaves the group at once so partitions move without a timeout
    return stats


def _positions(consumer: Consumer) -> list[TopicPartition]:
    """Offsets for a batch without input (periodic work): the current positions, so the
    transaction still carries the group generation that fences a zombie worker."""
    try:
        return [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
    except KafkaException:
        return []


def _carried(message: Message, header: str) -> bool:
    headers = message.headers()  # a list of (name, value) pairs as consumed, or None
    return isinstance(headers, list) and any(name == header for name, _ in headers)


def _is_error(message: Message) -> bool:
    error = message.error()
    if error is None:
        return False
    if not error.retriable() and error.fatal():
        raise KafkaException(error)
    log.warning("consumer: %s", error.str())
    return True


def _header_bytes(value: str | bytes | None) -> bytes:
    return value.encode() if isinstance(value, str) else value or b""

"""The one consume loop every stage runs: poll a batch, decode, transform, produce, commit.

At-least-once: offsets are committed only after every output of the batch (results and dead
letters) is acknowledged by the broker. A crash before the commit re-delivers the batch; the
outputs are keyed so downstream dedup (matching) absorbs the repeats.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from threatroute.contract import check_key, check_record
from threatroute.deadletter import dead_letter
from threatroute.streams.kafka.clients import AckedProducer, decode, encode, slot
from threatroute.streams.runtime.metrics import StageMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Output:
    """One record to produce: where, under which key."""

    topic: str
    key: str | bytes | None
    value: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Refused:
    """An input the stage refuses: it goes to the dead letter with its original bytes."""

    raw: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class Input:
    key: bytes | None
    record: dict[str, Any]
    raw: bytes
    timestamp_ms: int = 0  # the message's Kafka timestamp


class Stage(Protocol):
    name: str
    source: str
    dead_letter_topic: str

    def process(self, batch: list[Input]) -> Iterable[Output | Refused]: ...


@dataclass
class StageStats:
    """What one run of a stage did, for the CLI's closing summary (Prometheus gets the live
    figures from StageMetrics); read only after the stage's thread has ended."""

    consumed: int = 0
    produced: int = 0
    refused: int = 0
    batches: int = 0


def decode_batch(messages: list[Message], raw_input: bool = False
                 ) -> tuple[list[Input], list[Refused]]:
    """JSON objects, or (`raw_input`) the bytes alone for a stage that reads another format."""
    inputs, refused = [], []
    for message in messages:
        raw = message.value() or b""
        if raw_input:
            inputs.append(Input(message.key(), {}, raw, message.timestamp()[1]))
            continue
        try:
            record = decode(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            refused.append(Refused(raw, f"not JSON: {exc}"[:300]))
            continue
        # the record contract: what the transforms (and the next stage) assume
        reason = check_record(record, len(raw)) or check_key(message.key())
        if reason:
            refused.append(Refused(raw, reason))
            continue
        inputs.append(Input(message.key(), record, raw, message.timestamp()[1]))
    return inputs, refused


def next_offsets(messages: list[Message]) -> list[TopicPartition]:
    highest: dict[tuple[str, int], int] = {}
    for message in messages:
        where = slot(message)
        highest[where] = max(highest.get(where, -1), message.offset() or 0)
    return [TopicPartition(t, p, o + 1) for (t, p), o in highest.items()]


def run_stage(stage: Stage, consumer: Consumer, producer: AckedProducer,
              stop: threading.Event, stats: StageStats | None = None, batch_size: int = 2000,
              poll_timeout: float = 0.5, metrics: StageMetrics | None = None) -> StageStats:
    """Run `stage` until `stop` is set; returns its stats. Never returns on bad input."""
    stats = stats or StageStats()
    try:
        while not stop.is_set():
            messages = consumer.consume(num_messages=batch_size, timeout=poll_timeout)
            messages = [m for m in messages if not _is_error(m)]
            if not messages:
                if metrics:  # idle is not stalled

                    metrics.idle()
                    metrics.lag(consumer)
                continue
            started = time.perf_counter()
            inputs, undecodable = decode_batch(messages, getattr(stage, "raw_input", False))
            results = stage.process(inputs) if inputs else []
            produced = refused_count = 0
            for result in [*undecodable, *results]:
                if isinstance(result, Refused):
                    letter = dead_letter(result.raw, result.reason, stage=stage.name)
                    producer.send(stage.dead_letter_topic, encode(letter))
                    refused_count += 1
                else:
                    producer.send(result.topic, encode(result.value), result.key)
                    produced += 1
            producer.flush()  # raises DeliveryError: then nothing is committed, batch re-read
            _commit(consumer, next_offsets(messages))
            # a fused chain moves its downstream stages' groups past what it produced for them
            committed = getattr(stage, "committed", None)
            if committed:
                committed(producer.acked)
            seconds = time.perf_counter() - started
            stats.consumed += len(messages)
            stats.produced += produced
            stats.refused += refused_count
            stats.batches += 1
            if metrics:
                metrics.batch(len(messages), produced, refused_count, seconds,
                              _observation_times(inputs))
                metrics.lag(consumer)
    finally:
        consumer.close()  # leaves the group at once so partitions move without a timeout
    return stats


def _observation_times(inputs: list[Input]) -> list[str]:
    times = (i.record.get("time") for i in inputs)
    return [o for t in times if isinstance(t, dict) and isinstance(o := t.get("observation"), str)]


def _is_error(message: Message) -> bool:
    error = message.error()
    if error is None:
        return False
    if not error.retriable() and error.fatal():
        raise KafkaException(error)
    log.warning("consumer: %s", error.str())
    return True


def _commit(consumer: Consumer, offsets: list[TopicPartition]) -> None:
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    except KafkaException as exc:
        # partitions moved to another worker mid-batch: it re-reads them (at-least-once)
        log.warning("commit failed, batch will be re-delivered: %s", exc)


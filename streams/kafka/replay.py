"""Reading topics back: the one "read these partitions to their end" helper.

Used by the views (registry, remediations), the registry reader, the stages' tables (restore
and catch-up), `tail` and `recipients forget`. Stage processing never reads here: it goes
through the one consume loop (streams/runtime/loop.py).

"At the end" means a partition-EOF event at or past the high watermark taken when the read
began (offsets alone cannot tell: transaction markers take offsets too, and compaction removes
records just below the watermark).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from threatroute.streams.config import Config
from threatroute.streams.kafka.clients import slot

Slot = tuple[str, int]


def replay_consumer(config: Config, **extra: Any) -> Consumer:
    """A consumer without group offsets: every reader replays from where it is assigned.

    Partition-EOF events tell a reader it has caught up. Reads committed data only
    (librdkafka's default isolation), so an aborted transaction is never seen.
    """
    return Consumer({**config.kafka_settings(), "group.id": f"view-{uuid.uuid4()}",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "enable.partition.eof": True, "fetch.wait.max.ms": 50, **extra})


def at_eof(message: Message) -> bool:
    error = message.error()
    return error is not None and error.code() == KafkaError._PARTITION_EOF


def partitions_of(consumer: Consumer, topic: str, timeout: float = 30.0) -> list[int] | None:
    """The partition numbers of `topic`, or None if it does not exist."""
    metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None:
        return None
    return sorted(metadata.partitions)


def high_watermarks(consumer: Consumer, slots: Iterable[Slot], timeout: float = 10.0
                    ) -> dict[Slot, int]:
    """The current end of each non-empty partition (empty ones are at their end already)."""
    highs = {}
    for topic, partition in slots:
        high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)[1]
        if high > 0:
            highs[(topic, partition)] = high
    return highs


def until_end(consumer: Consumer, slots: Iterable[Slot] | None = None, *,
              deadline: float | None = None, highs: dict[Slot, int] | None = None,
              ends: dict[Slot, int] | None = None, stop: threading.Event | None = None,
              follow: bool = False, batch: int = 1000, timeout: float = 0.2
              ) -> Iterator[Message]:
    """The data messages of `consumer` until every slot has reached its end.

    `slots`: the partitions to wait for (default: the consumer's assignment once it has one).
    `highs`: for a reader that was already reading, the watermarks its end must reach (an
    EOF seen before them is stale; a slot without one is empty, so at its end); without it,
    the first EOF of each slot counts. `ends`: where each slot's last EOF was, kept across
    calls by a reader that stays assigned (an EOF is reported once per arrival at the end).
    `follow`: keep yielding after the end (tail -f). Raises TimeoutError at `deadline`
    (time.monotonic()); returns when `stop` is set.
    """
    ends = ends if ends is not None else {}
    behind: set[Slot] | None = None
    if slots is not None:
        behind = set(slots) if highs is None else {
            s for s in slots if s in highs and ends.get(s, -1) < highs[s]}
    highs = highs or {}
    while not (stop is not None and stop.is_set()):
        if behind is None and (assigned := consumer.assignment()):
            behind = {(tp.topic, tp.partition) for tp in assigned}
        if behind is not None and not behind and not follow:
            return
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"reading {sorted(behind or ())} did not reach the end in time")
        for message in consumer.consume(batch, timeout=timeout):
            if at_eof(message):
                where = slot(message)
                if behind is None:  # subscribed: the assignment arrived with this batch
                    behind = {(tp.topic, tp.partition) for tp in consumer.assignment()}
                ends[where] = message.offset() or 0
                if ends[where] >= highs.get(where, 0):
                    behind.discard(where)
            elif message.error() is None:
                yield message


def replay_topic(config: Config, topic: str, apply: Callable[[Message], Any],
                 timeout: float = 30.0) -> bool:
    """Replay every partition of `topic` from its beginning into `apply`, then stop.

    Returns False (having read nothing) when the topic does not exist.
    """
    consumer = replay_consumer(config)
    try:
        partitions = partitions_of(consumer, topic, timeout)
        if partitions is None:
            return False
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        for message in until_end(consumer, [(topic, p) for p in partitions],
                                 deadline=time.monotonic() + timeout):
            apply(message)
        return True
    finally:
        consumer.close()


def read_to_end(consumer: Consumer, start: list[TopicPartition], timeout: float = 30.0
                ) -> list[Message]:
    """Every message from `start` (positions; a negative offset is the partition's start) to
    each partition's current end, with a consumer made by `replay_consumer`; partitions
    already at their end are skipped. The consumer is unassigned afterwards."""
    behind = []
    for tp in start:
        low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition),
                                                   timeout=10)
        offset = low if tp.offset < 0 else max(tp.offset, low)
        if offset < high:
            behind.append(TopicPartition(tp.topic, tp.partition, offset))
    if not behind:
        return []
    consumer.assign(behind)
    try:
        return list(until_end(consumer, [(tp.topic, tp.partition) for tp in behind],
                              deadline=time.monotonic() + timeout, batch=500))
    finally:
        consumer.unassign()


def batches(consumer: Consumer, stop: threading.Event, size: int = 500,
            timeout: float = 0.5) -> Iterator[list[Message]]:
    """Batches of data messages (possibly empty) until `stop` is set: for followers (views)."""
    while not stop.is_set():
        yield [m for m in consumer.consume(size, timeout=timeout) if m.error() is None]

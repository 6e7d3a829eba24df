"""Read a compacted topic whole, now: the latest value of every key (tombstoned keys gone).

For commands that look at a small table once (`corrections`, `explain --trust`); stages keep
their tables live instead (streams/runtime).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from threatroute.streams.config import Config
from threatroute.streams.kafka.clients import decode
from threatroute.streams.kafka.replay import read_to_end, replay_consumer


def read_latest(config: Config, topic: str, timeout: float = 30.0) -> dict[str, Any]:
    """{key: decoded JSON value} of `topic` as it is now; {} when the topic does not exist."""
    consumer = replay_consumer(config)
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            return {}
        messages = read_to_end(consumer, [TopicPartition(topic, p, OFFSET_BEGINNING)
                                          for p in meta.partitions], timeout=timeout)
    finally:
        consumer.close()
    rows: dict[str, Any] = {}
    for message in messages:  # in offset order per partition: the latest record of a key wins
        key = (message.key() or b"").decode(errors="replace")
        value = message.value()
        if value is None:
            rows.pop(key, None)
        else:
            rows[key] = decode(value)
    return rows

"""A commit spans the batches of up to the commit interval (streams/kafka/transactions.py)."""

from __future__ import annotations

import time

from confluent_kafka import TopicPartition

from threatroute.streams.kafka.transactions import Pending


def test_batches_are_committed_together_once_the_first_is_interval_old() -> None:
    pending = Pending(interval=0.2)
    assert pending.due() is None, "nothing open"
    done: list[int] = []
    assert pending.begin() is True
    assert not pending.add([TopicPartition("in", 0, 10), TopicPartition("in", 1, 5)],
                           lambda: done.append(1))
    assert pending.begin() is False, "the next batch joins the open commit"
    assert not pending.add([TopicPartition("in", 0, 25)], lambda: done.append(2))
    assert 0.0 < (pending.due() or 0.0) <= 0.2
    time.sleep(0.21)
    assert pending.add([], None), "due: the loop commits now"
    offsets, callbacks = pending.take()
    assert sorted((tp.topic, tp.partition, tp.offset) for tp in offsets) == \
        [("in", 0, 25), ("in", 1, 5)], "each partition's highest next offset"
    for callback in callbacks:
        callback()
    assert done == [1, 2], "every batch's accounts, in order, after the commit"
    assert pending.due() is None and pending.begin() is True


def test_an_abandoned_commit_forgets_its_batches() -> None:
    pending = Pending(interval=10.0)
    pending.begin()
    pending.add([TopicPartition("in", 0, 3)], lambda: None)
    pending.clear()
    assert pending.due() is None
    assert pending.take() == ([], [])

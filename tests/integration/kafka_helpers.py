"""Reading topics back in integration tests: offsets before, records after."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from threatroute import topics

LEADERLESS = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)
NO_COORDINATOR_YET = (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                      KafkaError.COORDINATOR_LOAD_IN_PROGRESS)


def end_offsets(bootstrap: str, topic: str, timeout: float = 30.0) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        consumer = Consumer({"bootstrap.servers": bootstrap,
                             "group.id": f"probe-{uuid.uuid4()}", "log_level": 3})
        try:
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in metadata.partitions}
        except KafkaException as exc:
            # a broker just started answers NOT_LEADER_FOR_PARTITION for topics just created
            # for a moment, and a client that asked keeps getting it: ask again with a new one
            if exc.args[0].code() not in LEADERLESS or time.monotonic() > deadline:
                raise
        finally:
            consumer.close()
        time.sleep(0.5)


def read_since(bootstrap: str, topic: str, since: dict[int, int] | None,
               expect: int | None = None, timeout: float = 30.0, idle: float = 2.0,
               raw: bool = False) -> list[tuple[bytes | None, Any]]:
    """Records appended to `topic` after `since` (end offsets taken earlier), JSON-decoded
    unless `raw`.

    Stops at `expect` records, or when nothing new arrived for `idle` seconds after the
    current end was reached, or at `timeout`.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4()}",
                         "enable.auto.commit": False, "log_level": 3})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, (since or {}).get(p, 0)) for p in partitions])
        records: list[tuple[bytes | None, Any]] = []
        deadline, quiet_since = time.monotonic() + timeout, time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.consume(1000, timeout=0.3)
            batch = [m for m in batch if m.error() is None]
            if batch:
                quiet_since = time.monotonic()
            records += [(m.key(), m.value() if raw or m.value() is None else json.loads(m.value()))
                        for m in batch]
            if expect is not None and len(records) >= expect:
                break
            if expect is None and time.monotonic() - quiet_since > idle:
                break
        return records
    finally:
        consumer.close()


def read_routed(bootstrap: str, since: dict[int, int] | None, rids: set[str],
                idle: float = 2.0, timeout: float = 60.0) -> list[tuple[str, str]]:
    """(recipient, alert key) of every alert on match.routed after `since` for `rids`: the
    record's key is the recipient, the alert's own key rides in a header."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4()}",
                         "enable.auto.commit": False, "log_level": 3})
    try:
        partitions = consumer.list_topics(topics.MATCH_ROUTED, timeout=10).topics[
            topics.MATCH_ROUTED].partitions
        consumer.assign([TopicPartition(topics.MATCH_ROUTED, p, (since or {}).get(p, 0))
                         for p in partitions])
        found: list[tuple[str, str]] = []
        deadline, quiet_since = time.monotonic() + timeout, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since <= idle:
            batch = [m for m in consumer.consume(1000, timeout=0.3) if m.error() is None]
            if batch:
                quiet_since = time.monotonic()
            for m in batch:
                rid = (m.key() or b"").decode()
                if rid in rids:
                    carried = dict(m.headers() or []).get(topics.ALERT_KEY_HEADER) or b""
                    found.append((rid, carried.decode()))
        return found
    finally:
        consumer.close()


STAGE_INPUTS = {"threatroute-asn": "indicators.raw", "threatroute-geo": "indicators.asn",
                "threatroute-hoster": "indicators.geo", "threatroute-match": "indicators.enriched",
                "threatroute-publish": topics.MATCH_ROUTED}


# the groups `run all` consumes as: its fused enrichment chain is the asn group and commits
# for no other (geo and hoster groups only move when those stages run as their own processes);
# publish's commit is the alerts written to alerts.<recipient>
RUN_ALL_GROUPS = ("threatroute-asn", "threatroute-match", "threatroute-publish")


def wait_drained(bootstrap: str, timeout: float = 180.0,
                 groups: tuple[str, ...] | None = RUN_ALL_GROUPS) -> None:
    """Wait until the stages' groups (those of `run all` by default) have committed up to the
    end of their inputs: records earlier tests left on the topics are through the pipeline
    before a test sets up its recipients."""
    deadline = time.monotonic() + timeout
    lag: dict[str, int] = {}
    while time.monotonic() < deadline:
        for group, topic in STAGE_INPUTS.items():
            if groups is not None and group not in groups:
                continue
            ends = end_offsets(bootstrap, topic)
            reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                               "log_level": 3})
            try:
                committed = reader.committed([TopicPartition(topic, p) for p in ends], timeout=10)
            except KafkaException as exc:  # a broker just started: its offsets topic is new
                if exc.args[0].code() not in NO_COORDINATOR_YET:
                    raise
                lag[group] = -1  # unknown: ask again
                continue
            finally:
                reader.close()
            positions = {tp.partition: max(tp.offset, 0) for tp in committed}
            lag[group] = sum(end - positions.get(p, 0) for p, end in ends.items())
        if not any(lag.values()):
            return
        time.sleep(1)
    raise AssertionError(f"pipeline did not drain in {timeout}s: {lag}")


def wait_stable(bootstrap: str, groups: tuple[str, ...], timeout: float = 60.0) -> None:
    """Wait until each group is stable and every member holds partitions: a process that
    just started joins its groups one worker at a time (publish: 8 loops) and the group
    rebalances for each, for several seconds, while its committed lag may already read 0.
    Cooperative rebalancing settles in two rounds: between them the group reads stable with
    the partitions taken away in the first not yet handed out."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    client = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        for group, future in client.describe_consumer_groups(list(groups),
                                                             request_timeout=10).items():
            try:
                described = future.result()
            except KafkaException as exc:
                if exc.args[0].code() not in NO_COORDINATOR_YET:
                    raise
                states[group] = "no coordinator yet"
                continue
            stable = (described.state == ConsumerGroupState.STABLE and described.members
                      and all(m.assignment.topic_partitions for m in described.members))
            states[group] = "stable" if stable else str(described.state)
        if all(state == "stable" for state in states.values()) and len(states) == len(groups):
            return
        time.sleep(0.5)
    raise AssertionError(f"groups did not settle in {timeout}s: {states}")

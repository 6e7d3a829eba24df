"""Topic administration: create every pipeline topic from configuration, idempotently."""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from threatroute.errors import ThreatrouteError
from threatroute.streams.config import Config, TopicSpec


class TopicError(ThreatrouteError):
    """A topic could not be created or brought in line with its configuration."""


def admin(config: Config) -> AdminClient:
    return AdminClient(config.kafka_settings())


# KRaft refuses a CreateTopics request of more than 10,000 partitions ("Excessively large
# number of partitions per request"); far smaller requests also each finish well within the
# request timeout on a busy broker, so a registry of any size is created in steps
PARTITIONS_PER_REQUEST = 1000


def ensure_topics(client: AdminClient, specs: Iterable[TopicSpec], timeout: float = 30.0,
                  align_configs: bool = True) -> dict[str, str]:
    """Create missing topics and align existing ones; returns {topic: what was done}.

    What is done is one of "created", "unchanged", or "updated (...)". Partitions only grow
    (Kafka cannot shrink them); a topic with more partitions than configured is left alone.
    Without `align_configs`, existing topics only grow partitions (one metadata request for
    all, instead of a describe per topic: what per-recipient topics by the thousand need).
    """
    specs = list(specs)
    existing = client.list_topics(timeout=timeout).topics
    outcome = create_missing(client, [s for s in specs if s.name not in existing], timeout)
    await_leaders(client, [name for name, done in outcome.items() if done == "created"])
    for spec in (s for s in specs if s.name in existing):
        partitions = len(existing[spec.name].partitions)
        if align_configs:
            outcome[spec.name] = _align(client, spec, partitions, timeout)
        elif partitions < spec.partitions:
            outcome[spec.name] = _grow(client, spec, partitions, timeout)
        else:
            outcome[spec.name] = "unchanged"
    return outcome


def create_missing(client: AdminClient, specs: list[TopicSpec], timeout: float = 30.0
                   ) -> dict[str, str]:
    """Create `specs` in requests of at most PARTITIONS_PER_REQUEST partitions each.

    A topic that appeared meanwhile counts as "unchanged"; any other refusal raises TopicError
    after the topics of earlier requests exist (creating again is idempotent: a retry goes on).
    """
    outcome: dict[str, str] = {}
    for chunk in _requests(specs):
        futures = client.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication,
                      config=dict(s.configs)) for s in chunk],
            operation_timeout=timeout, request_timeout=timeout + 5)
        for name, future in futures.items():
            try:
                future.result()
                outcome[name] = "created"
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # lost a race: fine
                    raise TopicError(f"creating {name}: {exc}") from None
                outcome[name] = "unchanged"
    return outcome


def await_leaders(client: AdminClient, names: list[str], timeout: float = 300.0) -> None:
    """Wait until the broker serves `names` with a leader for every partition.

    The controller confirms a creation before the broker has loaded it: thousands created in
    a row take the broker a while to open, and until then producing to them fails. Callers
    that announce topics (the registry import) wait here first.
    """
    deadline = time.monotonic() + timeout
    waiting = set(names)
    while waiting:
        topics = client.list_topics(timeout=30).topics
        waiting = {n for n in waiting if n not in topics or topics[n].error is not None
                   or any(p.leader < 0 for p in topics[n].partitions.values())}
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TopicError(f"{len(waiting)} topics created but not served after {timeout:.0f}s,"
                             f" e.g. {sorted(waiting)[0]}")
        time.sleep(0.5)


def _requests(specs: list[TopicSpec]) -> Iterable[list[TopicSpec]]:
    chunk: list[TopicSpec] = []
    size = 0
    for spec in specs:
        if chunk and size + spec.partitions > PARTITIONS_PER_REQUEST:
            yield chunk
            chunk, size = [], 0
        chunk.append(spec)
        size += spec.partitions
    if chunk:
        yield chunk


def _grow(client: AdminClient, spec: TopicSpec, partitions: int, timeout: float) -> str:
    client.create_partitions([NewPartitions(spec.name, spec.partitions)],
                             request_timeout=timeout)[spec.name].result()
    return f"updated (partitions {partitions}->{spec.partitions})"


def _align(client: AdminClient, spec: TopicSpec, partitions: int, timeout: float) -> str:
    changes = []
    if partitions < spec.partitions:
        _grow(client, spec, partitions, timeout)
        changes.append(f"partitions {partitions}->{spec.partitions}")
    resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name)
    current = client.describe_configs([resource])[resource].result(timeout=timeout)
    differing = {k: v for k, v in spec.configs.items() if current.get(k) is None
                 or current[k].value != v}
    if differing:
        entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                   for k, v in differing.items()]
        altered = ConfigResource(ConfigResource.Type.TOPIC, spec.name, incremental_configs=entries)
        client.incremental_alter_configs([altered])[altered].result(timeout=timeout)
        changes += [f"{k}={v}" for k, v in differing.items()]
    return f"updated ({', '.join(changes)})" if changes else "unchanged"

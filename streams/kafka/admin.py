"""Topic administration: create every pipeline topic from configuration, idempotently."""

from __future__ import annotations

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


def ensure_topics(client: AdminClient, specs: Iterable[TopicSpec], timeout: float = 30.0
                  ) -> dict[str, str]:
    """Create missing topics and align existing ones; returns {topic: what was done}.

    What is done is one of "created", "unchanged", or "updated (...)". Partitions only grow
    (Kafka cannot shrink them); a topic with more partitions than configured is left alone.
    """
    specs = list(specs)
    existing = client.list_topics(timeout=timeout).topics
    outcome: dict[str, str] = {}
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = client.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication,
                      config=dict(s.configs)) for s in missing], operation_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result()
                outcome[name] = "created"
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # lost a race: fine
                    raise TopicError(f"creating {name}: {exc}") from None
                outcome[name] = "unchanged"
    present = [s for s in specs if s.name in existing]
    for spec in present:
        outcome[spec.name] = _align(client, spec, len(existing[spec.name].partitions), timeout)
    return outcome


def _align(client: AdminClient, spec: TopicSpec, partitions: int, timeout: float) -> str:
    changes = []
    if partitions < spec.partitions:
        client.create_partitions([NewPartitions(spec.name, spec.partitions)])[spec.name].result()
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


def recipient_topic(recipient_id: str) -> str:
    return f"alerts.{recipient_id}"

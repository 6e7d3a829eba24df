"""The recipient registry on Kafka: import to the compacted `recipients` topic, read it back,
and keep a live view that tells workers when it changes.

Key = recipient id; value = `Recipient.to_json()`; a removed recipient is a tombstone (null
value), so compaction leaves exactly the current registry on the topic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from threatroute import topics
from threatroute.registry import Recipient, diff_registry, load_registry
from threatroute.streams.config import Config
from threatroute.streams.kafka.admin import TopicSpec, admin, ensure_topics
from threatroute.streams.kafka.clients import AckedProducer, encode
from threatroute.streams.kafka.replay import replay_topic
from threatroute.streams.runtime.views import CompactedView, json_fold

TOPIC = topics.RECIPIENTS
log = logging.getLogger(__name__)


_fold = json_fold(Recipient.from_json)


def read_registry(config: Config, timeout: float = 30.0) -> dict[str, Recipient]:
    """The registry as the topic holds it now (reads to the current end and stops)."""
    state: dict[str, Recipient] = {}
    if not replay_topic(config, TOPIC, lambda message: _fold(state, message), timeout):
        raise LookupError(f"no topic {TOPIC}; run `threatroute topics create`")
    return state


@dataclass(frozen=True)
class ImportResult:
    upserts: list[str]
    deletions: list[str]
    topics_created: list[str]
    provisioned: dict[str, Path] = field(default_factory=dict)  # id -> its credentials file
    revoked: list[str] = field(default_factory=list)


def import_registry(config: Config, text: str, create_alert_topics: bool = True
                    ) -> ImportResult:
    """Validate the YAML, create the recipients' topics, then write only the changes and
    tombstones for removed recipients.

    Topics first: a failure part-way (a refused topic, the broker gone) leaves the registry as
    it was, or with only recipients whose topics exist, so no worker ever routes to a topic
    that is missing. Topics made for recipients whose write then failed are harmless and are
    found existing when the import is run again.

    Against a secure broker, recipients without credentials are then provisioned (their client
    files written to the state directory, mode 0600) and removed ones revoked.
    """
    desired = load_registry(text)  # raises RegistryError naming entry and field
    current = read_registry(config)
    upserts, deletions = diff_registry(current, desired)
    # every desired recipient, not only the changed ones: an earlier failed run may have
    # written a recipient whose topic was deleted since; existing topics cost one listing
    created = ensure_recipient_topics(config, desired) if create_alert_topics else []
    producer = AckedProducer(config)
    for recipient in upserts:
        producer.send(TOPIC, encode(recipient.to_json()), recipient.id)
    for recipient_id in deletions:
        producer.send(TOPIC, None, recipient_id)
    producer.flush()
    result = ImportResult([r.id for r in upserts], deletions, created)
    if config.secure:
        from threatroute.streams.commands import access  # the secure broker's side of import

        client = admin(config)
        existing = access.credentialed(client)
        for recipient in desired:
            if recipient.id not in existing:
                result.provisioned[recipient.id] = access.provision(
                    config, recipient.id, access.default_file(config, recipient.id), client)
        for recipient_id in deletions:
            access.revoke(config, recipient_id, client)
            result.revoked.append(recipient_id)
    return result


def recipient_topic_specs(config: Config, recipient: str | Recipient) -> list[TopicSpec]:
    """The topics of one recipient, as `[topics."alerts.*"]` etc. configure them.

    `alerts.<id>` takes the recipient's own `alert_partitions` when it sets one. The topics a
    recipient writes to (`feedback.<id>`, `contributions.<id>`) exist only on a secure broker:
    without ACLs recipients write to the shared `feedback` topic, and 10,000 recipients' unused
    topics would cost the broker 20,000 open files.
    """
    rid = recipient if isinstance(recipient, str) else recipient.id
    alerts = config.recipient_topic(topics.alerts_topic(rid))
    if isinstance(recipient, Recipient) and recipient.alert_partitions:
        alerts = TopicSpec(alerts.name, recipient.alert_partitions, alerts.replication,
                           alerts.configs)
    if not config.secure:
        return [alerts]
    return [alerts, config.recipient_topic(topics.feedback_topic(rid)),
            config.recipient_topic(topics.contributions_topic(rid))]


def ensure_recipient_topics(config: Config, recipients: Iterable[str | Recipient]) -> list[str]:
    """Create each recipient's topics if missing (recipient_topic_specs); returns those created.

    Requests are bounded (admin.PARTITIONS_PER_REQUEST), so any number of recipients works;
    existing topics only grow partitions (a raised `alert_partitions`) and keep their configs.
    A recipient that falls further behind than its alert topic's retention (7 days by
    default) misses alerts, which the lag alert in deploy/prometheus warns about. Topics of
    removed recipients are kept until `recipients forget`: see README.
    """
    specs = [spec for r in recipients for spec in recipient_topic_specs(config, r)]
    if not specs:
        return []
    outcome = ensure_topics(admin(config), specs, align_configs=False)
    return sorted(t for t, done in outcome.items() if done == "created")


def registry_view(config: Config,
                  on_change: Callable[[Mapping[str, Recipient]], None]) -> CompactedView[Recipient]:
    """A live copy of the registry; `on_change` rebuilds indexes when the topic changes."""
    return CompactedView(config, TOPIC, _fold, on_change)

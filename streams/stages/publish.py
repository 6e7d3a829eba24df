"""The publish stage: `match.routed` -> `alerts.<recipient>`, exactly once.

The match stage writes every alert to `match.routed`, keyed by recipient id (the alert's own
key in a header); this stage writes each one to its recipient's topic with that key, the
value and the other headers unchanged and the record's timestamp kept
(threatroute.matchers.publication decides where, pure). A record it cannot place is
dead-lettered to `indicators.invalid` with its bytes and the reason.

Why a stage of its own: librdkafka sends one partition per ProduceRequest (librdkafka#1700)
with at most 5 in flight, so one producer writing to 10,000 one-partition topics manages about
1k records/s. `threatroute run publish --workers N` runs N of these in one process, each its
own consumer in the publish group and its own transactional producer: the group splits
`match.routed`'s partitions, and with them the recipients, between the producers.

Each batch is one transaction (the loop's `InTransaction`): the alerts and the offsets of
`match.routed` commit together, so a kill -9 neither loses nor repeats an alert.

A recipient's topic that does not exist (written to the registry some other way, or deleted
meanwhile) is created before the batch is produced, never left to librdkafka, which would
fail the transaction after `topic.metadata.propagation.max.ms` and so lose nothing but
stall; creating it keeps the alert.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable

from confluent_kafka.admin import AdminClient

from threatroute import topics
from threatroute.matchers.publication import Publication, publication
from threatroute.streams.config import Config
from threatroute.streams.kafka.admin import admin
from threatroute.streams.runtime.registry import ensure_recipient_topics
from threatroute.streams.runtime.step import BaseStage, Input, Output, Step

log = logging.getLogger(__name__)


class AlertTopics:
    """Which recipients' alert topics exist, learned from one listing and kept; a recipient
    not known yet is looked up (and its topic created if missing) once, in bulk per batch."""

    def __init__(self, config: Config,
                 ensure: Callable[[list[str]], list[str]] | None = None) -> None:
        self.config = config
        self.known: set[str] = set()
        self._listed = False
        self._ensure = ensure or (lambda ids: ensure_recipient_topics(config, ids))
        self._client: AdminClient | None = None

    def ready(self, recipients: Iterable[str]) -> None:
        """Make sure every recipient's alert topic exists. Raises a Kafka error while Kafka
        does not answer (the loop backs off and redoes the batch)."""
        missing = set(recipients) - self.known
        if not missing:
            return
        if not self._listed:  # the first batch: every existing topic in one request
            self._client = self._client or admin(self.config)
            listed = self._client.list_topics(timeout=30).topics
            self.known.update(r for t in listed
                              if (r := topics.recipient_of(t, topics.ALERTS_PREFIX)))
            self._listed = True
            missing -= self.known
        if missing:
            created = self._ensure(sorted(missing))
            if created:
                log.warning("publish: created alert topics missing for %d recipients: %s",
                            len(created), ", ".join(created[:10]))
            self.known |= missing


class PublishStage(BaseStage):
    name = "publish"
    group = topics.group_id("publish")
    subscription = (topics.MATCH_ROUTED,)
    exactly_once = True
    dead_letter_topic = topics.INVALID
    raw_input = True  # rendered alerts in the recipient's format: carried as bytes

    def __init__(self, config: Config, worker: int = 0,
                 alert_topics: AlertTopics | None = None) -> None:
        # worker: its number among the process's publish workers; each has its own
        # transactional id (the loop's commit strategy pins it from `instance`), or they
        # would fence one another
        self.worker = worker
        self.instance = f"{socket.gethostname()}-{os.getpid()}-{worker}"
        self.alert_topics = alert_topics or AlertTopics(config)

    def process(self, inputs: list[Input], step: Step) -> None:
        placed: list[tuple[Input, Publication]] = []
        for item in inputs:
            where = publication(item.key, item.raw, item.headers)
            if isinstance(where, Publication):
                placed.append((item, where))
            else:
                step.refuse(item.raw, where.reason, where.field, origin=item)
        self.alert_topics.ready(p.recipient for _, p in placed)
        for item, where in placed:
            step.send(Output(where.topic, where.key, item.raw, headers=where.headers or None,
                             timestamp=item.timestamp_ms if item.timestamp_ms > 0 else None))
        step.count("published", len(placed))

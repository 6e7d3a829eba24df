"""The match stage: enriched indicators -> one alert per recipient, deduplicated, exactly once.

State: one `AlertState` per (recipient, indicator key) in the table `match.state`
(streams/runtime/tables.py): partition p of the changelog holds the states of input partition
p, restored when p is assigned. Routing one record is a pure function
(threatroute.matchers.routing.route); this module only feeds it and carries its result out.

Each batch is one Kafka transaction (the loop's `InTransaction`): alerts to
`alerts.<recipient>`, the ledger, the changelog and the consumer offsets commit together or
not at all. A kill -9 at any point therefore neither loses an indicator nor sends an alert
twice (consumers read committed data, which is librdkafka's default).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from confluent_kafka import Message

from threatroute import topics
from threatroute.matchers.dedup import Action, AlertState, DedupPolicy
from threatroute.matchers.formats import render
from threatroute.matchers.index import MatchIndex
from threatroute.matchers.privacy import DEFAULT as PRIVATE
from threatroute.matchers.privacy import AlertContent, content_of
from threatroute.matchers.routing import expired_keys, route
from threatroute.record import indicator_key
from threatroute.registry import Recipient
from threatroute.streams.config import Config
from threatroute.streams.runtime.registry import ensure_recipient_topics, registry_view
from threatroute.streams.runtime.step import (
    BaseStage,
    Clock,
    Input,
    Output,
    Periodic,
    Step,
    indicator_contract,
    utc_now,
)
from threatroute.streams.runtime.tables import Table, Tables
from threatroute.streams.runtime.views import CompactedView, json_fold

log = logging.getLogger(__name__)
NOTIFYING = tuple(a.value for a in Action if a.notifies)  # actions that send an alert
EXPIRY_SECONDS = 600.0  # how often states unseen for the dedup window are tombstoned


class Routing:
    """The match index and each recipient's format, rebuilt atomically on registry change."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self.index = MatchIndex.build([], default_tlp=config.default_tlp)
        self.formats: dict[str, str] = {}
        self.contents: dict[str, AlertContent] = {}

    def rebuild(self, recipients: Mapping[str, Recipient]) -> None:
        # the recipients' topics exist before the index routes to them (import creates them;
        # this covers recipients written to the topic some other way)
        ensure_recipient_topics(self._config, recipients)
        formats = {rid: r.format for rid, r in recipients.items()}
        contents = {rid: content_of(r) for rid, r in recipients.items()}
        index = MatchIndex.build(recipients.values(), default_tlp=self._config.default_tlp)
        # readers see old or new, never a mix
        self.index, self.formats, self.contents = index, formats, contents
        log.info("match index rebuilt: %d recipients", len(recipients))


def remediation_fold() -> Any:
    """alerts.status -> {alert id: time it was reported remediated}."""
    def remediated_at(value: dict[str, Any]) -> str | None:
        return value.get("remediated_at") if value.get("status") == "remediated" else None

    inner = json_fold(remediated_at)

    def fold(state: dict[str, Any], message: Message) -> bool:
        changed = inner(state, message)
        key = (message.key() or b"").decode(errors="replace")
        if state.get(key, 0) is None:  # not (or no longer) remediated: nothing to remember
            del state[key]
        return changed

    return fold


class MatchStage(BaseStage):
    name = "match"
    group = topics.group_id("match")
    subscription = (topics.ENRICHED,)
    exactly_once = True
    dead_letter_topic = topics.INVALID
    check = staticmethod(indicator_contract)

    def __init__(self, config: Config, metrics: Any = None, instance: str | None = None,
                 batch_size: int = 2000, clock: Clock = utc_now) -> None:
        # metrics: the loop's business (kept for callers that pass them)
        self.config, self.clock, self.instance = config, clock, instance
        self.batch_size = batch_size
        self.policy = DedupPolicy(timedelta(hours=config.dedup_window_hours),
                                  timedelta(hours=config.renotify_hours))
        self.routing = Routing(config)
        self.states: Table[AlertState] = Table(topics.MATCH_STATE, AlertState.from_json,
                                               AlertState.to_json)
        self.tables = Tables(config, [self.states])
        self.tables.check_partitions([topics.ENRICHED])
        self.counts: Counter[str] = Counter()  # actions taken, over committed batches
        self.registry = registry_view(config, self.routing.rebuild)
        self.remediations: CompactedView[str] = CompactedView(config, topics.STATUS,
                                                              remediation_fold())
        self.periodic = (Periodic(EXPIRY_SECONDS, self.expire),)

    def start(self) -> None:
        self.registry.start()
        self.remediations.start()

    def assigned(self, partitions: list[tuple[str, int]]) -> None:
        self.tables.assign(p for _, p in partitions)

    def revoked(self, partitions: list[tuple[str, int]]) -> None:
        self.tables.revoke(p for _, p in partitions)

    def process(self, inputs: list[Input], step: Step) -> None:
        for item in inputs:
            self.route(item, step)

    def route(self, item: Input, step: Step) -> None:
        """Route one record: its alerts, ledger records and state changes go into `step`."""
        record = item.record
        try:
            # our stages always key by indicator key; a record produced by hand may lack one
            key = item.key.decode() if item.key else indicator_key(record)
            deliveries = route(record, key, self.routing.index,
                               self.states.partition(item.partition),
                               self.remediations.get, step.now, self.policy)
        except Exception as exc:  # bad input costs one record, never the stage
            step.refuse(item.raw, f"match failed: {type(exc).__name__}: {exc}", origin=item)
            return
        for delivery in deliveries:
            self.states.put(item.partition, delivery.key, delivery.state)
            step.send(Output(topics.LEDGER, delivery.state.alert_id, delivery.alert,
                             counted=False))
            if delivery.notifies:
                rid = delivery.recipient
                step.send(Output(topics.alerts_topic(rid), key, render(
                    delivery.alert, self.routing.formats.get(rid, "json"),
                    self.routing.contents.get(rid, PRIVATE))))
            step.count(delivery.action.value)
        stamps = record.get("time")
        observed = stamps.get("observation") if isinstance(stamps, dict) else None
        if isinstance(observed, str):
            step.observed.append(observed)

    def expire(self, step: Step) -> None:
        """Tombstone states not seen for longer than the dedup window."""
        for partition in list(self.tables.owned):
            for key in expired_keys(self.states.partition(partition), step.now, self.policy):
                self.states.delete(partition, key)

    def changes(self) -> list[Output]:
        return self.tables.changes()

    def committed(self, step: Step) -> None:
        self.counts.update(step.counts)

    def close(self) -> None:
        self.tables.close()
        self.registry.stop()
        self.remediations.stop()

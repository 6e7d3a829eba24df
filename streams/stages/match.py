"""The match stage: enriched indicators -> one alert per recipient, deduplicated, exactly once;
and feedback that acts: screening, verdicts, reroute, escalation, feed trust.

State: one `AlertState` per (recipient, indicator key) in the table `match.state`
(streams/runtime/tables.py): partition p of the changelog holds the states of input partition
p, restored when p is assigned. Routing one record, judging one report and escalating are pure
(threatroute.matchers.acting.FeedbackRouting); this module only feeds them and carries their
results out.

Feedback that acts: the feedback stage forwards every accepted report to `match.feedback`,
keyed by indicator key and co-partitioned with `indicators.enriched`, so report and indicator
meet on one partition. The rules' own tables (`match.verdicts`, `match.watch`, `match.trust`)
are changelogs of that partition too; `match.trust` is also read whole by every worker
(a view), since a feed's trust is learned from every partition's feedback. Escalation runs as
periodic work on the stage's clock.

Each batch is one Kafka transaction (the loop's `InTransaction`): alerts to `match.routed`
(keyed by recipient; the publish stage, streams/stages/publish.py, moves them to
`alerts.<recipient>`), the ledger, the changelog and the consumer offsets commit together or
not at all. A kill -9 at any point therefore neither loses an indicator nor sends an alert
twice (consumers read committed data, which is librdkafka's default).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import orjson
from confluent_kafka import Message

from threatroute import topics
from threatroute.expiry import stale_remediations
from threatroute.matchers.acting import Emit, FeedbackRouting
from threatroute.matchers.dedup import Action, AlertState, DedupPolicy
from threatroute.matchers.formats import json_bytes, redacted_json, render
from threatroute.matchers.index import MatchIndex
from threatroute.matchers.privacy import DEFAULT as PRIVATE
from threatroute.matchers.privacy import AlertContent, content_of
from threatroute.matchers.publication import routed
from threatroute.matchers.routing import expired_keys
from threatroute.record import indicator_key
from threatroute.registry import Recipient
from threatroute.streams.config import Config
from threatroute.streams.runtime import heap
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

# the feedback rules' own changelogs, co-partitioned with the input (JSON values: the rules
# hold them, typed, in FeedbackRouting; the tables only restore them)
RULE_TABLES = (topics.MATCH_VERDICTS, topics.MATCH_WATCH, topics.MATCH_TRUST)

log = logging.getLogger(__name__)
NOTIFYING = tuple(a.value for a in Action if a.notifies)  # actions that send an alert


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
        heap.freeze()
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
    subscription = (topics.ENRICHED, topics.MATCH_FEEDBACK)
    exactly_once = True
    dead_letter_topic = topics.INVALID
    # the indicator contract is checked in `route`: match.feedback carries reports, not
    # indicators, so the loop's one per-stage check cannot apply to both inputs
    check = None

    def __init__(self, config: Config, metrics: Any = None, instance: str | None = None,
                 batch_size: int = 2000, clock: Clock = utc_now) -> None:
        # metrics: a Metrics for the feedback rules' figures (the loop counts the rest)
        self.config, self.clock, self.instance = config, clock, instance
        self.metrics = metrics if hasattr(metrics, "feedback_rules") else None
        self.batch_size = batch_size
        self.policy = DedupPolicy(timedelta(hours=config.dedup_window_hours),
                                  timedelta(hours=config.renotify_hours))
        self.routing = Routing(config)
        self.states: Table[AlertState] = Table(topics.MATCH_STATE, AlertState.from_json,
                                               AlertState.to_json)
        self.rule_tables: list[Table[Any]] = [Table(t, _json) for t in RULE_TABLES]
        self.tables = Tables(config, [self.states, *self.rule_tables])
        self.tables.check_partitions([topics.ENRICHED, topics.MATCH_FEEDBACK])
        self.counts: Counter[str] = Counter()  # actions taken, over committed batches
        self.registry = registry_view(config, self.routing.rebuild)
        self.remediations: CompactedView[str] = CompactedView(config, topics.STATUS,
                                                              remediation_fold())
        self.acting = FeedbackRouting(config.rules, config.rules.suppression_list())
        # every worker learns every feed's trust from all partitions' counts
        self.trust_view: CompactedView[Any] = CompactedView(
            config, topics.MATCH_TRUST, json_fold(_json),
            lambda rows: self.acting.learn(dict(rows)))
        self._events = Counter(self.acting.events)
        # bounded state: rows past their windows go every [state] expiry_seconds
        self.periodic = (Periodic(config.rules.state.every.total_seconds(), self.expire),
                         Periodic(config.rules.escalation_tick.total_seconds(), self.escalate))

    def start(self) -> None:
        self.registry.start()
        self.remediations.start()
        self.trust_view.start()

    def assigned(self, partitions: list[tuple[str, int]]) -> None:
        # both inputs bring the same partition numbers; restore each once
        new = sorted({p for _, p in partitions} - self.tables.owned)
        self.tables.assign(new)
        verdicts, watched, trust = self.rule_tables
        for p in new:
            self.acting.restore(p, verdicts.partition(p), watched.partition(p),
                                {v["feed"]: v for v in trust.partition(p).values()
                                 if isinstance(v, dict) and v.get("feed")})
            for table in self.rule_tables:  # FeedbackRouting holds them from now on
                with table.lock:
                    table.rows[p] = {}

    def revoked(self, partitions: list[tuple[str, int]]) -> None:
        gone = {p for _, p in partitions}
        self.tables.revoke(gone)
        for p in gone:
            self.acting.drop(p)

    def process(self, inputs: list[Input], step: Step) -> None:
        for item in inputs:
            if item.topic == topics.MATCH_FEEDBACK:
                self.apply_feedback(item, step)
            else:
                self.route(item, step)
        self._count_events(step)

    def route(self, item: Input, step: Step) -> None:
        """Route one record: its alerts, ledger records and state changes go into `step`."""
        record = item.record
        reason = indicator_contract(record, len(item.raw), item.key)
        if reason:
            step.refuse(item.raw, reason, origin=item)
            return
        try:
            # our stages always key by indicator key; a record produced by hand may lack one
            key = item.key.decode() if item.key else indicator_key(record)
            routed = self.acting.route(item.partition, record, key, self.routing.index,
                                       self.states.partition(item.partition),
                                       self.remediations.get, step.now, self.policy)
        except Exception as exc:  # bad input costs one record, never the stage
            step.refuse(item.raw, f"match failed: {type(exc).__name__}: {exc}", origin=item)
            return
        self.carry(routed.emits, step)
        step.counts.update(routed.counts)
        step.count("routed")
        stamps = record.get("time")
        observed = stamps.get("observation") if isinstance(stamps, dict) else None
        if isinstance(observed, str):
            step.observed.append(observed)

    def apply_feedback(self, item: Input, step: Step) -> None:
        """An accepted report (the feedback stage's): verdict, feed counts, reroute."""
        try:
            emits = self.acting.on_feedback(item.partition, item.record, self.routing.index,
                                            self.states.partition(item.partition),
                                            lambda rid: self.routing.formats.get(rid, "json"),
                                            step.now)
        except Exception as exc:  # ours, so never expected: keep it, say why, carry on
            step.refuse(item.raw, f"match feedback failed: {type(exc).__name__}: {exc}",
                        origin=item)
            return
        self.carry(emits, step)
        step.count("feedback")

    def escalate(self, step: Step) -> None:
        """Periodic: escalations due at the stage's clock; verdicts no longer needed go."""
        self.carry(self.acting.tick(step.now, self.routing.index, self.states.rows), step)
        self._count_events(step)

    def carry(self, emits: list[Emit], step: Step) -> None:
        """The pure decisions' records into the batch: states through their table, alerts
        rendered in the recipient's format, the rest as they are.

        The emits of one record share its indicator (the same object): its JSON, and each
        redaction of it a recipient's alert content asks for, is made once and embedded."""
        made: dict[tuple[int, AlertContent | None], bytes] = {}  # (id(indicator), content)

        def indicator_json(indicator: Any, content: AlertContent | None) -> bytes:
            key = (id(indicator), content)  # the objects live as long as `emits`
            found = made.get(key)
            if found is None:
                found = made[key] = json_bytes(indicator) if content is None \
                    else redacted_json(indicator, content)
            return found

        for e in emits:
            if e.topic == topics.MATCH_STATE and e.partition is not None:
                if e.value is None:
                    self.states.delete(e.partition, e.key)
                else:
                    self.states.put(e.partition, e.key, AlertState.from_json(dict(e.value)))
            elif e.alert and e.value is not None:
                rid = e.topic.removeprefix(topics.ALERTS_PREFIX)
                fmt = self.routing.formats.get(rid, "json")
                content = self.routing.contents.get(rid, PRIVATE)
                indicator = e.value.get("indicator")
                # to match.routed, keyed by recipient: the publish stage moves it to
                # alerts.<rid> (matchers/publication.py says why two hops)
                key, headers = routed(rid, e.key)
                step.send(Output(topics.MATCH_ROUTED, key, render(
                    e.value, fmt, content, indicator_json(indicator, content)
                    if fmt == "json" and isinstance(indicator, dict) else None),
                    headers=headers))
            elif e.value is not None and isinstance(e.value.get("indicator"), dict):
                step.send(Output(e.topic, e.key, _embedding(
                    e.value, indicator_json(e.value["indicator"], None)), e.partition,
                    counted=False))
            else:
                step.send(Output(e.topic, e.key, None if e.value is None else dict(e.value),
                                 e.partition, counted=False))

    def _count_events(self, step: Step) -> None:
        """Reroutes, escalations, corrections since the last call (FeedbackRouting counts
        them as it decides) go into the step's figures."""
        now = Counter(self.acting.events)
        step.counts.update(now - self._events)
        self._events = now

    def expire(self, step: Step) -> None:
        """Tombstone states not seen for longer than the dedup window (threatroute/expiry.py),
        and forget remediations no state can ask about any more."""
        for partition in list(self.tables.owned):
            for key in expired_keys(self.states.partition(partition), step.now, self.policy):
                self.states.delete(partition, key)
                step.count("expired")
        self.remediations.forget(
            lambda rows: stale_remediations(rows, step.now, self.policy.window))

    def table_sizes(self) -> dict[str, int]:
        """Rows held per table: dedup states, the rules' tables, remediations."""
        return {topics.MATCH_STATE: sum(map(len, self.states.rows.values())),
                **self.acting.sizes(), topics.STATUS: len(self.remediations)}

    def changes(self) -> list[Output]:
        return self.tables.changes()

    def committed(self, step: Step) -> None:
        self.counts.update(step.counts)
        if self.metrics is not None:
            self.metrics.feedback_rules(step.counts, {
                feed: trust.factor for feed, trust in self.acting.trust.feeds.items()})
            self.metrics.table_sizes(self.name, self.table_sizes())

    def close(self) -> None:
        self.tables.close()
        self.registry.stop()
        self.remediations.stop()
        self.trust_view.stop()


def _embedding(value: Mapping[str, Any], indicator: bytes) -> bytes | dict[str, Any]:
    """`value` as JSON with its indicator's JSON embedded as it is (the ledger and watch
    records of one indicator share it); as a dict for the loop if orjson refuses the rest."""
    try:
        return orjson.dumps({**value, "indicator": orjson.Fragment(indicator)})
    except TypeError:
        return dict(value)


def _json(value: Any) -> Any:
    """A changelog value as it is (JSON)."""
    return value

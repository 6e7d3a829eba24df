"""The feedback stage: check each recipient's status report against the alert ledger, keep
the current status per alert, and export outcome metrics from those tables.

On a secure broker each recipient posts to its own `feedback.<id>` (the ACLs let only it
write there, and nobody but the pipeline writes `feedback`); the stage subscribes to all of
them by pattern and moves each report, byte for byte, to the partition of `feedback` that
holds its alert, with the sender the topic named in a header. Who sent a report is that
topic, never what the record says: a report naming another recipient, or about an alert not
sent to its sender, is dead-lettered and not counted, so an alert id read elsewhere is no
capability. (In plaintext mode recipients post to `feedback` directly and a report speaks for
the recipient it names: there is no authentication to say otherwise.)

Every accepted report also goes to `match.feedback` (keyed by indicator key) for the match
stage to act on: verdicts, reroute, escalation, feed trust.

`feedback`, `alerts.ledger` and `alerts.status` are all keyed by alert id and have the same
partition count, so the worker that owns partition p of `feedback` holds partition p of the
ledger and of the status table (streams/runtime/tables.py) and has everything it needs to
judge a report, locally: threatroute.outcomes.judge_feedback, a pure function. A report a
foreign client put on another partition is forwarded to the right one first.

Each batch is one transaction (status updates, dead letters, offsets): a replayed batch can
never apply a status twice, and a duplicate report is rejected rather than double counted.

Bounded state: every `[state] expiry_seconds` the stage tombstones, in its transaction, the
ledger and status rows of alerts with no sighting and no report for `[state] alert_days`
(threatroute/expiry.py), so its share of both stays as large as that window holds. The match
stage writes a ledger row only while the alert's dedup state lives (the dedup window, which
the configuration keeps shorter), so a tombstone never races a live alert.
"""

from __future__ import annotations

import time
import zlib

from threatroute import topics
from threatroute.errors import InvalidRecord
from threatroute.expiry import expired_alerts
from threatroute.outcomes import (
    AlertFacts,
    AlertStatus,
    BaselineWindow,
    Snapshot,
    alert_facts,
    judge_feedback,
    match_report,
    summarise,
)
from threatroute.streams.config import Config
from threatroute.streams.runtime.metrics import Metrics
from threatroute.streams.runtime.step import (
    BaseStage,
    Clock,
    Input,
    Output,
    Periodic,
    Step,
    utc_now,
)
from threatroute.streams.runtime.tables import Table, Tables

SNAPSHOT_SECONDS = 5.0  # a scrape reuses a snapshot this young instead of recomputing
# alerts reach recipients only after the ledger commit: catching up before each batch means a
# fresh alert's feedback is never wrongly refused as unknown
CATCH_UP_SECONDS = 10.0
IDLE_CATCH_UP_SECONDS = 0.5  # best effort while idle: keeps the exported outcomes fresh


def partition_for(key: bytes, partitions: int) -> int:
    """librdkafka's default partitioner (consistent_random): CRC32 of the key."""
    return zlib.crc32(key) % partitions


def sender_of(topic: str) -> str | None:
    """The recipient whose `feedback.<id>` topic this is; None for a pipeline topic the
    subscription pattern also matches (feedback.invalid)."""
    return topics.recipient_of(topic, topics.FEEDBACK_PREFIX)


def stamped_sender(item: Input) -> str | None:
    """The sender a report moved from `feedback.<id>` to `feedback` carries (None: a report
    posted to `feedback` directly, which speaks for the recipient it names: plaintext mode)."""
    for name, value in item.headers:
        if name == topics.SENDER_HEADER:
            return value.decode(errors="replace")
    return None


class FeedbackStage(BaseStage):
    name = "feedback"
    group = topics.group_id("feedback")
    # the shared topic, co-partitioned with the ledger, and every recipient's own topic
    subscription = (topics.FEEDBACK, topics.FEEDBACK_PATTERN)
    exactly_once = True
    dead_letter_topic = topics.FEEDBACK_INVALID
    consumer_extra = {
        # each topic's partitions split evenly among the workers: a sticky assignor balances
        # the count over all subscribed topics and may leave a new worker only recipients'
        # one-partition topics, holding none of `feedback` (and so none of the tables)
        "partition.assignment.strategy": "range",
        # a new recipient's topic joins the pattern subscription within this long
        "topic.metadata.refresh.interval.ms": 30_000,
    }

    def __init__(self, config: Config, metrics: Metrics, instance: str | None = None,
                 batch_size: int = 500, clock: Clock = utc_now,
                 window: BaselineWindow | None = None) -> None:
        self.config, self.clock, self.instance = config, clock, instance
        self.batch_size = batch_size
        self.window = window or BaselineWindow()
        # both written by others too (match writes the ledger; `recipients forget` tombstones
        # rows of both), so both are followed
        self.ledger: Table[AlertFacts] = Table(topics.LEDGER, alert_facts, follow=True)
        self.statuses: Table[AlertStatus] = Table(topics.STATUS, AlertStatus.from_json,
                                                  AlertStatus.to_json, follow=True)
        self.tables = Tables(config, [self.ledger, self.statuses])
        self.partitions = self.tables.check_partitions([topics.FEEDBACK])
        self.metrics = metrics
        self._snapshot: tuple[float, Snapshot] | None = None
        metrics.add_outcomes(self.snapshot)
        self.windows = config.rules.state
        self.periodic = (Periodic(self.windows.every.total_seconds(), self.expire),)

    def snapshot(self) -> Snapshot:
        cached = self._snapshot
        if cached and time.monotonic() - cached[0] < SNAPSHOT_SECONDS:
            return cached[1]
        snap = summarise(self.ledger.values(), self.statuses.merged(), utc_now(), self.window)
        self._snapshot = (time.monotonic(), snap)
        return snap

    def assigned(self, partitions: list[tuple[str, int]]) -> None:
        self.tables.assign(p for t, p in partitions if t == topics.FEEDBACK)
        self._snapshot = None  # the next scrape counts what this worker owns now

    def revoked(self, partitions: list[tuple[str, int]]) -> None:
        self.tables.revoke(p for t, p in partitions if t == topics.FEEDBACK)
        # a cached snapshot would go on exporting the partitions' counts for up to
        # SNAPSHOT_SECONDS beside their new owner's: Grafana's sums would count them twice
        self._snapshot = None

    def catch_up(self, busy: bool) -> None:
        seconds = CATCH_UP_SECONDS if busy else IDLE_CATCH_UP_SECONDS
        self.tables.catch_up(deadline=time.monotonic() + seconds, required=busy)

    def process(self, inputs: list[Input], step: Step) -> None:
        for item in inputs:
            self.judge(item, step)

    def judge(self, item: Input, step: Step) -> None:
        """Judge one report: accepted (a status change), invalid (a dead letter), forwarded."""
        if item.topic != topics.FEEDBACK:
            sender = sender_of(item.topic)
            if sender is not None:  # not our own dead letters on feedback.invalid
                self.move(item, sender, step)
            return
        key, partition = item.key or b"", item.partition
        if key and partition_for(key, self.partitions) != partition:
            # judged when it comes round on its own partition
            step.send(Output(topics.FEEDBACK, key, item.raw,
                             partition_for(key, self.partitions), item.headers or None,
                             counted=False))
            step.count("forwarded")
            return
        try:
            status = judge_feedback(item.record, key.decode(errors="replace") or None,
                                    self.ledger.partition(partition),
                                    self.statuses.partition(partition), step.now,
                                    sender=stamped_sender(item))
        except InvalidRecord as exc:
            step.refuse(item.raw, exc.reason, exc.field, origin=item)
            return
        first = self.statuses.get(partition, status.alert_id) is None
        self.statuses.put(partition, status.alert_id, status, counted=True)
        step.count("accepted")
        step.send(Output(topics.MATCH_FEEDBACK, status.indicator_key,
                         match_report(status, self.ledger.get(partition, status.alert_id),
                                      first), counted=False))

    def move(self, item: Input, sender: str, step: Step) -> None:
        """A report on `feedback.<sender>` goes, unchanged, to the partition of `feedback` that
        holds its alert, with the sender the topic names (whatever headers it came with)."""
        alert_id = item.record.get("alert_id")
        key = alert_id.encode() if isinstance(alert_id, str) else item.key
        partition = partition_for(key, self.partitions) if key else 0
        step.send(Output(topics.FEEDBACK, key, item.raw, partition,
                         ((topics.SENDER_HEADER, sender.encode()),), counted=False))
        step.count("forwarded")

    def expire(self, step: Step) -> None:
        """Tombstone the ledger and status rows of alerts quiet for `[state] alert_days`."""
        for partition in sorted(self.tables.owned):
            ledger, statuses = self.ledger.partition(partition), self.statuses.partition(partition)
            for alert_id in expired_alerts(ledger, statuses, step.now, self.windows.alerts):
                if alert_id in ledger:
                    self.ledger.delete(partition, alert_id)
                if alert_id in statuses:
                    self.statuses.delete(partition, alert_id)
                step.count("expired")

    def table_sizes(self) -> dict[str, int]:
        return {topics.LEDGER: sum(map(len, self.ledger.rows.values())),
                topics.STATUS: sum(map(len, self.statuses.rows.values()))}

    def changes(self) -> list[Output]:
        return self.tables.changes()

    def committed(self, step: Step) -> None:
        self.metrics.table_sizes(self.name, self.table_sizes())
        self._snapshot = None
        self.metrics.feedback_records.labels("accepted").inc(step.counts["accepted"])
        # every refusal is an invalid report, including what the loop could not decode
        self.metrics.feedback_records.labels("invalid").inc(len(step.refused))

    def close(self) -> None:
        self.tables.close()

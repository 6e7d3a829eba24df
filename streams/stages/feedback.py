"""The feedback stage: check each recipient's status report against the alert ledger, keep
the current status per alert, and export outcome metrics from those tables.

Every accepted report also goes to `match.feedback` (keyed by indicator key) for the match
stage to act on: verdicts, reroute, escalation, feed trust.

`feedback`, `alerts.ledger` and `alerts.status` are all keyed by alert id and have the same
partition count, so the worker that owns partition p of `feedback` holds partition p of the
ledger and of the status table (streams/runtime/tables.py) and has everything it needs to
judge a report, locally: threatroute.outcomes.judge_feedback, a pure function. A feedback
record a foreign client put on another partition is forwarded to the right one first.

Each batch is one transaction (status updates, dead letters, offsets): a replayed batch can
never apply a status twice, and a duplicate report is rejected rather than double counted.
"""

from __future__ import annotations

import time
import zlib

from threatroute import topics
from threatroute.errors import InvalidRecord
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
from threatroute.streams.runtime.step import BaseStage, Clock, Input, Output, Step, utc_now
from threatroute.streams.runtime.tables import Table, Tables

SNAPSHOT_SECONDS = 5.0  # a scrape reuses a snapshot this young instead of recomputing
# alerts reach recipients only after the ledger commit: catching up before each batch means a
# fresh alert's feedback is never wrongly refused as unknown
CATCH_UP_SECONDS = 10.0
IDLE_CATCH_UP_SECONDS = 0.5  # best effort while idle: keeps the exported outcomes fresh


def partition_for(key: bytes, partitions: int) -> int:
    """librdkafka's default partitioner (consistent_random): CRC32 of the key."""
    return zlib.crc32(key) % partitions


class FeedbackStage(BaseStage):
    name = "feedback"
    group = topics.group_id("feedback")
    subscription = (topics.FEEDBACK,)
    exactly_once = True
    dead_letter_topic = topics.FEEDBACK_INVALID

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

    def snapshot(self) -> Snapshot:
        cached = self._snapshot
        if cached and time.monotonic() - cached[0] < SNAPSHOT_SECONDS:
            return cached[1]
        snap = summarise(self.ledger.values(), self.statuses.merged(), utc_now(), self.window)
        self._snapshot = (time.monotonic(), snap)
        return snap

    def assigned(self, partitions: list[tuple[str, int]]) -> None:
        self.tables.assign(p for t, p in partitions if t == topics.FEEDBACK)

    def revoked(self, partitions: list[tuple[str, int]]) -> None:
        self.tables.revoke(p for t, p in partitions if t == topics.FEEDBACK)

    def catch_up(self, busy: bool) -> None:
        seconds = CATCH_UP_SECONDS if busy else IDLE_CATCH_UP_SECONDS
        self.tables.catch_up(deadline=time.monotonic() + seconds, required=busy)

    def process(self, inputs: list[Input], step: Step) -> None:
        for item in inputs:
            self.judge(item, step)

    def judge(self, item: Input, step: Step) -> None:
        """Judge one report: accepted (a status change), invalid (a dead letter), forwarded."""
        key, partition = item.key or b"", item.partition
        if key and partition_for(key, self.partitions) != partition:
            # judged when it comes round on its own partition
            step.send(Output(topics.FEEDBACK, key, item.raw,
                             partition_for(key, self.partitions), counted=False))
            step.count("forwarded")
            return
        try:
            status = judge_feedback(item.record, key.decode(errors="replace") or None,
                                    self.ledger.partition(partition),
                                    self.statuses.partition(partition), step.now)
        except InvalidRecord as exc:
            step.refuse(item.raw, exc.reason, exc.field, origin=item)
            return
        first = self.statuses.get(partition, status.alert_id) is None
        self.statuses.put(partition, status.alert_id, status, counted=True)
        step.count("accepted")
        step.send(Output(topics.MATCH_FEEDBACK, status.indicator_key,
                         match_report(status, self.ledger.get(partition, status.alert_id),
                                      first), counted=False))

    def changes(self) -> list[Output]:
        return self.tables.changes()

    def committed(self, step: Step) -> None:
        self._snapshot = None
        self.metrics.feedback_records.labels("accepted").inc(step.counts["accepted"])
        # every refusal is an invalid report, including what the loop could not decode
        self.metrics.feedback_records.labels("invalid").inc(len(step.refused))

    def close(self) -> None:
        self.tables.close()

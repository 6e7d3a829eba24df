"""The one consume loop every stage runs: poll a batch, decode, run the stage's step, produce
what it returns, commit.

A stage (streams/runtime/step.py) never touches Kafka: it turns decoded inputs into a `Step`.
What differs between stages is passed in:

- a commit strategy (streams/kafka/transactions.py): `AfterAcknowledgement` (at-least-once:
  offsets committed once every output is acknowledged) or `InTransaction` (exactly-once: the
  batch's outputs, its tables' changelog records and its offsets in one Kafka transaction);
- a failure policy: what a refused input becomes (`DeadLetters`: its original bytes, the
  reason and where it came from, on the stage's dead-letter topic).

Nothing else in streams/ consumes for stage processing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from threatroute.deadletter import dead_letter
from threatroute.errors import ThreatrouteError
from threatroute.streams.kafka.clients import decode, encode, slot
from threatroute.streams.kafka.faults import fault_of, fault_of_error
from threatroute.streams.kafka.transactions import CommitStrategy
from threatroute.streams.logs import NOT_RATE_LIMITED
from threatroute.streams.runtime.faults import (
    Fault,
    Outage,
    Remedy,
    is_rebalance,
    jittered,
    remedy,
)
from threatroute.streams.runtime.metrics import StageMetrics
from threatroute.streams.runtime.step import (
    Input,
    Output,
    RecordCheck,
    Refused,
    Slot,
    Stage,
    Step,
    indicator_contract,
)

log = logging.getLogger(__name__)
# the longest a batch waits to fill while records are arriving (seconds): each consuming stage
# adds up to this much to raw-to-alert latency below full speed
BUSY_POLL = 0.05


@dataclass
class StageStats:
    """What one run of a stage did, for the CLI's closing summary (Prometheus gets the live
    figures from StageMetrics); read only after the stage's thread has ended."""

    consumed: int = 0
    produced: int = 0
    refused: int = 0
    batches: int = 0


# -- failure policies ----------------------------------------------------------------------
FailurePolicy = Callable[[Refused], Output]


@dataclass(frozen=True)
class DeadLetters:
    """A refused input becomes a dead letter on `topic`: original bytes, reason, field, and
    the topic, partition and offset it was read from."""

    topic: str
    stage: str

    def __call__(self, refused: Refused) -> Output:
        source = refused.origin
        origin = None if source is None else {
            "topic": source.topic, "partition": source.partition, "offset": source.offset}
        return Output(self.topic, None, dead_letter(refused.raw, refused.reason,
                                                    stage=self.stage, field=refused.field,
                                                    origin=origin), counted=False)


# -- the loop --------------------------------------------------------------------------------
def decode_batch(messages: list[Message], raw_input: bool = False,
                 check: RecordCheck | None = indicator_contract
                 ) -> tuple[list[Input], list[Refused]]:
    """The messages as JSON objects that pass `check` (a stage's input contract; None: any
    object), or (`raw_input`) the bytes alone for a stage that reads another format. The
    rest is refused, with where it came from."""
    inputs, refused = [], []
    for message in messages:
        raw, key = message.value() or b"", message.key()
        topic, partition = message.topic() or "", message.partition() or 0
        offset, stamp, reason = message.offset() or 0, message.timestamp()[1], None
        record: Any = {}
        if not raw_input:
            try:
                record = decode(raw)
                reason = check(record, len(raw), key) if check else None
                if reason is None and not isinstance(record, dict):
                    reason = f"expected a JSON object, got {type(record).__name__}"
            except (ValueError, UnicodeDecodeError) as exc:
                reason = f"not JSON: {exc}"
        if reason is None:
            headers = tuple((pair[0], _header_bytes(pair[1]))
                            for pair in message.headers() or [])
            inputs.append(Input(key, record, raw, topic, partition, offset, stamp, headers))
        else:
            refused.append(Refused(raw, reason[:300], None,
                                   Input(key, {}, raw, topic, partition, offset, stamp)))
    return inputs, refused


def next_offsets(messages: list[Message]) -> list[TopicPartition]:
    highest: dict[tuple[str, int], int] = {}
    for message in messages:
        where = slot(message)
        highest[where] = max(highest.get(where, -1), message.offset() or 0)
    return [TopicPartition(t, p, o + 1) for (t, p), o in highest.items()]


class StageFailed(ThreatrouteError):
    """Kafka refused the stage in a way no retry mends (authorization, configuration)."""


# SIGTERM to exit: the batch in flight (at most a few seconds of work) is finished and
# committed, the consumer leaves its group, the stage's readers stop; while Kafka answers
SHUTDOWN_SECONDS = 30.0
NOTICE_GRACE_SECONDS = 5.0  # consumer error events this soon after a recovery are stale
REBALANCE_REMIND_SECONDS = 60.0  # a batch fenced by a rebalance: said at most this often


class Recovery:
    """The loop's side of the fault decisions (streams/runtime/faults.py): it logs an outage
    once, backs off, and remembers what must happen before the next batch: the producer
    replaced (`recreate`), the open batch abandoned and the consumer and tables taken back to
    what is committed (`rewind`)."""

    def __init__(self, stage: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.stage, self.clock = stage, clock
        self.outage = Outage()
        self.attempt = 0
        self.rewind = self.recreate = False
        self.hook_fault: Fault | None = None  # a partition hook failed inside the poll
        self.broker_lost = False  # the consumer lost its broker since the last batch
        self._back_at = float("-inf")  # when Kafka last answered again after an outage
        self._rebalance_said = float("-inf")  # when a batch fenced by a rebalance was said

    @property
    def pending(self) -> bool:
        return self.rewind or self.recreate

    def failed(self, fault: Fault, in_flight: bool) -> float:
        """Take `fault` in; the seconds to wait before trying again. Raises StageFailed when
        nothing but an operator can mend it."""
        action = remedy(fault)
        if action is Remedy.GIVE_UP:
            raise StageFailed(f"{self.stage}: Kafka refused: {fault} (check the stage's "
                              "credentials, ACLs and configuration)")
        self.recreate |= action is Remedy.RECREATE
        self.rewind |= in_flight or self.recreate
        log.debug("%s: %s (batch in flight: %s)", self.stage, fault, in_flight)
        if is_rebalance(fault) and not self.outage.down:
            now = self.clock()
            if now - self._rebalance_said >= REBALANCE_REMIND_SECONDS:
                self._rebalance_said = now
                log.info("%s: the group rebalanced during a batch (%s); it is redone from the "
                         "last commit", self.stage, fault.name)
            return jittered(0)
        if self.outage.failed(self.clock()):
            log.warning("%s: Kafka failing (%s); retrying with backoff%s", self.stage, fault,
                        ", the open batch is aborted and redone from the last commit"
                        if self.rewind else "")
        delay = jittered(self.attempt)
        self.attempt += 1
        return delay

    def on_producer_error(self, error: KafkaError) -> None:
        """`error_cb` of the stage's producer: the brokers it reached are gone. A producer
        that lived through that (one made while the broker was away, before the consumer
        had a broker to lose) can hang in its next transactional call (librdkafka #5456):
        the next batch gets a new one. Said by the consumer, which sees the same outage."""
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.broker_lost = True

    def on_error(self, error: KafkaError) -> None:
        """librdkafka's `error_cb` for the stage's consumer (served inside its poll): the
        broker unreachable, all brokers down, and the like."""
        self.broker_lost = True
        self.noticed(fault_of_error(error))

    def noticed(self, fault: Fault) -> None:
        """An error event from the consumer: nothing to undo, librdkafka retries itself.
        Reports of connection attempts made before the broker was back arrive just after
        it answered again: they start no new outage."""
        now = self.clock()
        if now - self._back_at < NOTICE_GRACE_SECONDS:
            return
        if self.outage.failed(now):
            log.warning("%s: Kafka failing (%s); waiting for it", self.stage, fault)

    def healthy(self) -> None:
        self.attempt = 0
        back = self.outage.recovered(self.clock())
        if back:
            self._back_at = self.clock()
            # never held back by the log's rate limit: another loop of the stage, or this
            # one's previous outage, may have said the same words within the minute, and a
            # stage whose last word is "failing" reads as still down
            log.info("%s: Kafka answers again after %.1f s (%d failures); carrying on",
                     self.stage, *back, extra=NOT_RATE_LIMITED)

    def settle(self, consumer: Consumer, stage: Stage, commit: CommitStrategy) -> None:
        """Abort what is open (a new producer if needed), then rewind. Raises a Kafka error
        while Kafka does not answer; called again after the next backoff. Once it is done, an
        outage ends here if Kafka answers a probe: a batch that fails after it starts a new
        one, said again, instead of failing on unsaid under the old one."""
        commit.abort(recreate=self.recreate)
        self.recreate = False
        if self.rewind:
            rewind(consumer, stage)
            self.rewind = False
        if self.outage.down and _probe(consumer, stage):
            self.healthy()


def rewind(consumer: Consumer, stage: Stage) -> None:
    """Back to what is committed, as if the partitions had been revoked and assigned again:
    the stage's tables restored from their changelogs, the consumer at its group's committed
    offsets (what the abandoned batch consumed is read again)."""
    assignment = consumer.assignment()
    committed = consumer.committed(assignment, timeout=10) if assignment else []
    for tp in committed:
        if tp.error is not None:
            raise KafkaException(tp.error)
    slots = _slots(assignment)
    stage.revoked(slots)
    list(stage.changes())  # what the abandoned batch queued for its changelogs
    stage.assigned(slots)
    for tp in committed:
        offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        # not fetched yet: it starts from the committed offset anyway
        with contextlib.suppress(KafkaException):
            consumer.seek(TopicPartition(tp.topic, tp.partition, offset))


def subscribe(consumer: Consumer, stage: Stage, metrics: StageMetrics | None,
              recovery: Recovery | None = None, commit: CommitStrategy | None = None,
              handed: dict[Slot, int] | None = None) -> None:
    def guarded(hook: Callable[[list[Slot]], None], partitions: list[TopicPartition]) -> None:
        # a hook that cannot reach Kafka (restoring a table) must not fail the poll: the loop
        # rewinds and runs the hooks again once Kafka answers
        try:
            hook(_slots(partitions))
        except Exception as exc:
            fault = fault_of(exc)
            if fault is None or recovery is None:
                raise
            recovery.hook_fault = fault

    def flushed(_slots: list[Slot]) -> None:
        if commit is not None:  # what the open commit holds is committed first
            commit.flush(consumer)

    def revoked(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
        guarded(flushed, partitions)  # if it fails, the loop aborts it and rewinds
        guarded(stage.revoked, partitions)
        if metrics:
            metrics.forget_partitions(partitions)
        if handed is not None:  # assigned again later: compared with the group's offset then
            for slot in _slots(partitions):
                handed.pop(slot, None)

    def assigned(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # restoring tables can take longer than a transaction may stay open: commit first
        guarded(flushed, partitions)
        guarded(stage.assigned, partitions)

    consumer.subscribe(list(stage.subscription), on_assign=assigned, on_revoke=revoked,
                       on_lost=revoked)


def _slots(partitions: list[TopicPartition]) -> list[Slot]:
    return [(tp.topic, tp.partition) for tp in partitions]


def run_stage(stage: Stage, consumer: Consumer, commit: CommitStrategy, failure: FailurePolicy,
              stop: threading.Event, stats: StageStats | None = None, batch_size: int = 2000,
              poll_timeout: float = 0.5, metrics: StageMetrics | None = None,
              recovery: Recovery | None = None) -> StageStats:
    """Run `stage` until `stop` is set; returns its stats. Never returns on bad input, nor
    when Kafka fails for a while (Recovery); raises StageFailed when only an operator can
    help.

    `consumer` is made but not yet subscribed; the loop subscribes it to `stage.subscription` with
    the stage's partition hooks and closes it at the end. Records carrying the header
    `stage.skip_header` are committed past without processing (streams/runtime/chain.py).
    `recovery`: made by the caller when the consumer reports to its `on_error` (error_cb).

    A batch is committed with the next ones, within the commit interval (`commit`); the
    stage's `committed` and the figures follow once it is.
    """
    stats = stats or StageStats()
    due = [time.monotonic() + p.seconds for p in stage.periodic]
    recovery = recovery or Recovery(stage.name or stage.group)
    handed: dict[Slot, int] = {}  # the offsets the loop last gave the commit, per partition
    subscribe(consumer, stage, metrics, recovery, commit, handed)
    busy = False
    try:
        while not stop.is_set():
            waiting = commit.due()  # an open commit: poll no longer than until it is due
            in_flight = waiting is not None  # its batches are redone if anything fails
            try:
                if recovery.pending:
                    recovery.settle(consumer, stage, commit)
                    waiting, in_flight = None, False
                # librdkafka's batch consume waits until the batch is full or the timeout:
                # idle, the first record is taken at once; busy, a batch waits at most
                # BUSY_POLL
                size, wait = (batch_size, min(BUSY_POLL, poll_timeout)) if busy \
                    else (1, poll_timeout)
                messages = [m for m in consumer.consume(
                    num_messages=size, timeout=wait if waiting is None else min(waiting, wait))
                    if not _is_error(m, recovery)]
                busy = bool(messages)
                if recovery.hook_fault is not None:  # tables not restored: redo from commit
                    hook_fault, recovery.hook_fault = recovery.hook_fault, None
                    stop.wait(recovery.failed(hook_fault, in_flight=True))
                    continue
                in_flight = in_flight or bool(messages)
                ticking = [i for i, at in enumerate(due) if time.monotonic() >= at]
                if not messages and not ticking:
                    commit.flush(consumer)  # nothing more came: commit what is open
                    in_flight = False
                    _commit_past_markers(consumer, commit, handed)
                    stage.catch_up(busy=False)
                    if recovery.outage.down and _probe(consumer, stage):
                        recovery.healthy()
                    if metrics:  # idle is not stalled
                        metrics.idle()
                        metrics.lag(consumer)
                    continue
                in_flight = True
                if recovery.broker_lost and stage.exactly_once:
                    # a producer that lived through the outage can hang in its next
                    # transactional call (librdkafka #5456): the batch gets a fresh one
                    recovery.broker_lost = False
                    if commit.due() is not None:
                        # batches of the open transaction went through that producer too:
                        # abandoned with it, and redone from the committed offsets
                        recovery.recreate = recovery.rewind = True
                        continue
                    commit.abort(recreate=True)
                if _run_batch(stage, consumer, commit, failure, messages, ticking, due, stats,
                              metrics, handed):
                    recovery.healthy()
            except Exception as exc:
                fault = fault_of(exc)
                if fault is None:
                    if in_flight:
                        _abandon(commit, recovery)
                    raise
                stop.wait(recovery.failed(fault, in_flight))
        _finish(commit, consumer, recovery)
    finally:
        if recovery.rewind:
            _abandon(commit, recovery)
        consumer.close()  # leaves the group at once so partitions move without a timeout
    return stats


def _run_batch(stage: Stage, consumer: Consumer, commit: CommitStrategy,
               failure: FailurePolicy, messages: list[Message], ticking: list[int],
               due: list[float], stats: StageStats, metrics: StageMetrics | None,
               handed: dict[Slot, int] | None = None) -> bool:
    """Process, produce and commit one batch; False if there was nothing to commit."""
    started = time.perf_counter()
    stage.catch_up(busy=True)
    step = Step(stage.clock())
    wanted = [m for m in messages if not _carried(m, stage.skip_header)] \
        if stage.skip_header else messages
    inputs, refused = decode_batch(wanted, stage.raw_input, stage.check)
    step.refused.extend(refused)
    if inputs:
        stage.process(inputs, step)
    for i in ticking:
        stage.periodic[i].run(step)
        due[i] = time.monotonic() + stage.periodic[i].seconds
    outputs = [*step.outputs, *stage.changes()]
    produced = sum(output.counted for output in outputs)
    outputs += map(failure, step.refused)
    if not messages and not outputs:
        return False  # periodic work that found nothing to do
    offsets = _past_markers(consumer, next_offsets(messages)) if messages \
        else _positions(consumer)
    commit.begin()
    for output in outputs:
        value = output.value
        commit.produce(output.topic, encode(value) if isinstance(value, dict) else value,
                       output.key, output.partition,
                       list(output.headers) if output.headers else None, output.timestamp)
    seconds = time.perf_counter() - started

    def done() -> None:  # once the batch is committed: the stage's accounts, the figures
        stage.committed(step)
        stats.consumed += len(messages)
        stats.produced += produced
        stats.refused += len(step.refused)
        stats.batches += 1 if messages else 0
        if metrics:
            metrics.batch(len(messages), produced, len(step.refused), seconds, step.observed)
            metrics.lag(consumer)

    commit.commit(consumer, offsets, done)
    if handed is not None:
        handed.update(((tp.topic, tp.partition), tp.offset) for tp in offsets)
    return True


def _finish(commit: CommitStrategy, consumer: Consumer, recovery: Recovery) -> None:
    """Stopping: commit what is open; if Kafka refuses, abandon it (redone by the next owner)."""
    if recovery.pending:
        return  # the open batches are abandoned below, in `finally`
    try:
        commit.flush(consumer)
    except Exception as exc:
        log.warning("%s: could not commit the open batches when stopping: %s",
                    recovery.stage, exc)
        _abandon(commit, recovery)


def _abandon(commit: CommitStrategy, recovery: Recovery) -> None:
    """Stopping with a batch open: abort it if Kafka answers (the next owner then restores at
    once); if it does not, the broker aborts it after the transaction timeout."""
    if recovery.outage.down and not recovery.recreate:
        return
    try:
        commit.abort()
    except Exception as exc:  # stopping anyway; the broker aborts it after its timeout
        log.warning("%s: could not abort the open batch: %s", recovery.stage, exc)


def _probe(consumer: Consumer, stage: Stage) -> bool:
    """Whether Kafka answers again, after an outage, while the stage has nothing to do."""
    try:
        assignment = consumer.assignment()
        if assignment:
            consumer.committed(assignment, timeout=5)
        else:
            consumer.list_topics(stage.dead_letter_topic or None, timeout=5)
        return True
    except KafkaException:
        return False


def _positions(consumer: Consumer) -> list[TopicPartition]:
    """Offsets for a batch without input (periodic work): the current positions, so the
    transaction still carries the group generation that fences a zombie worker."""
    try:
        return [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
    except KafkaException:
        return []


def _past_markers(consumer: Consumer, offsets: list[TopicPartition]) -> list[TopicPartition]:
    """The batch's next offsets, moved past the transaction markers that follow its last
    records where the consumer has already passed them (its position). Committing the offset
    after the last record instead leaves a group that read everything of a topic written in
    transactions (match.routed, match.feedback) one offset behind per partition, a lag that
    never drains. The position never passes a record not yet handed to the loop."""
    try:
        positions = {(tp.topic, tp.partition): tp.offset for tp in consumer.position(offsets)}
    except KafkaException:  # a rebalance in progress: the records' own offsets are right
        return offsets
    return [TopicPartition(tp.topic, tp.partition,
                           max(tp.offset, positions.get((tp.topic, tp.partition), -1)))
            for tp in offsets]


def _commit_past_markers(consumer: Consumer, commit: CommitStrategy,
                         handed: dict[Slot, int]) -> None:
    """Idle, with everything committed: where the consumer has moved past what the loop last
    committed on a partition, only transaction markers (or aborted records) lay between;
    commit that position (an offsets-only transaction for an exactly-once stage). Without
    it, a marker fetched after a batch's last record would leave the group one offset
    behind on that partition for good: a lag that never drains. A partition the loop has not
    committed since it was assigned is compared with the group's committed offset (asked
    once): a run before may have left it there."""
    try:
        assignment = consumer.assignment()
        unknown = [tp for tp in assignment if (tp.topic, tp.partition) not in handed]
        if unknown:
            handed.update(((tp.topic, tp.partition), tp.offset)
                          for tp in consumer.committed(unknown, timeout=5) if tp.error is None)
        positions = consumer.position([tp for tp in assignment
                                       if (tp.topic, tp.partition) in handed])
    except KafkaException:  # a rebalance in progress, Kafka away: asked again when next idle
        return
    ahead = [tp for tp in positions
             if tp.error is None and tp.offset > handed[(tp.topic, tp.partition)]]
    if not ahead:
        return
    commit.begin()
    commit.commit(consumer, ahead)
    commit.flush(consumer)
    handed.update(((tp.topic, tp.partition), tp.offset) for tp in ahead)


def _carried(message: Message, header: str) -> bool:
    headers = message.headers()  # a list of (name, value) pairs as consumed, or None
    return isinstance(headers, list) and any(name == header for name, _ in headers)


def _is_error(message: Message, recovery: Recovery) -> bool:
    error = message.error()
    if error is None:
        return False
    if error.fatal():  # only with static membership: another instance took our place
        raise StageFailed(f"{recovery.stage}: consumer failed: {error.str()}")
    if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
        # a pattern that matches no topic yet (no recipient has one), or metadata still
        # loading after a restart: the subscription picks the topics up when they exist
        log.debug("%s: %s", recovery.stage, error.str())
    else:
        recovery.noticed(fault_of_error(error))
    return True


def _header_bytes(value: str | bytes | None) -> bytes:
    return value.encode() if isinstance(value, str) else value or b""

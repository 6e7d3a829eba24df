"""What a stage is to the consume loop, and what it gives back: plain values, no Kafka.

A stage is a step from decoded inputs to a `Step` (records to produce, refusals, counts),
plus optional periodic work (`Periodic`), partition hooks for its tables, and the settings
the loop needs (group, topics, commit strategy, dead-letter topic). The loop
(streams/runtime/loop.py) does all the consuming, producing and committing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from threatroute.contract import check_key, check_record

Slot = tuple[str, int]  # (topic, partition)

Clock = Callable[[], datetime]
# a stage's input contract: why a decoded record (of `size` bytes, under `key`) is refused
RecordCheck = Callable[[Any, int, "bytes | None"], "str | None"]


def indicator_contract(record: Any, size: int, key: bytes | None) -> str | None:
    """Why a decoded indicator breaks the record contract (threatroute/contract.py), or None:
    what the transforms (and the next stage) assume. The check of every indicator stage."""
    return check_record(record, size) or check_key(key)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Output:
    """One record to produce. `value`: a dict is sent as JSON, bytes as they are (a rendered
    alert), None as a tombstone. `partition` pins it (a table's changelog row lives in the
    partition of the input it belongs to). `counted`: it is what the stage produces (records
    out in the metrics, "produced" in the summary), as opposed to bookkeeping. `timestamp`
    (ms): the record's Kafka timestamp, when it must keep one (a republished alert); None:
    the producer's clock."""

    topic: str
    key: str | bytes | None
    value: dict[str, Any] | bytes | None
    partition: int | None = None
    headers: tuple[tuple[str, bytes], ...] | None = None
    counted: bool = True
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class Input:
    """One decoded input record and where it came from."""

    key: bytes | None
    record: dict[str, Any]
    raw: bytes
    topic: str = ""
    partition: int = 0
    offset: int = 0
    timestamp_ms: int = 0  # the message's Kafka timestamp
    headers: tuple[tuple[str, bytes], ...] = ()  # the message's headers (None values: b"")


@dataclass(frozen=True, slots=True)
class Refused:
    """An input the stage refuses: the failure policy dead-letters it with its original bytes."""

    raw: bytes
    reason: str
    field: str | None = None
    origin: Input | None = None


@dataclass
class Step:
    """What a stage made of one batch (or one periodic run); the loop carries it to Kafka.

    Add to it, never produce: `send` outputs, `refuse` inputs, `count` events (the stage's own
    figures, read in `committed`), `observed` ingest times (latency metrics).
    """

    now: datetime
    outputs: list[Output] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    observed: list[str] = field(default_factory=list)

    def send(self, output: Output) -> None:
        self.outputs.append(output)

    def refuse(self, raw: bytes, reason: str, field: str | None = None,
               origin: Input | None = None) -> None:
        self.refused.append(Refused(raw, reason[:300], field, origin))

    def count(self, event: str, n: int = 1) -> None:
        self.counts[event] += n


@dataclass(frozen=True)
class Periodic:
    """Work a stage does every `seconds` (expiry, escalation), in a batch of its own when no
    input is waiting. `run(step)` adds to the step like `process`; `step.now` is the stage's
    clock, so a test moves time by moving the clock."""

    seconds: float
    run: Callable[[Step], None]


class BaseStage:
    """What the loop runs; every stage is one. The defaults: no tables, no periodic work.

    `subscription`: topic names, or regular expressions starting with ^ (Kafka's pattern
    subscription, e.g. every `feedback.<id>`). `exactly_once`: one transaction per batch
    (outputs, `changes()`, offsets) instead of offsets after acknowledgement.
    """

    name = ""
    group = ""
    subscription: Sequence[str] = ()
    exactly_once = False
    dead_letter_topic = ""
    clock: Clock = staticmethod(utc_now)
    periodic: Sequence[Periodic] = ()
    skip_header: str | None = None  # records carrying it are not this stage's to process
    raw_input = False  # the stage reads another format than JSON: inputs carry the bytes alone
    check: RecordCheck | None = None  # the contract its inputs hold (None: any JSON object)
    batch_size: int | None = None  # the stage's own limit on records per batch
    instance: str | None = None  # pins an exactly-once stage's transactional id
    consumer_extra: Mapping[str, Any] = {}  # librdkafka settings of the stage's own consumer

    def start(self) -> None:
        """Before the first poll (views it reads start here, not in __init__)."""

    def assigned(self, partitions: list[Slot]) -> None:
        """Input partitions arrived: restore their tables before their first record."""

    def revoked(self, partitions: list[Slot]) -> None:
        """Input partitions left (or were lost): drop their tables."""

    def catch_up(self, busy: bool) -> None:
        """Before each batch (busy) and while idle: follow tables others write."""

    def process(self, inputs: list[Input], step: Step) -> None:
        raise NotImplementedError

    def changes(self) -> Iterable[Output]:
        """The batch's table changes (changelog records), produced with its outputs."""
        return ()

    def committed(self, step: Step) -> None:
        """The batch is committed: the stage may now count what it did."""

    def close(self) -> None:
        """After the loop ends (the consumer is closed already)."""




Stage = BaseStage

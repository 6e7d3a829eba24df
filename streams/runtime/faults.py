"""What a stage does when Kafka fails it: pure decisions, no Kafka client.

The consume loop (streams/runtime/loop.py) turns every Kafka error into a `Fault` (librdkafka's
error name and flags) and asks `remedy` what to do:

- `RETRY`: the broker went away, a leader moved, a request timed out, a transaction became
  abortable, a rebalance fenced the batch. The batch is abandoned (its transaction aborted),
  the consumer goes back to the last committed offsets, the stage's tables back to what is
  committed, and the batch is redone once Kafka answers again, after `backoff`.
- `RECREATE`: the producer is fenced or in a fatal state (a zombie, or a transaction the broker
  aborted after its timeout): a new producer is made (init_transactions), then as RETRY.
- `GIVE_UP`: nothing a retry can mend (authorization, configuration, a record the broker
  refuses): the stage ends with a message saying so.

Anything not listed is retried: after a broker restart Kafka answers with a changing mix of
codes (NOT_LEADER_FOR_PARTITION, _TRANSPORT, _ALL_BROKERS_DOWN, _INCONSISTENT delivery
failures, UNKNOWN_TOPIC_OR_PART while metadata loads), and a stage that waits loses nothing.

`Outage` keeps the log to one warning when failures start and one line when Kafka is back. A
batch fenced by a rebalance of its group (`is_rebalance`) is redone without either: the group
changed, Kafka did not fail.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass


class Remedy(enum.Enum):
    RETRY = "retry"
    RECREATE = "recreate"
    GIVE_UP = "give up"


@dataclass(frozen=True)
class Fault:
    """A Kafka error as the decisions see it. `name`: librdkafka's error name (`_TRANSPORT`,
    `PRODUCER_FENCED`, ...); `fatal`: the client is unusable; `abortable`: the transaction
    must be aborted; `retriable`: the same call may succeed later."""

    name: str
    reason: str = ""
    retriable: bool = False
    fatal: bool = False
    abortable: bool = False

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}" if self.reason else self.name


# an operator has to act: credentials, ACLs, configuration, a record the broker refuses
GIVE_UP = frozenset({
    "TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED", "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    "DELEGATION_TOKEN_AUTHORIZATION_FAILED", "SASL_AUTHENTICATION_FAILED", "_AUTHENTICATION",
    "_INVALID_ARG", "INVALID_CONFIG", "_UNSUPPORTED_FEATURE", "UNSUPPORTED_VERSION",
    "MSG_SIZE_TOO_LARGE", "_MSG_SIZE_TOO_LARGE", "RECORD_LIST_TOO_LARGE", "INVALID_RECORD",
    "POLICY_VIOLATION",
})
# the producer cannot go on: another instance took its transactional id, or the broker
# aborted its transaction and bumped the epoch; a new producer rejoins
RECREATE = frozenset({
    "_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH", "_FATAL", "UNKNOWN_PRODUCER_ID",
    "INVALID_PRODUCER_ID_MAPPING", "OUT_OF_ORDER_SEQUENCE_NUMBER", "INVALID_TXN_STATE",
})


# the group moved on while a batch was open (a worker joined or left): the batch is redone,
# as for RETRY, but Kafka is not failing, so no outage is declared for it
REBALANCE = frozenset({
    "ILLEGAL_GENERATION", "REBALANCE_IN_PROGRESS", "UNKNOWN_MEMBER_ID", "FENCED_INSTANCE_ID",
})


def is_rebalance(fault: Fault) -> bool:
    return fault.name in REBALANCE and not fault.fatal


def remedy(fault: Fault) -> Remedy:
    """What the loop does about `fault` (see the module docstring)."""
    if fault.name in GIVE_UP:
        return Remedy.GIVE_UP
    if fault.fatal or fault.name in RECREATE:
        return Remedy.RECREATE
    return Remedy.RETRY


BACKOFF_FIRST = 0.5  # seconds before the first retry
BACKOFF_CAP = 10.0   # never more than this between two tries: the broker is back soon after


def backoff(attempt: int, first: float = BACKOFF_FIRST, cap: float = BACKOFF_CAP,
            jitter: float = 0.0) -> float:
    """Seconds to wait before retry number `attempt` (0-based): doubling from `first`, at most
    `cap`; `jitter` (0..1, e.g. random.random()) takes up to a quarter off, so workers that
    failed together do not retry in step."""
    delay = min(cap, first * 2 ** min(attempt, 32))
    return delay * (1 - 0.25 * jitter)


def jittered(attempt: int) -> float:
    return backoff(attempt, jitter=random.random())


@dataclass
class Outage:
    """One stretch of Kafka failures: says when to log, so an outage is two lines, not one
    per retry. `failed` is true for the first failure of a stretch (warn then) and again
    every `remind` seconds while it lasts; `recovered` gives the stretch's length and
    failure count once, at the first success after it."""

    remind: float = 300.0
    since: float | None = None
    failures: int = 0
    _said: float = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, now: float) -> bool:
        self.failures += 1
        if self.since is None:
            self.since, self._said = now, now
            return True
        if now - self._said >= self.remind:
            self._said = now
            return True
        return False

    def recovered(self, now: float) -> tuple[float, int] | None:
        if self.since is None:
            return None
        lasted, failures = now - self.since, self.failures
        self.since, self.failures = None, 0
        return lasted, failures

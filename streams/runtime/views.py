"""A live dict kept from a compacted topic by a background thread.

Used for the recipient registry and for alert remediation status: small tables every worker
needs whole, whatever partitions of its main input it owns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Message, TopicPartition

from threatroute.streams.config import Config
from threatroute.streams.kafka.clients import decode as decode_json
from threatroute.streams.kafka.clients import value_of
from threatroute.streams.kafka.faults import fault_of
from threatroute.streams.kafka.replay import batches, partitions_of, replay_consumer, until_end
from threatroute.streams.runtime.faults import Outage, Remedy, jittered, remedy

log = logging.getLogger(__name__)
V = TypeVar("V")


class CompactedView(Generic[V]):
    """Follows `topic` from its beginning; `fold(state, message)` applies one record and says
    whether it changed anything. `on_change(state)` runs once caught up, then after each batch
    of changes, on the view's thread: callers build what they need and swap it in atomically.
    """

    def __init__(self, config: Config, topic: str,
                 fold: Callable[[dict[str, V], Message], bool],
                 on_change: Callable[[Mapping[str, V]], None] | None = None) -> None:
        self._config, self.topic, self._fold = config, topic, fold
        self._on_change = on_change or (lambda state: None)
        self._stop = threading.Event()
        self.caught_up = threading.Event()  # read to the end once
        self.ready = threading.Event()      # ... and on_change has run on that state
        self.failed: BaseException | None = None
        self.state: dict[str, V] = {}
        self._lock = threading.Lock()  # folds (the view's thread) against `forget` (a stage's)
        self._thread = threading.Thread(target=self._follow, name=f"view-{topic}", daemon=True)

    def start(self, timeout: float = 30.0) -> CompactedView[V]:
        """Start following; return once caught up and the first `on_change` has finished.

        `timeout` bounds reading to the end (a broker that does not answer). The first
        `on_change` (an index of 100k recipients, creating their topics) is waited for as
        long as it takes while the view's thread lives: a slow build is not a failure.
        """
        self._thread.start()
        if not self.caught_up.wait(timeout):
            raise TimeoutError(f"view of {self.topic} did not catch up in {timeout}s"
                               + (f": {self.failed}" if self.failed else ""))
        while not self.ready.wait(1.0):
            if not self._thread.is_alive():
                raise RuntimeError(f"view of {self.topic} stopped before it was ready: "
                                   f"{self.failed}")
        return self

    def get(self, key: str) -> V | None:
        return self.state.get(key)

    def __len__(self) -> int:
        return len(self.state)

    def forget(self, which: Callable[[Mapping[str, V]], list[str]]) -> int:
        """Drop the keys `which(state)` names (rows the reader no longer needs: the view
        keeps only what the topic says, so a key comes back only if its record changes).
        Returns how many went."""
        with self._lock:
            keys = which(self.state)
            for key in keys:
                self.state.pop(key, None)
        return len(keys)

    def _follow(self) -> None:
        consumer = replay_consumer(self._config)
        try:
            partitions = partitions_of(consumer, self.topic)
            if partitions is None:
                raise LookupError(f"no topic {self.topic}; run `threatroute topics create`")
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
            for message in until_end(consumer, [(self.topic, p) for p in partitions],
                                     stop=self._stop):
                with self._lock:
                    self._fold(self.state, message)
            if self._stop.is_set():
                return
            self.caught_up.set()
            self._on_change(self._copy())
            self.ready.set()
            retry = PendingChange(self.topic)
            for batch in batches(consumer, self._stop):
                with self._lock:
                    for message in batch:
                        retry.pending |= self._fold(self.state, message)
                if retry.due(time.monotonic()):
                    retry.attempt(lambda: self._on_change(self._copy()), time.monotonic())
        except BaseException as exc:  # a dead view must be loud: workers would use stale data
            self.failed = exc
            log.exception("view of %s stopped", self.topic)
            raise
        finally:
            consumer.close()

    def _copy(self) -> dict[str, V]:
        with self._lock:
            return dict(self.state)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class PendingChange:
    """A change not yet applied by `on_change`. Kafka failing it (creating a new recipient's
    topics while the broker is away) is retried with backoff, logged once per outage, instead
    of ending the view: its readers would otherwise keep the old index for good. Anything else
    (a bug) still ends the view loudly."""

    def __init__(self, topic: str) -> None:
        self.topic, self.pending = topic, False
        self.outage, self._tries, self._next = Outage(), 0, 0.0

    def due(self, now: float) -> bool:
        return self.pending and now >= self._next

    def attempt(self, apply: Callable[[], None], now: float) -> None:
        try:
            apply()
        except Exception as exc:
            fault = fault_of(exc)
            if fault is None or remedy(fault) is Remedy.GIVE_UP:
                raise
            if self.outage.failed(now):
                log.warning("view of %s: applying a change failed (%s); retrying", self.topic,
                            fault)
            self._next, self._tries = now + jittered(self._tries), self._tries + 1
            return
        self.pending, self._tries = False, 0
        if self.outage.recovered(now):
            log.info("view of %s: change applied after the failures", self.topic)


def json_fold(convert: Callable[[Any], V]) -> Callable[[dict[str, V], Message], bool]:
    """A fold for JSON values keyed by string; null values are tombstones."""

    def fold(state: dict[str, V], message: Message) -> bool:
        key = (message.key() or b"").decode(errors="replace")
        if message.value() is None:
            return state.pop(key, None) is not None
        try:
            value = convert(decode_json(value_of(message)))
        except Exception as exc:  # a bad value produced by hand: keep the last good state
            log.error("%s: ignoring bad value for %r at offset %s: %s", message.topic(), key,
                      message.offset(), exc)
            return False
        if state.get(key) == value:
            return False
        state[key] = value
        return True

    return fold

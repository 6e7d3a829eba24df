"""Partitioned tables backed by compacted changelog topics, for the stateful stages.

A `Table` holds, for each input partition p this worker owns, the rows of partition p of its
changelog topic (the changelog is co-partitioned with the stage's input: same partition count,
same keys). `Tables` restores a newly assigned partition of every table by reading the
changelogs to their end before the partition's first record is processed, and drops it on
revocation.

Two kinds of table:
- owned (`follow=False`): written only by this stage. `put` and `delete` change the row at
  once (the rest of the batch sees it) and queue its changelog record, which the loop
  produces inside the batch's transaction (`changes()`), so state and offsets commit together.
- followed (`follow=True`): written by another stage (the ledger, written by match and read by
  feedback). Its reader stays assigned and `catch_up` applies what was committed since.

Rows are read under `lock` by other threads (the metrics scrape); the stage's own thread
writes them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from threatroute.errors import ConfigError, InvalidRecord
from threatroute.streams.config import Config
from threatroute.streams.kafka.admin import admin
from threatroute.streams.kafka.clients import decode, slot
from threatroute.streams.kafka.replay import high_watermarks, replay_consumer, until_end
from threatroute.streams.kafka.transactions import RESTORE_SECONDS
from threatroute.streams.runtime.step import Output

log = logging.getLogger(__name__)
V = TypeVar("V")


class Table(Generic[V]):
    """One changelog-backed table. `load(json) -> V` reads a changelog value (raising
    ValueError or InvalidRecord for one to skip); `dump(V) -> dict` writes one."""

    def __init__(self, topic: str, load: Callable[[Any], V],
                 dump: Callable[[V], dict[str, Any]] | None = None, follow: bool = False
                 ) -> None:
        self.topic, self.load, self.dump, self.follow = topic, load, dump, follow
        self.rows: dict[int, dict[str, V]] = {}
        self.lock = threading.Lock()
        self._pending: list[Output] = []

    def partition(self, partition: int) -> dict[str, V]:
        """The rows of one owned partition (empty if not owned): read, never written."""
        return self.rows.get(partition, {})

    def get(self, partition: int, key: str) -> V | None:
        return self.rows.get(partition, {}).get(key)

    def put(self, partition: int, key: str, value: V, counted: bool = False) -> None:
        """Set a row now; its changelog record goes out with the batch (`counted`: it is
        what the stage produces, e.g. an accepted status)."""
        if self.dump is None:
            raise TypeError(f"{self.topic} is only read by this stage")
        with self.lock:
            self.rows.setdefault(partition, {})[key] = value
        self._pending.append(Output(self.topic, key, self.dump(value), partition,
                                    counted=counted))

    def delete(self, partition: int, key: str) -> None:
        with self.lock:
            self.rows.get(partition, {}).pop(key, None)
        self._pending.append(Output(self.topic, key, None, partition, counted=False))

    def changes(self) -> list[Output]:
        """The changelog records of the changes since the last call."""
        pending, self._pending = self._pending, []
        return pending

    def values(self) -> list[V]:
        """Every row of every owned partition (a copy, safe from any thread)."""
        with self.lock:
            return [value for rows in self.rows.values() for value in rows.values()]

    def merged(self) -> dict[str, V]:
        """Every row of every owned partition by key (a copy, safe from any thread)."""
        with self.lock:
            return {key: value for rows in self.rows.values() for key, value in rows.items()}

    def items(self) -> Iterator[tuple[int, str, V]]:
        """(partition, key, value) of every row; the stage's own thread only."""
        for partition, rows in self.rows.items():
            for key, value in rows.items():
                yield partition, key, value

    def apply(self, partition: int, message: Message) -> None:
        """Apply one changelog record read back (a null value deletes the row)."""
        key = (message.key() or b"").decode(errors="replace")
        value = message.value()
        with self.lock:
            rows = self.rows.get(partition)
            if rows is None:
                return
            if value is None:
                rows.pop(key, None)
                return
            try:
                rows[key] = self.load(decode(value))
            except (ValueError, TypeError, InvalidRecord) as exc:
                log.error("%s[%d]: unreadable record for %s: %s", self.topic, partition, key,
                          exc)


class Tables:
    """The tables of one stage, restored, followed and dropped together by partition."""

    def __init__(self, config: Config, tables: Iterable[Table[Any]]) -> None:
        self.config = config
        self.tables = {table.topic: table for table in tables}
        self.owned: set[int] = set()
        self._reader: Consumer | None = None
        self._ends: dict[tuple[str, int], int] = {}  # the reader's last EOF per partition

    def check_partitions(self, inputs: Iterable[str]) -> int:
        """The partition count shared by `inputs` and every table (ConfigError otherwise)."""
        found = admin(self.config).list_topics(timeout=30).topics
        names = [*inputs, *self.tables]
        counts = {t: len(found[t].partitions) if t in found else 0 for t in names}
        if not all(counts.values()) or len(set(counts.values())) != 1:
            raise ConfigError(f"{', '.join(names)} need the same partition count ({counts}); "
                              "run `threatroute topics create`")
        return next(iter(counts.values()))

    def _reader_of(self) -> Consumer:
        if self._reader is None:
            self._reader = replay_consumer(self.config)
        return self._reader

    def assign(self, partitions: Iterable[int]) -> None:
        """Restore the new partitions of every table: read their changelogs to the end."""
        new = sorted(set(partitions) - self.owned)
        if not new:
            return
        for table in self.tables.values():
            with table.lock:
                for p in new:
                    table.rows[p] = {}
        reader = self._reader_of()
        slots = [(topic, p) for topic in self.tables for p in new]
        reader.incremental_assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in slots])
        # a transaction left open by a killed worker holds the end back until the broker
        # aborts it (TRANSACTION_TIMEOUT_MS), so allow well beyond that
        for where in slots:
            self._ends.pop(where, None)
        try:
            self._read(until_end(reader, slots, deadline=time.monotonic() + RESTORE_SECONDS,
                                 ends=self._ends))
        except Exception:  # Kafka away: leave nothing half restored, the loop assigns again
            reader.incremental_unassign([TopicPartition(t, p) for t, p in slots])
            for table in self.tables.values():
                with table.lock:
                    for p in new:
                        table.rows.pop(p, None)
            raise
        # an owned table is only written by this worker from now on: stop reading it
        done = [TopicPartition(t, p) for t, p in slots if not self.tables[t].follow]
        if done:
            reader.incremental_unassign(done)
        self.owned.update(new)
        log.info("restored %s of partitions %s", ", ".join(
            f"{sum(len(t.partition(p)) for p in new)} rows of {name}"
            for name, t in self.tables.items()), new)

    def revoke(self, partitions: Iterable[int]) -> None:
        gone = sorted(set(partitions) & self.owned)
        if not gone:
            return
        for table in self.tables.values():
            with table.lock:
                for p in gone:
                    table.rows.pop(p, None)
        followed = [TopicPartition(t, p) for t, table in self.tables.items() if table.follow
                    for p in gone]
        if followed and self._reader is not None:
            self._reader.incremental_unassign(followed)
        self.owned.difference_update(gone)

    def catch_up(self, deadline: float, required: bool = True) -> None:
        """Apply everything committed to the followed tables' owned partitions up to now."""
        slots = [(t, p) for t, table in self.tables.items() if table.follow
                 for p in sorted(self.owned)]
        if not slots or self._reader is None:
            return
        reader = self._reader
        try:
            self._read(until_end(reader, slots, deadline=deadline, ends=self._ends,
                                 highs=high_watermarks(reader, slots), timeout=0.1))
        except TimeoutError:
            if required:
                log.warning("table catch-up hit its deadline; a transaction may still be open")

    def _read(self, messages: Iterator[Message]) -> None:
        for message in messages:
            topic, partition = slot(message)
            self.tables[topic].apply(partition, message)

    def changes(self) -> list[Output]:
        return [change for table in self.tables.values() for change in table.changes()]

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

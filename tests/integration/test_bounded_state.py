"""Bounded state on the real broker: indicators that go quiet leave the match stage's table,
the feedback stage's ledger and status share, and their changelogs.

The match and feedback stages run in this process on a clock the test moves, with short
windows (dedup 1 hour, alerts 2 hours of that clock; expiry every half second of real time).
A per-run recipient gets 300 indicators seen once and 30 that keep being seen. Once the
windows pass, the tables hold the 30 active ones again (the stages' `threatroute_table_rows`
gauge and the tables themselves), the compacted changelogs read to their end hold only those
(tombstones for the rest), the broker's cleaner (the changelogs set to compact within
seconds, as a topic section of the configuration may say) removes the superseded records,
and a restarted match worker restores only the live rows.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from tests.integration.conftest import threatroute
from tests.integration.kafka_helpers import wait_drained
from threatroute import topics
from threatroute.expiry import StateWindows
from threatroute.record import indicator_key, normalise_indicator
from threatroute.streams.config import DEFAULT_CONFIG, load_config
from threatroute.streams.kafka.replay import replay_topic
from threatroute.streams.runtime.metrics import Metrics
from threatroute.streams.runtime.registry import import_registry
from threatroute.streams.runtime.supervisor import run_one
from threatroute.streams.stages.feedback import FeedbackStage
from threatroute.streams.stages.match import MatchStage

QUIET, ACTIVE = 300, 30
HOUR = timedelta(hours=1)
CHANGELOGS = (topics.MATCH_STATE, topics.LEDGER, topics.STATUS)
# compaction within seconds: segments roll after 2 s (at the next append), the cleaner takes
# any dirty log, tombstones stay readable 1 s after cleaning
COMPACT_NOW = {"segment_ms": 2000, "min_cleanable_dirty_ratio": 0.01,
               "delete_retention_ms": 1000}


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def wait_for(predicate, what: str, timeout: float = 120.0) -> None:
    # generous: it returns as soon as `predicate` holds; a loaded 2-core CI box needs the room
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not reached in {timeout}s")


def compacting_config(tmp_path) -> str:
    """The packaged configuration with the changelogs set to compact within seconds."""
    text = DEFAULT_CONFIG.read_text()
    for topic in CHANGELOGS:
        header = f'[topics."{topic}"]\n'
        assert header in text
        text = text.replace(header, header + "".join(
            f"{k} = {v}\n" for k, v in COMPACT_NOW.items()))
    path = tmp_path / "compacting.toml"
    path.write_text(text)
    return str(path)


def restore_topic_configs(bootstrap: str) -> None:
    """Back to the packaged settings (Kafka's defaults) for the rest of the session."""
    client = AdminClient({"bootstrap.servers": bootstrap})
    resources = [ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(k.replace("_", "."), "", incremental_operation=AlterConfigOpType.DELETE)
        for k in COMPACT_NOW]) for topic in CHANGELOGS]
    for future in client.incremental_alter_configs(resources).values():
        future.result(timeout=30)


def changelog(config, topic: str) -> tuple[list[str], dict[str, bytes]]:
    """(keys of the records read, live rows by key) of `topic` read from its beginning to its
    end: a tombstone deletes its key's row."""
    live: dict[str, bytes] = {}
    read: list[str] = []

    def apply(message) -> None:
        key = (message.key() or b"").decode()
        read.append(key)
        if message.value() is None:
            live.pop(key, None)
        else:
            live[key] = message.value()

    assert replay_topic(config, topic, apply, timeout=60)
    return read, live


class World:
    def __init__(self, bootstrap: str, tmp_path) -> None:
        self.bootstrap = bootstrap
        self.rid = f"bs{uuid.uuid4().hex[:8]}"
        self.clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
        base = load_config(bootstrap=bootstrap)
        rules = replace(base.rules, state=StateWindows(every=timedelta(seconds=0.5),
                                                       alerts=2 * HOUR, watch=2 * HOUR))
        self.config = replace(base, rules=rules, dedup_window_hours=1.0, renotify_hours=100.0)
        import_registry(self.config, f"""
recipients:
  - id: {self.rid}
    name: Bounded state test
    owns: {{prefixes: [198.51.96.0/21]}}
    tlp_clearance: amber
""")
        self.metrics = Metrics()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.feedback = FeedbackStage(self.config, self.metrics, clock=self.clock)
        self.match = self.start_match()
        self.run(self.feedback)
        wait_drained(bootstrap, groups=("threatroute-match",))

    def start_match(self) -> MatchStage:
        match = MatchStage(self.config, self.metrics, clock=self.clock, batch_size=500)
        self.match_stop = threading.Event()
        self.match_thread = self.run(match, self.match_stop)
        return match

    def run(self, stage, stop: threading.Event | None = None) -> threading.Thread:
        thread = threading.Thread(target=run_one, args=(self.config, stage, stop or self.stop,
                                                        self.metrics), daemon=True)
        thread.start()
        self.threads.append(thread)
        return thread

    def close(self) -> None:
        self.stop.set()
        self.match_stop.set()
        for thread in self.threads:
            thread.join(60)
        for future in AdminClient({"bootstrap.servers": self.bootstrap}).delete_topics(
                [topics.alerts_topic(self.rid)], operation_timeout=60).values():
            with contextlib.suppress(KafkaException):
                future.result()

    def records(self, numbers: range) -> list[tuple[str, dict]]:
        """Indicators 198.51.96.0 + n, seen now (by the clock)."""
        out = []
        for n in numbers:
            record = normalise_indicator({
                "classification": {"type": "infected-system"}, "tlp": "GREEN",
                "source": {"ip": f"198.51.{96 + n // 256}.{n % 256}"},
                "feed": {"name": "bounded", "accuracy": 90},
                "time": {"source": self.clock.now.isoformat(),
                         "observation": self.clock.now.isoformat()}})
            out.append((indicator_key(record), record))
        return out

    def sight(self, numbers: range) -> None:
        before = self.match.counts["routed"]
        producer = Producer({"bootstrap.servers": self.bootstrap})
        for key, value in self.records(numbers):
            producer.produce(topics.ENRICHED, json.dumps(value).encode(), key.encode())
        assert producer.flush(30) == 0
        wait_for(lambda: self.match.counts["routed"] - before == len(numbers), "sightings routed")

    def mine(self, rows) -> int:
        """Rows of this run's recipient in a match table or changelog (keys `rid|key`)."""
        return sum(key.startswith(f"{self.rid}|") for key in rows)

    def states(self) -> int:
        return self.mine(key for _, key, _ in list(self.match.states.items()))

    def alerts(self, table) -> int:
        return sum(row.recipient == self.rid for row in table.values())

    def gauge(self, stage: str, table: str) -> float:
        return self.metrics.registry.get_sample_value(
            "threatroute_table_rows", {"stage": stage, "table": table}) or 0.0


@pytest.fixture
def world(kafka_env, bootstrap, tmp_path):
    threatroute("topics", "create", "--config", compacting_config(tmp_path), env=kafka_env)
    world = World(bootstrap, tmp_path)
    try:
        yield world
    finally:
        world.close()
        restore_topic_configs(bootstrap)


def test_quiet_indicators_leave_the_tables_and_the_changelogs(world):
    active = range(QUIET, QUIET + ACTIVE)
    world.sight(range(QUIET + ACTIVE))
    assert world.states() == QUIET + ACTIVE
    wait_for(lambda: world.alerts(world.feedback.ledger) == QUIET + ACTIVE, "ledger followed")
    # a few quiet alerts get a report: status rows that must go with their alerts
    answered = [row for row in world.feedback.ledger.values()
                if row.recipient == world.rid][:5]
    producer = Producer({"bootstrap.servers": world.bootstrap})
    for row in answered:
        producer.produce(topics.FEEDBACK, json.dumps({
            "alert_id": row.alert_id, "recipient": world.rid, "status": "acknowledged",
            "time": world.clock.now.isoformat()}).encode(), row.alert_id.encode())
    assert producer.flush(30) == 0
    wait_for(lambda: world.alerts(world.feedback.statuses) == len(answered), "reports accepted")
    # the gauges are set as each stage commits a batch
    wait_for(lambda: world.gauge("match", topics.MATCH_STATE) >= QUIET + ACTIVE,
             "match.state rows gauge up")
    wait_for(lambda: world.gauge("feedback", topics.LEDGER) >= QUIET + ACTIVE,
             "alerts.ledger rows gauge up")
    peak = world.gauge("match", topics.MATCH_STATE)
    ledger_peak = world.gauge("feedback", topics.LEDGER)

    # the active ones keep being seen; the quiet ones pass the dedup window (1 h)
    start = world.clock.now
    for offset in (timedelta(minutes=30), timedelta(minutes=61)):
        world.clock.now = start + offset
        world.sight(active)
    wait_for(lambda: world.states() == ACTIVE, "quiet dedup states expired")
    counts = Counter(world.match.counts)
    assert counts["expired"] >= QUIET
    wait_for(lambda: world.gauge("match", topics.MATCH_STATE) <= peak - QUIET,
             "match.state rows gauge back down")
    # the alerts' ledger and status rows stay until alert_days (2 h) of the clock
    assert world.alerts(world.feedback.ledger) == QUIET + ACTIVE
    world.clock.now = start + timedelta(minutes=121)
    world.sight(active)
    wait_for(lambda: world.alerts(world.feedback.ledger) == ACTIVE, "quiet ledger rows expired")
    wait_for(lambda: world.alerts(world.feedback.statuses) == 0, "their status rows expired")
    wait_for(lambda: world.gauge("feedback", topics.LEDGER) <= ledger_peak - QUIET,
             "alerts.ledger rows gauge back down")

    # the changelogs read to their end: only the active rows live
    read, live = changelog(world.config, topics.MATCH_STATE)
    assert world.mine(live) == ACTIVE
    written = world.mine(read)  # states written, updated and tombstoned, less any compacted
    ledger_live = changelog(world.config, topics.LEDGER)[1]
    assert sum(json.loads(v)["recipient"] == world.rid for v in ledger_live.values()) == ACTIVE
    status_live = changelog(world.config, topics.STATUS)[1]
    assert not any(json.loads(v)["recipient"] == world.rid for v in status_live.values())

    # the cleaner removes the superseded records (segments roll at the next append)
    def compacted() -> bool:
        world.clock.now += timedelta(seconds=1)
        world.sight(active)
        # what the active segment got since is at most these sightings
        return world.mine(changelog(world.config, topics.MATCH_STATE)[0]) < written

    wait_for(compacted, "match.state compacted", timeout=240)
    after = world.mine(changelog(world.config, topics.MATCH_STATE)[0])
    print(f"\nmatch.state rows {peak:.0f} -> {world.gauge('match', topics.MATCH_STATE):.0f}, "
          f"ledger rows {ledger_peak:.0f} -> {world.gauge('feedback', topics.LEDGER):.0f}; "
          f"this run's match.state records {written} -> {after} after compaction")

    # a restarted match worker restores only the live rows
    world.match_stop.set()
    world.match_thread.join(60)
    world.match = world.start_match()
    world.sight(active)
    assert world.states() == ACTIVE

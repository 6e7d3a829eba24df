"""Three brokers, two workers per stage, one broker and one worker lost mid-run.

The project's own command starts a three-node KRaft cluster on loopback (`broker start --nodes
3`); the pipeline topics get three replicas and min.insync.replicas 2. Two `threatroute run
<stage>` processes per stage share the work. While a world of indicators goes through, one
match worker is killed (-9) and the broker coordinating the match group is stopped. The run
finishes on the two brokers left; then every alert topic is read and counted per (recipient,
indicator) against a routing computed independently of the stages (routing_reference):
missing, unexpected, and more than one `new` alert, all zero. Recipients acknowledge 200
alerts, half of them while the broker is gone: each is applied once. Every group has rebalanced
(the surviving match worker owns every partition, no lag), the survivors stop cleanly, and the
stopped node rejoins (`broker start --node`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from tests import figures
from tests.integration import routing_reference
from tests.integration.conftest import ROOT, broker_env, threatroute
from tests.integration.test_matching_end_to_end import NETWORKS, SHARED, TLPS, TYPES
from tests.ports import free_port
from threatroute import topics
from threatroute.record import indicator_key, normalise_indicator
from threatroute.streams.config import DEFAULT_CONFIG, PIPELINE_TOPICS, load_config

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not at {SHARED}")

NODES = 3
SECTION = "cluster test (3 brokers, one stopped; a match worker killed)"


def free_ports(count: int = 2 * NODES) -> int:
    """The first of `count` consecutive free loopback ports: the nodes listen on base, base+2,
    base+4 and their controllers on base+1, base+3, base+5 (or THREATROUTE_CLUSTER_TEST_PORT)."""
    if os.environ.get("THREATROUTE_CLUSTER_TEST_PORT"):
        return int(os.environ["THREATROUTE_CLUSTER_TEST_PORT"])
    return free_port(count=count)
STAGES = {"asn": topics.RAW, "geo": topics.ASN, "hoster": topics.GEO,
          "match": topics.ENRICHED, "publish": topics.MATCH_ROUTED, "feedback": topics.FEEDBACK}
WORKERS = 2
PUBLISH_LOOPS = 2  # `run publish --workers 2`: each publish process is two group members
# the stages' inputs' partitions, as `topics create` makes them (the packaged configuration)
PARTITIONS = {t.name: t.partitions for t in load_config(DEFAULT_CONFIG).topics}
INDICATORS = 3_000
CHUNKS = 3
FEEDBACK = 200  # alerts acknowledged by their recipients


def registry() -> list[dict]:
    """30 recipients: nested prefix owners, ASN and domain owners, country, ASN and prefix
    subscribers, classification filters, confidence floors and TLP clearances."""
    r = [{"id": "gb-host", "name": "GB host", "owns": {"prefixes": ["81.2.69.0/24"]},
          "tlp_clearance": "amber"},
         {"id": "gb-nested", "name": "GB nested", "owns": {"prefixes": ["81.2.69.160/27"]},
          "tlp_clearance": "clear"},
         {"id": "us-host", "name": "US host", "owns": {"prefixes": ["216.160.83.0/24"]},
          "classifications": ["phishing", "c2-server"]},
         {"id": "se-asn", "name": "SE by ASN", "owns": {"asns": [29518]},
          "min_confidence": 50, "tlp_clearance": "amber+strict"},
         {"id": "cn-host", "name": "CN host", "owns": {"prefixes": ["175.16.0.0/16"]}},
         {"id": "cn-nested", "name": "CN nested", "owns": {"prefixes": ["175.16.199.0/25"]},
          "tlp_clearance": "amber"},
         {"id": "cn-nested-2", "name": "CN nested 2",
          "owns": {"prefixes": ["175.16.199.128/26"]}},
         {"id": "jp-v6", "name": "JP v6", "owns": {"prefixes": ["2001:218::/32"]}},
         {"id": "no-v6", "name": "NO v6", "owns": {"prefixes": ["2a02:cf40::/29"]},
          "tlp_clearance": "amber"},
         {"id": "no-v6-sub", "name": "NO v6 customer",
          "owns": {"prefixes": ["2a02:cf40:1::/48"]}}]
    for i in range(5):
        r.append({"id": f"domains-{i}", "name": f"Domain owner {i}",
                  "owns": {"domains": [f"d{i}.cluster.example"]},
                  "tlp_clearance": ["clear", "green", "amber", "amber+strict", "red"][i]})
    r.append({"id": "sub-domain", "name": "Sub-domain owner",
              "owns": {"domains": ["shop.d0.cluster.example"]}})
    for cc in ("GB", "US", "SE", "CN", "JP", "NO"):
        r.append({"id": f"cert-{cc.lower()}", "name": f"CERT {cc}",
                  "subscribe": {"countries": [cc]}, "tlp_clearance": "amber",
                  "min_confidence": 40})
    r += [{"id": "transit", "name": "Transit ISP", "subscribe": {"asns": [29518, 4837]},
           "classifications": ["ddos", "scanner", "infected-system"]},
          {"id": "watch", "name": "Prefix watcher",
           "subscribe": {"prefixes": ["81.2.69.128/25", "2001:218:100::/40"],
                         "domains": ["d3.cluster.example"]}, "tlp_clearance": "green"},
          {"id": "c2-hunter", "name": "C2 hunter", "subscribe": {"countries": ["US", "CN"]},
           "classifications": ["c2-server"], "tlp_clearance": "amber"},
          {"id": "phish-desk", "name": "Phishing desk",
           "subscribe": {"domains": ["cluster.example"]}, "classifications": ["phishing"]},
          {"id": "se-watch", "name": "SE watcher", "subscribe": {"prefixes": ["89.160.20.112/28"]},
           "min_confidence": 90},
          {"id": "v6-watch", "name": "v6 watcher",
           "subscribe": {"prefixes": ["2001:218::/32", "2a02:cf40::/29"]},
           "tlp_clearance": "amber"},
          {"id": "gb-clear", "name": "GB clear only", "subscribe": {"countries": ["GB"]},
           "tlp_clearance": "clear"},
          {"id": "cn-upstream", "name": "CN upstream", "subscribe": {"asns": [4837]},
           "tlp_clearance": "amber", "min_confidence": 60}]
    return r


def world(rng: random.Random, count: int) -> list[dict]:
    """`count` distinct indicators on networks the shared ASN and geo data know, a quarter of
    them URLs on the recipients' domains (half of those with a hosting address)."""
    out, seen = [], set()
    while len(out) < count:
        i = len(out)
        record = {"classification": {"type": rng.choice(TYPES)}, "tlp": rng.choice(TLPS),
                  "feed": {"name": "cluster", "accuracy": rng.choice([20, 45, 60, 90, 100])}}
        if i % 4 == 3:
            prefix = rng.choice(["www.", "shop.", "", "a.b."])
            host = f"{prefix}d{rng.randrange(5)}.cluster.example"
            record["source"] = {"url": f"http://{host}/p{i}"}
            if i % 8 == 3:
                record["source"]["ip"] = "81.2.69.142"
        else:
            net = ipaddress.ip_network(rng.choice(NETWORKS)[0])
            record["source"] = {"ip": str(net[rng.randrange(min(net.num_addresses, 1 << 16))])}
        key = indicator_key(normalise_indicator(record))
        if key not in seen:
            seen.add(key)
            out.append(record)
    return out


class Worker:
    """One `threatroute run <stage>` process, its output in a file (a pipe nobody reads would
    stall it)."""

    def __init__(self, stage: str, number: int, env: dict[str, str], logs: Path) -> None:
        self.stage, self.log = stage, logs / f"{stage}-{number}.log"
        env = {**env, "PYTHONFAULTHANDLER": "1"}  # SIGABRT prints every thread's stack
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "threatroute.streams.commands.cli", "run", stage,
                 "--metrics-port", "0",
                 *(["--workers", str(PUBLISH_LOOPS)] if stage == "publish" else []),
                 "--ipasn", str(SHARED / "asn" / "ipasn6_20151101.dat.gz"),
                 "--asnames", str(SHARED / "asn" / "asnames.json.gz"),
                 "--geoip", str(SHARED / "mmdb" / "GeoIP2-City-Test.mmdb")],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stacks(self) -> str:
        """Where a worker that does not move is stuck: its threads' stacks (it exits)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGABRT)
            self.process.wait(30)
        return f"{self.stage} worker (pid {self.process.pid}):\n{self.tail(80)}"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                print(f"did not stop on SIGTERM within 60 s: {self.stacks()}")
        return self.process.returncode


def members_of(processes: int) -> dict[str, int]:
    """Group members per stage with `processes` workers of each stage."""
    return {stage: processes * (PUBLISH_LOOPS if stage == "publish" else 1) for stage in STAGES}


def status(env: dict[str, str]) -> dict:
    return json.loads(threatroute("status", "--json", "--interval", "0.2", env=env).stdout)


def wait_for_groups(env: dict[str, str], members: dict[str, int], timeout: float,
                    drained: bool = False, workers: list[Worker] | None = None) -> dict:
    """The `status --json` seen once every stage group is stable with `members[stage]` members
    that together own every partition of its input (and, if `drained`, lag 0 everywhere).
    Fails at once if one of `workers` of those stages has exited."""
    deadline, seen = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        assert_running([w for w in workers or [] if w.stage in members])
        seen = status(env)
        if all(_settled(seen, stage, count, drained) for stage, count in members.items()):
            return seen
        time.sleep(2)
    stuck = [stage for stage, count in members.items()
             if seen and not _settled(seen, stage, count, drained)]
    raise AssertionError(f"groups did not settle in {timeout:.0f}s: "
                         + json.dumps(_summary(seen)) + "\n\n"
                         + "\n\n".join(w.stacks() for w in workers or [] if w.stage in stuck))


def assert_running(workers: list[Worker]) -> None:
    died = [w for w in workers if w.process.poll() is not None]
    assert not died, "\n\n".join(f"{w.stage} worker exited {w.process.returncode}:\n{w.tail()}"
                                 for w in died)


def _group(seen: dict, stage: str) -> dict:
    return next(g for g in seen["groups"] if g["stage"] == stage)


def _owned(group: dict, topic: str) -> set[str]:
    return {p for m in group["members"] for p in m["partitions"] if p.startswith(topic + "[")}


def _settled(seen: dict, stage: str, count: int, drained: bool) -> bool:
    """Lag is judged on the stage's input, which is written outside transactions: on a topic
    written in transactions (match.feedback) a group that has read everything still lags one
    offset per partition, the commit marker after its last record."""
    group = _group(seen, stage)
    every = {f"{STAGES[stage]}[{p}]" for p in range(PARTITIONS[STAGES[stage]])}
    lag = sum(row["lag"] for row in group["lag"] if row["topic"] == STAGES[stage])
    return (group["state"] == "stable" and len(group["members"]) == count
            and _owned(group, STAGES[stage]) == every and (not drained or lag == 0))


def _summary(seen: dict) -> dict:
    return {g["stage"]: {"state": g["state"], "members": [m["partitions"] for m in g["members"]],
                         "lag": g["total_lag"]} for g in seen.get("groups", [])}


def read_topics(bootstrap: str, names: list[str], timeout: float = 120.0
                ) -> list[tuple[str, bytes | None, dict]]:
    """Every committed record of `names` (read_committed: aborted transactions are not seen),
    until each partition has reported its end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4()}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "enable.partition.eof": True, "log_level": 3})
    try:
        metadata = consumer.list_topics(timeout=10).topics
        slots = [(n, p) for n in names for p in metadata[n].partitions]
        consumer.assign([TopicPartition(n, p, 0) for n, p in slots])
        records: list[tuple[str, bytes | None, dict]] = []
        ended: set[tuple[str, int]] = set()
        deadline = time.monotonic() + timeout
        while len(ended) < len(slots):
            assert time.monotonic() < deadline, f"not read to the end in {timeout:.0f}s"
            for m in consumer.consume(1000, timeout=0.5):
                if m.error() is None:
                    records.append((m.topic(), m.key(), json.loads(m.value())))
                elif m.error().code() == KafkaError._PARTITION_EOF:
                    ended.add((m.topic(), m.partition()))
        return records
    finally:
        consumer.close()


def coordinator_of(bootstrap: str, group: str) -> int:
    client = AdminClient({"bootstrap.servers": bootstrap})
    return client.describe_consumer_groups([group])[group].result().coordinator.id


def leader_counts(bootstrap: str) -> Counter[int]:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return Counter(p.leader for name, t in metadata.topics.items() if not name.startswith("__")
                   for p in t.partitions.values())


def replication_of(bootstrap: str, names: list[str], timeout: float = 60.0
                   ) -> dict[str, tuple[int, str]]:
    """(replicas of each partition, min.insync.replicas) per topic, as the cluster has them.

    A topic just created may be unknown for a moment to a broker other than the one that
    confirmed it (each applies the controller's metadata in its own time): asked again."""
    client = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
    deadline = time.monotonic() + timeout
    while True:
        try:
            metadata = client.list_topics(timeout=10).topics
            configs = {r.name: f.result() for r, f in client.describe_configs(resources).items()}
            return {n: (min(len(p.replicas) for p in metadata[n].partitions.values()),
                        configs[n]["min.insync.replicas"].value) for n in names}
        except (KafkaException, KeyError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_three_brokers_lose_one_and_a_worker_and_nothing_is_lost_or_doubled(tmp_path):
    port = free_ports()
    env = broker_env(tmp_path / "state", port)
    bootstrap = ",".join(f"127.0.0.1:{port + 2 * i}" for i in range(NODES))
    workers: list[Worker] = []
    try:
        started = threatroute("broker", "start", "--nodes", str(NODES), env=env, timeout=240)
        assert f"bootstrap {bootstrap}".encode() in started.stdout, started.stdout
        threatroute("topics", "create", env=env)
        names = list(PIPELINE_TOPICS)
        assert set(replication_of(bootstrap, names).values()) == {(3, "2")}

        recipients = registry()
        (tmp_path / "registry.yaml").write_text(yaml.safe_dump({"recipients": recipients}))
        threatroute("recipients", "import", str(tmp_path / "registry.yaml"), env=env)
        alert_topics = [topics.ALERTS_PREFIX + r["id"] for r in recipients]
        assert set(replication_of(bootstrap, alert_topics).values()) == {(3, "2")}

        # env names no bootstrap: the workers find all three brokers from the state directory
        for stage in STAGES:
            workers += [Worker(stage, n, env, tmp_path) for n in range(WORKERS)]
        wait_for_groups(env, members_of(WORKERS), timeout=180, workers=workers)

        indicators = world(random.Random(12), INDICATORS)
        chunks = [indicators[i::CHUNKS] for i in range(CHUNKS)]
        files = []
        for n, chunk in enumerate(chunks):
            files.append(tmp_path / f"world-{n}.jsonl")
            files[-1].write_text("".join(json.dumps(r) + "\n" for r in chunk))
        threatroute("ingest", "jsonl", str(files[0]), env=env)
        _await_alerts(bootstrap, alert_topics)
        # recipients acknowledge alerts of the first chunk, half before the loss, half during
        sent = sorted({(topic.removeprefix(topics.ALERTS_PREFIX), alert["alert_id"])
                       for topic, _, alert in read_topics(bootstrap, alert_topics)})
        answered = random.Random(5).sample(sent, min(len(sent), FEEDBACK))
        post_feedback(bootstrap, answered[:len(answered) // 2])

        # mid-run: the second chunk going in while a match worker dies and a broker leaves
        ingesting = subprocess.Popen(
            [sys.executable, "-m", "threatroute.streams.commands.cli", "ingest", "jsonl",
             str(files[1])], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        victim = next(w for w in workers if w.stage == "match")
        victim.process.kill()
        victim.process.wait(30)
        # the hardest broker to lose: the match group's coordinator, where the transactions
        # commit their offsets (it also leads a third of the partitions)
        lost = coordinator_of(bootstrap, topics.group_id("match"))
        led = leader_counts(bootstrap)[lost]
        threatroute("broker", "stop", "--node", str(lost), env=env)
        post_feedback(bootstrap, answered[len(answered) // 2:])
        _, err = ingesting.communicate(timeout=300)
        assert ingesting.returncode == 0, err.decode()[-3000:]
        threatroute("ingest", "jsonl", str(files[2]), env=env)  # on the two brokers left

        # the alert path (asn, geo, hoster, match) has rebalanced and drained
        members = {stage: n - (stage == "match") for stage, n in members_of(WORKERS).items()}
        alert_path = {stage: n for stage, n in members.items() if stage != "feedback"}
        settled = wait_for_groups(env, alert_path, timeout=240, drained=True,
                                  workers=[w for w in workers if w is not victim])
        print("groups after the loss:", json.dumps(_summary(settled)))
        assert len(settled["brokers"]) == 2

        # what must have been sent, from the enriched records and the reference rules
        enriched = {indicator_key(v): v for _, _, v in read_topics(bootstrap, [topics.ENRICHED])}
        assert len(enriched) == INDICATORS
        expected = {(rid, key) for key, record in enriched.items()
                    for rid in routing_reference.recipients(record, recipients)}
        assert len(expected) > INDICATORS // 2

        news: Counter[tuple[str, str]] = Counter()
        delivered = set()
        for topic, key, alert in read_topics(bootstrap, alert_topics):
            pair = (topic.removeprefix(topics.ALERTS_PREFIX), key.decode() if key else "")
            delivered.add(pair)
            news[pair] += alert.get("notification") == "new"
        missing = len(expected - {p for p, n in news.items() if n})
        unexpected = len(delivered - expected)
        doubled = sum(1 for n in news.values() if n > 1)
        figures.report(SECTION, (
            f"cluster run: {len(expected)} expected alerts, {sum(news.values())} new alerts "
            f"sent; missing {missing}, unexpected {unexpected}, more than one new {doubled} "
            f"(node {lost}, leader of {led} partitions and the match group's coordinator, "
            "stopped; a match worker killed)"))
        assert (missing, unexpected, doubled) == (0, 0, 0)

        # the offsets and transaction logs are replicated as the topics are
        internal = replication_of(bootstrap, ["__consumer_offsets", "__transaction_state"])
        assert set(internal.values()) == {(3, "2")}

        # the stopped node comes back into the cluster
        threatroute("broker", "start", "--node", str(lost), env=env, timeout=240)
        assert threatroute("broker", "status", env=env).returncode == 0

        # no surviving worker stopped on the way (the feedback stage too: it reads the ledger
        # and status tables through the loss), and every group has rebalanced and drained
        survivors = [w for w in workers if w is not victim]
        assert_running(survivors)
        wait_for_groups(env, members, timeout=120, drained=True, workers=survivors)

        # each acknowledgement applied once: one status each, none refused as a repeat
        statuses = Counter(v["alert_id"] for _, _, v in read_topics(bootstrap, [topics.STATUS])
                           if v.get("status") == "acknowledged")
        refused = read_topics(bootstrap, [topics.FEEDBACK_INVALID])
        once = sum(statuses[alert_id] == 1 for _, alert_id in answered)
        figures.report(SECTION, (
            f"cluster feedback: {len(answered)} acknowledgements posted, {once} applied once, "
            f"{sum(n > 1 for n in statuses.values())} more than once, {len(refused)} refused"))
        assert (once, len(refused)) == (len(answered), 0)

        # and every survivor stops cleanly on SIGTERM
        codes = {f"{w.stage}-{i}": w.stop() for i, w in enumerate(survivors)}
        assert set(codes.values()) == {0}, codes
    finally:
        codes = {f"{w.stage}-{i}": w.stop() for i, w in enumerate(workers)}
        threatroute("broker", "stop", env=env, check=False, timeout=120)
        print("workers' exit codes:", codes)


def post_feedback(bootstrap: str, alerts: list[tuple[str, str]]) -> None:
    """`acknowledged` for each (recipient, alert id), as `threatroute feedback` posts it."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "log_level": 3})
    for recipient, alert_id in alerts:
        record = {"alert_id": alert_id, "recipient": recipient, "status": "acknowledged",
                  "time": datetime.now(UTC).replace(microsecond=0).isoformat()}
        producer.produce(topics.FEEDBACK, json.dumps(record).encode(), alert_id.encode())
    assert producer.flush(120) == 0


def _await_alerts(bootstrap: str, alert_topics: list[str], timeout: float = 180.0) -> None:
    """Until the match stage has committed some alerts: the pipeline is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_topics(bootstrap, alert_topics[:3]):
            return
        time.sleep(1)
    raise AssertionError(f"no alert within {timeout:.0f}s")

"""Crash tests: every process of the pipeline killed (-9) at a random moment of one run, on a
world of 50,000 indicators and 1,000 recipients, and nothing lost or duplicated.

One run, on a broker of this test's own (1,000 alert topics would otherwise stay on the
shared test broker and slow every later restart of it): the indicators go onto
`indicators.raw` at once (as `threatroute ingest` writes them, without parsing a feed file),
then each stage runs as its own process (`threatroute run
asn|geo|hoster|match|publish|feedback`; publish with its [publish] workers loops), with
`threatroute deliver` pushing webhooks to a receiver on loopback and `threatroute gateway`
serving TAXII to clients that poll it. Each process is killed in turn (asn, geo, hoster,
match, publish, feedback, deliver, gateway) at a moment drawn from a seeded generator while
it has work, and started again at once; the run then drains.

What must come out is computed without the stages (tests/integration/crash_world.py: ASN and
country from the bare pyasn and maxminddb libraries, routing_reference's rules). Every alert
topic is read back and counted per (recipient, indicator): missing, unexpected, and more than
one `new` alert: all zero. The push and pull paths are checked on the recipients' side, and
the feedback stage's outputs (`alerts.status`, `match.feedback`) once per report.

THREATROUTE_CRASH_SEED=N repeats the kill moments of a printed seed.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from tests import figures
from tests.integration import crash_world
from tests.integration.conftest import ROOT, threatroute
from tests.integration.gateway_helpers import WebhookEndpoint, config_file, start, stop
from tests.ports import free_port
from threatroute import topics
from threatroute.benchworld import shared_data
from threatroute.matchers.received import read_alert
from threatroute.matchers.stix import EXTENSION_ID
from threatroute.streams.gateway.taxii import collection_id

RECIPIENTS, INDICATORS = 1_000, 50_000
WEBHOOK_RECIPIENTS, TAXII_RECIPIENTS = 8, 3
FEEDBACK_BEFORE_KILL, FEEDBACK_AFTER_KILL = 300, 100
# streams/delivery/runner.py: a webhook worker commits every WEBHOOK_BATCH alerts, so a crash
# re-sends at most that many to each receiver (at-least-once; X-Threatroute-Alert-Id is the
# receiver's idempotency key)
WEBHOOK_RESEND_BOUND = 50
HOOK_SECRET = "crash-test-hook-secret"
RECEIVER_SECONDS = 0.005
STAGES = ("asn", "geo", "hoster", "match", "publish", "feedback")
STAGE_INPUT = {"asn": topics.RAW, "geo": topics.ASN, "hoster": topics.GEO,
               "match": topics.ENRICHED, "publish": topics.MATCH_ROUTED,
               "feedback": topics.FEEDBACK}
DRAIN_SECONDS = 420
SECTION = "crash test (kill -9 of every process, one run)"


def say(line: str) -> None:
    figures.report(SECTION, line)

pytestmark = [pytest.mark.crash, pytest.mark.skipif(not (shared_data() / "asn").is_dir(),
                                reason=f"shared data not at {shared_data()}")]


@pytest.fixture(scope="module")
def crash_setup(tmp_path_factory) -> Iterator[tuple[dict[str, str], crash_world.CrashWorld]]:
    """A broker of this test's own on free loopback ports (removed afterwards), and the world,
    built and routed by the reference while the broker starts."""
    if os.environ.get("THREATROUTE_BOOTSTRAP"):
        pytest.skip("needs a broker of its own; THREATROUTE_BOOTSTRAP names a shared cluster")
    began = time.monotonic()
    built: list[crash_world.CrashWorld] = []

    def build() -> None:
        world = crash_world.build(ROOT / ".threatroute" / "crash-world", RECIPIENTS,
                                  INDICATORS, feed_tag=uuid.uuid4().hex[:6])
        crash_world.expect(world)
        built.append(world)

    builder = threading.Thread(target=build)
    builder.start()
    state = tmp_path_factory.mktemp("crash-broker")
    port = free_port()
    env = {**os.environ, "THREATROUTE_STATE": str(state), "THREATROUTE_BROKER_PORT": str(port),
           "THREATROUTE_CONTROLLER_PORT": str(free_port())}
    try:
        threatroute("broker", "start", env=env, timeout=600)
        env["THREATROUTE_BOOTSTRAP"] = f"127.0.0.1:{port}"
        threatroute("topics", "create", env=env)
        builder.join()
        assert built, "the world was not built (see the thread's exception above)"
        print(f"\nbroker started and world built in {time.monotonic() - began:.0f}s")
        yield env, built[0]
    finally:
        builder.join()
        threatroute("broker", "stop", env=env, check=False)
        shutil.rmtree(state, ignore_errors=True)


# -- the recipients' side ------------------------------------------------------------------------

class WebhookReceiver:
    """Accepts every POST after RECEIVER_SECONDS (a real endpoint's time: delivery stays busy,
    so its kill lands mid-batch); records the alert id of each (the idempotency key)."""

    def __init__(self) -> None:
        self.received: dict[str, list[str]] = {}  # recipient -> alert ids, in arrival order
        self.lock = threading.Lock()
        self.endpoint = WebhookEndpoint(self._answer)
        self.url = self.endpoint.url

    def _answer(self, headers: Message, _body: bytes) -> int:
        time.sleep(RECEIVER_SECONDS)
        with self.lock:
            self.received.setdefault(headers["X-Threatroute-Recipient"], []).append(
                headers["X-Threatroute-Alert-Id"])
        return 204

    def total(self) -> int:
        with self.lock:
            return sum(map(len, self.received.values()))

    def close(self) -> None:
        self.endpoint.close()


class TaxiiPoller:
    """A recipient's TAXII client: polls its collection with `added_after` the last
    X-TAXII-Date-Added-Last it got, and rides out the gateway going away."""

    def __init__(self, url: str, recipient: str, token: str) -> None:
        self.recipient, self.received, self.failures = recipient, [], 0
        self.endpoint = f"{url}/taxii2/alerts/collections/{collection_id(recipient)}/objects/"
        self.client = httpx.Client(headers={"Authorization": f"Bearer {token}",
                                            "Accept": "application/taxii+json;version=2.1"},
                                   timeout=10)
        self.last: str | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def poll(self) -> int:
        params = {"limit": "500", **({"added_after": self.last} if self.last else {})}
        response = self.client.get(self.endpoint, params=params)
        response.raise_for_status()
        objects = response.json().get("objects", [])
        self.received += [o["extensions"][EXTENSION_ID]["alert_id"] for o in objects
                          if o["type"] == "indicator"]
        if objects:
            self.last = response.headers["X-TAXII-Date-Added-Last"]
        return len(objects)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                if not self.poll():
                    self.stop.wait(0.3)
            except httpx.HTTPError:  # the gateway is down (killed) or starting again
                self.failures += 1
                self.stop.wait(0.3)


# -- Kafka probes -------------------------------------------------------------------------------

class Probe:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.client = AdminClient({"bootstrap.servers": bootstrap})

    def ends(self, topic: str) -> dict[int, int]:
        partitions = self.client.list_topics(topic, timeout=30).topics[topic].partitions
        futures = self.client.list_offsets(
            {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions},
            request_timeout=30)
        return {tp.partition: f.result().offset for tp, f in futures.items()}

    def positions(self, stage: str) -> dict[int, int]:
        """The offsets the stage's group has committed on its input, by partition."""
        topic, group = STAGE_INPUT[stage], topics.group_id(stage)
        partitions = self.client.list_topics(topic, timeout=30).topics[topic].partitions
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p)
                                                       for p in partitions])
        done = self.client.list_consumer_group_offsets([request])[group].result()
        return {tp.partition: max(tp.offset, 0) for tp in done.topic_partitions}

    def committed(self, stage: str) -> int:
        return sum(self.positions(stage).values())

    def lag(self, stage: str) -> int:
        positions = self.positions(stage)
        return sum(end - positions.get(p, 0) for p, end in self.ends(STAGE_INPUT[stage]).items())


def read_topics(bootstrap: str, names: list[str]) -> Iterator[tuple[str, object]]:
    """Every committed message of `names` from the start to the current end."""
    probe = Probe(bootstrap)
    ends = {(t, p): end for t in names for p, end in probe.ends(t).items()}
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4()}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "log_level": 3})
    try:
        consumer.assign([TopicPartition(t, p, 0) for (t, p), end in ends.items() if end])
        left = {tp for tp, end in ends.items() if end}
        deadline = time.monotonic() + 180
        while left and time.monotonic() < deadline:
            for message in consumer.consume(5000, timeout=0.5):
                if message.error():
                    continue
                yield message.topic(), message
                where = (message.topic(), message.partition())
                if message.offset() + 1 >= ends[where]:
                    left.discard(where)
            # transaction markers end a partition without a message: its position tells
            for tp in consumer.position([TopicPartition(t, p) for t, p in left]):
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    left.discard((tp.topic, tp.partition))
        assert not left, f"could not read to the end of {sorted(left)[:5]}"
    finally:
        consumer.close()


# -- the processes --------------------------------------------------------------------------------

class Process:
    """One `threatroute` process, started again after each kill (a log per start)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.args, self.env, self.logs = name, args, env, logs
        self.starts = 0
        self.popen: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.logs / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        self.popen = start(self.args, self.env, self.log)

    def kill(self) -> None:
        assert self.popen is not None and self.popen.poll() is None, \
            f"{self.name} was not running: {self.log.read_text()[-3000:]}"
        self.popen.kill()  # SIGKILL: no shutdown, no final commit or abort
        self.popen.wait(timeout=30)

    def check(self) -> None:
        assert self.popen is not None and self.popen.poll() is None, \
            f"{self.name} exited {self.popen and self.popen.returncode}: " \
            f"{self.log.read_text()[-3000:]}"

    def stop(self) -> None:
        if self.popen is not None:
            stop(self.popen, self.log)


def produce(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all",
                         "enable.idempotence": True})
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0


# -- the test -------------------------------------------------------------------------------------

def test_every_process_killed_mid_run_loses_and_duplicates_nothing(crash_setup, tmp_path):
    crash_env, world = crash_setup
    seed = int(os.environ.get("THREATROUTE_CRASH_SEED") or random.SystemRandom().randrange(1 << 31))
    say(f"seed {seed} (THREATROUTE_CRASH_SEED={seed} repeats the kill moments)")
    rng, bootstrap = random.Random(seed), crash_env["THREATROUTE_BOOTSTRAP"]
    began = time.monotonic()
    probe = Probe(bootstrap)

    pairs = world.pairs()
    assert len(world.registry) == RECIPIENTS and len(world.records) == INDICATORS
    assert len(pairs) > 20_000  # the world really routes most indicators, to many recipients
    by_count = sorted(world.registry, key=lambda r: -len(world.expected[r["id"]]))
    hooked = [r["id"] for r in by_count[:WEBHOOK_RECIPIENTS]]
    pulling = [r["id"] for r in by_count[WEBHOOK_RECIPIENTS:WEBHOOK_RECIPIENTS + TAXII_RECIPIENTS]]

    receiver = WebhookReceiver()
    for entry in world.registry:
        if entry["id"] in hooked:
            entry["delivery"] = {"webhook": {"url": receiver.url,
                                             "secret_env": "CRASH_HOOK_SECRET"}}
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump({"recipients": world.registry}))
    threatroute("recipients", "import", str(registry), env=crash_env, timeout=600)
    tokens = {}
    for rid in pulling:
        out = tmp_path / f"{rid}.token"
        threatroute("recipients", "token", rid, "--out", str(out), env=crash_env)
        tokens[rid] = out.read_text().strip()
    produce(bootstrap, topics.RAW, world.records)
    print(f"registry imported and indicators produced in {time.monotonic() - began:.0f}s: "
          f"{len(world.records):,} indicators, {len(world.registry):,} recipients, "
          f"{len(pairs):,} expected alerts")

    env = {**crash_env, "CRASH_HOOK_SECRET": HOOK_SECRET}
    data = ["--ipasn", str(world.world.ipasn), "--geoip", str(world.world.geoip)]
    if world.world.asnames:
        data += ["--asnames", str(world.world.asnames)]
    gateway_port = free_port()
    processes = {stage: Process(stage, ["run", stage, "--metrics-port", "0", *data], env, tmp_path)
                 for stage in STAGES}
    deliver_config = config_file(tmp_path / "deliver.toml", delivery={"backoff_seconds": 0.05})
    processes["deliver"] = Process(
        "deliver", ["deliver", "--metrics-port", "0", "--config", str(deliver_config)], env,
        tmp_path)
    processes["gateway"] = Process("gateway", [
        "gateway", "--listen", f"127.0.0.1:{gateway_port}", "--metrics-port", "0",
        "--config", str(config_file(tmp_path / "gateway.toml", gateway={
            "refresh_seconds": 0.2, "rate_limit": "100000/minute"}))], env, tmp_path)
    pollers = [TaxiiPoller(f"http://127.0.0.1:{gateway_port}", rid, tokens[rid]) for rid in pulling]
    started = time.monotonic()
    kills: list[str] = []

    def kill(name: str, describe: Callable[[], str]) -> None:
        """Kill, say what it left (measured while it is dead), start again."""
        processes[name].kill()
        note = describe()
        processes[name].start()
        kills.append(f"{name} at {time.monotonic() - started:.1f}s ({note})")
        say(f"killed {kills[-1]}")

    feedback_ids: list[tuple[str, str]] = []
    try:
        for process in processes.values():
            process.start()
        for poller in pollers:
            poller.thread.start()

        # the enrichment, match and publish stages: each killed once it has committed a random
        # share of the run (so a restart resumes from committed offsets and restored state)
        # while its input still has records behind (publish's input: the alerts)
        for stage in ("asn", "geo", "hoster", "match", "publish"):
            share, deadline = rng.uniform(0.05, 0.5), time.monotonic() + 180
            total = len(pairs) if stage == "publish" else INDICATORS
            done = behind = 0
            while time.monotonic() < deadline:
                done, behind = probe.committed(stage), probe.lag(stage)
                if done >= share * total and behind:
                    break
                time.sleep(0.1)
            assert done and behind > 0, f"{stage}: no mid-run moment to kill it at"
            kill(stage, lambda stage=stage: f"{probe.committed(stage):,} records committed, "
                                            f"{probe.lag(stage):,} behind")

        # feedback: reports on alerts already sent, the stage killed while judging them
        ledger = wait_for_ledger(bootstrap, FEEDBACK_BEFORE_KILL + FEEDBACK_AFTER_KILL)
        feedback_ids = ledger[:FEEDBACK_BEFORE_KILL + FEEDBACK_AFTER_KILL]
        # (killed as soon as a random number of them is on the topic; the lag measured after
        # the kill is what it had read or not yet read but not committed)
        first = rng.randrange(FEEDBACK_BEFORE_KILL // 3, FEEDBACK_BEFORE_KILL)
        send_feedback(bootstrap, feedback_ids[:first], 0.5)
        kill("feedback", lambda: f"{first} reports sent, {probe.lag('feedback')} of them not "
                                 "committed")
        send_feedback(bootstrap, feedback_ids[first:], 0.5)

        # deliver: killed while the webhooks are part-way through and it is posting (not
        # waiting for the match stage, which may still be restarting)
        want = sum(len(world.expected[rid]) for rid in hooked)
        deadline = time.monotonic() + 120
        while receiver.total() < want // 10 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(rng.uniform(0.0, 2.0))
        while time.monotonic() < deadline:
            before = receiver.total()
            time.sleep(0.1)
            if receiver.total() > before:
                break
        kill("deliver", lambda: f"{receiver.total():,} of {want:,} webhooks received")

        # gateway: killed while its clients poll
        time.sleep(rng.uniform(0.5, 3.0))
        for poller in pollers:
            poller.failures = 0  # from here: polls refused while the gateway is down
        kill("gateway", lambda: f"{sum(len(p.received) for p in pollers):,} alerts pulled "
                                "so far")
        down = time.monotonic()
        while not gateway_up(gateway_port):
            assert time.monotonic() - down < 120, "the gateway did not come back"
            time.sleep(0.2)
        say(f"gateway answering again {time.monotonic() - down:.1f}s after its kill")

        drain(probe, processes, receiver, hooked, pollers)
    finally:
        for poller in pollers:
            poller.stop.set()
        receiver.close()
        # every process is stopped even when one does not exit cleanly (the first is raised)
        failures = []
        for process in processes.values():
            try:
                process.stop()
            except AssertionError as exc:
                failures.append(f"{process.name} did not stop cleanly: {exc}")
        assert not failures, failures[0]
    tracebacks = {log.name: log.read_text() for log in sorted(tmp_path.glob("*.log"))
                  if "Traceback" in log.read_text()}
    assert not tracebacks, "tracebacks logged in " + ", ".join(tracebacks) + ": " + "\n".join(
        f"--- {name}:\n{text[max(0, text.index('Traceback') - 500):][:3000]}"
        for name, text in tracebacks.items())
    say(f"{len(world.records):,} indicators, {len(world.registry):,} recipients: run with "
        f"kills and drain {time.monotonic() - started:.0f}s")

    # every alert topic, per (recipient, indicator)
    new: Counter[tuple[str, str]] = Counter()
    other: Counter[str] = Counter()
    alert_ids: dict[str, set[str]] = {}
    names = [topics.alerts_topic(r["id"]) for r in world.registry]
    for topic, message in read_topics(bootstrap, names):
        rid = topic.removeprefix(topics.ALERTS_PREFIX)
        alert = read_alert(message.value(), message.key(), message.timestamp()[1]).alert
        alert_ids.setdefault(rid, set()).add(alert["alert_id"])
        if alert["notification"] == "new":
            new[(rid, message.key().decode())] += 1
        else:
            other[alert["notification"]] += 1
    missing = len(pairs - set(new))
    unexpected = len(set(new) - pairs)
    duplicated = sum(1 for n in new.values() if n > 1)
    # one run: the counts are those of the run in which every process was killed once
    say(f"crash {','.join(k.split()[0] for k in kills)}: alert topics per (recipient, "
        f"indicator): missing={missing} unexpected={unexpected} duplicated={duplicated} "
        f"({sum(new.values()):,} new alerts of {len(pairs):,} expected; other notifications "
        f"{sum(other.values())})")

    # push: what the receiver got, by distinct X-Threatroute-Alert-Id (at-least-once)
    got = {rid: receiver.received.get(rid, []) for rid in hooked}
    resent = {rid: len(ids) - len(set(ids)) for rid, ids in got.items()}
    say(f"crash deliver: webhooks of {len(hooked)} recipients by distinct alert id: "
        f"missing={sum(len(alert_ids.get(r, set()) - set(got[r])) for r in hooked)} "
        f"unexpected={sum(len(set(got[r]) - alert_ids.get(r, set())) for r in hooked)} "
        f"re-sent={sum(resent.values())} (at most {max(resent.values())} to one recipient; "
        f"at-least-once allows {WEBHOOK_RESEND_BOUND}, one batch, per kill)")
    # pull: what each TAXII client got across the gateway's kill
    pulled = {p.recipient: p.received for p in pollers}
    say(f"crash gateway: TAXII clients of {len(pollers)} recipients: "
        f"missing={sum(len(alert_ids.get(r, set()) - set(x)) for r, x in pulled.items())} "
        f"unexpected={sum(len(set(x) - alert_ids.get(r, set())) for r, x in pulled.items())} "
        f"duplicated={sum(len(x) - len(set(x)) for x in pulled.values())} "
        f"({sum(p.failures for p in pollers)} polls refused while it was down)")
    statuses, verdicts, refused = feedback_outputs(bootstrap, {a for a, _ in feedback_ids})
    say(f"crash feedback: {len(feedback_ids)} reports, {FEEDBACK_BEFORE_KILL} before the "
        f"kill: alerts.status {sum(statuses.values())} records for {len(statuses)} alerts, "
        f"match.feedback {sum(verdicts.values())} for {len(verdicts)}, refused {refused}")

    assert (missing, unexpected, duplicated) == (0, 0, 0)
    assert other == Counter()  # nothing here re-notifies, recurs, reroutes or escalates
    for rid in hooked:
        got = receiver.received.get(rid, [])
        assert set(got) == alert_ids.get(rid, set()) and alert_ids[rid], rid
        assert len(got) - len(set(got)) <= WEBHOOK_RESEND_BOUND, rid
    for poller in pollers:
        assert sorted(poller.received) == sorted(alert_ids[poller.recipient]), poller.recipient
    # the clients did meet the gateway's kill
    assert any(p.failures for p in pollers), "no poll was refused while the gateway was down"
    ids = {a for a, _ in feedback_ids}
    assert statuses == Counter({a: 1 for a in ids})  # exactly once each
    assert verdicts == Counter({a: 1 for a in ids})
    assert refused == 0


def gateway_up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/taxii2/", timeout=5).status_code == 401
    except httpx.HTTPError:
        return False


def wait_for_ledger(bootstrap: str, count: int, timeout: float = 180) -> list[tuple[str, str]]:
    """(alert id, recipient) of the first `count` alerts on the ledger, once there are so many."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found: dict[str, str] = {}
        for _, message in read_topics(bootstrap, [topics.LEDGER]):
            value = orjson.loads(message.value()) if message.value() else None
            if value and value.get("notification") == "new":
                found.setdefault(value["alert_id"], value["recipient"])
        if len(found) >= count:
            return list(found.items())
        time.sleep(1)
    raise AssertionError(f"fewer than {count} alerts on the ledger after {timeout}s")


def send_feedback(bootstrap: str, alerts: list[tuple[str, str]], seconds: float) -> None:
    """`acknowledged` for each alert (changes no routing), spread over `seconds`."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "enable.idempotence": True})
    for alert_id, recipient in alerts:
        record = {"alert_id": alert_id, "recipient": recipient, "status": "acknowledged",
                  "time": datetime.now(UTC).replace(microsecond=0).isoformat()}
        producer.produce(topics.FEEDBACK, orjson.dumps(record), alert_id)
        producer.poll(0)
        time.sleep(seconds / max(len(alerts), 1))
    assert producer.flush(60) == 0


def feedback_outputs(bootstrap: str, ids: set[str]) -> tuple[Counter, Counter, int]:
    """Records per alert id on alerts.status and match.feedback, and refusals of them."""
    statuses: Counter[str] = Counter()
    verdicts: Counter[str] = Counter()
    refused = 0
    for topic, message in read_topics(bootstrap, [topics.STATUS, topics.MATCH_FEEDBACK,
                                                  topics.FEEDBACK_INVALID]):
        value = orjson.loads(message.value()) if message.value() else {}
        if topic == topics.STATUS and message.key().decode() in ids:
            statuses[message.key().decode()] += 1
        elif topic == topics.MATCH_FEEDBACK and value.get("alert_id") in ids:
            verdicts[value["alert_id"]] += 1
        elif topic == topics.FEEDBACK_INVALID:
            refused += 1
    return statuses, verdicts, refused


def drain(probe: Probe, processes: dict[str, Process], receiver: WebhookReceiver,
          hooked: list[str], pollers: list[TaxiiPoller]) -> None:
    """Until every stage is at its input's end (in pipeline order), and the receiver and the
    TAXII clients have as many alerts as the topics hold."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        for process in processes.values():
            process.check()
        if all(probe.lag(stage) == 0 for stage in STAGES):  # in order: all() stops early
            sent: Counter[str] = Counter()
            for topic, _ in read_topics(probe.bootstrap, [
                    topics.alerts_topic(rid) for rid in hooked + [p.recipient for p in pollers]]):
                sent[topic.removeprefix(topics.ALERTS_PREFIX)] += 1
            if all(len(set(receiver.received.get(rid, []))) >= sent[rid] for rid in hooked) and \
                    all(len(set(p.received)) >= sent[p.recipient] for p in pollers):
                return
        time.sleep(1)
    lags = {stage: probe.lag(stage) for stage in STAGES}
    raise AssertionError(f"did not drain in {DRAIN_SECONDS}s: lag {lags}")

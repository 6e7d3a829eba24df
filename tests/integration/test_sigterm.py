"""SIGTERM to a stage mid-run: it finishes its batch, commits and exits 0 within
SHUTDOWN_SECONDS; started again it carries on where it stopped, so its output holds every
record exactly once.

The chain asn -> geo -> hoster -> match -> publish runs stage by stage, each as its own
process (`threatroute run STAGE`, small batches so there is work left when the signal comes;
publish with two workers, both stopped by the one signal), on this test's indicators; then
feedback, `run all`, `deliver` and `gateway` are stopped the same way.
"""

from __future__ import annotations

import base64
import json
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.integration import routing_reference
from tests.integration.conftest import ROOT, TEST_PORT, threatroute
from tests.integration.kafka_helpers import end_offsets, read_routed, read_since
from tests.integration.test_matching_end_to_end import SHARED, distinct, generated, registry
from threatroute.record import indicator_key
from threatroute.streams.runtime.loop import SHUTDOWN_SECONDS

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not at {SHARED}")
DATA = ["--ipasn", str(SHARED / "asn" / "ipasn6_20151101.dat.gz"),
        "--asnames", str(SHARED / "asn" / "asnames.json.gz"),
        "--geoip", str(SHARED / "mmdb" / "GeoIP2-City-Test.mmdb")]
CHAIN = [("asn", "indicators.raw", "indicators.asn"),
         ("geo", "indicators.asn", "indicators.geo"),
         ("hoster", "indicators.geo", "indicators.enriched"),
         ("match", "indicators.enriched", "alerts.ledger"),
         ("publish", "match.routed", "alerts.<recipient>")]
PUBLISHED = CHAIN[-1][2]


STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_process_left():
    """A failed test leaves no stage running (it would take the next test's records)."""
    yield
    for process in STARTED:
        if process.poll() is None:
            process.kill()
            process.wait()
    STARTED.clear()


def start(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "threatroute.streams.commands.cli",
                                *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=log.open("ab"))
    STARTED.append(process)
    return process


def terminate(process: subprocess.Popen[bytes], log: Path) -> float:
    """SIGTERM; the seconds until it exited, which must be 0 and within the bound."""
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=SHUTDOWN_SECONDS + 30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    took = time.monotonic() - sent
    text = log.read_text(errors="replace")
    assert process.returncode == 0, text[-3000:]
    assert took <= SHUTDOWN_SECONDS, f"took {took:.1f}s\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    return took


def ours(bootstrap: str, topic: str, since: dict[int, int], feed: str,
         rids: set[str] | None = None, idle: float = 3.0) -> Counter[str]:
    """Records per indicator key on `topic` since `since`, of this test's feed; on the ledger,
    per recipient and key, of this test's recipients (`rids`: the broker is shared, and
    other tests' subscribers rightly get this test's indicators too)."""
    found: Counter[str] = Counter()
    for _, value in read_since(bootstrap, topic, since, idle=idle):
        record = value
        if topic == "alerts.ledger":
            if value.get("recipient") not in (rids or ()):
                continue
            record = value.get("indicator", {})
        if isinstance(record, dict) and record.get("feed", {}).get("name") == feed:
            where = f"{value['recipient']} " if topic == "alerts.ledger" else ""
            found[where + indicator_key(record)] += 1
    return found


def any_alert(bootstrap: str, names: list[str]) -> bool:
    """Whether any of the topics `names` holds a committed record."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4()}",
                         "log_level": 3})
    try:
        return any(consumer.get_watermark_offsets(TopicPartition(name, 0), timeout=5)[1] > 0
                   for name in names)
    finally:
        consumer.close()


def wait_until(check, timeout: float = 120.0, every: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"not reached in {timeout}s: {check.__doc__ or check}")


def test_each_stage_of_the_chain_stops_mid_run_and_loses_nothing(kafka_env, bootstrap,
                                                                  tmp_path):
    run = uuid.uuid4().hex[:6]
    feed = f"e2e-{run}"
    recipients = registry(run)
    rids = {r["id"] for r in recipients}
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump({"recipients": recipients}))
    threatroute("recipients", "import", str(tmp_path / "registry.yaml"), env=kafka_env)
    unique = distinct(generated(random.Random(run), run, 3_000))
    since = {topic: end_offsets(bootstrap, topic) for _, topic, _ in CHAIN}
    since["alerts.ledger"] = end_offsets(bootstrap, "alerts.ledger")

    def published() -> Counter[tuple[str, str]]:
        """This test's recipients' alerts per (recipient, alert key): their topics are new."""
        found: Counter[tuple[str, str]] = Counter()
        for rid in rids:
            for key, _ in read_since(bootstrap, f"alerts.{rid}", None, idle=0.5, raw=True):
                found[(rid, (key or b"").decode())] += 1
        return found

    path = tmp_path / "indicators.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in unique))
    threatroute("ingest", "jsonl", str(path), env=kafka_env)

    mid_run: list[str] = []  # stages that had records of this test left at the signal
    expected: Counter[tuple[str, str]] = Counter()  # (recipient, key): found at match's turn
    for name, _source, sink in CHAIN:
        log = tmp_path / f"{name}.log"
        # publish is fast: one record per batch, so that the signal finds it busy
        workers = ["--workers", "2"] if name == "publish" else []
        process = start(kafka_env, log, "run", name, "--batch-size",
                        "1" if name == "publish" else "10", "--metrics-port", "0", *workers,
                        *DATA)
        # once the stage is producing, while most of this test's records are still to come
        # (the topics also hold other tests' records, the ledger other tests' recipients:
        # the match stage is slow enough to wait for this test's own there)
        if name == "match":
            wait_until(lambda: ours(bootstrap, "alerts.ledger", since["alerts.ledger"], feed,
                                    rids, idle=0.2), timeout=90, every=0.05)
        elif name == "publish":  # one consumer on every recipient's topic: quick to ask
            wait_until(lambda: any_alert(bootstrap, [f"alerts.{rid}" for rid in rids]),
                       timeout=90, every=0.01)
        else:
            wait_until(lambda sink=sink: read_since(bootstrap, sink, since[sink], expect=1,
                                                    timeout=1, idle=0.5) != [], timeout=90,
                       every=0.05)
        took = terminate(process, log)
        if name == "publish":
            stopped_at = sum(n for pair, n in published().items() if pair in expected)
            process = start(kafka_env, log, "run", name, "--metrics-port", "0", *workers, *DATA)
            want = len(expected)
            wait_until(lambda want=want, wanted=expected: sum(
                n for pair, n in published().items() if pair in wanted) >= want, timeout=150,
                every=1)
            time.sleep(2)  # a repeat would be here by now
            terminate(process, log)
            # (the recipients rightly get other tests' indicators too: only ours are counted)
            alerts = Counter({pair: n for pair, n in published().items() if pair in expected})
            missing = set(expected) - set(alerts)
            duplicated = [k for k, n in alerts.items() if n > 1]
            print(f"publish: SIGTERM after {stopped_at} of {len(expected)} alerts, exited in "
                  f"{took:.1f}s; then alerts missing {len(missing)}, duplicated "
                  f"{len(duplicated)}")
            assert (len(missing), len(duplicated)) == (0, 0)
            if stopped_at < len(expected):
                mid_run.append(name)
            continue
        stopped_at = sum(ours(bootstrap, sink, since[sink], feed, rids).values())
        # again, to the end: every record of the input exactly once on the output
        process = start(kafka_env, log, "run", name, "--metrics-port", "0", *DATA)
        want = len(unique) if name != "match" else None
        if name == "match":
            enriched = ours(bootstrap, "indicators.enriched", since["indicators.enriched"],
                            feed)
            assert len(enriched) == len(unique)
            by_key = {indicator_key(v): v for _, v in read_since(
                bootstrap, "indicators.enriched", since["indicators.enriched"], idle=3.0)
                if v.get("feed", {}).get("name") == feed}
            expected = Counter({(rid, key): 1 for key, record in by_key.items()
                                for rid in routing_reference.recipients(record, recipients)})
            want = len(expected)
        wait_until(lambda sink=sink, want=want: sum(
            ours(bootstrap, sink, since[sink], feed, rids).values()) >= want, timeout=150,
            every=1)
        time.sleep(2)  # a repeat would be here by now
        terminate(process, log)
        counts = ours(bootstrap, sink, since[sink], feed, rids)
        print(f"{name}: SIGTERM after {stopped_at} of {want} records, exited in {took:.1f}s; "
              f"then {sum(counts.values())} records, {len(counts)} keys")
        if stopped_at < want:
            mid_run.append(name)
        if name == "match":  # its alerts, on match.routed: the publish stage is not running
            routed = Counter(pair for pair in read_routed(bootstrap, since["match.routed"], rids)
                             if pair in expected)
            missing = set(expected) - set(routed)
            duplicated = [k for k, n in routed.items() if n > 1]
            print(f"match: alerts expected {len(expected)}: missing {len(missing)}, "
                  f"duplicated {len(duplicated)}")
            assert (len(missing), len(duplicated)) == (0, 0)
        else:
            assert len(counts) == len(unique)
            assert [k for k, n in counts.items() if n > 1] == []

    # on a loaded machine a fast stage may now and then finish before the signal lands
    print(f"stopped mid-run: {', '.join(mid_run)}")
    assert len(mid_run) >= 2, mid_run


def test_feedback_stops_mid_run_and_judges_each_report_once(kafka_env, bootstrap, tmp_path):
    """Reports about alerts nobody sent: each is dead-lettered, in the stage's transaction,
    exactly once across the stop."""
    run = uuid.uuid4().hex[:6]
    since = end_offsets(bootstrap, "feedback.invalid")
    producer = Producer({"bootstrap.servers": bootstrap})
    ids = [f"sigterm-{run}-{i}" for i in range(3_000)]
    for alert_id in ids:
        producer.produce("feedback", json.dumps({"alert_id": alert_id, "recipient": "nobody",
                                                 "status": "remediated"}).encode(),
                         alert_id.encode())
    assert producer.flush(30) == 0

    def judged() -> Counter[str]:
        found: Counter[str] = Counter()
        for _, letter in read_since(bootstrap, "feedback.invalid", since, idle=1.0):
            original = json.loads(base64.b64decode(letter["original"]))
            if str(original.get("alert_id", "")).startswith(f"sigterm-{run}-"):
                found[original["alert_id"]] += 1
        return found

    log = tmp_path / "feedback.log"
    process = start(kafka_env, log, "run", "feedback", "--batch-size", "20",
                    "--metrics-port", "0")
    wait_until(lambda: len(judged()) > 0, timeout=90)
    took = terminate(process, log)
    stopped_at = sum(judged().values())
    process = start(kafka_env, log, "run", "feedback", "--metrics-port", "0")
    wait_until(lambda: len(judged()) >= len(ids), timeout=120, every=1)
    time.sleep(2)
    terminate(process, log)
    counts = judged()
    print(f"feedback: SIGTERM after {stopped_at} of {len(ids)} reports, exited in {took:.1f}s;"
          f" then {sum(counts.values())} dead letters for {len(counts)} reports")
    assert stopped_at < len(ids)
    assert len(counts) == len(ids) and max(counts.values()) == 1


def test_run_all_deliver_and_gateway_stop_within_the_bound(kafka_env, bootstrap, tmp_path):
    run = uuid.uuid4().hex[:6]
    path = tmp_path / "indicators.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in generated(random.Random(run), run,
                                                                      2_000)))
    since = end_offsets(bootstrap, "indicators.enriched")
    threatroute("ingest", "jsonl", str(path), env=kafka_env)
    log = tmp_path / "all.log"
    process = start(kafka_env, log, "run", "all", "--batch-size", "50", "--metrics-port", "0",
                    *DATA)
    wait_until(lambda: read_since(bootstrap, "indicators.enriched", since, expect=1,
                                  timeout=1, idle=0.5) != [], timeout=90)
    took = terminate(process, log)
    print(f"run all: exited {took:.1f}s after SIGTERM")

    log = tmp_path / "deliver.log"
    process = start(kafka_env, log, "deliver", "--metrics-port", "0")
    time.sleep(8)  # following the registry, workers started
    print(f"deliver: exited {terminate(process, log):.1f}s after SIGTERM")

    log = tmp_path / "gateway.log"
    process = start(kafka_env, log, "gateway", "--listen", f"127.0.0.1:{TEST_PORT + 9}",
                    "--metrics-port", "0")
    time.sleep(8)
    print(f"gateway: exited {terminate(process, log):.1f}s after SIGTERM")

"""A recipient's whole flow on the secure broker, with every stage running (issue 9).

A reads its alerts with its own credentials and reports on them through `feedback.A`; a
report naming B, or about B's alert, is dead-lettered and not counted. A shares an indicator
on `contributions.A` that B owns: it reaches B with A's provenance. Contributions carrying
ownership fields, or over A's rate limit, are refused with a reason and counted.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import ROOT
from tests.integration.secure.conftest import A, B, SecureBroker, read_properties, registry_yaml
from tests.integration.secure.test_provisioning import _read
from tests.ports import free_port

RATE = {"per_minute": 6, "burst": 4}  # A may add 4 indicators at once, then 1 per 10 s


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class Pipeline:
    def __init__(self, secure: SecureBroker, env: dict[str, str], metrics_port: int) -> None:
        self.secure, self.env, self.metrics_port = secure, env, metrics_port

    def ingest(self, *records: dict[str, Any]) -> None:
        lines = "\n".join(json.dumps(r) for r in records).encode()
        self.secure.run("ingest", "jsonl", "-", input=lines, env=self.env)

    def send(self, recipient: str, topic: str, value: bytes, key: str | None = None) -> None:
        producer = Producer(self.secure.settings(recipient))
        producer.produce(topic, value, key)
        assert producer.flush(30) == 0

    def metric(self, name: str, **labels: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                      timeout=10).read().decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v
                                               for k, v in labels.items()):
                    total += sample.value
        return total

    def pipeline_rows(self, topic: str) -> list[tuple[str, Any]]:
        return _read({**read_properties(self.secure.pipeline_file), "log_level": "0"}, topic)


def await_record(settings: dict[str, Any], topic: str, predicate: Callable[[dict], bool],
                 group: str, timeout: float = 90) -> dict:
    consumer = Consumer({**settings, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            record = json.loads(message.value())
            if predicate(record):
                return record
        raise AssertionError(f"nothing matching on {topic} within {timeout}s")
    finally:
        consumer.close()


def await_until(check: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def pipeline(secure: SecureBroker, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Pipeline]:
    work = tmp_path_factory.mktemp("flow")
    config = (ROOT / "deploy" / "threatroute.toml").read_text()
    config = config.replace("per_minute = 600", f"per_minute = {RATE['per_minute']}")
    config = config.replace("burst = 1000", f"burst = {RATE['burst']}")
    (work / "threatroute.toml").write_text(config)
    env = {**secure.env, "THREATROUTE_CONFIG": str(work / "threatroute.toml")}
    (work / "registry.yaml").write_text(registry_yaml())
    secure.run("recipients", "import", str(work / "registry.yaml"), env=env)
    secure.run("data", "build", "--dest", str(work / "data"), env=env)
    port = free_port()
    log = work / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "threatroute.streams.commands.cli", "run", "all",
             "--metrics-port", str(port), "--ipasn", str(work / "data" / "ipasn.dat"),
             "--asnames", str(work / "data" / "asnames.json"),
             "--geoip", str(work / "data" / "demo-city.mmdb")],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield Pipeline(secure, env, port)
    finally:
        process.terminate()
        process.wait(60)
        secure.outputs.append(log.read_bytes())


def _original_alert_id(letter: dict) -> str | None:
    try:
        return json.loads(base64.b64decode(letter["original"])).get("alert_id")
    except (ValueError, AttributeError):
        return None


def _indicator(ip: str, port: int, **more: Any) -> dict[str, Any]:
    return {"classification": {"type": "c2-server"}, "source": {"ip": ip, "port": port},
            "tlp": "AMBER", "feed": {"name": "flow-test"}, **more}


def _alert_for(pipeline: Pipeline, recipient: str, ip: str, port: int) -> dict:
    return await_record(pipeline.secure.settings(recipient), f"alerts.{recipient}",
                        lambda a: (a.get("indicator") or {}).get("source", {}).get("ip") == ip
                        and a["indicator"]["source"].get("port") == port,
                        group=f"{recipient}.flow-{uuid.uuid4().hex[:8]}")


def _status_of(pipeline: Pipeline, alert_id: str) -> dict | None:
    rows = dict(pipeline.pipeline_rows("alerts.status"))
    return rows.get(alert_id)  # type: ignore[return-value]


def test_a_reads_its_alert_and_reports_on_it(pipeline: Pipeline) -> None:
    pipeline.ingest(_indicator("192.0.2.61", 4443))
    alert = _alert_for(pipeline, A, "192.0.2.61", 4443)
    report = {"alert_id": alert["alert_id"], "status": "acknowledged", "time": _now()}
    pipeline.send(A, f"feedback.{A}", json.dumps(report).encode(), alert["alert_id"])
    await_until(lambda: (_status_of(pipeline, alert["alert_id"]) or {}).get("status")
                == "acknowledged", what="A's report in alerts.status")
    assert _status_of(pipeline, alert["alert_id"])["recipient"] == A  # type: ignore[index]


def test_forged_feedback_is_dead_lettered_and_not_counted(pipeline: Pipeline) -> None:
    pipeline.ingest(_indicator("198.51.100.62", 4443), _indicator("192.0.2.62", 4443))
    theirs = _alert_for(pipeline, B, "198.51.100.62", 4443)
    mine = _alert_for(pipeline, A, "192.0.2.62", 4443)
    await_until(lambda: pipeline.metric("threatroute_feedback_records_total",
                                        outcome="accepted") >= 1, what="metrics")
    accepted = pipeline.metric("threatroute_feedback_records_total", outcome="accepted")
    invalid = pipeline.metric("threatroute_feedback_records_total", outcome="invalid")
    forged = [
        {"alert_id": theirs["alert_id"], "recipient": B, "status": "remediated"},  # names B
        {"alert_id": theirs["alert_id"], "recipient": A, "status": "remediated"},  # B's alert
        {"alert_id": theirs["alert_id"], "status": "false_positive"},               # B's alert
        {"alert_id": mine["alert_id"], "recipient": B, "status": "remediated"},    # names B
    ]
    for report in forged:
        pipeline.send(A, f"feedback.{A}", json.dumps({**report, "time": _now()}).encode(),
                      report["alert_id"])
    await_until(lambda: pipeline.metric("threatroute_feedback_records_total",
                                        outcome="invalid") >= invalid + len(forged),
                what="four refusals counted as invalid")
    assert pipeline.metric("threatroute_feedback_records_total", outcome="accepted") == accepted
    assert _status_of(pipeline, theirs["alert_id"]) is None
    assert _status_of(pipeline, mine["alert_id"]) is None
    # judged on `feedback`, where each report moved with the sender its topic named
    letters = [v for _, v in pipeline.pipeline_rows("feedback.invalid")
               if v.get("origin", {}).get("topic") in ("feedback", f"feedback.{A}")]
    reasons = [v["reason"] for v in letters if _original_alert_id(v)
               in (theirs["alert_id"], mine["alert_id"])]
    assert len(reasons) == len(forged)
    assert all(reason for reason in reasons)


def test_a_contribution_owned_by_b_reaches_b_with_a_as_its_source(pipeline: Pipeline) -> None:
    contribution = _indicator("198.51.100.77", 8080, feed={"name": "a-honeypot"})
    pipeline.send(A, f"contributions.{A}", json.dumps(contribution).encode())
    alert = _alert_for(pipeline, B, "198.51.100.77", 8080)
    indicator = alert["indicator"]
    assert indicator["feed"]["provider"] == A
    assert indicator["extra"]["contributor"]["id"] == A
    assert indicator["extra"]["owner"]["id"] == B
    assert indicator["tlp"] == "AMBER"
    kcat = pipeline.secure.kcat(B, "-C", "-t", f"alerts.{B}", "-e", "-q", "-f", "%s\n")
    assert alert["alert_id"].encode() in kcat.stdout


def test_bad_contributions_are_refused_with_a_reason_and_counted(pipeline: Pipeline) -> None:
    def count(outcome: str) -> float:
        return pipeline.metric("threatroute_contributions_total", recipient=A, outcome=outcome)

    before = {o: count(o) for o in ("accepted", "forbidden", "rate_limited", "invalid")}
    steering = _indicator("198.51.100.78", 8080, extra={"owner": {"id": A}})
    pipeline.send(A, f"contributions.{A}", json.dumps(steering).encode())
    pipeline.send(A, f"contributions.{A}", b"{not json")
    for port in range(9001, 9001 + RATE["burst"] + 2):  # more than A's burst at once
        pipeline.send(A, f"contributions.{A}", json.dumps(
            _indicator("198.51.100.79", port)).encode())
    sent = RATE["burst"] + 2

    def judged() -> float:
        return sum(count(o) - before[o] for o in ("accepted", "rate_limited"))

    await_until(lambda: judged() >= sent and count("forbidden") > before["forbidden"]
                and count("invalid") > before["invalid"], what="every contribution counted")
    assert count("forbidden") == before["forbidden"] + 1
    assert count("invalid") == before["invalid"] + 1
    assert judged() == sent
    assert count("rate_limited") > before["rate_limited"]
    letters = [v for _, v in pipeline.pipeline_rows("indicators.invalid")
               if v.get("origin", {}).get("topic") == f"contributions.{A}"]
    reasons = " | ".join(v["reason"] for v in letters)
    assert "extra.owner" in reasons and "rate limit" in reasons and "not JSON" in reasons

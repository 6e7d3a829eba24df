"""Feedback and metrics end to end: the real broker, the running pipeline (two feedback
workers sharing the partitions), Debian's Prometheus scraping both; a scripted mix of valid
and invalid feedback; the exported outcomes equal what the test computes from its own
records, and every dashboard panel query and alert-rule signal returns data."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration.conftest import ROOT, threatroute
from tests.integration.kafka_helpers import end_offsets, read_since, wait_drained
from tests.integration.prometheus_helpers import (
    dashboard_queries,
    rule_expressions,
    start_prometheus,
)
from tests.ports import free_port
from threatroute.enrichers.databuild import build_demo_data
from threatroute.streams.stages.feedback import partition_for

PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"


def start_worker(kafka_env, data, stage: str, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "threatroute.streams.commands.cli", "run", stage, "--metrics-port", str(port),
         "--ipasn", str(data.ipasn), "--asnames", str(data.asnames), "--geoip", str(data.mmdb)],
        cwd=ROOT, env=kafka_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stop_worker(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=90)
    assert process.returncode == 0, err.decode()[-3000:]


@pytest.fixture
def workers(kafka_env, tmp_path):
    data = build_demo_data(tmp_path / "data")
    ports = [free_port(), free_port()]
    processes = [start_worker(kafka_env, data, "all", ports[0])]
    yield data, ports, processes
    for process in processes:
        stop_worker(process)


def registry(run: str) -> list[dict]:
    return [
        {"id": f"fa-{run}", "name": "Feedback host A", "owns": {"prefixes": ["192.0.2.0/24"]},
         "tlp_clearance": "amber"},
        {"id": f"fb-{run}", "name": "Feedback host B", "owns": {"asns": [64501]}},
        {"id": f"fcert-{run}", "name": "Feedback CERT", "subscribe": {"countries": ["GB"]},
         "tlp_clearance": "amber"},
    ]


def indicators(run: str) -> list[dict]:
    rng = random.Random(run)
    out = []
    for i in range(60):
        ip = f"192.0.2.{i + 1}" if i < 40 else f"198.51.100.{i}"
        out.append({"classification": {"type": rng.choice(["phishing", "c2-server", "scanner"])},
                    "source": {"ip": ip}, "tlp": "GREEN",
                    "feed": {"name": rng.choice([f"feed-x-{run}", f"feed-y-{run}"]),
                             "accuracy": 90}})
    return out


def send(bootstrap: str, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in records:
        producer.produce("feedback", value, key)
    assert producer.flush(30) == 0


def feedback(alert: dict, status: str, recipient: str | None = None) -> tuple[bytes, bytes]:
    record = {"alert_id": alert["alert_id"], "recipient": recipient or alert["recipient"],
              "status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())}
    return alert["alert_id"].encode(), json.dumps(record).encode()


def test_feedback_becomes_exact_metrics_and_every_panel_has_data(
        kafka_env, bootstrap, tmp_path, workers):
    data, ports, processes = workers
    wait_drained(bootstrap)
    run = uuid.uuid4().hex[:6]
    recipients = registry(run)
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump({"recipients": recipients}))
    threatroute("recipients", "import", str(tmp_path / "registry.yaml"), env=kafka_env)
    prometheus = start_prometheus(tmp_path / "prom", [f"127.0.0.1:{p}" for p in ports],
                                  [PROMETHEUS / "rules.yml"])
    try:
        since_ledger = end_offsets(bootstrap, "alerts.ledger")
        path = tmp_path / "indicators.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in indicators(run)))
        threatroute("ingest", "jsonl", str(path), env=kafka_env)
        alerts = wait_for_alerts(bootstrap, since_ledger, run, expected=60 + 40)
        by_recipient: dict[str, list[dict]] = {}
        for alert in alerts:
            by_recipient.setdefault(alert["recipient"], []).append(alert)
        a, b = by_recipient[f"fa-{run}"], by_recipient[f"fb-{run}"]
        assert (len(a), len(b), len(by_recipient[f"fcert-{run}"])) == (40, 20, 40)

        # a second feedback worker joins: the partitions are shared from now on
        processes.append(start_worker(kafka_env, data, "feedback", ports[1]))
        time.sleep(5)

        valid = ([feedback(x, "acknowledged") for x in a[:12]]
                 + [feedback(x, "remediated") for x in a[:6]]
                 + [feedback(x, "false_positive") for x in a[12:14]]
                 + [feedback(x, "not_ours") for x in a[14:15] + b[:2]]
                 + [feedback(x, "in_progress") for x in b[2:5]])
        invalid = [
            feedback(a[20], "acknowledged", recipient=f"fb-{run}"),   # someone else's alert
            (b"A" * 22, json.dumps({"alert_id": "A" * 22, "recipient": f"fa-{run}",
                                    "status": "acknowledged", "time": "2026-01-01T00:00:00Z"}
                                   ).encode()),                          # unknown alert id
            feedback(a[21], "fixed"),                                    # malformed status
            (a[22]["alert_id"].encode(), b"{not json"),                  # broken JSON
            feedback(a[0], "acknowledged"),                              # a[0] is remediated: final
        ]
        since_invalid = end_offsets(bootstrap, "feedback.invalid")
        since_status = end_offsets(bootstrap, "alerts.status")
        # the first acknowledgement as a recipient would post it, with the CLI
        first_ack = json.loads(valid[0][1])
        # "--": an alert id may start with "-" (URL-safe base64)
        threatroute("feedback", "--recipient", first_ack["recipient"], "--note", "ticket 1",
                    "--", first_ack["alert_id"], "acknowledged", env=kafka_env)
        send(bootstrap, valid[1:12])
        wait_count(bootstrap, "alerts.status", since_status, 12)  # acks before remediations
        send(bootstrap, valid[12:] + invalid)

        dead = read_since(bootstrap, "feedback.invalid", since_invalid, expect=len(invalid),
                          timeout=60)
        assert len(dead) == len(invalid)
        reasons = " | ".join(v["reason"] for _, v in dead)
        assert "unknown alert id" in reasons and "not sent to" in reasons
        assert all(v["stage"] == "feedback" for _, v in dead)

        # what the test expects, from its own records: the last valid status of each alert
        final = {}
        for _, value in valid:
            record = json.loads(value)
            final[record["alert_id"]] = (record["recipient"], record["status"])
        classification = {x["alert_id"]: x["indicator"]["classification"]["type"] for x in alerts}
        expected_status = Counter((recipient, classification[alert_id], status)
                                  for alert_id, (recipient, status) in final.items())
        expected_sent = Counter((x["recipient"], classification[x["alert_id"]]) for x in alerts)
        wait_prometheus(prometheus, f'sum(threatroute_alerts_by_status{{recipient=~".*-{run}"}})',
                        len(final))
        # the two workers are scraped at different moments: just after a rebalance one
        # sample may predate it, so the sum is read once it has settled on the whole
        wait_prometheus(prometheus, f'sum(threatroute_alerts_sent{{recipient=~".*-{run}"}})',
                        len(alerts))

        sent = series(prometheus, f'sum by (recipient, classification) '
                                  f'(threatroute_alerts_sent{{recipient=~".*-{run}"}})',
                      ("recipient", "classification"))
        assert sent == dict(expected_sent)
        statuses = series(prometheus,
                          f'sum by (recipient, classification, status) '
                          f'(threatroute_alerts_by_status{{recipient=~".*-{run}"}})',
                          ("recipient", "classification", "status"))
        assert statuses == dict(expected_status)
        opened = series(prometheus, f'sum by (recipient) (threatroute_alerts_open'
                                    f'{{recipient=~".*-{run}"}})', ("recipient",))
        assert opened == {(f"fa-{run}",): 40 - 15, (f"fb-{run}",): 20 - 5,
                          (f"fcert-{run}",): 40}
        not_ours = series(prometheus, f'sum by (recipient, rule) '
                                      f'(threatroute_not_ours{{recipient=~".*-{run}"}})',
                          ("recipient", "rule"))
        assert not_ours == {(f"fa-{run}", "prefix 192.0.2.0/24"): 1,
                            (f"fb-{run}", "asn 64501"): 2}
        invalid_total = prometheus.query('sum(threatroute_feedback_records_total'
                                         '{outcome="invalid"})')
        assert float(invalid_total[0]["value"][1]) == len(invalid)
        # both workers export a share of the outcomes (the partitions really are split), and
        # their shares add up to the whole: nothing counted twice, nothing lost
        per_worker: dict = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(per_worker) < 2:
            per_worker = series(prometheus, f'sum by (instance) (threatroute_alerts_sent'
                                            f'{{recipient=~".*-{run}"}})', ("instance",))
            time.sleep(1)
        assert len(per_worker) == 2 and sum(per_worker.values()) == len(alerts)

        # the loop closes: an indicator seen again after it was reported remediated is sent
        # again to that recipient as a new alert flagged as a recurrence
        remediated = a[0]
        since_topic = end_offsets(bootstrap, f"alerts.fa-{run}")
        again = tmp_path / "again.jsonl"
        # a new sighting: recurrence is judged on when the indicator was seen (time.source),
        # so the record says it was seen now, after the remediation
        seen_again = {**remediated["indicator"],
                      "time": {"source": datetime.now(UTC).replace(microsecond=0).isoformat()}}
        again.write_text(json.dumps(seen_again) + "\n")
        deadline = time.monotonic() + 60
        recurrences = []
        while not recurrences and time.monotonic() < deadline:
            threatroute("ingest", "jsonl", str(again), env=kafka_env)
            recurrences = [v for _, v in read_since(bootstrap, f"alerts.fa-{run}", since_topic,
                                                    idle=2.0) if v.get("recurrence")]
        assert recurrences, "no recurrence alert after remediation"
        assert recurrences[0]["indicator_key"] == remediated["indicator_key"]
        assert recurrences[0]["alert_id"] != remediated["alert_id"]
        assert recurrences[0]["notification"] == "recurrence"

        # every dashboard panel query and every alert-rule signal returns data
        time.sleep(15)  # rates and increases need a few scrapes
        # (the delivery row's panels need the gateway and deliverer: test_delivery.py)
        empty = [(title, expr) for title, expr in dashboard_queries(DASHBOARDS)
                 + rule_expressions(PROMETHEUS / "rules.yml")
                 if not is_delivery_query(expr) and not prometheus.query(expr)]
        assert empty == []
    finally:
        prometheus.stop()


def is_delivery_query(expr: str) -> bool:
    return "threatroute_delivery_" in expr or "threatroute_gateway_" in expr


def wait_for_alerts(bootstrap, since, run, expected, timeout=90) -> list[dict]:
    deadline, latest = time.monotonic() + timeout, {}
    while time.monotonic() < deadline and len(latest) < expected:
        for _, value in read_since(bootstrap, "alerts.ledger", since, idle=1.0):
            # this run's recipients and feeds: earlier tests' records may still be in flight
            feed = value["indicator"].get("feed", {}).get("name", "")
            if value["recipient"].endswith(run) and feed.endswith(run):
                latest[value["alert_id"]] = value
    return list(latest.values())


def wait_count(bootstrap, topic, since, count, timeout=60) -> None:
    assert len(read_since(bootstrap, topic, since, expect=count, timeout=timeout)) >= count


def wait_prometheus(prometheus, expr, value, timeout=90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = prometheus.query(expr)
        if result and float(result[0]["value"][1]) == value:
            return
        time.sleep(1)
    raise AssertionError(f"{expr} never reached {value}: {prometheus.query(expr)}")


def series(prometheus, expr, labels) -> dict[tuple[str, ...], float]:
    return {tuple(r["metric"][k] for k in labels): float(r["value"][1])
            for r in prometheus.query(expr)}


def test_python_partitioner_matches_librdkafka(bootstrap):
    """The feedback stage forwards records to partition_for(key); it must agree with the
    partition librdkafka's default partitioner (what recipients' clients use) picks."""
    topic = f"partitioner-probe-{uuid.uuid4().hex[:8]}"
    client = AdminClient({"bootstrap.servers": bootstrap})
    client.create_topics([NewTopic(topic, 6, 1)])[topic].result()
    try:
        producer = Producer({"bootstrap.servers": bootstrap})
        delivered = []
        for i in range(200):
            producer.produce(topic, b"{}", f"{uuid.uuid4()}-{i}".encode(),
                             on_delivery=lambda err, msg: delivered.append(msg))
        assert producer.flush(30) == 0
        assert all(m.partition() == partition_for(m.key(), 6) for m in delivered)
        assert len({m.partition() for m in delivered}) == 6
    finally:
        client.delete_topics([topic])


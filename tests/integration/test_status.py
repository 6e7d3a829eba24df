"""`threatroute status` against the real broker, with every stage running."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

from confluent_kafka import Producer

from tests.integration.conftest import ROOT, threatroute
from tests.integration.kafka_helpers import wait_drained, wait_stable
from threatroute.enrichers.databuild import build_demo_data

REGISTRY = """
recipients:
  - id: status-a-{run}
    name: Status A
    owns: {{prefixes: [192.0.2.0/24]}}
  - id: status-b-{run}
    name: Status B
    owns: {{prefixes: [198.51.100.0/24]}}
"""


def indicator(i: int) -> bytes:
    return json.dumps({"classification": {"type": "c2-server", "taxonomy": "malicious-code"},
                       "source": {"ip": f"192.0.2.{i % 250 + 1}"}, "tlp": "GREEN",
                       "feed": {"name": "status-test"},
                       "time": {"observation": "2026-01-01T00:00:00+00:00"}}).encode()


def test_status_shows_groups_members_lag_rates_dead_letters_recipients_and_brokers(
        kafka_env, bootstrap, tmp_path):
    run = uuid.uuid4().hex[:8]
    registry = tmp_path / "registry.yaml"
    registry.write_text(REGISTRY.format(run=run))
    threatroute("recipients", "import", str(registry), env=kafka_env)
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"\n".join([indicator(i) for i in range(20)] + [b"{broken"] * 5) + b"\n")
    threatroute("ingest", "jsonl", str(feed), env=kafka_env, check=False)

    data = build_demo_data(tmp_path / "data")
    log = (tmp_path / "stages.log").open("wb")
    stages = subprocess.Popen(
        [sys.executable, "-m", "threatroute.streams.commands.cli", "run", "all",
         "--metrics-port", "0", "--ipasn", str(data.ipasn), "--asnames", str(data.asnames),
         "--geoip", str(data.mmdb)], cwd=ROOT, env=kafka_env, stdout=log,
        stderr=subprocess.STDOUT)
    stop = threading.Event()

    def trickle() -> None:  # keeps the stages busy while status measures their rate
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        i = 0
        while not stop.is_set():
            producer.produce("indicators.raw", indicator(i), uuid.uuid4().hex.encode())
            producer.poll(0)
            i += 1
            time.sleep(0.002)
        producer.flush(30)

    try:
        wait_drained(bootstrap)
        sender = threading.Thread(target=trickle)
        sender.start()
        try:
            # a snapshot taken while run all's workers still join their groups shows them
            # rebalancing (rightly); this test checks the settled picture
            wait_stable(bootstrap, ("threatroute-asn", "threatroute-match",
                                    "threatroute-publish", "threatroute-feedback"))
            time.sleep(2)
            result = threatroute("status", "--json", "--interval", "3", env=kafka_env)
            text = threatroute("status", "--interval", "0.5", env=kafka_env)
        finally:
            stop.set()
            sender.join()
        wait_drained(bootstrap)  # leave nothing behind for the next test's stages
    finally:
        stages.send_signal(signal.SIGTERM)
        stages.wait(timeout=60)
        log.close()
    assert stages.returncode == 0, (tmp_path / "stages.log").read_bytes()[-2000:]

    status = json.loads(result.stdout)
    assert any(b.endswith(f"127.0.0.1:{bootstrap.rsplit(':', 1)[1]}")
               for b in status["brokers"]), status["brokers"]
    assert status["controller"] is not None and status["cluster_id"]
    groups = {g["group"]: g for g in status["groups"]}
    for stage in ("asn", "geo", "hoster", "match", "publish", "feedback"):
        assert f"threatroute-{stage}" in groups, groups.keys()
    # run all fuses asn, geo and hoster into one consumer of the asn group
    for name in ("threatroute-asn", "threatroute-match", "threatroute-publish",
                 "threatroute-feedback"):
        group = groups[name]
        assert group["state"] == "stable" and group["members"], group
        assert all(m["partitions"] for m in group["members"]), group["members"]
    # publish: [publish] workers loops of the one process, splitting match.routed
    publish = groups["threatroute-publish"]
    assert len(publish["members"]) == 8, publish["members"]
    assert {row["topic"] for row in publish["lag"]} == {"match.routed"}
    asn = groups["threatroute-asn"]
    assert {row["topic"] for row in asn["lag"]} == {"indicators.raw"}
    assert all(row["lag"] >= 0 and row["end"] >= 0 for row in asn["lag"])
    assert asn["records_per_second"] > 0 and asn["input_per_second"] > 0
    assert status["dead_letters_last_hour"]["indicators.invalid"] >= 5
    assert "feedback.invalid" in status["dead_letters_last_hour"]
    listed = threatroute("recipients", "list", env=kafka_env).stdout.decode()
    assert status["recipients"] == int(re.search(r"(\d+) recipients", listed)[1]) >= 2
    assert b"threatroute-asn" in text.stdout and b"records/s" in text.stdout

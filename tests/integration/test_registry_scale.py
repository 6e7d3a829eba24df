"""A registry of 10,000 recipients imports (topics in bounded requests, one partition each) and
runs; an import whose topics cannot be made leaves the registry as it was."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import yaml
from confluent_kafka.admin import AdminClient

from tests.integration.conftest import ROOT, own_broker, threatroute
from tests.integration.kafka_helpers import end_offsets, read_since

COUNT = 10_000


def scale_registry() -> dict:
    """Recipient i owns 100.(64 + i // 256).(i % 256).0/24 and scale-i.example."""
    return {"recipients": [
        {"id": f"scale-{i:05d}", "name": f"Scale {i}", "tlp_clearance": "amber",
         "owns": {"prefixes": [f"100.{64 + i // 256}.{i % 256}.0/24"],
                  "domains": [f"scale-{i:05d}.example"]}}
        for i in range(COUNT)]}


def test_failed_topic_creation_leaves_the_registry_unwritten(kafka_env, tmp_path):
    run = uuid.uuid4().hex[:8]
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump({"recipients": [
        {"id": f"nope-{run}-{i}", "name": "N"} for i in range(3)]}))
    broken = tmp_path / "broken.toml"  # a single broker cannot hold two replicas
    broken.write_text("[topics.\"alerts.*\"]\nreplication = 2\n")
    failed = threatroute("--config", str(broken), "recipients", "import", str(registry),
                         env=kafka_env, check=False)
    assert failed.returncode == 2, failed.stderr.decode()
    assert b"alerts.nope-" in failed.stderr
    listed = threatroute("recipients", "list", env=kafka_env).stdout.decode()
    assert f"nope-{run}" not in listed


@pytest.fixture(scope="module")
def scale_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A broker of this test's own (TEST_PORT + 6 and + 7), removed afterwards: the shared test
    broker would keep 10,000 more partitions, and every later restart would load them for
    minutes."""
    if os.environ.get("THREATROUTE_BOOTSTRAP"):
        pytest.skip("needs a broker of its own; THREATROUTE_BOOTSTRAP names a shared cluster")
    state = tmp_path_factory.mktemp("scale-broker")
    try:
        with own_broker(state, 6, start_timeout=600) as env:
            yield env
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_ten_thousand_recipients_import_and_run(scale_env, tmp_path):
    kafka_env, bootstrap = scale_env, scale_env["THREATROUTE_BOOTSTRAP"]
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump(scale_registry()))
    started = time.monotonic()
    threatroute("recipients", "import", str(registry), env=kafka_env, timeout=600)
    imported = time.monotonic() - started  # a fresh broker: every topic is created
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30).topics
    ours = {name: t for name, t in topics.items() if name.startswith("alerts.scale-")}
    assert len(ours) == COUNT
    assert {len(t.partitions) for t in ours.values()} == {1}
    again = threatroute("recipients", "import", str(registry), env=kafka_env, timeout=600)
    assert again.stdout.strip() == b"registry unchanged"
    print(f"imported {COUNT} recipients in {imported:.1f}s")

    data = tmp_path / "data"
    threatroute("data", "build", "--dest", str(data))
    since = {rid: end_offsets(bootstrap, f"alerts.{rid}") for rid in ("scale-09999",
                                                                       "scale-00000")}
    log = tmp_path / "run.log"  # a file, not a pipe nobody reads while it runs
    pipeline = subprocess.Popen(
        [sys.executable, "-m", "threatroute.streams.commands.cli", "run", "all",
         "--metrics-port", "0", "--ipasn", str(data / "ipasn.dat"),
         "--asnames", str(data / "asnames.json"), "--geoip", str(data / "demo-city.mmdb")],
        cwd=ROOT, env=kafka_env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        run = uuid.uuid4().hex[:8]
        feed = f"scale-{run}"
        # new indicators each run (the broker keeps dedup state between runs): URLs, one on
        # an address of scale-09999's prefix (owner by prefix), one on scale-00000's domain
        records = [
            {"classification": {"type": "malware-distribution"}, "feed": {"name": feed},
             "tlp": "GREEN",
             "source": {"url": f"http://100.{64 + 9999 // 256}.{9999 % 256}.7/{run}/x.exe"}},
            {"classification": {"type": "phishing"}, "feed": {"name": feed}, "tlp": "GREEN",
             "source": {"url": f"http://www.scale-00000.example/{run}/login"}},
        ]
        path = tmp_path / "in.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        threatroute("ingest", "jsonl", str(path), env=kafka_env)
        for rid, n in (("scale-09999", 0), ("scale-00000", 1)):
            alerts = read_since(bootstrap, f"alerts.{rid}", since[rid], expect=1, timeout=180)
            assert [a["recipient"] for _, a in alerts] == [rid], log.read_text()[-3000:]
            assert alerts[0][1]["indicator"]["feed"]["name"] == feed
            assert alerts[0][1]["indicator"]["source"]["url"] == records[n]["source"]["url"]
    finally:
        pipeline.send_signal(signal.SIGTERM)
        pipeline.wait(timeout=120)
    assert pipeline.returncode == 0, log.read_text()[-3000:]

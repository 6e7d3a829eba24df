"""The embedded broker's lifecycle, on a second broker with its own state and ports."""

from __future__ import annotations

import json
import uuid

from confluent_kafka import Producer

from tests.integration.conftest import TEST_PORT, broker_env, threatroute
from tests.integration.kafka_helpers import read_since

PORT = TEST_PORT + 4  # and + 5 (controller): in this run's range, see conftest.TEST_PORT


def test_start_twice_stop_start_keeps_topics_and_data(tmp_path, kafka_env):
    env = broker_env(tmp_path / "state", PORT)
    bootstrap = f"127.0.0.1:{PORT}"
    first = threatroute("broker", "start", env=env)
    try:
        assert bootstrap.encode() in first.stdout
        again = threatroute("broker", "start", env=env)
        assert b"already running" in again.stdout
        assert threatroute("broker", "status", env=env).returncode == 0

        created = threatroute("topics", "create", env=env)
        assert b"created" in created.stdout
        unchanged = threatroute("topics", "create", env=env)
        assert b"all topics already as configured" in unchanged.stdout
        marker = str(uuid.uuid4())
        producer = Producer({"bootstrap.servers": bootstrap})
        producer.produce("indicators.raw", json.dumps({"marker": marker}).encode(), b"k")
        assert producer.flush(30) == 0

        threatroute("broker", "stop", env=env)
        assert threatroute("broker", "status", env=env, check=False).returncode == 1
        threatroute("broker", "start", env=env)

        assert b"all topics already as configured" in threatroute(
            "topics", "create", env=env).stdout
        records = read_since(bootstrap, "indicators.raw", None, expect=1)
        assert [v["marker"] for _, v in records] == [marker]
    finally:
        threatroute("broker", "stop", env=env, check=False)
    if "THREATROUTE_STATE" in kafka_env:  # the session broker is ours: it must still run
        assert threatroute("broker", "status", env=kafka_env).returncode == 0

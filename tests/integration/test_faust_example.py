"""docs/examples/faust_consumer.py against the real broker: a faust-streaming worker reads a
recipient's alerts as typed records and acknowledges each one on the recipient's feedback
topic, in its own `<id>.` group."""

from __future__ import annotations

import subprocess
import sys

from tests.integration.conftest import ROOT
from tests.integration.gateway_helpers import route, stop
from tests.integration.kafka_helpers import end_offsets, read_since
from threatroute import topics
from threatroute.streams.config import load_config
from threatroute.streams.kafka.admin import admin, ensure_topics


def test_faust_worker_acknowledges_every_new_alert(kafka_env, bootstrap, tmp_path):
    world, pipeline, log = route(kafka_env, bootstrap, tmp_path, {"ga": 4})
    stop(pipeline, log)
    a = world.rid("ga")
    feedback = topics.feedback_topic(a)
    # recipients' own feedback topics exist on a secure broker; this one is plaintext
    config = load_config(bootstrap=bootstrap)
    ensure_topics(admin(config), [config.recipient_topic(feedback)])
    since = end_offsets(bootstrap, feedback)
    worker_log = tmp_path / "faust.log"
    env = {**kafka_env, "THREATROUTE_RECIPIENT": a, "THREATROUTE_BOOTSTRAP": bootstrap}
    with worker_log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, str(ROOT / "docs" / "examples" / "faust_consumer.py"),
             "--datadir", str(tmp_path / "faust"), "worker", "-l", "info", "--without-web"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            reports = read_since(bootstrap, feedback, since, expect=4, timeout=120)
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:  # never leave a worker behind
                worker.kill()
                worker.wait(timeout=10)
    text = worker_log.read_text()
    assert len(reports) == 4, text[-3000:]
    assert {key.decode() for key, _ in reports} == {x["alert_id"] for x in world.alerts[a]}
    assert all(value["recipient"] == a and value["status"] == "acknowledged"
               and value["note"].startswith("ticket TICKET-") for _, value in reports)
    assert all(f"[ticket {x['alert_id']}]" in text for x in world.alerts[a])

"""Credentials follow the registry on a secure broker; a departed recipient can be forgotten."""

from __future__ import annotations

import json
import shutil
import stat
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from tests.integration.secure.conftest import A, B, SecureBroker, read_properties, registry_yaml


def _pipeline(secure: SecureBroker) -> dict[str, str]:
    return {**read_properties(secure.pipeline_file), "log_level": "0"}


def _import(secure: SecureBroker, tmp_path, *extra: str) -> bytes:
    path = tmp_path / f"registry-{uuid.uuid4().hex}.yaml"
    path.write_text(registry_yaml(*extra))
    return secure.run("recipients", "import", str(path)).stdout


def _table(secure: SecureBroker, topic: str) -> dict[str, object]:
    """The live rows of a compacted topic: latest value per key, tombstones removing it."""
    rows: dict[str, object] = {}
    consumer_settings = _pipeline(secure)
    for key, value in _read(consumer_settings, topic):
        if value is None:
            rows.pop(key, None)
        else:
            rows[key] = value
    return rows


def _read(settings: dict[str, str], topic: str) -> list[tuple[str, object]]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**settings, "group.id": f"probe-{uuid.uuid4()}",
                         "enable.partition.eof": True, "enable.auto.commit": False})
    out: list[tuple[str, object]] = []
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        behind = set(partitions)
        while behind:
            message = consumer.poll(10)
            assert message is not None, f"{topic} did not reach its end"
            if message.error() is not None:
                behind.discard(message.partition())
                continue
            value = message.value()
            out.append(((message.key() or b"").decode(),
                        None if value is None else json.loads(value)))
    finally:
        consumer.close()
    return out


def test_import_provisions_new_recipients_and_revokes_removed_ones(secure: SecureBroker,
                                                                   tmp_path) -> None:
    printed = _import(secure, tmp_path, "hoster-c", "hoster-d")
    creds = secure.state / "credentials"
    for rid in ("hoster-c", "hoster-d"):
        assert f"provisioned {rid}".encode() in printed
        path = creds / f"{rid}.properties"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        secure.files[rid] = path
    listing = secure.kcat("hoster-d", "-L", "-J")
    assert listing.returncode == 0, listing.stderr
    assert {t["topic"] for t in json.loads(listing.stdout)["topics"]} == {
        "alerts.hoster-d", "feedback.hoster-d", "contributions.hoster-d"}
    kept = tmp_path / "hoster-d.properties"  # what the departed recipient still holds
    shutil.copy(secure.files["hoster-d"], kept)
    secure.files["hoster-d"] = kept

    printed = _import(secure, tmp_path, "hoster-c")
    assert b"revoked    hoster-d" in printed
    assert b"provisioned" not in printed, "existing credentials are kept"
    refused = secure.kcat("hoster-d", "-L")
    assert refused.returncode != 0
    assert b"Authentication failed" in refused.stderr
    assert secure.kcat("hoster-c", "-L").returncode == 0
    assert secure.kcat(A, "-L").returncode == 0, "A and B stay provisioned"


def test_forget_deletes_a_departed_recipients_topics_credentials_and_state(
        secure: SecureBroker, tmp_path) -> None:
    gone = "hoster-gone"
    _import(secure, tmp_path, gone)
    secure.files[gone] = secure.state / "credentials" / f"{gone}.properties"
    producer = Producer(_pipeline(secure))
    mine, theirs = uuid.uuid4().hex + "gone00", uuid.uuid4().hex + "kept00"
    for alert_id, rid in ((mine, gone), (theirs, B)):
        alert = {"alert_id": alert_id, "recipient": rid, "indicator_key": "k" * 32}
        producer.produce("alerts.ledger", json.dumps(alert).encode(), alert_id)
        producer.produce("alerts.status", json.dumps({**alert, "status": "acknowledged"})
                         .encode(), alert_id)
        producer.produce("match.state", json.dumps({"alert_id": alert_id}).encode(),
                         f"{rid}|{'k' * 32}", partition=2)
        producer.produce("match.verdicts", json.dumps({"recipient": rid}).encode(),
                         f"{rid}|{'k' * 32}", partition=2)
        producer.produce("match.watch", json.dumps({"recipient": rid}).encode(), alert_id,
                         partition=2)
        producer.produce("corrections", json.dumps({"recipient": rid}).encode(), f"c-{rid}")
    producer.produce(f"alerts.{gone}", b"{}", b"k")
    assert producer.flush(30) == 0

    printed = secure.run("recipients", "forget", gone).stdout
    assert b"credential removed" in printed
    topics = AdminClient(_pipeline(secure)).list_topics(timeout=10).topics
    assert not {f"alerts.{gone}", f"feedback.{gone}", f"contributions.{gone}"} & set(topics)
    for table in ("alerts.ledger", "alerts.status"):
        rows = _table(secure, table)
        assert mine not in rows and theirs in rows
    for table in ("match.state", "match.verdicts"):
        state = _table(secure, table)
        assert f"{gone}|{'k' * 32}" not in state and f"{B}|{'k' * 32}" in state
    watched = _table(secure, "match.watch")
    assert mine not in watched and theirs in watched
    corrections = _table(secure, "corrections")
    assert f"c-{gone}" not in corrections and f"c-{B}" in corrections
    assert secure.run("recipients", "show", gone, check=False).returncode == 1
    assert not secure.files[gone].exists()

"""The broker, not the client, keeps each recipient to its own topics (issue 9).

Recipient A holds exactly READ on alerts.A and on groups `A.*`, WRITE on feedback.A and
contributions.A. Every refusal below is an authorization or authentication error the broker
returned; the same clients succeed where the ACLs allow.
"""

from __future__ import annotations

import json
import stat
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration.secure.conftest import A, B, SecureBroker, read_properties


def _pipeline_producer(secure: SecureBroker) -> Producer:
    return Producer({**read_properties(secure.pipeline_file), "log_level": 0})


@pytest.fixture(scope="module")
def seeded(secure: SecureBroker) -> dict[str, str]:
    """One record on each topic A must not read: a refusal is then not an empty topic."""
    producer = _pipeline_producer(secure)
    marks = {}
    for topic in (f"alerts.{A}", f"alerts.{B}", "alerts.ledger", f"feedback.{B}"):
        marks[topic] = str(uuid.uuid4())
        producer.produce(topic, json.dumps({"mark": marks[topic]}).encode(), b"key")
    assert producer.flush(30) == 0
    return marks


def test_the_credentials_file_is_private_and_complete(secure: SecureBroker) -> None:
    path = secure.files[A]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    props = read_properties(path)
    assert props["security.protocol"] == "SASL_SSL"
    assert props["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert props["sasl.username"] == A
    assert props["bootstrap.servers"] == secure.bootstrap
    assert len(props["sasl.password"]) >= 32
    assert (secure.state / "tls" / "ca.pem").samefile(props["ssl.ca.location"])


def test_a_reads_its_own_alerts_with_kcat(secure: SecureBroker, seeded: dict[str, str]) -> None:
    result = secure.kcat(A, "-C", "-t", f"alerts.{A}", "-e", "-q", "-f", "%s\n")
    assert result.returncode == 0, result.stderr
    assert seeded[f"alerts.{A}"].encode() in result.stdout


def test_a_sees_only_its_own_topics(secure: SecureBroker) -> None:
    result = secure.kcat(A, "-L", "-J")
    assert result.returncode == 0, result.stderr
    names = {t["topic"] for t in json.loads(result.stdout)["topics"]}
    assert names == {f"alerts.{A}", f"feedback.{A}", f"contributions.{A}"}


@pytest.mark.parametrize("topic", [f"alerts.{B}", "alerts.ledger", f"feedback.{B}"])
def test_kcat_as_a_is_refused_reading(secure: SecureBroker, seeded: dict[str, str],
                                      topic: str) -> None:
    result = secure.kcat(A, "-C", "-t", topic, "-e", "-q", "-f", "%s\n")
    assert result.returncode != 0
    assert b"Topic authorization failed" in result.stderr
    assert seeded[topic].encode() not in result.stdout


@pytest.mark.parametrize("topic", [f"alerts.{B}", "alerts.ledger", f"feedback.{B}"])
def test_a_consumer_is_refused_reading(secure: SecureBroker, seeded: dict[str, str],
                                       topic: str) -> None:
    consumer = Consumer(secure.settings(A, **{"group.id": f"{A}.probe-{uuid.uuid4()}",
                                              "enable.auto.commit": False,
                                              "auto.offset.reset": "earliest"}))
    try:
        assert consumer.list_topics(topic, timeout=10).topics[topic].error.code() == \
            KafkaError.TOPIC_AUTHORIZATION_FAILED
        consumer.subscribe([topic])
        errors = []
        for _ in range(30):
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is not None, "the broker served a refused topic"
                errors.append(message.error().code())
                break
        assert KafkaError.TOPIC_AUTHORIZATION_FAILED in errors
    finally:
        consumer.close()


@pytest.mark.parametrize("topic", [f"alerts.{A}", f"alerts.{B}", "alerts.ledger",
                                   f"feedback.{B}", "indicators.raw"])
def test_kcat_as_a_is_refused_writing(secure: SecureBroker, topic: str) -> None:
    result = secure.kcat(A, "-P", "-t", topic, input_=b"{}")
    assert result.returncode != 0 or b"authorization failed" in result.stderr.lower()
    assert b"authorization failed" in result.stderr.lower()


@pytest.mark.parametrize("topic", [f"alerts.{A}", f"alerts.{B}", "alerts.ledger",
                                   f"feedback.{B}", f"contributions.{B}"])
def test_a_producer_is_refused_writing(secure: SecureBroker, topic: str) -> None:
    failures: list[KafkaError] = []
    producer = Producer(secure.settings(A, **{"message.timeout.ms": 10000}))
    producer.produce(topic, b"{}", b"k", on_delivery=lambda err, _msg: failures.append(err))
    producer.flush(20)
    assert [e.code() for e in failures] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]


def test_a_writes_its_own_feedback_and_contributions(secure: SecureBroker) -> None:
    failures: list[KafkaError | None] = []
    producer = Producer(secure.settings(A))
    for topic in (f"feedback.{A}", f"contributions.{A}"):
        producer.produce(topic, b"{}", b"k", on_delivery=lambda err, _msg: failures.append(err))
    assert producer.flush(30) == 0
    assert failures == [None, None]


def test_a_cannot_create_a_topic(secure: SecureBroker) -> None:
    client = AdminClient(secure.settings(A))
    future = client.create_topics([NewTopic(f"{A}.mine", 1, 1)])[f"{A}.mine"]
    with pytest.raises(KafkaException) as refused:
        future.result(timeout=30)
    assert refused.value.args[0].code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                            KafkaError.CLUSTER_AUTHORIZATION_FAILED)


@pytest.mark.parametrize("group", [f"{B}.reader", "threatroute-match", f"{A}-no-dot",
                                   "anything"])
def test_a_cannot_join_a_group_not_prefixed_a_dot(secure: SecureBroker, group: str) -> None:
    consumer = Consumer(secure.settings(A, **{"group.id": group, "enable.auto.commit": False}))
    try:
        consumer.subscribe([f"alerts.{A}"])
        errors = []
        for _ in range(30):
            message = consumer.poll(0.5)
            if message is not None and message.error() is not None:
                errors.append(message.error().code())
                break
        assert KafkaError.GROUP_AUTHORIZATION_FAILED in errors
    finally:
        consumer.close()


def test_a_joins_its_own_group(secure: SecureBroker, seeded: dict[str, str]) -> None:
    consumer = Consumer(secure.settings(A, **{"group.id": f"{A}.ticketing",
                                              "auto.offset.reset": "earliest"}))
    try:
        consumer.subscribe([f"alerts.{A}"])
        seen = []
        for _ in range(60):
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            seen.append(json.loads(message.value())["mark"])
            if seeded[f"alerts.{A}"] in seen:
                break
        assert seeded[f"alerts.{A}"] in seen
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_connecting_without_tls_is_refused(secure: SecureBroker, protocol: str) -> None:
    settings = secure.settings(A, **{"security.protocol": protocol, "socket.timeout.ms": 5000})
    settings.pop("ssl.ca.location")
    if protocol == "PLAINTEXT":
        for key in ("sasl.mechanisms", "sasl.username", "sasl.password"):
            settings.pop(key)
    with pytest.raises(KafkaException):
        AdminClient(settings).list_topics(timeout=8)


def test_a_wrong_password_is_refused(secure: SecureBroker) -> None:
    errors: list[KafkaError] = []
    settings = secure.settings(A, **{"sasl.password": "not-" + "the-password",
                                     "error_cb": errors.append})
    client = AdminClient(settings)
    with pytest.raises(KafkaException):
        client.list_topics(timeout=8)
    client.poll(1)  # serves error_cb
    assert KafkaError._AUTHENTICATION in [e.code() for e in errors]
    result = secure.kcat(A, "-L", "-X", "sasl.username=nobody-" + A)
    assert result.returncode != 0
    assert b"Authentication failed" in result.stderr


def test_revoked_credentials_no_longer_authenticate(secure: SecureBroker) -> None:
    rid = "hoster-revoked"
    path = secure.state / "handed-out" / f"{rid}.properties"
    secure.run("recipients", "provision", rid, "--out", str(path))
    secure.files[rid] = path
    assert secure.kcat(rid, "-L").returncode == 0
    revoked = secure.run("recipients", "revoke", rid)
    assert b"credential removed, 4 ACLs removed" in revoked.stdout
    result = secure.kcat(rid, "-L")
    assert result.returncode != 0
    assert b"Authentication failed" in result.stderr

"""The fault decisions the consume loop carries (streams/runtime/faults.py): pure, no broker."""

from __future__ import annotations

import itertools

import pytest

from threatroute.streams.runtime.faults import (
    BACKOFF_CAP,
    Fault,
    Outage,
    Remedy,
    backoff,
    is_rebalance,
    remedy,
)


@pytest.mark.parametrize("name", [
    "_TRANSPORT", "_ALL_BROKERS_DOWN", "NOT_LEADER_FOR_PARTITION", "_INCONSISTENT",
    "_MSG_TIMED_OUT", "_TIMED_OUT", "NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS",
    "UNKNOWN_TOPIC_OR_PART", "ILLEGAL_GENERATION", "REBALANCE_IN_PROGRESS",
    "NOT_ENOUGH_REPLICAS", "UNSTABLE_OFFSET_COMMIT", "_STATE", "CONCURRENT_TRANSACTIONS"])
def test_a_broker_going_away_is_waited_out(name: str) -> None:
    assert remedy(Fault(name)) is Remedy.RETRY
    assert remedy(Fault(name, retriable=True)) is Remedy.RETRY
    assert remedy(Fault(name, abortable=True)) is Remedy.RETRY


@pytest.mark.parametrize("name", ["_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH",
                                  "_FATAL", "UNKNOWN_PRODUCER_ID"])
def test_a_fenced_or_broken_producer_is_replaced(name: str) -> None:
    assert remedy(Fault(name)) is Remedy.RECREATE


def test_any_fatal_error_replaces_the_client() -> None:
    assert remedy(Fault("_INCONSISTENT", fatal=True)) is Remedy.RECREATE


@pytest.mark.parametrize("name", [
    "TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED",
    "SASL_AUTHENTICATION_FAILED", "_AUTHENTICATION", "MSG_SIZE_TOO_LARGE", "_INVALID_ARG"])
def test_what_only_an_operator_mends_ends_the_stage(name: str) -> None:
    assert remedy(Fault(name, retriable=True)) is Remedy.GIVE_UP
    assert remedy(Fault(name, fatal=True)) is Remedy.GIVE_UP


def test_backoff_doubles_up_to_its_cap() -> None:
    delays = [backoff(n) for n in range(12)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == BACKOFF_CAP == delays[-1]
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert backoff(10_000) == BACKOFF_CAP  # no overflow after a long outage


def test_jitter_only_shortens_by_a_quarter_at_most() -> None:
    assert backoff(3, jitter=0.0) == 4.0
    assert backoff(3, jitter=1.0) == 3.0
    assert 3.0 <= backoff(3, jitter=0.5) <= 4.0


def test_an_outage_is_said_once_then_reminded_then_its_end_once() -> None:
    outage = Outage(remind=300)
    assert outage.recovered(0.0) is None  # nothing to say when nothing failed
    said = [outage.failed(t) for t in (10.0, 10.1, 11.0, 200.0)]
    assert said == [True, False, False, False]
    assert outage.down
    assert outage.failed(310.0) is True  # a reminder while it lasts
    assert outage.failed(320.0) is False
    assert outage.recovered(330.0) == (320.0, 6)
    assert not outage.down and outage.recovered(331.0) is None
    assert outage.failed(400.0) is True  # a new stretch is said again


def test_fault_reads_as_name_and_reason() -> None:
    assert str(Fault("_TRANSPORT", "Connection refused")) == "_TRANSPORT: Connection refused"
    assert str(Fault("_TRANSPORT")) == "_TRANSPORT"


def test_kafka_errors_become_faults() -> None:
    """The adapter the loop uses (streams/kafka/faults.py): a KafkaError's name and flags."""
    from confluent_kafka import KafkaError, KafkaException

    from threatroute.streams.kafka.clients import DeliveryError
    from threatroute.streams.kafka.faults import fault_of

    fenced = fault_of(KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True)))
    assert fenced is not None and fenced.name == "_FENCED" and remedy(fenced) is Remedy.RECREATE
    refused = fault_of(DeliveryError("436 records refused",
                                     KafkaError(KafkaError._INCONSISTENT, "inconsistent")))
    assert refused is not None and refused.name == "_INCONSISTENT"
    assert remedy(refused) is Remedy.RETRY
    late = fault_of(DeliveryError("3 records not acknowledged within 60s"))
    assert late is not None and late.retriable and remedy(late) is Remedy.RETRY
    assert fault_of(TimeoutError("restore")) == Fault("_TIMED_OUT", "restore", retriable=True)
    assert fault_of(ValueError("a bug")) is None  # not Kafka: the loop lets it through


@pytest.mark.parametrize("name", ["ILLEGAL_GENERATION", "REBALANCE_IN_PROGRESS",
                                  "UNKNOWN_MEMBER_ID", "FENCED_INSTANCE_ID"])
def test_a_batch_fenced_by_a_rebalance_is_redone_without_declaring_an_outage(
        name: str, caplog: pytest.LogCaptureFixture) -> None:
    from threatroute.streams.runtime.loop import Recovery

    now = [100.0]
    recovery = Recovery("publish", clock=lambda: now[0])
    with caplog.at_level("INFO"):
        assert recovery.failed(Fault(name, abortable=True), in_flight=True) <= 0.5
        now[0] += 1
        recovery.failed(Fault(name, abortable=True), in_flight=True)
    assert recovery.rewind and not recovery.outage.down  # redone; Kafka is not failing
    said = [r for r in caplog.records if "rebalanced" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "INFO"  # once, not per batch
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    # during an outage it is one more failure of it: the outage's lines say it
    recovery.failed(Fault("_ALL_BROKERS_DOWN"), in_flight=False)
    recovery.failed(Fault(name), in_flight=True)
    assert recovery.outage.failures == 2
    assert not is_rebalance(Fault(name, fatal=True))


def test_a_producer_that_lost_every_broker_is_replaced_before_the_next_batch() -> None:
    from confluent_kafka import KafkaError

    from threatroute.streams.runtime.loop import Recovery

    recovery = Recovery("match")
    recovery.on_producer_error(KafkaError(KafkaError._TRANSPORT))
    assert not recovery.broker_lost  # one connection closed (idle): nothing to replace
    recovery.on_producer_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    assert recovery.broker_lost

"""A view's change that Kafka fails (a new recipient's topics while the broker is away) is
retried with backoff and logged once; a bug still ends the view."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, KafkaException

from threatroute.streams.runtime.views import PendingChange


def transport_down() -> None:
    raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker went away"))


def test_a_kafka_failure_keeps_the_change_pending_and_retries_after_a_backoff(caplog):
    change = PendingChange("recipients")
    change.pending = True
    assert change.due(now=100.0)
    with caplog.at_level(logging.INFO):
        change.attempt(transport_down, now=100.0)
        assert change.pending and not change.due(now=100.1)  # backing off
        assert change.due(now=111.0)  # at most BACKOFF_CAP later
        change.attempt(transport_down, now=111.0)
        applied = []
        change.attempt(lambda: applied.append(True), now=130.0)
    assert applied and not change.pending and not change.due(now=200.0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "_TRANSPORT" in warnings[0].getMessage()
    assert any("applied after the failures" in r.getMessage() for r in caplog.records)


def test_nothing_pending_is_not_due():
    assert not PendingChange("recipients").due(now=0.0)


@pytest.mark.parametrize("error", [ValueError("a bug in the index build"),
                                   KafkaException(KafkaError(
                                       KafkaError.TOPIC_AUTHORIZATION_FAILED, "no ACL"))])
def test_a_bug_or_what_only_an_operator_can_mend_ends_the_view(error):
    change = PendingChange("recipients")
    change.pending = True

    def fail() -> None:
        raise error

    with pytest.raises(type(error)):
        change.attempt(fail, now=0.0)

"""Judging one feedback report against the ledger and the status table, without a broker
(threatroute.outcomes.judge_feedback, what the feedback stage runs per report)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from threatroute.errors import InvalidRecord
from threatroute.outcomes import AlertFacts, AlertStatus, judge_feedback

ALERT_ID = "A" * 22
KEY = "0" * 32
SENT = "2026-01-01T00:00:00+00:00"
NOW = datetime(2026, 1, 2, tzinfo=UTC)
LEDGER = {ALERT_ID: AlertFacts(ALERT_ID, "alpha", KEY, "phishing", "urlhaus", "owner", SENT,
                               "2026-01-01T12:00:00+00:00")}


def report(status="acknowledged", time="2026-01-01T01:00:00+00:00", **extra):
    return {"alert_id": ALERT_ID, "recipient": "alpha", "status": status, "time": time, **extra}


def judged(feedback, statuses=None, key=ALERT_ID, sender=None):
    return judge_feedback(feedback, key, LEDGER, statuses or {}, NOW, sender=sender)


def test_a_first_report_sets_the_status_and_its_times():
    status = judged(report(note=" on it "))
    assert status == AlertStatus(ALERT_ID, "alpha", KEY, "acknowledged",
                                 "2026-01-01T01:00:00+00:00",
                                 acknowledged_at="2026-01-01T01:00:00+00:00", note="on it")


def test_the_next_report_moves_the_status_on_and_keeps_the_first_acknowledgement():
    first = judged(report())
    done = judged(report("remediated", "2026-01-01T05:00:00+00:00"), {ALERT_ID: first})
    assert (done.status, done.acknowledged_at, done.remediated_at) == (
        "remediated", "2026-01-01T01:00:00+00:00", "2026-01-01T05:00:00+00:00")


def test_a_duplicate_report_is_refused_not_counted_twice():
    first = judged(report())
    with pytest.raises(InvalidRecord, match="already acknowledged") as refused:
        judged(report(), {ALERT_ID: first})
    assert refused.value.field == "status"


def test_a_final_status_cannot_be_left():
    closed = judged(report("false_positive"))
    with pytest.raises(InvalidRecord, match="cannot go from false_positive"):
        judged(report("in_progress"), {ALERT_ID: closed})


@pytest.mark.parametrize(("feedback", "key", "field"), [
    (report() | {"alert_id": "B" * 22}, None, "alert_id"),          # not in the ledger
    (report() | {"recipient": "beta"}, ALERT_ID, "recipient"),      # someone else's alert
    (report(), "B" * 22, "alert_id"),                               # key is not the alert id
    (["not", "an", "object"], None, None),
])
def test_reports_that_do_not_fit_the_ledger_are_refused(feedback, key, field):
    with pytest.raises(InvalidRecord) as refused:
        judged(feedback, key=key)
    assert refused.value.field == field


def test_a_report_on_a_recipients_own_topic_speaks_for_that_recipient_only():
    assert judged(report(), sender="alpha").status == "acknowledged"
    unnamed = {k: v for k, v in report().items() if k != "recipient"}
    assert judged(unnamed, sender="alpha").recipient == "alpha"
    with pytest.raises(InvalidRecord, match="feedback topic of 'beta'") as refused:
        judged(report(), sender="beta")
    assert refused.value.field == "recipient"
    # naming itself does not make an alert sent to someone else its own
    with pytest.raises(InvalidRecord, match="not sent to recipient 'beta'"):
        judged(unnamed, sender="beta")


def test_a_report_time_before_the_alert_is_clamped_to_when_it_was_sent():
    status = judged(report(time="2025-12-31T00:00:00+00:00"))
    assert status.updated_at == status.acknowledged_at == SENT


def test_the_feedback_pattern_takes_every_recipients_topic_and_not_the_dead_letters():
    import re

    from threatroute import topics

    pattern = re.compile(topics.FEEDBACK_PATTERN)
    for name in ("feedback.examplehost", "feedback.i", "feedback.inval", "feedback.invalid-co",
                 "feedback.invalids", "feedback.x-invalid"):
        assert pattern.match(name), name
    for name in (topics.FEEDBACK_INVALID, topics.FEEDBACK, "feedback.", "alerts.feedback.a"):
        assert not pattern.match(name), name

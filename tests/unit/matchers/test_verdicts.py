"""Feedback rules per (recipient, indicator), with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from threatroute.matchers.dedup import Action, DedupPolicy, decide
from threatroute.matchers.verdicts import FeedbackPolicy, Gate, Verdict, judge, merge, obsolete

T0 = datetime(2026, 3, 1, tzinfo=UTC)
POLICY = FeedbackPolicy(false_positive_mute=timedelta(days=30))
KEY = "k" * 32


def verdict(status, at=T0, alert_id="a1", note=None):
    return Verdict("hoster", KEY, alert_id, status, at.isoformat(), note)


def test_no_verdict_leaves_dedup_alone():
    j = judge(None, "a1", T0, POLICY)
    assert j.gate is Gate.NORMAL and j.action(Action.RENOTIFY) is Action.RENOTIFY


def test_false_positive_mutes_the_recipient_for_the_configured_time_then_starts_afresh():
    v = verdict("false_positive")
    inside = judge(v, "a1", T0 + timedelta(days=29, hours=23), POLICY)
    assert inside.gate is Gate.MUTED and inside.gate.blocks and "false positive" in inside.reason
    after = judge(v, "a1", T0 + timedelta(days=30), POLICY)
    assert after.gate is Gate.FRESH and not after.gate.blocks
    # the mute is about the indicator, not the alert: a different alert id is muted too
    assert judge(v, "other", T0 + timedelta(days=1), POLICY).gate is Gate.MUTED
    # once a new alert replaced the muted one the report no longer says anything
    assert judge(v, "a2", T0 + timedelta(days=31), POLICY).gate is Gate.NORMAL


def test_the_mute_time_is_configurable():
    short = FeedbackPolicy(false_positive_mute=timedelta(hours=1))
    assert judge(verdict("false_positive"), "a1", T0 + timedelta(hours=2), short).gate is Gate.FRESH


def test_not_ours_blocks_that_recipient_for_good():
    v = verdict("not_ours", note="sold to another hoster")
    for later in (timedelta(0), timedelta(days=400)):
        j = judge(v, "a1", T0 + later, POLICY)
        assert j.gate is Gate.NOT_OURS and j.gate.blocks
    assert judge(v, None, T0 + timedelta(days=999), POLICY).gate is Gate.NOT_OURS


def test_remediated_stops_renotification_and_a_later_sighting_is_a_recurrence():
    dedup = DedupPolicy(window=timedelta(days=7), renotify=timedelta(days=1))
    _, state = decide(None, "hoster", KEY, T0, dedup)
    v = verdict("remediated", at=T0 + timedelta(days=2), alert_id=state.alert_id)
    # a late sighting from before the remediation (sighting time, not processing time)
    early = T0 + timedelta(days=1, hours=12)
    j = judge(v, state.alert_id, early, POLICY)
    assert j.gate is Gate.QUIET and j.remediated_at == v.at
    action, _ = decide(state, "hoster", KEY, early, dedup, j.remediated_at)
    assert action is Action.RENOTIFY and j.action(action) is Action.REPEAT
    # a sighting after the remediation is a recurrence, as before
    late = T0 + timedelta(days=3)
    action, fresh = decide(state, "hoster", KEY, late, dedup,
                           judge(v, state.alert_id, late, POLICY).remediated_at)
    assert action is Action.RECURRENCE and fresh.recurrence
    # the recurrence's alert starts clean: the old report no longer applies
    assert judge(v, fresh.alert_id, late, POLICY).gate is Gate.NORMAL


def test_wont_fix_stops_renotification_but_keeps_counting():
    j = judge(verdict("wont_fix"), "a1", T0 + timedelta(days=3), POLICY)
    assert j.gate is Gate.QUIET and not j.gate.blocks
    assert j.action(Action.RENOTIFY) is Action.REPEAT
    assert j.action(Action.REPEAT) is Action.REPEAT


def test_acknowledged_and_in_progress_still_get_reminders():
    for status in ("acknowledged", "in_progress"):
        j = judge(verdict(status), "a1", T0 + timedelta(days=3), POLICY)
        assert j.gate is Gate.NORMAL and j.action(Action.RENOTIFY) is Action.RENOTIFY


def test_merge_keeps_not_ours_and_ignores_late_reports_about_older_alerts():
    ack = verdict("acknowledged", T0, "a1")
    fixed = verdict("remediated", T0 + timedelta(hours=1), "a1")
    assert merge(None, ack) == ack and merge(ack, fixed) == fixed
    newer = verdict("acknowledged", T0 + timedelta(days=2), "a2")
    assert merge(newer, verdict("wont_fix", T0 + timedelta(days=1), "a1")) == newer
    gone = verdict("not_ours", T0, "a1")
    assert merge(gone, verdict("acknowledged", T0 + timedelta(days=5), "a9")) == gone


def test_obsolete_verdicts_can_be_forgotten():
    assert obsolete(verdict("remediated"), "a2", T0, POLICY)
    assert not obsolete(verdict("remediated"), "a1", T0, POLICY)
    # a not_ours is kept as long as the policy says ([state] alert_days), then forgotten
    assert not obsolete(verdict("not_ours"), None, T0 + timedelta(days=179), POLICY)
    assert obsolete(verdict("not_ours"), None, T0 + timedelta(days=180), POLICY)
    fp = verdict("false_positive")
    assert not obsolete(fp, None, T0 + timedelta(days=29), POLICY)
    assert obsolete(fp, None, T0 + timedelta(days=30), POLICY)


def test_verdict_round_trips_through_json():
    v = verdict("not_ours", note="n")
    assert Verdict.from_json({**v.to_json(), "future": 1}) == v

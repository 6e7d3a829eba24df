"""Bounded state: which rows the stateful stages forget, given the rows and the time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threatroute.errors import ConfigError
from threatroute.expiry import StateWindows, expired_alerts, last_event, stale_remediations
from threatroute.matchers.acting import FeedbackRouting, pair
from threatroute.matchers.dedup import AlertState
from threatroute.matchers.escalation import EscalationPolicy
from threatroute.matchers.index import MatchIndex
from threatroute.matchers.rules import RoutingRules, rules_from
from threatroute.matchers.verdicts import FeedbackPolicy, Gate
from threatroute.outcomes import AlertFacts, AlertStatus
from threatroute.streams.config import load_config

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
KEY = "k" * 32


def at(offset: timedelta) -> str:
    return (T0 + offset).isoformat()


def facts(alert_id: str, last_seen: timedelta) -> AlertFacts:
    return AlertFacts(alert_id, "hoster", KEY, "phishing", "feed", "owner", at(-DAY),
                      at(last_seen))


def status(alert_id: str, updated: timedelta) -> AlertStatus:
    return AlertStatus(alert_id, "hoster", KEY, "acknowledged", at(updated))


def test_an_alert_goes_when_neither_a_sighting_nor_a_report_is_recent():
    ledger = {"quiet": facts("quiet", timedelta(0)), "seen": facts("seen", 5 * DAY),
              "answered": facts("answered", timedelta(0))}
    statuses = {"answered": status("answered", 6 * DAY),
                "orphan": status("orphan", timedelta(0))}  # its ledger row went before
    now = T0 + 10 * DAY
    assert sorted(expired_alerts(ledger, statuses, now, 7 * DAY)) == ["orphan", "quiet"]
    assert sorted(expired_alerts(ledger, statuses, now, 3 * DAY)) == sorted(
        [*ledger, "orphan"])
    assert expired_alerts(ledger, statuses, now, 11 * DAY) == []
    # exactly at the window's edge it stays (older than the window goes)
    assert expired_alerts(ledger, {}, T0 + 7 * DAY, 7 * DAY) == []
    assert last_event(ledger["answered"], statuses["answered"]) == at(6 * DAY)
    assert last_event(None, None) == ""


def test_times_with_fractions_compare_with_the_cutoff():
    ledger = {"a": AlertFacts("a", "h", KEY, "c", None, "owner", at(timedelta(0)),
                              (T0 + timedelta(microseconds=5)).isoformat())}
    assert expired_alerts(ledger, {}, T0 + DAY + timedelta(seconds=1), DAY) == ["a"]
    assert expired_alerts(ledger, {}, T0 + DAY, DAY) == []


def test_remediations_older_than_the_dedup_window_are_stale():
    remediated = {"old": at(timedelta(0)), "new": at(6 * DAY), "none": None}
    assert sorted(stale_remediations(remediated, T0 + 8 * DAY, 7 * DAY)) == ["none", "old"]
    assert stale_remediations({"new": at(6 * DAY)}, T0 + 8 * DAY, 7 * DAY) == []


def test_not_ours_verdicts_are_forgotten_after_alert_days_and_route_to_the_reporter_again():
    index = MatchIndex.build([], default_tlp="AMBER")
    rules = RoutingRules(feedback=FeedbackPolicy(not_ours_kept=30 * DAY))
    acting = FeedbackRouting(rules)
    acting.restore(0, {}, {}, {})
    report = {"alert_id": "A" * 22, "recipient": "hoster", "indicator_key": KEY,
              "status": "not_ours", "at": at(timedelta(0)), "note": None, "feed": "f",
              "first": True}
    acting.on_feedback(0, report, index, {}, lambda rid: "json", T0)
    assert acting.not_owners(0, KEY) == {"hoster"}
    assert acting.tick(T0 + 29 * DAY, index, {0: {}}) == []
    out = acting.tick(T0 + 30 * DAY, index, {0: {}})
    assert [(e.topic, e.key, e.value) for e in out] == [
        ("match.verdicts", pair("hoster", KEY), None)]
    assert acting.not_owners(0, KEY) == frozenset()
    assert acting.judge(0, "hoster", KEY, None, T0 + 31 * DAY).gate is Gate.NORMAL
    assert acting.sizes()["match.verdicts"] == 0


def test_watched_alerts_never_closed_are_forgotten_after_watch_days():
    index = MatchIndex.build([], default_tlp="AMBER")
    rules = RoutingRules(escalation=EscalationPolicy({"c2-server": timedelta(hours=1)}),
                         state=StateWindows(watch=10 * DAY))
    acting = FeedbackRouting(rules)
    acting.restore(0, {}, {}, {})
    state = AlertState("A" * 22, "gone", KEY, at(timedelta(0)), at(timedelta(0)),
                       at(timedelta(0)), 1)
    # an escalating classification whose owner left the registry: kept until the window
    acting.watch(0, state, {"classification": {"type": "c2-server"}}, T0)
    assert acting.sizes()["match.watch"] == 1
    assert acting.tick(T0 + 9 * DAY, index) == []
    out = acting.tick(T0 + 10 * DAY + timedelta(seconds=1), index)
    assert [(e.topic, e.key, e.value) for e in out] == [("match.watch", "A" * 22, None)]
    assert acting.sizes()["match.watch"] == 0


def test_state_section_sets_the_windows_and_refuses_nonsense(tmp_path):
    rules = rules_from({"state": {"expiry_seconds": 0.5, "alert_days": 0.001,
                                  "watch_days": 2}})
    assert rules.state == StateWindows(timedelta(seconds=0.5), timedelta(days=0.001), 2 * DAY)
    assert rules.feedback.not_ours_kept == timedelta(days=0.001)
    assert rules_from({}).state == StateWindows()
    for bad in ({"alert_days": 0}, {"watch_days": "x"}, {"expiry_seconds": -1},
                {"alert_days": True}):
        with pytest.raises(ConfigError, match="state"):
            rules_from({"state": bad})
    # the feedback stage must not forget a ledger row the match stage may still update
    short = tmp_path / "short.toml"
    short.write_text("[match]\ndedup_window_hours = 48\n[state]\nalert_days = 1\n")
    with pytest.raises(ConfigError, match="alert_days"):
        load_config(short)


def test_compaction_settings_reach_the_topic_configs(tmp_path):
    custom = tmp_path / "compact.toml"
    custom.write_text('[topics."match.state"]\ncleanup_policy = "compact,delete"\n'
                      "segment_ms = 2000\nmin_cleanable_dirty_ratio = 0.01\n"
                      "delete_retention_ms = 100\n")
    spec = load_config(custom).topic("match.state")
    assert spec.configs == {"retention.ms": "604800000", "cleanup.policy": "compact,delete",
                            "segment.ms": "2000", "min.cleanable.dirty.ratio": "0.01",
                            "delete.retention.ms": "100"}
    # the packaged configuration keeps Kafka's defaults
    assert "segment.ms" not in load_config().topic("match.state").configs


def test_the_match_stage_s_remediation_view_forgets_stale_remediations():
    from threatroute.streams.runtime.views import CompactedView, json_fold

    view: CompactedView[str] = CompactedView(load_config(), "alerts.status", json_fold(str))
    view.state.update({"old": at(timedelta(0)), "new": at(6 * DAY)})  # as folded (no broker)
    assert view.forget(lambda rows: stale_remediations(rows, T0 + 8 * DAY, 7 * DAY)) == 1
    assert len(view) == 1 and view.get("new") == at(6 * DAY) and view.get("old") is None

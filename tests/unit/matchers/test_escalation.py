"""Escalation when the owner does not acknowledge, with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from threatroute.matchers.escalation import (
    EscalationPolicy,
    Watched,
    due,
    escalate,
    escalation_alert,
    finished,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
POLICY = EscalationPolicy({"c2-server": timedelta(hours=24)}, default=None)
SUBS = {("asn", 64500): ["upstream", "examplehost", "other-isp"],
        ("country", "GB"): ["cert-gb", "upstream"]}


def watched(status=None, classification="c2-server", **over):
    base = Watched("A" * 22, "examplehost", "k" * 32, classification, T0.isoformat(),
                   {"classification": {"type": classification},
                    "source": {"ip": "192.0.2.15", "asn": 64500, "geolocation": {"cc": "GB"}}},
                   status=status)
    return base if not over else Watched.from_json({**base.to_json(), **over})


def run(w, at, allowed=lambda rid: rid != "other-isp"):
    return escalate(w, at, POLICY, lambda kind, key: SUBS.get((kind, key), []), allowed)


def test_nothing_before_the_deadline():
    assert due(watched(), T0 + timedelta(hours=23, minutes=59), POLICY) is None
    assert run(watched(), T0 + timedelta(hours=23)) is None


def test_unacknowledged_goes_to_the_upstream_then_to_the_cert_each_once():
    first = run(watched(), T0 + timedelta(hours=24))
    assert first.level == 1 and first.recipients == ("upstream",)  # not the owner, not filtered
    # due again only at the next level's time
    assert run(first.watched, T0 + timedelta(hours=47)) is None
    second = run(first.watched, T0 + timedelta(hours=48))
    assert second.level == 2 and second.recipients == ("cert-gb",)  # upstream was told already
    assert second.watched.escalated_to == ("upstream", "cert-gb")
    assert run(second.watched, T0 + timedelta(days=30)) is None
    assert finished(second.watched, POLICY)


def test_acknowledgement_stops_the_ladder_and_wont_fix_counts_as_none():
    for status in ("acknowledged", "in_progress", "remediated", "false_positive", "not_ours"):
        assert run(watched(status), T0 + timedelta(days=3)) is None
    stuck = run(watched("wont_fix"), T0 + timedelta(hours=25))
    assert stuck is not None and stuck.recipients == ("upstream",)
    first = run(watched(), T0 + timedelta(hours=24))
    assert run(first.watched.reported("acknowledged"), T0 + timedelta(hours=49)) is None
    assert run(first.watched.reported("wont_fix"), T0 + timedelta(hours=49)).level == 2


def test_a_level_with_nobody_to_tell_is_passed_over():
    lonely = watched(indicator={"source": {"ip": "192.0.2.1", "asn": 64999,
                                           "geolocation": {"cc": "GB"}}})
    first = run(lonely, T0 + timedelta(hours=30))
    assert first.level == 1 and first.recipients == ()
    # upstream subscribes to GB as well and was not told at level 1
    assert run(first.watched, T0 + timedelta(hours=48)).recipients == ("cert-gb", "upstream")


def test_classifications_without_a_deadline_never_escalate():
    assert run(watched(classification="phishing"), T0 + timedelta(days=99)) is None
    assert finished(watched(classification="phishing"), POLICY)
    everything = EscalationPolicy({}, default=timedelta(hours=1))
    assert due(watched(classification="phishing"), T0 + timedelta(hours=1), everything) == 1


def test_the_escalation_alert_names_the_original_recipient_and_how_long_it_is_open():
    w = watched("wont_fix")
    alert = escalation_alert(w, 1, "upstream", "B" * 22, T0 + timedelta(hours=30), POLICY)
    assert alert["notification"] == "escalation" and alert["recipient"] == "upstream"
    assert alert["escalation"] == {"level": 1, "kind": "upstream",
                                   "original_recipient": "examplehost",
                                   "open_since": T0.isoformat(), "open_hours": 30.0,
                                   "owner_status": "wont_fix"}
    assert "open for 30.0h" in alert["reasons"][0] and "examplehost" in alert["reasons"][0]
    assert "(acknowledge within 24h)" in alert["reasons"][0]
    assert alert["alert_id"] != w.alert_id and w.alert_id not in str(alert)


def test_watched_round_trips_through_json():
    w = watched("acknowledged", level=1, escalated_to=("upstream",))
    assert Watched.from_json(w.to_json()) == w

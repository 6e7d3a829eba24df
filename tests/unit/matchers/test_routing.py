"""Routing one enriched record against the index and the alert states, without a broker:
what is sent, what the ledger records, which states change (new, repeat, renotify,
recurrence, expiry)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threatroute.enrichers.hoster import enrich_owner
from threatroute.matchers.dedup import Action, AlertState, DedupPolicy
from threatroute.matchers.index import MatchIndex
from threatroute.matchers.routing import expired_keys, route, state_key
from threatroute.registry import load_registry

REGISTRY = """
recipients:
  - id: hoster
    name: Hoster Ltd
    owns: {prefixes: [192.0.2.0/24]}
  - id: cert-gb
    name: CERT-GB
    subscribe: {countries: [GB]}
"""
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
POLICY = DedupPolicy(window=timedelta(days=7), renotify=timedelta(days=1))
KEY = "k" * 32


@pytest.fixture(scope="module")
def index() -> MatchIndex:
    return MatchIndex.build(load_registry(REGISTRY))


@pytest.fixture(scope="module")
def record(index) -> dict:
    rec = {"classification": {"type": "c2-server"}, "tlp": "CLEAR",
           "source": {"ip": "192.0.2.10", "geolocation": {"cc": "GB"}},
           "time": {"observation": "2026-03-01T11:00:00+00:00"}}
    return enrich_owner(rec, index.ownership)


class Table:
    """The stage's side in miniature: apply each delivery's state, as the stage does."""

    def __init__(self) -> None:
        self.states: dict[str, AlertState] = {}
        self.remediated: dict[str, str] = {}

    def sight(self, index, record, at):
        deliveries = route(record, KEY, index, self.states, self.remediated.get, at, POLICY)
        for delivery in deliveries:
            self.states[delivery.key] = delivery.state
        return {d.recipient: d for d in deliveries}


def test_first_sighting_sends_a_new_alert_to_owner_and_subscriber(index, record):
    table = Table()
    sent = table.sight(index, record, T0)
    assert set(sent) == {"hoster", "cert-gb"}
    hoster = sent["hoster"]
    assert hoster.action is Action.NEW and hoster.notifies
    assert hoster.key == state_key("hoster", KEY) == f"hoster|{KEY}"
    # the ledger record: the alert as the recipient gets it, stamped without microseconds
    assert hoster.alert["alert_id"] == hoster.state.alert_id
    assert hoster.alert["recipient"] == "hoster" and hoster.alert["indicator_key"] == KEY
    assert hoster.alert["notification"] == "new" and hoster.alert["count"] == 1
    assert hoster.alert["sent_at"] == "2026-03-01T12:00:00+00:00"
    assert hoster.alert["reasons"] == ["owner (prefix 192.0.2.0/24)"]
    assert hoster.alert["indicator"] == record
    assert sent["cert-gb"].alert["reasons"] == ["subscribed country GB"]
    assert hoster.state.alert_id != sent["cert-gb"].state.alert_id
    assert set(table.states) == {f"hoster|{KEY}", f"cert-gb|{KEY}"}


def test_repeat_inside_the_window_updates_the_ledger_and_state_but_sends_nothing(index, record):
    table = Table()
    first = table.sight(index, record, T0)["hoster"]
    again = table.sight(index, record, T0 + timedelta(hours=3))["hoster"]
    assert again.action is Action.REPEAT and not again.notifies
    assert again.state.alert_id == first.state.alert_id
    assert (again.state.count, again.alert["count"]) == (2, 2)
    assert again.alert["notification"] == "repeat"
    assert again.state.last_notified == first.state.last_notified
    assert table.states[again.key].last_seen == "2026-03-01T15:00:00+00:00"


def test_still_seen_after_the_renotify_interval_is_sent_again_as_the_same_alert(index, record):
    table = Table()
    first = table.sight(index, record, T0)["hoster"]
    later = table.sight(index, record, T0 + timedelta(days=1, hours=1))["hoster"]
    assert later.action is Action.RENOTIFY and later.notifies
    assert later.state.alert_id == first.state.alert_id
    assert later.state.last_notified == "2026-03-02T13:00:00+00:00"
    assert later.alert["notification"] == "renotify" and later.alert["count"] == 2


def test_seen_after_remediation_is_a_recurrence_with_a_new_alert_id(index, record):
    table = Table()
    first = table.sight(index, record, T0)["hoster"]
    table.remediated[first.state.alert_id] = "2026-03-01T18:00:00+00:00"
    back = table.sight(index, record, T0 + timedelta(hours=8))
    hoster, cert = back["hoster"], back["cert-gb"]
    assert hoster.action is Action.RECURRENCE and hoster.notifies
    assert hoster.state.alert_id != first.state.alert_id and hoster.state.recurrence
    assert hoster.alert["recurrence"] is True and hoster.alert["count"] == 1
    # only the alert reported remediated recurs; the subscriber's alert repeats
    assert cert.action is Action.REPEAT
    # a remediation reported after the sighting is not a recurrence yet
    table.remediated[hoster.state.alert_id] = "2026-03-09T00:00:00+00:00"
    assert table.sight(index, record, T0 + timedelta(hours=9))["hoster"].action is Action.REPEAT


def test_a_gap_longer_than_the_window_starts_a_new_alert(index, record):
    table = Table()
    first = table.sight(index, record, T0)["hoster"]
    fresh = table.sight(index, record, T0 + timedelta(days=8))["hoster"]
    assert fresh.action is Action.NEW and fresh.state.alert_id != first.state.alert_id


def test_an_unmatched_record_changes_nothing(index):
    table = Table()
    stray = {"classification": {"type": "scanner"}, "tlp": "CLEAR",
             "source": {"ip": "198.51.100.1"}}
    assert table.sight(index, stray, T0) == {} and table.states == {}


def test_states_unseen_for_the_window_expire(index, record):
    table = Table()
    table.sight(index, record, T0)
    assert expired_keys(table.states, T0 + timedelta(days=6), POLICY) == []
    assert sorted(expired_keys(table.states, T0 + timedelta(days=7, seconds=1), POLICY)) == [
        f"cert-gb|{KEY}", f"hoster|{KEY}"]

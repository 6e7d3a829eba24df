"""The match stage's feedback decisions over its tables, with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from threatroute import topics
from threatroute.matchers.acting import FeedbackRouting, pair
from threatroute.matchers.dedup import AlertState
from threatroute.matchers.escalation import EscalationPolicy
from threatroute.matchers.index import MatchIndex
from threatroute.matchers.rules import RoutingRules
from threatroute.matchers.verdicts import Gate
from threatroute.registry import load_registry

T0 = datetime(2026, 3, 1, tzinfo=UTC)
KEY = "k" * 32
INDEX = MatchIndex.build(load_registry("""
recipients:
  - {id: big, name: Big, owns: {prefixes: [198.18.11.0/24], asns: [64611]}, tlp_clearance: amber}
  - {id: reseller, name: R, owns: {prefixes: [198.18.11.64/26]}, tlp_clearance: amber}
  - {id: upstream, name: U, subscribe: {asns: [64611]}, classifications: [ddos],
     tlp_clearance: amber}
  - {id: cert, name: C, subscribe: {countries: [GB]}, classifications: [ddos],
     tlp_clearance: amber}
  - {id: bystander, name: B, subscribe: {countries: [NL]}, tlp_clearance: amber}
"""))
RECORD = {"classification": {"type": "c2-server"}, "tlp": "GREEN",
          "source": {"ip": "198.18.11.70", "port": 443, "asn": 64611,
                     "geolocation": {"cc": "GB"}},
          "extra": {"owner": {"id": "reseller", "name": "R", "rule": "prefix 198.18.11.64/26"}},
          "feed": {"name": "c2", "accuracy": 90}}


def setup():
    rules = RoutingRules(escalation=EscalationPolicy({"c2-server": timedelta(hours=1)}))
    acting = FeedbackRouting(rules)
    acting.restore(0, {}, {}, {})
    state = AlertState("A" * 22, "reseller", KEY, T0.isoformat(), T0.isoformat(),
                       T0.isoformat(), 1)
    states = {pair("reseller", KEY): state}
    acting.watch(0, state, RECORD, T0)
    return acting, states


def report(status, first=True, recipient="reseller", alert_id="A" * 22, note=None):
    return {"alert_id": alert_id, "recipient": recipient, "indicator_key": KEY,
            "status": status, "at": (T0 + timedelta(minutes=5)).isoformat(), "note": note,
            "feed": "c2", "first": first}


def test_not_ours_reroutes_to_the_next_owner_records_a_correction_and_blocks_the_reporter():
    acting, states = setup()
    out = acting.on_feedback(0, report("not_ours", note="returned block"), INDEX, states,
                             lambda rid: "json", T0 + timedelta(minutes=5))
    sent = [e for e in out if e.alert]
    assert [e.topic for e in sent] == [topics.alerts_topic("big")]
    assert sent[0].value["reasons"][0].startswith("rerouted: reseller reported it is not theirs "
                                                  "(returned block); next owner by prefix")
    assert sent[0].value["notification"] == "reroute"
    corrections = [e.value for e in out if e.topic == topics.CORRECTIONS]
    assert corrections[0]["locator"] == "198.18.11.70/32" and corrections[0]["next_owner"] == "big"
    assert acting.not_owners(0, KEY) == {"reseller"}
    assert acting.judge(0, "reseller", KEY, None, T0 + timedelta(days=99)).gate is Gate.NOT_OURS
    assert pair("big", KEY) in states and acting.events["rerouted"] == 1
    # the new owner's alert is watched; the reporter's is not any more
    assert set(acting.watched[0]) == {states[pair("big", KEY)].alert_id}
    # routing the next sighting: the reporter is no longer the owner
    assert [m.recipient_id for m in INDEX.match(RECORD, acting.not_owners(0, KEY))] == ["big"]


def test_unacknowledged_owner_alert_escalates_to_upstream_then_cert_only():
    acting, _ = setup()
    assert acting.tick(T0 + timedelta(minutes=59), INDEX) == []
    first = [e for e in acting.tick(T0 + timedelta(hours=1), INDEX) if e.alert]
    assert [e.topic for e in first] == [topics.alerts_topic("upstream")]
    assert first[0].value["escalation"]["original_recipient"] == "reseller"
    assert acting.tick(T0 + timedelta(hours=1, minutes=30), INDEX) == []
    second = [e for e in acting.tick(T0 + timedelta(hours=2), INDEX) if e.alert]
    assert [e.topic for e in second] == [topics.alerts_topic("cert")]
    assert acting.events["escalated"] == 2 and not acting.watched[0]


def test_acknowledgement_stops_escalation_and_feedback_counts_per_feed():
    acting, states = setup()
    out = acting.on_feedback(0, report("acknowledged"), INDEX, states, lambda r: "json", T0)
    trust = [e for e in out if e.topic == topics.MATCH_TRUST]
    assert trust[0].key == "c2|0" and trust[0].value["answered"] == 1
    assert acting.tick(T0 + timedelta(hours=5), INDEX) == []
    acting.on_feedback(0, report("false_positive", first=False), INDEX, states,
                       lambda r: "json", T0)
    assert acting.counts[0]["c2"].false_positive == 1 and acting.counts[0]["c2"].answered == 1
    acting.learn({"c2|0": {"feed": "c2", "answered": 1, "false_positive": 1},
                  "c2|1": {"feed": "c2", "answered": 9, "false_positive": 5}})
    assert acting.trust.feeds["c2"].counts.answered == 10
    assert acting.judge(0, "reseller", KEY, states[pair("reseller", KEY)],
                        T0 + timedelta(days=1)).gate is Gate.MUTED

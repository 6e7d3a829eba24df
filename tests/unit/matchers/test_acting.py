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


# -- routing a sighting: screening, verdict gates, dedup on the sighting's own time ------------

from threatroute.matchers.dedup import DedupPolicy  # noqa: E402
from threatroute.matchers.suppression import load_suppressions  # noqa: E402
from threatroute.matchers.verdicts import FeedbackPolicy  # noqa: E402
from threatroute.record import indicator_key, normalise_indicator  # noqa: E402

POLICY = DedupPolicy(timedelta(days=7), timedelta(hours=1))


def sighting(seen, **changes):
    record = {**RECORD, **changes, "time": {"source": seen.isoformat()}}
    return normalise_indicator(record)


def routing(**rules):
    acting = FeedbackRouting(RoutingRules(**rules), load_suppressions(
        "suppressions:\n  - addresses: [198.18.11.99]\n    reason: our sinkhole\n"
        "    expires: 2027-01-01T00:00:00Z\n"))
    acting.restore(0, {}, {}, {})
    return acting


def alerts_of(routed):
    return [(e.topic.removeprefix(topics.ALERTS_PREFIX), e.value["notification"])
            for e in routed.emits if e.alert]


def test_five_sinkhole_rows_on_five_source_ports_are_one_alert_with_count_5():
    acting, states = routing(), {}
    bot = {"classification": {"type": "infected-system"}, "tlp": "AMBER",
           "feed": {"name": "sinkhole", "accuracy": 95}, "extra": {}}
    rows = [sighting(T0, **bot, source={"ip": "198.18.11.50", "port": port, "asn": 64611})
            for port in (49152, 49877, 51003, 55210, 61444)]
    assert len({indicator_key(r) for r in rows}) == 1
    results = [acting.route(0, r, indicator_key(r), INDEX, states, lambda a: None, T0, POLICY)
               for r in rows]
    assert [alerts_of(r) for r in results] == [[("big", "new")], [], [], [], []]
    ledger = [e.value for r in results for e in r.emits if e.topic == topics.LEDGER]
    assert {v["alert_id"] for v in ledger} == {ledger[0]["alert_id"]} and ledger[-1]["count"] == 5
    # a C2 is taken down by its port: two ports, two indicators
    c2 = [sighting(T0, source={"ip": "198.18.11.10", "port": p}) for p in (443, 8443)]
    assert len({indicator_key(r) for r in c2}) == 2


def test_suppressed_offline_and_expired_records_are_counted_not_routed():
    acting, states = routing(), {}
    cases = {"suppressed": sighting(T0, source={"ip": "198.18.11.99"}),
             "offline": sighting(T0, status="offline"),
             "expired": sighting(T0, extra={"valid_until": (T0 - timedelta(days=1)).isoformat()})}
    for reason, record in cases.items():
        routed = acting.route(0, record, KEY, INDEX, states, lambda a: None, T0, POLICY)
        assert routed.emits == [] and routed.counts == {reason: 1}
    assert states == {}


def test_false_positive_mutes_that_recipient_for_the_configured_time_then_a_new_alert():
    acting = routing(feedback=FeedbackPolicy(timedelta(days=2)))
    states = {}
    first = acting.route(0, sighting(T0), KEY, INDEX, states, lambda a: None, T0, POLICY)
    assert alerts_of(first) == [("reseller", "new")]
    old = states[pair("reseller", KEY)].alert_id
    acting.on_feedback(0, {**report("false_positive"), "alert_id": old}, INDEX, states,
                       lambda r: "json", T0)
    day = T0 + timedelta(days=1)
    muted = acting.route(0, sighting(day), KEY, INDEX, states, lambda a: None, day, POLICY)
    assert muted.emits == [] and muted.counts == {"muted": 1}
    later = T0 + timedelta(days=3)
    fresh = acting.route(0, sighting(later), KEY, INDEX, states, lambda a: None, later, POLICY)
    assert alerts_of(fresh) == [("reseller", "new")]
    assert states[pair("reseller", KEY)].alert_id != old


def test_remediated_is_not_renotified_and_recurrence_goes_by_the_sightings_own_time():
    acting, states = routing(), {}
    acting.route(0, sighting(T0), KEY, INDEX, states, lambda a: None, T0, POLICY)
    aid = states[pair("reseller", KEY)].alert_id
    fixed = T0 + timedelta(hours=2)
    acting.on_feedback(0, {**report("remediated"), "alert_id": aid,
                           "at": fixed.isoformat()}, INDEX, states, lambda r: "json", fixed)
    # a delayed feed's row, seen before the remediation but processed after: no alert, no
    # recurrence (the old clock-based rule would have called it one)
    late = T0 + timedelta(hours=5)
    stale = acting.route(0, sighting(T0 + timedelta(hours=1, minutes=30)), KEY, INDEX, states,
                         lambda a: None, late, POLICY)
    assert alerts_of(stale) == [] and stale.counts == {"quiet": 1, "repeat": 1}
    again = acting.route(0, sighting(T0 + timedelta(hours=3)), KEY, INDEX, states,
                         lambda a: None, late, POLICY)
    assert alerts_of(again) == [("reseller", "recurrence")]


def test_wont_fix_keeps_counting_in_the_ledger_but_never_renotifies():
    acting, states = routing(), {}
    acting.route(0, sighting(T0), KEY, INDEX, states, lambda a: None, T0, POLICY)
    aid = states[pair("reseller", KEY)].alert_id
    acting.on_feedback(0, {**report("wont_fix"), "alert_id": aid}, INDEX, states,
                       lambda r: "json", T0)
    for hours in (2, 4, 6):
        now = T0 + timedelta(hours=hours)
        routed = acting.route(0, sighting(now), KEY, INDEX, states, lambda a: None, now, POLICY)
        assert alerts_of(routed) == [] and routed.counts == {"quiet": 1, "repeat": 1}
    assert states[pair("reseller", KEY)].count == 4


def test_not_ours_routes_the_next_sightings_to_the_next_owner_and_counts_the_reporter():
    acting, states = routing(), {}
    acting.route(0, sighting(T0), KEY, INDEX, states, lambda a: None, T0, POLICY)
    aid = states[pair("reseller", KEY)].alert_id
    out = acting.on_feedback(0, {**report("not_ours"), "alert_id": aid}, INDEX, states,
                             lambda r: "json", T0)
    assert [e.topic for e in out if e.alert] == [topics.alerts_topic("big")]
    later = T0 + timedelta(hours=2)
    routed = acting.route(0, sighting(later), KEY, INDEX, states, lambda a: None, later, POLICY)
    assert alerts_of(routed) == [("big", "renotify")] and routed.counts["not_ours"] == 1


def test_a_noisy_feeds_records_fall_below_min_confidence_and_a_good_one_stays():
    index = MatchIndex.build(load_registry("""
recipients:
  - {id: big, name: Big, owns: {prefixes: [198.18.11.0/24]}, min_confidence: 50,
     tlp_clearance: amber}
"""))
    acting, states = routing(), {}
    acting.learn({"noisy|0": {"feed": "noisy", "answered": 15, "false_positive": 6},
                  "good|0": {"feed": "good", "answered": 40, "false_positive": 1}})
    noisy = sighting(T0, feed={"name": "noisy", "accuracy": 70})
    good = sighting(T0, feed={"name": "good", "accuracy": 70})
    assert acting.route(0, noisy, KEY, index, states, lambda a: None, T0, POLICY).emits == []
    routed = acting.route(0, good, "g" * 32, index, states, lambda a: None, T0, POLICY)
    assert alerts_of(routed) == [("big", "new")]
    sent = next(e.value for e in routed.emits if e.alert)
    assert sent["indicator"]["feed"]["accuracy"] == round(70 * (1 - 1 / 45), 2)
    assert sent["indicator"]["extra"]["trust"]["feed_accuracy"] == 70


def test_an_alert_of_a_recipient_no_longer_registered_is_not_escalated():
    acting, _ = setup()
    gone = MatchIndex.build(load_registry("""
recipients:
  - {id: upstream, name: U, subscribe: {asns: [64611]}, tlp_clearance: amber}
"""))
    assert acting.tick(T0 + timedelta(hours=3), gone) == []
    assert [e.topic for e in acting.tick(T0 + timedelta(hours=1), INDEX) if e.alert] == \
        [topics.alerts_topic("upstream")]


def test_an_alert_that_cannot_escalate_is_watched_for_a_week_for_a_reroute_then_dropped():
    acting = FeedbackRouting(RoutingRules())  # no acknowledgement times: nothing escalates
    acting.restore(0, {}, {}, {})
    state = AlertState("A" * 22, "reseller", KEY, T0.isoformat(), T0.isoformat(),
                       T0.isoformat(), 1)
    acting.watch(0, state, RECORD, T0)
    assert acting.tick(T0 + timedelta(days=6), INDEX) == [] and acting.watched[0]
    out = acting.tick(T0 + timedelta(days=8), INDEX)
    assert [(e.topic, e.key, e.value) for e in out] == [(topics.MATCH_WATCH, "A" * 22, None)]
    assert not acting.watched[0]

"""The alerts feedback creates (a reroute after not_ours, escalations to the upstream and the
CERT, a record whose confidence feed trust lowered) pass every format's own validator, as
routine alerts do (test_explain_alerts.py): the alert schema, stix2-validator, IntelMQ."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from test_explain_alerts import check

from threatroute.matchers.acting import FeedbackRouting, pair
from threatroute.matchers.dedup import AlertState
from threatroute.matchers.escalation import EscalationPolicy
from threatroute.matchers.formats import FORMATS, render
from threatroute.matchers.hygiene import HygienePolicy
from threatroute.matchers.index import MatchIndex
from threatroute.matchers.rules import RoutingRules
from threatroute.matchers.screen import screen
from threatroute.matchers.suppression import SuppressionList
from threatroute.matchers.trust import FeedTrust
from threatroute.registry import load_registry
from threatroute.streams.runtime.schemas import errors as schema_errors

T0 = datetime(2026, 3, 1, tzinfo=UTC)
KEY = "0123456789abcdef" * 2
INDEX = MatchIndex.build(load_registry("""
recipients:
  - {id: big, name: Big, owns: {prefixes: [198.18.11.0/24], asns: [64611]}, tlp_clearance: amber}
  - {id: reseller, name: R, owns: {prefixes: [198.18.11.64/26]}, tlp_clearance: amber}
  - {id: upstream, name: U, subscribe: {asns: [64611]}, classifications: [ddos],
     tlp_clearance: amber}
  - {id: cert, name: C, subscribe: {countries: [GB]}, classifications: [ddos],
     tlp_clearance: amber}
"""))
RECORD = {"classification": {"taxonomy": "malicious-code", "type": "c2-server"}, "tlp": "GREEN",
          "source": {"ip": "198.18.11.70", "port": 443, "asn": 64611,
                     "geolocation": {"cc": "GB"}},
          "extra": {"owner": {"id": "reseller", "name": "R", "rule": "prefix 198.18.11.64/26"}},
          "feed": {"name": "c2", "accuracy": 90},
          "time": {"source": T0.isoformat(), "observation": T0.isoformat()}}


def feedback_alerts() -> list[dict]:
    acting = FeedbackRouting(RoutingRules(
        escalation=EscalationPolicy({"c2-server": timedelta(hours=1)})))
    acting.restore(0, {}, {}, {})
    owner = AlertState("A" * 22, "big", KEY, T0.isoformat(), T0.isoformat(), T0.isoformat(), 1)
    acting.watch(0, owner, {**RECORD, "extra": {"owner": {
        "id": "big", "name": "Big", "rule": "prefix 198.18.11.0/24"}}}, T0)
    reseller = AlertState("B" * 22, "reseller", KEY, T0.isoformat(), T0.isoformat(),
                          T0.isoformat(), 1)
    acting.watch(0, reseller, RECORD, T0)
    states = {pair("reseller", KEY): reseller}
    out = acting.on_feedback(0, {"alert_id": "B" * 22, "recipient": "reseller",
                                 "indicator_key": KEY, "status": "not_ours",
                                 "at": T0.isoformat(), "note": None, "feed": "c2",
                                 "first": True}, INDEX, states, lambda rid: "json", T0)
    alerts = [dict(e.value) for e in out if e.alert and e.value]
    for hours in (1, 2):
        alerts += [dict(e.value) for e in acting.tick(T0 + timedelta(hours=hours, minutes=1),
                                                      INDEX) if e.alert and e.value]
    return alerts


def test_reroute_and_escalation_alerts_pass_every_formats_validator():
    alerts = feedback_alerts()
    kinds = [(a["notification"], a["recipient"]) for a in alerts]
    # the reseller's C2 goes to big; big never answers its own alert nor the rerouted one:
    # each goes to the upstream, then to the CERT
    assert kinds == [("reroute", "big")] + [("escalation", "upstream")] * 2 + \
        [("escalation", "cert")] * 2
    for alert in alerts[1:]:
        assert schema_errors("alert", alert) == []
        for fmt in FORMATS:
            body = render(alert, fmt).decode()
            assert check({"format": fmt, "body": body}) == [], (fmt, alert["notification"])
        stix = json.loads(render(alert, "stix"))
        sighting = next(o for o in stix["objects"] if o["type"] == "sighting")
        extension = next(iter(sighting["extensions"].values()))
        assert extension["notification"] == alert["notification"]
        assert extension["escalation"]["original_recipient"] == "big"
        assert json.loads(render(alert, "intelmq"))["extra.escalation"]["kind"] in (
            "upstream", "cert")


def test_a_reroute_alert_passes_every_formats_validator():
    acting = FeedbackRouting(RoutingRules())
    acting.restore(0, {}, {}, {})
    reseller = AlertState("B" * 22, "reseller", KEY, T0.isoformat(), T0.isoformat(),
                          T0.isoformat(), 1)
    acting.watch(0, reseller, RECORD, T0)
    out = acting.on_feedback(0, {"alert_id": "B" * 22, "recipient": "reseller",
                                 "indicator_key": KEY, "status": "not_ours",
                                 "at": T0.isoformat(), "note": "a returned block",
                                 "feed": "c2", "first": True},
                             INDEX, {pair("reseller", KEY): reseller}, lambda rid: "json", T0)
    (alert,) = [dict(e.value) for e in out if e.alert and e.value]
    assert alert["notification"] == "reroute" and alert["recipient"] == "big"
    assert alert["indicator"]["extra"]["owner"]["rerouted_from"] == "reseller"
    assert schema_errors("alert", alert) == []
    for fmt in FORMATS:
        assert check({"format": fmt, "body": render(alert, fmt).decode()}) == [], fmt


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_record_with_learned_trust_passes_every_formats_validator(fmt):
    trust = FeedTrust.from_rows([{"feed": "c2", "answered": 10, "false_positive": 8}])
    screened = screen(RECORD, T0, SuppressionList(), HygienePolicy(), trust)
    assert screened.record["extra"]["trust"]["feed_accuracy"] == 90
    alert = {"alert_id": "C" * 22, "recipient": "big", "indicator_key": KEY,
             "notification": "new", "indicator": dict(screened.record), "reasons": ["owner"],
             "first_seen": T0.isoformat(), "last_seen": T0.isoformat(), "count": 1,
             "recurrence": False, "sent_at": T0.isoformat()}
    assert schema_errors("alert", alert) == []
    assert check({"format": fmt, "body": render(alert, fmt).decode()}) == []

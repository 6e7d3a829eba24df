"""STIX 2.1 alerts (matchers/stix.py) against OASIS's stix2-validator and the stix2 library,
and the versioning rules: one object per alert, a new version per notification."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import jsonschema
import pytest
from interop_validators import stix_errors
from stix2patterns.validator import run_validator

from threatroute.feeds import get_format
from threatroute.feeds.base import Accepted, parse_report
from threatroute.matchers.dedup import Action, AlertState
from threatroute.matchers.formats import alert_record, render
from threatroute.matchers.received import read_alert
from threatroute.matchers.stix import EXTENSION_ID, TLP1, TLP2_IDS, stix_bundle, timestamp
from threatroute.record import indicator_key, normalise_indicator

T0, T1, T2 = ("2026-11-22T10:00:00.123456+00:00", "2026-11-22T10:05:00+00:00",
              "2026-11-23T10:05:00.5+00:00")


def alert(raw: dict, *, alert_id: str = "A" * 22, recipient: str = "examplehost",
          action: Action = Action.NEW, last_seen: str = T0, sent_at: str = T0, count: int = 1,
          recurrence: bool = False) -> dict:
    record = normalise_indicator(raw)
    state = AlertState(alert_id, recipient, indicator_key(record), T0, last_seen, sent_at, count,
                       recurrence)
    return alert_record(state, action, record, ["owner (prefix 192.0.2.0/24)"], sent_at)


C2 = {"classification": {"type": "c2-server"}, "source": {"ip": "192.0.2.15", "port": 443},
      "tlp": "AMBER+STRICT", "feed": {"name": "demo-c2", "accuracy": 90},
      "extra": {"stix.id": "indicator--x", "owner": {"id": "examplehost", "name": "E", "rule": "p"}}}
SAMPLES = [
    C2,
    {"classification": {"type": "scanner"}, "source": {"ip": "2001:db8::7", "port": 52113}, "tlp": "CLEAR"},
    {"classification": {"type": "phishing"}, "source": {"url": "http://a.example/it's"}, "tlp": "GREEN"},
    {"classification": {"type": "dga-domain"}, "source": {"fqdn": "xn--bcher-kva.example"}, "tlp": "AMBER"},
    {"classification": {"type": "blacklist"}, "source": {"network": "198.51.100.0/25"}},
    {"classification": {"type": "spam"}, "source": {"asn": 64500}, "tlp": "RED"},
    {"classification": {"type": "vulnerable-system"}, "source": {"ip": "203.0.113.5", "port": 3389}},
]


def objects(bundle: dict, kind: str) -> list[dict]:
    return [o for o in bundle["objects"] if o["type"] == kind]


@pytest.mark.parametrize("raw", SAMPLES, ids=lambda r: r["classification"]["type"])
def test_every_shape_of_indicator_passes_the_validator_and_stix2(raw):
    first = stix_bundle(alert(raw))
    again = stix_bundle(alert(raw, action=Action.RENOTIFY, last_seen=T2, sent_at=T2, count=7))
    assert stix_errors(first) == [] and stix_errors(again) == []
    (indicator,) = objects(first, "indicator")
    assert run_validator(indicator["pattern"], stix_version="2.1") == []


def test_the_port_is_in_the_pattern_on_the_side_the_host_is():
    c2 = objects(stix_bundle(alert(SAMPLES[0])), "indicator")[0]["pattern"]
    assert c2 == ("[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value "
                  "= '192.0.2.15' AND network-traffic:dst_port = 443]")
    scanner = objects(stix_bundle(alert(SAMPLES[1])), "indicator")[0]["pattern"]
    assert "network-traffic:src_ref.value = '2001:db8::7'" in scanner and "src_port = 52113" in scanner
    quoted = objects(stix_bundle(alert(SAMPLES[2])), "indicator")[0]["pattern"]
    assert quoted == "[url:value = 'http://a.example/it\\'s']"


def test_ids_are_uuid4_and_times_have_milliseconds():
    bundle = stix_bundle(alert(C2))
    for obj in bundle["objects"]:
        if obj["type"] in ("indicator", "sighting"):
            assert uuid.UUID(obj["id"].split("--")[1]).version == 4
            for key in ("created", "modified"):
                assert len(obj[key]) == 24 and obj[key].endswith("Z"), obj[key]
    assert timestamp(T0) == "2026-11-22T10:00:00.123Z"
    assert timestamp("2026-11-22T10:00:00Z") == "2026-11-22T10:00:00.000Z"


def test_a_renotification_is_a_new_version_of_the_same_objects():
    first = stix_bundle(alert(C2))
    later = stix_bundle(alert(C2, action=Action.RENOTIFY, last_seen=T2, sent_at=T2, count=5))
    for kind in ("indicator", "sighting"):
        (a,), (b,) = objects(first, kind), objects(later, kind)
        assert a["id"] == b["id"] and a["created"] == b["created"]
        assert b["modified"] > a["modified"]
    assert objects(later, "sighting")[0]["count"] == 5
    assert first["id"] != later["id"]  # a bundle is a message, not a versioned object
    assert stix_bundle(alert(C2)) == first  # re-delivery of the same notification: same bytes


def test_another_alert_is_another_object():
    mine = objects(stix_bundle(alert(C2)), "indicator")[0]
    theirs = objects(stix_bundle(alert(C2, alert_id="B" * 22, recipient="upstream-isp")),
                     "indicator")[0]
    recurrence = objects(stix_bundle(alert(C2, alert_id="C" * 22, recurrence=True,
                                           action=Action.RECURRENCE)), "indicator")[0]
    assert len({mine["id"], theirs["id"], recurrence["id"]}) == 3


@pytest.mark.parametrize(("tlp", "tlp1"), [("CLEAR", "WHITE"), ("GREEN", "GREEN"),
                                           ("AMBER", "AMBER"), ("AMBER+STRICT", "AMBER")])
def test_tlp_is_marked_with_the_standard_definitions(tlp, tlp1):
    bundle = stix_bundle(alert({**C2, "tlp": tlp}))
    wanted = [TLP2_IDS[tlp], TLP1[tlp1]]
    for obj in objects(bundle, "indicator") + objects(bundle, "sighting"):
        assert obj["object_marking_refs"] == wanted
    assert sorted(m["id"] for m in objects(bundle, "marking-definition")) == sorted(wanted)


def test_project_fields_are_a_registered_property_extension():
    bundle = stix_bundle(alert(C2))
    (definition,) = objects(bundle, "extension-definition")
    assert definition["id"] == EXTENSION_ID
    assert definition["extension_types"] == ["property-extension"]
    (indicator,) = objects(bundle, "indicator")
    assert not [k for k in indicator if k.startswith("x_")]
    fields = indicator["extensions"][EXTENSION_ID]
    assert fields["extension_type"] == "property-extension" and fields["alert_id"] == "A" * 22
    assert fields["indicator"]["source"] == {"ip": "192.0.2.15", "port": 443}
    (sighting,) = objects(bundle, "sighting")
    assert not [k for k in sighting if k.startswith("x_")]
    notification = sighting["extensions"][EXTENSION_ID]
    assert notification["alert_id"] == "A" * 22 and notification["recipient"] == "examplehost"
    assert notification["reasons"] == ["owner (prefix 192.0.2.0/24)"]
    assert notification["notification"] == "new" and notification["recurrence"] is False
    # every extension matches the schema the extension-definition names
    schema = json.loads((Path(__file__).resolve().parents[3] / "deploy" / "schemas" /
                         "stix-alert-extension.schema.json").read_text())
    for obj in (indicator, sighting):
        jsonschema.validate(obj["extensions"][EXTENSION_ID], schema)


def test_the_gateway_reads_the_alert_back_from_the_bundle():
    original = alert(C2, action=Action.RENOTIFY, last_seen=T2, sent_at=T2, count=3)
    received = read_alert(render(original, "stix"), b"key", 0)
    assert received.alert_id == original["alert_id"]
    assert received.alert["recipient"] == "examplehost" and received.alert["count"] == 3
    assert received.alert["indicator"]["source"] == original["indicator"]["source"]


def test_threatroutes_own_stix_reads_back_as_the_same_indicator():
    for raw in SAMPLES[:5] + SAMPLES[6:]:
        body = render(alert(raw), "stix")
        outcomes = list(parse_report(get_format("stix"), io.BytesIO(body)))
        (accepted,) = [o for o in outcomes if isinstance(o, Accepted)]
        original = normalise_indicator(raw)
        assert accepted.record["source"] == original["source"], body
        assert accepted.record["tlp"] == original.get("tlp", "AMBER")
        assert json.loads(body)["objects"][0]["pattern_version"] == "2.1"

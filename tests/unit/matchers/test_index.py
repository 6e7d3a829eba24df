"""Routing: owner and subscribers, TLP rules, recipient filters, reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from threatroute.enrichers.hoster import enrich_owner
from threatroute.matchers.index import Decision, Match, MatchIndex
from threatroute.registry import Recipient, Subscribe, load_registry

REGISTRY = """
recipients:
  - id: hoster
    name: Hoster Ltd
    owns: {prefixes: [192.0.2.0/24, "2001:db8:1::/48"], asns: [64500], domains: [hoster.example]}
    tlp_clearance: amber+strict
  - id: customer
    name: Customer of hoster
    owns: {prefixes: [192.0.2.128/25]}
    classifications: [phishing, c2-server]
    min_confidence: 50
  - id: cert-gb
    name: CERT-GB
    subscribe: {countries: [GB], domains: [gov.example]}
    tlp_clearance: amber
  - id: isp
    name: Upstream
    subscribe: {asns: [64500, 64501], prefixes: [192.0.0.0/16, "2001:db8::/32"]}
  - id: watcher
    name: Public watcher
    subscribe: {prefixes: [192.0.2.0/24], domains: [hoster.example]}
    tlp_clearance: clear
"""


@pytest.fixture(scope="module")
def index() -> MatchIndex:
    return MatchIndex.build(load_registry(REGISTRY))


def record(tlp="CLEAR", ctype="phishing", accuracy=None, **source):
    rec = {"classification": {"type": ctype}, "source": source, "tlp": tlp}
    if accuracy is not None:
        rec["feed"] = {"accuracy": accuracy}
    return rec


def routed(index, rec) -> dict[str, tuple[str, ...]]:
    return {m.recipient_id: m.reasons for m in index.match(rec)}


def test_owner_and_subscribers_with_reasons(index):
    rec = record(ip="192.0.2.10", asn=64500, geolocation={"cc": "GB"})
    matches = index.match(rec)
    assert matches[0] == Match("hoster", ("owner (prefix 192.0.2.0/24)",))
    assert routed(index, rec) == {
        "hoster": ("owner (prefix 192.0.2.0/24)",),
        "cert-gb": ("subscribed country GB",),
        "isp": ("subscribed asn 64500", "subscribed prefix 192.0.0.0/16"),
        "watcher": ("subscribed prefix 192.0.2.0/24",),
    }


def test_overlapping_prefixes(index):
    rec = record(ip="192.0.2.200")
    assert routed(index, rec) == {
        "customer": ("owner (prefix 192.0.2.128/25)",),   # most specific owner only
        "isp": ("subscribed prefix 192.0.0.0/16",),
        "watcher": ("subscribed prefix 192.0.2.0/24",),
    }


@pytest.mark.parametrize(("source", "expected"), [
    ({"geolocation": {"cc": "GB"}, "ip": "203.0.113.1"}, {"cert-gb": ("subscribed country GB",)}),
    ({"asn": 64501}, {"isp": ("subscribed asn 64501",)}),
    ({"ip": "2001:db8:ff::1"}, {"isp": ("subscribed prefix 2001:db8::/32",)}),
    ({"network": "192.0.3.0/24"}, {"isp": ("subscribed prefix 192.0.0.0/16",)}),
    ({"fqdn": "x.y.gov.example"}, {"cert-gb": ("subscribed domain gov.example",)}),
    ({"fqdn": "notgov.example"}, {}),
    ({"fqdn": "www.hoster.example"}, {"hoster": ("owner (domain hoster.example)",),
                                      "watcher": ("subscribed domain hoster.example",)}),
    ({"ip": "198.51.100.1", "asn": 65000, "geolocation": {"cc": "FR"}}, {}),
])
def test_subscriptions_by_each_key(index, source, expected):
    assert routed(index, record(**source)) == expected


def test_owner_who_also_subscribes_gets_one_match_with_all_reasons():
    (r,) = load_registry("""
recipients:
  - {id: a, name: A, owns: {asns: [64500]}, subscribe: {asns: [64500], countries: [NL]}}
""")
    rec = record(asn=64500, geolocation={"cc": "NL"})
    assert MatchIndex.build([r]).match(rec) == [
        Match("a", ("owner (asn 64500)", "subscribed country NL", "subscribed asn 64500"))]


def test_tlp_red_goes_nowhere(index):
    rec = record(tlp="RED", ip="192.0.2.10", asn=64500, geolocation={"cc": "GB"})
    assert index.match(rec) == []
    assert {d.blocked for d in index.explain(rec)} == {"TLP:RED is never routed"}


def test_amber_strict_goes_to_the_owner_only(index):
    rec = record(tlp="AMBER+STRICT", ip="192.0.2.10", geolocation={"cc": "GB"})
    assert list(routed(index, rec)) == ["hoster"]
    # an owner without AMBER clearance gets nothing either
    assert index.match(record(tlp="AMBER+STRICT", ip="192.0.2.200")) == []


def test_amber_strict_needs_only_amber_clearance_for_the_owner():
    registry = load_registry("""
recipients:
  - id: owner
    name: Owner
    owns: {prefixes: [192.0.2.0/24]}
    tlp_clearance: amber
  - id: cert
    name: Cert
    subscribe: {countries: [GB]}
    tlp_clearance: amber+strict
""")
    rec = record(tlp="AMBER+STRICT", ip="192.0.2.10", geolocation={"cc": "GB"})
    assert [m.recipient_id for m in MatchIndex.build(registry).match(rec)] == ["owner"]


def test_amber_only_to_cleared(index):
    rec = record(tlp="AMBER", ip="192.0.2.10", asn=64500, geolocation={"cc": "GB"})
    assert set(routed(index, rec)) == {"hoster", "cert-gb"}  # isp has the default GREEN
    blocked = {d.recipient_id: d.blocked for d in index.explain(rec) if not d.delivered}
    assert blocked == {"isp": "TLP:AMBER is above its clearance GREEN",
                       "watcher": "TLP:AMBER is above its clearance CLEAR"}


def test_clear_and_green(index):
    green = record(tlp="GREEN", ip="192.0.2.10")
    assert set(routed(index, green)) == {"hoster", "isp"}  # watcher is cleared for CLEAR only
    clear = record(tlp="CLEAR", ip="192.0.2.10")
    assert set(routed(index, clear)) == {"hoster", "isp", "watcher"}
    assert set(routed(index, record(tlp="WHITE", ip="192.0.2.10"))) == {"hoster", "isp", "watcher"}


def test_missing_tlp_uses_default(index):
    rec = record(ip="192.0.2.10", geolocation={"cc": "GB"})
    del rec["tlp"]
    assert set(routed(index, rec)) == {"hoster", "cert-gb"}  # treated as AMBER
    lenient = MatchIndex.build(load_registry(REGISTRY), default_tlp="GREEN")
    assert set(routed(lenient, rec)) == {"hoster", "cert-gb", "isp"}


@pytest.mark.parametrize(("accuracy", "delivered"), [(49.9, False), (50, True), (None, True)])
def test_min_confidence(index, accuracy, delivered):
    rec = record(ip="192.0.2.200", accuracy=accuracy)
    assert ("customer" in routed(index, rec)) is delivered  # no accuracy counts as 100


def test_classifications_filter(index):
    assert "customer" in routed(index, record(ctype="c2-server", ip="192.0.2.200"))
    rec = record(ctype="scanner", ip="192.0.2.200")
    assert "customer" not in routed(index, rec)
    assert Decision("customer", ("owner (prefix 192.0.2.128/25)",),
                    "classification scanner is not in its classifications") in index.explain(rec)


def test_stamped_owner_is_used_and_matches_computed(index):
    rec = record(ip="192.0.2.10")
    stamped = enrich_owner(rec, index.ownership)
    assert index.match(stamped) == index.match(rec)
    stamped["extra"]["owner"] = {"id": "customer", "name": "x", "rule": "prefix 192.0.2.128/25"}
    assert index.match(stamped)[0].recipient_id == "customer"
    stamped["extra"]["owner"]["id"] = "deleted-since"  # unknown id: computed again
    assert index.match(stamped)[0].recipient_id == "hoster"


def test_query_does_not_loop_over_recipients():
    """Many recipients subscribing to other keys add no work: candidates come from the keys."""
    class Exploding(dict):
        def __iter__(self):
            raise AssertionError("iterated over all recipients")
        items = values = keys = __iter__
    many = [Recipient(id=f"r{i}", name="x", subscribe=Subscribe(countries=("FR",), asns=(i + 1,)))
            for i in range(1000)]
    index = MatchIndex.build(load_registry(REGISTRY) + many)
    index.policies = Exploding(index.policies)
    assert set(routed(index, record(ip="192.0.2.10"))) == {"hoster", "isp", "watcher"}


def test_example_registry_routes():
    example = Path(__file__).resolve().parents[3] / "deploy" / "recipients.example.yaml"
    index = MatchIndex.build(load_registry(example.read_text()))
    rec = record(tlp="AMBER", ip="203.0.113.70", geolocation={"cc": "GB"}, accuracy=90)
    # tinyhost owns it but has the default clearance (GREEN); cert-gb is cleared for AMBER
    assert routed(index, rec) == {"cert-gb": ("subscribed country GB",)}
    rec["tlp"] = "GREEN"
    assert list(routed(index, rec)) == ["tinyhost", "cert-gb"]
    assert index.match(record(tlp="GREEN", ip="192.0.2.5"))[0].recipient_id == "examplehost"

